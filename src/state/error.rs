//! What can go wrong with the state database. Each error keeps what caused
//! it (the SQLite or I/O error) as its `source()`, so the cause survives
//! beyond the first message it was formatted into.

use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query, a transaction or the connection failed.
    #[error("{0}")]
    Db(#[from] sqlx::Error),
    /// The embedded migrations could not be applied.
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database server could not be reached or refused the login.
    /// `at` is `host:port/database`: never the password.
    #[error("cannot connect to {at}: {source}")]
    Connect {
        at: String,
        #[source]
        source: sqlx::Error,
    },
    /// The group commit that carried this step failed; every step in it
    /// shares the one error.
    #[error("{0}")]
    Commit(#[source] Arc<sqlx::Error>),
    /// The rows are another node's now: their lease ran out while this
    /// process was stalled and another claimed them (fencing, see
    /// `claims.rs`). Not a failure of the file: the new owner goes on.
    #[error("file(s) {0:?} are owned by another node now")]
    Lost(Vec<i64>),
    /// The writer task is gone (the runtime is shutting down).
    #[error("the state writer has stopped")]
    WriterStopped,
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// The cause is reachable as `source()`, not only as text.
    #[test]
    fn each_wrapped_error_keeps_its_cause_as_source() {
        let db = Error::from(sqlx::Error::RowNotFound);
        let cause = db.source().expect("a source");
        assert!(matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::RowNotFound)
        ));

        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        let dir = Error::CreateDir {
            dir: "/x".into(),
            source: io,
        };
        let cause = dir.source().expect("a source");
        assert_eq!(
            cause
                .downcast_ref::<std::io::Error>()
                .unwrap()
                .raw_os_error(),
            Some(libc::EACCES)
        );
        assert!(dir.to_string().starts_with("cannot create /x: "), "{dir}");

        let shared = Arc::new(sqlx::Error::PoolTimedOut);
        let commit = Error::Commit(shared.clone());
        let cause = commit.source().expect("a source");
        assert!(matches!(
            cause.downcast_ref::<Arc<sqlx::Error>>().map(|a| &**a),
            Some(sqlx::Error::PoolTimedOut)
        ));
    }
}
