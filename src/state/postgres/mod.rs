//! The PostgreSQL backend: one database shared by every node of a
//! gateway. All of its SQL is in this folder; the schema is
//! `migrations/postgres/`, the same tables and columns as SQLite's.
//!
//! PostgreSQL runs at READ COMMITTED, and several processes write at
//! once. Where SQLite serialises a read-then-write with `BEGIN IMMEDIATE`,
//! a statement here either writes in one step or first locks the row that
//! stands for what it decides about (a listing locks its rule's row).

mod batch;
mod claims;
mod history;
mod listing;
mod query;
mod retention;
mod segments;
mod transitions;

use crate::config::PostgresDb;
use crate::state::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// Connections per process: the group commit's writer, the engine's
/// single-row changes and reads, and the CLI.
const MAX_CONNECTIONS: u32 = 8;

/// How long the server lets a session of ferry sit inside a transaction
/// waiting for its next statement before it ends the session. ferry's
/// transactions never wait on anything but the database, so only a
/// process that stopped mid-transaction (SIGSTOP, a paused VM, a wedged
/// host whose TCP connection stays open) ever reaches it. Without it that
/// process's row locks outlive its leases: every other node's claim skips
/// the locked rows (`FOR UPDATE SKIP LOCKED`), and a stopped node's batch
/// would never be taken over.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(10);

/// An open PostgreSQL state database. Cloning shares the pool.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
}

impl Db {
    /// Connects, without migrating. An error names the server and the
    /// database (`Error::Connect`), never the password.
    pub async fn open(pg: &PostgresDb) -> Result<Self> {
        let connect = |at: String| move |source| Error::Connect { at, source };
        let mut options = PgConnectOptions::from_str(&pg.url)
            .map_err(connect(pg.url.clone()))?
            .application_name("ferry");
        if let Some(password) = &pg.password {
            options = options.password(password.expose());
        }
        let at = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username())
        );
        // One connection first, tried once: a pool would retry a refused
        // connection until its acquire timeout, and `ferry check` against
        // a server that is down should say so at once.
        let probe = options.connect().await.map_err(connect(at))?;
        let _ = probe.close().await;
        // A SET on each new connection rather than the `options` startup
        // parameter, which connection poolers (PgBouncer) refuse.
        let limit = format!(
            "SET idle_in_transaction_session_timeout = {}",
            IDLE_IN_TRANSACTION.as_millis()
        );
        let pool = PgPoolOptions::new()
            .after_connect(move |conn, _| {
                let limit = limit.clone();
                Box::pin(async move {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(limit))
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
            })
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// Applies the embedded migrations. sqlx holds an advisory lock while
    /// it migrates, so nodes starting together take turns.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The latest migration applied; `None` before the first.
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        let migrated: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        if !migrated {
            return Ok(None);
        }
        let v = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        Ok(v)
    }
}

/// `migrations/postgres/`, embedded.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[cfg(test)]
impl Db {
    pub async fn count_history(&self, file_id: Option<i64>) -> Result<i64> {
        let n = sqlx::query_scalar(
            "SELECT count(*) FROM history WHERE $1::bigint IS NULL OR file_id = $1",
        )
        .bind(file_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}
