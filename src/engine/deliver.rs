//! The commit point of a delivery: the rename of a whole, fsynced temporary
//! file onto its final name, made durable by an fsync of the directory.

use super::error::FileError;
use super::target::Target;
use std::io;
use std::path::Path;

/// Renames the temporary file into place and fsyncs its directory. A
/// missing temporary file means a previous run already renamed it (it is
/// only marked `downloaded` once whole), so this is safe to repeat after a
/// crash. Returns whether it renamed now.
pub async fn place(t: &Target) -> Result<bool, FileError> {
    let (temp, fin) = (t.temp_path.clone(), t.final_path.clone());
    // Rename and directory fsync in one trip to the blocking pool.
    let r = tokio::task::spawn_blocking(move || -> Result<bool, FileError> {
        let renamed = rename(&temp, &fin)?;
        // Also after a rename by an earlier run: it may not be durable yet.
        let dir = fin.parent().unwrap_or(Path::new("/"));
        sync_dir(dir).map_err(|e| FileError::local(format!("fsync {}", dir.display()), &e))?;
        Ok(renamed)
    })
    .await;
    r.map_err(|e| {
        FileError::temporary(crate::remote::ErrorKind::Other, format!("rename task: {e}"))
    })?
}

/// The rename alone, for callers that fsync the directory once for many
/// files. Blocking. Returns whether it renamed now.
pub fn rename_into_place(t: &Target) -> Result<bool, FileError> {
    rename(&t.temp_path, &t.final_path)
}

fn rename(temp: &Path, fin: &Path) -> Result<bool, FileError> {
    match std::fs::rename(temp, fin) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FileError::local(
            format!("rename {} -> {}", temp.display(), fin.display()),
            &e,
        )),
    }
}

/// Makes the renames into `dir` durable. Blocking.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// Removes a handler-only rule's spool directory once the file is delivered.
pub async fn clean_spool(t: &Target) {
    if let Some(dir) = &t.spool_dir
        && let Err(e) = tokio::fs::remove_dir_all(dir).await
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a spool directory");
    }
}
