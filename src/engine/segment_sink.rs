//! Where one range of a segmented download lands: positional writes into
//! the shared temporary file, counted so the checkpoints know how far the
//! range got. A write into the page cache takes microseconds, so it is made
//! straight from async code, as `direct.rs` does for a single stream.

use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

pub struct RangeSink {
    file: Arc<std::fs::File>,
    /// The file offset of the next byte.
    pos: u64,
    /// Bytes of the range written, from its start: read by the checkpoints,
    /// and only ever raised after the bytes are in the file.
    done: Arc<AtomicU64>,
    /// The first write error: the transport reports a failing sink as its
    /// own error, and the caller looks here to tell a local failure.
    pub write_error: Option<std::io::Error>,
}

impl RangeSink {
    pub fn new(file: Arc<std::fs::File>, start: u64, done: Arc<AtomicU64>) -> Self {
        let pos = start + done.load(Ordering::Acquire);
        Self {
            file,
            pos,
            done,
            write_error: None,
        }
    }
}

impl AsyncWrite for RangeSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = this.file.write_at(buf, this.pos);
        if let Some(n) = super::direct::written(&r, &mut this.write_error) {
            this.pos += n as u64;
            this.done.fetch_add(n as u64, Ordering::Release);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn ranges_land_at_their_offsets_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(std::fs::File::create_new(dir.path().join("t")).unwrap());
        let (a, b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(2)));
        let mut second = RangeSink::new(file.clone(), 4, b.clone());
        second.write_all(b"gh").await.unwrap();
        let mut first = RangeSink::new(file.clone(), 0, a.clone());
        first.write_all(b"abcd").await.unwrap();
        let mut out = [0u8; 8];
        file.read_exact_at(&mut out, 0).unwrap();
        assert_eq!(&out, b"abcd\0\0gh");
        assert_eq!(
            (a.load(Ordering::Acquire), b.load(Ordering::Acquire)),
            (4, 4)
        );
    }
}
