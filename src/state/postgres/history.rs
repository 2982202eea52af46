//! A file's rows and their history (written by the triggers of
//! `migrations/postgres/0005_history.sql`).

use super::Db;
use crate::state::{FileRow, HistoryEntry, Result};

impl Db {
    pub async fn history(&self, file_id: i64) -> Result<Vec<HistoryEntry>> {
        let rows = sqlx::query_as(
            "SELECT at_ms, event, from_state, to_state, attempt, failures, error, bytes, next_attempt_ms, held
             FROM history WHERE file_id = $1 ORDER BY id",
        )
        .bind(file_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn versions(&self, rule: &str, path: &str) -> Result<Vec<FileRow>> {
        let rows = sqlx::query_as("SELECT * FROM files WHERE rule = $1 AND path = $2 ORDER BY id")
            .bind(rule)
            .bind(path)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    pub async fn delivered_as(&self, path: &str) -> Result<Vec<FileRow>> {
        let rows =
            sqlx::query_as("SELECT * FROM files WHERE local_path = $1 OR sent_to = $1 ORDER BY id")
                .bind(path)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows)
    }

    pub async fn row(&self, id: i64) -> Result<Option<FileRow>> {
        let row = sqlx::query_as("SELECT * FROM files WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row)
    }
}
