//! The commit point of a delivery: a whole, fsynced temporary file gets
//! its final name, made durable by an fsync of the directory.
//!
//! The final name is chosen by the rule's `if_exists` and recorded in the
//! state database before it is given; it never replaces a file unless the
//! rule says `overwrite`. The final name is a hard link to the temporary
//! file, which stays until `delivered` is committed: the temporary name is
//! the receipt. After a crash between the two, a temporary file with a
//! second link proves that the file was delivered, even when the consumer
//! has already moved it away; without the receipt (rename), a missing
//! temporary and a missing final file could mean either "delivered, then
//! taken" or "removed before delivery", and re-downloading would deliver
//! the first case twice.

use super::error::FileError;
use super::post::{utc_stamp, with_suffix};
use crate::config::IfExists;
use crate::remote::ErrorKind;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where a downloaded file goes, by the rule's `if_exists`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Name(PathBuf),
    /// `wait`, and the name is taken.
    Wait,
}

/// How giving a file its final name ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// In place; the temporary name is released once `delivered` is recorded.
    Named,
    /// Someone else's file took the name since it was chosen.
    Taken,
    /// The temporary file is gone: not proof of anything; download again.
    TempMissing,
}

/// Chooses the name to deliver `natural` under. Blocking (a few lstats).
pub fn choose(natural: &Path, policy: IfExists) -> Result<Choice, FileError> {
    if policy == IfExists::Overwrite || !exists(natural)? {
        return Ok(Choice::Name(natural.to_path_buf()));
    }
    if policy == IfExists::Wait {
        return Ok(Choice::Wait);
    }
    let stamp = utc_stamp(SystemTime::now());
    let text = natural.to_string_lossy();
    for n in 0..1000 {
        let tag = if n == 0 {
            stamp.clone()
        } else {
            format!("{stamp}-{n}")
        };
        let candidate = PathBuf::from(with_suffix(&text, &tag));
        if !exists(&candidate)? {
            return Ok(Choice::Name(candidate));
        }
    }
    Err(FileError::temporary(
        ErrorKind::AlreadyExists,
        format!("no free name for {text}"),
    ))
}

fn exists(p: &Path) -> Result<bool, FileError> {
    match std::fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FileError::local(format!("inspect {}", p.display()), &e)),
    }
}

/// Whether `path` is this row's delivered file: the inode of its temporary
/// file (when recorded) and the expected size. Rows recorded before inodes
/// were kept are recognised by size alone.
pub fn is_ours(path: &Path, inode: Option<i64>, size: u64) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(m) => m.is_file() && m.len() == size && inode.is_none_or(|i| m.ino() == i as u64),
        Err(_) => false,
    }
}

/// Gives the file at `temp` the name `chosen`: a hard link, which fails
/// on an existing name, or for `overwrite` a link under a second temporary
/// name renamed over `chosen` (atomic replace). File systems without hard
/// links get `renameat2(RENAME_NOREPLACE)` or `rename(2)`, and no receipt.
/// Blocking; the caller fsyncs the directory.
pub fn give_name(temp: &Path, chosen: &Path, overwrite: bool) -> Result<Placed, FileError> {
    let context = || format!("link {} -> {}", temp.display(), chosen.display());
    let linked = if overwrite {
        let side = side_name(temp);
        let _ = std::fs::remove_file(&side);
        std::fs::hard_link(temp, &side).and_then(|()| std::fs::rename(&side, chosen))
    } else {
        std::fs::hard_link(temp, chosen)
    };
    let r = match linked {
        Err(e) if no_hard_links(&e) => {
            if overwrite {
                std::fs::rename(temp, chosen)
            } else {
                crate::fsx::rename_noreplace(temp, chosen)
            }
        }
        other => other,
    };
    match r {
        Ok(()) => Ok(Placed::Named),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Placed::Taken),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !exists(temp)? => Ok(Placed::TempMissing),
        Err(e) => Err(FileError::local(context(), &e)),
    }
}

/// Whether the temporary file already has its final name too: the receipt
/// of a delivery whose record a crash cut off.
pub fn is_linked(temp: &Path) -> bool {
    std::fs::symlink_metadata(temp).is_ok_and(|m| m.is_file() && m.nlink() >= 2)
}

/// Finishes an `overwrite` that a crash cut between its link and its
/// rename: the side name is renamed over `chosen`. Blocking.
pub fn settle_side(temp: &Path, chosen: &Path) -> Result<(), FileError> {
    let side = side_name(temp);
    match std::fs::rename(&side, chosen) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::local(
            format!("rename {} -> {}", side.display(), chosen.display()),
            &e,
        )),
    }
}

/// Drops the temporary name once `delivered` is recorded. Blocking. A
/// leftover (a crash just before) is removed at the next start.
pub fn release(temp: &Path) {
    for p in [temp.to_path_buf(), side_name(temp)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(temp = %p.display(), error = %e, "cannot remove a delivered file's temporary name")
            }
        }
    }
}

/// The second temporary name an `overwrite` links before its rename.
fn side_name(temp: &Path) -> PathBuf {
    let name = temp
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    temp.with_file_name(format!(".o{name}"))
}

fn no_hard_links(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EOPNOTSUPP | libc::ENOSYS | libc::EMLINK)
    )
}

/// Gives the final name and fsyncs the directory in one trip to the
/// blocking pool.
pub async fn place(temp: PathBuf, chosen: PathBuf, overwrite: bool) -> Result<Placed, FileError> {
    let r = tokio::task::spawn_blocking(move || -> Result<Placed, FileError> {
        let placed = give_name(&temp, &chosen, overwrite)?;
        if placed == Placed::Named {
            sync_parent(&chosen)?;
        }
        Ok(placed)
    })
    .await;
    r.map_err(|e| FileError::temporary(ErrorKind::Other, format!("rename task: {e}")))?
}

/// Makes an earlier run's rename durable: it may not have been fsynced.
pub async fn sync_parent_async(path: PathBuf) -> Result<(), FileError> {
    let r = tokio::task::spawn_blocking(move || sync_parent(&path)).await;
    r.map_err(|e| FileError::temporary(ErrorKind::Other, format!("fsync task: {e}")))?
}

fn sync_parent(path: &Path) -> Result<(), FileError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    sync_dir(dir).map_err(|e| FileError::local(format!("fsync {}", dir.display()), &e))
}

/// Makes the renames into `dir` durable. Blocking.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// Removes a handler-only rule's spool directory once the file is delivered.
pub async fn clean_spool(spool_dir: &Option<PathBuf>) {
    if let Some(dir) = spool_dir
        && let Err(e) = tokio::fs::remove_dir_all(dir).await
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a spool directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keeps_the_existing_file_and_wait_waits() {
        let dir = tempfile::tempdir().unwrap();
        let natural = dir.path().join("orders.csv");
        let free = choose(&natural, IfExists::Unique).unwrap();
        assert_eq!(free, Choice::Name(natural.clone()));
        std::fs::write(&natural, b"old").unwrap();
        let Choice::Name(other) = choose(&natural, IfExists::Unique).unwrap() else {
            panic!("unique never waits");
        };
        let name = other.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("orders.") && name.ends_with("Z.csv"),
            "{name}"
        );
        assert_eq!(choose(&natural, IfExists::Wait).unwrap(), Choice::Wait);
        assert_eq!(
            choose(&natural, IfExists::Overwrite).unwrap(),
            Choice::Name(natural.clone())
        );
    }

    #[test]
    fn naming_never_replaces_unless_overwrite_and_leaves_a_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let (temp, fin) = (dir.path().join(".t.ferry-part"), dir.path().join("f"));
        std::fs::write(&temp, b"new").unwrap();
        let inode = std::fs::metadata(&temp).unwrap().ino() as i64;
        std::fs::write(&fin, b"old").unwrap();
        assert_eq!(give_name(&temp, &fin, false).unwrap(), Placed::Taken);
        assert_eq!(std::fs::read(&fin).unwrap(), b"old");
        assert!(!is_ours(&fin, Some(inode), 3));
        assert!(!is_linked(&temp));
        assert_eq!(give_name(&temp, &fin, true).unwrap(), Placed::Named);
        assert!(is_ours(&fin, Some(inode), 3));
        assert!(!is_ours(&fin, Some(inode), 4));
        // The consumer moves the file away: the receipt still proves delivery.
        std::fs::rename(&fin, dir.path().join("taken")).unwrap();
        assert!(is_linked(&temp));
        release(&temp);
        assert!(!temp.exists());
        assert_eq!(give_name(&temp, &fin, false).unwrap(), Placed::TempMissing);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no side names left"
        );
    }
}
