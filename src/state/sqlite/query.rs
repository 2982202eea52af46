//! The statements behind `ferry status`, `files`, `retry`, `forget` and
//! the metrics counts.

use super::Db;
use crate::state::query::HealthRows;
use crate::state::query::RECENT_ERRORS;
use crate::state::{Condition, Direction, FileFilter, FileRow, FileState, Result, StateCount};

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

impl Db {
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

    pub async fn health_rows(&self) -> Result<HealthRows> {
        let rules = sqlx::query_as("SELECT * FROM rules ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let counts = sqlx::query_as(
            "SELECT rule, state, count(*) FROM files GROUP BY rule, state ORDER BY rule, state",
        )
        .fetch_all(&self.pool)
        .await?;
        let held = sqlx::query_as(
            "SELECT rule, held, count(*) FROM files WHERE held IS NOT NULL GROUP BY rule, held ORDER BY rule, held",
        )
        .fetch_all(&self.pool)
        .await?;
        let recent = sqlx::query_as(
            "SELECT rule, id, path, state, updated_at_ms, last_error AS error FROM (
               SELECT *, row_number() OVER (PARTITION BY rule ORDER BY updated_at_ms DESC, id DESC) AS n
               FROM files WHERE last_error IS NOT NULL)
             WHERE n <= ?1 ORDER BY rule, n",
        )
        .bind(RECENT_ERRORS)
        .fetch_all(&self.pool)
        .await?;
        Ok(HealthRows {
            rules,
            counts,
            held,
            recent,
        })
    }

    pub async fn retry(&self, f: &FileFilter, now: i64) -> Result<u64> {
        let done = filtered!(RETRY_SQL, f)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn states_of(&self, ids: &[i64]) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query_as(
            "SELECT id, state FROM files WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(super::listing::json_ids(ids))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn forget(&self, f: &FileFilter) -> Result<u64> {
        let done = filtered!(FORGET_SQL, f).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    pub async fn counts_by_state(&self) -> Result<Vec<StateCount>> {
        let rows = sqlx::query_as(
            "SELECT rule, direction, state, count(*) AS files FROM files GROUP BY rule, direction, state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}
