//! A listing's diff written in one transaction, and the due rows.

use super::Db;
use crate::state::listing::{Due, Latest, Plan, SLICE, VANISHED, plan};
use crate::state::{Direction, FileRow, Listed, ListingOutcome, Refused, Result};

impl Db {
    /// The digest of the listing last recorded for `rule`, unless something
    /// since cleared it (migration 0007's triggers).
    pub async fn listing_digest(&self, rule: &str) -> Result<Option<Vec<u8>>> {
        let digest = sqlx::query_scalar("SELECT listing_digest FROM rules WHERE name = $1")
            .bind(rule)
            .fetch_optional(&self.pool)
            .await?;
        Ok(digest.flatten())
    }

    /// Locks the rule's row first (inserting it if missing): two nodes
    /// recording the same rule's listing at once take turns, so the second
    /// reads what the first inserted and cannot insert the same new file.
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO rules (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(rule)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT name FROM rules WHERE name = $1 FOR UPDATE")
            .bind(rule)
            .execute(&mut *tx)
            .await?;
        let rows: Vec<Latest> = sqlx::query_as(
            "SELECT id, path, size, mtime, state, attempts, failed_moved_to IS NOT NULL AS restoring,
                    unlisted_since_ms IS NOT NULL AS unlisted,
                    coalesce(lease_until_ms > $2 AND owner <> $3, false) AS elsewhere
             FROM files WHERE rule = $1 AND latest",
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
        sqlx::query("UPDATE rules SET listing_digest = $2 WHERE name = $1")
            .bind(rule)
            .bind(plan.complete().then_some(digest))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(plan.outcome)
    }

    /// The state list repeats `files_due`'s, so that PostgreSQL can walk
    /// that partial index in id order and stop at `limit`: finished rows,
    /// however many, are never visited.
    pub async fn due_after(
        &self,
        rule: &str,
        due: &Due,
        after: i64,
        limit: i64,
    ) -> Result<Vec<FileRow>> {
        let rows = sqlx::query_as(
            "SELECT * FROM files WHERE rule = $1 AND id > $5
               AND state IN ('seen', 'stable', 'downloading', 'downloaded', 'delivered')
               AND (next_attempt_ms IS NULL OR next_attempt_ms <= $2)
               AND ( state IN ('downloading', 'downloaded', 'delivered')
                  OR (state IN ('seen', 'stable') AND stable_since_ms <= $2 - $3 AND first_seen_ms <= $2 - $4))
             ORDER BY id LIMIT $6",
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
        sqlx::query(
            "UPDATE files SET state = 'stable', updated_at_ms = $1
             WHERE state = 'seen' AND id = ANY($2)",
        )
        .bind(now)
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

async fn write_plan(
    tx: &mut sqlx::PgConnection,
    rule: &str,
    direction: Direction,
    plan: &Plan,
    now: i64,
) -> Result<()> {
    for (id, f) in &plan.changed {
        sqlx::query(
            "UPDATE files SET size = $1, mtime = $2, state = 'seen', stable_since_ms = $3,
             attempts = 0, failures = 0, held = NULL, next_attempt_ms = NULL, bytes_done = 0,
             last_error = NULL, local_path = NULL, local_inode = NULL,
             updated_at_ms = $3 WHERE id = $4",
        )
        .bind(f.size)
        .bind(f.mtime)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let insert: Vec<(&Listed, Option<&str>)> = plan.insert().collect();
    insert_new(tx, rule, direction, &insert, now).await?;
    if !plan.dropped.is_empty() {
        sqlx::query("DELETE FROM files WHERE id = ANY($1)")
            .bind(&plan.dropped)
            .execute(&mut *tx)
            .await?;
    }
    // Failed and no longer listed: marked unlisted at once, as the next
    // listing would, so that repeating this listing has nothing left to do.
    if !plan.vanished.is_empty() {
        sqlx::query(
            "UPDATE files SET state = 'failed', last_error = $1, updated_at_ms = $2, unlisted_since_ms = $2
             WHERE id = ANY($3)",
        )
        .bind(VANISHED)
        .bind(now)
        .bind(&plan.vanished)
        .execute(&mut *tx)
        .await?;
    }
    for (ids, at) in [(&plan.unlisted, Some(now)), (&plan.relisted, None)] {
        if !ids.is_empty() {
            sqlx::query("UPDATE files SET unlisted_since_ms = $1 WHERE id = ANY($2)")
                .bind(at)
                .bind(ids)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

/// Inserts the rows of new files, a slice at a time, each slice one
/// statement over arrays: `seen`, or `failed` with the error given.
async fn insert_new(
    tx: &mut sqlx::PgConnection,
    rule: &str,
    direction: Direction,
    new: &[(&Listed, Option<&str>)],
    now: i64,
) -> Result<()> {
    for slice in new.chunks(SLICE) {
        let paths: Vec<&str> = slice.iter().map(|(f, _)| f.path.as_str()).collect();
        let sizes: Vec<i64> = slice.iter().map(|(f, _)| f.size).collect();
        let mtimes: Vec<i64> = slice.iter().map(|(f, _)| f.mtime).collect();
        let errors: Vec<Option<&str>> = slice.iter().map(|(_, e)| *e).collect();
        sqlx::query(
            "INSERT INTO files (rule, path, size, mtime, state, first_seen_ms, stable_since_ms, updated_at_ms, last_error, direction)
             SELECT $1, t.path, t.size, t.mtime, CASE WHEN t.error IS NULL THEN 'seen' ELSE 'failed' END,
                    $2, $2, $2, t.error, $3
             FROM UNNEST($4::text[], $5::bigint[], $6::bigint[], $7::text[]) AS t(path, size, mtime, error)",
        )
        .bind(rule)
        .bind(now)
        .bind(direction.as_str())
        .bind(&paths)
        .bind(&sizes)
        .bind(&mtimes)
        .bind(&errors)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
