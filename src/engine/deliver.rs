//! The commit point of a delivery: the rename of a whole, fsynced temporary
//! file onto its final name, made durable by an fsync of the directory.

use super::error::FileError;
use super::target::Target;
use std::io;

/// Renames the temporary file into place. A missing temporary file means a
/// previous run already renamed it (it is only marked `downloaded` once whole),
/// so this is safe to repeat after a crash. Returns whether it renamed now.
pub async fn place(t: &Target) -> Result<bool, FileError> {
    match tokio::fs::rename(&t.temp_path, &t.final_path).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            let ctx = format!(
                "rename {} -> {}",
                t.temp_path.display(),
                t.final_path.display()
            );
            return Err(FileError::local(ctx, &e));
        }
    }
    let dir = t.final_path.parent().unwrap_or(std::path::Path::new("/"));
    let sync = async { tokio::fs::File::open(dir).await?.sync_all().await };
    sync.await
        .map_err(|e| FileError::local(format!("fsync {}", dir.display()), &e))?;
    Ok(true)
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
