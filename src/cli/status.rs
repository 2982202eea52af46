//! `ferry status`: per rule, its last poll and its files by state.

use super::{open_state, time};
use crate::daemon::{EXIT_OK, EXIT_RUNTIME};
use crate::state::{FileState, RuleHealth};
use crate::text::Escaped;
use std::path::Path;

pub async fn status(config: &Path, json: bool) -> i32 {
    let (config, state) = match open_state(config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut rules = match state.rule_health().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot read the state database: {e}");
            return EXIT_RUNTIME;
        }
    };
    // Configured rules that have not polled yet are shown too.
    for rule in &config.rules {
        if !rules.iter().any(|r| r.name == rule.name) {
            rules.push(RuleHealth::never_polled(&rule.name));
        }
    }
    if json {
        let out: Vec<_> = rules
            .iter()
            .map(|r| {
                let counts: serde_json::Map<_, _> = r.counts.iter().map(|(s, n)| (s.clone(), (*n).into())).collect();
                let held: serde_json::Map<_, _> = r.held.iter().map(|(s, n)| (s.clone(), (*n).into())).collect();
                serde_json::json!({
                    "rule": r.name, "last_poll": time(r.last_poll_ms), "last_duration_ms": r.last_duration_ms,
                    "last_listed": r.last_listed, "last_success": time(r.last_success_ms),
                    "consecutive_errors": r.consecutive_errors, "last_error": r.last_error, "files": counts,
                    "held": held, "skipped_dirs": r.skipped_dirs, "skipped_error": r.skipped_error,
                    "recent_file_errors": r.recent_errors,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return EXIT_OK;
    }
    print!(
        "{:<20} {:<21} {:>8} {:>7}",
        "RULE", "LAST POLL", "TOOK", "LISTED"
    );
    for s in FileState::ALL {
        print!(" {:>11}", s.as_str());
    }
    println!("  LAST ERROR");
    for r in &rules {
        print!(
            "{:<20} {:<21} {:>8} {:>7}",
            r.name,
            time(r.last_poll_ms),
            r.last_duration_ms.map_or("-".into(), |d| format!("{d}ms")),
            r.last_listed.map_or("-".into(), |n| n.to_string())
        );
        for s in FileState::ALL {
            let n = r
                .counts
                .iter()
                .find(|(st, _)| st == s.as_str())
                .map_or(0, |(_, n)| *n);
            print!(" {n:>11}");
        }
        // Errors may quote remote names or handler output: shown escaped.
        println!("  {}", Escaped(r.last_error.as_deref().unwrap_or("-")));
        for (why, n) in &r.held {
            println!("{:<20} {n} file(s) held ({})", "", held_text(why));
        }
        if r.skipped_dirs > 0 {
            let why = Escaped(r.skipped_error.as_deref().unwrap_or("-"));
            println!("{:<20} {} dir(s) skipped: {why}", "", r.skipped_dirs);
        }
        for e in &r.recent_errors {
            println!(
                "{:<20} file error at {}: {} (id {}, {}): {}",
                "",
                time(Some(e.updated_at_ms)),
                Escaped(&e.path),
                e.id,
                e.state,
                Escaped(&e.error)
            );
        }
    }
    super::nodes::print(&state).await;
    if let Some(path) = config.daemon.state.sqlite_path() {
        println!("{}", database_size(path));
    }
    EXIT_OK
}

/// `state database /var/lib/ferry/state.db: 12.3 MiB (WAL 1.0 MiB)`: what
/// the database holds on disk, where retention (`daemon.retention`) shows.
fn database_size(db: &Path) -> String {
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "state database {}: {:.1} MiB (WAL {:.1} MiB)",
        db.display(),
        mib(len(db) + len(Path::new(&wal))),
        mib(len(Path::new(&wal)))
    )
}

/// What a hold means, for people.
fn held_text(why: &str) -> &str {
    match why {
        "name-taken" => "waiting for a free name in local_dir: if_exists = \"wait\"",
        "local-storage" => {
            "local storage trouble (full, quota, read-only or I/O error); retried, no attempts spent"
        }
        other => other,
    }
}
