//! The systemd watchdog: `WATCHDOG=1` only while every rule task is alive
//! and none has been stuck past its stall limit. A blocking system call that
//! never returns (a hung NFS mount) stops the pings, and systemd restarts
//! ferry. ARCHITECTURE.md, "Watchdog", gives the bound.

use crate::config::Rule;
use crate::progress::Beat;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Added to every stall limit: scheduling delays, a slow fsync.
const MARGIN: Duration = Duration::from_secs(10);

/// How long a rule's poll may go without progress: a connection, four
/// requests that each may take their whole `io_timeout` (a listing, a stat,
/// a read that stalls just short of it, a post-action), and the handler.
pub fn stall_limit(rule: &Rule) -> Duration {
    let server = &rule.server;
    let handler = rule.handler.as_ref().map_or(Duration::ZERO, |h| h.timeout);
    server.connect_timeout + server.io_timeout * 4 + handler + MARGIN
}

/// What the watchdog knows of one rule task.
#[derive(Default)]
pub struct RuleLife {
    alive: AtomicBool,
    busy: AtomicBool,
    limit_ms: AtomicU64,
    pub beat: Beat,
}

impl RuleLife {
    /// Marks the start of a poll under `rule`'s limit.
    pub fn poll_starts(&self, rule: &Rule) {
        self.limit_ms
            .store(stall_limit(rule).as_millis() as u64, Ordering::Relaxed);
        self.beat.touch();
        self.busy.store(true, Ordering::Relaxed);
    }

    pub fn poll_ends(&self) {
        self.busy.store(false, Ordering::Relaxed);
    }

    fn limit(&self) -> Duration {
        Duration::from_millis(self.limit_ms.load(Ordering::Relaxed))
    }

    fn stalled(&self) -> bool {
        self.busy.load(Ordering::Relaxed) && self.beat.since() > self.limit()
    }

    fn trouble(&self) -> Option<String> {
        if !self.alive.load(Ordering::Relaxed) {
            return Some("its task has ended".into());
        }
        let (limit, idle) = (self.limit(), self.beat.since());
        self.stalled().then(|| {
            format!(
                "its poll has made no progress for {} s (limit {} s)",
                idle.as_secs(),
                limit.as_secs()
            )
        })
    }
}

/// Marks a rule task alive for as long as it runs; dropped when it returns
/// or panics.
pub struct AliveGuard(Arc<RuleLife>);

impl AliveGuard {
    pub fn new(life: Arc<RuleLife>) -> Self {
        life.alive.store(true, Ordering::Relaxed);
        Self(life)
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Relaxed);
    }
}

/// Every running rule task by name.
#[derive(Clone, Default)]
pub struct Liveness(Arc<Mutex<HashMap<String, Arc<RuleLife>>>>);

impl Liveness {
    pub fn add(&self, name: &str) -> Arc<RuleLife> {
        let life = Arc::new(RuleLife::default());
        let mut rules = self.0.lock().expect("liveness lock");
        rules.insert(name.to_string(), life.clone());
        life
    }

    pub fn remove(&self, name: &str) {
        self.0.lock().expect("liveness lock").remove(name);
    }

    /// The first rule in trouble, and why. While every transfer slot is
    /// taken and some rule still makes progress, a stalled rule may only be
    /// waiting for a slot: it is excused. Slots held by hung transfers stop
    /// every beat, and then nobody is.
    fn trouble(&self, slots_full: bool) -> Option<(String, String)> {
        let rules = self.0.lock().expect("liveness lock");
        let someone_moves = rules
            .values()
            .any(|l| l.busy.load(Ordering::Relaxed) && !l.stalled());
        let excused = |l: &RuleLife| slots_full && someone_moves && l.stalled();
        rules.iter().find_map(|(name, life)| {
            if excused(life) && life.alive.load(Ordering::Relaxed) {
                return None;
            }
            Some((name.clone(), life.trouble()?))
        })
    }
}

/// Pings at half the watchdog period, when the unit enables it. A thread of
/// its own, not a task: it must judge the runtime, not depend on it. After
/// the stop it keeps pinging: the grace period bounds the shutdown.
pub fn spawn(
    liveness: Liveness,
    slots_full: impl Fn() -> bool + Send + 'static,
    stop: CancellationToken,
) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = timeout / 2;
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut silent = false;
            loop {
                std::thread::sleep(period);
                let trouble = (!stop.is_cancelled())
                    .then(|| liveness.trouble(slots_full()))
                    .flatten();
                match trouble {
                    None => {
                        if silent {
                            tracing::info!("all rules make progress again; watchdog pings resume");
                            silent = false;
                        }
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                    Some((rule, why)) if !silent => {
                        tracing::error!(
                            rule,
                            why,
                            "rule stuck; no more watchdog pings, so systemd restarts ferry"
                        );
                        silent = true;
                    }
                    Some(_) => {}
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the watchdog thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(liveness: &Liveness, name: &str, limit_ms: u64) -> AliveGuard {
        let life = liveness.add(name);
        life.limit_ms.store(limit_ms, Ordering::Relaxed);
        life.beat.touch();
        life.busy.store(true, Ordering::Relaxed);
        AliveGuard::new(life)
    }

    #[test]
    fn a_stalled_rule_is_excused_only_while_slots_are_full_and_another_moves() {
        let liveness = Liveness::default();
        let _waiting = busy(&liveness, "waiting", 0);
        let _moving = busy(&liveness, "moving", 60_000);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(liveness.trouble(true), None);
        let (rule, _) = liveness.trouble(false).unwrap();
        assert_eq!(rule, "waiting");
        liveness.remove("moving");
        assert!(liveness.trouble(true).is_some(), "nobody moves: no excuse");
    }

    #[test]
    fn an_ended_task_is_trouble() {
        let liveness = Liveness::default();
        drop(busy(&liveness, "gone", 60_000));
        assert!(liveness.trouble(false).unwrap().1.contains("ended"));
    }
}
