//! A listing's diff written in one transaction, and the due rows.

use super::Db;
use crate::state::diff::{Compared, Expect};
use crate::state::listing::{Due, Latest, Plan, SLICE, VANISHED, plan_chunk, plan_gone_rows};
use crate::state::{Direction, FileRow, Listed, Refused, Result};

/// The latest rows of a rule as a listing is compared with them (`$1`
/// rule, `$2` now, `$3` this node); callers add which, with `concat!`.
macro_rules! latest {
    () => {
        "SELECT id, path, size, mtime, state, attempts, failed_moved_to IS NOT NULL AS restoring,
        unlisted_since_ms IS NOT NULL AS unlisted,
        coalesce(lease_until_ms > $2 AND owner <> $3, false) AS elsewhere
 FROM files WHERE rule = $1 AND latest"
    };
}

/// Locks the rule's row (inserting it if missing) and tells whether its
/// stored digests are still `expect`.
async fn lock_rule(tx: &mut sqlx::PgConnection, rule: &str, expect: Option<&[u8]>) -> Result<bool> {
    sqlx::query("INSERT INTO rules (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(rule)
        .execute(&mut *tx)
        .await?;
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT listing_digest FROM rules WHERE name = $1 FOR UPDATE")
            .bind(rule)
            .fetch_one(&mut *tx)
            .await?;
    Ok(stored.as_deref() == expect)
}

/// Writes a listing's plan; once it wrote, its token where its digests
/// go, since the triggers of its writes cleared them.
async fn apply(
    tx: &mut sqlx::PgConnection,
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
async fn leave_token(tx: &mut sqlx::PgConnection, rule: &str, value: &[u8]) -> Result<()> {
    sqlx::query("UPDATE rules SET listing_digest = $2 WHERE name = $1")
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
        let digest = sqlx::query_scalar("SELECT listing_digest FROM rules WHERE name = $1")
            .bind(rule)
            .fetch_optional(&self.pool)
            .await?;
        Ok(digest.flatten())
    }

    /// Compares one chunk with the latest rows of its paths, looked up by
    /// key (`files_latest`). The rule's row is locked first: two nodes
    /// recording the same rule's listing at once take turns, so the second
    /// reads what the first inserted and cannot insert the same new file.
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
        let mut tx = self.pool.begin().await?;
        let intact = lock_rule(&mut tx, rule, expect.stored).await?;
        let paths: Vec<&str> = listing
            .iter()
            .map(|f| f.path.as_str())
            .chain(refused.iter().map(|x| x.file.path.as_str()))
            .collect();
        let rows: Vec<Latest> = sqlx::query_as(concat!(latest!(), " AND path = ANY($4)"))
            .bind(rule)
            .bind(now)
            .bind(node)
            .bind(&paths)
            .fetch_all(&mut *tx)
            .await?;
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
        let mut tx = self.pool.begin().await?;
        let intact = lock_rule(&mut tx, rule, expect.stored).await?;
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
        let mut tx = self.pool.begin().await?;
        if lock_rule(&mut tx, rule, expect).await? {
            leave_token(&mut tx, rule, digests).await?;
        }
        Ok(tx.commit().await?)
    }

    /// Whether any latest row of the rule is pending (an empty listing is
    /// then taken for a hiccup).
    pub async fn has_pending(&self, rule: &str) -> Result<bool> {
        let any: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM files WHERE rule = $1 AND latest
               AND state IN ('seen', 'stable', 'downloading', 'downloaded', 'delivered') LIMIT 1",
        )
        .bind(rule)
        .fetch_optional(&self.pool)
        .await?;
        Ok(any.is_some())
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
) -> Result<bool> {
    for (id, f) in &plan.changed {
        sqlx::query(
            "UPDATE files SET size = $1, mtime = $2, state = 'seen', stable_since_ms = $3,
             attempts = 0, failures = 0, held = NULL, next_attempt_ms = NULL, bytes_done = 0,
             last_error = NULL, local_path = NULL, local_inode = NULL, sha256 = NULL,
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
    Ok(plan.writes())
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
