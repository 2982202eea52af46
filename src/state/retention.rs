//! Retention (`daemon.retention`): finished rows (`done`, `skipped`) and
//! their history are pruned once they are older than the retention, in
//! small steps so that the single writer is never held for long. Failed
//! rows are never pruned: they wait for an operator.
//!
//! The latest row of a path stays as long as listings show the path: with
//! `keep` (or a send rule without an after-action) that row is what stops
//! the file being delivered again. It goes only once the listings have
//! missed the path for the whole retention too (`unlisted_since_ms`, kept
//! by `listing.rs`). Older rows of a path are versions a later row
//! replaced; a listing only ever compares against the latest, so they are
//! history alone.

use super::{FileRow, Result, State};
use std::time::Duration;

/// Row ids examined per step: each step is one short statement.
const STEP: i64 = 1000;

/// Pause between steps, so that the engine's writes get their turn.
const PAUSE: Duration = Duration::from_millis(5);

impl State {
    /// Prunes finished rows older than `cutoff_ms` (and their history, by
    /// trigger), except the latest row of a path still listed or missed
    /// for less than that. Returns how many rows went.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<u64> {
        let Some((low, high)) = on_backend!(self, db => db.id_range(cutoff_ms).await)? else {
            return Ok(0);
        };
        let mut pruned = 0;
        let mut from = low;
        while from <= high {
            let to = from + STEP;
            pruned += on_backend!(self, db => db.prune_step(from, to, cutoff_ms).await)?;
            from = to;
            tokio::time::sleep(PAUSE).await;
        }
        Ok(pruned)
    }

    /// Failed rows of `rule` whose last change is older than `cutoff_ms`:
    /// their partial downloads and spool copies can go.
    pub async fn failed_before(&self, rule: &str, cutoff_ms: i64) -> Result<Vec<FileRow>> {
        on_backend!(self, db => db.failed_before(rule, cutoff_ms).await)
    }
}

#[cfg(test)]
mod tests {
    use crate::state::testing::f;
    use crate::state::{FileFilter, FileState, Listed, State};

    const DAY: i64 = 86_400_000;

    /// Lists `files` at `now` and takes every due one through to `done`.
    async fn deliver(s: &State, files: &[Listed], now: i64) {
        s.record_listing("r", files, now).await.unwrap();
        let rows = s.due("r", now, 0, 0).await.unwrap();
        // All at once: the steps share group commits.
        let steps = rows.iter().map(|row| async move {
            s.claim(row.id, now).await?;
            s.mark_downloaded(row.id, 1, "/o", None, now).await?;
            s.mark_delivered(row.id, "/o", true, now).await
        });
        futures::future::try_join_all(steps).await.unwrap();
    }

    async fn paths_and_states(s: &State) -> Vec<(String, i64, FileState)> {
        let rows = s.files(&FileFilter::default()).await.unwrap();
        rows.into_iter()
            .map(|r| (r.path, r.size, r.state))
            .collect()
    }

    async fn history_rows(s: &State) -> i64 {
        s.count_history(None).await
    }

    state_test!(keeps_the_latest_row_of_a_path_still_listed, |s| {
        deliver(&s, &[f("kept", 1)], DAY).await;
        // Still listed every day since: the row stops a second delivery.
        for day in 2..40 {
            s.record_listing("r", &[f("kept", 1)], day * DAY)
                .await
                .unwrap();
        }
        assert_eq!(s.prune(40 * DAY - 30 * DAY).await.unwrap(), 0);
        assert_eq!(paths_and_states(&s).await.len(), 1);
        let out = s
            .record_listing("r", &[f("kept", 1)], 41 * DAY)
            .await
            .unwrap();
        assert!(out.new.is_empty(), "the kept file is not new again");
    });

    state_test!(prunes_old_done_rows_with_their_history, |s| {
        // v1 delivered on day 1, replaced by v2 on day 2 (both done);
        // "moved" delivered on day 1 and gone from the listings since.
        deliver(&s, &[f("a", 1), f("moved", 1)], DAY).await;
        deliver(&s, &[f("a", 2)], 2 * DAY).await;
        assert!(history_rows(&s).await > 0);
        let before = history_rows(&s).await;
        // Day 40, 30 days' retention: a v1 and "moved" (missed since day 2) go.
        let pruned = s.prune(40 * DAY - 30 * DAY).await.unwrap();
        assert_eq!(pruned, 2);
        assert_eq!(
            paths_and_states(&s).await,
            [("a".to_string(), 2, FileState::Done)]
        );
        let left = history_rows(&s).await;
        let a2 = s.files(&FileFilter::default()).await.unwrap()[0].id;
        assert_eq!(left as usize, s.history(a2).await.unwrap().len());
        assert!(left < before);
        // Young rows stay: nothing is older than 30 days before day 20.
        deliver(&s, &[f("b", 1)], 20 * DAY).await;
        assert_eq!(s.prune(20 * DAY - 30 * DAY).await.unwrap(), 0);
    });

    state_test!(a_path_missed_only_lately_keeps_its_row, |s| {
        deliver(&s, &[f("a", 1), f("other", 1)], DAY).await;
        // Listed until day 35, missing since.
        s.record_listing("r", &[f("a", 1), f("other", 1)], 35 * DAY)
            .await
            .unwrap();
        s.record_listing("r", &[f("other", 1)], 36 * DAY)
            .await
            .unwrap();
        assert_eq!(s.prune(40 * DAY - 30 * DAY).await.unwrap(), 0);
        // Back again: the mark is cleared, and the row still matches.
        let out = s
            .record_listing("r", &[f("a", 1), f("other", 1)], 37 * DAY)
            .await
            .unwrap();
        assert!(out.new.is_empty());
        assert_eq!(s.prune(80 * DAY - 30 * DAY).await.unwrap(), 0);
    });

    state_test!(never_prunes_failed_rows, |s| {
        s.record_listing("r", &[f("bad", 1), f("x", 1)], DAY)
            .await
            .unwrap();
        let id = s.due("r", DAY, 0, 0).await.unwrap()[0].id;
        s.claim(id, DAY).await.unwrap();
        s.mark_failed(id, "permission denied", None, DAY)
            .await
            .unwrap();
        // Gone from the listings too, and long ago.
        s.record_listing("r", &[f("x", 1)], 2 * DAY).await.unwrap();
        assert_eq!(s.prune(400 * DAY).await.unwrap(), 0);
        let failed = s.failed_before("r", 400 * DAY).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id, id);
        assert!(s.failed_before("r", DAY).await.unwrap().is_empty());
    });

    // More rows than one step holds: every step is visited.
    state_test!(prunes_across_many_steps, |s| {
        // Two rows per path: ids span more than one step.
        let n = crate::state::retention::STEP as usize / 2 + 10;
        let v1: Vec<Listed> = (0..n).map(|i| f(&format!("f{i}"), 1)).collect();
        let v2: Vec<Listed> = (0..n).map(|i| f(&format!("f{i}"), 2)).collect();
        deliver(&s, &v1, DAY).await;
        deliver(&s, &v2, 2 * DAY).await;
        assert_eq!(s.prune(10 * DAY).await.unwrap(), n as u64);
    });
}
