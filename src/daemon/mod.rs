//! The daemon's lifecycle: start, poll, reload on SIGHUP, stop on
//! SIGTERM/SIGINT with a grace period, and systemd notifications
//! (readiness, the watchdog, and a one-line status).

mod lock;
mod node;
mod retention;
mod scheduler;
pub mod slots;
mod status;
mod watchdog;

use crate::config::{self, Config};
use crate::engine::Engine;
use crate::state::State;
use futures::StreamExt;
use scheduler::Scheduler;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use lock::StateLock;

/// Exit codes, documented in the README.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURES: i32 = 1;
pub const EXIT_CONFIG: i32 = 2;
pub const EXIT_RUNTIME: i32 = 3;

/// Everything a working process holds: keep the lock alive as long as the state.
struct Opened {
    _lock: Option<StateLock>,
    state: State,
    engine: Arc<Engine>,
}

/// Opens the state and the engine; `once` for `ferry once` (poll records
/// written at once, not gathered).
async fn open(config: &Config, once: bool) -> Result<Opened, String> {
    // A SQLite file has one working process; PostgreSQL is shared by design.
    let lock = match config.daemon.state.sqlite_path() {
        Some(path) => Some(StateLock::acquire(path)?),
        None => None,
    };
    let state = State::connect(&config.daemon.state).await.map_err(|e| {
        format!(
            "cannot open the state database {}: {e}",
            config.daemon.state
        )
    })?;
    let me = crate::state::Me::new(&config.daemon.node, config.daemon.lease);
    let mut state = state.with_me(me);
    if once {
        state = state.with_poll_gather(Duration::ZERO);
    }
    node::join(&state).await?;
    Ok(Opened {
        _lock: lock,
        engine: Engine::new(state.clone(), &config.daemon),
        state,
    })
}

fn load_or_report(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(c) => Some(c),
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(file = %e.file.display(), line = e.line, col = e.col, "{}", e.message);
            }
            None
        }
    }
}

/// `ferry run`: poll every rule until stopped.
pub async fn run(config_path: &Path) -> i32 {
    // First of all: a SIGTERM while the state database opens (a recovery
    // after a crash can take a while) waits for the loop below and stops
    // the daemon cleanly, instead of killing it.
    let mut signals = match signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return EXIT_RUNTIME;
        }
    };
    let Some(config) = load_or_report(config_path) else {
        return EXIT_CONFIG;
    };
    let opened = match open(&config, false).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("{e}");
            return EXIT_RUNTIME;
        }
    };
    let stop = CancellationToken::new();
    let superseded = CancellationToken::new();
    // Renewals go on through the grace period: transfers still run.
    let renewals = CancellationToken::new();
    let mut scheduler = Scheduler::new(opened.engine.clone(), stop.clone());
    node::spawn_renewals(
        opened.state.clone(),
        renewals.clone(),
        superseded.clone(),
        Some(scheduler.nudges()),
    );
    retention::spawn(opened.state.clone(), config.daemon.retention, stop.clone());
    if let Some(addr) = config.daemon.metrics {
        match crate::metrics::bind(addr).await {
            Ok(listener) => {
                tracing::info!(address = %addr, "serving /metrics and /healthz");
                let serve = crate::metrics::serve(listener, opened.engine.clone(), stop.clone());
                tokio::spawn(serve);
            }
            Err(e) => {
                tracing::error!("{e}");
                return EXIT_RUNTIME;
            }
        }
    }
    scheduler.apply(&config.rules);
    let mut daemon_settings = config.daemon.clone();
    tracing::info!(rules = config.rules.len(), state = %config.daemon.state, "ferry started");
    let board = scheduler.status();
    let first = board.line(0, daemon_settings.max_transfers);
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&first),
    ]);
    status::spawn(board, opened.engine.clone(), first, stop.clone());
    let engine = opened.engine.clone();
    let slots_full = move || engine.transfer_slots_full();
    watchdog::spawn(scheduler.liveness(), slots_full, stop.clone());
    loop {
        let signal = tokio::select! {
            s = signals.next() => match s {
                Some(s) => s,
                None => break,
            },
            _ = superseded.cancelled() => break,
        };
        if signal == SIGHUP {
            notify(&[sd_notify::NotifyState::Reloading]);
            reload(config_path, &mut scheduler, &mut daemon_settings);
            notify(&[sd_notify::NotifyState::Ready]);
            continue;
        }
        tracing::info!(
            signal,
            grace_period_ms = daemon_settings.grace_period.as_millis() as u64,
            "stopping: no new transfers; waiting for those in flight"
        );
        break;
    }
    // Cancelled first, so the status task's last line comes before this one.
    stop.cancel();
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping: waiting for transfers in flight"),
    ]);
    shutdown(scheduler, &opened.engine, daemon_settings.grace_period).await;
    opened.engine.close_sessions().await;
    renewals.cancel();
    node::leave(&opened.state).await;
    tracing::info!("ferry stopped");
    EXIT_OK
}

fn reload(path: &Path, scheduler: &mut Scheduler, daemon: &mut config::Daemon) {
    tracing::info!(config = %path.display(), "reloading the configuration");
    let Some(new) = load_or_report(path) else {
        tracing::error!("the new configuration is invalid; still running on the previous one");
        return;
    };
    if new.daemon != *daemon {
        tracing::warn!("[daemon] settings changed; they take effect at the next restart");
    }
    scheduler.apply(&new.rules);
    tracing::info!(rules = new.rules.len(), "configuration reloaded");
}

/// Waits for rule tasks to finish their transfers, up to `grace`; then
/// abandons what is left (it resumes at the next start).
async fn shutdown(scheduler: Scheduler, engine: &Engine, grace: Duration) {
    let joined = scheduler.join();
    tokio::pin!(joined);
    if tokio::time::timeout(grace, &mut joined).await.is_err() {
        tracing::warn!("grace period over; abandoning transfers in flight");
        engine.abort_token().cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), joined).await;
    }
}

/// `ferry once`: one poll of every rule, concurrently, then exit.
pub async fn once(config_path: &Path) -> i32 {
    let Some(config) = load_or_report(config_path) else {
        return EXIT_CONFIG;
    };
    let opened = match open(&config, true).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("{e}");
            return EXIT_RUNTIME;
        }
    };
    let stop = CancellationToken::new();
    let renewals = CancellationToken::new();
    node::spawn_renewals(opened.state.clone(), renewals.clone(), stop.clone(), None);
    if let Ok(mut signals) = signal_hook_tokio::Signals::new([SIGTERM, SIGINT]) {
        let stop = stop.clone();
        tokio::spawn(async move {
            if signals.next().await.is_some() {
                stop.cancel();
            }
        });
    }
    if let Some(retention) = config.daemon.retention {
        retention::prune_once(&opened.state, retention).await;
    }
    let engine = &opened.engine;
    let polls = config.rules.iter().map(|rule| engine.poll(rule, &stop));
    let reports = futures::future::join_all(polls).await;
    engine.close_sessions().await;
    renewals.cancel();
    node::leave(&opened.state).await;
    let troubled = reports.iter().any(|r| r.error.is_some() || r.failed > 0);
    let done: usize = reports.iter().map(|r| r.done).sum();
    let failed: usize = reports.iter().map(|r| r.failed).sum();
    let retrying: usize = reports.iter().map(|r| r.retrying).sum();
    tracing::info!(
        rules = reports.len(),
        done,
        failed,
        retrying,
        "pass finished"
    );
    if troubled { EXIT_FAILURES } else { EXIT_OK }
}

fn notify(states: &[sd_notify::NotifyState]) {
    // Outside systemd there is no socket and this does nothing.
    let _ = sd_notify::notify(states);
}
