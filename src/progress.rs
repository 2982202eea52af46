//! Progress beats: the mark a rule's work leaves each time it moves (a poll
//! starts, bytes reach a local file, a file's step is committed). The
//! daemon's watchdog reads them; ARCHITECTURE.md, "Watchdog", says why
//! these points and which bound.
//!
//! And the tally of work in this process (files due and finished, bytes
//! moved), which the progress line of `ferry once` shows. Counting is an
//! atomic add, so it is always on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};

tokio::task_local! {
    static BEAT: Beat;
}

/// When a rule's work last moved, in milliseconds of a monotonic clock.
#[derive(Clone, Default, Debug)]
pub struct Beat(Arc<AtomicU64>);

impl Beat {
    pub fn touch(&self) {
        self.0.store(clock_ms(), Ordering::Relaxed);
    }

    /// How long ago it last moved.
    pub fn since(&self) -> Duration {
        Duration::from_millis(clock_ms().saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

/// Marks progress for the rule whose task runs this code; elsewhere
/// (tests, `ferry once`) it does nothing.
pub fn moved() {
    let _ = BEAT.try_with(Beat::touch);
}

/// Runs `work` with `beat` as the mark [`moved`] leaves.
pub async fn within<F: Future>(beat: Beat, work: F) -> F::Output {
    BEAT.scope(beat, work).await
}

/// Work counted since the process started.
#[derive(Debug, Default)]
pub struct Tally {
    due_files: AtomicU64,
    due_bytes: AtomicU64,
    finished: AtomicU64,
    bytes: AtomicU64,
}

/// What [`Tally::read`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub due_files: u64,
    pub due_bytes: u64,
    /// Files whose attempt ended (done, failed or left for a retry).
    pub finished: u64,
    /// Bytes written to local files or to servers.
    pub bytes: u64,
}

static TALLY: Tally = Tally {
    due_files: AtomicU64::new(0),
    due_bytes: AtomicU64::new(0),
    finished: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
};

/// The process's tally.
pub fn tally() -> &'static Tally {
    &TALLY
}

impl Tally {
    /// Files a poll is about to work on, and their listed size.
    pub fn due(&self, files: u64, bytes: u64) {
        self.due_files.fetch_add(files, Ordering::Relaxed);
        self.due_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn finished(&self, files: u64) {
        self.finished.fetch_add(files, Ordering::Relaxed);
    }

    pub fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn read(&self) -> Counts {
        Counts {
            due_files: self.due_files.load(Ordering::Relaxed),
            due_bytes: self.due_bytes.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Bytes of an upload that left for the server: into the tally, and a
/// progress beat.
pub fn sent(n: u64) {
    if n > 0 {
        TALLY.bytes(n);
        moved();
    }
}

/// A reader that counts what passes through it into the tally: an upload's
/// bytes, as they leave for the server.
pub struct Counted<R>(pub R);

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.0).poll_read(cx, buf);
        sent((buf.filled().len() - before) as u64);
        r
    }
}

fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counted_reads_reach_the_tally() {
        use tokio::io::AsyncReadExt;
        let t = tally();
        let before = t.read().bytes;
        let mut out = Vec::new();
        Counted(&b"twelve bytes"[..])
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, b"twelve bytes");
        // Other tests in this process count too: at least ours arrived.
        assert!(t.read().bytes >= before + 12);
    }

    #[tokio::test]
    async fn moved_marks_only_the_beat_in_scope() {
        let beat = Beat::default();
        beat.touch();
        tokio::time::sleep(Duration::from_millis(30)).await;
        moved(); // outside any scope: nothing to mark
        assert!(beat.since() >= Duration::from_millis(30));
        within(beat.clone(), async { moved() }).await;
        assert!(beat.since() < Duration::from_millis(30));
    }
}
