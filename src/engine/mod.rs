//! The Listen pipeline. A poll of one rule reads top-down: list, filter,
//! diff, gate, then per file fetch, deliver, record, post-action. The engine
//! never names a protocol: it talks to [`crate::remote::Session`]s.

mod batch;
mod claim;
mod deliver;
pub mod digest;
mod direct;
mod error;
mod fetch;
pub mod filter;
mod finish;
mod handler;
mod post;
mod process;
mod read_ahead;
mod record;
mod retention;
mod retry;
mod run;
mod safe_path;
mod segment_plan;
mod segment_sink;
mod segments;
mod send;
mod send_batch;
mod sweep;
mod target;
mod upload;
mod verify;
mod walk;

use claim::{beside, settle};
pub use error::FileError;
use error::Hold;
pub use process::Outcome;
pub use target::is_temp_name;

use crate::bandwidth::{Limit, Limits};
use crate::config::{Daemon, IfExists, Rule, Server};
use crate::metrics::Metrics;
use crate::remote::Pool;
use crate::state::{Direction, Due, FileRow, FileState, Skipped, State, now_ms};
use crate::watch::{DirWatch, Ready};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Due rows a poll takes from the database at a time: enough that batches
/// and transfers keep busy between two fetches, few enough that a first
/// poll of 100,000 new files never holds their rows all at once.
const DUE_CHUNK: usize = 1024;

/// Shared by every rule: the state database, the session pools and the
/// global bound on transfers.
pub struct Engine {
    state: State,
    spool_dir: PathBuf,
    transfers: Arc<Semaphore>,
    max_transfers: usize,
    /// Per server name, the pool of its current block and of the one
    /// before a reload: rules apply a reload at their next slot, so for
    /// up to an interval some poll with the old block and some with the
    /// new, and each must find its pool rather than replace the other's.
    pools: Mutex<HashMap<String, Vec<Arc<Pool>>>>,
    /// Rules whose leftover temporary names were swept since the start.
    swept: Mutex<std::collections::HashSet<String>>,
    /// `daemon.retention`, and when each rule's failed files were last
    /// cleaned up for it (`retention.rs`).
    retention: Option<std::time::Duration>,
    cleaned: Mutex<HashMap<String, Instant>>,
    /// Cancelled when the grace period after a stop runs out: transfers in
    /// flight are dropped and resume from their state at the next start.
    abort: CancellationToken,
    /// Counters for the metrics endpoint; kept in `ferry once` too (cheap).
    metrics: Arc<Metrics>,
    /// Bandwidth limits per server and per rule, kept across reloads.
    limits: Limits,
    /// Rules whose running poll goes back to its first due row once.
    rewinds: Rewinds,
}

/// Rules whose poll in progress should start over from the first due row
/// after its current chunk. A poll walks its due rows forward by id; rows
/// behind its cursor whose owner's lease ran out (a dead node's) would
/// otherwise wait for the next poll, which behind a large backlog is many
/// leases away. The node's renewals ask for it when they find such rows.
#[derive(Clone, Default)]
pub struct Rewinds(Arc<Mutex<HashSet<String>>>);

impl Rewinds {
    pub fn ask(&self, rule: &str) {
        self.0
            .lock()
            .expect("rewinds lock")
            .insert(rule.to_string());
    }

    /// Whether `rule` was asked to rewind since the last call (and forgets it).
    fn take(&self, rule: &str) -> bool {
        self.0.lock().expect("rewinds lock").remove(rule)
    }

    /// Whether `rule` was asked to rewind, without forgetting it: a loop
    /// inside the poll stops early, and the poll's due loop rewinds.
    fn asked(&self, rule: &str) -> bool {
        self.0.lock().expect("rewinds lock").contains(rule)
    }
}

/// What one poll of one rule did.
#[derive(Debug, Default, Clone)]
pub struct PollReport {
    pub listed: usize,
    pub done: usize,
    pub retrying: usize,
    pub failed: usize,
    pub error: Option<String>,
    /// Subdirectories the listing skipped (`None`: it did not get that far),
    /// and the last one's error.
    pub skipped_dirs: Option<usize>,
    pub skipped_error: Option<String>,
    /// With a directory watch: when a file held back by its events (closed
    /// less than `stable_for` ago) becomes ready, so the rule polls then.
    pub next_ready: Option<std::time::Duration>,
    /// Whether this node listed the rule (it held the listing turn);
    /// otherwise it only claimed due files that another node listed.
    pub lister: bool,
}

impl Engine {
    pub fn new(state: State, daemon: &Daemon) -> Arc<Self> {
        Arc::new(Self {
            state,
            spool_dir: daemon.spool_dir.clone(),
            transfers: Arc::new(Semaphore::new(daemon.max_transfers)),
            max_transfers: daemon.max_transfers,
            pools: Mutex::new(HashMap::new()),
            swept: Mutex::new(Default::default()),
            retention: daemon.retention,
            cleaned: Mutex::new(HashMap::new()),
            abort: CancellationToken::new(),
            metrics: Arc::new(Metrics::new()),
            limits: Limits::default(),
            rewinds: Rewinds::default(),
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where the node's renewals ask running polls to start over (see
    /// [`Rewinds`]).
    pub fn rewinds(&self) -> Rewinds {
        self.rewinds.clone()
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Sessions open per server (in use, connecting or idle), for metrics.
    pub fn sessions_open(&self) -> Vec<(String, usize)> {
        let pools = self.pools.lock().expect("pools lock");
        pools
            .iter()
            .map(|(name, p)| (name.clone(), p.iter().map(|p| p.open_sessions()).sum()))
            .collect()
    }

    /// Closes every server's idle sessions politely (SSH disconnect, FTP
    /// QUIT): sessions stay open between polls (`idle_timeout`), so the
    /// end of `ferry once` and of a stopped `ferry run` closes them.
    pub async fn close_sessions(&self) {
        let pools: Vec<Arc<Pool>> = self
            .pools
            .lock()
            .expect("pools lock")
            .values()
            .flatten()
            .cloned()
            .collect();
        for pool in pools {
            pool.close_all_idle().await;
        }
    }

    /// Whether every transfer slot (`max_transfers`) is taken: files may be
    /// waiting for one, which the watchdog must not take for a hang.
    pub fn transfer_slots_full(&self) -> bool {
        self.transfers.available_permits() == 0
    }

    /// Transfers holding a slot now (a batch share counts as one), for the
    /// status line systemd shows.
    pub fn transfers_in_flight(&self) -> usize {
        self.max_transfers
            .saturating_sub(self.transfers.available_permits())
    }

    pub fn max_transfers(&self) -> usize {
        self.max_transfers
    }

    pub fn abort_token(&self) -> CancellationToken {
        self.abort.clone()
    }

    /// The pool for a server block: a changed block (reload) gets a new
    /// pool, and the one before it is kept while rules still use it.
    fn pool_for(&self, server: &Arc<Server>) -> Arc<Pool> {
        let mut pools = self.pools.lock().expect("pools lock");
        let known = pools.entry(server.name.clone()).or_default();
        if let Some(p) = known.iter().find(|p| *p.server == **server) {
            return p.clone();
        }
        let limit = self.limits.server(&server.name, &server.bandwidth);
        let p = Pool::limited(server.clone(), limit);
        known.insert(0, p.clone());
        known.truncate(2);
        p
    }

    /// The rule's own bandwidth limit, which its sessions move under on
    /// top of their server's ([`crate::remote::PooledSession::limited`]).
    fn rule_limit(&self, rule: &Rule) -> Arc<Limit> {
        self.limits.rule(&rule.name, &rule.bandwidth)
    }

    /// Takes the (re)loaded configuration's bandwidth settings: transfers
    /// in flight follow them from their next chunk. Before the first
    /// call, each limit is made from the first block that names it.
    pub fn apply_bandwidth(&self, rules: &[Arc<Rule>]) {
        for rule in rules {
            self.limits.set_rule(&rule.name, &rule.bandwidth);
            let servers =
                std::iter::once(&rule.server).chain(rule.send.as_ref().map(|t| &t.server));
            for server in servers {
                self.limits.set_server(&server.name, &server.bandwidth);
            }
        }
    }

    /// One poll of `rule`. Never fails: errors are logged, stored as the
    /// rule's health, and returned in the report. `stop` ends the poll early
    /// between files (files in flight finish).
    pub async fn poll(&self, rule: &Arc<Rule>, stop: &CancellationToken) -> PollReport {
        self.poll_watched(rule, stop, None).await
    }

    /// [`Engine::poll`] of a rule whose local source directory is watched:
    /// its events decide when a file is complete where they can (see
    /// [`crate::watch`]).
    pub async fn poll_watched(
        &self,
        rule: &Arc<Rule>,
        stop: &CancellationToken,
        watch: Option<&DirWatch>,
    ) -> PollReport {
        let span = tracing::info_span!("poll", rule = %rule.name, server = %rule.server.name);
        async {
            let started_ms = now_ms();
            let t0 = Instant::now();
            let mut report = PollReport::default();
            if let Err(e) = self.poll_steps(rule, stop, watch, &mut report).await {
                tracing::error!(error = %e, remote = %rule.remote_dir, "poll failed");
                self.metrics.error(&rule.name, e.kind);
                report.error = Some(e.to_string());
            }
            let duration_ms = t0.elapsed().as_millis() as i64;
            let listed = (report.error.is_none() && report.lister).then_some(report.listed);
            self.metrics.poll(&rule.name, t0.elapsed(), listed);
            if let Err(e) = self
                .state
                .record_poll(
                    &rule.name,
                    started_ms,
                    duration_ms,
                    listed,
                    report.error.as_deref(),
                    &Skipped {
                        count: report.skipped_dirs,
                        last_error: report.skipped_error.as_deref(),
                    },
                )
                .await
            {
                tracing::error!(error = %e, "cannot record the poll in the state database");
            }
            tracing::debug!(
                listed = report.listed,
                done = report.done,
                failed = report.failed,
                duration_ms,
                "poll finished"
            );
            report
        }
        .instrument(span)
        .await
    }

    async fn poll_steps(
        &self,
        rule: &Arc<Rule>,
        stop: &CancellationToken,
        watch: Option<&DirWatch>,
        report: &mut PollReport,
    ) -> Result<(), FileError> {
        let pool = self.pool_for(&rule.server);
        // A poll starts from the first due row anyway.
        self.rewinds.take(&rule.name);
        report.lister = self.state.take_list_turn(&rule.name, now_ms()).await?;
        if !report.lister {
            // Another node lists this rule; this one takes its share of the work.
            self.run_due(rule, &pool, stop, report).await?;
            pool.close_idle().await;
            return Ok(());
        }
        let now = now_ms();
        let markers = self
            .list_and_record(rule, &pool, watch, now, report)
            .await?;
        // With events, stability is judged file by file below.
        let stable_for = if watch.is_some() {
            0
        } else {
            ms(rule.stable_for)
        };
        let first = self
            .swept
            .lock()
            .expect("swept lock")
            .insert(rule.name.clone());
        if first {
            self.sweep_leftovers(rule).await;
        }
        self.clean_failed_leftovers(rule).await;
        let due = Due {
            now,
            stable_for_ms: stable_for,
            min_age_ms: ms(rule.min_age),
        };
        let mut running = claim::Running::new();
        let r = self
            .run_due_rows(
                rule,
                &pool,
                watch,
                &markers,
                &due,
                stop,
                report,
                &mut running,
            )
            .await;
        settle(&mut running, report, 1).await;
        r?;
        pool.close_idle().await;
        Ok(())
    }

    /// The lister's due rows, [`DUE_CHUNK`] at a time, through the gates
    /// and into transfers. The next rows are fetched and gated while the
    /// last ones' chunks run (`running`); only a rewind, or the end of the
    /// due rows, waits for them all, since fetching again from the first
    /// due row would offer rows that are still running.
    #[allow(clippy::too_many_arguments)]
    async fn run_due_rows<'a>(
        &'a self,
        rule: &'a Arc<Rule>,
        pool: &'a Arc<Pool>,
        watch: Option<&DirWatch>,
        markers: &HashSet<String>,
        due: &Due,
        stop: &'a CancellationToken,
        report: &mut PollReport,
        running: &mut claim::Running<'a>,
    ) -> Result<(), FileError> {
        let mut after = 0;
        while !stop.is_cancelled() {
            let fetch = self.state.due_after(&rule.name, due, after, DUE_CHUNK);
            let chunk = beside(running, report, fetch).await?;
            let more = chunk.len() == DUE_CHUNK;
            if let Some(last) = chunk.last() {
                after = last.id;
                let chunk = match watch {
                    Some(w) => by_events(w, rule, chunk, due.now, &mut report.next_ready),
                    None => chunk,
                };
                let gated = beside(running, report, self.gate(rule, chunk, markers)).await?;
                self.run_offered(rule, pool, gated, stop, report, running)
                    .await?;
            }
            if !more {
                // What still runs may ask for a rewind.
                settle(running, report, 1).await;
            }
            if self.rewinds.take(&rule.name) {
                tracing::debug!("taking over expired claims: back to the first due row");
                settle(running, report, 1).await;
                after = 0;
            } else if !more {
                break;
            }
        }
        Ok(())
    }

    /// Keeps rows whose ready marker and sidecar checksum file exist (when
    /// the rule asks for them:
    /// `markers` holds every file path listed) and records the pending ones
    /// as `stable`.
    async fn gate(
        &self,
        rule: &Rule,
        due: Vec<FileRow>,
        markers: &HashSet<String>,
    ) -> Result<Vec<FileRow>, FileError> {
        // A sidecar checksum file is a ready marker too: both must be there.
        let patterns: Vec<&String> = rule
            .ready_marker
            .iter()
            .chain(&rule.checksum_file)
            .collect();
        let due: Vec<FileRow> = due
            .into_iter()
            .filter(|r| {
                !r.state.is_pending()
                    || patterns
                        .iter()
                        .all(|p| markers.contains(&marker_path(p, &r.path)))
            })
            .collect();
        let newly: Vec<i64> = due
            .iter()
            .filter(|r| r.state == FileState::Seen)
            .map(|r| r.id)
            .collect();
        self.state.mark_stable(&newly, now_ms()).await?;
        for r in due.iter().filter(|r| r.state == FileState::Seen) {
            tracing::info!(state = "stable", path = %r.path, size = r.size, "stable");
        }
        Ok(due)
    }

    /// `if_exists = "wait"`: pending files whose name is taken in
    /// `local_dir` are held, without a claim or an attempt, until it is free.
    async fn hold_taken_names(&self, rule: &Rule, due: Vec<FileRow>) -> Vec<FileRow> {
        if rule.if_exists != IfExists::Wait || rule.local_dir.is_none() {
            return due;
        }
        let mut go = Vec::with_capacity(due.len());
        for row in due {
            // One resolve per row: it creates the directories on the way.
            let taken = if row.state.is_pending() {
                target::resolve(rule, &self.spool_dir, &row)
                    .ok()
                    .map(|t| t.final_path)
                    .filter(|p| std::fs::symlink_metadata(p).is_ok())
            } else {
                None
            };
            let Some(final_path) = taken else {
                go.push(row);
                continue;
            };
            if row.held.as_deref() != Some(Hold::NameTaken.as_str()) {
                let span = tracing::info_span!(parent: None, "file", rule = %rule.name, server = %rule.server.name, path = %row.path, file_id = row.id);
                let e = FileError::name_taken(&final_path);
                self.hold(rule, &row, Hold::NameTaken, &e.message)
                    .instrument(span)
                    .await;
            }
        }
        go
    }

    /// Moves files that `ferry retry` requeued back from `failed_move_to`
    /// to their own path, before the listing, so that the listing finds
    /// them where their rows say (a rename keeps size and mtime).
    async fn restore_retried(
        &self,
        rule: &Rule,
        session: &mut crate::remote::PooledSession,
    ) -> Result<(), FileError> {
        for row in self.state.to_restore(&rule.name).await? {
            let Some(from) = row.failed_moved_to.as_deref() else {
                continue;
            };
            let to = crate::remote::join(&rule.remote_dir, &row.path);
            session.create_dirs(crate::remote::parent(&to)).await?;
            match session.rename(from, &to, false).await {
                Ok(()) => {
                    tracing::info!(path = %row.path, from = %from, "moved back from failed_move_to for a retry");
                    self.state.restored(row.id, now_ms()).await?;
                }
                Err(e) if e.kind == crate::remote::ErrorKind::NotFound => {
                    tracing::warn!(path = %row.path, from = %from, "not in failed_move_to any more; the listing decides");
                    self.state.restored(row.id, now_ms()).await?;
                }
                Err(e) if e.kind == crate::remote::ErrorKind::AlreadyExists => {
                    let msg =
                        format!("cannot move {from} back for a retry: {to} exists on the server");
                    tracing::error!(path = %row.path, error = %msg, "retry failed");
                    self.state.mark_failed(row.id, &msg, None, now_ms()).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn marker_path(pattern: &str, rel: &str) -> String {
    match rel.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{}", filter::marker_for(pattern, name)),
        None => filter::marker_for(pattern, rel),
    }
}

/// Keeps the pending rows whose events say they are complete, or, where
/// there were no events, that the rescans saw unchanged for `stable_for`.
fn by_events(
    w: &DirWatch,
    rule: &Rule,
    due: Vec<FileRow>,
    now: i64,
    next: &mut Option<std::time::Duration>,
) -> Vec<FileRow> {
    due.into_iter()
        .filter(|r| {
            if !r.state.is_pending() {
                return true;
            }
            match w.ready(&r.path, rule.stable_for) {
                Ready::Now => true,
                Ready::Later(after) => {
                    if let Some(d) = after {
                        *next = Some(next.map_or(d, |n| n.min(d)));
                    }
                    false
                }
                Ready::Unknown => r.stable_since_ms <= now - ms(rule.stable_for),
            }
        })
        .collect()
}

fn direction(rule: &Rule) -> Direction {
    match rule.send {
        Some(_) => Direction::Send,
        None => Direction::Listen,
    }
}

fn ms(d: std::time::Duration) -> i64 {
    d.as_millis() as i64
}
