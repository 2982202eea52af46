//! A local file written straight from async code. A write of up to 256 KiB
//! into the page cache takes microseconds, while tokio::fs hands every call
//! to a blocking thread and back: measured on small files, those hand-offs
//! (about a hundred futex calls per file) cost more than the transfer. The
//! slow call, fsync, still goes to the blocking pool.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

pub struct DirectFile(pub std::fs::File);

impl AsyncWrite for DirectFile {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.get_mut().0.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// fsync on the blocking pool, giving the file back.
pub async fn sync(file: std::fs::File) -> std::io::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || file.sync_all().map(|()| file))
        .await
        .map_err(std::io::Error::other)?
}
