//! The end of a delivery: the post-action of delivered rows, then
//! `done`. Done one by one, each row renewed its lease in a transaction
//! of its own before its post-action, and in a batch those commits queued
//! behind each other on one database writer: most of a small-file batch's
//! time went there. Here a batch renews every lease in one statement,
//! right before the first irreversible step, runs the post-actions a few
//! at once and records `done` through the group commit; the single-file
//! path takes the same steps for its one row. The order per file is
//! unchanged: `delivered` committed, lease confirmed, post-action, `done`.

use super::error::FileError;
use super::process::Outcome;
use super::{Engine, post};
use crate::config::{PostAction, Rule};
use crate::remote::Pool;
use crate::state::{FileRow, FileState, now_ms};
use futures::StreamExt;
use futures::future::join_all;
use std::collections::HashSet;
use std::sync::Arc;
use tracing::{Instrument, Span};

/// A delivered row a batch finishes: its attempt (for a failure's
/// retry) and its file's span.
pub(super) type Finishing<'a> = (&'a FileRow, i64, Span);

impl Engine {
    /// The post-action of one delivered file (the single-file path), then
    /// `done`: the steps of [`Engine::finish_all`] for one row, in the
    /// caller's span.
    pub(super) async fn finish_delivered(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        row: &FileRow,
    ) -> Result<(), FileError> {
        let one = [(row, row.attempts, Span::current())];
        let mut answers = self.finish_rows(rule, pool, &one, false).await;
        answers.pop().expect("one answer per row")
    }

    /// [`Engine::finish_delivered`] for every row of `rows`, then each
    /// failure through [`Engine::failed`]: one outcome per row, in order.
    /// A row another node has taken over is not touched. A batch calls it
    /// right after the rows' `delivered` commit, which (fenced, renewing
    /// the leases of rows with a post-action to go) stands for the
    /// confirmation of their leases.
    pub(super) async fn finish_all(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        rows: &[Finishing<'_>],
    ) -> Vec<Outcome> {
        let answers = self.finish_rows(rule, pool, rows, true).await;
        let mut outcomes = Vec::with_capacity(rows.len());
        for ((row, attempt, span), answer) in rows.iter().zip(answers) {
            let o = match answer {
                Ok(()) => Outcome::Done,
                Err(e) => {
                    let stage = FileState::Delivered;
                    self.failed(rule, pool, row, *attempt, stage, e)
                        .instrument(span.clone())
                        .await
                }
            };
            outcomes.push(o);
        }
        outcomes
    }

    async fn finish_rows(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        rows: &[Finishing<'_>],
        renewed: bool,
    ) -> Vec<Result<(), FileError>> {
        let mut answers: Vec<Result<(), FileError>> = if rule.after == PostAction::Keep {
            rows.iter().map(|_| Ok(())).collect()
        } else {
            self.post_actions(rule, pool, rows, renewed).await
        };
        let now = now_ms();
        let marks = join_all(
            rows.iter()
                .zip(&answers)
                .map(|((row, _, _), a)| async move {
                    match a {
                        Ok(()) => Some(self.state.mark_done(row.id, now).await),
                        Err(_) => None,
                    }
                }),
        )
        .await;
        for ((answer, mark), (_, _, span)) in answers.iter_mut().zip(marks).zip(rows) {
            match mark {
                Some(Ok(())) => span.in_scope(|| tracing::info!(state = "done", "done")),
                Some(Err(e)) => *answer = Err(e.into()),
                None => {}
            }
        }
        answers
    }

    /// Confirms every lease at once (unless `renewed`: the caller's
    /// `delivered` commit just did), then runs each owned row's
    /// post-action, `max_transfers` at a time.
    async fn post_actions(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        rows: &[Finishing<'_>],
        renewed: bool,
    ) -> Vec<Result<(), FileError>> {
        let ids: Vec<i64> = rows.iter().map(|(r, _, _)| r.id).collect();
        let confirmed = if renewed {
            Ok(())
        } else {
            self.state.confirm(&ids, now_ms()).await
        };
        let lost: HashSet<i64> = match confirmed {
            Ok(()) => HashSet::new(),
            Err(crate::state::Error::Lost(lost)) => lost.into_iter().collect(),
            Err(e) => {
                let e = FileError::from(e);
                return rows.iter().map(|_| Err(e.clone())).collect();
            }
        };
        if post::deletes_alone(rule) && rows.len() > 1 {
            return self.delete_all(rule, pool, rows, &lost).await;
        }
        let lost = &lost;
        let mut answers: Vec<(usize, Result<(), FileError>)> = futures::stream::iter(0..rows.len())
            .map(|i| async move {
                let (row, _, span) = &rows[i];
                let r = if lost.contains(&row.id) {
                    Err(crate::state::Error::Lost(vec![row.id]).into())
                } else {
                    self.post_one(rule, pool, row)
                        .instrument(span.clone())
                        .await
                };
                (i, r)
            })
            .buffer_unordered(self.max_transfers)
            .collect()
            .await;
        answers.sort_by_key(|(i, _)| *i);
        answers.into_iter().map(|(_, r)| r).collect()
    }

    /// `delete` for every owned row of a batch in one call on one session
    /// ([`crate::remote::PooledSession::remove_unchanged`]): on a local
    /// outbox one blocking call instead of two thread hand-offs per file.
    async fn delete_all(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        rows: &[Finishing<'_>],
        lost: &HashSet<i64>,
    ) -> Vec<Result<(), FileError>> {
        let paths: Vec<String> = rows
            .iter()
            .map(|(row, _, _)| crate::remote::join(&rule.remote_dir, &row.path))
            .collect();
        let owned: Vec<(String, crate::remote::Version)> = rows
            .iter()
            .zip(&paths)
            .filter(|((row, _, _), _)| !lost.contains(&row.id))
            .map(|((row, _, _), path)| (path.clone(), row.version()))
            .collect();
        let mut removed = match pool.get().await {
            Ok(mut session) => session.remove_unchanged(&owned).await,
            Err(e) => owned.iter().map(|_| Err(e.clone())).collect(),
        }
        .into_iter();
        let outbox = rule.send.is_some();
        rows.iter()
            .zip(&paths)
            .map(|((row, _, span), path)| {
                if lost.contains(&row.id) {
                    return Err(crate::state::Error::Lost(vec![row.id]).into());
                }
                let r = removed.next().expect("one answer per owned file")?;
                span.in_scope(|| post::log_removal(outbox, path, r));
                Ok(())
            })
            .collect()
    }

    async fn post_one(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        row: &FileRow,
    ) -> Result<(), FileError> {
        let mut session = pool.get().await?;
        post::after_delivery(&mut session, rule, row).await
    }
}
