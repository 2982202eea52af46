//! Progress beats: the mark a rule's work leaves each time it moves (a poll
//! starts, bytes reach a local file, a file's step is committed). The
//! daemon's watchdog reads them; ARCHITECTURE.md, "Watchdog", says why
//! these points and which bound.

use std::future::Future;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

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
