//! `daemon.node` and `daemon.lease`: who this host is among the hosts
//! sharing one state database, and how long its claims outlive it.

use super::Resolver;
use std::time::Duration;
use toml::Spanned;

/// Longest node name: it is shown in `ferry status` and stored in every
/// claimed row.
const NODE_MAX: usize = 64;
/// Renewals run every third of the lease; below a second the database
/// round trips of a busy node could miss one.
const LEASE_MIN: Duration = Duration::from_secs(1);

impl Resolver<'_> {
    /// `daemon.node`: default the hostname, so hosts sharing a database
    /// need no configuration to be told apart.
    pub(super) fn node(&mut self, raw: Option<&Spanned<String>>) -> String {
        let Some(raw) = raw else {
            return hostname();
        };
        let name = raw.get_ref();
        let bad = name.is_empty()
            || name.len() > NODE_MAX
            || name.chars().any(|c| c.is_control() || c.is_whitespace());
        if bad {
            let msg = format!(
                "daemon.node: \"{}\" must be 1 to {NODE_MAX} characters without spaces or control characters",
                crate::text::escape(name)
            );
            self.c.at(raw.span(), msg);
        }
        name.clone()
    }

    /// `daemon.lease`: default 60 s; short leases (a few seconds) take
    /// over a dead node's files sooner at the cost of more renewals.
    pub(super) fn lease(&mut self, raw: Option<&Spanned<String>>) -> Duration {
        let d = self
            .duration("daemon.lease", raw, Duration::from_secs(60))
            .unwrap_or(Duration::from_secs(60));
        if let Some(raw) = raw.filter(|_| d < LEASE_MIN) {
            let msg = format!(
                "daemon.lease: \"{}\" is shorter than a second; write e.g. \"60s\"",
                raw.get_ref()
            );
            self.c.at(raw.span(), msg);
        }
        d
    }
}

/// The host's name (gethostname(2)); "localhost" where it has none.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which is passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(s) if rc == 0 && !s.is_empty() => s.to_string(),
        _ => "localhost".to_string(),
    }
}
