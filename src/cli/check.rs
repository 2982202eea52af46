//! `ferry check`: every configuration error with its position, or a
//! one-screen summary. Secrets are shown only as where they come from.

use crate::config::{self, PostAction};
use crate::daemon::{EXIT_CONFIG, EXIT_OK};
use std::path::Path;

pub fn check(path: &Path) -> i32 {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            return EXIT_CONFIG;
        }
    };
    let d = &config.daemon;
    println!("{}: OK", path.display());
    println!(
        "state {}  spool {}  max_transfers {}  grace_period {}",
        d.state.display(),
        d.spool_dir.display(),
        d.max_transfers,
        humantime::format_duration(d.grace_period)
    );
    println!("servers:");
    for s in config.servers.values() {
        let password = if s.password.is_some() {
            "  password: set"
        } else {
            ""
        };
        println!(
            "  {:<16} {} {}:{} max_sessions {}{password}",
            s.name,
            s.protocol.as_str(),
            s.host,
            s.port,
            s.max_sessions
        );
    }
    println!("rules:");
    for r in &config.rules {
        let to = match (&r.local_dir, &r.handler) {
            (Some(d), Some(h)) => format!("{} then {}", d.display(), h.argv.join(" ")),
            (Some(d), None) => d.display().to_string(),
            (None, Some(h)) => h.argv.join(" "),
            (None, None) => "-".into(),
        };
        let after = match &r.after {
            PostAction::Keep => "keep".to_string(),
            PostAction::Delete => "delete".to_string(),
            PostAction::MoveTo(d) => format!("move_to {d}"),
        };
        println!(
            "  {:<16} {}:{} -> {to}",
            r.name, r.server.name, r.remote_dir
        );
        println!(
            "  {:<16} every {}, stable_for {}, {}{}, then {after}",
            "",
            humantime::format_duration(r.interval),
            humantime::format_duration(r.stable_for),
            if r.recursive { "recursive, " } else { "" },
            if r.filter.include.is_empty() {
                "all files".to_string()
            } else {
                r.filter.include.join(" ")
            },
        );
    }
    EXIT_OK
}
