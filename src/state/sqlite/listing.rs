//! A listing's diff written in one transaction, and the due rows.

use super::Db;
use crate::state::listing::{Due, Latest, Plan, SLICE, VANISHED, plan};
use crate::state::{Direction, FileRow, Listed, ListingOutcome, Refused, Result};

impl Db {
    /// The digest of the listing last recorded for `rule`, unless something
    /// since cleared it (migration 0007's triggers).
    pub async fn listing_digest(&self, rule: &str) -> Result<Option<Vec<u8>>> {
        let digest = sqlx::query_scalar("SELECT listing_digest FROM rules WHERE name = ?")
            .bind(rule)
            .fetch_optional(&self.pool)
            .await?;
        Ok(digest.flatten())
    }

    /// `BEGIN IMMEDIATE` takes the write lock before the read, so no other
    /// process can insert the same new file between this read and its writes.
    /// Only the latest row of each path is read (`files_latest`). The
    /// listing's digest is written last, after the triggers its own writes
    /// fired.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_listing(
        &self,
        rule: &str,
        direction: Direction,
        listing: &[&Listed],
        refused: &[&Refused],
        digest: &[u8],
        node: &str,
        now: i64,
    ) -> Result<ListingOutcome> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<Latest> = sqlx::query_as(
            "SELECT id, path, size, mtime, state, attempts, failed_moved_to IS NOT NULL AS restoring,
                    unlisted_since_ms IS NOT NULL AS unlisted,
                    coalesce(lease_until_ms > ?2 AND owner <> ?3, 0) AS elsewhere
             FROM files WHERE rule = ?1 AND latest = 1",
        )
        .bind(rule)
        .bind(now)
        .bind(node)
        .fetch_all(&mut *tx)
        .await?;
        let plan = plan(&rows, listing, refused);
        drop(rows);
        if plan.outcome.ignored_empty {
            return Ok(plan.outcome);
        }
        write_plan(&mut tx, rule, direction, &plan, now).await?;
        sqlx::query(
            "INSERT INTO rules (name, listing_digest) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET listing_digest = excluded.listing_digest",
        )
        .bind(rule)
        .bind(plan.complete().then_some(digest))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(plan.outcome)
    }

    /// The state list repeats `files_due`'s, so that SQLite walks that
    /// partial index in id order and stops at `limit`: finished rows,
    /// however many, are never visited.
    pub async fn due_after(
        &self,
        rule: &str,
        due: &Due,
        after: i64,
        limit: i64,
    ) -> Result<Vec<FileRow>> {
        let rows = sqlx::query_as(
            "SELECT * FROM files WHERE rule = ?1 AND id > ?5
               AND state IN ('seen', 'stable', 'downloading', 'downloaded', 'delivered')
               AND (next_attempt_ms IS NULL OR next_attempt_ms <= ?2)
               AND ( state IN ('downloading', 'downloaded', 'delivered')
                  OR (state IN ('seen', 'stable') AND stable_since_ms <= ?2 - ?3 AND first_seen_ms <= ?2 - ?4))
             ORDER BY id LIMIT ?6",
        )
        .bind(rule)
        .bind(due.now)
        .bind(due.stable_for_ms)
        .bind(due.min_age_ms)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn mark_stable(&self, ids: &[i64], now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for slice in ids.chunks(SLICE) {
            sqlx::query(
                "UPDATE files SET state = 'stable', updated_at_ms = ?1
                 WHERE state = 'seen' AND id IN (SELECT value FROM json_each(?2))",
            )
            .bind(now)
            .bind(json_ids(slice))
            .execute(&mut *tx)
            .await?;
        }
        Ok(tx.commit().await?)
    }
}

/// Ids as a JSON array, for `json_each`: one statement for many rows.
pub(super) fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("ids serialize")
}

async fn write_plan(
    tx: &mut sqlx::SqliteConnection,
    rule: &str,
    direction: Direction,
    plan: &Plan,
    now: i64,
) -> Result<()> {
    for (id, f) in &plan.changed {
        sqlx::query(
            "UPDATE files SET size = ?, mtime = ?, state = 'seen', stable_since_ms = ?,
             attempts = 0, failures = 0, held = NULL, next_attempt_ms = NULL, bytes_done = 0,
             last_error = NULL, local_path = NULL, local_inode = NULL,
             updated_at_ms = ? WHERE id = ?",
        )
        .bind(f.size)
        .bind(f.mtime)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let insert: Vec<(&Listed, Option<&str>)> = plan.insert().collect();
    insert_new(tx, rule, direction, &insert, now).await?;
    for slice in plan.dropped.chunks(SLICE) {
        sqlx::query("DELETE FROM files WHERE id IN (SELECT value FROM json_each(?))")
            .bind(json_ids(slice))
            .execute(&mut *tx)
            .await?;
    }
    // Failed and no longer listed: marked unlisted at once, as the next
    // listing would, so that repeating this listing has nothing left to do.
    for slice in plan.vanished.chunks(SLICE) {
        sqlx::query(
            "UPDATE files SET state = 'failed', last_error = ?1, updated_at_ms = ?2, unlisted_since_ms = ?2
             WHERE id IN (SELECT value FROM json_each(?3))",
        )
        .bind(VANISHED)
        .bind(now)
        .bind(json_ids(slice))
        .execute(&mut *tx)
        .await?;
    }
    for (ids, at) in [(&plan.unlisted, Some(now)), (&plan.relisted, None)] {
        for slice in ids.chunks(SLICE) {
            sqlx::query(
                "UPDATE files SET unlisted_since_ms = ?1 WHERE id IN (SELECT value FROM json_each(?2))",
            )
            .bind(at)
            .bind(json_ids(slice))
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

/// Inserts the rows of new files with one statement per slice: `seen`, or
/// `failed` with the error given. A first poll of a directory with many
/// files would otherwise spend most of its time handing single inserts to
/// SQLite's thread. In slices: SQLite parses the whole JSON text of a
/// statement at once.
async fn insert_new(
    tx: &mut sqlx::SqliteConnection,
    rule: &str,
    direction: Direction,
    new: &[(&Listed, Option<&str>)],
    now: i64,
) -> Result<()> {
    for slice in new.chunks(SLICE) {
        let rows: Vec<(&str, i64, i64, Option<&str>)> = slice
            .iter()
            .map(|(f, error)| (f.path.as_str(), f.size, f.mtime, *error))
            .collect();
        sqlx::query(
            "INSERT INTO files (rule, path, size, mtime, state, first_seen_ms, stable_since_ms, updated_at_ms, last_error, direction)
             SELECT ?1, value ->> 0, value ->> 1, value ->> 2,
                    CASE WHEN value ->> 3 IS NULL THEN 'seen' ELSE 'failed' END, ?2, ?2, ?2, value ->> 3, ?4
             FROM json_each(?3)",
        )
        .bind(rule)
        .bind(now)
        .bind(serde_json::to_string(&rows).expect("listing serializes"))
        .bind(direction.as_str())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
