//! One task per rule, polling at its interval with jitter, backing off
//! while its polls fail. Tasks survive a reload: a changed rule is handed to
//! its running task, which applies it at its next poll, so transfers in
//! flight are never dropped. Each task reports its life to the watchdog
//! and each poll's outcome to the status line.

use super::status::StatusBoard;
use super::watchdog::{AliveGuard, Liveness, RuleLife};
use crate::config::{Protocol, Rule};
use crate::engine::Engine;
use crate::watch::DirWatch;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct RuleTask {
    rule: watch::Sender<Arc<Rule>>,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

pub struct Scheduler {
    engine: Arc<Engine>,
    stop: CancellationToken,
    tasks: HashMap<String, RuleTask>,
    retired: Vec<JoinHandle<()>>,
    liveness: Liveness,
    status: Arc<StatusBoard>,
}

impl Scheduler {
    pub fn new(engine: Arc<Engine>, stop: CancellationToken) -> Self {
        Self {
            engine,
            stop,
            tasks: HashMap::new(),
            retired: Vec::new(),
            liveness: Liveness::default(),
            status: Arc::default(),
        }
    }

    /// What the watchdog watches: every running rule task.
    pub fn liveness(&self) -> Liveness {
        self.liveness.clone()
    }

    /// What the status line reports: rule count and poll errors.
    pub fn status(&self) -> Arc<StatusBoard> {
        self.status.clone()
    }

    /// Makes the running rule set equal `rules`: new rules start, changed
    /// ones take effect at their next poll, removed ones finish their
    /// current poll and stop.
    pub fn apply(&mut self, rules: &[Arc<Rule>]) {
        let clocks = rules.iter().map(|r| (r.name.as_str(), r.interval));
        self.engine.metrics().set_rules(clocks);
        let mut keep = HashMap::new();
        for rule in rules {
            match self.tasks.remove(&rule.name) {
                Some(task) => {
                    if **task.rule.borrow() != **rule {
                        tracing::info!(rule = %rule.name, "rule changed; applying at its next poll");
                        task.rule.send_replace(rule.clone());
                    }
                    keep.insert(rule.name.clone(), task);
                }
                None => {
                    keep.insert(rule.name.clone(), self.spawn(rule.clone()));
                }
            }
        }
        for (name, task) in self.tasks.drain() {
            tracing::info!(rule = %name, "rule removed; it stops after its current poll");
            task.stop.cancel();
            self.liveness.remove(&name);
            self.status.rule_removed(&name);
            self.retired.push(task.handle);
        }
        self.tasks = keep;
        self.status.set_rules(self.tasks.len());
    }

    fn spawn(&self, rule: Arc<Rule>) -> RuleTask {
        let life = self.liveness.add(&rule.name);
        let (tx, rx) = watch::channel(rule);
        let stop = self.stop.child_token();
        let handle = tokio::spawn(rule_loop(
            self.engine.clone(),
            rx,
            stop.clone(),
            life,
            self.status.clone(),
        ));
        RuleTask {
            rule: tx,
            stop,
            handle,
        }
    }

    /// Waits for every rule task (after the stop token was cancelled).
    pub async fn join(self) {
        let handles = self
            .tasks
            .into_values()
            .map(|t| t.handle)
            .chain(self.retired);
        for h in handles {
            let _ = h.await;
        }
    }
}

async fn rule_loop(
    engine: Arc<Engine>,
    mut rx: watch::Receiver<Arc<Rule>>,
    stop: CancellationToken,
    life: Arc<RuleLife>,
    status: Arc<StatusBoard>,
) {
    let _alive = AliveGuard::new(life.clone());
    // A short random start delay spreads the first polls of many rules.
    let first = jitter(rx.borrow().interval.min(Duration::from_secs(1)), 1.0);
    tokio::select! {
        _ = tokio::time::sleep(first) => {}
        _ = stop.cancelled() => return,
    }
    let mut failures = 0u32;
    let mut watch: Option<DirWatch> = None;
    loop {
        let rule = rx.borrow_and_update().clone();
        refresh_watch(&mut watch, &rule);
        life.poll_starts(&rule);
        let poll = engine.poll_watched(&rule, &stop, watch.as_ref());
        let report = crate::progress::within(life.beat.clone(), poll).await;
        life.poll_ends();
        status.poll_ended(&rule.name, &report);
        // Sleeping after the poll (not on a fixed tick) means a slow poll
        // never queues up missed ones behind it.
        let wait = if report.error.is_some() {
            failures = failures.saturating_add(1);
            let wait = backoff(rule.interval, failures);
            // Equal jitter: rules failing against one server drift apart.
            let wait = wait / 2 + jitter(wait / 2, 1.0);
            tracing::warn!(rule = %rule.name, failures, retry_in_ms = wait.as_millis() as u64, "poll failed; backing off");
            wait
        } else {
            failures = 0;
            let wait = rule.interval + jitter(rule.interval, 0.1);
            // A file closed less than stable_for ago is looked at again then.
            report
                .next_ready
                .map_or(wait, |d| wait.min(d + Duration::from_millis(20)))
        };
        let wake = watch.as_ref().map(DirWatch::wake);
        let event = async {
            match &wake {
                Some(w) => w.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = rx.changed() => {}
            _ = event => {
                // Events come in bursts (a copy of many files): one poll for them.
                tokio::time::sleep(EVENT_SETTLE).await;
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// How long a rule waits after an event before it polls, gathering the
/// events of a burst into one poll.
const EVENT_SETTLE: Duration = Duration::from_millis(50);

/// Local sources (send outboxes, local watch rules) are watched for
/// events; a watch that cannot start (no inotify, limits reached) leaves
/// the rule to its rescans, with a warning.
fn refresh_watch(watch: &mut Option<DirWatch>, rule: &Rule) {
    if rule.server.protocol != Protocol::Local {
        *watch = None;
        return;
    }
    let root = std::path::Path::new(&rule.remote_dir);
    if watch.as_ref().is_some_and(|w| w.root() == root) {
        return;
    }
    *watch = match DirWatch::start(root, rule.recursive) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(rule = %rule.name, dir = %rule.remote_dir, error = %e, "cannot watch the directory for events; relying on rescans");
            None
        }
    };
}

/// The longest a failing rule waits between polls, unless its interval is longer.
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The pause after `failures` polls failed in a row: the interval doubled
/// for each failure after the first, up to [`BACKOFF_CAP`] (or the interval,
/// if longer). A server that refuses connections is not hammered.
fn backoff(interval: Duration, failures: u32) -> Duration {
    let doubled = interval.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(BACKOFF_CAP.max(interval))
}

/// A random duration in `[0, d * fraction)`.
fn jitter(d: Duration, fraction: f64) -> Duration {
    d.mul_f64(fastrand::f64() * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(10), 1), s(10));
        assert_eq!(backoff(s(10), 2), s(20));
        assert_eq!(backoff(s(10), 4), s(80));
        assert_eq!(backoff(s(10), 9), BACKOFF_CAP);
        assert_eq!(backoff(s(10), u32::MAX), BACKOFF_CAP);
        // A rule that polls rarely never polls more often for failing.
        assert_eq!(backoff(s(3600), 5), s(3600));
    }
}
