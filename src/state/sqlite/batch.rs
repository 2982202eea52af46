//! The group commit's statements: each kind of step for many rows at once,
//! the rows carried as one JSON array read by `json_each`.

use super::Db;
use crate::state::batch::{Applied, Groups, Writer};
use serde_json::json;
use std::collections::HashMap;

impl Writer for Db {
    async fn apply(&self, g: &Groups<'_>) -> sqlx::Result<Applied> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Fencing: steps of rows another instance claimed since are not
        // applied (their callers learn they lost the row).
        let lost: Vec<i64> = sqlx::query_scalar(
            "SELECT files.id FROM (SELECT value ->> 0 AS id, value ->> 1 AS owner FROM json_each(?)) AS s
             JOIN files ON files.id = s.id
             WHERE files.owner_instance IS NOT NULL AND files.owner_instance <> s.owner",
        )
        .bind(json!(g.fence).to_string())
        .fetch_all(&mut *tx)
        .await?;
        let g = &g.without(&lost);
        let mut attempts = HashMap::new();
        if !g.claims.is_empty() {
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "UPDATE files SET attempts = attempts + 1, next_attempt_ms = NULL, held = NULL, updated_at_ms = s.now,
                   state = CASE WHEN state IN ('seen', 'stable') THEN 'downloading' ELSE state END
                 FROM (SELECT value ->> 0 AS id, value ->> 1 AS now FROM json_each(?)) AS s
                 WHERE files.id = s.id RETURNING files.id, attempts",
            )
            .bind(json!(g.claims).to_string())
            .fetch_all(&mut *tx)
            .await?;
            attempts.extend(rows);
        }
        if !g.downloaded.is_empty() {
            sqlx::query(
                "UPDATE files SET state = 'downloaded', bytes_done = s.bytes, local_path = s.local,
                   local_inode = s.inode, sha256 = coalesce(s.sha256, files.sha256), updated_at_ms = s.now
                 FROM (SELECT value ->> 0 AS id, value ->> 1 AS now, value ->> 2 AS bytes,
                              value ->> 3 AS local, value ->> 4 AS inode, value ->> 5 AS sha256
                       FROM json_each(?)) AS s
                 WHERE files.id = s.id",
            )
            .bind(json!(g.downloaded).to_string())
            .execute(&mut *tx)
            .await?;
        }
        if !g.uploaded.is_empty() {
            sqlx::query(
                "UPDATE files SET state = 'downloaded', bytes_done = s.bytes, sent_to = s.sent_to,
                   sha256 = coalesce(s.sha256, files.sha256), updated_at_ms = s.now,
                   lease_until_ms = CASE WHEN lease_until_ms IS NULL THEN NULL ELSE s.lease END
                 FROM (SELECT value ->> 0 AS id, value ->> 1 AS now, value ->> 2 AS bytes,
                              value ->> 3 AS sent_to, value ->> 4 AS sha256, value ->> 5 AS lease
                       FROM json_each(?)) AS s
                 WHERE files.id = s.id",
            )
            .bind(json!(g.uploaded).to_string())
            .execute(&mut *tx)
            .await?;
        }
        if !g.delivered.is_empty() {
            sqlx::query(
                "UPDATE files SET state = CASE WHEN s.done THEN 'done' ELSE 'delivered' END,
                   local_path = s.local, delivered_at_ms = s.now,
                   done_at_ms = CASE WHEN s.done THEN s.now END,
                   lease_until_ms = CASE WHEN s.done OR lease_until_ms IS NULL THEN NULL ELSE s.lease END,
                   last_error = NULL, updated_at_ms = s.now
                 FROM (SELECT value ->> 0 AS id, value ->> 1 AS now, value ->> 2 AS local,
                              value ->> 3 AS done, value ->> 4 AS lease FROM json_each(?)) AS s
                 WHERE files.id = s.id",
            )
            .bind(json!(g.delivered).to_string())
            .execute(&mut *tx)
            .await?;
        }
        if !g.done.is_empty() {
            sqlx::query(
                "UPDATE files SET state = 'done', done_at_ms = s.now, lease_until_ms = NULL, last_error = NULL, updated_at_ms = s.now
                 FROM (SELECT value ->> 0 AS id, value ->> 1 AS now FROM json_each(?)) AS s
                 WHERE files.id = s.id",
            )
            .bind(json!(g.done).to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Applied { attempts, lost })
    }
}
