//! Read and maintenance queries behind `ferry status`, `files`, `retry` and
//! `forget`. Filters are bound parameters, never SQL built from text
//! (each backend writes its own statements).

use super::{Direction, FileRow, FileState, Result, State};
use serde::Serialize;
use std::collections::HashMap;

/// Which rows a command is about. Every field narrows; `path` is a glob
/// (`*`, `?`, `[...]`, as SQLite GLOB) on the path relative to remote_dir.
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub rule: Option<String>,
    pub state: Option<FileState>,
    pub path: Option<String>,
    pub id: Option<i64>,
    /// States the logs name that are not a `state` column value.
    pub condition: Option<Condition>,
    pub direction: Option<Direction>,
    pub limit: Option<i64>,
}

/// `state="retrying"` and `state="held"` in the logs, as filters: a file
/// waiting for its next attempt after a failed one (not done, not failed,
/// `failures > 0`, not held), or a file held without an attempt spent
/// (`held` set: a taken name under `if_exists = "wait"`, local storage trouble).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Retrying,
    Held,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Retrying => "retrying",
            Condition::Held => "held",
        }
    }
}

/// One rule's polling health and its files counted by state.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RuleHealth {
    pub name: String,
    pub last_poll_ms: Option<i64>,
    pub last_duration_ms: Option<i64>,
    pub last_listed: Option<i64>,
    pub last_success_ms: Option<i64>,
    pub consecutive_errors: i64,
    pub last_error: Option<String>,
    /// Directories the last poll could not list, and the last one's error.
    pub skipped_dirs: i64,
    pub skipped_error: Option<String>,
    #[sqlx(skip)]
    pub counts: Vec<(String, i64)>,
    /// Files held without spending attempts, by reason (`name-taken`, `local-storage`).
    #[sqlx(skip)]
    pub held: Vec<(String, i64)>,
    /// The latest files with an error, newest first (at most [`RECENT_ERRORS`]).
    #[sqlx(skip)]
    pub recent_errors: Vec<RecentError>,
}

/// How many file errors `ferry status` shows per rule.
pub const RECENT_ERRORS: i64 = 3;

/// A file whose last attempt failed: what an operator looks at first.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RecentError {
    #[serde(skip)]
    pub rule: String,
    pub id: i64,
    pub path: String,
    pub state: String,
    pub updated_at_ms: i64,
    pub error: String,
}

impl RuleHealth {
    pub fn never_polled(name: &str) -> Self {
        Self {
            name: name.to_string(),
            last_poll_ms: None,
            last_duration_ms: None,
            last_listed: None,
            last_success_ms: None,
            consecutive_errors: 0,
            last_error: None,
            skipped_dirs: 0,
            skipped_error: None,
            counts: Vec::new(),
            held: Vec::new(),
            recent_errors: Vec::new(),
        }
    }
}

impl State {
    pub async fn files(&self, f: &FileFilter) -> Result<Vec<FileRow>> {
        on_backend!(self, db => db.files(f).await)
    }

    /// Health of every rule the database knows, with counts by state.
    pub async fn rule_health(&self) -> Result<Vec<RuleHealth>> {
        let rows = on_backend!(self, db => db.health_rows().await)?;
        Ok(rows.assemble())
    }

    /// Requeues failed rows with a fresh attempt count: delivered ones
    /// repeat only their post-action, downloaded ones (a handler failed)
    /// continue from their local file if it is still theirs, the others
    /// start over. Files that `failed_move_to` moved are moved back by the
    /// next poll.
    pub async fn retry(&self, f: &FileFilter, now: i64) -> Result<u64> {
        let f = FileFilter {
            state: Some(FileState::Failed),
            ..f.clone()
        };
        on_backend!(self, db => db.retry(&f, now).await)
    }

    /// The state of each of `ids` that has a row.
    pub async fn states_of(&self, ids: &[i64]) -> Result<HashMap<i64, FileState>> {
        let mut out = HashMap::new();
        for slice in ids.chunks(super::listing::SLICE) {
            let rows = on_backend!(self, db => db.states_of(slice).await)?;
            out.extend(
                rows.into_iter()
                    .filter_map(|(id, s)| Some((id, s.parse().ok()?))),
            );
        }
        Ok(out)
    }

    /// Drops rows: a file still on the server is then seen as new.
    pub async fn forget(&self, f: &FileFilter) -> Result<u64> {
        on_backend!(self, db => db.forget(f).await)
    }

    /// Files counted by rule, direction and state, for the metrics endpoint
    /// (read at each scrape, so the numbers are the database's own).
    pub async fn counts_by_state(&self) -> Result<Vec<StateCount>> {
        on_backend!(self, db => db.counts_by_state().await)
    }
}

/// What `ferry status` is made of, as a backend reads it: the rules table,
/// files counted by (rule, state), held files by (rule, reason), and the
/// latest errors per rule ([`RECENT_ERRORS`] at most, newest first).
pub(super) struct HealthRows {
    pub rules: Vec<RuleHealth>,
    pub counts: Vec<(String, String, i64)>,
    pub held: Vec<(String, String, i64)>,
    pub recent: Vec<RecentError>,
}

impl HealthRows {
    /// One entry per rule, with a rule that has files but never recorded
    /// a poll listed too.
    fn assemble(self) -> Vec<RuleHealth> {
        let mut rules = self.rules;
        for (rule, state, n) in self.counts {
            let idx = match rules.iter().position(|r| r.name == rule) {
                Some(i) => i,
                None => {
                    rules.push(RuleHealth::never_polled(&rule));
                    rules.len() - 1
                }
            };
            rules[idx].counts.push((state, n));
        }
        for (rule, why, n) in self.held {
            if let Some(r) = rules.iter_mut().find(|r| r.name == rule) {
                r.held.push((why, n));
            }
        }
        for e in self.recent {
            if let Some(r) = rules.iter_mut().find(|r| r.name == e.rule) {
                r.recent_errors.push(e);
            }
        }
        rules
    }
}

/// One line of [`State::counts_by_state`].
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StateCount {
    pub rule: String,
    pub direction: String,
    pub state: String,
    pub files: i64,
}

/// A `FileFilter::path` glob as an anchored regular expression, for a
/// database without GLOB (PostgreSQL's `~`), with SQLite's GLOB meaning:
/// `*` any run of characters (`/` too), `?` one character, `[...]` one of
/// a set (`[^...]` none of it; a `]` first in the set is literal),
/// everything else literal and case-sensitive.
pub(super) fn glob_regex(glob: &str) -> String {
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => match set_end(&chars, i) {
                Some(end) => {
                    out.push('[');
                    let mut j = i + 1;
                    if chars[j] == '^' {
                        out.push('^');
                        j += 1;
                    }
                    for &c in &chars[j..end] {
                        if c == '\\' || c == '[' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push(']');
                    i = end;
                }
                None => out.push_str("\\["),
            },
            c => {
                if "\\.+*?()|{}[]^$".contains(c) {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        i += 1;
    }
    out.push('$');
    out
}

/// The index of the `]` that closes the set opened at `open`, if any.
fn set_end(chars: &[char], open: usize) -> Option<usize> {
    let mut j = open + 1;
    if chars.get(j) == Some(&'^') {
        j += 1;
    }
    // A `]` right after the opening (or its `^`) is a member, not the end.
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    (j..chars.len()).find(|&k| chars[k] == ']')
}

#[cfg(test)]
mod glob_tests {
    use super::glob_regex;

    #[test]
    fn globs_become_anchored_regexes() {
        assert_eq!(glob_regex("*.csv"), "^.*\\.csv$");
        assert_eq!(glob_regex("a?c"), "^a.c$");
        assert_eq!(glob_regex("[ab]x"), "^[ab]x$");
        assert_eq!(glob_regex("[^ab]"), "^[^ab]$");
        assert_eq!(glob_regex("[]x]"), "^[]x]$");
        assert_eq!(glob_regex("a(1)+$"), "^a\\(1\\)\\+\\$$");
        assert_eq!(glob_regex("open[x"), "^open\\[x$");
    }
}
