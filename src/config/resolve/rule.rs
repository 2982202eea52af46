//! Resolving `[[watch]]` rules: where to look, what to take, when it is
//! ready, where it goes, what happens to it after, and how to retry.

use super::{
    HANDLER_PLACEHOLDERS, LOCAL_SERVER, Resolver, check_placeholders, server::local_server,
};
use crate::config::model::*;
use crate::config::raw::*;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

impl Resolver<'_> {
    pub(super) fn rule(
        &mut self,
        servers: &BTreeMap<String, Arc<Server>>,
        raw: RawWatch,
    ) -> Option<Rule> {
        let name = raw.name.get_ref().clone();
        self.check_name(raw.name.span(), "watch.name", &name);
        let field = |f: &str| format!("watch \"{name}\": {f}");
        let server = match &raw.server {
            Some(s) => self.named_server(servers, &field("server"), s),
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
        let (min_size, max_size) =
            self.sizes(&field(""), raw.min_size.as_ref(), raw.max_size.as_ref());
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
        let checksum_file = self.checksum_file(&field("checksum_file"), &raw);
        let verify_server = self.verify_server(
            &field("verify"),
            raw.verify.as_ref(),
            &["size", "server"],
            server.as_deref(),
        );
        let local_dir = raw.local_dir.as_ref().and_then(|d| {
            let path = self.local_path(&field("local_dir"), d)?;
            self.writable_dir(&field("local_dir"), Some(d.span()), &path);
            Some(path)
        });
        let if_exists = self.if_exists(&field("if_exists"), raw.if_exists.as_ref());
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
        let bandwidth = self.bandwidth(
            &field(""),
            raw.bandwidth.as_ref(),
            raw.bandwidth_schedule.as_ref(),
        );
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
            checksum_file,
            verify_server: verify_server? == Some(true),
            local_dir,
            if_exists: if_exists?,
            handler: handler?,
            after: after?,
            failed_move_to,
            retry: retry?,
            send: None,
            bandwidth: bandwidth?,
        })
    }

    /// `checksum_file`: a name pattern like `ready_marker`'s, and not the same one.
    fn checksum_file(&mut self, field: &str, raw: &RawWatch) -> Option<String> {
        let c = raw.checksum_file.as_ref()?;
        let pattern = c.get_ref();
        if !pattern.contains("{name}") || pattern.contains('/') {
            let msg = format!(
                "{field}: \"{pattern}\" must contain {{name}} and no '/', e.g. \"{{name}}.sha256\""
            );
            self.c.at(c.span(), msg);
            return None;
        }
        if raw.ready_marker.as_ref().map(|m| m.get_ref()) == Some(pattern) {
            let msg = format!(
                "{field}: \"{pattern}\" is the ready_marker too; the checksum file is a ready marker already, drop ready_marker"
            );
            self.c.at(c.span(), msg);
            return None;
        }
        Some(pattern.clone())
    }

    /// `verify`: one of `allowed`; `Some(Some(true))` for `server`,
    /// `Some(Some(false))` for another value, `Some(None)` when not set.
    /// `server` needs a server that can give a digest: SFTP only with
    /// `exec_checksum` (FTP servers announce theirs in FEAT, checked at
    /// the transfer).
    pub(super) fn verify_server(
        &mut self,
        field: &str,
        raw: Option<&Spanned<String>>,
        allowed: &[&str],
        server: Option<&Server>,
    ) -> Option<Option<bool>> {
        let Some(v) = raw else {
            return Some(None);
        };
        if !allowed.contains(&v.get_ref().as_str()) {
            let msg = format!(
                "{field}: unknown check \"{}\" (expected one of: {})",
                v.get_ref(),
                allowed.join(", ")
            );
            self.c.at(v.span(), msg);
            return None;
        }
        let server_wanted = v.get_ref() == "server";
        if server_wanted
            && let Some(s) = server
            && s.protocol == Protocol::Sftp
            && !s.sftp.exec_checksum
        {
            let msg = format!(
                "{field}: \"server\" over SFTP needs exec_checksum = true in servers.{} (the server then runs sha256sum)",
                s.name
            );
            self.c.at(v.span(), msg);
            return None;
        }
        Some(Some(server_wanted))
    }

    fn if_exists(&mut self, field: &str, raw: Option<&Spanned<String>>) -> Option<IfExists> {
        self.policy(field, raw, &IfExists::ALL, IfExists::as_str)
    }

    /// One of `all` by its name; the default (the first) when not given.
    pub(super) fn policy<P: Copy + Default>(
        &mut self,
        field: &str,
        raw: Option<&Spanned<String>>,
        all: &[P],
        name: fn(P) -> &'static str,
    ) -> Option<P> {
        let Some(raw) = raw else {
            return Some(P::default());
        };
        let found = all.iter().copied().find(|p| name(*p) == raw.get_ref());
        if found.is_none() {
            let names: Vec<_> = all.iter().map(|p| name(*p)).collect();
            let msg = format!(
                "{field}: unknown policy \"{}\" (expected one of: {})",
                raw.get_ref(),
                names.join(", ")
            );
            self.c.at(raw.span(), msg);
        }
        found
    }

    /// A `server = "NAME"`: a `[servers.NAME]`, or this machine (`"local"`).
    pub(super) fn named_server(
        &mut self,
        servers: &BTreeMap<String, Arc<Server>>,
        field: &str,
        s: &Spanned<String>,
    ) -> Option<Arc<Server>> {
        match servers.get(s.get_ref()) {
            Some(server) => Some(server.clone()),
            None if s.get_ref() == LOCAL_SERVER => Some(Arc::new(local_server())),
            None => {
                let known: Vec<_> = servers.keys().map(String::as_str).collect();
                let msg = format!(
                    "{field}: unknown server \"{}\" (defined: {}; \"local\" is this machine)",
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
        }
    }

    /// `min_size` and `max_size`, each checked, and not crossed.
    pub(super) fn sizes(
        &mut self,
        field: &str,
        min: Option<&Spanned<i64>>,
        max: Option<&Spanned<i64>>,
    ) -> (Option<u64>, Option<u64>) {
        let lo = min.and_then(|v| self.non_negative(&format!("{field}min_size"), v));
        let hi = max.and_then(|v| self.non_negative(&format!("{field}max_size"), v));
        if let (Some(lo), Some(hi), Some(span)) = (lo, hi, max)
            && lo > hi
        {
            let msg = format!("{field}max_size: {hi} is smaller than min_size {lo}");
            self.c.at(span.span(), msg);
        }
        (lo, hi)
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
        let env = self.handler_env(&format!("{field}_env"), raw.handler_env.as_ref());
        let Some(argv) = &raw.handler else {
            return timeout.zip(env).map(|_| None);
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
        let (timeout, env) = (timeout?, env?);
        ok.then(|| {
            Some(Handler {
                argv: argv.get_ref().iter().map(|a| a.get_ref().clone()).collect(),
                timeout,
                env,
            })
        })
    }

    /// Names of variables to pass through. Only shell-style names are taken:
    /// one holding '=' or NUL cannot be set, and an empty one is a typo.
    fn handler_env(
        &mut self,
        field: &str,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Option<Vec<String>> {
        let mut ok = true;
        for name in raw.map_or(&[][..], |r| r.get_ref()) {
            let n = name.get_ref();
            let valid = n.chars().next().is_some_and(|c| !c.is_ascii_digit())
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                let msg = format!(
                    "{field}: {n:?} is not a variable name (letters, digits and '_', not starting with a digit)"
                );
                self.c.at(name.span(), msg);
                ok = false;
            }
        }
        let names = raw.map_or_else(Vec::new, |r| {
            r.get_ref().iter().map(|n| n.get_ref().clone()).collect()
        });
        ok.then_some(names)
    }

    pub(super) fn retry(
        &mut self,
        field: &str,
        raw: Option<&Spanned<RawRetry>>,
    ) -> Option<RetryPolicy> {
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

    pub(super) fn filter(
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
}
