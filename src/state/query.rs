//! Read and maintenance queries behind `ferry status`, `files`, `retry` and
//! `forget`. Filters are bound parameters, never SQL built from text.

use super::{Direction, FileRow, FileState, Result, State};
use serde::Serialize;

/// Which rows a command is about. Every field narrows; `path` is a glob
/// (SQLite GLOB: `*`, `?`, `[...]`) on the path relative to remote_dir.
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

// The shared filter, written once and joined into each statement at
// compile time, so no SQL is ever formatted at run time.
macro_rules! where_clause {
    () => {
        "(?1 IS NULL OR rule = ?1) AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR path GLOB ?3) AND (?4 IS NULL OR id = ?4)
         AND (?5 IS NULL
              OR (?5 = 'retrying' AND failures > 0 AND held IS NULL AND state NOT IN ('done', 'failed'))
              OR (?5 = 'held' AND held IS NOT NULL))
         AND (?6 IS NULL OR direction = ?6)"
    };
}

const FILES_SQL: &str = concat!(
    "SELECT * FROM files WHERE ",
    where_clause!(),
    " ORDER BY id LIMIT ?7"
);

const RETRY_SQL: &str = concat!(
    "UPDATE files SET attempts = 0, failures = 0, held = NULL, next_attempt_ms = NULL, updated_at_ms = ?7,
       state = CASE WHEN delivered_at_ms IS NOT NULL THEN 'delivered'
                    WHEN local_inode IS NOT NULL OR sent_to IS NOT NULL AND append_base IS NULL THEN 'downloaded'
                    ELSE 'stable' END
     WHERE ",
    where_clause!()
);

const FORGET_SQL: &str = concat!("DELETE FROM files WHERE ", where_clause!());

macro_rules! filtered {
    ($sql:expr, $f:expr) => {
        sqlx::query($sql)
            .bind($f.rule.as_deref())
            .bind($f.state.map(FileState::as_str))
            .bind($f.path.as_deref())
            .bind($f.id)
            .bind($f.condition.map(Condition::as_str))
            .bind($f.direction.map(Direction::as_str))
    };
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
        let rows = sqlx::query_as(FILES_SQL)
            .bind(f.rule.as_deref())
            .bind(f.state.map(FileState::as_str))
            .bind(f.path.as_deref())
            .bind(f.id)
            .bind(f.condition.map(Condition::as_str))
            .bind(f.direction.map(Direction::as_str))
            .bind(f.limit.unwrap_or(-1))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// Health of every rule the database knows, with counts by state.
    pub async fn rule_health(&self) -> Result<Vec<RuleHealth>> {
        let mut rules: Vec<RuleHealth> = sqlx::query_as("SELECT * FROM rules ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let counts: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT rule, state, count(*) FROM files GROUP BY rule, state ORDER BY rule, state",
        )
        .fetch_all(&self.pool)
        .await?;
        for (rule, state, n) in counts {
            let idx = match rules.iter().position(|r| r.name == rule) {
                Some(i) => i,
                None => {
                    rules.push(RuleHealth::never_polled(&rule));
                    rules.len() - 1
                }
            };
            rules[idx].counts.push((state, n));
        }
        let held: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT rule, held, count(*) FROM files WHERE held IS NOT NULL GROUP BY rule, held ORDER BY rule, held",
        )
        .fetch_all(&self.pool)
        .await?;
        for (rule, why, n) in held {
            if let Some(r) = rules.iter_mut().find(|r| r.name == rule) {
                r.held.push((why, n));
            }
        }
        let recent: Vec<RecentError> = sqlx::query_as(
            "SELECT rule, id, path, state, updated_at_ms, last_error AS error FROM (
               SELECT *, row_number() OVER (PARTITION BY rule ORDER BY updated_at_ms DESC, id DESC) AS n
               FROM files WHERE last_error IS NOT NULL)
             WHERE n <= ?1 ORDER BY rule, n",
        )
        .bind(RECENT_ERRORS)
        .fetch_all(&self.pool)
        .await?;
        for e in recent {
            if let Some(r) = rules.iter_mut().find(|r| r.name == e.rule) {
                r.recent_errors.push(e);
            }
        }
        Ok(rules)
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
        let done = filtered!(RETRY_SQL, f)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// The state of each of `ids` that has a row.
    pub async fn states_of(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, FileState>> {
        let mut out = std::collections::HashMap::new();
        for slice in ids.chunks(super::listing::INSERT_SLICE) {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, state FROM files WHERE id IN (SELECT value FROM json_each(?))",
            )
            .bind(serde_json::to_string(slice).expect("ids serialize"))
            .fetch_all(&self.pool)
            .await?;
            out.extend(
                rows.into_iter()
                    .filter_map(|(id, s)| Some((id, s.parse().ok()?))),
            );
        }
        Ok(out)
    }

    /// Drops rows: a file still on the server is then seen as new.
    pub async fn forget(&self, f: &FileFilter) -> Result<u64> {
        let done = filtered!(FORGET_SQL, f).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    /// Files counted by rule, direction and state, for the metrics endpoint
    /// (read at each scrape, so the numbers are the database's own).
    pub async fn counts_by_state(&self) -> Result<Vec<StateCount>> {
        let rows = sqlx::query_as(
            "SELECT rule, direction, state, count(*) AS files FROM files GROUP BY rule, direction, state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
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
