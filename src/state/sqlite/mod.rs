//! The SQLite backend: an embedded database file beside the daemon, in WAL
//! mode with one connection. All of its SQL is in this folder; the schema
//! is `migrations/sqlite/`.

mod batch;
mod claims;
mod history;
mod listing;
mod query;
mod retention;
mod segments;
mod transitions;

use super::{Error, Result};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

/// An open SQLite state database. Cloning shares the connection.
#[derive(Clone)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (creating if needed) the database and applies the embedded migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: every commit is on disk before the step it records is
            // followed by an irreversible one (a rename the consumer sees, a
            // remote move or delete). With NORMAL a power loss could forget
            // a `delivered` whose source was already moved away: the file
            // would be lost track of. ARCHITECTURE.md, crash safety.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            // Statement journals and transient tables in memory: on disk
            // each is a file created and unlinked at once (`etilqs_*` in
            // /var/tmp), dozens per thousand files sent, and on ext4
            // without a journal every new inode then skips over those
            // recently freed, a cost that grew with every run.
            .pragma("temp_store", "memory")
            .row_buffer_size(ROW_BUFFER);
        // One connection: SQLite has one writer anyway, and a single
        // connection can never deadlock upgrading a read to a write.
        let pool = connect(options).await?;
        migrate(&pool).await?;
        Ok(Self { pool })
    }
}

/// Rows the connection's thread may get ahead of the task reading them.
/// sqlx's default (50) made a due chunk of 1,024 rows stop the thread
/// twenty times, each a park and a wake-up across threads.
const ROW_BUFFER: usize = 1024;

/// Opens the one connection. Its first pragmas run before the busy
/// timeout is in force, so a connection made while the daemon commits
/// (`ferry files` from a shell) can be told "database is locked" at once:
/// trying again a moment later gets through.
async fn connect(options: SqliteConnectOptions) -> Result<SqlitePool> {
    let mut tries = 0;
    loop {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await;
        match pool {
            Ok(pool) => return Ok(pool),
            Err(e) if tries < 20 && is_busy(&e) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(25 * tries)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// SQLITE_BUSY, with any of its extended codes.
fn is_busy(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    let code = db.code().and_then(|c| c.parse::<i32>().ok());
    code.is_some_and(|c| c & 0xff == 5)
}

/// Applies the embedded migrations. Two processes opening a new database
/// at once (the daemon starting, `ferry files` from a shell) can both see a
/// migration as not applied; the second then fails on what the first
/// created. Trying again sees it applied and does nothing.
async fn migrate(pool: &SqlitePool) -> Result<()> {
    let mut tries = 0;
    loop {
        match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(_) if tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50 * tries)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `migrations/sqlite/`, embedded.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl Db {
    /// The latest migration applied.
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        schema_version(&self.pool).await
    }
}

/// The latest migration applied to the database at `path`, read without
/// creating or changing anything: `None` for a file that does not exist
/// yet or holds no migration.
pub async fn schema_version_of(path: &Path) -> Result<Option<i64>> {
    if !path.exists() {
        return Ok(None);
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let v = schema_version(&pool).await;
    pool.close().await;
    v
}

async fn schema_version(pool: &SqlitePool) -> Result<Option<i64>> {
    let migrated: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations')",
    )
    .fetch_one(pool)
    .await?;
    if !migrated {
        return Ok(None);
    }
    let v = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await?;
    Ok(v)
}

#[cfg(test)]
impl Db {
    /// History rows of `file_id`, or of every file: for tests that check
    /// what goes with a row.
    pub async fn count_history(&self, file_id: Option<i64>) -> Result<i64> {
        let n = sqlx::query_scalar("SELECT count(*) FROM history WHERE ?1 IS NULL OR file_id = ?1")
            .bind(file_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::Db;

    /// A pragma's value on a freshly opened database.
    async fn pragma(name: &str) -> i64 {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("s.db")).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
            .fetch_one(&db.pool)
            .await
            .unwrap()
    }

    /// Durable before irreversible: every commit is fsynced (FULL = 2).
    #[tokio::test]
    async fn commits_are_synchronous_full() {
        assert_eq!(pragma("synchronous").await, 2);
    }

    /// No temporary files: MEMORY = 2.
    #[tokio::test]
    async fn temporary_storage_is_in_memory() {
        assert_eq!(pragma("temp_store").await, 2);
    }
}
