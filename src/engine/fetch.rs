//! Downloading one file version into its temporary name, resuming from the
//! bytes already there, and making it durable before anyone is told.

use super::error::FileError;
use crate::remote::{ErrorKind, PooledSession};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncSeekExt, AsyncWrite, AsyncWriteExt, BufWriter};

/// Bytes between two starts of writeback (see [`Writeback`]).
const WRITEBACK_EVERY: u64 = 64 * 1024 * 1024;

/// Fetches `remote_path` (expected `size` bytes) into `temp`, continuing a
/// partial file of the same version. Returns the bytes fetched in this call.
pub async fn download(
    session: &mut PooledSession,
    remote_path: &str,
    size: u64,
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
    let mut file = tokio::fs::File::from_std(std_file);
    let mut offset = file
        .metadata()
        .await
        .map_err(|e| FileError::local(ctx("stat"), &e))?
        .len();
    if offset > size {
        file.set_len(0)
            .await
            .map_err(|e| FileError::local(ctx("truncate"), &e))?;
        offset = 0;
    }
    if offset > 0 {
        tracing::info!(offset, size, "resuming download");
    }
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| FileError::local(ctx("seek"), &e))?;
    let fd = file.as_raw_fd();
    let mut sink = Writeback {
        inner: BufWriter::with_capacity(256 * 1024, file),
        fd,
        since: 0,
    };
    let fetched = if offset < size {
        let r = session.read_into(remote_path, offset, &mut sink).await;
        session.check(r)?
    } else {
        0
    };
    sink.flush()
        .await
        .map_err(|e| FileError::local(ctx("write"), &e))?;
    let file = sink.inner.into_inner();
    let len = offset + fetched;
    if len != size {
        if len > size {
            // It grew while we read: a new version that the next listing will see.
            file.set_len(0)
                .await
                .map_err(|e| FileError::local(ctx("truncate"), &e))?;
        }
        return Err(FileError::temporary(
            ErrorKind::Other,
            format!(
                "read {len} bytes of {remote_path}, expected {size}: it changed during the download"
            ),
        ));
    }
    file.sync_all()
        .await
        .map_err(|e| FileError::local(ctx("fsync"), &e))?;
    Ok(fetched)
}

/// Starts the kernel's writeback of the file every [`WRITEBACK_EVERY`]
/// bytes (`sync_file_range(2)`, `SYNC_FILE_RANGE_WRITE`: it starts the
/// writes and does not wait for them). Without it a large download sits
/// dirty in the page cache until the final fsync, which then writes the
/// whole file while nothing else happens; with it the disk works while the
/// network does, and the fsync finds little left.
struct Writeback<W> {
    inner: W,
    fd: std::os::fd::RawFd,
    since: u64,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Writeback<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.since += *n as u64;
            if self.since >= WRITEBACK_EVERY {
                self.since = 0;
                // SAFETY: `fd` belongs to the file inside `inner`, open for
                // as long as `self` lives. A failure only means no head start.
                unsafe { libc::sync_file_range(self.fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bytes already in a partial file, for the progress column after a failure.
pub fn partial_len(temp: &Path) -> u64 {
    std::fs::symlink_metadata(temp).map_or(0, |m| m.len())
}
