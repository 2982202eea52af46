//! Small files of a send rule, many at a time: the upload counterpart of
//! `batch.rs`. For a 4 KiB file the bytes cost nothing; commits and round
//! trips cost everything. A batch claims its files in one commit, writes
//! them over a few sessions at once, each with its requests in flight
//! ([`crate::remote::Session::write_wholes`]: on SFTP every open, write,
//! close and stat at once), records them `uploaded` together, renames them all at once (again with
//! their requests in flight, [`crate::remote::Session::renames`]),
//! and records them `delivered` together. The states and their order per
//! file are those of `send.rs`, so after a crash each row continues on the
//! single-file path from where it stands.
//!
//! Only fresh files (never attempted: no temporary file to continue) under
//! `unique` or `overwrite` and without `preserve_mtime` come here; any
//! file the batch cannot finish (a missing directory, a size mismatch, a
//! name taken) goes on through the single-file path in the same poll.

use super::error::FileError;
use super::{Engine, Outcome, upload};
use crate::config::{PostAction, Rule, SendIfExists, SendTo};
use crate::remote::{self, Pool, WriteMode};
use crate::state::{FileRow, FileState, now_ms};
use futures::future::join_all;
use std::io::Read;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::{Instrument, Span};

/// Files up to this size go in batches.
const MAX_SIZE: u64 = 64 * 1024;

/// Whether a due row of a send rule may go in a batch.
pub fn fits(rule: &Rule, row: &FileRow) -> bool {
    let Some(to) = &rule.send else {
        return false;
    };
    matches!(row.state, FileState::Seen | FileState::Stable)
        && row.attempts == 0
        && row.size >= 0
        && row.size as u64 <= MAX_SIZE
        && matches!(to.if_exists, SendIfExists::Unique | SendIfExists::Overwrite)
        && !to.preserve_mtime
        && !to.verify_server
        && !to.write_checksum_file
}

/// One file on its way through a send batch.
struct Item {
    row: FileRow,
    attempt: i64,
    span: Span,
    temp: String,
    final_path: String,
    /// SHA-256 of the bytes read, hashed in memory (`None`: `digest = false`).
    sha256: Option<String>,
}

impl Engine {
    pub(super) async fn run_send_batch(
        &self,
        rule: &Arc<Rule>,
        source: &Arc<Pool>,
        rows: Vec<FileRow>,
    ) -> Vec<Outcome> {
        let Some(to) = &rule.send else {
            return Vec::new();
        };
        let n = rows.len();
        tokio::select! {
            outcomes = self.send_batch_steps(rule, to, source, rows) => outcomes,
            _ = self.abort.cancelled() => {
                tracing::info!(rule = %rule.name, files = n, "batch abandoned by shutdown; its files resume at the next start");
                vec![Outcome::Abandoned; n]
            }
        }
    }

    async fn send_batch_steps(
        &self,
        rule: &Arc<Rule>,
        to: &SendTo,
        source: &Arc<Pool>,
        rows: Vec<FileRow>,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(rows.len());
        let now = now_ms();
        let claims = join_all(rows.iter().map(|r| self.state.claim(r.id, now))).await;
        let mut claimed = Vec::with_capacity(rows.len());
        for (row, claim) in rows.into_iter().zip(claims) {
            let span = tracing::info_span!(parent: None, "file", rule = %rule.name, server = %rule.server.name, path = %row.path, file_id = row.id);
            let attempt = match claim {
                Ok(a) => a,
                Err(crate::state::Error::Lost(_)) => {
                    span.in_scope(|| {
                        tracing::warn!(
                            state = "lost",
                            "another node took this file over; leaving it to that node"
                        )
                    });
                    outcomes.push(Outcome::Abandoned);
                    continue;
                }
                Err(e) => {
                    span.in_scope(|| tracing::error!(error = %e, "cannot record the start of an attempt; skipping the file this poll"));
                    outcomes.push(Outcome::Retrying);
                    continue;
                }
            };
            span.in_scope(|| {
                tracing::info!(state = "uploading", attempt, size = row.size, "uploading")
            });
            claimed.push((row, attempt, span));
        }
        // Every local file of the batch in one blocking call, not several
        // thread hand-offs per file.
        let sources: Vec<(String, FileRow)> = claimed
            .iter()
            .map(|(row, _, _)| (remote::join(&rule.remote_dir, &row.path), row.clone()))
            .collect();
        let reads = tokio::task::spawn_blocking(move || {
            sources
                .iter()
                .map(|(path, row)| read_small(path, row))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut reads = reads.into_iter();
        let mut items = Vec::with_capacity(claimed.len());
        let mut files = Vec::with_capacity(claimed.len());
        for (row, attempt, span) in claimed {
            let read = reads.next().unwrap_or_else(|| {
                Err(FileError::temporary(
                    crate::remote::ErrorKind::Other,
                    "the batch's local reads stopped",
                ))
            });
            match read {
                Ok(data) => {
                    let final_path = remote::join(&to.remote_dir, &row.path);
                    let temp = upload::temp_path(to, &row, &final_path);
                    let sha256 = to.digest.then(|| super::digest::sha256_hex(&data));
                    files.push((temp.clone(), data));
                    items.push(Item {
                        row,
                        attempt,
                        span,
                        temp,
                        final_path,
                        sha256,
                    });
                }
                Err(e) => {
                    let o = self
                        .failed(rule, source, &row, attempt, FileState::Downloading, e)
                        .instrument(span)
                        .await;
                    outcomes.push(o);
                }
            }
        }
        if items.is_empty() {
            return outcomes;
        }
        let dest = self.pool_for(&to.server);
        let spread = Spread {
            transfers: self.transfers.clone(),
            dest: dest.clone(),
            limit: self.rule_limit(rule),
            // Every row of a batch is new: its temporary name was never written.
            mode: upload::write_mode(0, true, to),
        };
        // The first share's slot and session first: a server that cannot
        // be reached fails the batch once, not each file on its own.
        let answers = match spread.take().await {
            Ok(first) => spread.write(first, files).await,
            Err(e) => {
                let failed = self
                    .fail_all(rule, source, items, FileState::Downloading, e.into())
                    .await;
                outcomes.extend(failed);
                return outcomes;
            }
        };
        // Whole and of the right size: recorded `uploaded` together; the
        // rest continues alone.
        let mut uploaded = Vec::with_capacity(items.len());
        let mut alone = Vec::new();
        for (it, answer) in items.into_iter().zip(answers) {
            match answer {
                Ok(size) if !to.verify_size || size.is_none_or(|s| s == it.row.size as u64) => {
                    crate::progress::tally().bytes(it.row.size as u64);
                    uploaded.push(it)
                }
                Ok(size) => {
                    it.span.in_scope(|| tracing::info!(remote = %it.temp, size = ?size, "size differs after the upload; sending it alone"));
                    alone.push(it);
                }
                Err(e) => {
                    it.span.in_scope(|| tracing::debug!(error = %e, "not uploaded in the batch; sending it alone"));
                    alone.push(it);
                }
            }
        }
        let now = now_ms();
        let marks = join_all(uploaded.iter().map(|it| {
            self.state.mark_uploaded_with(
                it.row.id,
                it.row.size as u64,
                &it.final_path,
                it.sha256.as_deref(),
                now,
            )
        }))
        .await;
        let mut renaming = Vec::with_capacity(uploaded.len());
        for (it, mark) in uploaded.into_iter().zip(marks) {
            match mark {
                Ok(()) => {
                    it.span.in_scope(|| tracing::info!(state = "uploaded", bytes = it.row.size, size = it.row.size, remote = %it.final_path, "uploaded"));
                    renaming.push(it);
                }
                Err(e) => {
                    let o = self
                        .failed(
                            rule,
                            source,
                            &it.row,
                            it.attempt,
                            FileState::Downloading,
                            e.into(),
                        )
                        .instrument(it.span)
                        .await;
                    outcomes.push(o);
                }
            }
        }
        let mut named = Vec::with_capacity(renaming.len());
        // No lease confirmation before the renames: the `uploaded` commit
        // just now was fenced (a row another node took over answered
        // `Lost` above) and renewed each row's lease.
        match dest.get().await {
            Ok(mut session) => {
                // All renames at once; one the batch could not do (a name
                // taken, a directory missing) is tried again alone, by the
                // rules of its policy.
                let pairs: Vec<(String, String)> = renaming
                    .iter()
                    .map(|it| (it.temp.clone(), it.final_path.clone()))
                    .collect();
                let overwrite = to.if_exists == SendIfExists::Overwrite;
                let answers = session.renames(&pairs, overwrite).await;
                drop(pairs);
                for (it, answer) in renaming.into_iter().zip(answers) {
                    if answer.is_ok() {
                        let name = it.final_path.clone();
                        named.push((it, name));
                        continue;
                    }
                    let r = self
                        .rename_into_place(&mut session, to, &it.row, &it.temp, &it.final_path)
                        .instrument(it.span.clone())
                        .await;
                    match r {
                        Ok(Some(name)) => named.push((it, name)),
                        Ok(None) => outcomes.push(Outcome::Done), // skipped
                        Err(e) => {
                            let o = self
                                .failed(rule, source, &it.row, it.attempt, FileState::Downloaded, e)
                                .instrument(it.span)
                                .await;
                            outcomes.push(o);
                        }
                    }
                }
            }
            Err(e) => {
                let failed = self
                    .fail_all(rule, source, renaming, FileState::Downloaded, e.into())
                    .await;
                outcomes.extend(failed);
            }
        }
        let finished = rule.after == PostAction::Keep;
        let now = now_ms();
        let marks = join_all(named.iter().map(|(it, _)| {
            let local = remote::join(&rule.remote_dir, &it.row.path);
            async move {
                self.state
                    .mark_delivered(it.row.id, &local, finished, now)
                    .await
            }
        }))
        .await;
        let mut sent = Vec::with_capacity(named.len());
        for ((it, name), mark) in named.into_iter().zip(marks) {
            if let Err(e) = mark {
                let stage = FileState::Downloaded;
                let o = self
                    .failed(rule, source, &it.row, it.attempt, stage, e.into())
                    .instrument(it.span)
                    .await;
                outcomes.push(o);
                continue;
            }
            it.span.in_scope(|| {
                tracing::info!(state = "delivered", remote = %name, size = it.row.size, "sent");
                if finished {
                    tracing::info!(state = "done", "done");
                }
            });
            if finished {
                outcomes.push(Outcome::Done);
            } else {
                sent.push(it);
            }
        }
        let rows: Vec<_> = sent
            .iter()
            .map(|it| (&it.row, it.attempt, it.span.clone()))
            .collect();
        outcomes.extend(self.finish_all(rule, source, &rows).await);
        for it in alone {
            let o = self.send_alone(rule, source, it).await;
            outcomes.push(o);
        }
        outcomes
    }

    /// Every item failed at `stage` with one error (no session to the
    /// server): each goes through [`Engine::failed`] in its own span.
    async fn fail_all(
        &self,
        rule: &Arc<Rule>,
        source: &Arc<Pool>,
        items: Vec<Item>,
        stage: FileState,
        e: FileError,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for it in items {
            let o = self
                .failed(rule, source, &it.row, it.attempt, stage, e.clone())
                .instrument(it.span)
                .await;
            outcomes.push(o);
        }
        outcomes
    }

    /// A file the batch could not finish, through the single-file steps.
    /// Its row is claimed, and its temporary name may hold what the batch
    /// wrote: the row counts as attempted (`attempts`), so that name is
    /// continued or replaced like any earlier attempt's, never written as
    /// new ([`crate::remote::WriteMode::Fresh`] may append).
    async fn send_alone(&self, rule: &Arc<Rule>, source: &Arc<Pool>, it: Item) -> Outcome {
        let Some(to) = &rule.send else {
            return Outcome::Retrying;
        };
        let row = FileRow {
            attempts: it.attempt,
            ..it.row.clone()
        };
        let mut stage = FileState::Downloading;
        let r = self
            .advance_send(rule, to, source, &row, &mut stage)
            .instrument(it.span.clone())
            .await;
        match r {
            Ok(()) => Outcome::Done,
            Err(e) => {
                self.failed(rule, source, &it.row, it.attempt, stage, e)
                    .instrument(it.span)
                    .await
            }
        }
    }
}

/// Sessions a batch's uploads are spread over. One SFTP session keeps all
/// of a batch's requests in flight, but an FTP control connection sends
/// one file at a time, and servers work per session (OpenSSH and vsftpd
/// run a process for each), so several sessions use more than one core
/// on either side.
const SESSIONS: usize = 4;

/// How a batch's files are written: in [`SESSIONS`] shares, each a task
/// of its own holding one transfer slot (`max_transfers`) and one session
/// while it writes, as the shares of a download batch do (`batch.rs`).
/// A task each, so that the shares' protocol work (FTP data connections,
/// TLS, SSH packets) spreads over the cores; a slot only while writing, so
/// that a batch waiting for its commits holds no slot a writer could use.
#[derive(Clone)]
struct Spread {
    transfers: Arc<Semaphore>,
    dest: Arc<Pool>,
    limit: Arc<crate::bandwidth::Limit>,
    mode: WriteMode,
}

type Slot = tokio::sync::OwnedSemaphorePermit;

impl Spread {
    /// Writes `files`, the first share with `first` (a slot and a session
    /// already taken), the others each taking a slot, then a session (in
    /// that order, as every transfer does, so that no session waits idle
    /// for a slot). One answer per file, in order; a share that gets no
    /// session answers with that error, and its files go on alone.
    async fn write(
        &self,
        first: (Slot, remote::PooledSession),
        files: Vec<(String, Vec<u8>)>,
    ) -> Vec<remote::Result<Option<u64>>> {
        let per = files.len().div_ceil(SESSIONS).max(1);
        let mut first = Some(first);
        let mut files = files.into_iter();
        let mut shares = Vec::with_capacity(SESSIONS);
        loop {
            let group: Vec<(String, Vec<u8>)> = files.by_ref().take(per).collect();
            if group.is_empty() {
                break;
            }
            let n = group.len();
            let task = tokio::spawn(self.share(first.take(), group));
            shares.push((n, task));
        }
        let mut out = Vec::new();
        for (n, task) in shares {
            match task.await {
                Ok(answers) => out.extend(answers),
                Err(e) => {
                    let e = remote::RemoteError::new(
                        remote::ErrorKind::Other,
                        true,
                        "upload share",
                        e.to_string(),
                    );
                    out.extend(std::iter::repeat_n(Err(e), n));
                }
            }
        }
        out
    }

    /// A transfer slot, then a session.
    async fn take(&self) -> remote::Result<(Slot, remote::PooledSession)> {
        let slot = self
            .transfers
            .clone()
            .acquire_owned()
            .await
            .expect("transfer semaphore is never closed");
        self.dest.get().await.map(|session| (slot, session))
    }

    fn share(
        &self,
        taken: Option<(Slot, remote::PooledSession)>,
        group: Vec<(String, Vec<u8>)>,
    ) -> impl Future<Output = Vec<remote::Result<Option<u64>>>> + Send + 'static {
        let spread = self.clone();
        async move {
            let taken = match taken {
                Some(t) => Ok(t),
                None => spread.take().await,
            };
            let (_slot, session) = match taken {
                Ok(t) => t,
                Err(e) => return group.iter().map(|_| Err(e.clone())).collect(),
            };
            let mut session = session.limited(spread.limit);
            session.write_wholes(&group, spread.mode).await
        }
    }
}

/// Reads a small local file whole, checked to be the row's version
/// (blocking).
fn read_small(path: &str, row: &FileRow) -> Result<Vec<u8>, FileError> {
    let mut file = upload::open_source_now(path, row)?;
    let mut data = Vec::with_capacity(row.size as usize);
    file.read_to_end(&mut data)
        .map_err(|e| FileError::local(format!("read {path}"), &e))?;
    if data.len() as i64 != row.size {
        return Err(FileError::temporary(
            crate::remote::ErrorKind::Other,
            format!("{path} changed while it was read"),
        ));
    }
    Ok(data)
}
