//! The state database: every file's version and progress through the
//! pipeline, and every rule's polling health. The public API is
//! [`State`]; the engine never learns which database is behind it.
//!
//! Each backend keeps all of its SQL in its own folder (`sqlite/`,
//! `postgres/`), one
//! file per area; what is not SQL (deciding what a listing changes,
//! grouping steps into commits, pruning in bounded steps) lives once, in
//! the files directly under `state/`, which dispatch to the backend.

/// Runs `$body` with `$db` bound to the backend of `$state`. Every public
/// method goes through here, so adding a backend is one arm.
macro_rules! on_backend {
    ($state:expr, $db:ident => $body:expr) => {
        match &$state.backend {
            $crate::state::Backend::Sqlite($db) => $body,
            $crate::state::Backend::Postgres($db) => $body,
        }
    };
}

// First, so that its `state_test!` is in scope in the modules below.
#[cfg(test)]
#[macro_use]
pub(crate) mod testing;

mod batch;
mod claims;
mod diff;
mod digest;
mod error;
mod history;
mod listing;
mod polls;
mod postgres;
mod query;
mod retention;
mod row;
mod schema;
mod segments;
mod sqlite;
mod transitions;

pub use claims::{Me, NodeStatus};
pub use diff::{Chunking, ListingDiff};
pub use error::{Error, Result};
pub use history::HistoryEntry;
pub use listing::{Due, Listed, ListingOutcome, Refused, Superseded};
pub use query::{Condition, FileFilter, RecentError, RuleHealth, StateCount};
pub use row::{Direction, FileRow, FileState, size_from_db, size_to_db};
pub use schema::{Schema, inspect};
pub use segments::{PlannedFor, Segment};
pub use transitions::Skipped;

use crate::config::{PostgresDb, StateDb};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The open database. Cloning shares the connections and the group commit.
#[derive(Clone)]
pub struct State {
    backend: Backend,
    batch: batch::Batcher,
    /// This process among the nodes sharing the database (`claims.rs`),
    /// and its instance token as the group commit carries it.
    me: std::sync::Arc<Me>,
    owner: std::sync::Arc<str>,
    /// Listing turns this process took, by rule: when it took each
    /// (`claims::Turns`), so a steady poll need not write to ask again.
    turns: claims::Turns,
    /// Poll records, gathered into few statements (`polls.rs`).
    polls: polls::PollLog,
}

/// The database behind a [`State`]: one module of SQL each.
#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Db),
    Postgres(postgres::Db),
}

impl State {
    /// Opens (creating if needed) the SQLite database at `path` and
    /// applies the embedded migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let db = sqlite::Db::open(path).await?;
        let batch = batch::Batcher::start(db.clone());
        Ok(Self::with_backend(Backend::Sqlite(db), batch))
    }

    /// A state working as this host's node with the default lease, until
    /// [`State::with_me`] says otherwise (the daemon, from `daemon.node`).
    fn with_backend(backend: Backend, batch: batch::Batcher) -> Self {
        let me = Me::new(
            &crate::config::hostname(),
            std::time::Duration::from_secs(60),
        );
        Self {
            polls: polls::PollLog::start(backend.clone(), polls::GATHER),
            backend,
            batch,
            owner: me.instance.as_str().into(),
            me: std::sync::Arc::new(me),
            turns: claims::Turns::default(),
        }
    }

    /// The same state with poll records gathered for `gather` (default
    /// [`polls::GATHER`]). `ferry once` polls each rule once and waits for
    /// every record: gathering would only add to its run time.
    pub fn with_poll_gather(mut self, gather: std::time::Duration) -> Self {
        self.polls = polls::PollLog::start(self.backend.clone(), gather);
        self
    }

    /// Opens the state database the configuration names, applying the
    /// embedded migrations of its backend.
    pub async fn connect(db: &StateDb) -> Result<Self> {
        match db {
            StateDb::Sqlite(path) => Self::open(path).await,
            StateDb::Postgres(pg) => Self::open_postgres(pg).await,
        }
    }

    /// Connects to a PostgreSQL state database and applies the embedded
    /// migrations. An error names the server and database, never the password.
    pub async fn open_postgres(pg: &PostgresDb) -> Result<Self> {
        let db = postgres::Db::open(pg).await?;
        db.migrate().await?;
        let batch = batch::Batcher::start(db.clone());
        Ok(Self::with_backend(Backend::Postgres(db), batch))
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The latest migration applied to the database (its number in
    /// `migrations/<backend>/`).
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        on_backend!(self, db => db.schema_version().await)
    }
}

/// Milliseconds since the Unix epoch, the unit of every time ferry records.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
