//! Diffing a whole listing against the database in one transaction, and
//! picking the files that are due for work.

use super::{FileRow, FileState, Result, State};
use std::collections::{HashMap, HashSet};

/// One file from a filtered listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the rule's remote_dir.
    pub path: String,
    pub size: u64,
    pub mtime: i64,
}

/// What a listing changed, for logging one event per state change.
#[derive(Debug, Default)]
pub struct ListingOutcome {
    /// The listing came back empty while files were pending: treated as
    /// unknown, nothing was changed.
    pub ignored_empty: bool,
    pub new: Vec<Listed>,
    pub changed: Vec<Listed>,
    /// Pending files that disappeared after ferry had started on them.
    pub vanished: Vec<String>,
    /// Versions ferry had started downloading that are now replaced or gone:
    /// their partial files can be removed.
    pub superseded: Vec<Superseded>,
}

#[derive(Debug, Clone)]
pub struct Superseded {
    pub id: i64,
    pub path: String,
    pub size: i64,
    pub mtime: i64,
}

#[derive(sqlx::FromRow)]
struct Latest {
    id: i64,
    path: String,
    size: i64,
    mtime: i64,
    #[sqlx(try_from = "String")]
    state: FileState,
    attempts: i64,
}

impl Latest {
    fn superseded(&self) -> Superseded {
        Superseded {
            id: self.id,
            path: self.path.clone(),
            size: self.size,
            mtime: self.mtime,
        }
    }
}

const VANISHED: &str = "disappeared from the server before it was delivered";

impl State {
    /// Records a complete listing of a rule: new paths and new versions get a
    /// `seen` row, pending rows whose file changed restart their stability
    /// window, pending rows whose file is gone are dropped (never started) or
    /// failed (started). One read and only the needed writes, in one
    /// transaction, so an unchanged directory costs a single query.
    pub async fn record_listing(
        &self,
        rule: &str,
        listing: &[Listed],
        now: i64,
    ) -> Result<ListingOutcome> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<Latest> = sqlx::query_as(
            "SELECT id, path, size, mtime, state, attempts FROM files WHERE rule = ? ORDER BY id",
        )
        .bind(rule)
        .fetch_all(&mut *tx)
        .await?;
        // Later rows are later versions: keep the last one per path.
        let latest: HashMap<&str, &Latest> = rows.iter().map(|r| (r.path.as_str(), r)).collect();
        let mut out = ListingOutcome::default();
        if listing.is_empty() && latest.values().any(|r| r.state.is_pending()) {
            out.ignored_empty = true;
            return Ok(out);
        }
        for f in listing {
            match latest.get(f.path.as_str()) {
                Some(r) if r.size == f.size as i64 && r.mtime == f.mtime => {}
                Some(r) if r.state.is_pending() => {
                    if r.attempts > 0 {
                        out.superseded.push(r.superseded());
                    }
                    sqlx::query(
                        "UPDATE files SET size = ?, mtime = ?, state = 'seen', stable_since_ms = ?,
                         attempts = 0, next_attempt_ms = NULL, bytes_done = 0, last_error = NULL,
                         updated_at_ms = ? WHERE id = ?",
                    )
                    .bind(f.size as i64)
                    .bind(f.mtime)
                    .bind(now)
                    .bind(now)
                    .bind(r.id)
                    .execute(&mut *tx)
                    .await?;
                    out.changed.push(f.clone());
                }
                _ => out.new.push(f.clone()),
            }
        }
        insert_new(&mut tx, rule, &out.new, now).await?;
        let listed: HashSet<&str> = listing.iter().map(|f| f.path.as_str()).collect();
        for r in latest
            .values()
            .filter(|r| r.state.is_pending() && !listed.contains(r.path.as_str()))
        {
            if r.attempts == 0 {
                sqlx::query("DELETE FROM files WHERE id = ?")
                    .bind(r.id)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query("UPDATE files SET state = 'failed', last_error = ?, updated_at_ms = ? WHERE id = ?")
                    .bind(VANISHED)
                    .bind(now)
                    .bind(r.id)
                    .execute(&mut *tx)
                    .await?;
                out.vanished.push(r.path.clone());
                out.superseded.push(r.superseded());
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Rows of `rule` that have work to do now: pending rows past their
    /// stability window and min_age, and rows a crash or stop left half-way
    /// (downloading, downloaded, delivered), in each case once any retry delay
    /// has passed.
    pub async fn due(
        &self,
        rule: &str,
        now: i64,
        stable_for_ms: i64,
        min_age_ms: i64,
    ) -> Result<Vec<FileRow>> {
        sqlx::query_as(
            "SELECT * FROM files WHERE rule = ?1
               AND (next_attempt_ms IS NULL OR next_attempt_ms <= ?2)
               AND ( state IN ('downloading', 'downloaded', 'delivered')
                  OR (state IN ('seen', 'stable') AND stable_since_ms <= ?2 - ?3 AND first_seen_ms <= ?2 - ?4))
             ORDER BY id",
        )
        .bind(rule)
        .bind(now)
        .bind(stable_for_ms)
        .bind(min_age_ms)
        .fetch_all(&self.pool)
        .await
    }

    /// Marks `seen` rows as having passed the stability gate.
    pub async fn mark_stable(&self, ids: &[i64], now: i64) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for slice in ids.chunks(INSERT_SLICE) {
            sqlx::query(
                "UPDATE files SET state = 'stable', updated_at_ms = ?1
                 WHERE state = 'seen' AND id IN (SELECT value FROM json_each(?2))",
            )
            .bind(now)
            .bind(serde_json::to_string(slice).expect("ids serialize"))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}

/// Rows per statement that carries its rows as JSON.
const INSERT_SLICE: usize = 2000;

/// Inserts the `seen` rows of new files with one statement per slice: a first poll of
/// a directory with many files would otherwise spend most of its time
/// handing single inserts to SQLite's thread.
async fn insert_new(
    tx: &mut sqlx::SqliteConnection,
    rule: &str,
    new: &[Listed],
    now: i64,
) -> Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    // In slices: SQLite parses the whole JSON text of a statement at once.
    for slice in new.chunks(INSERT_SLICE) {
        let rows: Vec<(&str, u64, i64)> = slice
            .iter()
            .map(|f| (f.path.as_str(), f.size, f.mtime))
            .collect();
        sqlx::query(
            "INSERT INTO files (rule, path, size, mtime, state, first_seen_ms, stable_since_ms, updated_at_ms)
             SELECT ?1, value ->> 0, value ->> 1, value ->> 2, 'seen', ?2, ?2, ?2 FROM json_each(?3)",
        )
        .bind(rule)
        .bind(now)
        .bind(serde_json::to_string(&rows).expect("listing serializes"))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, size: u64, mtime: i64) -> Listed {
        Listed {
            path: path.into(),
            size,
            mtime,
        }
    }

    async fn state() -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).await.unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn new_unchanged_and_changed_files() {
        let (_d, s) = state().await;
        let out = s
            .record_listing("r", &[f("a", 1, 10), f("b", 2, 10)], 1000)
            .await
            .unwrap();
        assert_eq!(out.new.len(), 2);
        let out = s
            .record_listing("r", &[f("a", 1, 10), f("b", 2, 10)], 2000)
            .await
            .unwrap();
        assert!(out.new.is_empty() && out.changed.is_empty());
        let out = s
            .record_listing("r", &[f("a", 5, 11), f("b", 2, 10)], 3000)
            .await
            .unwrap();
        assert_eq!(out.changed, vec![f("a", 5, 11)]);
        assert!(
            out.superseded.is_empty(),
            "a was never started: no partial to remove"
        );
        // The change restarted a's stability window only.
        let due = s.due("r", 3500, 1000, 0).await.unwrap();
        assert_eq!(
            due.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            vec!["b"]
        );
        let due = s.due("r", 4000, 1000, 0).await.unwrap();
        assert_eq!(due.len(), 2);
    }

    #[tokio::test]
    async fn an_empty_listing_while_files_are_pending_changes_nothing() {
        let (_d, s) = state().await;
        s.record_listing("r", &[f("a", 1, 10)], 1000).await.unwrap();
        let out = s.record_listing("r", &[], 2000).await.unwrap();
        assert!(out.ignored_empty);
        assert_eq!(s.due("r", 5000, 0, 0).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_delivered_file_that_changes_is_a_new_version() {
        let (_d, s) = state().await;
        s.record_listing("r", &[f("a", 1, 10)], 1000).await.unwrap();
        let id = s.due("r", 1000, 0, 0).await.unwrap()[0].id;
        s.claim(id, 1000).await.unwrap();
        s.mark_downloaded(id, 1, "/x/a", None, 1000).await.unwrap();
        s.mark_delivered(id, "/x/a", false, 1000).await.unwrap();
        s.mark_done(id, 1000).await.unwrap();
        let out = s.record_listing("r", &[f("a", 1, 10)], 2000).await.unwrap();
        assert!(
            out.new.is_empty(),
            "an unchanged delivered file is never new again"
        );
        let out = s.record_listing("r", &[f("a", 2, 10)], 3000).await.unwrap();
        assert_eq!(out.new, vec![f("a", 2, 10)]);
        // And a revert to the first version is new again too.
        let due = s.due("r", 3000, 0, 0).await.unwrap();
        s.claim(due[0].id, 3000).await.unwrap();
        s.mark_failed(due[0].id, "x", None, 3000).await.unwrap();
        let out = s.record_listing("r", &[f("a", 1, 10)], 4000).await.unwrap();
        assert_eq!(out.new.len(), 1);
    }

    #[tokio::test]
    async fn vanished_files_are_dropped_or_failed() {
        let (_d, s) = state().await;
        s.record_listing("r", &[f("a", 1, 10), f("b", 1, 10), f("c", 1, 10)], 1000)
            .await
            .unwrap();
        let b = s
            .due("r", 1000, 0, 0)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.path == "b")
            .unwrap();
        s.claim(b.id, 1000).await.unwrap();
        let out = s.record_listing("r", &[f("c", 1, 10)], 2000).await.unwrap();
        assert_eq!(out.vanished, vec!["b".to_string()]);
        assert_eq!(out.superseded.len(), 1, "b's partial download can go");
        assert_eq!(out.superseded[0].id, b.id);
        let failed = s
            .files(&super::super::FileFilter {
                state: Some(FileState::Failed),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].last_error.as_deref(), Some(VANISHED));
        let all = s.files(&Default::default()).await.unwrap();
        assert_eq!(all.len(), 2, "a was never started and is simply forgotten");
    }

    #[tokio::test]
    async fn bulk_inserted_paths_survive_exactly() {
        let (_d, s) = state().await;
        let odd = [
            "a \"quoted\" name",
            "back\\slash",
            "dir/é ü ø.csv",
            "-leading dash",
            "tab\there",
            "emoji 📦",
        ];
        let listing: Vec<Listed> = odd.iter().map(|p| f(p, 7, 99)).collect();
        let out = s.record_listing("r", &listing, 1000).await.unwrap();
        assert_eq!(out.new.len(), odd.len());
        let rows = s.files(&crate::state::FileFilter::default()).await.unwrap();
        let mut got: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
        let mut want = odd.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert!(
            rows.iter()
                .all(|r| r.size == 7 && r.mtime == 99 && r.first_seen_ms == 1000)
        );
        // The same listing again changes nothing.
        let out = s.record_listing("r", &listing, 2000).await.unwrap();
        assert!(out.new.is_empty() && out.changed.is_empty());
    }
}
