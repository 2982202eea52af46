//! Listing a rule's remote directory (recursively when asked) and keeping
//! the files the rule takes.

use super::{filter, target};
use crate::config::Rule;
use crate::remote::{self, EntryKind, PooledSession, Result};
use crate::state::{Listed, Refused, size_to_db};
use std::collections::{HashSet, VecDeque};

pub struct Listing {
    /// Files the rule takes.
    pub files: Vec<Listed>,
    /// Files the rule would take but ferry cannot (names that are not
    /// UTF-8): recorded as failed, with why.
    pub refused: Vec<Refused>,
    /// Every file path seen, markers included, for the ready-marker gate.
    pub all: HashSet<String>,
}

pub async fn list(session: &mut PooledSession, rule: &Rule) -> Result<Listing> {
    let mut out = Listing {
        files: Vec::new(),
        refused: Vec::new(),
        all: HashSet::new(),
    };
    let mut dirs = VecDeque::from([String::new()]);
    while let Some(rel_dir) = dirs.pop_front() {
        let abs_dir = if rel_dir.is_empty() {
            rule.remote_dir.clone()
        } else {
            remote::join(&rule.remote_dir, &rel_dir)
        };
        let entries = session.list(&abs_dir).await;
        for e in session.check(entries)? {
            // ferry's own partial downloads, whatever the globs say: a rule
            // watching another rule's local_dir must never take them.
            if target::is_temp_name(&e.name) {
                continue;
            }
            let rel = if rel_dir.is_empty() {
                e.name.clone()
            } else {
                format!("{rel_dir}/{}", e.name)
            };
            match e.kind {
                EntryKind::File => {
                    if filter::takes_file(rule, &rel, &e.name, e.size) {
                        let file = Listed {
                            path: rel.clone(),
                            size: size_to_db(e.size),
                            mtime: e.mtime,
                        };
                        if e.invalid_name {
                            let error = remote::NOT_UTF8.to_string();
                            out.refused.push(Refused { file, error });
                        } else {
                            out.files.push(file);
                        }
                    }
                    out.all.insert(rel);
                }
                EntryKind::Dir if rule.recursive && e.invalid_name => {
                    tracing::warn!(path = %rel, "not entering a directory whose name is not UTF-8");
                }
                EntryKind::Dir if rule.recursive => {
                    if filter::enters_dir(rule, &rel, &e.name, &remote::join(&abs_dir, &e.name)) {
                        dirs.push_back(rel);
                    }
                }
                _ => {
                    tracing::debug!(path = %rel, kind = ?e.kind, "skipping an entry that is not a regular file")
                }
            }
        }
    }
    Ok(out)
}
