//! One task per rule, polling at its slots (a phase of its interval taken
//! from its name, see [`super::slots`]) with a little jitter, backing off
//! while its polls fail. Tasks survive a reload: a changed rule is handed to
//! its running task, which applies it at its next slot, so transfers in
//! flight are never dropped and a reload fires no herd. Each task reports
//! its life to the watchdog and each poll's outcome to the status line.

use super::slots;
use super::status::StatusBoard;
use super::watchdog::{AliveGuard, Liveness, RuleLife};
use crate::config::{Protocol, Rule};
use crate::engine::{Engine, Rewinds};
use crate::watch::DirWatch;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct RuleTask {
    rule: watch::Sender<Arc<Rule>>,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

/// A way to make a rule's task poll now instead of at its next slot: the
/// node's renewals use it when another node's leases on the rule's files
/// ran out, so a dead node's work is taken over within a lease, not a
/// lease plus an interval.
#[derive(Clone, Default)]
pub struct Nudges {
    notifies: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    rewinds: Rewinds,
}

impl Nudges {
    fn add(&self, rule: &str) -> Arc<Notify> {
        let mut map = self.notifies.lock().expect("nudges lock");
        map.entry(rule.to_string()).or_default().clone()
    }

    fn remove(&self, rule: &str) {
        self.notifies.lock().expect("nudges lock").remove(rule);
    }

    /// Polls `rule` as soon as its task is free (at once when it waits;
    /// right after the poll it is in otherwise), and makes a poll in
    /// progress go back to its first due row after its current chunk, so
    /// rows behind its cursor are not left for the next poll. False: no
    /// such rule runs.
    pub fn nudge(&self, rule: &str) -> bool {
        let notify = self
            .notifies
            .lock()
            .expect("nudges lock")
            .get(rule)
            .cloned();
        notify
            .map(|n| {
                self.rewinds.ask(rule);
                n.notify_one()
            })
            .is_some()
    }
}

pub struct Scheduler {
    engine: Arc<Engine>,
    stop: CancellationToken,
    tasks: HashMap<String, RuleTask>,
    retired: Vec<JoinHandle<()>>,
    liveness: Liveness,
    status: Arc<StatusBoard>,
    nudges: Nudges,
}

impl Scheduler {
    pub fn new(engine: Arc<Engine>, stop: CancellationToken) -> Self {
        let nudges = Nudges {
            notifies: Arc::default(),
            rewinds: engine.rewinds(),
        };
        Self {
            engine,
            stop,
            tasks: HashMap::new(),
            retired: Vec::new(),
            liveness: Liveness::default(),
            status: Arc::default(),
            nudges,
        }
    }

    /// Makes rules poll now (see [`Nudges`]).
    pub fn nudges(&self) -> Nudges {
        self.nudges.clone()
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
        self.engine.apply_bandwidth(rules);
        let mut keep = HashMap::new();
        for rule in rules {
            match self.tasks.remove(&rule.name) {
                Some(task) => {
                    if **task.rule.borrow() != **rule {
                        tracing::info!(rule = %rule.name, "rule changed; applying at its next slot");
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
            self.nudges.remove(&name);
            self.retired.push(task.handle);
        }
        self.tasks = keep;
        self.status.set_rules(self.tasks.len());
    }

    fn spawn(&self, rule: Arc<Rule>) -> RuleTask {
        let life = self.liveness.add(&rule.name);
        let nudge = self.nudges.add(&rule.name);
        // Watched from the start, not from the first poll (up to 10 s
        // later), and before the task runs: a file moved into an outbox
        // once `ferry run` said it started goes at once, as any later one.
        let mut dir_watch = None;
        refresh_watch(&mut dir_watch, &rule);
        let (tx, rx) = watch::channel(rule);
        let stop = self.stop.child_token();
        let handle = tokio::spawn(rule_loop(
            self.engine.clone(),
            rx,
            stop.clone(),
            life,
            self.status.clone(),
            nudge,
            dir_watch,
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
    nudge: Arc<Notify>,
    mut watch: Option<DirWatch>,
) {
    let _alive = AliveGuard::new(life.clone());
    let first = {
        let rule = rx.borrow();
        slots::first_poll(&rule.name, rule.interval, SystemTime::now())
    };
    let mut due = Instant::now() + first;
    let mut failures = 0u32;
    loop {
        if !wait_for_turn(&mut rx, &stop, watch.as_ref(), &nudge, due).await {
            return;
        }
        let rule = rx.borrow_and_update().clone();
        refresh_watch(&mut watch, &rule);
        tracing::debug!(rule = %rule.name, "poll starts");
        let started = SystemTime::now();
        life.poll_starts(&rule);
        let poll = engine.poll_watched(&rule, &stop, watch.as_ref());
        let report = crate::progress::within(life.beat.clone(), poll).await;
        life.poll_ends();
        status.poll_ended(&rule.name, &report);
        // The next poll is planned after this one ended (never on a fixed
        // tick), so a slow poll never queues up missed ones behind it.
        let wait = if report.error.is_some() {
            failures = failures.saturating_add(1);
            let wait = backoff(rule.interval, failures);
            // Equal jitter: rules failing against one server drift apart.
            let wait = wait / 2 + jitter(wait / 2, 1.0);
            tracing::warn!(rule = %rule.name, failures, retry_in_ms = wait.as_millis() as u64, "poll failed; backing off");
            wait
        } else {
            failures = 0;
            let wait = next_slot(&rule, started);
            // A file closed less than stable_for ago is looked at again then.
            report
                .next_ready
                .map_or(wait, |d| wait.min(d + Duration::from_millis(20)))
        };
        due = Instant::now() + wait;
    }
}

/// The wait from now until the rule's next slot ([`slots`]) after the poll
/// that started at `started`, plus a little jitter. The slot is sought from
/// half an interval after that start at the earliest, so a clock that
/// moved a hair between the timer and the wall clock never makes a rule
/// poll twice for one slot; a poll longer than that skips to the slot
/// after its end.
fn next_slot(rule: &Rule, started: SystemTime) -> Duration {
    let now = SystemTime::now();
    let from = now.max(started + rule.interval / 2);
    let ahead = from.duration_since(now).unwrap_or_default();
    let slot = ahead + slots::until_slot(&rule.name, rule.interval, from);
    slot + jitter(rule.interval.mul_f64(JITTER).min(MAX_JITTER), 1.0)
}

/// Jitter on top of a rule's slot, as a fraction of its interval, at most
/// [`MAX_JITTER`]: enough that nodes sharing one database do not meet on
/// every slot, too little to bunch rules the slots spread.
const JITTER: f64 = 0.02;
const MAX_JITTER: Duration = Duration::from_secs(1);

/// Sleeps until `due`, or until a directory event (then a short settle,
/// gathering a burst into one poll). Returns false when stopped. A changed
/// rule (a reload) moves `due` to the changed rule's next slot instead of
/// polling at once: a reload that touches every rule, as a changed server
/// block does, must not fire them all together.
async fn wait_for_turn(
    rx: &mut watch::Receiver<Arc<Rule>>,
    stop: &CancellationToken,
    watch: Option<&DirWatch>,
    nudge: &Notify,
    mut due: Instant,
) -> bool {
    let wake = watch.map(DirWatch::wake);
    // The scheduler drops a rule's sender only after stopping it; until the
    // stop is seen, a closed channel must not spin this loop.
    let mut open = true;
    loop {
        let event = async {
            match &wake {
                Some(w) => w.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due) => return true,
            changed = rx.changed(), if open => {
                if changed.is_err() {
                    open = false;
                    continue;
                }
                let rule = rx.borrow_and_update().clone();
                due = Instant::now() + slots::until_slot(&rule.name, rule.interval, SystemTime::now());
            }
            _ = event => {
                // Events come in bursts (a copy of many files): one poll for them.
                tokio::time::sleep(EVENT_SETTLE).await;
                return true;
            }
            _ = nudge.notified() => return true,
            _ = stop.cancelled() => return false,
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
