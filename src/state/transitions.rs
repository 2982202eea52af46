//! Single-file state changes. Their order is the crash-safety contract
//! described in ARCHITECTURE.md. The steps of a successful transfer go
//! through the group commit of `batch.rs`; the rarer ones are one statement each.

use super::batch::Step;
use super::{FileRow, Result, State};

impl State {
    /// Starts an attempt: counts it (handlers see the count as FERRY_ATTEMPT)
    /// and moves a pending row to `downloading`. Returns the attempt number.
    pub async fn claim(&self, id: i64, now: i64) -> Result<i64> {
        self.batch.record(&self.owner, id, now, Step::Claim).await
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
        self.mark_downloaded_with(id, bytes, local_path, local_inode, None, now)
            .await
    }

    /// [`State::mark_downloaded`] with the SHA-256 (lowercase hex) of the
    /// bytes, computed while they streamed: committed with the step, so a
    /// handler run after a crash still gets it (`FERRY_SHA256`).
    pub async fn mark_downloaded_with(
        &self,
        id: i64,
        bytes: u64,
        local_path: &str,
        local_inode: Option<u64>,
        sha256: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let step = Step::Downloaded {
            bytes: bytes as i64,
            local_path: local_path.to_string(),
            local_inode: local_inode.map(|i| i as i64),
            sha256: sha256.map(str::to_string),
        };
        self.batch
            .record(&self.owner, id, now, step)
            .await
            .map(drop)
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
            lease_until: self.me.lease_until(now),
        };
        self.batch
            .record(&self.owner, id, now, step)
            .await
            .map(drop)
    }

    pub async fn mark_done(&self, id: i64, now: i64) -> Result<()> {
        self.batch
            .record(&self.owner, id, now, Step::Done)
            .await
            .map(drop)
    }

    /// A `downloaded` row whose file is neither under its temporary name
    /// nor delivered (a cleaner, a reload that moved `local_dir`) goes back
    /// to `downloading`, so that a crash during the new download resumes it.
    pub async fn restart_download(&self, id: i64, now: i64) -> Result<()> {
        on_backend!(self, db => db.restart_download(&self.me.instance, id, now).await)
    }

    /// A new final name for a `downloaded` row, chosen because the one
    /// recorded was taken; committed before the rename like the first.
    pub async fn record_final_name(&self, id: i64, local_path: &str, now: i64) -> Result<()> {
        on_backend!(self, db => db.record_final_name(&self.me.instance, id, local_path, now).await)
    }

    /// Send: the whole file is on the server under its temporary name and
    /// its size checked, and `sent_to` is the name chosen for it by
    /// `if_exists`, recorded before the rename: from here a repeat renames
    /// (or finds the temporary name gone: renamed), never uploads again.
    pub async fn mark_uploaded(&self, id: i64, bytes: u64, sent_to: &str, now: i64) -> Result<()> {
        self.mark_uploaded_with(id, bytes, sent_to, None, now).await
    }

    /// [`State::mark_uploaded`] with the SHA-256 of the bytes sent.
    pub async fn mark_uploaded_with(
        &self,
        id: i64,
        bytes: u64,
        sent_to: &str,
        sha256: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let step = Step::Uploaded {
            bytes: bytes as i64,
            sent_to: sent_to.to_string(),
            sha256: sha256.map(str::to_string),
            lease_until: self.me.lease_until(now),
        };
        self.batch
            .record(&self.owner, id, now, step)
            .await
            .map(drop)
    }

    /// Send with `append`: the remote file's size before anything of this
    /// row is appended. Committed before the first byte goes out.
    pub async fn set_append_base(&self, id: i64, base: u64, sent_to: &str, now: i64) -> Result<()> {
        on_backend!(self, db => db.set_append_base(&self.me.instance, id, base as i64, sent_to, now).await)
    }

    /// Send with `if_exists = "skip"`: the name was taken on the server, so
    /// the file was not sent. Final, like `done`; the file stays in the outbox.
    pub async fn mark_skipped(&self, id: i64, why: &str, now: i64) -> Result<()> {
        on_backend!(self, db => db.mark_skipped(&self.me.instance, id, why, now).await)
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
        let bytes_done = bytes_done as i64;
        on_backend!(self, db => db.schedule_retry(&self.me.instance, id, error, next_attempt_ms, bytes_done, now).await)
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
        on_backend!(self, db => db.hold(&self.me.instance, id, why, error, next_attempt_ms, now).await)
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
        on_backend!(self, db => db.mark_failed(&self.me.instance, id, error, moved_to, now).await)
    }

    /// Requeued rows of `rule` whose file is still where `failed_move_to`
    /// put it: the next poll moves them back before it lists.
    pub async fn to_restore(&self, rule: &str) -> Result<Vec<FileRow>> {
        on_backend!(self, db => db.to_restore(rule).await)
    }

    /// The file is back at its own path (or gone from the failed directory).
    pub async fn restored(&self, id: i64, now: i64) -> Result<()> {
        on_backend!(self, db => db.restored(id, now).await)
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
        let record = super::polls::PollRecord {
            rule: rule.to_string(),
            started_ms,
            duration_ms,
            listed: listed.map(|n| n as i64),
            error: error.map(str::to_string),
            skipped_dirs: skipped.count.map(|n| n as i64),
            skipped_error: skipped.last_error.map(str::to_string),
        };
        self.polls.record(record).await
    }
}

/// Directories a poll skipped; `count` is `None` when the poll did not get
/// as far as listing (the previous figures stay).
#[derive(Default)]
pub struct Skipped<'a> {
    pub count: Option<usize>,
    pub last_error: Option<&'a str>,
}
