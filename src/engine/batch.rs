//! Small files in batches. A small file costs almost nothing to transfer;
//! what costs is everything around it: three state commits, a trip to the
//! blocking pool for its write and fsync, another for its rename and the
//! fsync of its directory. A batch pays those once for many files: its
//! claims share a commit, its fetches run concurrently, its writes and
//! fsyncs are spread over a few blocking calls that run in parallel, its
//! renames share one directory fsync, its records share a commit.
//!
//! Each file still passes the same points in the same order as one file on
//! its own (ARCHITECTURE.md, crash safety): fsynced under its temporary name,
//! then recorded `downloaded`, then renamed and its directory fsynced, then
//! recorded `delivered`. A crash anywhere leaves each file at one of those
//! points, from which the next start continues exactly as it would for a
//! file processed alone. A failing file leaves the batch and takes the
//! usual failure route; the others go on.

use super::deliver::Placed;
use super::error::FileError;
use super::target::{self, Target};
use super::{Engine, Outcome, deliver, fetch};
use crate::config::{IfExists, PostAction, Rule};
use crate::remote::Pool;
use crate::state::{FileRow, now_ms};
use futures::future::join_all;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tracing::{Instrument, Span};

/// The largest file a batch takes: a batch holds its files in memory.
const MAX_SIZE: u64 = 64 * 1024;

/// Files per batch: enough to share commits and fsyncs widely, few enough
/// that a stop or a crash never has many files half-way.
pub const BATCH: usize = 64;

/// Files a session fetches at least per call, so that small batches do
/// not spread over more sessions than they can use.
const PER_SESSION_MIN: usize = 8;

/// Blocking calls a batch's writes are spread over: fsyncs wait on the
/// disk, and several in flight keep it busy.
const WRITERS: usize = 4;

/// Whether `row` can go through a batch: a pending file small enough to be
/// held in memory, delivered into `local_dir` with no handler to run and
/// no checksum to compare with (a sidecar or the server's digest is asked
/// for file by file).
pub fn fits(rule: &Rule, row: &FileRow) -> bool {
    rule.handler.is_none()
        && rule.checksum_file.is_none()
        && !rule.verify_server
        && rule.local_dir.is_some()
        && row.state.is_pending()
        && row.size >= 0
        && row.size as u64 <= MAX_SIZE
}

/// One file on its way through a batch.
struct Item {
    row: FileRow,
    attempt: i64,
    span: Span,
    data: Vec<u8>,
    target: Option<Target>,
    /// The final name chosen by `if_exists`, recorded before the rename.
    local: PathBuf,
    /// The temporary file's inode.
    inode: u64,
    /// SHA-256 of the bytes, hashed in memory before they are written.
    sha256: String,
    /// When its fetch started: `downloaded` reports the time since.
    started: Instant,
}

impl Engine {
    /// Runs a batch of rows for which [`fits`] holds; one outcome per row.
    pub(super) async fn run_batch(
        &self,
        rule: &Arc<Rule>,
        pool: &Arc<Pool>,
        rows: Vec<FileRow>,
    ) -> Vec<Outcome> {
        let n = rows.len();
        let work = self.batch_steps(rule, pool, rows);
        tokio::select! {
            outcomes = work => outcomes,
            _ = self.abort.cancelled() => {
                tracing::info!(rule = %rule.name, files = n, "batch abandoned by shutdown; its files resume at the next start");
                vec![Outcome::Abandoned; n]
            }
        }
    }

    async fn batch_steps(
        &self,
        rule: &Arc<Rule>,
        pool: &Arc<Pool>,
        rows: Vec<FileRow>,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(rows.len());
        let items = self.claim_all(rule, rows, &mut outcomes).await;
        let items = self.fetch_all(rule, pool, items, &mut outcomes).await;
        let items = self.write_all(rule, pool, items, &mut outcomes).await;
        let items = self
            .record_downloaded(rule, pool, items, &mut outcomes)
            .await;
        let items = self.place_all(rule, pool, items, &mut outcomes).await;
        self.record_delivered(rule, pool, items, &mut outcomes)
            .await;
        outcomes
    }

    async fn claim_all(
        &self,
        rule: &Rule,
        rows: Vec<FileRow>,
        outcomes: &mut Vec<Outcome>,
    ) -> Vec<Item> {
        let now = now_ms();
        let claims = join_all(rows.iter().map(|r| self.state.claim(r.id, now))).await;
        let mut items = Vec::with_capacity(rows.len());
        for (row, claim) in rows.into_iter().zip(claims) {
            let span = tracing::info_span!(parent: None, "file", rule = %rule.name, server = %rule.server.name, path = %row.path, file_id = row.id);
            match claim {
                Ok(attempt) => {
                    span.in_scope(|| {
                        tracing::info!(
                            state = "downloading",
                            attempt,
                            size = row.size,
                            "downloading"
                        )
                    });
                    items.push(Item {
                        row,
                        attempt,
                        span,
                        data: Vec::new(),
                        target: None,
                        local: PathBuf::new(),
                        inode: 0,
                        sha256: String::new(),
                        started: Instant::now(),
                    });
                }
                Err(crate::state::Error::Lost(_)) => {
                    span.in_scope(|| {
                        tracing::warn!(
                            state = "lost",
                            "another node took this file over; leaving it to that node"
                        )
                    });
                    outcomes.push(Outcome::Abandoned);
                }
                Err(e) => {
                    span.in_scope(|| tracing::error!(error = %e, "cannot record the start of an attempt; skipping the file this poll"));
                    outcomes.push(Outcome::Retrying);
                }
            }
        }
        items
    }

    /// Fetches every file into memory: the batch is split over up to the
    /// server's `max_sessions` sessions, each fetching its share with one
    /// [`crate::remote::Session::read_wholes`] call (on SFTP, all of the
    /// share at once). A share counts as one transfer against `max_transfers`.
    async fn fetch_all(
        &self,
        rule: &Arc<Rule>,
        pool: &Arc<Pool>,
        items: Vec<Item>,
        outcomes: &mut Vec<Outcome>,
    ) -> Vec<Item> {
        let shares = rule.server.max_sessions.min(self.max_transfers).max(1);
        let per = items.len().div_ceil(shares).max(PER_SESSION_MIN);
        let mut groups: Vec<Vec<Item>> = Vec::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            groups.push(items.by_ref().take(per).collect());
        }
        // Each share is its own task, so that the shares' protocol work
        // (TLS, FTP data connections, SSH packets) spreads over the cores.
        let shares = groups.into_iter().map(|items| {
            let ids: Vec<(i64, Span)> = items.iter().map(|i| (i.row.id, i.span.clone())).collect();
            let task = tokio::spawn(fetch_share(
                self.transfers.clone(),
                rule.clone(),
                pool.clone(),
                self.rule_limit(rule),
                items,
            ));
            async move { (ids, task.await) }
        });
        let mut fetched = Vec::new();
        for (ids, r) in join_all(shares).await {
            match r {
                Ok(results) => fetched.push(results),
                // The files of a share whose task panicked stay pending and
                // come back next poll.
                Err(e) => tracing::error!(error = %e, files = ids.len(), "a fetch task failed"),
            }
        }
        self.keep_ok(
            rule,
            pool,
            fetched.into_iter().flatten().collect(),
            outcomes,
        )
        .await
    }

    /// Writes and fsyncs every file under its temporary name, spread over
    /// [`WRITERS`] blocking calls.
    async fn write_all(
        &self,
        rule: &Arc<Rule>,
        pool: &Arc<Pool>,
        items: Vec<Item>,
        outcomes: &mut Vec<Outcome>,
    ) -> Vec<Item> {
        let per = items.len().div_ceil(WRITERS).max(1);
        let mut groups: Vec<Vec<Item>> = Vec::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            groups.push(items.by_ref().take(per).collect());
        }
        let calls = groups.into_iter().map(|group| {
            let rule = rule.clone();
            let spool = self.spool_dir.clone();
            tokio::task::spawn_blocking(move || {
                group
                    .into_iter()
                    .map(|mut item| {
                        let r = target::resolve(&rule, &spool, &item.row).and_then(|t| {
                            item.sha256 = super::digest::sha256_hex(&item.data);
                            item.inode = fetch::write_synced(&t.temp_path, &item.data)?;
                            crate::progress::tally().bytes(item.data.len() as u64);
                            item.local = super::process::choose(&rule, &t)?;
                            item.target = Some(t);
                            Ok(())
                        });
                        item.data = Vec::new();
                        (item, r)
                    })
                    .collect::<Vec<_>>()
            })
        });
        let mut written = Vec::new();
        for call in join_all(calls).await {
            match call {
                Ok(results) => written.extend(results),
                // A panic in a writer: its files are not lost, only not
                // counted; they are pending and come back next poll.
                Err(e) => tracing::error!(error = %e, "a batch writer failed"),
            }
        }
        self.keep_ok(rule, pool, written, outcomes).await
    }

    async fn record_downloaded(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        items: Vec<Item>,
        outcomes: &mut Vec<Outcome>,
    ) -> Vec<Item> {
        let now = now_ms();
        let marks = join_all(items.iter().map(|i| {
            let size = i.row.size as u64;
            let local = i.local.to_string_lossy().into_owned();
            async move {
                self.state
                    .mark_downloaded_with(
                        i.row.id,
                        size,
                        &local,
                        Some(i.inode),
                        Some(&i.sha256),
                        now,
                    )
                    .await
            }
        }))
        .await;
        let log = |item: &Item| {
            let duration_ms = item.started.elapsed().as_millis() as u64;
            let size = item.row.size;
            tracing::info!(
                state = "downloaded",
                bytes = size,
                size,
                duration_ms,
                "downloaded"
            )
        };
        self.after_marks(rule, pool, items, marks, outcomes, log)
            .await
    }

    /// Gives every file its recorded name, never replacing a file unless
    /// the rule overwrites, then fsyncs each directory once. A file whose name was taken since it was chosen, or
    /// whose temporary file vanished, leaves the batch as it is
    /// (`downloaded`, no failure counted): the single-file path chooses
    /// again or downloads again at the next poll.
    async fn place_all(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        items: Vec<Item>,
        outcomes: &mut Vec<Outcome>,
    ) -> Vec<Item> {
        let overwrite = rule.if_exists == IfExists::Overwrite;
        let items = self.keep_owned(items, outcomes).await;
        let placed = tokio::task::spawn_blocking(move || {
            let mut results = Vec::with_capacity(items.len());
            let mut left = 0;
            let mut dirs = BTreeSet::new();
            for item in items {
                let t = item.target.as_ref().expect("written items have a target");
                let r = match deliver::give_name(&t.temp_path, &item.local, overwrite) {
                    Ok(Placed::Named) => Ok(()),
                    Ok(Placed::Taken | Placed::TempMissing) => {
                        left += 1;
                        continue;
                    }
                    Err(e) => Err(e),
                };
                if r.is_ok() {
                    dirs.insert(parent(&item.local));
                }
                results.push((item, r));
            }
            // Only once its directory is fsynced is a rename durable.
            for dir in dirs {
                if let Err(e) = deliver::sync_dir(&dir) {
                    for (item, r) in results.iter_mut() {
                        if r.is_ok() && parent(&item.local) == dir {
                            *r = Err(FileError::local(format!("fsync {}", dir.display()), &e));
                        }
                    }
                }
            }
            (results, left)
        })
        .await;
        match placed {
            Ok((results, left)) => {
                outcomes.extend(std::iter::repeat_n(Outcome::Retrying, left));
                self.keep_ok(rule, pool, results, outcomes).await
            }
            Err(e) => {
                // Files whose rename may or may not have happened stay
                // `downloaded`; the next poll finishes them one by one.
                tracing::error!(error = %e, "the batch rename failed");
                Vec::new()
            }
        }
    }

    async fn record_delivered(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        items: Vec<Item>,
        outcomes: &mut Vec<Outcome>,
    ) {
        let now = now_ms();
        let finished = rule.after == PostAction::Keep;
        let marks = join_all(items.iter().map(|i| {
            let local = i.local.to_string_lossy().into_owned();
            async move {
                self.state
                    .mark_delivered(i.row.id, &local, finished, now)
                    .await
            }
        }))
        .await;
        let log = |item: &Item| {
            tracing::info!(state = "delivered", local = %item.local.display(), size = item.row.size, "delivered");
            if finished {
                tracing::info!(state = "done", "done");
            }
        };
        let delivered = self
            .after_marks(rule, pool, items, marks, outcomes, log)
            .await;
        // The receipts (temporary names) go once `delivered` is committed.
        let temps: Vec<PathBuf> = delivered
            .iter()
            .filter_map(|i| i.target.as_ref().map(|t| t.temp_path.clone()))
            .collect();
        let released =
            tokio::task::spawn_blocking(move || temps.iter().for_each(|t| deliver::release(t)));
        if let Err(e) = released.await {
            tracing::warn!(error = %e, "releasing temporary names failed; they are removed at the next start");
        }
        if finished {
            outcomes.extend(delivered.iter().map(|_| Outcome::Done));
            return;
        }
        // The remote post-actions, one lease check for the batch.
        let rows: Vec<_> = delivered
            .iter()
            .map(|i| (&i.row, i.attempt, i.span.clone()))
            .collect();
        outcomes.extend(self.finish_all(rule, pool, &rows).await);
    }

    /// Logs the state change of each item whose record committed (in its
    /// file's span) and passes those on, like [`Self::keep_ok`].
    async fn after_marks(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        items: Vec<Item>,
        marks: Vec<crate::state::Result<()>>,
        outcomes: &mut Vec<Outcome>,
        log: impl Fn(&Item),
    ) -> Vec<Item> {
        let results = items
            .into_iter()
            .zip(marks)
            .map(|(item, r)| {
                if r.is_ok() {
                    item.span.in_scope(|| log(&item));
                }
                (item, r.map_err(FileError::from))
            })
            .collect();
        self.keep_ok(rule, pool, results, outcomes).await
    }

    /// Keeps the items this node still owns, right before their renames;
    /// the others were taken over while it was stalled and are left alone.
    async fn keep_owned(&self, items: Vec<Item>, outcomes: &mut Vec<Outcome>) -> Vec<Item> {
        let ids: Vec<i64> = items.iter().map(|i| i.row.id).collect();
        match self.still_ours(&ids).await {
            Ok(ours) => {
                let (keep, lost): (Vec<Item>, Vec<Item>) =
                    items.into_iter().partition(|i| ours.contains(&i.row.id));
                outcomes.extend(lost.iter().map(|_| Outcome::Abandoned));
                keep
            }
            Err(e) => {
                // Unsure who owns them: rename nothing; they stay
                // `downloaded` and the owner finishes them.
                tracing::error!(error = %e, "cannot confirm the leases before the renames");
                outcomes.extend(items.iter().map(|_| Outcome::Retrying));
                Vec::new()
            }
        }
    }

    /// Passes on the items whose step succeeded; routes the others through
    /// the usual failure handling (retry with backoff, or failed).
    async fn keep_ok(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        results: Vec<(Item, Result<(), FileError>)>,
        outcomes: &mut Vec<Outcome>,
    ) -> Vec<Item> {
        let mut ok = Vec::with_capacity(results.len());
        for (item, r) in results {
            match r {
                Ok(()) => ok.push(item),
                Err(e) => {
                    let stage = item.row.state;
                    let outcome = self
                        .failed(rule, pool, &item.row, item.attempt, stage, e)
                        .instrument(item.span.clone())
                        .await;
                    outcomes.push(outcome);
                }
            }
        }
        ok
    }
}

fn parent(p: &std::path::Path) -> PathBuf {
    p.parent()
        .unwrap_or(std::path::Path::new("/"))
        .to_path_buf()
}

/// One session's share of a batch: every file of it fetched into memory.
async fn fetch_share(
    transfers: Arc<Semaphore>,
    rule: Arc<Rule>,
    pool: Arc<Pool>,
    limit: Arc<crate::bandwidth::Limit>,
    items: Vec<Item>,
) -> Vec<(Item, Result<(), FileError>)> {
    let _permit = transfers
        .acquire()
        .await
        .expect("transfer semaphore is never closed");
    let files: Vec<_> = items
        .iter()
        .map(|i| {
            let path = crate::remote::join(&rule.remote_dir, &i.row.path);
            (path, i.row.version())
        })
        .collect();
    let started = Instant::now();
    let answers = match pool.get().await {
        Ok(session) => {
            let mut session = session.limited(limit);
            let answers = session.read_wholes(&files).await;
            answers
                .into_iter()
                .zip(&files)
                .map(|(r, (path, size))| {
                    let data = r?;
                    fetch::expect_size(path, *size, data)
                })
                .collect()
        }
        Err(e) => {
            let e = FileError::from(e);
            vec![Err(e); items.len()]
        }
    };
    items
        .into_iter()
        .zip(answers)
        .map(|(mut item, r)| {
            item.started = started;
            let r = r.map(|data| item.data = data);
            (item, r)
        })
        .collect()
}
