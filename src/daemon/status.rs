//! The one-line `STATUS=` that `systemctl status ferry` shows: how many
//! rules run, how many transfers are in flight, and the last poll error, so
//! an operator sees trouble without reading the journal. Rule tasks record
//! their polls here; one task sends the line when it changed, at most once
//! a second, because systemd handles every datagram in PID 1.

use crate::engine::{Engine, PollReport};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How often the line is looked at, and so the most it is sent.
const PERIOD: Duration = Duration::from_secs(1);

/// A poll error longer than this is cut: the line must stay one short line.
const MAX_ERROR_CHARS: usize = 160;

/// What the status line says besides the live transfer count.
#[derive(Default)]
pub struct StatusBoard {
    inner: Mutex<Board>,
}

#[derive(Default)]
struct Board {
    rules: usize,
    /// The rule whose poll failed last, when, and why; cleared when that
    /// rule polls successfully again or is removed.
    last_error: Option<LastError>,
}

struct LastError {
    rule: String,
    at: SystemTime,
    message: String,
}

impl StatusBoard {
    pub fn set_rules(&self, rules: usize) {
        self.lock().rules = rules;
    }

    /// Records the end of one poll of `rule`.
    pub fn poll_ended(&self, rule: &str, report: &PollReport) {
        let mut board = self.lock();
        match &report.error {
            Some(message) => {
                board.last_error = Some(LastError {
                    rule: rule.to_string(),
                    at: SystemTime::now(),
                    message: message.clone(),
                })
            }
            None => board.forget_error_of(rule),
        }
    }

    /// A removed rule's error is no longer news.
    pub fn rule_removed(&self, rule: &str) {
        self.lock().forget_error_of(rule);
    }

    /// The line, e.g. `3 rules, 1 of 8 transfers in flight; last error
    /// 2026-12-01T10:15:00Z partner-a: connection refused`.
    pub fn line(&self, in_flight: usize, max_transfers: usize) -> String {
        let board = self.lock();
        let rules = match board.rules {
            1 => "1 rule".to_string(),
            n => format!("{n} rules"),
        };
        let error = match &board.last_error {
            None => "no errors".to_string(),
            Some(e) => format!(
                "last error {} {}: {}",
                humantime::format_rfc3339_seconds(e.at),
                e.rule,
                one_line(&e.message)
            ),
        };
        format!("{rules}, {in_flight} of {max_transfers} transfers in flight; {error}")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        // A panic while holding this lock leaves plain data behind: use it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Board {
    fn forget_error_of(&mut self, rule: &str) {
        if self.last_error.as_ref().is_some_and(|e| e.rule == rule) {
            self.last_error = None;
        }
    }
}

/// `message` with line breaks and other control characters as spaces, cut
/// to [`MAX_ERROR_CHARS`]: systemd shows only the first line.
fn one_line(message: &str) -> String {
    let mut line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_CHARS)
        .collect();
    if message.chars().count() > MAX_ERROR_CHARS {
        line.push_str("...");
    }
    line
}

/// Sends the status line whenever it changed from `sent` (the line that
/// went with READY=1), checked every [`PERIOD`], until `stop`.
pub fn spawn(board: Arc<StatusBoard>, engine: Arc<Engine>, sent: String, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut last = sent;
        let start = tokio::time::Instant::now() + PERIOD;
        let mut tick = tokio::time::interval_at(start, PERIOD);
        // After a stall there is no backlog to catch up on: one look is enough.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let line = board.line(engine.transfers_in_flight(), engine.max_transfers());
            if line != last {
                super::notify(&[sd_notify::NotifyState::Status(&line)]);
                last = line;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(error: &str) -> PollReport {
        PollReport {
            error: Some(error.into()),
            ..PollReport::default()
        }
    }

    #[test]
    fn the_line_names_rules_transfers_and_the_last_error_until_that_rule_recovers() {
        let board = StatusBoard::default();
        board.set_rules(2);
        assert_eq!(
            board.line(0, 8),
            "2 rules, 0 of 8 transfers in flight; no errors"
        );
        board.poll_ended("a", &failed("connection refused\nby peer"));
        let line = board.line(1, 8);
        assert!(
            line.starts_with("2 rules, 1 of 8 transfers in flight; last error 2"),
            "{line}"
        );
        assert!(line.ends_with(" a: connection refused by peer"), "{line}");
        board.poll_ended("b", &PollReport::default());
        assert!(
            board.line(0, 8).contains("last error"),
            "b's success is not a's"
        );
        board.poll_ended("a", &PollReport::default());
        assert!(board.line(0, 8).ends_with("no errors"));
    }

    #[test]
    fn a_long_error_is_cut_and_a_removed_rule_forgets_its_error() {
        let board = StatusBoard::default();
        board.set_rules(1);
        board.poll_ended("a", &failed(&"x".repeat(1000)));
        let line = board.line(0, 1);
        assert!(line.starts_with("1 rule, "), "{line}");
        assert!(line.len() < 250 && line.ends_with("..."), "{line}");
        board.rule_removed("a");
        assert!(board.line(0, 1).ends_with("no errors"));
    }
}
