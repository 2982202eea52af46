//! Listing a rule's remote directory (recursively when asked) and keeping
//! the files the rule takes. A subdirectory that cannot be listed is
//! skipped, not fatal: one bad directory must not stop a rule. Directories
//! reached again through a followed symlink are not walked twice, so a
//! symlink loop ends.

use super::{filter, target};
use crate::config::Rule;
use crate::remote::{self, Entry, EntryKind, PooledSession, Result};
use crate::state::{FileFilter, Listed, Refused, State, size_to_db};
use std::collections::{HashSet, VecDeque};
use tokio::sync::mpsc;

/// Batches of the files a walk found, as the server sent them: the
/// listing streams into the diff instead of being held whole.
#[derive(Default)]
pub struct Walked {
    /// Files the rule takes.
    pub files: Vec<Listed>,
    /// Files the rule would take but ferry cannot (names that are not
    /// UTF-8): recorded as failed, with why.
    pub refused: Vec<Refused>,
}

/// What a walk tells besides its files.
#[derive(Default)]
pub struct Listing {
    /// How many files the rule takes were listed.
    pub files: usize,
    /// Every file path seen, markers included, for the ready-marker gate;
    /// empty when the rule has no `ready_marker` (nothing asks for it).
    pub all: HashSet<String>,
    /// Subdirectories (relative) that could not be listed, with why.
    pub skipped: Vec<(String, String)>,
}

/// A directory to list: where it is under the rule, and where it really is
/// on the server (a followed symlink's target), to recognise loops.
struct Pending {
    rel: String,
    real: String,
}

/// Batches the transport hands over while a directory is still being
/// listed, and batches handed on to the diff.
const IN_FLIGHT: usize = 2;

/// Lists the rule's directory (and its subdirectories, when recursive)
/// and sends the files the rule takes to `out`, a batch at a time. Stops
/// early, without an error, when `out`'s receiver is gone: whoever reads
/// it failed and says why.
pub async fn list(
    session: &mut PooledSession,
    rule: &Rule,
    out: mpsc::Sender<Walked>,
) -> Result<Listing> {
    let mut listing = Listing::default();
    let mut seen = HashSet::from([rule.remote_dir.clone()]);
    let mut dirs = VecDeque::from([Pending {
        rel: String::new(),
        real: rule.remote_dir.clone(),
    }]);
    while let Some(dir) = dirs.pop_front() {
        if out.is_closed() {
            break;
        }
        let abs_dir = if dir.rel.is_empty() {
            rule.remote_dir.clone()
        } else {
            remote::join(&rule.remote_dir, &dir.rel)
        };
        let (tx, rx) = mpsc::channel::<Vec<Entry>>(IN_FLIGHT);
        let listed = session.list_batches(&abs_dir, tx);
        let sorted = async {
            // Owned here: when the diff is gone, dropping it stops the
            // transport's listing too.
            let mut rx = rx;
            while let Some(entries) = rx.recv().await {
                let mut walked = Walked::default();
                for e in entries {
                    let found = take(rule, &dir, &abs_dir, e, &mut walked, &mut listing.all);
                    let Some(sub) = found else { continue };
                    if seen.insert(sub.real.clone()) {
                        dirs.push_back(sub);
                    } else {
                        tracing::warn!(path = %sub.rel, target = %sub.real, "not entering a directory already walked (a symlink loop?)");
                    }
                }
                listing.files += walked.files.len();
                if out.send(walked).await.is_err() {
                    break;
                }
            }
        };
        let (listed, ()) = tokio::join!(listed, sorted);
        match listed {
            Ok(()) => {}
            // The rule's own directory failing is the poll failing.
            Err(e) if dir.rel.is_empty() || e.breaks_session() => return Err(e),
            Err(e) => {
                tracing::warn!(path = %dir.rel, error = %e, "skipping a directory that cannot be listed");
                listing.skipped.push((dir.rel, e.to_string()));
            }
        }
    }
    Ok(listing)
}

/// Sorts one entry of `dir`: a file the rule takes goes into `walked`, a
/// subdirectory to enter is returned.
fn take(
    rule: &Rule,
    dir: &Pending,
    abs_dir: &str,
    e: Entry,
    walked: &mut Walked,
    all: &mut HashSet<String>,
) -> Option<Pending> {
    // ferry's own partial downloads, whatever the globs say: a rule
    // watching another rule's local_dir must never take them.
    if target::is_temp_name(&e.name) {
        return None;
    }
    let rel = if dir.rel.is_empty() {
        e.name.clone()
    } else {
        format!("{}/{}", dir.rel, e.name)
    };
    match e.kind {
        EntryKind::File => {
            if filter::takes_file(rule, &rel, &e.name, e.size) {
                let file = Listed {
                    path: rel.clone(),
                    size: size_to_db(e.size),
                    mtime: e.mtime,
                    date_only: e.date_only,
                };
                if e.invalid_name {
                    let error = remote::NOT_UTF8.to_string();
                    walked.refused.push(Refused { file, error });
                } else {
                    walked.files.push(file);
                }
            }
            if rule.ready_marker.is_some() || rule.checksum_file.is_some() {
                all.insert(rel);
            }
            None
        }
        EntryKind::Dir if rule.recursive && e.invalid_name => {
            tracing::warn!(path = %rel, "not entering a directory whose name is not UTF-8");
            None
        }
        EntryKind::Dir if rule.recursive => {
            if !filter::enters_dir(rule, &rel, &e.name, &remote::join(abs_dir, &e.name)) {
                return None;
            }
            let real = match &e.link_target {
                Some(t) if t.starts_with('/') => remote::normalize(t),
                Some(t) => remote::normalize(&remote::join(&dir.real, t)),
                None => remote::join(&dir.real, &e.name),
            };
            Some(Pending { rel, real })
        }
        _ => {
            tracing::debug!(path = %rel, kind = ?e.kind, "skipping an entry that is not a regular file");
            None
        }
    }
}

/// The latest row of each path under directories the walk skipped, as
/// last recorded: a directory that could not be listed says nothing about
/// its files, so they must not be taken for gone (pending ones dropped or
/// failed as "disappeared", finished ones pruned by retention). Listed as
/// their own version, they change nothing.
pub async fn keep_skipped(
    state: &State,
    rule: &Rule,
    skipped: &[(String, String)],
) -> crate::state::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for (dir, _) in skipped {
        let filter = FileFilter {
            rule: Some(rule.name.clone()),
            state: None,
            path: Some(format!("{}/*", glob_literal(dir))),
            ..FileFilter::default()
        };
        // Rows come in id order: a later row of a path is its later version.
        let mut latest = std::collections::HashMap::new();
        for row in state.files(&filter).await? {
            latest.insert(row.path.clone(), row);
        }
        out.extend(latest.into_values().map(|row| Listed {
            path: row.path,
            size: row.size,
            mtime: row.mtime,
            date_only: false,
        }));
    }
    Ok(out)
}

/// `text` as a SQLite GLOB pattern that matches only itself.
fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::state::State;
    use crate::state::testing::f;

    #[test]
    fn glob_literal_escapes_the_glob_characters() {
        assert_eq!(super::glob_literal("a*b?[c]"), "a[*]b[?][[]c]");
    }

    /// A directory that cannot be listed keeps the latest row of each of
    /// its paths as listed: pending ones are not dropped, finished ones
    /// are not marked unlisted (which would let retention prune them).
    #[tokio::test]
    async fn a_skipped_directory_keeps_its_latest_rows_listed() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).await.unwrap();
        let text = "[[watch]]\nname = \"r\"\nremote_dir = \"/tmp\"\nlocal_dir = \"/tmp/out\"\nrecursive = true\n";
        let cfg = crate::config::parse(std::path::Path::new("t.toml"), text).unwrap();
        let rule = &cfg.rules[0];
        s.record_listing("r", &[f("sub/a", 1), f("sub/b", 1)], 1000)
            .await
            .unwrap();
        let a = s.due("r", 1000, 0, 0).await.unwrap()[0].id;
        s.claim(a, 1000).await.unwrap();
        s.mark_delivered(a, "/tmp/out/sub/a", true, 1000)
            .await
            .unwrap();
        let skipped = [("sub".to_string(), "permission denied".to_string())];
        let mut kept = super::keep_skipped(&s, rule, &skipped).await.unwrap();
        kept.sort_by(|x, y| x.path.cmp(&y.path));
        assert_eq!(kept, [f("sub/a", 1), f("sub/b", 1)]);
        let out = s.record_listing("r", &kept, 2000).await.unwrap();
        assert!(out.new.is_empty() && out.changed.is_empty() && out.vanished.is_empty());
        // Still counted as listed: even a retention of a moment keeps it.
        assert_eq!(s.prune(i64::MAX).await.unwrap(), 0);
        assert_eq!(s.files(&Default::default()).await.unwrap().len(), 2);
    }
}
