//! Opening one control connection: TCP, TLS (explicit `AUTH TLS` or
//! implicit), login, binary mode and what the server can do (FEAT). All of
//! it runs under `connect_timeout`; suppaftp itself bounds only the TCP
//! connect.

use super::ctrl_tls::{CtrlConnector, CtrlTls};
use super::error::{classify, tls_error};
use super::{Shared, relay, tls};
use crate::config::Protocol;
use crate::remote::proxy;
use crate::remote::{ErrorKind, RemoteError, Result};
use rustls::ClientConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use suppaftp::Status;
use suppaftp::tokio::{AsyncFtpStream, ImplAsyncFtpStream};
use suppaftp::tokio_rustls::TlsConnector;
use suppaftp::types::FileType;
use tokio::net::TcpStream;

/// The control connection, plain or TLS; [`on_ctrl!`] runs the same call on either.
/// A control connection over TLS (`ctrl_tls.rs`).
pub type TlsFtpStream = ImplAsyncFtpStream<CtrlTls>;

pub enum Ctrl {
    Plain(AsyncFtpStream),
    Tls(TlsFtpStream),
}

/// Runs `$body` with `$s` bound to the suppaftp stream, whichever kind it is.
macro_rules! on_ctrl {
    ($ctrl:expr, $s:ident => $body:expr) => {
        match $ctrl {
            $crate::remote::ftp::connect::Ctrl::Plain($s) => $body,
            $crate::remote::ftp::connect::Ctrl::Tls($s) => $body,
        }
    };
}
pub(crate) use on_ctrl;

/// What this server offers, from FEAT (RFC 2389).
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    pub mlsd: bool,
    pub mdtm: bool,
    /// SIZE (RFC 3659): an upload's size check always gets a number.
    pub size: bool,
    /// MFMT: set a file's modification time.
    pub mfmt: bool,
    /// HASH with SHA-256 among its algorithms (draft-bryan-ftpext-hash).
    pub hash_sha256: bool,
    pub xsha256: bool,
    pub xmd5: bool,
}

/// One logged-in control connection and what the data channel needs to know.
pub struct Conn {
    pub ctrl: Ctrl,
    pub features: Features,
    /// The server's address on the control connection: the data address
    /// for EPSV, and the fallback for PASV replies that name a private one.
    pub peer: SocketAddr,
    /// This side's address on the control connection, for active mode.
    pub local: SocketAddr,
    /// Cleared once the server refuses EPSV; PASV is used from then on.
    pub epsv: bool,
    /// Set once EPSV has succeeded: from then on a download may send EPSV
    /// and RETR together.
    pub epsv_works: bool,
    /// HASH answers in SHA-256 on this connection (FEAT's `*`, or after
    /// `OPTS HASH SHA-256`).
    pub hash_sha256_selected: bool,
    /// On FTPS, this control connection's TLS configuration, with its own
    /// session store: its data connections resume its session, never a
    /// sibling's (`tls::for_connection`).
    pub tls: Option<Arc<ClientConfig>>,
    /// On FTPS, that configuration's session store.
    pub sessions: Option<Arc<super::sessions::Sessions>>,
    /// On FTPS, the leaf certificate the server presented (DER).
    pub certificate: Option<Vec<u8>>,
    /// The copy buffer, reused by every transfer on this connection:
    /// allocating and zeroing it per file costs more than a small file.
    pub buf: Vec<u8>,
}

/// Connects and logs in. On FTPS, with the TLS versions the server's
/// `sessions::Versions` says; when that is TLS 1.2 alone and it fails, once
/// more with TLS 1.3 too, and a server that lets that one in refuses
/// TLS 1.2 (it is not asked again).
pub async fn open(shared: &Shared) -> Result<Conn> {
    let server = &shared.server;
    let ctx = format!("connect {}:{}", server.host, server.port);
    // `any`: TLS 1.3 or 1.2, whatever the server's versions say.
    let attempt = |any: bool| {
        let ctx = ctx.clone();
        async move {
            let connect = open_untimed(shared, &ctx, any);
            match tokio::time::timeout(server.connect_timeout, connect).await {
                Ok(r) => r,
                Err(_) => Err(timed_out(&ctx, server.connect_timeout)),
            }
        }
    };
    let tls = match &shared.tls {
        Ok(Some(tls)) if tls.versions.tls12_only() => tls,
        _ => return attempt(false).await,
    };
    match attempt(false).await {
        Ok(conn) => Ok(conn),
        Err(e12) => match attempt(true).await {
            Ok(conn) => {
                tls.versions.tls12_refused(&server.name);
                Ok(conn)
            }
            // Neither: the server is not there, or not letting us in.
            Err(_) => Err(e12),
        },
    }
}

fn timed_out(ctx: &str, limit: std::time::Duration) -> RemoteError {
    RemoteError::new(
        ErrorKind::Timeout,
        true,
        ctx,
        format!("not connected and logged in within {limit:?}"),
    )
}

async fn open_untimed(shared: &Shared, ctx: &str, any: bool) -> Result<Conn> {
    let server = &shared.server;
    if server.ftp.insecure_skip_verify {
        tracing::warn!(server = %server.name, "insecure_skip_verify = true: the server certificate is NOT verified");
    }
    let (tls, seen, sessions) = match server.protocol {
        Protocol::Ftps | Protocol::FtpsImplicit => {
            let (config, seen, sessions) = own_config(shared, ctx, any)?;
            (Some(config), Some(seen), Some(sessions))
        }
        _ => (None, None, None),
    };
    let connector = || {
        let config = tls
            .clone()
            .expect("TLS configuration of an FTPS connection");
        CtrlConnector(TlsConnector::from(config))
    };
    let ctrl = match server.protocol {
        Protocol::Ftps => {
            let connector = connector();
            let plain = TlsFtpStream::connect_with_stream(tcp(shared, ctx).await?)
                .await
                .map_err(|e| classify(ctx, e))?;
            // into_secure sends AUTH TLS, then PBSZ 0 and PROT P (RFC 4217).
            let secure = plain
                .into_secure(connector, &server.host)
                .await
                .map_err(|e| classify(ctx, e))?;
            Ctrl::Tls(secure)
        }
        Protocol::FtpsImplicit => {
            let connector = connector();
            let mut s = implicit(shared, connector, ctx).await?;
            // suppaftp's implicit mode protects only the control channel.
            for cmd in ["PBSZ 0", "PROT P"] {
                s.custom_command(cmd, &[Status::CommandOk])
                    .await
                    .map_err(|e| classify(format!("{ctx}: {cmd}"), e))?;
            }
            Ctrl::Tls(s)
        }
        _ => Ctrl::Plain(
            AsyncFtpStream::connect_with_stream(tcp(shared, ctx).await?)
                .await
                .map_err(|e| classify(ctx, e))?,
        ),
    };
    let (peer, local) = on_ctrl!(&ctrl, s => {
        let sock = s.get_ref().await;
        (sock.peer_addr(), sock.local_addr())
    });
    let peer = peer.map_err(|e| RemoteError::from_io(ctx, &e))?;
    let local = local.map_err(|e| RemoteError::from_io(ctx, &e))?;
    let mut conn = Conn {
        ctrl,
        features: Features::default(),
        peer,
        local,
        epsv: true,
        epsv_works: false,
        hash_sha256_selected: false,
        tls,
        sessions,
        certificate: seen.and_then(|s| s.lock().ok()?.take()),
        buf: Vec::new(),
    };
    login(&mut conn, shared, ctx).await?;
    Ok(conn)
}

/// The control connection's TCP stream: straight to the server, or
/// through its proxy, which resolves the host name itself.
async fn tcp(shared: &Shared, ctx: &str) -> Result<TcpStream> {
    let server = &shared.server;
    if server.proxy.is_none() {
        return tcp_connect(&resolve(&server.host, server.port, ctx).await?, ctx).await;
    }
    let s = proxy::connect(server.proxy.as_ref(), &server.host, server.port).await?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Implicit FTPS: TLS from the first byte. suppaftp opens that connection
/// itself from an address, so through a proxy it is handed a loopback
/// relay into the proxied stream (`relay.rs`).
async fn implicit(shared: &Shared, connector: CtrlConnector, ctx: &str) -> Result<TlsFtpStream> {
    let server = &shared.server;
    if server.proxy.is_none() {
        let addrs = resolve(&server.host, server.port, ctx).await?;
        return TlsFtpStream::connect_secure_implicit(addrs[0], connector, &server.host)
            .await
            .map_err(|e| classify(ctx, e));
    }
    let relay = relay::Relay::start(tcp(shared, ctx).await?, ctx).await?;
    let s = TlsFtpStream::connect_secure_implicit(relay.addr, connector, &server.host)
        .await
        .map_err(|e| classify(ctx, e))?;
    let ours = s.get_ref().await.local_addr();
    relay.check(ours.ok(), ctx).await?;
    Ok(s)
}

async fn resolve(host: &str, port: u16, ctx: &str) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| {
            RemoteError::new(
                ErrorKind::Connection,
                true,
                ctx,
                format!("resolve {host}: {e}"),
            )
        })?
        .collect();
    if addrs.is_empty() {
        return Err(RemoteError::new(
            ErrorKind::Connection,
            true,
            ctx,
            format!("{host} has no address"),
        ));
    }
    Ok(addrs)
}

async fn tcp_connect(addrs: &[SocketAddr], ctx: &str) -> Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected));
    Err(RemoteError::new(
        ErrorKind::Connection,
        true,
        ctx,
        e.to_string(),
    ))
}

/// A TLS configuration for one new control connection and its data connections.
fn own_config(
    shared: &Shared,
    ctx: &str,
    any: bool,
) -> Result<(
    Arc<ClientConfig>,
    tls::SeenCertificate,
    Arc<super::sessions::Sessions>,
)> {
    match &shared.tls {
        Ok(Some(tls)) => {
            let config = if !any && tls.versions.tls12_only() {
                &tls.configs.tls12
            } else {
                &tls.configs.any
            };
            Ok(tls::for_connection(config, &tls.verifier))
        }
        Ok(None) => Err(RemoteError::new(
            ErrorKind::Other,
            false,
            ctx,
            "no TLS configuration",
        )),
        Err(msg) => Err(tls_error(ctx.to_string(), msg.clone())),
    }
}

async fn login(conn: &mut Conn, shared: &Shared, ctx: &str) -> Result<()> {
    let server = &shared.server;
    let user = server.user.clone().unwrap_or_else(|| "anonymous".into());
    let password = server
        .password
        .as_ref()
        .map_or_else(|| "ferry@".to_string(), |p| p.expose().to_string());
    on_ctrl!(&mut conn.ctrl, s => s.login(user.as_str(), password.as_str()).await)
        .map_err(|e| classify(format!("{ctx}: login as {user}"), e))?;
    // suppaftp starts in ASCII mode, which would rewrite line endings.
    on_ctrl!(&mut conn.ctrl, s => s.transfer_type(FileType::Binary).await)
        .map_err(|e| classify(format!("{ctx}: TYPE I"), e))?;
    // FEAT is optional (RFC 2389); a server without it gets LIST and no MDTM refinement.
    if let Ok(feat) = on_ctrl!(&mut conn.ctrl, s => s.feat().await) {
        let has = |name: &str| feat.keys().any(|k| k.eq_ignore_ascii_case(name));
        let hash = feat
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("HASH"))
            .map(|(_, v)| v.as_deref());
        let (hash_sha256, selected) = super::digest::hash_offers_sha256(hash.flatten());
        conn.hash_sha256_selected = selected;
        conn.features = Features {
            mlsd: has("MLST"),
            mdtm: has("MDTM"),
            size: has("SIZE"),
            mfmt: has("MFMT"),
            hash_sha256,
            xsha256: has("XSHA256"),
            xmd5: has("XMD5"),
        };
        if has("UTF8") {
            // Some servers (IIS, FileZilla) send non-ASCII names in UTF-8 only after this.
            let _ = on_ctrl!(&mut conn.ctrl, s => s.custom_command("OPTS UTF8 ON", &[Status::CommandOk]).await);
        }
    }
    Ok(())
}

/// Ends a control connection with QUIT (RFC 959 4.1.1) and waits briefly
/// for the 221: the server then closes the session at once and logs a
/// goodbye, where a dropped socket can hold one of a per-user session
/// limit until the server notices. Failures are of no interest: the
/// connection is going either way.
pub async fn quit(mut conn: Conn) {
    let wait = std::time::Duration::from_secs(2);
    let _ = on_ctrl!(&mut conn.ctrl, s => tokio::time::timeout(wait, s.quit()).await);
}
