//! Running a poll's due files: small ones in batches (downloads, or a
//! send rule's uploads), every other one on its own, up to
//! `max_transfers` at once; and counting how each turn ended for the poll
//! report, the progress tally and the metrics.

use super::process::Outcome;
use super::{Engine, PollReport, batch, direction, send_batch};
use crate::config::Rule;
use crate::remote::Pool;
use crate::state::{FileRow, FileState};
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

impl Engine {
    pub(super) async fn run_files(
        &self,
        rule: &Arc<Rule>,
        pool: &Arc<Pool>,
        due: Vec<FileRow>,
        stop: &CancellationToken,
    ) -> Vec<Outcome> {
        let bytes = due.iter().map(|r| r.size.max(0) as u64).sum();
        crate::progress::tally().due(due.len() as u64, bytes);
        let (small, single): (Vec<FileRow>, Vec<FileRow>) =
            due.into_iter().partition(|r| match rule.send {
                Some(_) => send_batch::fits(rule, r),
                None => batch::fits(rule, r),
            });
        let (batched, singles) = futures::join!(
            self.run_batches(rule, pool, small, stop),
            self.run_singles(rule, pool, single, stop)
        );
        batched.into_iter().chain(singles).collect()
    }

    /// Small files, [`batch::BATCH`] at a time: downloads, or a send
    /// rule's uploads (`send_batch.rs`).
    async fn run_batches(
        &self,
        rule: &Arc<Rule>,
        pool: &Arc<Pool>,
        rows: Vec<FileRow>,
        stop: &CancellationToken,
    ) -> Vec<Outcome> {
        // Batches are cut as they start, so rows are never held twice.
        let mut rows = rows.into_iter();
        let chunks = std::iter::from_fn(move || {
            let chunk: Vec<FileRow> = rows.by_ref().take(batch::BATCH).collect();
            (!chunk.is_empty()).then_some(chunk)
        });
        let done: Vec<Vec<Outcome>> = futures::stream::iter(chunks)
            .take_while(|_| std::future::ready(!stop.is_cancelled()))
            .map(|rows| async move {
                let t0 = Instant::now();
                let ids: Vec<(i64, u64)> =
                    rows.iter().map(|r| (r.id, r.size.max(0) as u64)).collect();
                let outcomes = match rule.send {
                    Some(_) => self.run_send_batch(rule, pool, rows).await,
                    None => self.run_batch(rule, pool, rows).await,
                };
                tally_finished(&outcomes);
                self.count_batch(rule, &ids, &outcomes, t0.elapsed()).await;
                outcomes
            })
            // Batches in flight at once: while some fetch, others wait on fsyncs.
            .buffer_unordered(4)
            .collect()
            .await;
        done.into_iter().flatten().collect()
    }

    /// Every other file on its own, up to `max_transfers` at once.
    async fn run_singles(
        &self,
        rule: &Arc<Rule>,
        pool: &Arc<Pool>,
        rows: Vec<FileRow>,
        stop: &CancellationToken,
    ) -> Vec<Outcome> {
        let outcomes = Mutex::new(Vec::new());
        futures::stream::iter(rows)
            .for_each_concurrent(self.max_transfers, |row| {
                let outcomes = &outcomes;
                async move {
                    let permit = tokio::select! {
                        p = self.transfers.acquire() => p.expect("transfer semaphore is never closed"),
                        _ = stop.cancelled() => return,
                    };
                    if stop.is_cancelled() {
                        return;
                    }
                    // A root span with every key, so each line of a transfer carries rule,
                    // server and path in text and JSON logs alike.
                    let span = tracing::info_span!(parent: None, "file", rule = %rule.name, server = %rule.server.name, path = %row.path, file_id = row.id);
                    let (t0, size) = (Instant::now(), row.size.max(0) as u64);
                    let outcome = self.process(rule, pool, row).instrument(span).await;
                    drop(permit);
                    tally_finished(&[outcome]);
                    if outcome == Outcome::Done {
                        let dir = direction(rule).as_str();
                        self.metrics.transferred(&rule.name, dir, size, t0.elapsed());
                    }
                    outcomes.lock().expect("outcomes lock").push(outcome);
                }
            })
            .await;
        outcomes.into_inner().expect("outcomes lock")
    }

    /// Counts a batch's files that are done for the metrics, each with the
    /// batch's time. Outcomes do not say which row they belong to; when
    /// only some are done, the rows' states do.
    async fn count_batch(
        &self,
        rule: &Rule,
        rows: &[(i64, u64)],
        outcomes: &[Outcome],
        took: std::time::Duration,
    ) {
        let done = outcomes.iter().filter(|o| **o == Outcome::Done).count();
        let sizes: Vec<u64> = if done == 0 {
            Vec::new()
        } else if done == rows.len() {
            rows.iter().map(|(_, size)| *size).collect()
        } else {
            let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
            let states = self.state.states_of(&ids).await.unwrap_or_default();
            rows.iter()
                .filter(|(id, _)| states.get(id) == Some(&FileState::Done))
                .map(|(_, size)| *size)
                .collect()
        };
        let dir = direction(rule).as_str();
        for size in sizes {
            self.metrics.transferred(&rule.name, dir, size, took);
        }
    }
}

/// Files whose turn ended, for the progress line (`progress::Tally`).
fn tally_finished(outcomes: &[Outcome]) {
    let n = outcomes
        .iter()
        .filter(|o| **o != Outcome::Abandoned)
        .count();
    crate::progress::tally().finished(n as u64);
}

pub(super) fn count(report: &mut PollReport, outcomes: impl IntoIterator<Item = Outcome>) {
    for o in outcomes {
        match o {
            Outcome::Done => report.done += 1,
            Outcome::Retrying => report.retrying += 1,
            Outcome::Failed => report.failed += 1,
            Outcome::Abandoned => {}
        }
    }
}
