//! The progress line of `ferry once` on a terminal: files and bytes done of
//! what the polls found due, and the current rate, from the process's
//! [`crate::progress::Tally`]. Silent when stderr is not a terminal or
//! when systemd runs the process (its journal wants log lines, not
//! redraws).
//!
//! Log lines written while the line shows go around it
//! ([`crate::logging`] asks [`suspended`]), so neither garbles the other.

use crate::progress::{Counts, tally};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The line while it shows.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(250);
/// The rate is measured over this much of the recent past.
const RATE_OVER: Duration = Duration::from_secs(2);

/// Whether a progress line belongs on this stderr.
pub fn wanted() -> bool {
    let under_systemd =
        std::env::var_os("INVOCATION_ID").is_some() || std::env::var_os("JOURNAL_STREAM").is_some();
    std::io::stderr().is_terminal() && !under_systemd
}

/// Shows the line until the returned guard is dropped; a guard that does
/// nothing when the line is not [`wanted`].
pub fn start() -> Guard {
    if !wanted() {
        return Guard(None);
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
    *BAR.lock().expect("bar lock") = Some(bar.clone());
    let task = tokio::spawn(async move {
        let mut rate = Rate::default();
        loop {
            let c = tally().read();
            bar.set_message(describe(&c, rate.sample(Instant::now(), c.bytes)));
            bar.tick();
            tokio::time::sleep(TICK).await;
        }
    });
    Guard(Some(task))
}

/// Ends the line when dropped, leaving the terminal as it was before it.
pub struct Guard(Option<tokio::task::JoinHandle<()>>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            if let Some(bar) = BAR.lock().expect("bar lock").take() {
                bar.finish_and_clear();
            }
        }
    }
}

/// Runs `write` with the line cleared, and draws it again after: how a log
/// line reaches the terminal while the line shows.
pub fn suspended<T>(write: impl FnOnce() -> T) -> T {
    let bar = BAR.lock().expect("bar lock").clone();
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// `12/40 files, 3.1 MiB/9.8 MiB, 2.0 MiB/s`
fn describe(c: &Counts, per_second: Option<u64>) -> String {
    let mut s = format!(
        "{}/{} files, {}/{}",
        c.finished,
        c.due_files,
        HumanBytes(c.bytes),
        HumanBytes(c.due_bytes)
    );
    if let Some(r) = per_second {
        s.push_str(&format!(", {}/s", HumanBytes(r)));
    }
    s
}

/// Bytes per second over the last [`RATE_OVER`].
#[derive(Default)]
struct Rate(VecDeque<(Instant, u64)>);

impl Rate {
    fn sample(&mut self, now: Instant, bytes: u64) -> Option<u64> {
        self.0.push_back((now, bytes));
        while self
            .0
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_OVER)
        {
            self.0.pop_front();
        }
        let (t0, b0) = *self.0.front()?;
        let span = now.duration_since(t0).as_secs_f64();
        (span >= 0.2).then(|| ((bytes - b0) as f64 / span) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_files_bytes_and_rate() {
        let c = Counts {
            due_files: 40,
            due_bytes: 10 * 1024 * 1024,
            finished: 12,
            bytes: 3 * 1024 * 1024,
        };
        assert_eq!(
            describe(&c, Some(2 * 1024 * 1024)),
            "12/40 files, 3.00 MiB/10.00 MiB, 2.00 MiB/s"
        );
        assert_eq!(describe(&c, None), "12/40 files, 3.00 MiB/10.00 MiB");
    }

    #[test]
    fn the_rate_covers_the_recent_past_only() {
        let mut r = Rate::default();
        let t = Instant::now();
        assert_eq!(r.sample(t, 0), None, "one sample is no rate");
        assert_eq!(r.sample(t + Duration::from_secs(1), 1000), Some(1000));
        // Ten seconds later the first two samples are forgotten.
        r.sample(t + Duration::from_secs(10), 1000);
        assert_eq!(r.sample(t + Duration::from_secs(11), 5000), Some(4000));
    }
}
