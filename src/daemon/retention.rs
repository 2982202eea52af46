//! The retention loop: prunes finished rows older than `daemon.retention`
//! at the start and hourly after. Each prune walks the table in small
//! steps (`state/retention.rs`), so the rule tasks' writes are never kept
//! waiting long.

use crate::state::{State, now_ms};
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(3600);

/// One prune; errors are logged (the next round tries again).
pub async fn prune_once(state: &State, retention: Duration) {
    let cutoff = now_ms() - retention.as_millis() as i64;
    match state.prune(cutoff).await {
        Ok(0) => tracing::debug!("retention: nothing to prune"),
        Ok(rows) => tracing::info!(
            rows,
            "retention: pruned finished files older than daemon.retention"
        ),
        Err(e) => tracing::warn!(error = %e, "retention: cannot prune the state database"),
    }
}

/// Prunes now and every hour until `stop`.
pub fn spawn(state: State, retention: Option<Duration>, stop: CancellationToken) {
    let Some(retention) = retention else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        // A late round (a suspended machine) is not worth catching up twice.
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => prune_once(&state, retention).await,
                _ = stop.cancelled() => return,
            }
        }
    });
}
