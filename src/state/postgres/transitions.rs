//! Single-row state changes, one statement each (the group-committed
//! steps are in `batch.rs`).

use super::Db;
use crate::state::{Error, FileRow, Result};
use sqlx::postgres::PgQueryResult;

impl Db {
    pub async fn restart_download(&self, owner: &str, id: i64, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE files SET state = 'downloading', local_path = NULL, local_inode = NULL,
               bytes_done = 0, updated_at_ms = $1 WHERE id = $2 AND state = 'downloaded' AND (owner_instance IS NULL OR owner_instance = $3)",
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
        let done = sqlx::query("UPDATE files SET local_path = $1, updated_at_ms = $2 WHERE id = $3 AND (owner_instance IS NULL OR owner_instance = $4)")
            .bind(local_path)
            .bind(now)
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        fenced(id, done)?;
        Ok(())
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
            "UPDATE files SET append_base = $1, sent_to = $2, updated_at_ms = $3 WHERE id = $4 AND (owner_instance IS NULL OR owner_instance = $5)",
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
            "UPDATE files SET state = 'skipped', last_error = $1, next_attempt_ms = NULL, held = NULL,
               done_at_ms = $2, updated_at_ms = $3 WHERE id = $4 AND (owner_instance IS NULL OR owner_instance = $5)",
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
            "UPDATE files SET last_error = $1, next_attempt_ms = $2, bytes_done = GREATEST(bytes_done, $3), updated_at_ms = $4,
               failures = failures + 1, held = NULL,
               state = CASE WHEN state = 'downloading' THEN 'stable' ELSE state END
             WHERE id = $5 AND (owner_instance IS NULL OR owner_instance = $6)",
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
            "UPDATE files SET held = $1, last_error = $2, next_attempt_ms = $3, updated_at_ms = $4,
               state = CASE WHEN state = 'downloading' THEN 'stable' ELSE state END
             WHERE id = $5 AND (owner_instance IS NULL OR owner_instance = $6)",
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
            "UPDATE files SET state = 'failed', last_error = $1, next_attempt_ms = NULL, held = NULL,
               failures = failures + 1, failed_moved_to = coalesce($2, failed_moved_to), updated_at_ms = $3
             WHERE id = $4 AND (owner_instance IS NULL OR owner_instance = $5)",
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
            "SELECT * FROM files WHERE rule = $1 AND failed_moved_to IS NOT NULL AND state != 'failed' ORDER BY id",
        )
        .bind(rule)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn restored(&self, id: i64, now: i64) -> Result<()> {
        sqlx::query("UPDATE files SET failed_moved_to = NULL, updated_at_ms = $1 WHERE id = $2")
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
            sqlx::query(
                "INSERT INTO rules (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING",
            )
            .bind(new)
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
             FROM jsonb_to_recordset($1::jsonb) AS p(rule text, started_ms bigint, duration_ms bigint,
                  listed bigint, error text, skipped_dirs bigint, skipped_error text)
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
fn fenced(id: i64, done: PgQueryResult) -> Result<()> {
    match done.rows_affected() {
        0 => Err(Error::Lost(vec![id])),
        _ => Ok(()),
    }
}
