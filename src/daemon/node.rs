//! This process as a node among the hosts sharing the state database:
//! it joins the `nodes` table at the start (refused while another live
//! process of the same `daemon.node` renews its heartbeat), renews its
//! heartbeat, its file leases and its listing turns every third of
//! `daemon.lease`, and gives its leases up at a clean stop.

use super::scheduler::Nudges;
use crate::state::{State, now_ms};
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Joins, or says why this process must not start.
pub async fn join(state: &State) -> Result<(), String> {
    let me = state.me();
    match state.join(now_ms()).await {
        Ok(None) => {
            tracing::info!(node = %me.node, instance = %me.instance, lease_ms = me.lease_ms, "joined as a node");
            Ok(())
        }
        Ok(Some(twin)) => Err(format!(
            "another ferry process runs as node \"{}\" (pid {} on {}, heartbeat {} ms ago); \
             give every host its own daemon.node, or stop the other process first",
            twin.name,
            twin.pid,
            twin.host,
            now_ms() - twin.heartbeat_ms
        )),
        Err(e) => Err(format!("cannot join the nodes table: {e}")),
    }
}

/// Renews every third of the lease until `stop`. Cancels `superseded`
/// when a newer process of this node took the node over: this one's
/// writes are fenced off from then on, so it stops. With `nudges` (the
/// daemon's rule tasks), each renewal also looks for files whose owner's
/// lease ran out and makes their rules poll now: a dead node's files are
/// taken over about a lease after it died, not at the rules' next slots.
pub fn spawn_renewals(
    state: State,
    stop: CancellationToken,
    superseded: CancellationToken,
    nudges: Option<Nudges>,
) {
    let every = Duration::from_millis((state.me().lease_ms / 3).max(100) as u64);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        // After a pause (SIGSTOP, a suspended VM) one renewal is enough;
        // catching up on missed ones would only repeat it.
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            match state.heartbeat(now_ms()).await {
                Ok(true) => {
                    if let Some(nudges) = &nudges {
                        take_over(&state, nudges).await;
                    }
                }
                Ok(false) => {
                    tracing::error!(node = %state.me().node, "a newer process of this node took it over; stopping");
                    superseded.cancel();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the leases; trying again"),
            }
        }
    });
}

/// Nudges every rule that has files another node held past its lease.
async fn take_over(state: &State, nudges: &Nudges) {
    match state.expired_claims(now_ms()).await {
        Ok(rules) => {
            for rule in rules {
                if nudges.nudge(&rule) {
                    tracing::info!(rule = %rule, "files whose owner's lease ran out; taking them over");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot look for expired claims"),
    }
}

/// A clean stop: this process's leases end now, so other nodes need not
/// wait for them to run out.
pub async fn leave(state: &State) {
    if let Err(e) = state.leave().await {
        tracing::warn!(error = %e, "cannot give up the leases; they run out by themselves");
    }
}
