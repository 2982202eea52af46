//! Segmented download of one large file: its bytes are split into ranges,
//! fetched at once over several sessions of the server's pool into the one
//! temporary file at their offsets, then fsynced and handed to the same
//! delivery as a single stream. It pays where each connection is shaped
//! (a partner's firewall, a long fat pipe): four connections move four
//! times the bytes.
//!
//! The temporary file may have holes, so its length says nothing; what
//! each range holds is in the state database (`segments` rows), recorded
//! only after an fsync of the file, so a crash never leaves a record of
//! bytes that are not on disk (ARCHITECTURE.md, "Segmented downloads").

use super::error::FileError;
use super::fetch::{self, Fetched};
use super::segment_plan;
use super::segment_sink::RangeSink;
use crate::bandwidth::Limit;
use crate::remote::{ErrorKind, Pool, PooledSession, RemoteError, Slot, Version};
use crate::state::{PlannedFor, Segment, State};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the ranges' progress is made durable and recorded: a crash
/// costs each range at most this much of its transfer again.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Smaller files are never split (two ranges of the plan's alignment), so
/// their downloads need no look at the `segments` table.
const MIN_SIZE: u64 = 2 * 1024 * 1024;

/// How long the probe's stream may take for the bytes a stream at
/// `segment_below` would move in that time. Long enough that a shaper's
/// burst (a token bucket filled while the connection sat idle) does not
/// pass for a fast link, short enough to cost little where splitting pays.
const PROBE_TIME: Duration = Duration::from_millis(200);

/// The probe reads at least this much, so a low `segment_below` still
/// measures more than a few packets.
const PROBE_MIN: u64 = 1024 * 1024;

/// How a download goes.
pub enum Way {
    /// One stream.
    Single,
    /// By ranges: planned now, or continued from their records.
    Ranges,
    /// One stream, split into ranges if its first bytes come slower than
    /// this (bytes/s).
    Probe { below: u64 },
}

/// How this download goes. By ranges: a file of known size at or above
/// the server's `segment_threshold`, on a transport that reads ranges
/// (`reads_ranges`, from the session), on a server that has not refused
/// one; first probed in one stream when the server has `segment_below`.
/// Ranges recorded by an earlier attempt are continued whatever the
/// settings now say: only they tell what the temporary file holds.
pub async fn way(
    state: &State,
    pool: &Pool,
    reads_ranges: bool,
    file_id: i64,
    expected: Version,
) -> Result<Way, FileError> {
    let Some(size) = expected.size else {
        return Ok(Way::Single);
    };
    if !reads_ranges || size < MIN_SIZE {
        return Ok(Way::Single);
    }
    let s = pool.server.segmenting;
    let wanted = s.segments > 1 && size >= s.threshold && !pool.ranges_refused();
    let recorded = state.segments(file_id, planned_for(size, expected)).await?;
    Ok(match (recorded.is_empty(), wanted, s.below) {
        (false, _, _) => Way::Ranges,
        (true, false, _) => Way::Single,
        (true, true, None) => Way::Ranges,
        (true, true, Some(below)) => Way::Probe { below },
    })
}

/// What the probe found.
pub enum Probed {
    /// Fast enough in one stream: the session goes on from the probe's
    /// bytes (already in the temporary file).
    Fast(PooledSession),
    /// Slow: the probe's read goes on as the first range of a split, and
    /// these sessions, connected while it ran, take the others.
    Slow {
        lead: Lead,
        extra: Vec<PooledSession>,
    },
}

/// The probe's read, still under way when it was found slow: the first
/// range of the split, `[start, end)`, with its session. Not cut short, so
/// the session stays in step and no byte it asked for is wasted.
pub struct Lead {
    read: BoxFuture<'static, LeadEnd>,
    start: u64,
    end: u64,
    done: Arc<AtomicU64>,
}

impl Lead {
    /// Its range, and the bytes of it still to come.
    fn span(&self) -> (u64, u64, u64) {
        let left = (self.end - self.start).saturating_sub(self.done.load(Ordering::Acquire));
        (self.start, self.end, left)
    }
}

type LeadEnd = (PooledSession, RangeSink, crate::remote::Result<u64>);

/// A session with a read under way, in a future that may be dropped (the
/// split cancelled): dropped, the session is discarded, never handed back
/// to the pool out of step.
struct InFlight(Option<PooledSession>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.discard();
        }
    }
}

/// Reads, after what the temporary file holds, as many bytes as a stream
/// at `below` bytes/s moves in [`PROBE_TIME`], in one stream on `session`,
/// and gives it that long; from a quarter of that time on it also opens the
/// extra sessions a split would use (free pool slots only), so a split loses
/// no time connecting. Done in time: fast, and any extra sessions go back to
/// the pool. Not: slow, and the read goes on as the split's first range.
pub async fn probe(
    pool: &Arc<Pool>,
    session: PooledSession,
    limit: &Arc<Limit>,
    remote_path: &str,
    expected: Version,
    temp: &Path,
    below: u64,
) -> Result<Probed, FileError> {
    let size = expected.size.expect("segments::way checked the size");
    let local =
        |what: &str, e: &std::io::Error| FileError::local(format!("{what} {}", temp.display()), e);
    let file = fetch::open_temp(temp)?;
    let mut from = file.metadata().map_err(|e| local("stat", &e))?.len();
    if from > size {
        file.set_len(0).map_err(|e| local("truncate", &e))?;
        from = 0;
    }
    let at_below = (below as f64 * PROBE_TIME.as_secs_f64()) as u64;
    // Whole MiBs, so the ranges behind it start on block boundaries.
    let want = (at_below.max(PROBE_MIN) / PROBE_MIN * PROBE_MIN).min(size - from);
    let extra = pool.server.segmenting.segments.saturating_sub(1);
    let done = Arc::new(AtomicU64::new(0));
    let mut sink = RangeSink::new(Arc::new(file), from, done.clone());
    let path = remote_path.to_string();
    let mut read = async move {
        let mut held = InFlight(Some(session));
        let s = held.0.as_mut().expect("held until the read ends");
        let r = s.read_range(&path, from, want, &mut sink).await;
        let session = held.0.take().expect("held until the read ends");
        (session, sink, r)
    }
    .boxed();
    // A fast link is done within a quarter of the probe and opens no extra
    // session: their handshakes would cost it CPU (sshd's above all) for
    // sessions it never uses. A slower one opens them then.
    let early = tokio::select! {
        r = &mut read => Some(r),
        _ = tokio::time::sleep(PROBE_TIME / 4) => None,
    };
    let (ended, extra) = match early {
        Some(r) => (Some(r), Vec::new()),
        None => {
            let slots: Vec<Slot> = (0..extra).map_while(|_| pool.try_reserve()).collect();
            let connect = slots.into_iter().map(|slot| join(slot, limit));
            let connect = futures::future::join_all(connect);
            let in_time = tokio::time::timeout(PROBE_TIME - PROBE_TIME / 4, &mut read);
            let (ended, joined) = tokio::join!(in_time, connect);
            (ended.ok(), joined.into_iter().flatten().collect())
        }
    };
    let arrived = done.load(Ordering::Acquire);
    let rate = (arrived as f64 / PROBE_TIME.as_secs_f64()) as u64;
    // Out of time with the bytes of a fast stream in: only the read's end
    // is late (an FTP range closes its data connection and reads the
    // reply). Fast all the same.
    let ended = match ended {
        None if rate >= below => Some((&mut read).await),
        ended => ended,
    };
    let Some((session, mut sink, got)) = ended else {
        tracing::info!(
            rate,
            prefix = from + arrived,
            "one stream is slow; fetching the rest in segments"
        );
        let lead = Lead {
            read,
            start: from,
            end: from + want,
            done,
        };
        return Ok(Probed::Slow { lead, extra });
    };
    if let Some(e) = sink.write_error.take() {
        return Err(fetch::discard(temp, local("write", &e)));
    }
    let got = got?;
    if got != want {
        return Err(FileError::temporary(
            ErrorKind::Other,
            format!(
                "read {got} bytes of {remote_path} from byte {from}, expected {want}: it changed during the download"
            ),
        ));
    }
    Ok(Probed::Fast(session))
}

/// How long a stream the probe found fast must stay below `segment_below`
/// before it is split after all: a shaper lets a burst through at the
/// start (a token bucket filled while the connection sat idle; pyftpdlib's
/// throttle passes two seconds' worth at full speed), then holds the
/// connection to its rate.
const SLOW_FOR: Duration = Duration::from_secs(1);

/// A split pays only with at least this long left at the slow rate: it
/// costs a dropped read and new sessions.
const WORTH_SPLITTING: Duration = Duration::from_secs(3);

/// Resolves when a single stream into `temp` (of a file of `size` bytes),
/// found fast by the probe, has moved less than `below` bytes/s over the
/// last [`SLOW_FOR`] with at least [`WORTH_SPLITTING`] left at that rate;
/// otherwise never. Watches the temporary file's length, which the stream
/// raises as it writes.
pub async fn slowed(temp: &Path, size: u64, below: u64) {
    let len = || std::fs::metadata(temp).map_or(0, |m| m.len());
    let step = SLOW_FOR / 4;
    let mut seen: VecDeque<(std::time::Instant, u64)> = VecDeque::new();
    loop {
        tokio::time::sleep(step).await;
        let now = (std::time::Instant::now(), len());
        seen.push_back(now);
        while seen.len() > 5 {
            seen.pop_front();
        }
        let (t0, b0) = seen[0];
        let span = now.0.duration_since(t0);
        if span < SLOW_FOR {
            continue;
        }
        let rate = (now.1.saturating_sub(b0) as f64 / span.as_secs_f64()) as u64;
        let left = size.saturating_sub(now.1);
        if rate < below
            && left as f64 >= rate as f64 * WORTH_SPLITTING.as_secs_f64()
            && left >= MIN_SIZE
        {
            tracing::info!(
                rate,
                prefix = now.1,
                "one stream slowed down after its first burst; fetching the rest in segments"
            );
            return;
        }
    }
}

/// An extra session of a split on `slot`, under `limit` (the rule's
/// bandwidth) as well as the server's. One that cannot connect only means
/// fewer ranges at once: the sessions at hand fetch the rest.
async fn join(slot: Slot, limit: &Arc<Limit>) -> Option<PooledSession> {
    match slot.connect().await {
        Ok(s) => Some(s.limited(limit.clone())),
        Err(e) => {
            tracing::info!(error = %e, "cannot open another session; fewer segments at once");
            None
        }
    }
}

fn planned_for(size: u64, expected: Version) -> PlannedFor {
    PlannedFor {
        size,
        mtime: expected.mtime,
    }
}

/// The file a segmented download fetches, and where it goes.
#[derive(Clone, Copy)]
pub struct Fetching<'a> {
    pub state: &'a State,
    pub pool: &'a Arc<Pool>,
    pub file_id: i64,
    pub remote_path: &'a str,
    /// The listed version; its size is known (`segments::way`).
    pub expected: Version,
    pub temp: &'a Path,
    /// MD5 too, beside SHA-256 (a sidecar or the server check asks for it).
    pub md5: bool,
}

/// The file's one download, by ranges. `sessions` are the sessions at
/// hand (the caller's, or a probe's extra ones), `lead` a probe's read
/// still under way as the first range; more sessions are taken where the
/// pool has them free, up to one per range, all under `limit` (the rule's
/// bandwidth) too.
pub async fn download(
    f: &Fetching<'_>,
    sessions: Vec<PooledSession>,
    lead: Option<Lead>,
    limit: Arc<Limit>,
) -> Result<Fetched, FileError> {
    let Fetching {
        state,
        pool,
        file_id,
        remote_path,
        expected,
        temp,
        ..
    } = *f;
    let size = expected.size.expect("segments::applies checked the size");
    let version = planned_for(size, expected);
    let file = fetch::open_temp(temp)?;
    let span = lead.as_ref().map(Lead::span);
    let ranges = ranges(state, pool, &file, file_id, version, temp, span).await?;
    let inode = file
        .metadata()
        .map_err(|e| FileError::local(format!("stat {}", temp.display()), &e))?
        .ino();
    let todo = ranges.iter().filter(|r| r.remaining() > 0).count();
    let busy = sessions.len() + usize::from(lead.is_some());
    let slots: Vec<Slot> = (busy..todo).map_while(|_| pool.try_reserve()).collect();
    if todo > 0 {
        let resumed: u64 = ranges.iter().map(|r| r.done).sum();
        tracing::info!(
            segments = ranges.len(),
            left = todo,
            sessions = busy + slots.len(),
            resumed,
            "downloading in segments"
        );
    }
    let mut done: Vec<Arc<AtomicU64>> = ranges
        .iter()
        .map(|r| Arc::new(AtomicU64::new(r.done)))
        .collect();
    // The lead's range is its own: it counts its bytes where the probe's
    // sink does, and is in no queue.
    let (lead, queued) = match lead {
        Some(Lead {
            read, done: count, ..
        }) => {
            done[0] = count;
            (Some(read), (1..ranges.len()).collect())
        }
        None => (None, (0..ranges.len()).collect()),
    };
    let job = Job {
        state,
        file_id,
        path: remote_path,
        size,
        file: Arc::new(file),
        done,
        queue: Mutex::new(queued),
        cancel: CancellationToken::new(),
        ranges,
        temp,
    };
    let fetched = job.run(sessions, slots, lead, &limit).await;
    let Job { file, .. } = job;
    match fetched {
        Ok(bytes) => finish(f, file, bytes, inode).await,
        Err(Failure::Refused(e)) => {
            pool.note_ranges_refused();
            tracing::warn!(server = %pool.server.name, error = %e, "the server cannot start a read part-way; fetching its large files in one stream");
            restart_single(f, &file).await
        }
        Err(Failure::Changed { grew: true, error }) => {
            // A new version, which the next listing sees: nothing here is
            // kept (as a single stream empties a file that grew).
            let _ = file.set_len(0);
            state.clear_segments(file_id).await?;
            Err(error)
        }
        // Shorter than listed: the progress stays recorded, as a single
        // stream keeps its prefix; a new version gets a temporary file of
        // its own.
        Err(Failure::Changed { grew: false, error }) => Err(error),
        Err(Failure::Local(e)) => {
            // A failed write or fsync can leave holes the records do not
            // know of: nothing is resumed.
            state.clear_segments(file_id).await?;
            Err(fetch::discard(temp, e))
        }
        Err(Failure::Remote(e)) => Err(e),
    }
}

/// The ranges to continue, or a new plan (committed before any byte of it
/// is written). Records that cannot be this file's (it is empty, or
/// shorter than they claim: it was removed or truncated since) are dropped.
/// Behind a probe's read (`lead`: its range and the bytes of it to come),
/// always a new plan, after the bytes before it (a single stream's, from
/// an earlier attempt) are made durable.
async fn ranges(
    state: &State,
    pool: &Pool,
    file: &std::fs::File,
    file_id: i64,
    version: PlannedFor,
    temp: &Path,
    lead: Option<(u64, u64, u64)>,
) -> Result<Vec<Segment>, FileError> {
    let local =
        |what: &str, e: &std::io::Error| FileError::local(format!("{what} {}", temp.display()), e);
    let count = pool.server.segmenting.segments;
    if let Some((start, end, left)) = lead {
        if start > 0 {
            file.sync_data().map_err(|e| local("fsync", &e))?;
        }
        let plan = segment_plan::with_lead(start, end, version.size, count, left);
        state.plan_segments(file_id, version, &plan).await?;
        return Ok(plan);
    }
    let len = file.metadata().map_err(|e| local("stat", &e))?.len();
    let recorded = state.segments(file_id, version).await?;
    // A range not begun claims no byte (the lead's second range starts
    // late, past the file's end so far).
    let fits = recorded.iter().all(|r| r.done == 0 || r.next() <= len);
    if len > 0 && fits && !recorded.is_empty() {
        return Ok(recorded);
    }
    // Nothing recorded: a prefix from a single stream, if anything.
    let mut from = len;
    if len > version.size || !recorded.is_empty() {
        file.set_len(0).map_err(|e| local("truncate", &e))?;
        from = 0;
    }
    if from > 0 {
        // The prefix is what the ranges start after: make it durable first.
        file.sync_data().map_err(|e| local("fsync", &e))?;
    }
    let plan = segment_plan::plan(from, version.size, count);
    state.plan_segments(file_id, version, &plan).await?;
    Ok(plan)
}

/// How a segmented download ended short of complete.
enum Failure {
    /// A read part-way refused (FTP without REST).
    Refused(RemoteError),
    /// The file is not the version listed (shorter, or longer).
    Changed { grew: bool, error: FileError },
    /// Writing or syncing the temporary file failed.
    Local(FileError),
    /// Every session failed with ranges left; their progress is recorded.
    Remote(FileError),
}

struct Job<'a> {
    state: &'a State,
    file_id: i64,
    path: &'a str,
    size: u64,
    file: Arc<std::fs::File>,
    ranges: Vec<Segment>,
    /// Bytes written of each range, from its start.
    done: Vec<Arc<AtomicU64>>,
    /// Ranges not yet taken by a session (a failed session puts its range back).
    queue: Mutex<VecDeque<usize>>,
    /// Stops every session: the download cannot complete by ranges.
    cancel: CancellationToken,
    temp: &'a Path,
}

impl Job<'_> {
    /// Runs one worker per session with the checkpoints beside them, then
    /// records where every range got. Returns bytes fetched.
    /// Sessions in `slots` join as they connect: the ranges start on the
    /// sessions at hand and do not wait for a handshake.
    async fn run(
        &self,
        sessions: Vec<PooledSession>,
        slots: Vec<Slot>,
        lead: Option<BoxFuture<'static, LeadEnd>>,
        limit: &Arc<Limit>,
    ) -> Result<u64, Failure> {
        // The lead's bytes so far were fetched in this attempt too.
        let lead_so_far = if lead.is_some() { self.written()[0] } else { 0 };
        let before: u64 = self.written().iter().sum::<u64>() - lead_so_far;
        let now = sessions.into_iter().map(|s| self.worker(s).boxed());
        let joining = slots
            .into_iter()
            .map(|slot| async move { self.worker(join(slot, limit).await?).await }.boxed());
        let lead = lead.map(|read| self.lead(read).boxed());
        let workers = futures::future::join_all(now.chain(joining).chain(lead));
        let results = tokio::select! {
            r = workers => r,
            e = self.checkpoints() => {
                self.cancel.cancel();
                return Err(e);
            }
        };
        let failures: Vec<Failure> = results.into_iter().flatten().collect();
        let left = self.queue.lock().expect("queue lock").len();
        let after: u64 = self.written().iter().sum();
        if left > 0 || !failures.is_empty() {
            // What arrived is kept for the next attempt.
            self.checkpoint(&mut vec![u64::MAX; self.ranges.len()])
                .await?;
        }
        let worst = failures.into_iter().max_by_key(|f| match f {
            Failure::Changed { .. } | Failure::Local(_) => 3,
            Failure::Refused(_) => 2,
            Failure::Remote(_) => 1,
        });
        match worst {
            Some(f @ (Failure::Changed { .. } | Failure::Local(_) | Failure::Refused(_))) => Err(f),
            Some(f) if left > 0 => Err(f),
            _ if left > 0 => Err(Failure::Remote(FileError::temporary(
                ErrorKind::Other,
                format!("{left} ranges of {} were not fetched", self.path),
            ))),
            _ => Ok(after - before),
        }
    }

    fn written(&self) -> Vec<u64> {
        self.done
            .iter()
            .map(|d| d.load(Ordering::Acquire))
            .collect()
    }

    /// Takes ranges from the queue until it is empty; a failure puts the
    /// range back for the other sessions and ends this worker.
    async fn worker(&self, mut session: PooledSession) -> Option<Failure> {
        loop {
            let i = self.queue.lock().expect("queue lock").pop_front()?;
            let range = self.ranges[i];
            let offset = range.start + self.done[i].load(Ordering::Acquire);
            // The last range asks for one byte more: it shows a file that grew.
            let grow = u64::from(range.end == self.size);
            let want = range.end.saturating_sub(offset) + grow;
            if want == 0 {
                continue;
            }
            let mut sink = RangeSink::new(self.file.clone(), range.start, self.done[i].clone());
            let read = tokio::select! {
                r = session.read_range(self.path, offset, want, &mut sink) => r,
                _ = self.cancel.cancelled() => {
                    session.discard();
                    self.put_back(i);
                    return None;
                }
            };
            if let Some(f) = self.ended(i, offset, want - grow, &mut sink, read) {
                return Some(f);
            }
        }
    }

    /// Waits for the probe's read (the first range), then goes on as a
    /// worker on its session.
    async fn lead(&self, read: BoxFuture<'static, LeadEnd>) -> Option<Failure> {
        let start = self.ranges[0].start;
        let (session, mut sink, r) = tokio::select! {
            ended = read => ended,
            // Dropped: its session is discarded (`InFlight`).
            _ = self.cancel.cancelled() => {
                self.put_back(0);
                return None;
            }
        };
        let want = self.ranges[0].end - start;
        if let Some(f) = self.ended(0, start, want, &mut sink, r) {
            return Some(f);
        }
        self.worker(session).await
    }

    /// What a range's read from `offset` for `want` bytes (one more if it
    /// is the last) came to: `None` when every byte arrived.
    fn ended(
        &self,
        i: usize,
        offset: u64,
        want: u64,
        sink: &mut RangeSink,
        read: crate::remote::Result<u64>,
    ) -> Option<Failure> {
        if let Some(e) = sink.write_error.take() {
            self.cancel.cancel();
            let ctx = format!("write {}", self.temp.display());
            return Some(Failure::Local(FileError::local(ctx, &e)));
        }
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                self.put_back(i);
                if e.kind == ErrorKind::ResumeRefused {
                    self.cancel.cancel();
                    return Some(Failure::Refused(e));
                }
                tracing::info!(segment = i, error = %e, "a segment's session failed; another takes over its range");
                return Some(Failure::Remote(e.into()));
            }
        };
        if n == want {
            return None;
        }
        self.cancel.cancel();
        let error = FileError::temporary(
            ErrorKind::Other,
            format!(
                "read {n} bytes of {} from byte {offset}, expected {want}: it changed during the download",
                self.path
            ),
        );
        Some(Failure::Changed {
            grew: n > want,
            error,
        })
    }

    fn put_back(&self, i: usize) {
        self.queue.lock().expect("queue lock").push_front(i);
    }

    /// Every [`CHECKPOINT_EVERY`], makes what the ranges wrote durable and
    /// records it. Ends only on a local failure.
    async fn checkpoints(&self) -> Failure {
        let mut recorded = self.written();
        loop {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            if let Err(f) = self.checkpoint(&mut recorded).await {
                return f;
            }
        }
    }

    /// fsync, then record each range that moved since `recorded`. The
    /// counts are read before the fsync, so every byte they cover was
    /// written before it: a record never runs ahead of the disk.
    async fn checkpoint(&self, recorded: &mut [u64]) -> Result<(), Failure> {
        let now = self.written();
        if now == recorded {
            return Ok(());
        }
        let file = self.file.clone();
        let synced = tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        if let Err(e) = synced {
            let ctx = format!("fsync {}", self.temp.display());
            return Err(Failure::Local(FileError::local(ctx, &e)));
        }
        for (i, (&n, r)) in now.iter().zip(recorded.iter_mut()).enumerate() {
            if n == *r {
                continue;
            }
            let index = self.ranges[i].index;
            // Capped at the range: the extra byte of a file that grew is
            // not progress.
            let done = n.min(self.ranges[i].end - self.ranges[i].start);
            match self.state.record_segment(self.file_id, index, done).await {
                Ok(()) => *r = n,
                Err(e) => tracing::warn!(error = %e, "cannot record a segment's progress"),
            }
        }
        Ok(())
    }
}

/// Every range complete: the file's length is checked, it is fsynced, and
/// only then are its ranges forgotten. The digests are read back while the
/// fsync runs (the bytes are in the page cache): the ranges arrived out of
/// order, so they could not be hashed as they streamed.
async fn finish(
    f: &Fetching<'_>,
    file: Arc<std::fs::File>,
    bytes: u64,
    inode: u64,
) -> Result<Fetched, FileError> {
    let (state, file_id, temp) = (f.state, f.file_id, f.temp);
    let size = f.expected.size.expect("segments::way checked the size");
    let ctx = |what: &str| format!("{what} {}", temp.display());
    let len = file
        .metadata()
        .map_err(|e| FileError::local(ctx("stat"), &e))?
        .len();
    if len != size {
        file.set_len(size)
            .map_err(|e| FileError::local(ctx("truncate"), &e))?;
    }
    // A checkpoint cut short may still hold the file on a blocking thread:
    // shared, not unwrapped.
    let synced = tokio::task::spawn_blocking(move || file.sync_all());
    let (synced, digests) = tokio::join!(synced, fetch::digests_of(temp, size, f.md5));
    let synced = synced.map_err(std::io::Error::other).and_then(|r| r);
    if let Err(e) = synced {
        state.clear_segments(file_id).await?;
        return Err(fetch::discard(temp, FileError::local(ctx("fsync"), &e)));
    }
    state.clear_segments(file_id).await?;
    Ok(Fetched {
        bytes,
        len: size,
        inode,
        digests: digests?,
    })
}

/// The server refused a range: the temporary file (with holes) and its
/// records are dropped, and the file is read in one stream from byte 0.
async fn restart_single(f: &Fetching<'_>, file: &std::fs::File) -> Result<Fetched, FileError> {
    file.set_len(0)
        .map_err(|e| FileError::local(format!("truncate {}", f.temp.display()), &e))?;
    f.state.clear_segments(f.file_id).await?;
    let mut session = f.pool.get().await?;
    fetch::download(&mut session, f.remote_path, f.expected, f.temp, f.md5).await
}
