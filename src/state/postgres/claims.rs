//! Claims, leases, listing turns and nodes in PostgreSQL, where several
//! nodes race for the same rows: a claim locks the rows it takes with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimers never get the same row
//! and never wait for each other's transactions.

use super::Db;
use crate::state::claims::{Me, NodeStatus};
use crate::state::{Due, FileRow, Result};

/// Due and not held by a live lease of another node (`$1` now, `$2` node).
const FREE: &str =
    "(owner_instance IS NULL OR owner = $2 OR lease_until_ms IS NULL OR lease_until_ms < $1)";

impl Db {
    pub async fn join_node(&self, me: &Me, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (name, instance, host, pid, started_ms, heartbeat_ms)
             VALUES ($1, $2, $3, $4, $5, $5)
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
            sqlx::query("UPDATE nodes SET heartbeat_ms = $1 WHERE name = $2 AND instance = $3")
                .bind(now)
                .bind(&me.node)
                .bind(&me.instance)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        // Rows locked right now are skipped, never waited for: the lock is
        // this node's own commit (a claimed row is written by its owner
        // only), which ends in milliseconds, and the next renewal, a third
        // of a lease later, gets the row. Waiting could deadlock with that
        // commit (it may lock the same rows in another order), and PostgreSQL
        // would then abort one of the two after `deadlock_timeout`.
        sqlx::query(
            "UPDATE files SET lease_until_ms = $1
             WHERE id IN (SELECT id FROM files
                 WHERE owner_instance = $2 AND lease_until_ms IS NOT NULL
                 FOR UPDATE SKIP LOCKED)",
        )
        .bind(until)
        .bind(&me.instance)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE rules SET list_lease_until_ms = $1
             WHERE name IN (SELECT name FROM rules
                 WHERE lister_instance = $2 AND list_lease_until_ms IS NOT NULL
                 FOR UPDATE SKIP LOCKED)",
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
            "INSERT INTO rules (name, lister, lister_instance, list_lease_until_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET lister = excluded.lister,
               lister_instance = excluded.lister_instance, list_lease_until_ms = excluded.list_lease_until_ms
             WHERE rules.lister_instance IS NULL OR rules.lister = excluded.lister
               OR rules.list_lease_until_ms IS NULL OR rules.list_lease_until_ms < $5
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
             WHERE lease_until_ms IS NOT NULL AND lease_until_ms < $1 AND owner_instance <> $2
               AND state IN ('stable', 'downloading', 'downloaded', 'delivered')
               AND (next_attempt_ms IS NULL OR next_attempt_ms <= $1)",
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
            "UPDATE files SET owner = $2, owner_instance = $3, lease_until_ms = $4
             WHERE id IN (SELECT id FROM files WHERE rule = $5 AND id > $9
                 AND (next_attempt_ms IS NULL OR next_attempt_ms <= $1)
                 AND ( state IN ('downloading', 'downloaded', 'delivered')
                    OR (state = 'stable' AND stable_since_ms <= $1 - $6 AND first_seen_ms <= $1 - $7))
                 AND {FREE}
               ORDER BY id LIMIT $8 FOR UPDATE SKIP LOCKED)
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
            "UPDATE files SET owner = $2, owner_instance = $3, lease_until_ms = $4
             WHERE id IN (SELECT id FROM files WHERE id = ANY($5)
                 AND (next_attempt_ms IS NULL OR next_attempt_ms <= $1)
                 AND state IN ('stable', 'downloading', 'downloaded', 'delivered')
                 AND {FREE}
               ORDER BY id FOR UPDATE SKIP LOCKED)
             RETURNING *"
        );
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(&me.node)
            .bind(&me.instance)
            .bind(me.lease_until(now))
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    pub async fn confirm(&self, me: &Me, ids: &[i64], now: i64) -> Result<Vec<i64>> {
        let got = sqlx::query_scalar(
            "UPDATE files SET lease_until_ms = $1
             WHERE id = ANY($2) AND owner_instance = $3
             RETURNING id",
        )
        .bind(me.lease_until(now))
        .bind(ids)
        .bind(&me.instance)
        .fetch_all(&self.pool)
        .await?;
        Ok(got)
    }

    pub async fn release(&self, me: &Me, ids: &[i64]) -> Result<()> {
        sqlx::query(
            "UPDATE files SET lease_until_ms = NULL
             WHERE id = ANY($1) AND owner_instance = $2 AND lease_until_ms IS NOT NULL",
        )
        .bind(ids)
        .bind(&me.instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn leave(&self, me: &Me) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE files SET lease_until_ms = NULL WHERE owner_instance = $1 AND lease_until_ms IS NOT NULL",
        )
        .bind(&me.instance)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE rules SET list_lease_until_ms = NULL WHERE lister_instance = $1")
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
                  AND f.lease_until_ms IS NOT NULL AND f.lease_until_ms >= $1) AS leases,
               (SELECT count(*) FROM rules r WHERE r.lister_instance = n.instance
                  AND r.list_lease_until_ms >= $1) AS listing
             FROM nodes n ORDER BY n.name",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use crate::state::claims::Me;
    use crate::state::testing::{postgres, postgres_twice, stable_files};
    use crate::state::{Backend, Due, State};
    use std::time::Duration;

    const LEASE: Duration = Duration::from_secs(3);

    async fn leases(s: &State, ids: &[i64]) -> Vec<Option<i64>> {
        let Backend::Postgres(db) = &s.backend else {
            unreachable!("a PostgreSQL state")
        };
        let mut out = Vec::new();
        for id in ids {
            let lease: Option<i64> =
                sqlx::query_scalar("SELECT lease_until_ms FROM files WHERE id = $1")
                    .bind(id)
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            out.push(lease);
        }
        out
    }

    /// A renewal while a commit of the same node holds one of its rows
    /// locked: it renews the others at once and skips that one (the next
    /// renewal gets it), instead of waiting for the lock, which is how a
    /// renewal and a batch commit deadlocked (PostgreSQL aborted one).
    #[tokio::test]
    async fn a_renewal_never_waits_for_a_locked_row() {
        let s = postgres().await;
        let all = stable_files(&s, 3).await;
        let a = s.clone().with_me(Me::new("a", LEASE));
        a.join(1_500).await.unwrap();
        let due = Due {
            now: 2_000,
            stable_for_ms: 0,
            min_age_ms: 0,
        };
        let ids: Vec<i64> = a
            .claim_due_after("r", &due, 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, all);
        let Backend::Postgres(db) = &a.backend else {
            unreachable!("a PostgreSQL state")
        };
        let mut commit = db.pool.begin().await.unwrap();
        sqlx::query("SELECT id FROM files WHERE id = $1 FOR UPDATE")
            .bind(ids[0])
            .execute(&mut *commit)
            .await
            .unwrap();
        let renewed = tokio::time::timeout(Duration::from_secs(5), a.heartbeat(4_000))
            .await
            .expect("the renewal waited for a locked row")
            .unwrap();
        assert!(renewed);
        assert_eq!(
            leases(&a, &ids).await,
            [Some(5_000), Some(7_000), Some(7_000)]
        );
        commit.rollback().await.unwrap();
        assert!(a.heartbeat(5_000).await.unwrap());
        assert_eq!(leases(&a, &ids).await, [Some(8_000); 3]);
    }

    /// A node stopped inside a transaction (its row locks held, its
    /// connection open) loses its rows anyway: the server ends its idle
    /// session, and another node's claim, which skips locked rows, then
    /// takes them over. Before, those rows stayed with the stopped node.
    #[tokio::test]
    async fn a_node_stopped_mid_transaction_does_not_keep_its_rows() {
        let (one, two) = postgres_twice().await;
        let all = stable_files(&one, 2).await;
        let a = one.with_me(Me::new("a", LEASE));
        let b = two.with_me(Me::new("b", LEASE));
        a.join(1_500).await.unwrap();
        b.join(1_500).await.unwrap();
        let due = |now| Due {
            now,
            stable_for_ms: 0,
            min_age_ms: 0,
        };
        assert_eq!(
            a.claim_due_after("r", &due(2_000), 0, 100)
                .await
                .unwrap()
                .len(),
            2
        );
        let Backend::Postgres(db) = &a.backend else {
            unreachable!("a PostgreSQL state")
        };
        // a is stopped here: a transaction open, its rows locked, nothing sent.
        let mut stopped = db.pool.begin().await.unwrap();
        sqlx::query("SELECT id FROM files FOR UPDATE")
            .execute(&mut *stopped)
            .await
            .unwrap();
        let later = 2_000 + 10 * LEASE.as_millis() as i64;
        let claimed = b.claim_due_after("r", &due(later), 0, 100).await.unwrap();
        assert!(claimed.is_empty(), "the locked rows were claimed at once");
        let started = std::time::Instant::now();
        let mut taken = Vec::new();
        while taken.is_empty() && started.elapsed() < super::super::IDLE_IN_TRANSACTION * 3 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            taken = b.claim_due_after("r", &due(later), 0, 100).await.unwrap();
        }
        let ids: Vec<i64> = taken.iter().map(|r| r.id).collect();
        assert_eq!(ids, all, "b did not take the stopped node's rows over");
        assert!(started.elapsed() >= super::super::IDLE_IN_TRANSACTION / 2);
        // a, woken, finds its transaction gone.
        assert!(
            sqlx::query("SELECT 1")
                .execute(&mut *stopped)
                .await
                .is_err(),
            "a's idle transaction is still open"
        );
    }
}
