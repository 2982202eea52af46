//! Sessions to one server, reused within a poll and bounded by
//! `max_sessions`, so that a burst of files never opens a connection each.

use super::{Entry, Result, Session, Transport, Version, WriteMode};
use crate::config::Server;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a polite close may take before the session is just dropped.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Pool {
    pub server: Arc<Server>,
    transport: Arc<dyn Transport>,
    idle: Mutex<Vec<Box<dyn Session>>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    pub fn new(server: Arc<Server>) -> Arc<Self> {
        Arc::new(Self {
            transport: super::choose(&server),
            permits: Arc::new(Semaphore::new(server.max_sessions)),
            server,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Waits for a free slot, then reuses an idle session or opens one.
    pub async fn get(self: &Arc<Self>) -> Result<PooledSession> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("pool semaphore is never closed");
        let idle = loop {
            let s = self.idle.lock().expect("pool lock").pop();
            match s {
                Some(s) if !s.is_alive() => {
                    tracing::debug!(server = %self.server.name, "dropping a dead idle session")
                }
                other => break other,
            }
        };
        let session = match idle {
            Some(s) => s,
            None => self.transport.connect().await?,
        };
        Ok(PooledSession {
            session: Some(session),
            pool: self.clone(),
            broken: false,
            _permit: permit,
        })
    }

    /// Sessions open now: on loan (in use, or connecting) and idle.
    pub fn open_sessions(&self) -> usize {
        let on_loan = self.server.max_sessions - self.permits.available_permits();
        on_loan + self.idle.lock().expect("pool lock").len()
    }

    /// Closes the idle sessions: called when a poll ends, so no connection
    /// sits open between polls for the server to time out.
    pub async fn close_idle(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        for mut s in idle {
            // A server that no longer answers must not hold up the poll.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, s.close()).await;
        }
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
}

impl PooledSession {
    fn inner(&mut self) -> &mut dyn Session {
        self.session
            .as_deref_mut()
            .expect("session present until drop")
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

    pub async fn stat(&mut self, path: &str) -> Result<Entry> {
        let r = self.inner().stat(path).await;
        self.noted(r)
    }

    pub async fn read_into(
        &mut self,
        path: &str,
        offset: u64,
        expected: Version,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        let r = self.inner().read_into(path, offset, expected, sink).await;
        self.noted(r)
    }

    pub async fn read_whole(&mut self, path: &str, expected: Version) -> Result<Vec<u8>> {
        let r = self.inner().read_whole(path, expected).await;
        self.noted(r)
    }

    /// Answers in order; any one of them may break the session.
    pub async fn read_wholes(&mut self, files: &[(String, Version)]) -> Vec<Result<Vec<u8>>> {
        let answers = self.inner().read_wholes(files).await;
        answers.into_iter().map(|r| self.noted(r)).collect()
    }

    pub async fn write_wholes(&mut self, files: &[(String, Vec<u8>)]) -> Vec<Result<Option<u64>>> {
        let answers = self.inner().write_wholes(files).await;
        answers.into_iter().map(|r| self.noted(r)).collect()
    }

    pub async fn write_from(
        &mut self,
        path: &str,
        mode: WriteMode,
        source: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64> {
        let r = self.inner().write_from(path, mode, source).await;
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

    pub async fn create_dirs(&mut self, dir: &str) -> Result<()> {
        let r = self.inner().create_dirs(dir).await;
        self.noted(r)
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
            self.pool.idle.lock().expect("pool lock").push(s);
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
            proxy: None,
            sftp: SftpOptions::default(),
            ftp: FtpOptions::default(),
        });
        Arc::new(Pool {
            transport: Arc::new(Opens(kind)),
            permits: Arc::new(Semaphore::new(1)),
            server,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn idle(pool: &Pool) -> usize {
        pool.idle.lock().unwrap().len()
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
}
