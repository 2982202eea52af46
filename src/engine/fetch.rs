//! Downloading one file version into its temporary name, resuming from the
//! bytes already there, and making it durable before anyone is told.

use super::direct::{self, DirectFile};
use super::error::FileError;
use crate::remote::{ErrorKind, PooledSession, Version};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use tokio::io::{AsyncWriteExt, BufWriter};

/// Fetches `remote_path` (the `expected` version) into `temp`, continuing a
/// partial file of the same version. Returns the bytes fetched in this call.
/// A file of unknown size is read to its end, and what arrived is its size.
pub async fn download(
    session: &mut PooledSession,
    remote_path: &str,
    expected: Version,
    temp: &Path,
) -> Result<u64, FileError> {
    let ctx = |what: &str| format!("{what} {}", temp.display());
    let std_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        // A planted symlink must not redirect the download.
        .custom_flags(libc::O_NOFOLLOW)
        .open(temp)
        .map_err(|e| FileError::local(ctx("open"), &e))?;
    let mut file = std_file;
    let mut offset = file
        .metadata()
        .map_err(|e| FileError::local(ctx("stat"), &e))?
        .len();
    if expected.size.is_some_and(|size| offset > size) {
        file.set_len(0)
            .map_err(|e| FileError::local(ctx("truncate"), &e))?;
        offset = 0;
    }
    if offset > 0 {
        tracing::info!(offset, size = expected.size, "resuming download");
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| FileError::local(ctx("seek"), &e))?;
    let mut sink = BufWriter::with_capacity(256 * 1024, DirectFile::new(file));
    let fetched = if expected.size.is_none_or(|size| offset < size) {
        let r = session
            .read_into(remote_path, offset, expected, &mut sink)
            .await;
        session.check(r)?
    } else {
        0
    };
    sink.flush()
        .await
        .map_err(|e| FileError::local(ctx("write"), &e))?;
    let file = sink.into_inner().file;
    let len = offset + fetched;
    if let Some(size) = expected.size
        && len != size
    {
        if len > size {
            // It grew while we read: a new version that the next listing will see.
            file.set_len(0)
                .map_err(|e| FileError::local(ctx("truncate"), &e))?;
        }
        return Err(FileError::temporary(
            ErrorKind::Other,
            format!(
                "read {len} bytes of {remote_path}, expected {size}: it changed during the download"
            ),
        ));
    }
    direct::sync(file)
        .await
        .map_err(|e| FileError::local(ctx("fsync"), &e))?;
    Ok(fetched)
}

/// A whole small file must have the size the listing reported; a file that
/// changed since is a new version, which the next listing picks up.
pub fn expect_size(
    remote_path: &str,
    expected: Version,
    data: Vec<u8>,
) -> Result<Vec<u8>, FileError> {
    let fetched = data.len() as u64;
    if let Some(size) = expected.size
        && fetched != size
    {
        return Err(FileError::temporary(
            ErrorKind::Other,
            format!(
                "read {fetched} bytes of {remote_path}, expected {size}: it changed during the download"
            ),
        ));
    }
    Ok(data)
}

/// Creates (or truncates), writes and fsyncs `path`. Blocking.
pub fn write_synced(path: &Path, data: &[u8]) -> Result<(), FileError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| FileError::local(ctx("open"), &e))?;
    file.write_all(data)
        .map_err(|e| FileError::local(ctx("write"), &e))?;
    file.sync_all()
        .map_err(|e| FileError::local(ctx("fsync"), &e))
}

/// Bytes already in a partial file, for the progress column after a failure.
pub fn partial_len(temp: &Path) -> u64 {
    std::fs::symlink_metadata(temp).map_or(0, |m| m.len())
}
