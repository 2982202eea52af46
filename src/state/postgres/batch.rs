//! The group commit's statements: each kind of step for many rows at once,
//! the rows carried as parallel arrays read by `UNNEST`.

use super::Db;
use crate::state::batch::{Applied, Groups, Writer};
use std::collections::HashMap;

impl Writer for Db {
    async fn apply(&self, g: &Groups<'_>) -> sqlx::Result<Applied> {
        let mut tx = self.pool.begin().await?;
        // Fencing: every row of the batch is locked first, so no claim can
        // slip in before the commit; steps of rows another instance claimed
        // since are not applied (their callers learn they lost the row).
        let (ids, owners): (Vec<i64>, Vec<&str>) = g.fence.iter().copied().unzip();
        let owned: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT id, owner_instance FROM files WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let lost: Vec<i64> = owned
            .into_iter()
            .filter(|(id, owner)| {
                owner.as_deref().is_some_and(|o| {
                    ids.iter()
                        .zip(&owners)
                        .any(|(i, mine)| i == id && *mine != o)
                })
            })
            .map(|(id, _)| id)
            .collect();
        let g = &g.without(&lost);
        let mut attempts = HashMap::new();
        if !g.claims.is_empty() {
            let (ids, nows): (Vec<i64>, Vec<i64>) = g.claims.iter().copied().unzip();
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "UPDATE files SET attempts = files.attempts + 1, next_attempt_ms = NULL, held = NULL,
                   updated_at_ms = s.now,
                   state = CASE WHEN files.state IN ('seen', 'stable') THEN 'downloading' ELSE files.state END
                 FROM UNNEST($1::bigint[], $2::bigint[]) AS s(id, now)
                 WHERE files.id = s.id RETURNING files.id, files.attempts",
            )
            .bind(&ids)
            .bind(&nows)
            .fetch_all(&mut *tx)
            .await?;
            attempts.extend(rows);
        }
        if !g.downloaded.is_empty() {
            let d = &g.downloaded;
            sqlx::query(
                "UPDATE files SET state = 'downloaded', bytes_done = s.bytes, local_path = s.local,
                   local_inode = s.inode, sha256 = coalesce(s.sha256, files.sha256), updated_at_ms = s.now
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[])
                      AS s(id, now, bytes, local, inode, sha256)
                 WHERE files.id = s.id",
            )
            .bind(d.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(d.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(d.iter().map(|r| r.2).collect::<Vec<_>>())
            .bind(d.iter().map(|r| r.3).collect::<Vec<_>>())
            .bind(d.iter().map(|r| r.4).collect::<Vec<_>>())
            .bind(d.iter().map(|r| r.5).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !g.uploaded.is_empty() {
            let u = &g.uploaded;
            sqlx::query(
                "UPDATE files SET state = 'downloaded', bytes_done = s.bytes, sent_to = s.sent_to,
                   sha256 = coalesce(s.sha256, files.sha256), updated_at_ms = s.now,
                   lease_until_ms = CASE WHEN files.lease_until_ms IS NULL THEN NULL ELSE s.lease END
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bigint[])
                      AS s(id, now, bytes, sent_to, sha256, lease)
                 WHERE files.id = s.id",
            )
            .bind(u.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(u.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(u.iter().map(|r| r.2).collect::<Vec<_>>())
            .bind(u.iter().map(|r| r.3).collect::<Vec<_>>())
            .bind(u.iter().map(|r| r.4).collect::<Vec<_>>())
            .bind(u.iter().map(|r| r.5).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !g.delivered.is_empty() {
            let d = &g.delivered;
            sqlx::query(
                "UPDATE files SET state = CASE WHEN s.done THEN 'done' ELSE 'delivered' END,
                   local_path = s.local, delivered_at_ms = s.now,
                   done_at_ms = CASE WHEN s.done THEN s.now END,
                   lease_until_ms = CASE WHEN s.done OR files.lease_until_ms IS NULL THEN NULL ELSE s.lease END,
                   last_error = NULL, updated_at_ms = s.now
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bool[], $5::bigint[])
                      AS s(id, now, local, done, lease)
                 WHERE files.id = s.id",
            )
            .bind(d.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(d.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(d.iter().map(|r| r.2).collect::<Vec<_>>())
            .bind(d.iter().map(|r| r.3).collect::<Vec<_>>())
            .bind(d.iter().map(|r| r.4).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !g.done.is_empty() {
            let (ids, nows): (Vec<i64>, Vec<i64>) = g.done.iter().copied().unzip();
            sqlx::query(
                "UPDATE files SET state = 'done', done_at_ms = s.now, lease_until_ms = NULL, last_error = NULL, updated_at_ms = s.now
                 FROM UNNEST($1::bigint[], $2::bigint[]) AS s(id, now)
                 WHERE files.id = s.id",
            )
            .bind(&ids)
            .bind(&nows)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Applied { attempts, lost })
    }
}
