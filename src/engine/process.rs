//! One file version through the pipeline: download, deliver, record, then
//! the remote post-action. Each step starts from the state the row is in,
//! so a row left half-way by a crash or a stop simply continues.

use super::error::{FileError, Hold};
use super::handler::{self, Props};
use super::segments::{Probed, Way};
use super::{Engine, deliver, fetch, post, retry, segments, target, verify};
use crate::config::{IfExists, PostAction, Rule};
use crate::remote::{self, Pool, PooledSession};
use crate::state::{FileRow, FileState, now_ms};
use std::path::{Path, PathBuf};
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
            Err(crate::state::Error::Lost(_)) => {
                tracing::warn!(
                    state = "lost",
                    "another node took this file over; leaving it to that node"
                );
                return Outcome::Abandoned;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record the start of an attempt; skipping the file this poll");
                return Outcome::Retrying;
            }
        };
        if row.state.is_pending() && rule.send.is_some() {
            tracing::info!(state = "uploading", attempt, size = row.size, "uploading");
        } else if row.state.is_pending() {
            tracing::info!(
                state = "downloading",
                attempt,
                size = row.size,
                "downloading"
            );
        }
        let mut stage = row.state;
        let work = async {
            match &rule.send {
                Some(to) => self.advance_send(rule, to, pool, &row, &mut stage).await,
                None => self.advance(rule, pool, &row, attempt, &mut stage).await,
            }
        };
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
        let mut placed = Chosen {
            path: row.local_path.as_ref().map(PathBuf::from),
            inode: row.local_inode,
            // A file listed without a size has the length it was downloaded with.
            len: row.version().size.unwrap_or(row.bytes_done.max(0) as u64),
            sha256: row.sha256.clone(),
        };
        if *stage == FileState::Downloaded
            && self.place(rule, row, &t, &mut placed).await? == deliver::Placed::TempMissing
        {
            tracing::warn!(
                "the temporary file is gone and the file is not delivered; downloading again"
            );
            // Recorded first: a crash during the new download must resume
            // it, never take its partial file for a downloaded one.
            self.state.restart_download(row.id, now_ms()).await?;
            *stage = FileState::Downloading;
        }
        if stage.is_pending() {
            self.download(rule, pool, row, &remote_path, &t, &mut placed)
                .await?;
            *stage = FileState::Downloaded;
            if self.place(rule, row, &t, &mut placed).await? == deliver::Placed::TempMissing {
                return Err(FileError::temporary(
                    crate::remote::ErrorKind::NotFound,
                    format!("{} vanished before its rename", t.temp_path.display()),
                ));
            }
        }
        let local_path = placed
            .path
            .as_ref()
            .map_or_else(String::new, |p| p.to_string_lossy().into_owned());
        if *stage == FileState::Downloaded {
            if let Some(h) = &rule.handler {
                if !Path::new(&local_path).exists() {
                    return Err(FileError::permanent(
                        crate::remote::ErrorKind::NotFound,
                        format!("{local_path} was removed before the handler could run"),
                    ));
                }
                let mut props = props(rule, row, &remote_path, &local_path, placed.len, attempt);
                props.sha256 = placed.sha256.clone().unwrap_or_default();
                self.state.confirm(&[row.id], now_ms()).await?;
                handler::run(h, &props).await?;
            }
            // With no post-action, delivered is done: one write, not two.
            let finished = rule.after == PostAction::Keep;
            self.state
                .mark_delivered(row.id, &local_path, finished, now_ms())
                .await?;
            tracing::info!(state = "delivered", local = %local_path, size = row.size, "delivered");
            deliver::release(&t.temp_path);
            *stage = FileState::Delivered;
            if finished {
                tracing::info!(state = "done", "done");
                deliver::clean_spool(&t.spool_dir).await;
                return Ok(());
            }
        }
        if *stage == FileState::Delivered {
            deliver::release(&t.temp_path);
            deliver::clean_spool(&t.spool_dir).await;
            self.finish_delivered(rule, pool, row).await?;
        }
        Ok(())
    }

    /// Downloads into the temporary file, chooses the final name and
    /// records both (`downloaded`) before anything is renamed.
    async fn download(
        &self,
        rule: &Rule,
        pool: &Arc<Pool>,
        row: &FileRow,
        remote_path: &str,
        t: &target::Target,
        placed: &mut Chosen,
    ) -> Result<(), FileError> {
        let started = Instant::now();
        let mut session = pool.get().await?.limited(self.rule_limit(rule));
        let sidecar = verify::read_sidecar(&mut session, rule, remote_path).await?;
        let md5 = verify::needs_md5(rule, rule.verify_server);
        let (id, version, temp) = (row.id, row.version(), &t.temp_path);
        let ranges = session.reads_ranges();
        let t0 = Instant::now();
        let limit = self.rule_limit(rule);
        // One stream on `session`, or a split: the sessions at hand, and
        // the probe's read still under way as its first range.
        let split = match segments::way(&self.state, pool, ranges, id, version).await? {
            Way::Single => Streams::One(session, None),
            Way::Ranges => Streams::Split(vec![session], None),
            Way::Probe { mut below } => {
                // A stream held back by ferry's own bandwidth limit is not
                // a slow link: more ranges would share the same limit.
                if let Some(rate) = session.rate_limit() {
                    below = below.min(rate / 10 * 8);
                }
                let probed =
                    segments::probe(pool, session, &limit, remote_path, version, temp, below)
                        .await?;
                match probed {
                    Probed::Fast(session) => Streams::One(session, Some(below)),
                    Probed::Slow { lead, extra } => Streams::Split(extra, Some(lead)),
                }
            }
        };
        let mut split = split;
        let (fetched, session) = loop {
            match split {
                Streams::One(mut session, watch) => {
                    let download = fetch::download(&mut session, remote_path, version, temp, md5);
                    let one = match watch {
                        None => Some(download.await?),
                        // Fast at the probe, which a shaper's burst can
                        // fool: watched, and split if it slows for good.
                        Some(below) => tokio::select! {
                            f = download => Some(f?),
                            () = segments::slowed(temp, version.size.unwrap_or(0), below) => None,
                        },
                    };
                    match one {
                        Some(f) => break (f, Some(session)),
                        None => {
                            // Its read was dropped half-way: out of step.
                            session.discard();
                            split = Streams::Split(Vec::new(), None);
                        }
                    }
                }
                Streams::Split(sessions, lead) => {
                    let fetching = segments::Fetching {
                        state: &self.state,
                        pool,
                        file_id: id,
                        remote_path,
                        expected: version,
                        temp,
                        md5,
                    };
                    let f = segments::download(&fetching, sessions, lead, limit.clone()).await?;
                    break (f, None);
                }
            }
        };
        let transfer = match &session {
            Some(s) => s.streamed(),
            None => t0.elapsed(),
        };
        let checked = match &sidecar {
            Some((expected, from)) => verify::check(&fetched.digests, expected, from),
            None => Ok(()),
        };
        let checked = match checked {
            Ok(()) if rule.verify_server => {
                // A segmented download gave its sessions back: ask on one.
                let mut session = match session {
                    Some(s) => s,
                    None => pool.get().await?.limited(self.rule_limit(rule)),
                };
                verify::with_server(&mut session, remote_path, &fetched.digests).await
            }
            other => {
                drop(session);
                other
            }
        };
        if let Err(e) = checked {
            // Not resumed: the next attempt fetches every byte again.
            let _ = std::fs::remove_file(&t.temp_path);
            return Err(e);
        }
        let chosen = choose(rule, t)?;
        self.state
            .mark_downloaded_with(
                row.id,
                fetched.len,
                &chosen.to_string_lossy(),
                Some(fetched.inode),
                Some(&fetched.digests.sha256),
                now_ms(),
            )
            .await?;
        *placed = Chosen {
            path: Some(chosen),
            inode: Some(fetched.inode as i64),
            len: fetched.len,
            sha256: Some(fetched.digests.sha256),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            state = "downloaded",
            bytes = fetched.bytes,
            size = row.size,
            duration_ms,
            transfer_ms = transfer.as_millis() as u64,
            "downloaded"
        );
        Ok(())
    }

    /// Gives a `downloaded` file its recorded name, or recognises that an
    /// earlier run did: by the receipt (the temporary name with a second
    /// link), or, where there are no hard links, by the recorded inode. A
    /// recorded name taken by someone else's file is chosen again (and
    /// recorded again) by `if_exists`.
    async fn place(
        &self,
        rule: &Rule,
        row: &FileRow,
        t: &target::Target,
        placed: &mut Chosen,
    ) -> Result<deliver::Placed, FileError> {
        // The rename is irreversible: this node must still own the file.
        self.state.confirm(&[row.id], now_ms()).await?;
        let size = placed.len;
        let overwrite = overwrites(rule);
        if overwrite && let Some(p) = &placed.path {
            deliver::settle_side(&t.temp_path, p)?;
        }
        for _ in 0..10 {
            let temp_there = std::fs::symlink_metadata(&t.temp_path).is_ok();
            // Without a recorded inode (rows from before it was kept), only a
            // missing temp file lets the size speak for the recorded file.
            let renamed = placed.path.as_ref().is_some_and(|p| {
                (placed.inode.is_some() || !temp_there) && deliver::is_ours(p, placed.inode, size)
            });
            if deliver::is_linked(&t.temp_path) || renamed {
                // An earlier run gave the name; make sure that is durable.
                let named = placed.path.clone().unwrap_or_else(|| t.final_path.clone());
                deliver::sync_parent_async(named).await?;
                return Ok(deliver::Placed::Named);
            }
            if !temp_there {
                return Ok(deliver::Placed::TempMissing);
            }
            let recorded = placed
                .path
                .clone()
                .filter(|p| p.parent() == t.final_path.parent() && (overwrite || !p.exists()));
            let chosen = match recorded {
                Some(p) => p,
                None => {
                    let c = choose(rule, t)?;
                    self.state
                        .record_final_name(row.id, &c.to_string_lossy(), now_ms())
                        .await?;
                    placed.path = Some(c.clone());
                    c
                }
            };
            match deliver::place(t.temp_path.clone(), chosen, overwrite).await? {
                deliver::Placed::Taken => continue,
                other => return Ok(other),
            }
        }
        Err(FileError::temporary(
            crate::remote::ErrorKind::AlreadyExists,
            format!("no free name for {} after 10 tries", t.final_path.display()),
        ))
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
        // A failure may come from a stall long enough to lose the file
        // (timers fire late after a pause): what follows records a retry
        // or moves the file to `failed_move_to`, so it must still be ours.
        let lost = e.lost
            || matches!(
                self.state.confirm(&[row.id], now).await,
                Err(crate::state::Error::Lost(_))
            );
        if lost {
            tracing::warn!(state = "lost", attempt, error = %e, "another node took this file over; leaving it to that node");
            // What this stalled process wrote under the shared temporary
            // name after it woke goes; a receipt (a second link) stays
            // for the owner, who then finds its file named.
            if rule.send.is_none()
                && let Some(temp) = target::leftover(rule, &self.spool_dir, row)
                && std::fs::symlink_metadata(&temp)
                    .is_ok_and(|m| m.is_file() && std::os::unix::fs::MetadataExt::nlink(&m) == 1)
            {
                let _ = std::fs::remove_file(&temp);
            }
            return Outcome::Abandoned;
        }
        if let Some(hold) = e.hold {
            return self.hold(rule, row, hold, &e.message).await;
        }
        self.metrics.error(&rule.name, e.kind);
        // Send rows resume from the server's temporary file, not a local one.
        let temp_len = match rule.send {
            Some(_) => 0,
            None => target::resolve(rule, &self.spool_dir, row)
                .map_or(0, |t| fetch::partial_len(&t.temp_path)),
        };
        // Failures count, not attempts: stops, restarts and holds started
        // attempts that were nobody's failure.
        let failure = (row.failures + 1) as u32;
        if retry::may_retry(&rule.retry, failure, e.temporary) {
            let wait = retry::delay(&rule.retry, failure);
            let next = now + wait.as_millis() as i64;
            if let Err(db) = self
                .state
                .schedule_retry(row.id, &e.message, next, temp_len, now)
                .await
            {
                tracing::error!(error = %db, "cannot record a retry");
            }
            tracing::warn!(state = "retrying", attempt, error = %e, retry_in_ms = wait.as_millis() as u64, "attempt failed; will retry");
            self.metrics.retry(&rule.name);
            return Outcome::Retrying;
        }
        let mut message = e.message.clone();
        let mut moved_to = None;
        // A delivered file that cannot be moved or deleted stays delivered;
        // only undelivered files go to the failed directory.
        if stage != FileState::Delivered
            && rule.failed_move_to.is_some()
            && let Ok(mut session) = pool.get().await
        {
            match post::move_failed(&mut session, rule, row).await {
                Ok(Some(to)) => {
                    message.push_str(&format!(" (moved to {to} on the server)"));
                    moved_to = Some(to);
                }
                Ok(None) => {}
                Err(me) => {
                    message.push_str(&format!(" (moving it to failed_move_to failed too: {me})"))
                }
            }
        }
        let moved_to = moved_to.as_deref();
        if let Err(db) = self
            .state
            .mark_failed(row.id, &message, moved_to, now)
            .await
        {
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

/// Keeps a file waiting without counting a failure: until the name is free
/// (checked at every poll), or until local storage recovers (tried again
/// at the backoff cap, however long the outage lasts).
impl Engine {
    pub(super) async fn hold(&self, rule: &Rule, row: &FileRow, hold: Hold, why: &str) -> Outcome {
        let now = now_ms();
        let next = match hold {
            Hold::NameTaken => None,
            Hold::LocalStorage => Some(now + rule.retry.max.as_millis() as i64),
        };
        if let Err(db) = self.state.hold(row.id, hold.as_str(), why, next, now).await {
            tracing::error!(error = %db, "cannot record a held file");
        }
        tracing::warn!(state = "held", held = hold.as_str(), error = %why, "file held; no attempt spent");
        Outcome::Retrying
    }
}

/// The final name, the temporary file's inode and the file's length, once known.
struct Chosen {
    path: Option<PathBuf>,
    inode: Option<i64>,
    len: u64,
    /// SHA-256 of the bytes, once downloaded (recorded with them).
    sha256: Option<String>,
}

/// Handler-only rules download into a directory of their own per row:
/// nothing there to keep.
fn overwrites(rule: &Rule) -> bool {
    rule.local_dir.is_none() || rule.if_exists == IfExists::Overwrite
}

/// The name to deliver under, by the rule's `if_exists`.
pub(super) fn choose(rule: &Rule, t: &target::Target) -> Result<PathBuf, FileError> {
    let policy = if overwrites(rule) {
        IfExists::Overwrite
    } else {
        rule.if_exists
    };
    match deliver::choose(&t.final_path, policy)? {
        deliver::Choice::Name(p) => Ok(p),
        deliver::Choice::Wait => Err(FileError::name_taken(&t.final_path)),
    }
}

fn props(
    rule: &Rule,
    row: &FileRow,
    remote_path: &str,
    local_path: &str,
    size: u64,
    attempt: i64,
) -> Props {
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
        size,
        local_path: local_path.to_string(),
        attempt,
        sha256: String::new(),
    }
}

/// How a download streams: in one stream on a session, or split into
/// ranges over the sessions at hand, behind a probe's read still under way
/// as the first range.
enum Streams {
    /// With the rate below which it is split if it slows down (a probe
    /// found it fast).
    One(PooledSession, Option<u64>),
    Split(Vec<PooledSession>, Option<segments::Lead>),
}
