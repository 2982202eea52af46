//! A sink and a source that move bytes only as fast as a [`Throttle`]
//! allows: each write or read first takes its bytes (a chunk at most)
//! from the limits, so the transport behind sees a slower disk or network
//! and keeps its own protocol as it is.

use super::limit::Throttle;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

type Grant = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Bytes granted but not moved yet, and the grant being waited for.
#[derive(Default)]
struct Credit {
    bytes: u64,
    asked: u64,
    waiting: Option<Grant>,
}

impl Credit {
    /// Ready once there is credit for up to `want` bytes; returns how many
    /// may move now. With no limit in force, all of `want`.
    fn poll_grant(
        &mut self,
        cx: &mut Context<'_>,
        throttle: &Throttle,
        want: usize,
    ) -> Poll<usize> {
        loop {
            if self.bytes > 0 {
                return Poll::Ready(want.min(self.bytes as usize));
            }
            if self.waiting.is_none() {
                let Some(chunk) = throttle.chunk() else {
                    return Poll::Ready(want);
                };
                let ask = (want as u64).min(chunk).max(1);
                let t = throttle.clone();
                self.asked = ask;
                self.waiting = Some(Box::pin(async move { t.acquire(ask).await }));
            }
            let grant = self.waiting.as_mut().expect("set above");
            ready!(grant.as_mut().poll(cx));
            self.waiting = None;
            self.bytes = self.asked;
        }
    }

    fn spent(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_sub(n as u64);
    }
}

/// A throttled sink (a download's local file).
pub struct ThrottledWrite<W> {
    inner: W,
    throttle: Throttle,
    credit: Credit,
}

impl<W> ThrottledWrite<W> {
    pub fn new(inner: W, throttle: Throttle) -> Self {
        Self {
            inner,
            throttle,
            credit: Credit::default(),
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for ThrottledWrite<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        let n = ready!(this.credit.poll_grant(cx, &this.throttle, buf.len()));
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..n]))?;
        this.credit.spent(written);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A throttled source (an upload's local file).
pub struct ThrottledRead<R> {
    inner: R,
    throttle: Throttle,
    credit: Credit,
}

impl<R> ThrottledRead<R> {
    pub fn new(inner: R, throttle: Throttle) -> Self {
        Self {
            inner,
            throttle,
            credit: Credit::default(),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ThrottledRead<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = ready!(this.credit.poll_grant(cx, &this.throttle, buf.remaining()));
        if n == buf.remaining() {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            this.credit.spent(buf.filled().len() - before);
            return Poll::Ready(Ok(()));
        }
        // Read at most the grant: into a window of the caller's buffer
        // (initialised first, so no unsafe is needed to hand it back).
        let window = buf.initialize_unfilled_to(n);
        let mut part = ReadBuf::new(window);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
        let got = part.filled().len();
        buf.advance(got);
        this.credit.spent(got);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Bandwidth, Limit};
    use super::*;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn at(rate: u64) -> Throttle {
        Throttle::of(Limit::new("t", Bandwidth::constant(Some(rate))))
    }

    #[tokio::test]
    async fn a_throttled_sink_writes_everything_at_the_rate() {
        let mut out = Vec::new();
        let t0 = Instant::now();
        {
            let mut w = ThrottledWrite::new(&mut out, at(1_000_000));
            w.write_all(&vec![7u8; 400_000]).await.unwrap();
            w.flush().await.unwrap();
        }
        let took = t0.elapsed();
        assert_eq!(out.len(), 400_000);
        // 400 KB at 1 MB/s, less the first chunk (the burst).
        // The upper bound only says it is not stuck: these unit tests share
        // two cores with the PostgreSQL state tests, which once held them
        // back for 2 s. The rate itself is timed by tests/bandwidth.rs.
        assert!(
            took >= Duration::from_millis(280) && took < Duration::from_secs(10),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_throttled_source_reads_everything_at_the_rate() {
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let mut r = ThrottledRead::new(&data[..], at(1_000_000));
        let t0 = Instant::now();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        let took = t0.elapsed();
        assert_eq!(got, data);
        // The upper bound only says it is not stuck: these unit tests share
        // two cores with the PostgreSQL state tests, which once held them
        // back for 2 s. The rate itself is timed by tests/bandwidth.rs.
        assert!(
            took >= Duration::from_millis(180) && took < Duration::from_secs(10),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn without_a_limit_nothing_waits() {
        let data = vec![1u8; 10_000_000];
        let mut r = ThrottledRead::new(&data[..], Throttle::default());
        let t0 = Instant::now();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), data.len());
        assert!(t0.elapsed() < Duration::from_millis(500));
    }
}
