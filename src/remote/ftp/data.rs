//! Data connections, opened by ferry rather than by suppaftp so that every
//! step has a timeout and the choices the issue asks for are ours: EPSV
//! first and PASV when the server refuses it (RFC 2428); where the
//! connection goes (NAT repair, the proxy) is `passive.rs`; active mode
//! listens on a port from `active_ports`; on FTPS the data connection is TLS with its own control connection's `ClientConfig` (and
//! session store), so it resumes that session, as vsftpd's
//! `require_ssl_reuse` and ProFTPD's mod_tls demand.

use super::Shared;
use super::connect::{Conn, Ctrl, on_ctrl};
use super::error::{classify, reply_code, tls_error};
use super::passive::{self, Route, Target, epsv_port, pasv_address};
use crate::config::FtpMode;
use crate::remote::{ErrorKind, RemoteError, Result};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use suppaftp::{FtpError, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type TlsData = suppaftp::tokio_rustls::client::TlsStream<TcpStream>;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {
    /// Queues a TLS close_notify alert; nothing on plain TCP.
    fn close_notify(&mut self) -> bool {
        false
    }
    /// The socket itself when the bytes go on it as they are (plain TCP),
    /// for an upload by sendfile ([`super::splice`]).
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl Io for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Io for TlsData {
    fn close_notify(&mut self) -> bool {
        self.get_mut().1.send_close_notify();
        true
    }
}

/// An open data connection, plain or TLS.
pub type DataStream = Box<dyn Io>;

const PRELIMINARY: &[Status] = &[Status::AboutToSend, Status::AlreadyOpen];

/// Sends one control command, bounded by `io_timeout`.
pub async fn command(
    conn: &mut Conn,
    io: Duration,
    cmd: &str,
    expect: &[Status],
) -> Result<String> {
    let fut = on_ctrl!(&mut conn.ctrl, s => tokio::time::timeout(io, s.custom_command(cmd, expect)).await);
    match fut {
        Ok(Ok(r)) => Ok(String::from_utf8_lossy(&r.body).into_owned()),
        Ok(Err(e)) => Err(classify(cmd.to_string(), e)),
        Err(_) => Err(timeout(cmd, io)),
    }
}

pub fn timeout(what: &str, io: Duration) -> RemoteError {
    RemoteError::new(
        ErrorKind::Timeout,
        true,
        what,
        format!("no progress within {io:?}"),
    )
}

/// Opens the data connection for `cmd` (`RETR /x`, `STOR /x`, `MLSD /x`,
/// `LIST`), preceded by `REST offset` when the offset is not zero.
pub async fn open(conn: &mut Conn, shared: &Shared, cmd: &str, offset: u64) -> Result<DataStream> {
    let io = shared.server.io_timeout;
    let pipelined = shared.server.ftp.mode == FtpMode::Passive
        && conn.epsv_works
        && offset == 0
        && cmd.starts_with("RETR ");
    let quick = if pipelined {
        open_retr_pipelined(conn, shared, cmd).await
    } else {
        None
    };
    let tcp = match (quick, shared.server.ftp.mode) {
        (Some(r), _) => r?,
        (None, FtpMode::Passive) => {
            let target = passive_address(conn, shared).await?;
            let tcp = passive::connect(&shared.server, &target).await?;
            start(conn, io, cmd, offset).await?;
            tcp
        }
        (None, FtpMode::Active) if shared.server.proxy.is_some() => {
            return Err(active_through_proxy(cmd));
        }
        (None, FtpMode::Active) => {
            let listener = listen(conn, shared.server.ftp.active_ports)?;
            let port = listener
                .local_addr()
                .map_err(|e| RemoteError::from_io("active listener", &e))?
                .port();
            let announce = match conn.local.ip() {
                IpAddr::V4(ip) => {
                    let o = ip.octets();
                    format!(
                        "PORT {},{},{},{},{},{}",
                        o[0],
                        o[1],
                        o[2],
                        o[3],
                        port >> 8,
                        port & 0xff
                    )
                }
                IpAddr::V6(ip) => format!("EPRT |2|{ip}|{port}|"),
            };
            command(conn, io, &announce, &[Status::CommandOk]).await?;
            start(conn, io, cmd, offset).await?;
            accept(&listener, conn.peer.ip(), shared.server.connect_timeout).await?
        }
    };
    let _ = tcp.set_nodelay(true);
    match (&shared.tls, &conn.tls) {
        (Ok(Some(tls)), Some(config)) => {
            let connector = suppaftp::tokio_rustls::TlsConnector::from(config.clone());
            let handshake = connector.connect(tls.name.clone(), tcp);
            match tokio::time::timeout(shared.server.connect_timeout, handshake).await {
                Ok(Ok(s)) => Ok(Box::new(s)),
                Ok(Err(e)) => Err(tls_error(format!("{cmd}: data connection"), e.to_string())),
                Err(_) => Err(timeout(&format!("{cmd}: data connection TLS"), io)),
            }
        }
        _ => Ok(Box::new(tcp)),
    }
}

/// Writes several command lines to a plain control connection in one go,
/// for the caller to read their replies in order. Under TLS the socket
/// carries records, not lines: `Unsupported`, and the caller sends the
/// commands one by one. A line with CR or LF is refused (it would smuggle a
/// second command).
pub async fn send_lines(conn: &mut Conn, io: Duration, lines: &[String]) -> std::io::Result<()> {
    if lines.iter().any(|l| l.contains(['\r', '\n'])) {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    let text: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
    let Ctrl::Plain(ftp) = &mut conn.ctrl else {
        return Err(std::io::ErrorKind::Unsupported.into());
    };
    let socket = ftp.get_ref().await;
    let write = async {
        let mut rest = text.as_bytes();
        while !rest.is_empty() {
            socket.writable().await?;
            match socket.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(io, write).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Reads one reply to a command sent by [`send_lines`].
pub async fn reply(conn: &mut Conn, io: Duration, cmd: &str, expect: &[Status]) -> Result<String> {
    let r =
        on_ctrl!(&mut conn.ctrl, s => tokio::time::timeout(io, s.read_response_in(expect)).await);
    match r {
        Ok(Ok(r)) => Ok(String::from_utf8_lossy(&r.body).into_owned()),
        Ok(Err(e)) => Err(classify(cmd.to_string(), e)),
        Err(_) => Err(timeout(cmd, io)),
    }
}

/// A download's EPSV and RETR sent together, once this server has shown
/// that it answers EPSV: one round trip per file less. The server answers
/// EPSV, then waits for the data connection before answering RETR.
///
/// Not for STOR: vsftpd opens and write-locks the file before it waits
/// for the data connection, so a client that dies (or cannot connect)
/// between the two leaves the lock held for `accept_timeout` (60 s), and
/// every retry of that upload stalls on it meanwhile (seen in
/// `small_files_exactly_once_over_ftp`). Connected first, a dead client's
/// data connection closes with it.
async fn open_retr_pipelined(
    conn: &mut Conn,
    shared: &Shared,
    cmd: &str,
) -> Option<Result<TcpStream>> {
    let io = shared.server.io_timeout;
    let lines = ["EPSV".to_string(), cmd.to_string()];
    if send_lines(conn, io, &lines).await.is_err() {
        return None;
    }
    let port = match reply(conn, io, "EPSV", &[Status::ExtendedPassiveMode]).await {
        Ok(r) => match epsv_port(&r) {
            Some(p) => p,
            None => return Some(Err(bad_reply("EPSV", &r))),
        },
        Err(e) => {
            // RETR was sent too; its refusal keeps the connection in step.
            let _ = reply(conn, io, cmd, PRELIMINARY).await;
            return Some(Err(e));
        }
    };
    let target = route(conn, shared).epsv(port);
    let tcp = match passive::connect(&shared.server, &target).await {
        Ok(tcp) => tcp,
        // The server waits for this connection before answering RETR: the
        // control connection is out of step, and the session must go.
        Err(mut e) => {
            (e.kind, e.temporary) = (ErrorKind::Connection, true);
            return Some(Err(e));
        }
    };
    Some(reply(conn, io, cmd, PRELIMINARY).await.map(|_| tcp))
}

/// `REST` (if resuming) and the transfer command, up to its preliminary reply.
async fn start(conn: &mut Conn, io: Duration, cmd: &str, offset: u64) -> Result<()> {
    if offset > 0 {
        let rest = format!("REST {offset}");
        command(conn, io, &rest, &[Status::RequestFilePending])
            .await
            .map_err(|e| resume_refused(e, offset))?;
    }
    command(conn, io, cmd, PRELIMINARY).await.map(|_| ())
}

/// A permanent refusal of REST (500/502/504: not implemented, or not for
/// this file) will not pass with time: the file must be read from byte 0,
/// which the caller does at once rather than failing the file for good.
fn resume_refused(mut e: RemoteError, offset: u64) -> RemoteError {
    if !e.temporary && e.kind == ErrorKind::Other {
        e.kind = ErrorKind::ResumeRefused;
        e.message = format!("cannot resume at byte {offset}: {}", e.message);
    }
    e
}

/// Ends an upload's data connection so that the server has every byte.
/// On TLS: close_notify, then wait for the server to close, as OpenSSL and
/// Python's `unwrap()` do; pyftpdlib loses the records that arrive together
/// with a FIN. The wait is short: a server that waits for our FIN gets it.
pub async fn end_upload(stream: &mut DataStream, io: Duration) -> std::io::Result<()> {
    let bounded = |d: Duration| d.min(Duration::from_secs(10));
    if stream.close_notify() {
        match tokio::time::timeout(io, stream.flush()).await {
            Ok(r) => r?,
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        }
        let mut scratch = [0u8; 1024];
        let drain = async {
            while let Ok(n) = stream.read(&mut scratch).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(bounded(io), drain).await;
        return Ok(());
    }
    match tokio::time::timeout(io, stream.shutdown()).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Reads the reply that ends a transfer (226 or 250).
pub async fn finish(conn: &mut Conn, io: Duration, what: &str) -> Result<()> {
    let expect = [Status::ClosingDataConnection, Status::RequestedFileActionOk];
    let r =
        on_ctrl!(&mut conn.ctrl, s => tokio::time::timeout(io, s.read_response_in(&expect)).await);
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(classify(what.to_string(), e)),
        Err(_) => Err(timeout(what, io)),
    }
}

/// Configuration refuses this (`mode`); kept for a model built by hand.
fn active_through_proxy(cmd: &str) -> RemoteError {
    RemoteError::new(
        ErrorKind::Other,
        false,
        cmd,
        "active mode cannot go through a proxy (the server would connect to this machine, \
         past it): use mode = \"passive\"",
    )
}

/// How this connection's data connections reach the server.
fn route<'a>(conn: &Conn, shared: &'a Shared) -> Route<'a> {
    Route {
        control: conn.peer.ip(),
        host: &shared.server.host,
        proxied: shared.server.proxy.is_some(),
    }
}

async fn passive_address(conn: &mut Conn, shared: &Shared) -> Result<Target> {
    let io = shared.server.io_timeout;
    if conn.epsv {
        match command(conn, io, "EPSV", &[Status::ExtendedPassiveMode]).await {
            Ok(reply) => {
                let port = epsv_port(&reply).ok_or_else(|| bad_reply("EPSV", &reply))?;
                conn.epsv_works = true;
                return Ok(route(conn, shared).epsv(port));
            }
            // 500/501/502: no EPSV here (RFC 2428); remember and use PASV.
            Err(e) if !e.temporary && e.kind == ErrorKind::Other => conn.epsv = false,
            Err(e) => return Err(e),
        }
    }
    let reply = command(conn, io, "PASV", &[Status::PassiveMode]).await?;
    let addr = pasv_address(&reply).ok_or_else(|| bad_reply("PASV", &reply))?;
    Ok(route(conn, shared).pasv(addr))
}

fn bad_reply(cmd: &str, reply: &str) -> RemoteError {
    RemoteError::new(
        ErrorKind::Connection,
        true,
        cmd,
        format!("unreadable reply: {}", reply.trim()),
    )
}

/// A listener for active mode on the control connection's local address,
/// on a port from `range` (random start, then every port in turn).
fn listen(conn: &Conn, range: Option<(u16, u16)>) -> Result<TcpListener> {
    let ip = conn.local.ip();
    let bind = |port: u16| -> std::io::Result<TcpListener> {
        let std = std::net::TcpListener::bind(SocketAddr::new(ip, port))?;
        std.set_nonblocking(true)?;
        TcpListener::from_std(std)
    };
    let Some((lo, hi)) = range else {
        return bind(0).map_err(|e| RemoteError::from_io("active listener", &e));
    };
    let count = u32::from(hi - lo) + 1;
    let first = fastrand::u32(0..count);
    let mut last = None;
    for i in 0..count {
        let port = lo + ((first + i) % count) as u16;
        match bind(port) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    let msg = format!(
        "no free port in active_ports {lo}-{hi}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    );
    Err(RemoteError::new(
        ErrorKind::Connection,
        true,
        "active listener",
        msg,
    ))
}

/// Accepts the server's data connection, ignoring anyone but the server.
async fn accept(listener: &TcpListener, server: IpAddr, limit: Duration) -> Result<TcpStream> {
    let wait = async {
        loop {
            let (s, from) = listener.accept().await?;
            if from.ip() == server {
                return Ok::<_, std::io::Error>(s);
            }
            tracing::warn!(%from, "ignoring an active-mode data connection from an address other than the server's");
        }
    };
    match tokio::time::timeout(limit, wait).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(RemoteError::from_io("active data connection", &e)),
        Err(_) => Err(RemoteError::new(
            ErrorKind::Connection,
            true,
            "active data connection",
            format!(
                "the server did not connect within {limit:?} (a firewall or NAT in between? try mode = \"passive\")"
            ),
        )),
    }
}

/// After a failed transfer, the server's own reply often says why (522,
/// 426, 451): prefer it to the bare I/O error when it comes quickly.
pub async fn reason(conn: &mut Conn, what: &str, fallback: RemoteError) -> RemoteError {
    let wait = Duration::from_secs(2);
    let expect = [Status::ClosingDataConnection, Status::RequestedFileActionOk];
    let r = on_ctrl!(&mut conn.ctrl, s => tokio::time::timeout(wait, s.read_response_in(&expect)).await);
    match r {
        Ok(Err(FtpError::UnexpectedResponse(resp))) if reply_code(&resp) >= 400 => {
            let mut e = classify(what.to_string(), FtpError::UnexpectedResponse(resp));
            // The transfer broke; the session goes with it either way.
            if !e.breaks_session() && e.temporary {
                e.kind = ErrorKind::Connection;
            }
            e
        }
        _ => fallback,
    }
}
