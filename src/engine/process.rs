//! One file version through the pipeline: download, deliver, record, then
//! the remote post-action. Each step starts from the state the row is in,
//! so a row left half-way by a crash or a stop simply continues.

use super::error::FileError;
use super::handler::{self, Props};
use super::{Engine, deliver, fetch, post, retry, target};
use crate::config::{PostAction, Rule};
use crate::remote::{self, Pool};
use crate::state::{FileRow, FileState, now_ms};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// How one file's turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Retrying,
    Failed,
    /// Stopped by shutdown; it continues from its state at the next start.
    Abandoned,
}

impl Engine {
    pub(super) async fn process(
        &self,
        rule: &Arc<Rule>,
        pool: &Arc<Pool>,
        row: FileRow,
    ) -> Outcome {
        let attempt = match self.state.claim(row.id, now_ms()).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the start of an attempt; skipping the file this poll");
                return Outcome::Retrying;
            }
        };
        if row.state.is_pending() {
            tracing::info!(
                state = "downloading",
                attempt,
                size = row.size,
                "downloading"
            );
        }
        let mut stage = row.state;
        let work = self.advance(rule, pool, &row, attempt, &mut stage);
        let result = tokio::select! {
            r = work => r,
            _ = self.abort.cancelled() => {
                tracing::info!("transfer abandoned by shutdown; it resumes at the next start");
                return Outcome::Abandoned;
            }
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(e) => self.failed(rule, pool, &row, attempt, stage, e).await,
        }
    }

    /// Moves the row forward from its state; `stage` tracks how far it got,
    /// so a failure is routed by what was actually achieved.
    async fn advance(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        row: &FileRow,
        attempt: i64,
        stage: &mut FileState,
    ) -> Result<(), FileError> {
        let remote_path = remote::join(&rule.remote_dir, &row.path);
        let t = target::resolve(rule, &self.spool_dir, row)?;
        let local_path = t.final_path.to_string_lossy().into_owned();
        if stage.is_pending() {
            let started = Instant::now();
            let mut session = pool.get().await?;
            let fetched =
                fetch::download(&mut session, &remote_path, row.version(), &t.temp_path).await?;
            drop(session);
            self.state
                .mark_downloaded(row.id, row.size as u64, &local_path, now_ms())
                .await?;
            let duration_ms = started.elapsed().as_millis() as u64;
            tracing::info!(
                state = "downloaded",
                bytes = fetched,
                size = row.size,
                duration_ms,
                "downloaded"
            );
            *stage = FileState::Downloaded;
        }
        if *stage == FileState::Downloaded {
            deliver::place(&t).await?;
            if let Some(h) = &rule.handler {
                if !t.final_path.exists() {
                    return Err(FileError::permanent(
                        crate::remote::ErrorKind::NotFound,
                        format!("{local_path} was removed before the handler could run"),
                    ));
                }
                handler::run(h, &props(rule, row, &remote_path, &local_path, attempt)).await?;
            }
            // With no post-action, delivered is done: one write, not two.
            let finished = rule.after == PostAction::Keep;
            self.state
                .mark_delivered(row.id, &local_path, finished, now_ms())
                .await?;
            tracing::info!(state = "delivered", local = %local_path, size = row.size, "delivered");
            *stage = FileState::Delivered;
            if finished {
                tracing::info!(state = "done", "done");
                deliver::clean_spool(&t).await;
                return Ok(());
            }
        }
        if *stage == FileState::Delivered {
            deliver::clean_spool(&t).await;
            self.finish_delivered(rule, pool, row).await?;
        }
        Ok(())
    }

    /// The remote post-action of a delivered file, then `done`.
    pub(super) async fn finish_delivered(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        row: &FileRow,
    ) -> Result<(), FileError> {
        if rule.after != PostAction::Keep {
            let mut session = pool.get().await?;
            post::after_delivery(&mut session, rule, row).await?;
        }
        self.state.mark_done(row.id, now_ms()).await?;
        tracing::info!(state = "done", "done");
        Ok(())
    }

    pub(super) async fn failed(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        row: &FileRow,
        attempt: i64,
        stage: FileState,
        e: FileError,
    ) -> Outcome {
        let now = now_ms();
        let temp_len = target::resolve(rule, &self.spool_dir, row)
            .map_or(0, |t| fetch::partial_len(&t.temp_path));
        if retry::may_retry(&rule.retry, attempt as u32, e.temporary) {
            let wait = retry::delay(&rule.retry, attempt as u32);
            let next = now + wait.as_millis() as i64;
            if let Err(db) = self
                .state
                .schedule_retry(row.id, &e.message, next, temp_len, now)
                .await
            {
                tracing::error!(error = %db, "cannot record a retry");
            }
            tracing::warn!(state = "retrying", attempt, error = %e, retry_in_ms = wait.as_millis() as u64, "attempt failed; will retry");
            return Outcome::Retrying;
        }
        let mut message = e.message.clone();
        // A delivered file that cannot be moved or deleted stays delivered;
        // only undelivered files go to the failed directory.
        if stage != FileState::Delivered
            && rule.failed_move_to.is_some()
            && let Ok(mut session) = pool.get().await
        {
            match post::move_failed(&mut session, rule, row).await {
                Ok(Some(to)) => message.push_str(&format!(" (moved to {to} on the server)")),
                Ok(None) => {}
                Err(me) => {
                    message.push_str(&format!(" (moving it to failed_move_to failed too: {me})"))
                }
            }
        }
        if let Err(db) = self.state.mark_failed(row.id, &message, now).await {
            tracing::error!(error = %db, "cannot record a failure");
        }
        let why = if e.temporary {
            "attempts exhausted"
        } else {
            "permanent error"
        };
        tracing::error!(state = "failed", attempt, error = %message, why, "file failed");
        Outcome::Failed
    }
}

fn props(rule: &Rule, row: &FileRow, remote_path: &str, local_path: &str, attempt: i64) -> Props {
    let mtime = UNIX_EPOCH + Duration::from_secs(row.mtime.max(0) as u64);
    Props {
        rule: rule.name.clone(),
        host: rule.server.host.clone(),
        port: rule.server.port,
        remote_dir: remote::parent(remote_path).to_string(),
        remote_path: remote_path.to_string(),
        name: remote_path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        move_to_dir: match &rule.after {
            PostAction::MoveTo(d) => d.clone(),
            _ => String::new(),
        },
        timestamp: humantime::format_rfc3339_seconds(mtime).to_string(),
        size: row.size as u64,
        local_path: local_path.to_string(),
        attempt,
    }
}
