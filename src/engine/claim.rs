//! Due files are claimed before they are worked on, a bounded chunk at a
//! time, so that several nodes on one database share a rule's files and
//! none takes a file another holds. The node with the rule's listing turn
//! offers its gated due rows; every other node claims what is due and
//! free. Each chunk's leases end when its turn is over (`release`).

use super::process::Outcome;
use super::run::count;
use super::{Engine, PollReport};
use crate::config::Rule;
use crate::remote::Pool;
use crate::state::{Due, Error, FileRow, now_ms};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use std::collections::HashSet;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Rows claimed at once: four batches of 64 small files, or as many
/// single files as a busy `max_transfers` gets through before the next
/// claim. Small enough that the other nodes find work while this one is
/// busy, large enough that a claim costs little per file.
pub(super) const CHUNK: usize = 256;

/// Claimed chunks worked on at once. With one, a chunk's last commits
/// (its files' `done` steps, the release of its leases) left the sessions
/// idle until the next chunk was claimed; with two, the next chunk's
/// transfers run while the last one's commits finish.
const IN_FLIGHT: usize = 2;

/// The claimed chunks of one poll that are running. The lister's due loop
/// keeps them going while it fetches and gates its next due rows, so the
/// sessions do not idle at every [`super::DUE_CHUNK`] boundary.
pub(super) type Running<'a> = FuturesUnordered<BoxFuture<'a, Vec<Outcome>>>;

/// Awaits `step` while the chunks in `running` go on. A chunk not polled
/// meanwhile can hold what `step` waits for (SQLite's one connection,
/// taken by a commit that chunk started), and neither would move.
pub(super) async fn beside<T>(
    running: &mut FuturesUnordered<impl Future<Output = Vec<Outcome>>>,
    report: &mut PollReport,
    step: impl Future<Output = T>,
) -> T {
    let mut step = std::pin::pin!(step);
    loop {
        tokio::select! {
            out = &mut step => return out,
            Some(outcomes) = running.next(), if !running.is_empty() => count(report, outcomes),
        }
    }
}

/// Waits until fewer than `most` chunks run, counting each that ends.
pub(super) async fn settle(
    running: &mut FuturesUnordered<impl Future<Output = Vec<Outcome>>>,
    report: &mut PollReport,
    most: usize,
) {
    while running.len() >= most.max(1) {
        if let Some(outcomes) = running.next().await {
            count(report, outcomes);
        }
    }
}

impl Engine {
    /// The lister's path: its due rows (gated, events and markers already
    /// applied), claimed and added to `running` chunk by chunk, at most
    /// [`IN_FLIGHT`] running at once; the caller settles them. Rows another
    /// node holds are left to it.
    pub(super) async fn run_offered<'a>(
        &'a self,
        rule: &'a Arc<Rule>,
        pool: &'a Arc<Pool>,
        offered: Vec<FileRow>,
        stop: &'a CancellationToken,
        report: &mut PollReport,
        running: &mut Running<'a>,
    ) -> Result<(), Error> {
        for chunk in offered.chunks(CHUNK) {
            settle(running, report, IN_FLIGHT).await;
            // A rewind: the rest of `offered` is still due, and the due
            // loop fetches it again after the rows behind its cursor.
            if stop.is_cancelled() || self.rewinds.asked(&rule.name) {
                break;
            }
            let ids: Vec<i64> = chunk.iter().map(|r| r.id).collect();
            let claim = self.state.claim_rows(&ids, now_ms());
            let rows = beside(running, report, claim).await?;
            running.push(Box::pin(self.run_claimed(rule, pool, rows, stop)));
        }
        Ok(())
    }

    /// Another node lists this rule: claim what is due and free, in id
    /// order, once over (a row that stays due, such as one waiting for its
    /// name, is not claimed twice in one poll).
    pub(super) async fn run_due(
        &self,
        rule: &Arc<Rule>,
        pool: &Arc<Pool>,
        stop: &CancellationToken,
        report: &mut PollReport,
    ) -> Result<(), Error> {
        let mut after = 0;
        let mut running = FuturesUnordered::new();
        let mut result = Ok(());
        while !stop.is_cancelled() {
            settle(&mut running, report, IN_FLIGHT).await;
            if self.rewinds.take(&rule.name) {
                tracing::debug!("taking over expired claims: back to the first due row");
                after = 0;
            }
            let due = Due {
                now: now_ms(),
                stable_for_ms: super::ms(rule.stable_for),
                min_age_ms: super::ms(rule.min_age),
            };
            let claim = self.state.claim_due_after(&rule.name, &due, after, CHUNK);
            let rows = match beside(&mut running, report, claim).await {
                Ok(rows) => rows,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let Some(last) = rows.last() else {
                // Nothing more now; what runs may still ask for a rewind.
                match running.next().await {
                    Some(outcomes) => {
                        count(report, outcomes);
                        continue;
                    }
                    None => break,
                }
            };
            after = last.id;
            running.push(self.run_claimed(rule, pool, rows, stop));
        }
        settle(&mut running, report, 1).await;
        result
    }

    async fn run_claimed(
        &self,
        rule: &Arc<Rule>,
        pool: &Arc<Pool>,
        rows: Vec<FileRow>,
        stop: &CancellationToken,
    ) -> Vec<Outcome> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let rows = self.hold_taken_names(rule, rows).await;
        let outcomes = self.run_files(rule, pool, rows, stop).await;
        if let Err(e) = self.state.release(&ids).await {
            tracing::warn!(error = %e, "cannot end the leases of finished files; they run out by themselves");
        }
        outcomes
    }

    /// Which of `ids` are still this node's, their leases renewed: asked
    /// right before an irreversible step. The others were taken over by
    /// another node while this one was stalled; they are logged here.
    pub(super) async fn still_ours(&self, ids: &[i64]) -> Result<HashSet<i64>, Error> {
        let mut ours: HashSet<i64> = ids.iter().copied().collect();
        match self.state.confirm(ids, now_ms()).await {
            Ok(()) => {}
            Err(Error::Lost(lost)) => {
                for id in lost {
                    tracing::warn!(
                        file_id = id,
                        state = "lost",
                        "another node took this file over; leaving it to that node"
                    );
                    ours.remove(&id);
                }
            }
            Err(e) => return Err(e),
        }
        Ok(ours)
    }
}
