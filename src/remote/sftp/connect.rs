//! Opening an SFTP session: TCP (through a proxy when configured), the SSH
//! handshake with our host-key check, authentication, the sftp subsystem.
//!
//! This talks to russh directly rather than through async-ssh2-tokio: that
//! crate's handler is private, so it can neither report the key a server
//! offered (needed for the refusal message and `test-connection`), nor
//! check pinned fingerprints, nor run over a proxied stream.

use super::error;
use super::hostkey::{Checker, HandshakeError};
use super::progress::Watch;
use super::transfer::FSYNC;
use super::wire::{self, Client};
use crate::config::Server;
use crate::remote::{ErrorKind, RemoteError, Result, proxy};
use russh::client::{self, AuthResult, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::PrivateKeyWithHashAlg;
use russh::{MethodKind, cipher};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// AES-GCM first: with AES-NI it is the cheapest authenticated cipher, and
/// on loopback and LANs the cipher, not the network, bounds throughput.
const CIPHERS: &[cipher::Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

/// Requests the protocol guarantees every server accepts (SFTP draft 02).
const SAFE_CHUNK: u64 = 32 * 1024;
/// What we ask for when the server announces larger limits: OpenSSH reads
/// and writes up to 255 KiB per request.
const MAX_CHUNK: u64 = 255 * 1024;
const LIMITS: &str = "limits@openssh.com";
/// At most this long for a second SFTP channel (a few round trips): an
/// upload that waits for it at its end waits no longer.
const SECOND_CHANNEL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Connected {
    pub ssh: Handle<Checker>,
    pub sftp: Client,
    /// Extensions the server announced (`posix-rename@openssh.com`, ...).
    pub extensions: HashMap<String, Vec<u8>>,
    /// Bytes per read and per write request.
    pub read_chunk: u32,
    pub write_chunk: u32,
    /// `ssh-ed25519 SHA256:...` as offered by the server.
    pub host_key: String,
    /// When the SFTP channel last brought bytes: `io_timeout` is measured
    /// from there.
    pub watch: Watch,
    /// A second SFTP channel for early fsyncs of large uploads
    /// (`writeback.rs`), opened at first need; `None` once it failed.
    pub second: OnceCell<Option<Arc<Client>>>,
    /// The server's `fsync = false`: uploads are not fsynced.
    pub skip_fsync: bool,
}

impl Connected {
    /// One SFTP request (or a wait for one of many in flight) under
    /// `io_timeout`, counted as "no byte heard for this long".
    pub async fn io<T>(
        &self,
        request: impl std::future::Future<Output = std::result::Result<T, wire::Error>>,
    ) -> std::result::Result<T, wire::Error> {
        self.watch.within(request).await
    }

    /// Whether the server announced the OpenSSH extension `name` (version "1").
    pub fn has(&self, name: &str) -> bool {
        self.extensions.get(name).is_some_and(|v| v == b"1")
    }

    /// Whether uploads are fsynced on the server: offered
    /// (`fsync@openssh.com`) and not turned off (`fsync = false`).
    pub fn fsyncs(&self) -> bool {
        !self.skip_fsync && self.has(FSYNC)
    }

    /// Another SFTP channel on this connection: on OpenSSH a process of
    /// its own on the server, so its requests never wait behind this
    /// one's. Opened once; a server that refuses it is not asked again.
    pub async fn second_channel(&self) -> Option<Arc<Client>> {
        let open = async {
            let channel = self.ssh.channel_open_session().await.ok()?;
            channel.request_subsystem(true, "sftp").await.ok()?;
            let (client, _) = Client::start(channel.into_stream()).await.ok()?;
            Some(Arc::new(client))
        };
        let timeout = self.watch.io_timeout().min(SECOND_CHANNEL_TIMEOUT);
        let opened = self
            .second
            .get_or_init(|| async move { tokio::time::timeout(timeout, open).await.ok().flatten() })
            .await
            .clone();
        if opened.is_none() {
            tracing::debug!("no second sftp channel: early fsyncs off for this session");
        }
        opened
    }
}

pub async fn open(server: &Server) -> Result<Connected> {
    let endpoint = format!("{}:{}", server.host, server.port);
    match tokio::time::timeout(server.connect_timeout, open_inner(server, &endpoint)).await {
        Ok(r) => r,
        Err(_) => Err(RemoteError::new(
            ErrorKind::Timeout,
            true,
            format!("connect {endpoint}"),
            format!(
                "no session within connect_timeout ({})",
                humantime::format_duration(server.connect_timeout)
            ),
        )),
    }
}

async fn open_inner(server: &Server, endpoint: &str) -> Result<Connected> {
    let stream = proxy::connect(server.proxy.as_ref(), &server.host, server.port).await?;
    let _ = stream.set_nodelay(true);
    let offered = Arc::new(Mutex::new(None));
    let checker = Checker {
        policy: server.sftp.host_keys.clone(),
        server: server.name.clone(),
        host: server.host.clone(),
        port: server.port,
        offered: offered.clone(),
    };
    let config = client::Config {
        preferred: russh::Preferred {
            cipher: Cow::Borrowed(CIPHERS),
            ..Default::default()
        },
        // A wide window keeps the server sending while replies are in flight.
        window_size: 16 * 1024 * 1024,
        maximum_packet_size: 65535,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    };
    let mut ssh = client::connect_stream(Arc::new(config), stream, checker)
        .await
        .map_err(|e| error::handshake(endpoint, e))?;
    authenticate(&mut ssh, server, endpoint).await?;
    let host_key = offered
        .lock()
        .expect("offered lock")
        .clone()
        .unwrap_or_default();
    start_sftp(ssh, server, endpoint, host_key).await
}

async fn start_sftp(
    ssh: Handle<Checker>,
    server: &Server,
    endpoint: &str,
    host_key: String,
) -> Result<Connected> {
    let ctx = format!("open sftp on {endpoint}");
    let channel = ssh
        .channel_open_session()
        .await
        .map_err(|e| error::ssh(&ctx, e))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| error::ssh(&ctx, e))?;
    let watch = Watch::new(server.io_timeout);
    let (sftp, version) = watch
        .within(Client::start(watch.counting(channel.into_stream())))
        .await
        .map_err(|e| error::sftp("start", endpoint, e))?;
    tracing::debug!(
        version = version.version,
        extensions = ?version.extensions.keys().collect::<Vec<_>>(),
        "sftp server version"
    );
    let extensions = version.extensions;
    let (mut read_chunk, mut write_chunk) = (SAFE_CHUNK, SAFE_CHUNK);
    if extensions.get(LIMITS).is_some_and(|v| v == b"1")
        && let Ok(l) = watch.within(sftp.limits()).await
    {
        // 0 means "no limit" in limits@openssh.com.
        let cap = |n: u64| if n == 0 { MAX_CHUNK } else { n.min(MAX_CHUNK) };
        read_chunk = cap(l.max_read);
        write_chunk = cap(l.max_write);
    }
    Ok(Connected {
        ssh,
        sftp,
        extensions,
        read_chunk: read_chunk as u32,
        write_chunk: write_chunk as u32,
        host_key,
        watch,
        second: OnceCell::new(),
        skip_fsync: server.sftp.skip_fsync,
    })
}

fn auth_error(endpoint: &str, why: String) -> RemoteError {
    RemoteError::new(
        ErrorKind::Auth,
        false,
        format!("authenticate on {endpoint}"),
        why,
    )
}

/// Public key first when one is configured, then the password, answered
/// through keyboard-interactive when the server asks for it that way.
async fn authenticate(ssh: &mut Handle<Checker>, server: &Server, endpoint: &str) -> Result<()> {
    let user = server.user.clone().unwrap_or_default();
    let ctx = format!("authenticate on {endpoint}");
    let mut tried = Vec::new();
    if let Some(key) = &server.sftp.private_key {
        let key = key.key();
        tried.push("publickey");
        let hash = if key.algorithm().is_rsa() {
            ssh.best_supported_rsa_hash()
                .await
                .map_err(|e| error::ssh(&ctx, e))?
                .flatten()
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(key, hash);
        let r = ssh
            .authenticate_publickey(&user, key)
            .await
            .map_err(|e| error::ssh(&ctx, e))?;
        if r.success() {
            return Ok(());
        }
    }
    if let Some(password) = &server.password {
        tried.push("password");
        let r = ssh
            .authenticate_password(&user, password.expose())
            .await
            .map_err(|e| error::ssh(&ctx, e))?;
        let kbd_offered = match r {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure {
                remaining_methods, ..
            } => remaining_methods.contains(&MethodKind::KeyboardInteractive),
        };
        if kbd_offered {
            tried.push("keyboard-interactive");
            if keyboard_interactive(ssh, &user, password.expose(), &ctx).await? {
                return Ok(());
            }
        }
    }
    // A connection cut during authentication reads as a refusal; it is a
    // broken link, worth another attempt, not a wrong password.
    if ssh.is_closed() {
        return Err(RemoteError::new(
            ErrorKind::Connection,
            true,
            ctx,
            "the connection closed during authentication",
        ));
    }
    Err(auth_error(
        endpoint,
        format!(
            "the server refused user {user:?} (tried: {})",
            tried.join(", ")
        ),
    ))
}

/// Answers every prompt with the password: what an interactive user does
/// when the server asks for the password through keyboard-interactive.
async fn keyboard_interactive(
    ssh: &mut Handle<Checker>,
    user: &str,
    password: &str,
    ctx: &str,
) -> Result<bool> {
    let mut reply = ssh
        .authenticate_keyboard_interactive_start(user, None)
        .await
        .map_err(|e| error::ssh(ctx, e))?;
    for _ in 0..5 {
        match reply {
            KeyboardInteractiveAuthResponse::Success => return Ok(true),
            KeyboardInteractiveAuthResponse::Failure { .. } => return Ok(false),
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let answers = prompts.iter().map(|_| password.to_string()).collect();
                reply = ssh
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(|e| error::ssh(ctx, e))?;
            }
        }
    }
    Ok(false)
}

impl From<HandshakeError> for RemoteError {
    fn from(e: HandshakeError) -> Self {
        error::handshake("server", e)
    }
}
