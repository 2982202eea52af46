//! Reading a file's past: its rows (one per version) and the history of
//! each, for `ferry explain`. The history itself is written by the
//! triggers of each backend's migrations (`migrations/sqlite/0005_history.sql`), in the statement that
//! changes the row, so it can never disagree with the state.

use super::{FileRow, Result, State};
use serde::Serialize;

/// One change of a file row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HistoryEntry {
    pub at_ms: i64,
    /// `listed`, `refused`, `changed`, `attempt`, `retry`, `held`,
    /// `failed`, `requeued`, or the new state's name.
    pub event: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub attempt: i64,
    pub failures: i64,
    pub error: Option<String>,
    pub bytes: Option<i64>,
    pub next_attempt_ms: Option<i64>,
    pub held: Option<String>,
}

impl State {
    /// Every change of row `file_id`, oldest first.
    pub async fn history(&self, file_id: i64) -> Result<Vec<HistoryEntry>> {
        on_backend!(self, db => db.history(file_id).await)
    }

    /// Every row (version) of `path` under `rule`, oldest first.
    pub async fn versions(&self, rule: &str, path: &str) -> Result<Vec<FileRow>> {
        on_backend!(self, db => db.versions(rule, path).await)
    }

    /// Rows whose file was delivered as `path` (`local_path`) or sent
    /// there (`sent_to`): what an operator holding a delivered file asks about.
    pub async fn delivered_as(&self, path: &str) -> Result<Vec<FileRow>> {
        on_backend!(self, db => db.delivered_as(path).await)
    }

    /// The row with this id, if there is one.
    pub async fn row(&self, id: i64) -> Result<Option<FileRow>> {
        on_backend!(self, db => db.row(id).await)
    }
}

#[cfg(test)]
mod tests {
    use crate::state::testing::f;

    fn events(h: &[super::HistoryEntry]) -> Vec<String> {
        h.iter()
            .map(|e| {
                format!(
                    "{} {}->{}",
                    e.event,
                    e.from_state.as_deref().unwrap_or("-"),
                    e.to_state
                )
            })
            .collect()
    }

    // A delivery through the group commit, and a failure through the
    // single-row changes, each leave one line per change, with attempt,
    // error and bytes where they belong.
    state_test!(every_step_leaves_its_line, |s| {
        s.record_listing("r", &[f("a", 5), f("b", 7)], 1000)
            .await
            .unwrap();
        let rows = s.due("r", 1000, 0, 0).await.unwrap();
        let (a, b) = (rows[0].id, rows[1].id);
        s.mark_stable(&[a, b], 1100).await.unwrap();
        s.claim(a, 1200).await.unwrap();
        s.mark_downloaded(a, 5, "/out/a", Some(9), 1300)
            .await
            .unwrap();
        s.mark_delivered(a, "/out/a", false, 1400).await.unwrap();
        s.mark_done(a, 1500).await.unwrap();
        let h = s.history(a).await.unwrap();
        assert_eq!(
            events(&h),
            [
                "listed -->seen",
                "stable seen->stable",
                "attempt stable->downloading",
                "downloaded downloading->downloaded",
                "delivered downloaded->delivered",
                "done delivered->done",
            ]
        );
        assert_eq!(h[2].attempt, 1);
        assert_eq!(h[3].bytes, Some(5));
        assert_eq!(
            h.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            [1000, 1100, 1200, 1300, 1400, 1500]
        );

        s.claim(b, 1200).await.unwrap();
        s.schedule_retry(b, "connection reset", 9000, 3, 1250)
            .await
            .unwrap();
        s.claim(b, 9000).await.unwrap();
        s.mark_failed(b, "no such file", None, 9100).await.unwrap();
        s.retry(
            &crate::state::FileFilter {
                id: Some(b),
                ..Default::default()
            },
            9200,
        )
        .await
        .unwrap();
        let h = s.history(b).await.unwrap();
        assert_eq!(
            events(&h)[2..],
            [
                "attempt stable->downloading",
                "retry downloading->stable",
                "attempt stable->downloading",
                "failed downloading->failed",
                "requeued failed->stable",
            ]
        );
        let retry = &h[3];
        assert_eq!(retry.error.as_deref(), Some("connection reset"));
        assert_eq!(
            (retry.failures, retry.next_attempt_ms, retry.bytes),
            (1, Some(9000), Some(3))
        );
        assert_eq!(h[5].error.as_deref(), Some("no such file"));
        assert_eq!(h[4].error, None, "a claim sets no error of its own");
    });

    // A changed version is one line; a row that goes takes its history
    // along, so a row id used again starts with a clean past.
    state_test!(changes_are_logged_and_history_goes_with_its_row, |s| {
        s.record_listing("r", &[f("a", 5)], 1000).await.unwrap();
        s.record_listing("r", &[f("a", 6)], 2000).await.unwrap();
        let id = s.due("r", 9000, 0, 0).await.unwrap()[0].id;
        assert_eq!(
            events(&s.history(id).await.unwrap()),
            ["listed -->seen", "changed seen->seen"]
        );
        // Gone before it was started: the row is dropped, with its history.
        s.record_listing("r", &[f("b", 1)], 3000).await.unwrap();
        assert!(s.row(id).await.unwrap().is_none());
        assert_eq!(s.count_history(Some(id)).await, 0);
    });
}
