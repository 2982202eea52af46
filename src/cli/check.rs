//! `ferry check`: every configuration error with its position, or a
//! one-screen summary. Secrets are shown only as where they come from.

use crate::config::{self, PostAction};
use crate::daemon::{EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME};
use std::path::Path;

pub async fn check(path: &Path) -> i32 {
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
        d.state,
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
        if let Some(to) = &r.send {
            let after = after_text(&r.after);
            println!(
                "  {:<16} send {} -> {}:{} (if_exists {})",
                r.name,
                r.remote_dir,
                to.server.name,
                to.remote_dir,
                to.if_exists.as_str()
            );
            println!(
                "  {:<16} rescan every {}, stable_for {}, {}then {after}",
                "",
                humantime::format_duration(r.interval),
                humantime::format_duration(r.stable_for),
                if r.recursive { "recursive, " } else { "" },
            );
            continue;
        }
        let to = match (&r.local_dir, &r.handler) {
            (Some(d), Some(h)) => format!("{} then {}", d.display(), h.argv.join(" ")),
            (Some(d), None) => d.display().to_string(),
            (None, Some(h)) => h.argv.join(" "),
            (None, None) => "-".into(),
        };
        let after = after_text(&r.after);
        println!(
            "  {:<16} {}:{} -> {to} (if_exists {})",
            r.name,
            r.server.name,
            r.remote_dir,
            r.if_exists.as_str()
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
    for w in shared_local_dirs(&config.rules) {
        eprintln!("warning: {w}");
    }
    state_schema(&d.state).await
}

/// `state database: postgres, schema version 7 (latest 7)`: the database
/// answers, and how far its schema is. Nothing is created or migrated.
async fn state_schema(db: &config::StateDb) -> i32 {
    match crate::state::inspect(db).await {
        Ok(s) => {
            let applied = match s.applied {
                Some(v) => format!("schema version {v}"),
                None => "no schema yet".to_string(),
            };
            println!(
                "state database: {}, {applied} (latest {}, applied at start)",
                s.backend, s.latest
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("state database {db}: {e}");
            EXIT_RUNTIME
        }
    }
}

fn after_text(after: &PostAction) -> String {
    match after {
        PostAction::Keep => "keep".to_string(),
        PostAction::Delete => "delete".to_string(),
        PostAction::MoveTo(d) => format!("move_to {d}"),
    }
}

/// Two rules delivering into one `local_dir` can take each other's names:
/// allowed (a consumer may want one inbox), but worth a warning.
fn shared_local_dirs(rules: &[std::sync::Arc<config::Rule>]) -> Vec<String> {
    let mut by_dir: std::collections::BTreeMap<&Path, Vec<&str>> = Default::default();
    for r in rules {
        if let Some(d) = &r.local_dir {
            by_dir.entry(d.as_path()).or_default().push(&r.name);
        }
    }
    by_dir
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(dir, names)| {
            format!(
                "rules {} all deliver into {}; files of the same name are kept apart only by if_exists",
                names.join(", "),
                dir.display()
            )
        })
        .collect()
}
