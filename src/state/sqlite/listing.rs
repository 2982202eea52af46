//! A listing's diff written in one transaction, and the due rows.

use super::Db;
use crate::state::diff::{Compared, Expect};
use crate::state::listing::{Due, Latest, Plan, SLICE, VANISHED, plan_chunk, plan_gone_rows};
use crate::state::{Direction, FileRow, Listed, Refused, Result};

/// The latest rows of a rule as a listing is compared with them (`?1`
/// rule, `?2` now, `?3` this node); callers add which, with `concat!`.
macro_rules! latest {
    () => {
        "SELECT id, path, size, mtime, state, attempts, failed_moved_to IS NOT NULL AS restoring,
        unlisted_since_ms IS NOT NULL AS unlisted,
        coalesce(lease_until_ms > ?2 AND owner <> ?3, 0) AS elsewhere
 FROM files WHERE rule = ?1 AND latest = 1"
    };
}

/// Whether the rule's stored digests are still `expect`.
async fn stored_is(
    tx: &mut sqlx::SqliteConnection,
    rule: &str,
    expect: Option<&[u8]>,
) -> Result<bool> {
    let stored: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT listing_digest FROM rules WHERE name = ?")
            .bind(rule)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(stored.flatten().as_deref() == expect)
}

/// Writes a listing's plan; once it wrote, its token where its digests
/// go, since the triggers of its writes cleared them.
async fn apply(
    tx: &mut sqlx::SqliteConnection,
    rule: &str,
    direction: Direction,
    plan: Plan,
    intact: bool,
    token: &[u8],
    now: i64,
) -> Result<Compared> {
    let wrote = write_plan(tx, rule, direction, &plan, now).await?;
    if wrote {
        leave_token(tx, rule, token).await?;
    }
    Ok(Compared {
        survivors: plan.survivors,
        outcome: plan.outcome,
        intact,
        wrote,
    })
}

/// Leaves `value` where the rule's digests go: a listing's token after
/// the writes whose triggers cleared them, or its digests at the end.
async fn leave_token(tx: &mut sqlx::SqliteConnection, rule: &str, value: &[u8]) -> Result<()> {
    sqlx::query(
        "INSERT INTO rules (name, listing_digest) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET listing_digest = excluded.listing_digest",
    )
    .bind(rule)
    .bind(value)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

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

    /// Compares one chunk with the latest rows of its paths, looked up by
    /// key (`files_latest`). `BEGIN IMMEDIATE` takes the write lock before
    /// the read, so no other process can insert the same new file between
    /// this read and its writes.
    #[allow(clippy::too_many_arguments)]
    pub async fn diff_chunk(
        &self,
        rule: &str,
        direction: Direction,
        listing: &[&Listed],
        refused: &[&Refused],
        expect: &Expect<'_>,
        node: &str,
        now: i64,
    ) -> Result<Compared> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let intact = stored_is(&mut tx, rule, expect.stored).await?;
        let paths: Vec<&str> = listing
            .iter()
            .map(|f| f.path.as_str())
            .chain(refused.iter().map(|x| x.file.path.as_str()))
            .collect();
        let mut rows: Vec<Latest> = Vec::new();
        for slice in paths.chunks(SLICE) {
            let mut some: Vec<Latest> = sqlx::query_as(concat!(
                latest!(),
                " AND path IN (SELECT value FROM json_each(?4))"
            ))
            .bind(rule)
            .bind(now)
            .bind(node)
            .bind(serde_json::to_string(slice).expect("paths serialize"))
            .fetch_all(&mut *tx)
            .await?;
            rows.append(&mut some);
        }
        let plan = plan_chunk(&rows, listing, refused);
        drop(rows);
        let compared = apply(&mut tx, rule, direction, plan, intact, expect.token, now).await?;
        tx.commit().await?;
        Ok(compared)
    }

    /// Takes the latest rows whose path a complete listing did not show
    /// for gone: those still pending, and those finished and not yet
    /// marked unlisted. They stream past (only the ids to change are kept),
    /// however many rows the rule has.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_gone(
        &self,
        rule: &str,
        saw: &(dyn Fn(&str) -> bool + Sync),
        listed_any: bool,
        expect: &Expect<'_>,
        node: &str,
        now: i64,
    ) -> Result<Compared> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let intact = stored_is(&mut tx, rule, expect.stored).await?;
        let rows = sqlx::query_as::<_, Latest>(concat!(
            latest!(),
            " AND (state IN ('seen', 'stable', 'downloading', 'downloaded', 'delivered')
                          OR unlisted_since_ms IS NULL)"
        ))
        .bind(rule)
        .bind(now)
        .bind(node)
        .fetch(&mut *tx);
        let plan = plan_gone_rows(rows, saw, listed_any).await?;
        // Nothing is inserted for gone files: the direction is not used.
        let listen = Direction::Listen;
        let compared = apply(&mut tx, rule, listen, plan, intact, expect.token, now).await?;
        tx.commit().await?;
        Ok(compared)
    }

    /// Stores a listing's chunk digests, only over what it expects to find
    /// there (the digests it started from, or its own token): anything else
    /// means someone changed rows since, and the next listing is compared
    /// in full.
    pub async fn store_listing_digest(
        &self,
        rule: &str,
        expect: Option<&[u8]>,
        digests: &[u8],
    ) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if stored_is(&mut tx, rule, expect).await? {
            leave_token(&mut tx, rule, digests).await?;
        }
        Ok(tx.commit().await?)
    }

    /// Whether any latest row of the rule is pending (an empty listing is
    /// then taken for a hiccup).
    pub async fn has_pending(&self, rule: &str) -> Result<bool> {
        let any: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM files WHERE rule = ?1 AND latest = 1
               AND state IN ('seen', 'stable', 'downloading', 'downloaded', 'delivered') LIMIT 1",
        )
        .bind(rule)
        .fetch_optional(&self.pool)
        .await?;
        Ok(any.is_some())
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
) -> Result<bool> {
    for (id, f) in &plan.changed {
        sqlx::query(
            "UPDATE files SET size = ?, mtime = ?, state = 'seen', stable_since_ms = ?,
             attempts = 0, failures = 0, held = NULL, next_attempt_ms = NULL, bytes_done = 0,
             last_error = NULL, local_path = NULL, local_inode = NULL, sha256 = NULL,
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
    Ok(plan.writes())
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
