//! Claims, leases, listing turns and nodes in SQLite. One host works on a
//! SQLite database (the lock file beside it), so nothing here races; the
//! same claims run anyway, so that both backends behave alike.

use super::Db;
use crate::state::claims::{Me, NodeStatus};
use crate::state::{Due, FileRow, Result};

/// Due and not held by a live lease of another node (`?1` now, `?2` node).
const FREE: &str =
    "(owner_instance IS NULL OR owner = ?2 OR lease_until_ms IS NULL OR lease_until_ms < ?1)";

fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("ids serialize")
}

impl Db {
    pub async fn join_node(&self, me: &Me, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (name, instance, host, pid, started_ms, heartbeat_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, host = excluded.host,
               pid = excluded.pid, started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms",
        )
        .bind(&me.node)
        .bind(&me.instance)
        .bind(&me.host)
        .bind(me.pid as i64)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn heartbeat(&self, me: &Me, now: i64) -> Result<bool> {
        let until = me.lease_until(now);
        let mut tx = self.pool.begin().await?;
        let ours =
            sqlx::query("UPDATE nodes SET heartbeat_ms = ?1 WHERE name = ?2 AND instance = ?3")
                .bind(now)
                .bind(&me.node)
                .bind(&me.instance)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        sqlx::query(
            "UPDATE files SET lease_until_ms = ?1 WHERE owner_instance = ?2 AND lease_until_ms IS NOT NULL",
        )
        .bind(until)
        .bind(&me.instance)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE rules SET list_lease_until_ms = ?1
             WHERE lister_instance = ?2 AND list_lease_until_ms IS NOT NULL",
        )
        .bind(until)
        .bind(&me.instance)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ours)
    }

    pub async fn take_list_turn(&self, me: &Me, rule: &str, now: i64) -> Result<bool> {
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO rules (name, lister, lister_instance, list_lease_until_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET lister = excluded.lister,
               lister_instance = excluded.lister_instance, list_lease_until_ms = excluded.list_lease_until_ms
             WHERE rules.lister_instance IS NULL OR rules.lister = excluded.lister
               OR rules.list_lease_until_ms IS NULL OR rules.list_lease_until_ms < ?5
             RETURNING name",
        )
        .bind(rule)
        .bind(&me.node)
        .bind(&me.instance)
        .bind(me.lease_until(now))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken.is_some())
    }

    pub async fn expired_claims(&self, me: &Me, now: i64) -> Result<Vec<String>> {
        let rules = sqlx::query_scalar(
            "SELECT DISTINCT rule FROM files
             WHERE lease_until_ms IS NOT NULL AND lease_until_ms < ?1 AND owner_instance <> ?2
               AND state IN ('stable', 'downloading', 'downloaded', 'delivered')
               AND (next_attempt_ms IS NULL OR next_attempt_ms <= ?1)",
        )
        .bind(now)
        .bind(&me.instance)
        .fetch_all(&self.pool)
        .await?;
        Ok(rules)
    }

    pub async fn claim_due(
        &self,
        me: &Me,
        rule: &str,
        due: &Due,
        after: i64,
        limit: i64,
    ) -> Result<Vec<FileRow>> {
        let sql = format!(
            "UPDATE files SET owner = ?2, owner_instance = ?3, lease_until_ms = ?4
             WHERE id IN (SELECT id FROM files WHERE rule = ?5 AND id > ?9
                 AND (next_attempt_ms IS NULL OR next_attempt_ms <= ?1)
                 AND ( state IN ('downloading', 'downloaded', 'delivered')
                    OR (state = 'stable' AND stable_since_ms <= ?1 - ?6 AND first_seen_ms <= ?1 - ?7))
                 AND {FREE}
               ORDER BY id LIMIT ?8)
             RETURNING *"
        );
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(due.now)
            .bind(&me.node)
            .bind(&me.instance)
            .bind(me.lease_until(due.now))
            .bind(rule)
            .bind(due.stable_for_ms)
            .bind(due.min_age_ms)
            .bind(limit)
            .bind(after)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    pub async fn claim_rows(&self, me: &Me, ids: &[i64], now: i64) -> Result<Vec<FileRow>> {
        let sql = format!(
            "UPDATE files SET owner = ?2, owner_instance = ?3, lease_until_ms = ?4
             WHERE id IN (SELECT value FROM json_each(?5))
               AND (next_attempt_ms IS NULL OR next_attempt_ms <= ?1)
               AND state IN ('stable', 'downloading', 'downloaded', 'delivered')
               AND {FREE}
             RETURNING *"
        );
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(&me.node)
            .bind(&me.instance)
            .bind(me.lease_until(now))
            .bind(ids_json(ids))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    pub async fn confirm(&self, me: &Me, ids: &[i64], now: i64) -> Result<Vec<i64>> {
        let got = sqlx::query_scalar(
            "UPDATE files SET lease_until_ms = ?1
             WHERE id IN (SELECT value FROM json_each(?2)) AND owner_instance = ?3
             RETURNING id",
        )
        .bind(me.lease_until(now))
        .bind(ids_json(ids))
        .bind(&me.instance)
        .fetch_all(&self.pool)
        .await?;
        Ok(got)
    }

    pub async fn release(&self, me: &Me, ids: &[i64]) -> Result<()> {
        sqlx::query(
            "UPDATE files SET lease_until_ms = NULL
             WHERE id IN (SELECT value FROM json_each(?1)) AND owner_instance = ?2
               AND lease_until_ms IS NOT NULL",
        )
        .bind(ids_json(ids))
        .bind(&me.instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn leave(&self, me: &Me) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE files SET lease_until_ms = NULL WHERE owner_instance = ?1 AND lease_until_ms IS NOT NULL",
        )
        .bind(&me.instance)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE rules SET list_lease_until_ms = NULL WHERE lister_instance = ?1")
            .bind(&me.instance)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn nodes(&self, now: i64) -> Result<Vec<NodeStatus>> {
        let rows = sqlx::query_as(
            "SELECT n.name, n.instance, n.host, n.pid, n.started_ms, n.heartbeat_ms,
               (SELECT count(*) FROM files f WHERE f.owner_instance = n.instance
                  AND f.lease_until_ms IS NOT NULL AND f.lease_until_ms >= ?1) AS leases,
               (SELECT count(*) FROM rules r WHERE r.lister_instance = n.instance
                  AND r.list_lease_until_ms >= ?1) AS listing
             FROM nodes n ORDER BY n.name",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}
