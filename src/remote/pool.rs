//! Sessions to one server, shared by every rule that names it, bounded by
//! `max_sessions`, and kept open between polls for the server's
//! `idle_timeout`: hundreds of rules polling one server take turns on a
//! few warm connections instead of paying an SSH or TLS handshake per poll.

use super::{Entry, Result, Session, Transport, Version, WriteMode};
use crate::bandwidth::{Limit, Throttle, ThrottledRead, ThrottledWrite};
use crate::config::Server;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a polite close may take before the session is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A session idle this long is probed (one round trip) before it is lent
/// again: the server, or a NAT on the way, may have dropped it meanwhile
/// without a word, and the probe turns that into a reconnect instead of a
/// failed poll. Sessions in steady use are never probed.
const PROBE_AFTER: Duration = Duration::from_secs(5);

/// The longest a probe may take before the session counts as gone.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Pool {
    pub server: Arc<Server>,
    transport: Arc<dyn Transport>,
    idle: Mutex<Idle>,
    permits: Arc<Semaphore>,
    /// The server's bandwidth limit, which every session lent out moves
    /// its transfers' bytes under (shared with the pool of the same
    /// server before or after a reload).
    limit: Arc<Limit>,
    ranges_refused: std::sync::atomic::AtomicBool,
}

/// The sessions not on loan, in the order they came back (the last is the
/// warmest and is lent first, so spare ones age out), and whether a task
/// is closing them as their `idle_timeout` runs out.
#[derive(Default)]
struct Idle {
    parked: Vec<Parked>,
    reaper: bool,
}

struct Parked {
    session: Box<dyn Session>,
    since: Instant,
}

impl Pool {
    pub fn new(server: Arc<Server>) -> Arc<Self> {
        Self::limited(server, Limit::unlimited())
    }

    /// A pool whose transfers share `limit` (the server's bandwidth).
    pub fn limited(server: Arc<Server>, limit: Arc<Limit>) -> Arc<Self> {
        Arc::new(Self {
            transport: super::choose(&server),
            permits: Arc::new(Semaphore::new(server.max_sessions)),
            server,
            idle: Mutex::new(Idle::default()),
            limit,
            ranges_refused: Default::default(),
        })
    }

    /// Waits for a free slot, then reuses an idle session (probed first if
    /// it waited long) or opens one.
    pub async fn get(self: &Arc<Self>) -> Result<PooledSession> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("pool semaphore is never closed");
        Slot {
            pool: self.clone(),
            permit,
        }
        .connect()
        .await
    }

    /// A session only if a slot is free now (`None`: all `max_sessions`
    /// are on loan): the extra sessions of a segmented download are taken
    /// where they are free, never waited for.
    pub async fn try_get(self: &Arc<Self>) -> Option<Result<PooledSession>> {
        Some(self.try_reserve()?.connect().await)
    }

    /// A free slot taken now, to connect in its own time ([`Slot::connect`]):
    /// the caller knows at once how many sessions it will have.
    pub fn try_reserve(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(Slot {
            pool: self.clone(),
            permit,
        })
    }

    /// The server refused a read part-way (FTP without REST): its large
    /// files are fetched in one stream from now on, until a reload.
    pub fn note_ranges_refused(&self) {
        self.ranges_refused
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Pool::note_ranges_refused`] was called.
    pub fn ranges_refused(&self) -> bool {
        self.ranges_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The most recently used idle session that still answers, if any;
    /// dead ones met on the way are dropped.
    async fn warm_session(&self) -> Option<Box<dyn Session>> {
        loop {
            let parked = self.idle.lock().expect("pool lock").parked.pop()?;
            let mut s = parked.session;
            if !s.is_alive() {
                tracing::debug!(server = %self.server.name, "dropping a dead idle session");
                continue;
            }
            if parked.since.elapsed() < PROBE_AFTER {
                return Some(s);
            }
            let timeout = PROBE_TIMEOUT.min(self.server.io_timeout);
            match tokio::time::timeout(timeout, s.probe()).await {
                Ok(true) => return Some(s),
                _ => {
                    tracing::debug!(server = %self.server.name, "an idle session no longer answers; dropping it")
                }
            }
        }
    }

    /// Sessions open now: on loan (in use, or connecting) and idle.
    pub fn open_sessions(&self) -> usize {
        let on_loan = self.server.max_sessions - self.permits.available_permits();
        on_loan + self.idle.lock().expect("pool lock").parked.len()
    }

    /// Closes the idle sessions whose `idle_timeout` has run out: called
    /// when a poll ends, so with `idle_timeout = "0s"` no session outlives
    /// its poll. Longer timeouts are kept by a reaper task ([`Pool::park`])
    /// whether polls come or not.
    pub async fn close_idle(&self) {
        let (expired, _) = self.take_expired(Instant::now(), false);
        close_all(expired).await;
    }

    /// Closes every idle session: at the end of `ferry once` and of a
    /// stopped `ferry run`, so each says goodbye (SSH disconnect, FTP QUIT).
    pub async fn close_all_idle(&self) {
        let parked = std::mem::take(&mut self.idle.lock().expect("pool lock").parked);
        close_all(parked.into_iter().map(|p| p.session).collect()).await;
    }

    /// Takes out the idle sessions past their `idle_timeout`, and dead
    /// ones; returns them and when the next one runs out. For the reaper
    /// (`reaper`), none left idle means its work is done, and the flag
    /// that says one runs is cleared under the same lock.
    fn take_expired(&self, now: Instant, reaper: bool) -> (Vec<Box<dyn Session>>, Option<Instant>) {
        let timeout = self.server.idle_timeout;
        let mut idle = self.idle.lock().expect("pool lock");
        let (out, keep): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut idle.parked)
            .into_iter()
            .partition(|p| p.since + timeout <= now || !p.session.is_alive());
        idle.parked = keep;
        let next = idle.parked.iter().map(|p| p.since + timeout).min();
        if reaper && next.is_none() {
            idle.reaper = false;
        }
        (out.into_iter().map(|p| p.session).collect(), next)
    }

    /// Takes back a session after use. With an `idle_timeout`, a reaper
    /// task (one per pool, while it has idle sessions) closes it when the
    /// timeout runs out unless a poll took it again first.
    fn park(self: &Arc<Self>, session: Box<dyn Session>) {
        let mut idle = self.idle.lock().expect("pool lock");
        idle.parked.push(Parked {
            session,
            since: Instant::now(),
        });
        if idle.reaper || self.server.idle_timeout.is_zero() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            idle.reaper = true;
            rt.spawn(reap(Arc::downgrade(self)));
        }
    }
}

/// Closes a pool's idle sessions as their `idle_timeout` runs out, and
/// ends when none is left idle (the next [`Pool::park`] starts another)
/// or the pool is gone (a reload replaced it: its sessions drop with it).
async fn reap(pool: Weak<Pool>) {
    loop {
        let Some(p) = pool.upgrade() else { return };
        let (expired, next) = p.take_expired(Instant::now(), true);
        drop(p);
        close_all(expired).await;
        match next {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => return,
        }
    }
}

async fn close_all(sessions: Vec<Box<dyn Session>>) {
    for mut s in sessions {
        // A server that no longer answers must not hold anything up.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, s.close()).await;
    }
}

/// A slot of a [`Pool`] reserved by [`Pool::try_reserve`], not connected yet.
pub struct Slot {
    pool: Arc<Pool>,
    permit: OwnedSemaphorePermit,
}

impl Slot {
    /// An idle session of the pool, or a new one, on this slot.
    pub async fn connect(self) -> Result<PooledSession> {
        let pool = self.pool;
        let session = match pool.warm_session().await {
            Some(s) => s,
            None => pool.transport.connect().await?,
        };
        Ok(PooledSession {
            session: Some(session),
            throttle: Throttle::of(pool.limit.clone()),
            pool,
            broken: false,
            streaming: Duration::ZERO,
            _permit: self.permit,
        })
    }
}

/// A session on loan from a [`Pool`]; returns to it on drop unless an error
/// showed the connection to be unusable. Every operation goes through the
/// methods below, which note such an error themselves: a caller cannot
/// hand a dead connection back to the pool by forgetting to.
pub struct PooledSession {
    session: Option<Box<dyn Session>>,
    pool: Arc<Pool>,
    broken: bool,
    _permit: OwnedSemaphorePermit,
    /// The limits its reads and writes move under: the server's, and the
    /// rule's once [`PooledSession::limited`] added it.
    throttle: Throttle,
    /// Time spent in streamed reads and writes on this loan.
    streaming: Duration,
}

impl PooledSession {
    fn inner(&mut self) -> &mut dyn Session {
        self.session
            .as_deref_mut()
            .expect("session present until drop")
    }

    /// Moves this session's transfers under `limit` too (a rule's
    /// bandwidth), on top of the server's.
    pub fn limited(mut self, limit: Arc<Limit>) -> Self {
        self.throttle = std::mem::take(&mut self.throttle).and(limit);
        self
    }

    /// Passes `result` through, marking the session broken when its error
    /// says the connection is gone ([`super::RemoteError::breaks_session`]).
    fn noted<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && e.breaks_session()
        {
            self.broken = true;
        }
        result
    }

    pub async fn list(&mut self, dir: &str) -> Result<Vec<Entry>> {
        let r = self.inner().list(dir).await;
        self.noted(r)
    }

    pub async fn list_batches(
        &mut self,
        dir: &str,
        out: tokio::sync::mpsc::Sender<Vec<Entry>>,
    ) -> Result<()> {
        let r = self.inner().list_batches(dir, out).await;
        self.noted(r)
    }

    pub async fn stat(&mut self, path: &str) -> Result<Entry> {
        let r = self.inner().stat(path).await;
        self.noted(r)
    }

    pub async fn file_size(&mut self, path: &str) -> Result<Option<u64>> {
        let r = self.inner().file_size(path).await;
        self.noted(r)
    }

    pub async fn read_into(
        &mut self,
        path: &str,
        offset: u64,
        expected: Version,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        let mut sink = ThrottledWrite::new(sink, self.throttle.clone());
        let t0 = Instant::now();
        let r = self
            .inner()
            .read_into(path, offset, expected, &mut sink)
            .await;
        self.streaming += t0.elapsed();
        self.noted(r)
    }

    pub async fn read_range(
        &mut self,
        path: &str,
        offset: u64,
        len: u64,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        let mut sink = ThrottledWrite::new(sink, self.throttle.clone());
        let t0 = Instant::now();
        let r = self.inner().read_range(path, offset, len, &mut sink).await;
        self.streaming += t0.elapsed();
        self.noted(r)
    }

    pub fn reads_ranges(&self) -> bool {
        self.session.as_deref().is_some_and(|s| s.reads_ranges())
    }

    /// Drops the session instead of returning it: an operation on it was
    /// abandoned half-way, so the connection is out of step.
    pub fn discard(mut self) {
        self.broken = true;
    }

    pub async fn read_whole(&mut self, path: &str, expected: Version) -> Result<Vec<u8>> {
        let r = self.inner().read_whole(path, expected).await;
        if let Ok(data) = &r {
            self.throttle.acquire(data.len() as u64).await;
        }
        self.noted(r)
    }

    /// Answers in order; any one of them may break the session.
    pub async fn read_wholes(&mut self, files: &[(String, Version)]) -> Vec<Result<Vec<u8>>> {
        let answers = self.inner().read_wholes(files).await;
        // Whole files arrive at once; their bytes are paid for after, so
        // the next batch on this server or rule waits for them.
        let bytes = answers.iter().flatten().map(|d| d.len() as u64).sum();
        self.throttle.acquire(bytes).await;
        answers.into_iter().map(|r| self.noted(r)).collect()
    }

    pub async fn write_wholes(
        &mut self,
        files: &[(String, Vec<u8>)],
        mode: WriteMode,
    ) -> Vec<Result<Option<u64>>> {
        let bytes = files.iter().map(|(_, d)| d.len() as u64).sum();
        self.throttle.acquire(bytes).await;
        let answers = self.inner().write_wholes(files, mode).await;
        answers.into_iter().map(|r| self.noted(r)).collect()
    }

    pub async fn write_from(
        &mut self,
        path: &str,
        mode: WriteMode,
        source: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64> {
        let mut source = ThrottledRead::new(source, self.throttle.clone());
        let t0 = Instant::now();
        let r = self.inner().write_from(path, mode, &mut source).await;
        self.streaming += t0.elapsed();
        self.noted(r)
    }

    /// [`Session::splices`]: whether [`PooledSession::write_file`] works.
    pub fn splices(&self) -> bool {
        self.session.as_deref().is_some_and(|s| s.splices())
    }

    /// [`Session::write_file`], under this session's throttle.
    pub async fn write_file(
        &mut self,
        path: &str,
        mode: WriteMode,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<u64> {
        let throttle = self.throttle.clone();
        let t0 = Instant::now();
        let r = self
            .inner()
            .write_file(path, mode, file, offset, len, &throttle)
            .await;
        self.streaming += t0.elapsed();
        self.noted(r)
    }

    pub async fn set_mtime(&mut self, path: &str, mtime: i64) -> Result<bool> {
        let r = self.inner().set_mtime(path, mtime).await;
        self.noted(r)
    }

    pub async fn rename(&mut self, from: &str, to: &str, replace: bool) -> Result<()> {
        let r = self.inner().rename(from, to, replace).await;
        self.noted(r)
    }

    pub async fn renames(&mut self, pairs: &[(String, String)], replace: bool) -> Vec<Result<()>> {
        let answers = self.inner().renames(pairs, replace).await;
        answers.into_iter().map(|r| self.noted(r)).collect()
    }

    pub async fn remove(&mut self, path: &str) -> Result<()> {
        let r = self.inner().remove(path).await;
        self.noted(r)
    }

    pub async fn remove_unchanged(
        &mut self,
        files: &[(String, super::Version)],
    ) -> Vec<Result<super::Removal>> {
        let answers = self.inner().remove_unchanged(files).await;
        answers.into_iter().map(|r| self.noted(r)).collect()
    }

    pub async fn server_digest(
        &mut self,
        path: &str,
    ) -> Result<Option<crate::engine::digest::Expected>> {
        let r = self.inner().server_digest(path).await;
        self.noted(r)
    }

    pub async fn create_dirs(&mut self, dir: &str) -> Result<()> {
        let r = self.inner().create_dirs(dir).await;
        self.noted(r)
    }

    /// The tightest bandwidth limit its transfers are under now, bytes/s.
    pub fn rate_limit(&self) -> Option<u64> {
        self.throttle.rate_now()
    }

    /// The time this loan spent streaming a file's bytes (`read_into`,
    /// `read_range`, `write_from`): the transfer itself, without connecting,
    /// checks, fsync and bookkeeping, which a file's whole duration holds
    /// too. Logged as `transfer_ms`, so a slow file says where its time went.
    pub fn streamed(&self) -> Duration {
        self.streaming
    }

    pub fn identity(&self) -> Option<String> {
        self.session.as_deref()?.identity()
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        if let Some(s) = self.session.take()
            && !self.broken
        {
            self.pool.park(s);
        }
    }
}

/// A pool replaced by a reload (its server block changed) closes its idle
/// sessions politely, on a task of their own.
impl Drop for Pool {
    fn drop(&mut self) {
        let parked = std::mem::take(&mut self.idle.get_mut().expect("pool lock").parked);
        if parked.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(close_all(parked.into_iter().map(|p| p.session).collect()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FtpOptions, Protocol, SftpOptions};
    use crate::remote::{ErrorKind, RemoteError};
    use async_trait::async_trait;
    use std::time::Duration;

    /// A session whose every operation fails with `kind`: what the pool
    /// does with it depends on that kind alone.
    struct Failing(ErrorKind);

    impl Failing {
        fn err<T>(&self, what: &str) -> Result<T> {
            Err(RemoteError::new(self.0, true, what, "failed on purpose"))
        }
    }

    #[async_trait]
    impl Session for Failing {
        async fn list(&mut self, _: &str) -> Result<Vec<Entry>> {
            self.err("list")
        }
        async fn stat(&mut self, _: &str) -> Result<Entry> {
            self.err("stat")
        }
        async fn read_into(
            &mut self,
            _: &str,
            _: u64,
            _: Version,
            _: &mut (dyn AsyncWrite + Send + Unpin),
        ) -> Result<u64> {
            self.err("read")
        }
        async fn write_from(
            &mut self,
            _: &str,
            _: WriteMode,
            _: &mut (dyn AsyncRead + Send + Unpin),
        ) -> Result<u64> {
            self.err("write")
        }
        async fn set_mtime(&mut self, _: &str, _: i64) -> Result<bool> {
            self.err("setstat")
        }
        async fn rename(&mut self, _: &str, _: &str, _: bool) -> Result<()> {
            self.err("rename")
        }
        async fn remove(&mut self, _: &str) -> Result<()> {
            self.err("remove")
        }
        async fn create_dirs(&mut self, _: &str) -> Result<()> {
            self.err("mkdir")
        }
    }

    struct Opens(ErrorKind);

    #[async_trait]
    impl Transport for Opens {
        async fn connect(&self) -> Result<Box<dyn Session>> {
            Ok(Box::new(Failing(self.0)))
        }
    }

    fn pool(kind: ErrorKind) -> Arc<Pool> {
        pool_of(Arc::new(Opens(kind)), Duration::from_secs(300))
    }

    fn pool_of(transport: Arc<dyn Transport>, idle_timeout: Duration) -> Arc<Pool> {
        let server = Arc::new(Server {
            name: "t".into(),
            protocol: Protocol::Local,
            host: String::new(),
            port: 0,
            user: None,
            password: None,
            max_sessions: 1,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            idle_timeout,
            proxy: None,
            sftp: SftpOptions::default(),
            ftp: FtpOptions::default(),
            bandwidth: Default::default(),
            segmenting: crate::config::Segmenting::default(),
        });
        Arc::new(Pool {
            transport,
            permits: Arc::new(Semaphore::new(1)),
            server,
            idle: Mutex::new(Idle::default()),
            limit: Limit::unlimited(),
            ranges_refused: Default::default(),
        })
    }

    fn idle(pool: &Pool) -> usize {
        pool.idle.lock().unwrap().parked.len()
    }

    #[tokio::test]
    async fn a_connection_level_error_keeps_the_session_out_of_the_pool() {
        for (kind, breaks) in [
            (ErrorKind::Connection, true),
            (ErrorKind::Timeout, true),
            (ErrorKind::NotFound, false),
            (ErrorKind::AlreadyExists, false),
            (ErrorKind::Other, false),
        ] {
            let pool = pool(kind);
            let mut s = pool.get().await.unwrap();
            assert!(s.stat("/a").await.is_err());
            drop(s);
            assert_eq!(idle(&pool), usize::from(!breaks), "{kind:?}");
        }
    }

    #[tokio::test]
    async fn one_broken_answer_among_many_breaks_the_session() {
        let pool = pool(ErrorKind::Timeout);
        let mut s = pool.get().await.unwrap();
        let files = vec![
            (
                "/a".to_string(),
                Version {
                    size: Some(1),
                    mtime: 0
                }
            );
            3
        ];
        assert!(s.read_wholes(&files).await.iter().all(|r| r.is_err()));
        drop(s);
        assert_eq!(idle(&pool), 0);
    }

    /// Counts the sessions a transport opened and how many were closed.
    #[derive(Default)]
    struct Counts {
        opened: std::sync::atomic::AtomicUsize,
        closed: Arc<std::sync::atomic::AtomicUsize>,
    }

    struct Counted(Arc<std::sync::atomic::AtomicUsize>);

    /// What a `Counted` session answers to operations these tests never make.
    fn unused<T>(what: &str) -> Result<T> {
        Err(RemoteError::new(
            ErrorKind::Other,
            false,
            what,
            "not used by these tests",
        ))
    }

    #[async_trait]
    impl Session for Counted {
        async fn list(&mut self, _: &str) -> Result<Vec<Entry>> {
            Ok(Vec::new())
        }
        async fn stat(&mut self, _: &str) -> Result<Entry> {
            unused("stat")
        }
        async fn read_into(
            &mut self,
            _: &str,
            _: u64,
            _: Version,
            _: &mut (dyn AsyncWrite + Send + Unpin),
        ) -> Result<u64> {
            unused("read")
        }
        async fn write_from(
            &mut self,
            _: &str,
            _: WriteMode,
            _: &mut (dyn AsyncRead + Send + Unpin),
        ) -> Result<u64> {
            unused("write")
        }
        async fn set_mtime(&mut self, _: &str, _: i64) -> Result<bool> {
            unused("set_mtime")
        }
        async fn rename(&mut self, _: &str, _: &str, _: bool) -> Result<()> {
            unused("rename")
        }
        async fn remove(&mut self, _: &str) -> Result<()> {
            unused("remove")
        }
        async fn create_dirs(&mut self, _: &str) -> Result<()> {
            unused("create_dirs")
        }
        async fn close(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl Transport for Arc<Counts> {
        async fn connect(&self) -> Result<Box<dyn Session>> {
            self.opened
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Box::new(Counted(self.closed.clone())))
        }
    }

    fn counts(c: &Counts) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (c.opened.load(SeqCst), c.closed.load(SeqCst))
    }

    #[tokio::test]
    async fn sessions_stay_warm_between_polls_until_idle_timeout() {
        let c = Arc::new(Counts::default());
        let pool = pool_of(Arc::new(c.clone()), Duration::from_millis(300));
        for _ in 0..5 {
            pool.get().await.unwrap().list("/").await.unwrap();
            // The end of a poll closes nothing that is not past its timeout.
            pool.close_idle().await;
        }
        assert_eq!(counts(&c), (1, 0), "one session, reused by every poll");
        assert_eq!(idle(&pool), 1);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(counts(&c), (1, 1), "closed once idle past its timeout");
        assert_eq!(idle(&pool), 0);
        // The next poll opens a new one, and a new reaper watches it.
        pool.get().await.unwrap().list("/").await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(counts(&c), (2, 2));
    }

    #[tokio::test]
    async fn idle_timeout_zero_closes_sessions_when_the_poll_ends() {
        let c = Arc::new(Counts::default());
        let pool = pool_of(Arc::new(c.clone()), Duration::ZERO);
        pool.get().await.unwrap().list("/").await.unwrap();
        pool.get().await.unwrap().list("/").await.unwrap();
        assert_eq!(counts(&c), (1, 0), "reused within the poll");
        pool.close_idle().await;
        assert_eq!(counts(&c), (1, 1));
        assert_eq!(idle(&pool), 0);
    }
}
