//! The remote post-action after a delivery (move to an archive directory,
//! delete, or keep) and the move of a failed file to `failed_move_to`.

use super::error::FileError;
use super::{filter, verify};
use crate::config::{PostAction, Rule};
use crate::remote::{self, ErrorKind, PooledSession, Removal};
use crate::state::FileRow;
use std::time::SystemTime;

/// Runs the rule's post-action for a delivered row. Safe to repeat: a file
/// already gone, or replaced by a newer version since, is left alone. A
/// ready marker is removed; a sidecar checksum file follows the file: moved
/// beside it (named after the name the file got there), or deleted.
pub async fn after_delivery(
    session: &mut PooledSession,
    rule: &Rule,
    row: &FileRow,
) -> Result<(), FileError> {
    if rule.after == PostAction::Keep {
        return Ok(());
    }
    let path = remote::join(&rule.remote_dir, &row.path);
    // A send rule's source is its local outbox, not a server.
    let outbox = rule.send.is_some();
    match session.stat(&path).await {
        Err(e) if e.kind == ErrorKind::NotFound => log_removal(outbox, &path, Removal::Gone),
        Err(e) => return Err(e.into()),
        Ok(e) if e.version() != row.version() => {
            log_removal(outbox, &path, Removal::Changed);
            return Ok(());
        }
        Ok(_) => match &rule.after {
            PostAction::Delete => {
                ignore_not_found(session.remove(&path).await)?;
                log_removal(outbox, &path, Removal::Removed);
            }
            PostAction::MoveTo(dir) => {
                let to = move_into(session, &path, dir, &row.path).await?;
                if outbox {
                    tracing::info!(local = %path, moved_to = %to, "moved out of the outbox");
                } else {
                    tracing::info!(remote = %path, moved_to = %to, "moved on the server");
                }
                move_sidecar(session, rule, &path, &to).await?;
            }
            PostAction::Keep => {}
        },
    }
    remove_marker(session, rule, &path).await
}

/// Whether a batch's `delete` post-actions can go as one
/// [`PooledSession::remove_unchanged`]: the files are local (a send rule's
/// outbox, a local watch rule), where that is one blocking call, and
/// nothing else (a ready marker, a sidecar) is to be removed with each.
/// On a server the deletes stay several sessions' work at once.
pub fn deletes_alone(rule: &Rule) -> bool {
    let local = rule.send.is_some() || rule.server.protocol == crate::config::Protocol::Local;
    local
        && rule.after == PostAction::Delete
        && rule.ready_marker.is_none()
        && rule.checksum_file.is_none()
}

/// The log line of a delivered file's `delete`, or of why it was not
/// needed (gone already) or not done (another version is there now).
pub fn log_removal(outbox: bool, path: &str, what: Removal) {
    match (what, outbox) {
        (Removal::Removed, true) => tracing::info!(local = %path, "deleted from the outbox"),
        (Removal::Removed, false) => tracing::info!(remote = %path, "deleted on the server"),
        (Removal::Gone, true) => {
            tracing::info!(local = %path, "already gone from the outbox; nothing to move or delete")
        }
        (Removal::Gone, false) => {
            tracing::info!(remote = %path, "already gone from the server; nothing to move or delete")
        }
        (Removal::Changed, _) => {
            tracing::info!(remote = %path, "the file changed after delivery; the new version is left for the next poll")
        }
    }
}

/// Moves a file that failed for good into `failed_move_to`, if configured.
pub async fn move_failed(
    session: &mut PooledSession,
    rule: &Rule,
    row: &FileRow,
) -> Result<Option<String>, FileError> {
    let Some(dir) = &rule.failed_move_to else {
        return Ok(None);
    };
    let path = remote::join(&rule.remote_dir, &row.path);
    Ok(Some(move_into(session, &path, dir, &row.path).await?))
}

/// Moves `from` to `dir/rel`, creating directories. An existing target is
/// never overwritten: the moved file gets a UTC timestamp suffix instead.
async fn move_into(
    session: &mut PooledSession,
    from: &str,
    dir: &str,
    rel: &str,
) -> Result<String, FileError> {
    let target = remote::join(dir, rel);
    session.create_dirs(remote::parent(&target)).await?;
    let stamp = utc_stamp(SystemTime::now());
    let mut candidate = target.clone();
    for n in 0..100 {
        match session.rename(from, &candidate, false).await {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let tag = if n == 0 {
                    stamp.clone()
                } else {
                    format!("{stamp}-{n}")
                };
                candidate = with_suffix(&target, &tag);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(FileError::temporary(
        ErrorKind::AlreadyExists,
        format!("no free name for {target} in {dir}"),
    ))
}

/// Moves the sidecar of `from` (if the rule has one and it is still
/// there) beside the file's new name `to`. Never overwrites: a taken name
/// leaves the sidecar where it was, with a warning.
async fn move_sidecar(
    session: &mut PooledSession,
    rule: &Rule,
    from: &str,
    to: &str,
) -> Result<(), FileError> {
    let Some(pattern) = &rule.checksum_file else {
        return Ok(());
    };
    let (src, dst) = (
        verify::sidecar_path(pattern, from),
        verify::sidecar_path(pattern, to),
    );
    match session.rename(&src, &dst, false).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind == ErrorKind::AlreadyExists => {
            tracing::warn!(sidecar = %src, target = %dst, "the checksum file's name is taken beside the moved file; left where it is");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn remove_marker(
    session: &mut PooledSession,
    rule: &Rule,
    path: &str,
) -> Result<(), FileError> {
    // With delete, the sidecar goes too (also on a repeat that finds the
    // file gone); a moved file took its sidecar along already.
    if rule.after == PostAction::Delete
        && let Some(pattern) = &rule.checksum_file
    {
        ignore_not_found(session.remove(&verify::sidecar_path(pattern, path)).await)?;
    }
    let Some(pattern) = &rule.ready_marker else {
        return Ok(());
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    let marker = remote::join(remote::parent(path), &filter::marker_for(pattern, name));
    ignore_not_found(session.remove(&marker).await)
}

fn ignore_not_found(r: remote::Result<()>) -> Result<(), FileError> {
    match r {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        other => Ok(other?),
    }
}

/// `20261124T001500Z`: sortable, and free of `:` for servers that dislike it.
pub fn utc_stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace(['-', ':'], "")
}

/// `dir/name.ext` -> `dir/name.TAG.ext`; names without an extension get `.TAG`.
pub fn with_suffix(path: &str, tag: &str) -> String {
    let (dir, name) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    match name.rfind('.') {
        Some(i) if i > 0 => format!("{dir}{}.{tag}{}", &name[..i], &name[i..]),
        _ => format!("{dir}{name}.{tag}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn suffixes_keep_the_extension() {
        assert_eq!(with_suffix("/a/b.csv", "T"), "/a/b.T.csv");
        assert_eq!(with_suffix("/a/b", "T"), "/a/b.T");
        assert_eq!(with_suffix("/a/.hidden", "T"), "/a/.hidden.T");
        assert_eq!(with_suffix("/a/b.tar.gz", "T"), "/a/b.tar.T.gz");
    }

    #[test]
    fn stamp_is_compact_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_479_300);
        assert_eq!(utc_stamp(t), "20261124T001500Z");
    }
}
