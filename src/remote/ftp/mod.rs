//! The `ftp`, `ftps` (explicit, AUTH TLS) and `ftps-implicit` transports.
//! suppaftp speaks the control connection; ferry opens the data connections
//! itself (`data.rs`) for timeouts, EPSV/PASV fallback, NAT address repair,
//! active-mode port ranges and TLS session reuse. One session is one
//! logged-in control connection in binary mode; it reconnects by itself
//! after a broken connection, sends NOOP before reuse after a pause, and
//! QUIT when dropped.

mod certinfo;
mod connect;
mod ctrl_tls;
mod data;
mod digest;
mod error;
mod list;
mod ops;
mod passive;
mod relay;
mod renames;
mod sessions;
mod sizes;
mod splice;
mod tls;
mod transfer;

use super::{Entry, ErrorKind, RemoteError, Result, Session, Transport, Version, WriteMode};
use crate::config::{Protocol, Server};
use crate::engine::digest::Expected;
use async_trait::async_trait;
use connect::Conn;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

pub use tls::fingerprint;

/// A session idle this long is probed with NOOP before its next command,
/// and replaced when the probe fails: servers drop idle control
/// connections (vsftpd `idle_session_timeout`, 300 s by default; NAT
/// gateways sooner), and a session can wait in the pool while others work.
const KEEPALIVE_AFTER: Duration = Duration::from_secs(5);

/// TLS settings of one server. Each control connection takes a copy of
/// `config` with a session store of its own (`tls::for_connection`).
pub(crate) struct TlsSetup {
    pub configs: tls::Configs,
    /// Which of them a new control connection uses.
    pub versions: sessions::Versions,
    pub verifier: tls::Verifier,
    pub name: ServerName<'static>,
}

/// MDTM results by directory, then name: (size, listed time, MDTM time).
type MdtmCache = HashMap<String, HashMap<String, (Option<u64>, i64, i64)>>;

/// What every session of one server shares.
pub(crate) struct Shared {
    pub server: Arc<Server>,
    /// `Ok(None)` for plain FTP; `Err` when the TLS settings are unusable,
    /// reported at connect so one bad server does not stop the daemon.
    pub tls: std::result::Result<Option<TlsSetup>, String>,
    /// Listing times refined with MDTM, so an unchanged file costs no MDTM
    /// at the next poll (see `ops::refine`).
    pub mdtm: Mutex<MdtmCache>,
    /// The server refused APPE for a new file and took STOR instead: its
    /// [`WriteMode::Fresh`] writes go as STOR from then on.
    pub stor_for_new: AtomicBool,
}

pub struct FtpTransport {
    shared: Arc<Shared>,
}

impl FtpTransport {
    pub fn new(server: Arc<Server>) -> Self {
        let tls = match server.protocol {
            Protocol::Ftps | Protocol::FtpsImplicit => {
                tls::client_config(&server.ftp).and_then(|(configs, verifier)| {
                    Ok(Some(TlsSetup {
                        configs,
                        versions: sessions::Versions::default(),
                        verifier,
                        name: tls::server_name(&server.host)?,
                    }))
                })
            }
            _ => Ok(None),
        };
        let shared = Shared {
            server,
            tls,
            mdtm: Mutex::new(HashMap::new()),
            stor_for_new: AtomicBool::new(false),
        };
        Self {
            shared: Arc::new(shared),
        }
    }
}

#[async_trait]
impl Transport for FtpTransport {
    async fn connect(&self) -> Result<Box<dyn Session>> {
        let conn = connect::open(&self.shared).await?;
        Ok(Box::new(FtpSession {
            shared: self.shared.clone(),
            conn: Some(conn),
            last_used: Instant::now(),
        }))
    }
}

pub struct FtpSession {
    shared: Arc<Shared>,
    /// `None` after an error that left the control connection unusable;
    /// the next call connects again.
    conn: Option<Conn>,
    last_used: Instant,
}

impl FtpSession {
    /// The live connection: NOOP first after a pause, a new one if it died.
    async fn conn(&mut self) -> Result<&mut Conn> {
        let io = self.shared.server.io_timeout;
        if let Some(c) = self.conn.as_mut()
            && self.last_used.elapsed() > KEEPALIVE_AFTER
            && data::command(c, io, "NOOP", &[suppaftp::Status::CommandOk])
                .await
                .is_err()
        {
            tracing::debug!(server = %self.shared.server.name, "idle FTP connection is gone; reconnecting");
            self.conn = None;
        }
        self.last_used = Instant::now();
        match &mut self.conn {
            Some(c) => Ok(c),
            slot => Ok(slot.insert(connect::open(&self.shared).await?)),
        }
    }

    /// The live connection, for an operation that opens a data
    /// connection: on FTPS, a new control connection when this one has no
    /// TLS session left for the data connection to resume
    /// ([`sessions::Sessions`]), which servers that demand resumption refuse.
    async fn data_conn(&mut self) -> Result<&mut Conn> {
        if self
            .conn
            .as_ref()
            .and_then(|c| c.sessions.as_ref())
            .is_some_and(|s| s.ran_dry())
        {
            tracing::debug!(server = %self.shared.server.name, "no TLS session left to resume on a data connection; opening a new control connection");
            if let Ok(Some(tls)) = &self.shared.tls {
                tls.versions.ran_dry(&self.shared.server.name);
            }
            self.quit_in_background();
        }
        self.conn().await
    }

    /// Ends the control connection with QUIT on a task of its own, for
    /// where the caller cannot wait (a drop) or need not.
    fn quit_in_background(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(connect::quit(conn));
        }
    }

    /// Passes `r` through; drops the connection when the error broke it.
    fn after<T>(&mut self, r: Result<T>) -> Result<T> {
        self.last_used = Instant::now();
        if let Err(e) = &r
            && e.breaks_session()
        {
            self.conn = None;
        }
        r
    }

    /// A transfer that failed half-way may leave a reply or a data
    /// connection pending: that control connection is never reused. One
    /// whose command the server refused outright is in step and goes on.
    fn after_transfer<T>(&mut self, r: std::result::Result<T, transfer::Failed>) -> Result<T> {
        let r = r.map_err(|f| {
            if !f.in_step {
                self.conn = None;
            }
            f.error
        });
        self.after(r)
    }
}

/// A session dropped (the pool closing its idle sessions, or a caller done
/// with it) says QUIT on a task of its own, since a drop cannot wait.
impl Drop for FtpSession {
    fn drop(&mut self) {
        self.quit_in_background();
    }
}

#[async_trait]
impl Session for FtpSession {
    /// QUIT, awaited: the pool closes idle sessions this way at the end of
    /// a poll, so the goodbye is sent even when the process exits next.
    async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            connect::quit(conn).await;
        }
    }

    /// On FTPS: the control connection's certificate, to check and pin.
    fn identity(&self) -> Option<String> {
        let der = self.conn.as_ref()?.certificate.as_deref()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Some(certinfo::describe(der, now))
    }

    async fn list(&mut self, dir: &str) -> Result<Vec<Entry>> {
        super::gather(|out| self.list_batches(dir, out)).await
    }

    async fn list_batches(
        &mut self,
        dir: &str,
        out: tokio::sync::mpsc::Sender<Vec<Entry>>,
    ) -> Result<()> {
        let shared = self.shared.clone();
        let r = ops::list_batches(self.data_conn().await?, &shared, dir, &out).await;
        self.after(r)
    }

    async fn stat(&mut self, path: &str) -> Result<Entry> {
        let shared = self.shared.clone();
        let r = ops::stat(self.conn().await?, &shared, path).await;
        self.after(r)
    }

    async fn file_size(&mut self, path: &str) -> Result<Option<u64>> {
        let shared = self.shared.clone();
        let r = ops::file_size(self.conn().await?, &shared, path).await;
        self.after(r)
    }

    async fn read_into(
        &mut self,
        path: &str,
        offset: u64,
        expected: Version,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        let shared = self.shared.clone();
        let limit = expected.read_limit(offset);
        let r =
            transfer::read_into(self.data_conn().await?, &shared, path, offset, limit, sink).await;
        self.after_transfer(r)
    }

    /// RETR after `REST offset`, with the data connection closed once
    /// `len` bytes arrived: vsftpd then answers 426, which `transfer`
    /// takes as the end of a range it asked to cut short. A refused REST
    /// is `ResumeRefused`.
    async fn read_range(
        &mut self,
        path: &str,
        offset: u64,
        len: u64,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        let shared = self.shared.clone();
        let conn = self.data_conn().await?;
        let r = transfer::read_into(conn, &shared, path, offset, Some(len), sink).await;
        self.after_transfer(r)
    }

    fn reads_ranges(&self) -> bool {
        true
    }

    async fn write_from(
        &mut self,
        path: &str,
        mode: WriteMode,
        source: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64> {
        let shared = self.shared.clone();
        let r = transfer::write_from(self.data_conn().await?, &shared, path, mode, source).await;
        self.after_transfer(r)
    }

    /// Plain FTP: its data connections carry the file's bytes as they are.
    fn splices(&self) -> bool {
        matches!(self.shared.tls, Ok(None))
    }

    async fn write_file(
        &mut self,
        path: &str,
        mode: WriteMode,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        throttle: &crate::bandwidth::Throttle,
    ) -> Result<u64> {
        let shared = self.shared.clone();
        let conn = self.data_conn().await?;
        let r = transfer::write_file(conn, &shared, path, mode, file, offset, len, throttle).await;
        self.after_transfer(r)
    }

    /// Together where the connection allows ([`sizes::sizes_together`]):
    /// a send batch's size checks, after the files of its session went one
    /// after another (a control connection sends one file at a time).
    async fn file_sizes(&mut self, paths: &[&str]) -> Vec<Result<Option<u64>>> {
        if paths.len() > 1 {
            let shared = self.shared.clone();
            let together = match self.conn().await {
                Ok(conn) => sizes::sizes_together(conn, &shared, paths).await,
                Err(e) => Some(paths.iter().map(|_| Err(e.clone())).collect()),
            };
            if let Some(answers) = together {
                return answers.into_iter().map(|r| self.after(r)).collect();
            }
        }
        crate::remote::sizes_one_by_one(self, paths).await
    }

    async fn server_digest(&mut self, path: &str) -> Result<Option<Expected>> {
        let shared = self.shared.clone();
        let r = digest::of(self.conn().await?, &shared, path).await;
        self.after(r)
    }

    async fn set_mtime(&mut self, path: &str, mtime: i64) -> Result<bool> {
        let shared = self.shared.clone();
        let r = ops::set_mtime(self.conn().await?, &shared, path, mtime).await;
        self.after(r)
    }

    /// FTP's RNTO replaces an existing target on most servers, so without
    /// `replace` the target is checked first. Another client creating `to`
    /// between the check and RNTO can still be overwritten: FTP has no
    /// exclusive rename. With `replace`, a server that refuses to overwrite
    /// gets DELE then RNTO (a crash between leaves the target missing, never
    /// half-written).
    async fn rename(&mut self, from: &str, to: &str, replace: bool) -> Result<()> {
        let shared = self.shared.clone();
        let ctx = format!("rename {from} -> {to}");
        let conn = self.conn().await?;
        let r = match ops::stat(conn, &shared, to).await {
            Ok(_) if !replace => Err(RemoteError::new(
                ErrorKind::AlreadyExists,
                false,
                ctx,
                "target exists",
            )),
            Ok(_) => match ops::rename(conn, &shared, from, to).await {
                Ok(()) => Ok(()),
                Err(_) => match ops::remove(conn, &shared, to).await {
                    Ok(()) => ops::rename(conn, &shared, from, to).await,
                    Err(e) => Err(e),
                },
            },
            Err(e) if e.kind == ErrorKind::NotFound => ops::rename(conn, &shared, from, to).await,
            Err(e) => Err(e),
        };
        self.after(r)
    }

    /// Onto free names on a plain connection: every check and rename of a
    /// window sent together ([`renames`]). Otherwise one by one.
    async fn renames(&mut self, pairs: &[(String, String)], replace: bool) -> Vec<Result<()>> {
        if !replace && pairs.len() > 1 {
            let shared = self.shared.clone();
            let conn = match self.conn().await {
                Ok(c) => c,
                Err(e) => {
                    let e = self.after::<()>(Err(e)).unwrap_err();
                    return pairs.iter().map(|_| Err(e.clone())).collect();
                }
            };
            if let Some(answers) = renames::rename_to_free_names(conn, &shared, pairs).await {
                return answers.into_iter().map(|r| self.after(r)).collect();
            }
        }
        let mut out = Vec::with_capacity(pairs.len());
        for (from, to) in pairs {
            out.push(self.rename(from, to, replace).await);
        }
        out
    }

    async fn remove(&mut self, path: &str) -> Result<()> {
        let shared = self.shared.clone();
        let r = ops::remove(self.conn().await?, &shared, path).await;
        self.after(r)
    }

    async fn create_dirs(&mut self, dir: &str) -> Result<()> {
        let shared = self.shared.clone();
        let r = ops::create_dirs(self.conn().await?, &shared, dir).await;
        self.after(r)
    }
}
