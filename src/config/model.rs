//! The validated runtime model. Everything here has been checked once:
//! paths are absolute, globs compiled, durations parsed, secrets loaded.
//! No code after `config::load` looks at the raw file again.

use super::secret::Secret;
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
    /// SQLite state database file.
    pub state: PathBuf,
    /// Where files for handler-only rules are downloaded before the handler runs.
    pub spool_dir: PathBuf,
    /// Transfers in flight across all rules.
    pub max_transfers: usize,
    /// How long a stop waits for transfers in flight before abandoning them
    /// (they resume at the next start).
    pub grace_period: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Local,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Local => "local",
        }
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostAction {
    Keep,
    Delete,
    /// A remote directory, absolute on the server.
    MoveTo(String),
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
    pub local_dir: Option<PathBuf>,
    pub handler: Option<Handler>,
    pub after: PostAction,
    pub failed_move_to: Option<String>,
    pub retry: RetryPolicy,
}
