//! The state database: every file's version and progress through the
//! pipeline, and every rule's polling health. All SQL lives in this folder,
//! behind functions named for what they do.

mod batch;
mod error;
mod history;
mod listing;
mod query;
mod retention;
mod row;
#[cfg(test)]
pub(crate) mod testing;
mod transitions;

pub use error::{Error, Result};
pub use history::HistoryEntry;
pub use listing::{Listed, ListingOutcome, Refused, Superseded};
pub use query::{Condition, FileFilter, RecentError, RuleHealth, StateCount};
pub use row::{Direction, FileRow, FileState, size_from_db, size_to_db};
pub use transitions::Skipped;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The open database. Cloning shares the connection.
#[derive(Clone)]
pub struct State {
    pool: SqlitePool,
    batch: batch::Batcher,
}

impl State {
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
            .busy_timeout(Duration::from_secs(30));
        // One connection: SQLite has one writer anyway, and a single
        // connection can never deadlock upgrading a read to a write.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        migrate(&pool).await?;
        let batch = batch::Batcher::start(pool.clone());
        Ok(Self { pool, batch })
    }
}

/// Applies the embedded migrations. Two processes opening a new database
/// at once (the daemon starting, `ferry files` from a shell) can both see a
/// migration as not applied; the second then fails on what the first
/// created. Trying again sees it applied and does nothing.
async fn migrate(pool: &SqlitePool) -> Result<()> {
    let mut tries = 0;
    loop {
        match sqlx::migrate!("./migrations").run(pool).await {
            Ok(()) => return Ok(()),
            Err(_) if tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50 * tries)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Milliseconds since the Unix epoch, the unit of every time ferry records.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::State;

    /// Durable before irreversible: every commit is fsynced (FULL = 2).
    #[tokio::test]
    async fn commits_are_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).await.unwrap();
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&s.pool)
            .await
            .unwrap();
        assert_eq!(level, 2);
    }
}
