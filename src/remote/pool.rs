//! Sessions to one server, reused within a poll and bounded by
//! `max_sessions`, so that a burst of files never opens a connection each.

use super::{RemoteError, Result, Session, Transport};
use crate::config::Server;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
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
/// showed the connection to be unusable.
pub struct PooledSession {
    session: Option<Box<dyn Session>>,
    pool: Arc<Pool>,
    broken: bool,
    _permit: OwnedSemaphorePermit,
}

impl PooledSession {
    /// Passes `result` through, marking the session broken when the error says so.
    pub fn check<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.note(e);
        }
        result
    }

    pub fn note(&mut self, e: &RemoteError) {
        if e.breaks_session() {
            self.broken = true;
        }
    }
}

impl Deref for PooledSession {
    type Target = dyn Session;
    fn deref(&self) -> &Self::Target {
        self.session.as_deref().expect("session present until drop")
    }
}

impl DerefMut for PooledSession {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.session
            .as_deref_mut()
            .expect("session present until drop")
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
