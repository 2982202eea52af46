//! Retention's statements: one bounded step of pruning at a time.

use super::Db;
use crate::state::{FileRow, Result};

// The latest row of (rule, path) is the one with the highest id.
const PRUNE_SQL: &str = "DELETE FROM files WHERE id IN (
   SELECT f.id FROM files f
   WHERE f.id >= $1 AND f.id < $2
     AND f.state IN ('done', 'skipped')
     AND coalesce(f.done_at_ms, f.updated_at_ms) < $3
     AND (f.unlisted_since_ms < $3
          OR EXISTS (SELECT 1 FROM files n WHERE n.rule = f.rule AND n.path = f.path AND n.id > f.id)))";

impl Db {
    /// The lowest and highest id of the finished rows older than
    /// `cutoff_ms`, if there are any: only they can be pruned, and the
    /// partial index `files_finished` finds them without visiting the
    /// recent ones, so a database of recent history costs one lookup.
    pub async fn id_range(&self, cutoff_ms: i64) -> Result<Option<(i64, i64)>> {
        let (low, high): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT min(id), max(id) FROM files
             WHERE state IN ('done', 'skipped') AND coalesce(done_at_ms, updated_at_ms) < $1",
        )
        .bind(cutoff_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(low.zip(high))
    }

    /// Prunes among the rows with ids in `from..to`.
    pub async fn prune_step(&self, from: i64, to: i64, cutoff_ms: i64) -> Result<u64> {
        let done = sqlx::query(PRUNE_SQL)
            .bind(from)
            .bind(to)
            .bind(cutoff_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn failed_before(&self, rule: &str, cutoff_ms: i64) -> Result<Vec<FileRow>> {
        let rows = sqlx::query_as(
            "SELECT * FROM files WHERE rule = $1 AND state = 'failed' AND updated_at_ms < $2 ORDER BY id",
        )
        .bind(rule)
        .bind(cutoff_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}
