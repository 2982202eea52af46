//! A one-connection loopback relay for implicit FTPS through a proxy:
//! suppaftp opens an implicit connection itself, from an address, and has
//! no way to take a stream already through the proxy. It is given this
//! relay's address; the relay accepts one connection and copies bytes
//! between it and the proxied stream. Only the control connection goes
//! this way (data connections are ferry's own, `passive.rs`), and the
//! accepted connection is checked to be ours before the login is sent.

use crate::remote::{ErrorKind, RemoteError, Result};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Relay {
    /// Where to connect to reach the proxied stream.
    pub addr: SocketAddr,
    /// The address the relay accepted a connection from.
    accepted: oneshot::Receiver<SocketAddr>,
    /// Aborted on drop unless [`Relay::check`] kept it.
    task: Option<JoinHandle<()>>,
}

impl Relay {
    pub async fn start(mut upstream: TcpStream, ctx: &str) -> Result<Relay> {
        let failed = |e: std::io::Error| RemoteError::from_io(format!("{ctx}: relay"), &e);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        let (tell, accepted) = oneshot::channel();
        let task = tokio::spawn(async move {
            let Ok((mut inside, from)) = listener.accept().await else {
                return;
            };
            drop(listener);
            let _ = inside.set_nodelay(true);
            if tell.send(from).is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut inside, &mut upstream).await;
        });
        Ok(Relay {
            addr,
            accepted,
            task: Some(task),
        })
    }

    /// Keeps the relay running for the connection whose local address is
    /// `ours`; refuses (and stops it) when it accepted anyone else.
    pub async fn check(mut self, ours: Option<SocketAddr>, ctx: &str) -> Result<()> {
        let wait = Duration::from_secs(5);
        let from = tokio::time::timeout(wait, &mut self.accepted).await;
        match (from, ours) {
            (Ok(Ok(from)), Some(ours)) if from == ours => {
                self.task = None;
                Ok(())
            }
            _ => Err(RemoteError::new(
                ErrorKind::Connection,
                true,
                ctx,
                "the loopback relay to the proxy was taken by another connection",
            )),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
