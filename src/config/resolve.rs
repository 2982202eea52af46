//! Turns the raw file into the runtime model, collecting every error with
//! its position instead of stopping at the first.

use super::error::{Collector, ConfigError, ConfigErrors};
use super::model::*;
use super::raw::*;
use super::secret::Secret;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

mod bandwidth;
mod node;
pub use node::hostname;
mod rule;
mod segments;
mod send;
mod server;
mod state;
mod values;

/// Placeholders a handler argument may use.
pub const HANDLER_PLACEHOLDERS: &[&str] = &[
    "local_path",
    "name",
    "remote_path",
    "remote_dir",
    "rule",
    "size",
    "timestamp",
    "attempt",
    "sha256",
];

const LOCAL_SERVER: &str = "local";

/// Whether [`load_with`] reads secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Read every secret: for commands that connect (`run`, `once`,
    /// `test-connection`) and for `check`, which vouches for them.
    Load,
    /// Check only how each secret is given, read none (and leave them
    /// unset in the model): for the commands that only read or change the
    /// state database, run from an operator's shell that does not hold
    /// the daemon's credentials.
    Skip,
}

/// Reads, parses and validates the configuration at `path`, secrets included.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with(path, Secrets::Load)
}

/// [`load`], with or without reading secrets.
pub fn load_with(path: &Path, secrets: Secrets) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read the configuration: {e}"),
        }])
    })?;
    parse_with(path, &text, secrets)
}

/// Parses and validates configuration text; `path` names it in errors and
/// anchors `{config_dir}`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    parse_with(path, text, Secrets::Load)
}

fn parse_with(path: &Path, text: &str, secrets: Secrets) -> Result<Config, ConfigErrors> {
    let raw = super::syntax::deserialize(path, text).map_err(ConfigErrors)?;
    let config_dir = absolute_dir_of(path);
    let mut r = Resolver {
        c: Collector::new(path, text),
        config_dir,
        secrets,
    };
    let config = r.config(path, raw);
    if r.c.errors.is_empty() {
        Ok(config)
    } else {
        // Reported in file order, whatever order validation found them in.
        r.c.errors.sort_by_key(|e| (e.line, e.col));
        Err(ConfigErrors(r.c.errors))
    }
}

fn absolute_dir_of(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    abs.parent().map(Path::to_path_buf).unwrap_or_default()
}

struct Resolver<'a> {
    c: Collector<'a>,
    config_dir: PathBuf,
    secrets: Secrets,
}

impl Resolver<'_> {
    fn config(&mut self, path: &Path, raw: RawConfig) -> Config {
        let daemon = self.daemon(raw.daemon);
        let mut servers = BTreeMap::new();
        for (name, server) in raw.servers {
            let span = name.span();
            let name = name.into_inner();
            self.check_name(span, "server", &name);
            if let Some(s) = self.server(&name, server) {
                servers.insert(name, Arc::new(s));
            }
        }
        let mut rules = Vec::new();
        let mut names = HashSet::new();
        for watch in raw.watch {
            let name = watch.get_ref().name.clone();
            if !names.insert(name.get_ref().clone()) {
                let msg = format!("watch: duplicate rule name \"{}\"", name.get_ref());
                self.c.at(name.span(), msg);
            }
            if let Some(rule) = self.rule(&servers, watch.into_inner()) {
                rules.push(Arc::new(rule));
            }
        }
        // One namespace for both kinds: the state database keys rows by rule name.
        for send in raw.send {
            let name = send.get_ref().name.clone();
            if !names.insert(name.get_ref().clone()) {
                let msg = format!("send: duplicate rule name \"{}\"", name.get_ref());
                self.c.at(name.span(), msg);
            }
            if let Some(rule) = self.send_rule(&servers, send.into_inner()) {
                rules.push(Arc::new(rule));
            }
        }
        Config {
            path: path.to_path_buf(),
            daemon,
            servers,
            rules,
        }
    }

    fn daemon(&mut self, raw: Option<Spanned<RawDaemon>>) -> Daemon {
        let raw = raw.map(Spanned::into_inner).unwrap_or_default();
        let state = self.state_db(&raw);
        let spool_dir = match &raw.spool_dir {
            Some(s) => self.local_path("daemon.spool_dir", s).unwrap_or_default(),
            None => state
                .sqlite_path()
                .and_then(Path::parent)
                .unwrap_or(Path::new("/var/lib/ferry"))
                .join("spool"),
        };
        let max_transfers = raw
            .max_transfers
            .map_or(Some(8), |v| self.positive("daemon.max_transfers", &v))
            .unwrap_or(1);
        let grace_period = self
            .duration(
                "daemon.grace_period",
                raw.grace_period.as_ref(),
                Duration::from_secs(30),
            )
            .unwrap_or_default();
        let retention = self.retention(raw.retention.as_ref());
        let (node, lease) = (self.node(raw.node.as_ref()), self.lease(raw.lease.as_ref()));
        let metrics = raw
            .metrics
            .as_ref()
            .and_then(|m| match m.get_ref().parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    let msg = format!(
                        "daemon.metrics: \"{}\" is not a socket address such as \"127.0.0.1:9477\"",
                        m.get_ref()
                    );
                    self.c.at(m.span(), msg);
                    None
                }
            });
        Daemon {
            state,
            spool_dir,
            max_transfers,
            grace_period,
            metrics,
            retention,
            node,
            lease,
        }
    }

    /// `daemon.retention`: a duration of at least a day, or `"off"`.
    /// Default 90 days: long enough to answer "what happened to last
    /// month's file", short enough that the database stops growing.
    fn retention(&mut self, raw: Option<&Spanned<String>>) -> Option<Duration> {
        const DAY: Duration = Duration::from_secs(86_400);
        if raw.is_some_and(|r| r.get_ref() == "off") {
            return None;
        }
        let d = self.duration("daemon.retention", raw, 90 * DAY)?;
        if d < DAY {
            let raw = raw.expect("the default is 90 days");
            let msg = format!(
                "daemon.retention: \"{}\" is shorter than a day; write e.g. \"30d\", or \"off\" to keep every row",
                raw.get_ref()
            );
            self.c.at(raw.span(), msg);
        }
        Some(d)
    }

    fn remote_dir(
        &mut self,
        field: &str,
        raw: &Spanned<String>,
        server: Option<&Server>,
    ) -> Option<String> {
        let mut dir = self.expand(raw.get_ref());
        if !dir.starts_with('/') {
            let msg = format!("{field}: \"{}\" must be an absolute path", raw.get_ref());
            self.c.at(raw.span(), msg);
            return None;
        }
        // On this machine `..` can be resolved here; on a server it is refused.
        if server.is_some_and(|s| s.protocol == Protocol::Local) {
            dir = normalize(Path::new(&dir)).to_string_lossy().into_owned();
        }
        if dir.contains('\0') || dir.split('/').any(|c| c == "..") {
            let msg = format!(
                "{field}: \"{}\" must not contain \"..\" or NUL",
                raw.get_ref()
            );
            self.c.at(raw.span(), msg);
            return None;
        }
        // One directory, one string: the walk recognises move_to and
        // failed_move_to by comparing them with the paths it joins.
        Some(crate::remote::normalize(&dir))
    }

    /// A path on this machine: `{config_dir}` expanded, absolute, normalized.
    fn local_path(&mut self, field: &str, raw: &Spanned<String>) -> Option<PathBuf> {
        let expanded = self.expand(raw.get_ref());
        let path = Path::new(&expanded);
        if !path.is_absolute() {
            let msg = format!(
                "{field}: \"{}\" is relative; use an absolute path or start it with {{config_dir}}",
                raw.get_ref()
            );
            self.c.at(raw.span(), msg);
            return None;
        }
        Some(normalize(path))
    }

    /// Checks that `dir` is, or can be created as, a directory ferry may write to.
    fn writable_dir(&mut self, field: &str, span: Option<std::ops::Range<usize>>, dir: &Path) {
        let problem = match nearest_existing(dir) {
            Some(existing) if !existing.is_dir() => {
                Some(format!("{} is not a directory", existing.display()))
            }
            Some(existing) if !is_writable(&existing) => {
                Some(format!("{} is not writable", existing.display()))
            }
            Some(_) => None,
            None => Some("no existing parent directory".into()),
        };
        if let (Some(problem), Some(span)) = (problem, span) {
            let msg = format!("{field}: \"{}\" cannot be used: {problem}", dir.display());
            self.c.at(span, msg);
        }
    }

    fn secret(&mut self, field: &str, raw: &Spanned<RawSecretValue>) -> Option<Secret> {
        let source = match raw.get_ref() {
            RawSecretValue::Inline => {
                let msg = format!(
                    "{field}: secrets are not written into the configuration; use {{ env = \"NAME\" }}, {{ file = \"/path\" }} or {{ credential = \"NAME\" }}"
                );
                self.c.at(raw.span(), msg);
                return None;
            }
            RawSecretValue::Source(s) => s,
        };
        let given = [&source.env, &source.file, &source.credential];
        if given.iter().filter(|g| g.is_some()).count() != 1 {
            let msg = format!("{field}: give exactly one of env, file or credential");
            self.c.at(raw.span(), msg);
            return None;
        }
        if self.secrets == Secrets::Skip {
            return None;
        }
        let loaded = if let Some(var) = &source.env {
            std::env::var(var.get_ref()).map_err(|_| {
                (
                    var.span(),
                    format!("environment variable {} is not set", var.get_ref()),
                )
            })
        } else if let Some(file) = &source.file {
            let path = self.expand(file.get_ref());
            read_secret_file(Path::new(&path)).map_err(|e| (file.span(), e))
        } else {
            let cred = source.credential.as_ref().expect("one source is set");
            match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) => read_secret_file(&Path::new(&dir).join(cred.get_ref()))
                    .map_err(|e| (cred.span(), e)),
                None => Err((
                    cred.span(),
                    "CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the systemd unit)"
                        .into(),
                )),
            }
        };
        match loaded {
            Ok(value) => Some(Secret::new(value)),
            Err((span, why)) => {
                self.c.at(span, format!("{field}: {why}"));
                None
            }
        }
    }

    /// Parses an optional duration; `None` means it was given but invalid
    /// (the error is recorded), so callers can still report other fields.
    fn duration(
        &mut self,
        field: &str,
        raw: Option<&Spanned<String>>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(raw) = raw else {
            return Some(default);
        };
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                let msg = format!(
                    "{field}: bad duration \"{}\": {e} (write e.g. \"500ms\", \"30s\", \"5m\", \"1h\")",
                    raw.get_ref()
                );
                self.c.at(raw.span(), msg);
                None
            }
        }
    }

    fn positive(&mut self, field: &str, v: &Spanned<i64>) -> Option<usize> {
        if *v.get_ref() >= 1 {
            Some(*v.get_ref() as usize)
        } else {
            self.c.at(
                v.span(),
                format!("{field}: must be at least 1, got {}", v.get_ref()),
            );
            None
        }
    }

    fn at_most(&mut self, field: &str, v: &Spanned<i64>, n: usize, max: u32) -> Option<u32> {
        if n <= max as usize {
            Some(n as u32)
        } else {
            self.c
                .at(v.span(), format!("{field}: must be at most {max}, got {n}"));
            None
        }
    }

    fn non_negative(&mut self, field: &str, v: &Spanned<i64>) -> Option<u64> {
        if *v.get_ref() >= 0 {
            Some(*v.get_ref() as u64)
        } else {
            self.c.at(
                v.span(),
                format!("{field}: must not be negative, got {}", v.get_ref()),
            );
            None
        }
    }

    fn check_name(&mut self, span: std::ops::Range<usize>, field: &str, name: &str) {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            let msg = format!("{field}: \"{name}\" may use only letters, digits, '-', '_' and '.'");
            self.c.at(span, msg);
        }
    }

    fn expand(&self, value: &str) -> String {
        value.replace("{config_dir}", &self.config_dir.to_string_lossy())
    }
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Finds `{name}` style placeholders and returns the first unknown one.
pub fn check_placeholders(arg: &str) -> Result<(), String> {
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        let key = &after[..end];
        if !HANDLER_PLACEHOLDERS.contains(&key) {
            return Err(key.to_string());
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Removes `.` and resolves `..` lexically, so that equal directories compare equal.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn nearest_existing(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|p| p.exists()).map(Path::to_path_buf)
}

fn is_writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_checked() {
        assert!(check_placeholders("{local_path}").is_ok());
        assert!(check_placeholders("--name={name}.{size}").is_ok());
        assert_eq!(check_placeholders("{localpath}"), Err("localpath".into()));
        assert!(check_placeholders("no braces").is_ok());
    }

    #[test]
    fn normalize_resolves_dots() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
