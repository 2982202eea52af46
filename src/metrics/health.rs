//! Rule clocks behind `/healthz`: a rule is healthy while its last
//! successful poll ended within three of its intervals. A rule that has not
//! polled yet counts from when it was added (the daemon's start, or the
//! reload that added it), so a fresh start is healthy until it is late.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many intervals a rule may go without a successful poll.
const INTERVALS: u32 = 3;

#[derive(Debug, Clone, Copy)]
struct Clock {
    interval: Duration,
    /// The last successful poll's end, or when the rule was added.
    since: Instant,
    polled: bool,
}

#[derive(Default)]
pub(super) struct Clocks(Mutex<HashMap<String, Clock>>);

/// A rule that is late, as `/healthz` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub rule: String,
    /// Time since its last successful poll (or since it was added).
    pub late_for: Duration,
    pub polled: bool,
}

impl Clocks {
    /// Keeps the clocks of rules still present (with their new interval),
    /// starts those of new rules now, and forgets removed ones.
    pub(super) fn set_rules<'a>(&self, rules: impl IntoIterator<Item = (&'a str, Duration)>) {
        self.set_rules_at(rules, Instant::now());
    }

    fn set_rules_at<'a>(&self, rules: impl IntoIterator<Item = (&'a str, Duration)>, now: Instant) {
        let mut clocks = self.0.lock().expect("clocks lock");
        let old = std::mem::take(&mut *clocks);
        for (name, interval) in rules {
            let clock = match old.get(name) {
                Some(c) => Clock { interval, ..*c },
                None => Clock {
                    interval,
                    since: now,
                    polled: false,
                },
            };
            clocks.insert(name.to_string(), clock);
        }
    }

    pub(super) fn polled(&self, rule: &str) {
        self.polled_at(rule, Instant::now());
    }

    fn polled_at(&self, rule: &str, now: Instant) {
        if let Some(c) = self.0.lock().expect("clocks lock").get_mut(rule) {
            c.since = now;
            c.polled = true;
        }
    }

    /// The late rules, by name.
    pub(super) fn stale(&self, now: Instant) -> Vec<Stale> {
        let clocks = self.0.lock().expect("clocks lock");
        let mut late: Vec<Stale> = clocks
            .iter()
            .filter_map(|(name, c)| {
                let age = now.saturating_duration_since(c.since);
                (age > c.interval * INTERVALS).then(|| Stale {
                    rule: name.clone(),
                    late_for: age,
                    polled: c.polled,
                })
            })
            .collect();
        late.sort_by(|a, b| a.rule.cmp(&b.rule));
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_stale_after_three_intervals_without_a_successful_poll() {
        let s = Duration::from_secs;
        let t0 = Instant::now();
        let clocks = Clocks::default();
        clocks.set_rules_at([("a", s(10)), ("b", s(60))], t0);
        assert!(clocks.stale(t0 + s(30)).is_empty(), "not late yet");
        let late = clocks.stale(t0 + s(31));
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].rule, "a");
        assert!(!late[0].polled);
        clocks.polled_at("a", t0 + s(31));
        assert!(clocks.stale(t0 + s(61)).is_empty());
        assert_eq!(clocks.stale(t0 + s(62))[0].rule, "a");
        assert!(clocks.stale(t0 + s(62))[0].polled);
        // b: 3 x 60 s.
        let names: Vec<_> = clocks
            .stale(t0 + s(181))
            .into_iter()
            .map(|x| x.rule)
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn a_reload_keeps_clocks_starts_new_rules_and_forgets_removed_ones() {
        let s = Duration::from_secs;
        let t0 = Instant::now();
        let clocks = Clocks::default();
        clocks.set_rules_at([("a", s(10)), ("gone", s(10))], t0);
        clocks.set_rules_at([("a", s(20)), ("new", s(10))], t0 + s(25));
        // a keeps its clock, with the new interval: 3 x 20 s from t0.
        assert!(clocks.stale(t0 + s(55)).is_empty());
        let names: Vec<_> = clocks
            .stale(t0 + s(61))
            .into_iter()
            .map(|x| x.rule)
            .collect();
        assert_eq!(names, ["a", "new"]);
    }
}
