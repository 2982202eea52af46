//! Turns the raw file into the runtime model, collecting every error with
//! its position instead of stopping at the first.

use super::error::{Collector, ConfigError, ConfigErrors};
use super::model::*;
use super::raw::*;
use super::secret::Secret;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

mod server;
use server::local_server;

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
];

const LOCAL_SERVER: &str = "local";

/// Reads, parses and validates the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read the configuration: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Parses and validates configuration text; `path` names it in errors and
/// anchors `{config_dir}`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let raw = super::syntax::deserialize(path, text).map_err(ConfigErrors)?;
    let config_dir = absolute_dir_of(path);
    let mut r = Resolver {
        c: Collector::new(path, text),
        config_dir,
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
        for send in &raw.send {
            self.c.at(
                send.span(),
                "[[send]]: sending is not supported yet in this version; remove the block",
            );
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
        Config {
            path: path.to_path_buf(),
            daemon,
            servers,
            rules,
        }
    }

    fn daemon(&mut self, raw: Option<Spanned<RawDaemon>>) -> Daemon {
        let raw = raw.map(Spanned::into_inner).unwrap_or_default();
        let state = match &raw.state {
            Some(s) => self.local_path("daemon.state", s),
            None => Some(PathBuf::from("/var/lib/ferry/state.db")),
        }
        .unwrap_or_default();
        let spool_dir = match &raw.spool_dir {
            Some(s) => self.local_path("daemon.spool_dir", s).unwrap_or_default(),
            None => state.parent().unwrap_or(Path::new("/")).join("spool"),
        };
        if let Some(dir) = state.parent() {
            // The default has no position of its own: report it at the top.
            let span = raw.state.as_ref().map_or(0..0, Spanned::span);
            self.writable_dir("daemon.state", Some(span), dir);
        }
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
        if let Some(m) = &raw.metrics {
            self.c.at(
                m.span(),
                "daemon.metrics: the metrics endpoint is not supported yet in this version",
            );
        }
        Daemon {
            state,
            spool_dir,
            max_transfers,
            grace_period,
        }
    }

    fn rule(&mut self, servers: &BTreeMap<String, Arc<Server>>, raw: RawWatch) -> Option<Rule> {
        let name = raw.name.get_ref().clone();
        self.check_name(raw.name.span(), "watch.name", &name);
        let field = |f: &str| format!("watch \"{name}\": {f}");
        let server = match &raw.server {
            Some(s) => match servers.get(s.get_ref()) {
                Some(server) => Some(server.clone()),
                None if s.get_ref() == LOCAL_SERVER => Some(Arc::new(local_server())),
                None => {
                    let known: Vec<_> = servers.keys().map(String::as_str).collect();
                    let msg = format!(
                        "{}: unknown server \"{}\" (defined: {}; \"local\" is this machine)",
                        field("server"),
                        s.get_ref(),
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    );
                    self.c.at(s.span(), msg);
                    None
                }
            },
            None => Some(Arc::new(local_server())),
        };
        let remote_dir = self.remote_dir(&field("remote_dir"), &raw.remote_dir, server.as_deref());
        let filter = self.filter(&field(""), &raw.include, &raw.exclude);
        let interval = self.duration(
            &field("interval"),
            raw.interval.as_ref(),
            Duration::from_secs(30),
        );
        let stable_for = self.duration(
            &field("stable_for"),
            raw.stable_for.as_ref(),
            Duration::from_secs(10),
        );
        let min_age = self.duration(&field("min_age"), raw.min_age.as_ref(), Duration::ZERO);
        let min_size = raw
            .min_size
            .as_ref()
            .and_then(|v| self.non_negative(&field("min_size"), v));
        let max_size = raw
            .max_size
            .as_ref()
            .and_then(|v| self.non_negative(&field("max_size"), v));
        if let (Some(lo), Some(hi), Some(span)) = (min_size, max_size, raw.max_size.as_ref())
            && lo > hi
        {
            let msg = format!("{}: {hi} is smaller than min_size {lo}", field("max_size"));
            self.c.at(span.span(), msg);
        }
        if let Some(i) = &raw.interval
            && interval == Some(Duration::ZERO)
        {
            let msg = format!("{}: must be longer than 0s", field("interval"));
            self.c.at(i.span(), msg);
        }
        let ready_marker = raw.ready_marker.as_ref().and_then(|m| {
            if m.get_ref().contains("{name}") && !m.get_ref().contains('/') {
                Some(m.get_ref().clone())
            } else {
                let msg = format!(
                    "{}: \"{}\" must contain {{name}} and no '/', e.g. \"{{name}}.done\"",
                    field("ready_marker"),
                    m.get_ref()
                );
                self.c.at(m.span(), msg);
                None
            }
        });
        let local_dir = raw.local_dir.as_ref().and_then(|d| {
            let path = self.local_path(&field("local_dir"), d)?;
            self.writable_dir(&field("local_dir"), Some(d.span()), &path);
            Some(path)
        });
        let handler = self.handler(&field("handler"), &raw);
        if raw.local_dir.is_none() && raw.handler.is_none() {
            let msg = format!("{}needs local_dir, handler, or both", field(""));
            self.c.at(raw.name.span(), msg);
        }
        let after = self.post_action(&field(""), &raw, server.as_deref(), remote_dir.as_deref());
        let failed_move_to = raw
            .failed_move_to
            .as_ref()
            .and_then(|d| self.remote_dir(&field("failed_move_to"), d, server.as_deref()));
        let retry = self.retry(&field("retry"), raw.retry.as_ref());
        Some(Rule {
            name: name.clone(),
            server: server?,
            remote_dir: remote_dir?,
            filter: filter?,
            recursive: raw.recursive.unwrap_or(false),
            interval: interval?,
            stable_for: stable_for?,
            min_age: min_age?,
            min_size,
            max_size,
            ready_marker,
            local_dir,
            handler: handler?,
            after: after?,
            failed_move_to,
            retry: retry?,
        })
    }

    fn post_action(
        &mut self,
        field: &str,
        raw: &RawWatch,
        server: Option<&Server>,
        remote_dir: Option<&str>,
    ) -> Option<PostAction> {
        let delete = raw.delete.as_ref().is_some_and(|d| *d.get_ref());
        match (&raw.move_to, delete) {
            (Some(m), true) => {
                let msg = format!("{field}move_to: cannot be used together with delete = true");
                self.c.at(m.span(), msg);
                None
            }
            (Some(m), false) => {
                let dir = self.remote_dir(&format!("{field}move_to"), m, server)?;
                if Some(dir.as_str()) == remote_dir {
                    let msg = format!("{field}move_to: is the watched directory itself");
                    self.c.at(m.span(), msg);
                    return None;
                }
                Some(PostAction::MoveTo(dir))
            }
            (None, true) => Some(PostAction::Delete),
            (None, false) => Some(PostAction::Keep),
        }
    }

    fn handler(&mut self, field: &str, raw: &RawWatch) -> Option<Option<Handler>> {
        // Parsed before the handler itself, but not returned early, so that
        // mistakes in both are reported in one pass.
        let timeout = self.duration(
            &format!("{field}_timeout"),
            raw.handler_timeout.as_ref(),
            Duration::from_secs(600),
        );
        let Some(argv) = &raw.handler else {
            return timeout.map(|_| None);
        };
        if argv.get_ref().is_empty() {
            self.c.at(
                argv.span(),
                format!("{field}: needs at least the program to run"),
            );
            return None;
        }
        let mut ok = true;
        for arg in argv.get_ref() {
            if let Err(p) = check_placeholders(arg.get_ref()) {
                let msg = format!(
                    "{field}: unknown placeholder {{{p}}} (known: {})",
                    HANDLER_PLACEHOLDERS.join(", ")
                );
                self.c.at(arg.span(), msg);
                ok = false;
            }
        }
        let timeout = timeout?;
        ok.then(|| {
            Some(Handler {
                argv: argv.get_ref().iter().map(|a| a.get_ref().clone()).collect(),
                timeout,
            })
        })
    }

    fn retry(&mut self, field: &str, raw: Option<&Spanned<RawRetry>>) -> Option<RetryPolicy> {
        let default = RetryPolicy {
            attempts: 10,
            first: Duration::from_secs(5),
            max: Duration::from_secs(600),
        };
        let Some(raw) = raw else {
            return Some(default);
        };
        let raw = raw.get_ref();
        let attempts = match &raw.attempts {
            Some(a) => self
                .positive(&format!("{field}.attempts"), a)
                .and_then(|n| self.at_most(&format!("{field}.attempts"), a, n, 1_000_000)),
            None => Some(default.attempts),
        };
        let first = self.duration(&format!("{field}.first"), raw.first.as_ref(), default.first);
        let max = self.duration(&format!("{field}.max"), raw.max.as_ref(), default.max);
        Some(RetryPolicy {
            attempts: attempts?,
            first: first?,
            max: max?,
        })
    }

    fn filter(
        &mut self,
        field: &str,
        include: &[Spanned<String>],
        exclude: &[Spanned<String>],
    ) -> Option<Filter> {
        let (include_names, include_paths) = self.globs(&format!("{field}include"), include)?;
        let (exclude_names, exclude_paths) = self.globs(&format!("{field}exclude"), exclude)?;
        Some(Filter {
            include: include.iter().map(|g| g.get_ref().clone()).collect(),
            exclude: exclude.iter().map(|g| g.get_ref().clone()).collect(),
            include_names,
            include_paths,
            exclude_names,
            exclude_paths,
        })
    }

    fn globs(&mut self, field: &str, patterns: &[Spanned<String>]) -> Option<(GlobSet, GlobSet)> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let mut ok = true;
        for p in patterns {
            let pattern = p.get_ref();
            match GlobBuilder::new(pattern).literal_separator(true).build() {
                Ok(g) if pattern.contains('/') => drop(paths.add(g)),
                Ok(g) => drop(names.add(g)),
                Err(e) => {
                    let msg = format!("{field}: bad glob \"{pattern}\": {}", e.kind());
                    self.c.at(p.span(), msg);
                    ok = false;
                }
            }
        }
        let built = (names.build(), paths.build());
        match built {
            (Ok(n), Ok(p)) if ok => Some((n, p)),
            _ => None,
        }
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
        let trimmed = dir.trim_end_matches('/');
        Some(if trimmed.is_empty() {
            "/".into()
        } else {
            trimmed.into()
        })
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
