//! What `ferry check` says about the state database: which backend, and
//! which migration it has reached, read without creating or migrating
//! anything (a check must not change what it checks).

use super::{Result, postgres, sqlite};
use crate::config::StateDb;

/// The state database's backend and schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The latest migration applied; `None` before the first start.
    pub applied: Option<i64>,
    /// The latest migration this ferry carries (applied at start).
    pub latest: i64,
}

/// Connects (for PostgreSQL: the server must answer and accept the login)
/// and reads the schema version.
pub async fn inspect(db: &StateDb) -> Result<Schema> {
    let latest = |m: &sqlx::migrate::Migrator| m.iter().map(|m| m.version).max().unwrap_or(0);
    match db {
        StateDb::Sqlite(path) => Ok(Schema {
            backend: "sqlite",
            applied: sqlite::schema_version_of(path).await?,
            latest: latest(&sqlite::MIGRATOR),
        }),
        StateDb::Postgres(pg) => {
            let db = postgres::Db::open(pg).await?;
            Ok(Schema {
                backend: "postgres",
                applied: db.schema_version().await?,
                latest: latest(&postgres::MIGRATOR),
            })
        }
    }
}
