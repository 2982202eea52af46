//! The validated runtime model. Everything here has been checked once:
//! paths are absolute, globs compiled, durations parsed, secrets loaded.
//! No code after `config::load` looks at the raw file again.

use super::known_hosts::KnownHosts;
use super::secret::{Secret, SecretKey};
pub use crate::bandwidth::Bandwidth;
use globset::GlobSet;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub daemon: Daemon,
    pub servers: BTreeMap<String, Arc<Server>>,
    pub rules: Vec<Arc<Rule>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Daemon {
    /// The state database: a SQLite file, or a PostgreSQL server.
    pub state: StateDb,
    /// Where files for handler-only rules are downloaded before the handler runs.
    pub spool_dir: PathBuf,
    /// Transfers in flight across all rules.
    pub max_transfers: usize,
    /// How long a stop waits for transfers in flight before abandoning them
    /// (they resume at the next start).
    pub grace_period: Duration,
    /// Where `ferry run` serves `/metrics` and `/healthz`, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// Finished rows (and their history) older than this are pruned, and
    /// failed files' local leftovers removed; `None`: kept for ever.
    pub retention: Option<Duration>,
    /// This host's name among the hosts sharing one state database
    /// (`daemon.node`, default the hostname): the owner of its claims.
    pub node: String,
    /// How long a claim or a rule's listing turn outlives its last
    /// renewal (`daemon.lease`): a node that stops renewing loses its
    /// files to the others after this.
    pub lease: Duration,
}

/// Where the state database is (`daemon.state`).
#[derive(Debug, Clone, PartialEq)]
pub enum StateDb {
    /// A SQLite file on this host: the embedded default, one host only.
    Sqlite(PathBuf),
    /// A PostgreSQL database that several hosts can share.
    Postgres(PostgresDb),
}

/// A PostgreSQL state database: the URL as written (it holds no password:
/// a URL with one is refused) and the password from `daemon.state_password`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresDb {
    /// `postgres://USER@HOST:PORT/DB?sslmode=...`: safe to log.
    pub url: String,
    pub password: Option<Secret>,
}

impl StateDb {
    /// The SQLite file, if the state is one: the lock file and the
    /// database size only apply to it.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            StateDb::Sqlite(p) => Some(p),
            StateDb::Postgres(_) => None,
        }
    }
}

/// For logs and errors: the path, or the URL (which never holds a password).
impl std::fmt::Display for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateDb::Sqlite(p) => write!(f, "{}", p.display()),
            StateDb::Postgres(pg) => f.write_str(&pg.url),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Local,
    Sftp,
    Ftp,
    /// Explicit FTPS: AUTH TLS on the plain FTP port.
    Ftps,
    /// Implicit FTPS: TLS from the first byte, usually port 990.
    FtpsImplicit,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Local => "local",
            Protocol::Sftp => "sftp",
            Protocol::Ftp => "ftp",
            Protocol::Ftps => "ftps",
            Protocol::FtpsImplicit => "ftps-implicit",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Protocol::Local,
            Protocol::Sftp,
            Protocol::Ftp,
            Protocol::Ftps,
            Protocol::FtpsImplicit,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Local => 0,
            Protocol::Sftp => 22,
            Protocol::Ftp | Protocol::Ftps => 21,
            Protocol::FtpsImplicit => 990,
        }
    }

    pub fn is_ftp(self) -> bool {
        matches!(
            self,
            Protocol::Ftp | Protocol::Ftps | Protocol::FtpsImplicit
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub max_sessions: usize,
    /// Connecting, including the proxy, TLS and SSH handshakes and login.
    pub connect_timeout: Duration,
    /// Any single request or data read/write that makes no progress.
    pub io_timeout: Duration,
    /// How long a session stays open unused between polls, for the next
    /// poll of any rule on this server to take; zero closes them when each
    /// poll ends.
    pub idle_timeout: Duration,
    pub proxy: Option<Proxy>,
    pub sftp: SftpOptions,
    pub ftp: FtpOptions,
    /// How large files are split into ranges fetched at once.
    pub segmenting: Segmenting,
    /// `bandwidth` / `bandwidth_schedule`: one limit shared by every
    /// transfer on this server, both directions.
    pub bandwidth: Bandwidth,
}

/// Segmented downloads: a file of at least `threshold` bytes is fetched in
/// up to `segments` ranges at once, each over its own session of the
/// server's pool (`engine/segments.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segmenting {
    /// 1: never split.
    pub segments: usize,
    pub threshold: u64,
    /// A file is split only when one stream moves slower than this
    /// (bytes/s) in its first half second; `None`: split without looking.
    pub below: Option<u64>,
}

impl Default for Segmenting {
    fn default() -> Self {
        Self {
            segments: 4,
            threshold: 256 * 1024 * 1024,
            below: Some(32_000_000),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// HTTP CONNECT.
    Http,
    Socks4,
    Socks5,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    /// At most 255 bytes with SOCKS5 (RFC 1929).
    pub user: Option<String>,
    /// From `proxy_password`, a secret; at most 255 bytes with SOCKS5.
    pub password: Option<Secret>,
}

/// How an SSH server's host key is trusted. There is no silent default:
/// the configuration must name one.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum HostKeyPolicy {
    /// An OpenSSH known_hosts file (hashed and `[host]:port` entries too),
    /// read and parsed at load.
    KnownHosts(KnownHosts),
    /// `SHA256:...` fingerprints, as `ssh-keygen -lf` prints them.
    Pinned(Vec<String>),
    /// Any key; warned about at every connect.
    #[default]
    AcceptAny,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SftpOptions {
    /// `private_key` or `private_key_content`, decoded with `passphrase` at
    /// load; `None` when neither is set, or when secrets are skipped.
    pub private_key: Option<SecretKey>,
    pub host_keys: HostKeyPolicy,
    /// List symlinks as what they point to (size, mtime, kind of the target).
    pub follow_symlinks: bool,
    /// `exec_checksum`: the server runs `sha256sum` over an SSH exec
    /// channel when a rule verifies with the server (many chrooted servers
    /// refuse exec, so it is asked for, not tried).
    pub exec_checksum: bool,
    /// `fsync = false`: uploads are not fsynced on the server before their
    /// rename (nor along the way). Named for what it skips, so that the
    /// default is the durable one.
    pub skip_fsync: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FtpMode {
    #[default]
    Passive,
    Active,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct FtpOptions {
    pub mode: FtpMode,
    /// Local ports for active-mode data connections, inclusive.
    pub active_ports: Option<(u16, u16)>,
    /// CA certificates to trust instead of the system roots, read from
    /// `ca_file` (PEM) at load.
    pub ca_file: Option<CaCertificates>,
    /// Pinned SHA-256 of the server certificate (written as hex, `:`
    /// separators allowed).
    pub certificate_sha256: Option<[u8; 32]>,
    /// Accept any certificate; warned about at every connect.
    pub insecure_skip_verify: bool,
    /// Offset from UTC, in seconds, of the times in LIST output.
    pub server_utc_offset: i32,
}

/// The certificates of a `ca_file`, at least one.
#[derive(Clone, PartialEq)]
pub struct CaCertificates {
    pub path: PathBuf,
    pub certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl std::fmt::Debug for CaCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaCertificates")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostAction {
    Keep,
    Delete,
    /// A remote directory, absolute on the server.
    MoveTo(String),
}

/// What a delivery does when its name is taken in `local_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IfExists {
    /// Keep the existing file; the new one gets a UTC timestamp suffix.
    #[default]
    Unique,
    /// Replace it (mirrors).
    Overwrite,
    /// Keep the new file pending, without spending attempts, until the name is free.
    Wait,
}

impl IfExists {
    pub const ALL: [IfExists; 3] = [IfExists::Unique, IfExists::Overwrite, IfExists::Wait];

    pub fn as_str(self) -> &'static str {
        match self {
            IfExists::Unique => "unique",
            IfExists::Overwrite => "overwrite",
            IfExists::Wait => "wait",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    pub first: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Handler {
    /// Program and arguments, with `{placeholders}`; never run through a shell.
    pub argv: Vec<String>,
    pub timeout: Duration,
    /// Variables passed through from ferry's environment (names checked to
    /// be variable names); everything else is cleared but PATH, LANG and
    /// the FERRY_* properties, so ferry's own secrets stay with ferry.
    pub env: Vec<String>,
}

/// Include/exclude patterns, compiled. Patterns without a `/` match the file
/// name, patterns with one match the path relative to `remote_dir`.
#[derive(Debug, Clone)]
pub struct Filter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub include_names: GlobSet,
    pub include_paths: GlobSet,
    pub exclude_names: GlobSet,
    pub exclude_paths: GlobSet,
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.include == other.include && self.exclude == other.exclude
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub server: Arc<Server>,
    /// Absolute directory on the server, without a trailing `/`.
    pub remote_dir: String,
    pub filter: Filter,
    pub recursive: bool,
    pub interval: Duration,
    pub stable_for: Duration,
    pub min_age: Duration,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    /// Marker name pattern containing `{name}`, e.g. `{name}.done`.
    pub ready_marker: Option<String>,
    /// A partner's sidecar checksum file name pattern containing `{name}`,
    /// e.g. `{name}.sha256`: a ready marker too, whose digest is checked
    /// before the rename.
    pub checksum_file: Option<String>,
    /// `verify = "server"`: the server's digest of the file is compared
    /// with the bytes received before the rename.
    pub verify_server: bool,
    pub local_dir: Option<PathBuf>,
    pub if_exists: IfExists,
    pub handler: Option<Handler>,
    pub after: PostAction,
    pub failed_move_to: Option<String>,
    pub retry: RetryPolicy,
    /// Set for `[[send]]` rules. Such a rule is read like a watch rule over
    /// its outbox: `server` is this machine, `remote_dir` the outbox,
    /// `interval` its `rescan`, `after` and `failed_move_to` local
    /// directories; where files go is here.
    pub send: Option<SendTo>,
    /// The rule's own `bandwidth` / `bandwidth_schedule`, shared by its
    /// transfers, on top of its server's.
    pub bandwidth: Bandwidth,
}

/// Where a `[[send]]` rule uploads, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct SendTo {
    pub server: Arc<Server>,
    /// Absolute directory on the server, without a trailing `/`.
    pub remote_dir: String,
    pub temp: UploadTemp,
    pub if_exists: SendIfExists,
    /// Create missing remote directories (`remote_dir`, subdirectories of a
    /// recursive outbox, `staging_dir`).
    pub create_dirs: bool,
    /// Give the remote file the local file's mtime.
    pub preserve_mtime: bool,
    /// Check the uploaded size on the server before the rename.
    pub verify_size: bool,
    /// `verify = "server"`: the server's digest of the temporary file is
    /// compared with the bytes sent before the rename.
    pub verify_server: bool,
    /// `write_checksum_file`: a `NAME.sha256` (sha256sum format) is
    /// written beside the file after its rename.
    pub write_checksum_file: bool,
    /// `digest`: the SHA-256 of the bytes sent is computed as they are
    /// read and recorded in the state database. `false` saves its CPU.
    pub digest: bool,
}

/// Where an upload is written until its rename. The temporary name always
/// carries the row id and version, so a resume continues only the same
/// version of the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadTemp {
    /// Beside the final name, as `.NAME.ID-MTIME-SIZE.ferry-part` (hidden,
    /// and skipped by any ferry listening there).
    Hidden,
    /// Beside the final name, as `NAME.ID-MTIME-SIZE` + this extension, for
    /// partners whose pickers skip e.g. `*.part`.
    Extension(String),
    /// In this directory of the server, then renamed into `remote_dir`.
    Staging(String),
}

/// What an upload does when its name is taken on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendIfExists {
    /// Keep the server's file; the new one gets a UTC timestamp suffix.
    #[default]
    Unique,
    /// Replace it: atomically where the server can (`posix-rename`).
    Overwrite,
    /// Add the file's bytes to the end of the server's file.
    Append,
    /// Fail the file, leaving it in the outbox.
    Error,
    /// Send nothing; the row is recorded as `skipped`.
    Skip,
}

impl SendIfExists {
    pub const ALL: [SendIfExists; 5] = [
        SendIfExists::Unique,
        SendIfExists::Overwrite,
        SendIfExists::Append,
        SendIfExists::Error,
        SendIfExists::Skip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SendIfExists::Unique => "unique",
            SendIfExists::Overwrite => "overwrite",
            SendIfExists::Append => "append",
            SendIfExists::Error => "error",
            SendIfExists::Skip => "skip",
        }
    }
}
