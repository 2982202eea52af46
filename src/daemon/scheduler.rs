//! One task per rule, polling at its interval with jitter. Tasks survive a
//! reload: a changed rule is handed to its running task, which applies it
//! at its next poll, so transfers in flight are never dropped.

use crate::config::Rule;
use crate::engine::Engine;
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
}

impl Scheduler {
    pub fn new(engine: Arc<Engine>, stop: CancellationToken) -> Self {
        Self {
            engine,
            stop,
            tasks: HashMap::new(),
            retired: Vec::new(),
        }
    }

    /// Makes the running rule set equal `rules`: new rules start, changed
    /// ones take effect at their next poll, removed ones finish their
    /// current poll and stop.
    pub fn apply(&mut self, rules: &[Arc<Rule>]) {
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
            self.retired.push(task.handle);
        }
        self.tasks = keep;
    }

    fn spawn(&self, rule: Arc<Rule>) -> RuleTask {
        let (tx, rx) = watch::channel(rule);
        let stop = self.stop.child_token();
        let handle = tokio::spawn(rule_loop(self.engine.clone(), rx, stop.clone()));
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
) {
    // A short random start delay spreads the first polls of many rules.
    let first = jitter(rx.borrow().interval.min(Duration::from_secs(1)), 1.0);
    tokio::select! {
        _ = tokio::time::sleep(first) => {}
        _ = stop.cancelled() => return,
    }
    loop {
        let rule = rx.borrow_and_update().clone();
        engine.poll(&rule, &stop).await;
        // Sleeping after the poll (not on a fixed tick) means a slow poll
        // never queues up missed ones behind it.
        let wait = rule.interval + jitter(rule.interval, 0.1);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = rx.changed() => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// A random duration in `[0, d * fraction)`.
fn jitter(d: Duration, fraction: f64) -> Duration {
    d.mul_f64(fastrand::f64() * fraction)
}
