//! Single-file state changes. Their order is the crash-safety contract
//! described in ARCHITECTURE.md. The steps of a successful transfer go
//! through the group commit of `batch.rs`; the rarer ones are one statement each.

use super::batch::Step;
use super::{FileRow, Result, State};

impl State {
    /// Starts an attempt: counts it (handlers see the count as FERRY_ATTEMPT)
    /// and moves a pending row to `downloading`. Returns the attempt number.
    pub async fn claim(&self, id: i64, now: i64) -> Result<i64> {
        self.batch.record(id, now, Step::Claim).await
    }

    /// The whole file is on local disk under its temporary name (inode
    /// `local_inode`) and fsynced, and `local_path` is the final name chosen
    /// for it, recorded before the rename: from here a crash finishes the
    /// rename instead of downloading again, and recognises its own earlier
    /// rename by the inode.
    pub async fn mark_downloaded(
        &self,
        id: i64,
        bytes: u64,
        local_path: &str,
        local_inode: Option<u64>,
        now: i64,
    ) -> Result<()> {
        let step = Step::Downloaded {
            bytes: bytes as i64,
            local_path: local_path.to_string(),
            local_inode: local_inode.map(|i| i as i64),
        };
        self.batch.record(id, now, step).await.map(drop)
    }

    /// The file is in place (or the handler succeeded). Recorded before the
    /// remote post-action, so a crash repeats the post-action, never delivery.
    /// With `done`, there is no post-action and the row is finished at once.
    pub async fn mark_delivered(
        &self,
        id: i64,
        local_path: &str,
        done: bool,
        now: i64,
    ) -> Result<()> {
        let step = Step::Delivered {
            local_path: local_path.to_string(),
            done,
        };
        self.batch.record(id, now, step).await.map(drop)
    }

    pub async fn mark_done(&self, id: i64, now: i64) -> Result<()> {
        self.batch.record(id, now, Step::Done).await.map(drop)
    }

    /// A `downloaded` row whose file is neither under its temporary name
    /// nor delivered (a cleaner, a reload that moved `local_dir`) goes back
    /// to `downloading`, so that a crash during the new download resumes it.
    pub async fn restart_download(&self, id: i64, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE files SET state = 'downloading', local_path = NULL, local_inode = NULL,
               bytes_done = 0, updated_at_ms = ? WHERE id = ? AND state = 'downloaded'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A new final name for a `downloaded` row, chosen because the one
    /// recorded was taken; committed before the rename like the first.
    pub async fn record_final_name(&self, id: i64, local_path: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE files SET local_path = ?, updated_at_ms = ? WHERE id = ?")
            .bind(local_path)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Send: the whole file is on the server under its temporary name and
    /// its size checked, and `sent_to` is the name chosen for it by
    /// `if_exists`, recorded before the rename: from here a repeat renames
    /// (or finds the temporary name gone: renamed), never uploads again.
    pub async fn mark_uploaded(&self, id: i64, bytes: u64, sent_to: &str, now: i64) -> Result<()> {
        let step = Step::Uploaded {
            bytes: bytes as i64,
            sent_to: sent_to.to_string(),
        };
        self.batch.record(id, now, step).await.map(drop)
    }

    /// Send with `append`: the remote file's size before anything of this
    /// row is appended. Committed before the first byte goes out.
    pub async fn set_append_base(&self, id: i64, base: u64, sent_to: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE files SET append_base = ?, sent_to = ?, updated_at_ms = ? WHERE id = ?",
        )
        .bind(base as i64)
        .bind(sent_to)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Send with `if_exists = "skip"`: the name was taken on the server, so
    /// the file was not sent. Final, like `done`; the file stays in the outbox.
    pub async fn mark_skipped(&self, id: i64, why: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE files SET state = 'skipped', last_error = ?, next_attempt_ms = NULL, held = NULL,
               done_at_ms = ?, updated_at_ms = ? WHERE id = ?",
        )
        .bind(why)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a counted failure; the row keeps its state and becomes due
    /// again at `next_attempt_ms`. A `downloading` row goes back to `stable`.
    pub async fn schedule_retry(
        &self,
        id: i64,
        error: &str,
        next_attempt_ms: i64,
        bytes_done: u64,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE files SET last_error = ?, next_attempt_ms = ?, bytes_done = max(bytes_done, ?), updated_at_ms = ?,
               failures = failures + 1, held = NULL,
               state = CASE WHEN state = 'downloading' THEN 'stable' ELSE state END
             WHERE id = ?",
        )
        .bind(error)
        .bind(next_attempt_ms)
        .bind(bytes_done as i64)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keeps a row waiting without counting a failure: `why` is
    /// `name-taken` or `local-storage`, `error` says what happened. It
    /// becomes due again at `next_attempt_ms` (or at every poll if `None`).
    pub async fn hold(
        &self,
        id: i64,
        why: &str,
        error: &str,
        next_attempt_ms: Option<i64>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE files SET held = ?, last_error = ?, next_attempt_ms = ?, updated_at_ms = ?,
               state = CASE WHEN state = 'downloading' THEN 'stable' ELSE state END
             WHERE id = ?",
        )
        .bind(why)
        .bind(error)
        .bind(next_attempt_ms)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The file failed for good. `moved_to` is where `failed_move_to` put
    /// it on the server, kept so that `ferry retry` can bring it back.
    pub async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        moved_to: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE files SET state = 'failed', last_error = ?, next_attempt_ms = NULL, held = NULL,
               failures = failures + 1, failed_moved_to = coalesce(?, failed_moved_to), updated_at_ms = ?
             WHERE id = ?",
        )
        .bind(error)
        .bind(moved_to)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Requeued rows of `rule` whose file is still where `failed_move_to`
    /// put it: the next poll moves them back before it lists.
    pub async fn to_restore(&self, rule: &str) -> Result<Vec<FileRow>> {
        let rows = sqlx::query_as(
            "SELECT * FROM files WHERE rule = ? AND failed_moved_to IS NOT NULL AND state != 'failed' ORDER BY id",
        )
        .bind(rule)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The file is back at its own path (or gone from the failed directory).
    pub async fn restored(&self, id: i64, now: i64) -> Result<()> {
        sqlx::query("UPDATE files SET failed_moved_to = NULL, updated_at_ms = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records how one poll of a rule went.
    pub async fn record_poll(
        &self,
        rule: &str,
        started_ms: i64,
        duration_ms: i64,
        listed: Option<usize>,
        error: Option<&str>,
        skipped: &Skipped<'_>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO rules (name, last_poll_ms, last_duration_ms, last_listed, last_success_ms, consecutive_errors, last_error,
                                skipped_dirs, skipped_error)
             VALUES (?1, ?2, ?3, ?4, CASE WHEN ?5 IS NULL THEN ?2 END, CASE WHEN ?5 IS NULL THEN 0 ELSE 1 END, ?5,
                     coalesce(?6, 0), ?7)
             ON CONFLICT (name) DO UPDATE SET
               skipped_dirs = coalesce(?6, skipped_dirs),
               skipped_error = CASE WHEN ?6 IS NULL THEN skipped_error ELSE ?7 END,
               last_poll_ms = excluded.last_poll_ms,
               last_duration_ms = excluded.last_duration_ms,
               last_listed = coalesce(excluded.last_listed, last_listed),
               last_success_ms = coalesce(excluded.last_success_ms, last_success_ms),
               consecutive_errors = CASE WHEN ?5 IS NULL THEN 0 ELSE consecutive_errors + 1 END,
               last_error = ?5",
        )
        .bind(rule)
        .bind(started_ms)
        .bind(duration_ms)
        .bind(listed.map(|n| n as i64))
        .bind(error)
        .bind(skipped.count.map(|n| n as i64))
        .bind(skipped.last_error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Directories a poll skipped; `count` is `None` when the poll did not get
/// as far as listing (the previous figures stay).
#[derive(Default)]
pub struct Skipped<'a> {
    pub count: Option<usize>,
    pub last_error: Option<&'a str>,
}
