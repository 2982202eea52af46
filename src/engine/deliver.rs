//! The commit point of a delivery: the rename of a whole, fsynced temporary
//! file onto its final name, made durable by an fsync of the directory.

use super::error::FileError;
use super::target::Target;
use std::io;

/// Renames the temporary file into place. A missing temporary file means a
/// previous run already renamed it (it is only marked `downloaded` once whole),
/// so this is safe to repeat after a crash. Returns whether it renamed now.
pub async fn place(t: &Target) -> Result<bool, FileError> {
    let (temp, fin) = (t.temp_path.clone(), t.final_path.clone());
    // Rename and directory fsync in one trip to the blocking pool.
    let r = tokio::task::spawn_blocking(move || -> Result<bool, FileError> {
        match std::fs::rename(&temp, &fin) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(FileError::local(
                    format!("rename {} -> {}", temp.display(), fin.display()),
                    &e,
                ));
            }
        }
        let dir = fin.parent().unwrap_or(std::path::Path::new("/"));
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| FileError::local(format!("fsync {}", dir.display()), &e))?;
        Ok(true)
    })
    .await;
    r.map_err(|e| {
        FileError::temporary(crate::remote::ErrorKind::Other, format!("rename task: {e}"))
    })?
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
