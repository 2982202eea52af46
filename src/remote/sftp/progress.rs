//! `io_timeout` as "nothing heard for this long". A deadline per request
//! that starts when the request is sent would, with many reads in flight
//! on a slow link, expire the last ones while bytes still flow. ferry
//! therefore counts the bytes the SFTP channel delivers, and fails a
//! request only when the channel has been silent for `io_timeout` since
//! the request was made.

use super::wire::Error as SftpError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When the SFTP channel last delivered bytes, shared by every request on it.
#[derive(Clone)]
pub struct Watch {
    base: Instant,
    /// Milliseconds after `base` of the last bytes received.
    last_ms: Arc<AtomicU64>,
    io_timeout: Duration,
}

impl Watch {
    pub fn new(io_timeout: Duration) -> Self {
        Watch {
            base: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
            io_timeout,
        }
    }

    pub fn io_timeout(&self) -> Duration {
        self.io_timeout
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Runs `request`, failing with [`SftpError::Timeout`] once the channel
    /// has brought no byte for `io_timeout` since the call began.
    pub async fn within<T>(
        &self,
        request: impl Future<Output = Result<T, SftpError>>,
    ) -> Result<T, SftpError> {
        let began = self.now_ms();
        tokio::pin!(request);
        loop {
            let heard = self.last_ms.load(Ordering::Relaxed).max(began);
            let deadline = self.base + Duration::from_millis(heard) + self.io_timeout;
            tokio::select! {
                r = &mut request => return r,
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if self.last_ms.load(Ordering::Relaxed) <= heard {
                        return Err(SftpError::Timeout);
                    }
                }
            }
        }
    }

    /// The channel stream, counting what it delivers.
    pub fn counting<S>(&self, inner: S) -> Counting<S> {
        Counting {
            inner,
            watch: self.clone(),
        }
    }
}

pub struct Counting<S> {
    inner: S,
    watch: Watch,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = self.watch.now_ms();
            self.watch.last_ms.fetch_max(now, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How many bytes of requests a transfer keeps in flight. It starts at two
/// requests and grows by what each answer brings (doubling per round trip),
/// up to what the link, at the rate measured so far, delivers in half an
/// `io_timeout`, and never past `max`. On loopback that is `max` within a
/// few round trips; on a slow link the queue stays short enough that no
/// request waits long behind the others.
pub struct Window {
    began: Instant,
    received: u64,
    allowed: u64,
    floor: u64,
    max: u64,
    io_timeout: Duration,
}

impl Window {
    pub fn new(chunk: u32, io_timeout: Duration, max: u64) -> Self {
        let floor = 2 * u64::from(chunk.max(1));
        Window {
            began: Instant::now(),
            received: 0,
            allowed: floor,
            floor,
            max: max.max(floor),
            io_timeout,
        }
    }

    pub fn allowed(&self) -> u64 {
        self.allowed
    }

    /// How long the next read request may be: OpenSSH's 32 KiB until the
    /// first answer, then what the link delivers in a quarter of a second,
    /// up to `chunk`. On loopback that is `chunk` after one round trip; on
    /// a slow link an answer arrives every fraction of a second, so a cut
    /// loses little and the next attempt resumes close to where it broke.
    pub fn request_len(&self, chunk: u32) -> u32 {
        const FIRST: u64 = 32 * 1024;
        let chunk = u64::from(chunk.max(1));
        if self.received == 0 {
            return FIRST.min(chunk) as u32;
        }
        let secs = self.began.elapsed().as_secs_f64().max(1e-3);
        let quarter = (self.received as f64 / secs / 4.0) as u64;
        quarter.clamp(FIRST.min(chunk), chunk) as u32
    }

    pub fn answered(&mut self, bytes: u64) {
        self.received += bytes;
        let secs = self.began.elapsed().as_secs_f64().max(1e-3);
        let drains = self.received as f64 / secs * self.io_timeout.as_secs_f64() / 2.0;
        let cap = (drains as u64).clamp(self.floor, self.max);
        self.allowed = (self.allowed + bytes).min(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_start_small_and_follow_the_link() {
        let chunk = 255 * 1024;
        let mut w = Window::new(chunk, Duration::from_secs(10), 8 << 20);
        assert_eq!(w.request_len(chunk), 32 * 1024);
        // A slow link: 40 KB in about a second -> a quarter second's worth,
        // never below the first request's size.
        w.began = Instant::now() - Duration::from_secs(1);
        w.answered(40_000);
        assert_eq!(w.request_len(chunk), 32 * 1024);
        // A fast one: the server's largest request.
        w.answered(500_000_000);
        assert_eq!(w.request_len(chunk), chunk);
    }
}
