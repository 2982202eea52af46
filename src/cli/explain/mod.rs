//! `ferry explain PATH_OR_ID [--rule R]`: why a file was or was not taken,
//! in plain words. Which rules watch its directory and whether their
//! filters take it (`rules.rs`), where its latest row stands and what it
//! waits for (`words.rs`), and every version's full history.

mod rules;
mod words;

use super::open_state;
use crate::config::Rule;
use crate::daemon::{EXIT_FAILURES, EXIT_OK, EXIT_RUNTIME};
use crate::state::{FileRow, HistoryEntry, State, now_ms};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// Everything `explain` found, printed as words or as JSON.
#[derive(Serialize, Default)]
struct Explanation {
    query: String,
    /// One entry per rule whose directory holds the path (or the row's rule).
    rules: Vec<RuleAnswer>,
    /// Set when no rule watches the path.
    nearest: Option<String>,
}

#[derive(Serialize)]
struct RuleAnswer {
    rule: String,
    watches: String,
    path: String,
    says: Vec<String>,
    versions: Vec<Version>,
}

#[derive(Serialize)]
struct Version {
    #[serde(flatten)]
    row: FileRow,
    history: Vec<HistoryEntry>,
}

pub async fn explain(config: &Path, what: &str, rule: Option<&str>, json: bool) -> i32 {
    let (config, state) = match open_state(config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let answer = match gather(&config.rules, &state, what, rule).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cannot read the state database: {e}");
            return EXIT_RUNTIME;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        print_text(&answer);
    }
    if answer.rules.is_empty() {
        EXIT_FAILURES
    } else {
        EXIT_OK
    }
}

async fn gather(
    rules: &[Arc<Rule>],
    state: &State,
    what: &str,
    only: Option<&str>,
) -> crate::state::Result<Explanation> {
    let mut out = Explanation {
        query: what.to_string(),
        ..Default::default()
    };
    let rules: Vec<Arc<Rule>> = rules
        .iter()
        .filter(|r| only.is_none_or(|o| r.name == o))
        .cloned()
        .collect();
    let find = |name: &str| rules.iter().find(|r| r.name == name).cloned();
    // A number is a row id.
    if let Ok(id) = what.parse::<i64>() {
        match state.row(id).await? {
            Some(row) => {
                let rule = find(&row.rule);
                out.rules
                    .push(answer(state, rule.as_deref(), &row.rule, &row.path).await?);
            }
            None => out.nearest = Some(format!("there is no row with id {id}")),
        }
        return Ok(out);
    }
    let targets: Vec<(Arc<Rule>, String)> = match (what.starts_with('/'), only) {
        (false, Some(_)) => rules
            .iter()
            .map(|r| (r.clone(), what.to_string()))
            .collect(),
        _ => rules::watching(&rules, what)
            .into_iter()
            .map(|(r, rel)| (r.clone(), rel))
            .collect(),
    };
    for (rule, rel) in &targets {
        out.rules
            .push(answer(state, Some(rule), &rule.name, rel).await?);
    }
    // A delivered (or sent) file asked about by where it landed.
    for row in state.delivered_as(what).await? {
        if targets
            .iter()
            .any(|(r, rel)| r.name == row.rule && *rel == row.path)
        {
            continue;
        }
        let rule = find(&row.rule);
        let mut a = answer(state, rule.as_deref(), &row.rule, &row.path).await?;
        a.says.insert(
            0,
            format!("{what} is where row {} delivered {}", row.id, row.path),
        );
        out.rules.push(a);
    }
    if out.rules.is_empty() {
        out.nearest = Some(rules::nearest(&rules, what));
    }
    Ok(out)
}

/// What one rule makes of one path.
async fn answer(
    state: &State,
    rule: Option<&Rule>,
    rule_name: &str,
    rel: &str,
) -> crate::state::Result<RuleAnswer> {
    let rows = state.versions(rule_name, rel).await?;
    let mut says = Vec::new();
    let watches = match rule {
        Some(r) => format!("{}:{}", r.server.name, r.remote_dir),
        None => {
            says.push(format!(
                "rule {rule_name} is no longer in the configuration"
            ));
            "-".into()
        }
    };
    let now = now_ms();
    if let Some(rule) = rule {
        let local = rules::stat_local(rule, rel);
        let size = match &local {
            Some(Ok(f)) => Some(f.size),
            _ => rows.last().and_then(|r| crate::state::size_from_db(r.size)),
        };
        match rules::takes(rule, rel, size) {
            Ok(s) | Err(s) => says.push(s),
        }
        match &local {
            Some(Ok(f)) => says.push(format!(
                "on disk now: {} bytes, mtime {}",
                f.size,
                super::time(Some(f.mtime_s * 1000))
            )),
            Some(Err(e)) => says.push(e.clone()),
            None => {}
        }
        if rows.is_empty() && rules::takes(rule, rel, size).is_ok() {
            says.push(not_seen(state, rule).await?);
        }
    }
    if let Some(latest) = rows.last() {
        says.push(format!(
            "row {} ({} version(s) recorded): {}",
            latest.id,
            rows.len(),
            latest.state
        ));
        says.extend(words::latest(latest, rule, now));
    }
    let mut versions = Vec::with_capacity(rows.len());
    for row in rows {
        let history = state.history(row.id).await?;
        versions.push(Version { row, history });
    }
    Ok(RuleAnswer {
        rule: rule_name.to_string(),
        watches,
        path: rel.to_string(),
        says,
        versions,
    })
}

/// Why a file the rule would take has no row yet.
async fn not_seen(state: &State, rule: &Rule) -> crate::state::Result<String> {
    let health = state.rule_health().await?;
    let last = health
        .iter()
        .find(|h| h.name == rule.name)
        .and_then(|h| h.last_poll_ms);
    let every = humantime::format_duration(rule.interval);
    Ok(match last {
        Some(t) => format!(
            "no listing has shown it yet (last poll {}, every {every}); once listed it is taken after stable_for = {}",
            super::time(Some(t)),
            humantime::format_duration(rule.stable_for)
        ),
        None => format!("the rule has not polled yet (every {every})"),
    })
}

fn print_text(e: &Explanation) {
    if let Some(n) = &e.nearest {
        println!("{n}");
    }
    for (i, a) in e.rules.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!(
            "rule {} ({}), file {}",
            a.rule,
            a.watches,
            crate::text::Escaped(&a.path)
        );
        for s in &a.says {
            println!("  {s}");
        }
        for v in &a.versions {
            let r = &v.row;
            println!(
                "  history of row {} (size {}, mtime {}):",
                r.id,
                r.size,
                super::time(Some(r.mtime * 1000))
            );
            for h in &v.history {
                println!("    {}", words::history_line(h));
            }
        }
    }
}
