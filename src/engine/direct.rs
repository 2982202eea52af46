//! A local file written straight from async code. A write of up to 256 KiB
//! into the page cache takes microseconds, while tokio::fs hands every call
//! to a blocking thread and back: measured on small files, those hand-offs
//! (about a hundred futex calls per file) cost more than the transfer. The
//! slow call, fsync, still goes to the blocking pool.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Bytes between two starts of writeback.
const WRITEBACK_EVERY: u64 = 64 * 1024 * 1024;

pub struct DirectFile {
    pub file: std::fs::File,
    since_writeback: u64,
    /// The first write error. Transports report a failing sink as their own
    /// error; the caller looks here to know the local disk failed, and then
    /// discards the file instead of resuming it.
    pub write_error: Option<std::io::Error>,
}

impl DirectFile {
    pub fn new(file: std::fs::File) -> Self {
        Self {
            file,
            since_writeback: 0,
            write_error: None,
        }
    }

    /// Starts the kernel's writeback every [`WRITEBACK_EVERY`] bytes
    /// (`sync_file_range(2)` with `SYNC_FILE_RANGE_WRITE` starts the writes
    /// and does not wait). Without it a large download sits dirty in the
    /// page cache until the final fsync, which then writes the whole file
    /// while nothing else happens; with it the disk works while the network
    /// does, and the fsync finds little left.
    fn count(&mut self, n: usize) {
        self.since_writeback += n as u64;
        if self.since_writeback >= WRITEBACK_EVERY {
            self.since_writeback = 0;
            // SAFETY: the descriptor is open for as long as `self.file` is.
            // A failure only means no head start for the final fsync.
            unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
            };
        }
    }
}

impl AsyncWrite for DirectFile {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = this.file.write(buf);
        if let Some(n) = written(&r, &mut this.write_error) {
            this.count(n);
        }
        Poll::Ready(r)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What every direct write does after its system call: written bytes are
/// progress (the tally and the watchdog's beat); the first error is kept
/// as a copy in `first_error` (`io::Error` is not `Clone`), for the caller
/// that must tell a local failure from the transport's. Returns the bytes
/// written.
pub(super) fn written(
    r: &std::io::Result<usize>,
    first_error: &mut Option<std::io::Error>,
) -> Option<usize> {
    match r {
        Ok(n) => {
            crate::progress::tally().bytes(*n as u64);
            crate::progress::moved();
            Some(*n)
        }
        Err(e) => {
            if first_error.is_none() {
                *first_error = Some(match e.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(e.kind(), e.to_string()),
                });
            }
            None
        }
    }
}

/// fsync on the blocking pool, giving the file back.
pub async fn sync(file: std::fs::File) -> std::io::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || file.sync_all().map(|()| file))
        .await
        .map_err(std::io::Error::other)?
}
