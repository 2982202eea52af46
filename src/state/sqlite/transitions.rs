//! Single-row state changes, one statement each (the group-committed
//! steps are in `batch.rs`).

use super::Db;
use crate::state::{Error, FileRow, Result};
use sqlx::sqlite::SqliteQueryResult;

impl Db {
    pub async fn restart_download(&self, owner: &str, id: i64, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE files SET state = 'downloading', local_path = NULL, local_inode = NULL,
               bytes_done = 0, updated_at_ms = ? WHERE id = ? AND state = 'downloaded' AND (owner_instance IS NULL OR owner_instance = ?)",
        )
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn record_final_name(
        &self,
        owner: &str,
        id: i64,
        local_path: &str,
        now: i64,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE files SET local_path = ?, updated_at_ms = ? WHERE id = ? AND (owner_instance IS NULL OR owner_instance = ?)")
            .bind(local_path)
            .bind(now)
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        fenced(id, done)
    }

    pub async fn set_append_base(
        &self,
        owner: &str,
        id: i64,
        base: i64,
        sent_to: &str,
        now: i64,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE files SET append_base = ?, sent_to = ?, updated_at_ms = ? WHERE id = ? AND (owner_instance IS NULL OR owner_instance = ?)",
        )
        .bind(base)
        .bind(sent_to)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        fenced(id, done)?;
        Ok(())
    }

    pub async fn mark_skipped(&self, owner: &str, id: i64, why: &str, now: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE files SET state = 'skipped', last_error = ?, next_attempt_ms = NULL, held = NULL,
               done_at_ms = ?, updated_at_ms = ? WHERE id = ? AND (owner_instance IS NULL OR owner_instance = ?)",
        )
        .bind(why)
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        fenced(id, done)?;
        Ok(())
    }

    pub async fn schedule_retry(
        &self,
        owner: &str,
        id: i64,
        error: &str,
        next_attempt_ms: i64,
        bytes_done: i64,
        now: i64,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE files SET last_error = ?, next_attempt_ms = ?, bytes_done = max(bytes_done, ?), updated_at_ms = ?,
               failures = failures + 1, held = NULL,
               state = CASE WHEN state = 'downloading' THEN 'stable' ELSE state END
             WHERE id = ? AND (owner_instance IS NULL OR owner_instance = ?)",
        )
        .bind(error)
        .bind(next_attempt_ms)
        .bind(bytes_done)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        fenced(id, done)?;
        Ok(())
    }

    pub async fn hold(
        &self,
        owner: &str,
        id: i64,
        why: &str,
        error: &str,
        next_attempt_ms: Option<i64>,
        now: i64,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE files SET held = ?, last_error = ?, next_attempt_ms = ?, updated_at_ms = ?,
               state = CASE WHEN state = 'downloading' THEN 'stable' ELSE state END
             WHERE id = ? AND (owner_instance IS NULL OR owner_instance = ?)",
        )
        .bind(why)
        .bind(error)
        .bind(next_attempt_ms)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        fenced(id, done)?;
        Ok(())
    }

    pub async fn mark_failed(
        &self,
        owner: &str,
        id: i64,
        error: &str,
        moved_to: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE files SET state = 'failed', last_error = ?, next_attempt_ms = NULL, held = NULL,
               failures = failures + 1, failed_moved_to = coalesce(?, failed_moved_to), updated_at_ms = ?
             WHERE id = ? AND (owner_instance IS NULL OR owner_instance = ?)",
        )
        .bind(error)
        .bind(moved_to)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        fenced(id, done)?;
        Ok(())
    }

    pub async fn to_restore(&self, rule: &str) -> Result<Vec<FileRow>> {
        let rows = sqlx::query_as(
            "SELECT * FROM files WHERE rule = ? AND failed_moved_to IS NOT NULL AND state != 'failed' ORDER BY id",
        )
        .bind(rule)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn restored(&self, id: i64, now: i64) -> Result<()> {
        sqlx::query("UPDATE files SET failed_moved_to = NULL, updated_at_ms = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Many rules' polls in one statement: `json` is an array of
    /// `polls::PollRecord`, at most one per rule. Rules in `new` may have
    /// no row yet: they get one first.
    pub async fn record_polls(&self, new: &[&str], json: &str) -> sqlx::Result<()> {
        if !new.is_empty() {
            let names = serde_json::to_string(new).expect("names serialize");
            sqlx::query(
                "INSERT INTO rules (name) SELECT value FROM json_each(?1) WHERE true
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(names)
            .execute(&self.pool)
            .await?;
        }
        sqlx::query(
            "UPDATE rules SET
               last_poll_ms = p.started_ms,
               last_duration_ms = p.duration_ms,
               last_listed = coalesce(p.listed, rules.last_listed),
               last_success_ms = CASE WHEN p.error IS NULL THEN p.started_ms ELSE rules.last_success_ms END,
               consecutive_errors = CASE WHEN p.error IS NULL THEN 0 ELSE rules.consecutive_errors + 1 END,
               last_error = p.error,
               skipped_dirs = coalesce(p.skipped_dirs, rules.skipped_dirs),
               skipped_error = CASE WHEN p.skipped_dirs IS NULL THEN rules.skipped_error ELSE p.skipped_error END
             FROM (SELECT value ->> '$.rule' AS rule, value ->> '$.started_ms' AS started_ms,
                          value ->> '$.duration_ms' AS duration_ms, value ->> '$.listed' AS listed,
                          value ->> '$.error' AS error, value ->> '$.skipped_dirs' AS skipped_dirs,
                          value ->> '$.skipped_error' AS skipped_error
                   FROM json_each(?1)) AS p
             WHERE rules.name = p.rule",
        )
        .bind(json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A fenced change that touched no row: the row is another node's now
/// (or gone), so this process must leave it alone.
fn fenced(id: i64, done: SqliteQueryResult) -> Result<()> {
    match done.rows_affected() {
        0 => Err(Error::Lost(vec![id])),
        _ => Ok(()),
    }
}
