//! Helpers for the state and engine unit tests: a database in a temp
//! directory, and listing entries.

use super::{Listed, State};

/// A listed file with mtime 10.
pub fn f(path: &str, size: i64) -> Listed {
    Listed {
        path: path.into(),
        size,
        mtime: 10,
        date_only: false,
    }
}

/// A fresh state database; keep the directory alive as long as the state.
pub async fn state() -> (tempfile::TempDir, State) {
    let dir = tempfile::tempdir().unwrap();
    let s = State::open(&dir.path().join("s.db")).await.unwrap();
    (dir, s)
}
