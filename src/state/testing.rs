//! Helpers for the state and engine unit tests: a fresh database of each
//! backend, listing entries, and [`state_test!`], which runs one test body
//! against every backend.

use super::{Listed, State};
use crate::config::{PostgresDb, Secret};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "../../tests/common/postgres.rs"]
#[allow(dead_code)]
mod pg_server;
use pg_server::{PG_PASSWORD, Postgres};

/// `n` files of rule `r`, listed and gated (`stable`) at 1,000; their ids.
pub async fn stable_files(s: &State, n: usize) -> Vec<i64> {
    let listed: Vec<_> = (0..n).map(|i| f(&format!("f{i}"), i as i64)).collect();
    s.record_listing("r", &listed, 1_000).await.unwrap();
    let ids: Vec<i64> = s
        .files(&super::FileFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    s.mark_stable(&ids, 1_000).await.unwrap();
    ids
}

/// A listed file with mtime 10.
pub fn f(path: &str, size: i64) -> Listed {
    Listed {
        path: path.into(),
        size,
        mtime: 10,
        date_only: false,
    }
}

/// A fresh SQLite state database; keep the directory alive as long as the state.
pub async fn state() -> (tempfile::TempDir, State) {
    let dir = tempfile::tempdir().unwrap();
    let s = State::open(&dir.path().join("s.db")).await.unwrap();
    (dir, s)
}

/// A fresh database on this test process's PostgreSQL server.
pub async fn postgres() -> State {
    postgres_db(&fresh_database().await).await
}

/// Two `State`s (two pools, as two nodes have) on one fresh database.
pub async fn postgres_twice() -> (State, State) {
    let db = fresh_database().await;
    (postgres_db(&db).await, postgres_db(&db).await)
}

async fn postgres_db(db: &PostgresDb) -> State {
    State::open_postgres(db).await.unwrap()
}

async fn fresh_database() -> PostgresDb {
    let pg = tokio::task::spawn_blocking(server).await.unwrap();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("state_test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let create = name.clone();
    tokio::task::spawn_blocking(move || pg.create_database(&create))
        .await
        .unwrap();
    PostgresDb {
        url: pg.url(&name),
        password: Some(Secret::new(PG_PASSWORD.into())),
    }
}

/// One server per test process, started on first use by a thread that
/// never ends: the server is started with a death signal tied to that
/// thread, so it goes when the process does, however the process ends.
/// Its directory is named for this process; those of processes gone are
/// removed on the way.
fn server() -> &'static Postgres {
    static SERVER: OnceLock<&'static Postgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("test-postgres".into())
            .spawn(move || {
                remove_stale_dirs();
                let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
                let started = std::panic::catch_unwind(|| Postgres::start(dir, true));
                let sent = started.map(|pg| &*Box::leak(Box::new(pg)));
                let ok = sent.is_ok();
                tx.send(sent.map_err(|_| ())).unwrap();
                // Lives as long as the process: the server's death signal
                // is tied to this thread.
                if ok {
                    loop {
                        std::thread::park();
                    }
                }
            })
            .unwrap();
        rx.recv()
            .unwrap()
            .expect("the test PostgreSQL server did not start (see the panic above)")
    })
}

const DIR_PREFIX: &str = "ferry-state-pg-";

fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl State {
    /// History rows of `file_id`, or of every file.
    pub async fn count_history(&self, file_id: Option<i64>) -> i64 {
        on_backend!(self, db => db.count_history(file_id).await).unwrap()
    }
}

/// `state_test!(name, |s| { ... })` defines module `name` with one test per
/// backend (`name::sqlite`, ...), each running the body with `s: State`
/// on a fresh database of its own.
macro_rules! state_test {
    ($name:ident, |$s:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($s: $crate::state::State) $body

            #[tokio::test]
            async fn sqlite() {
                let (_dir, s) = $crate::state::testing::state().await;
                body(s).await;
            }

            #[tokio::test]
            async fn postgres() {
                body($crate::state::testing::postgres().await).await;
            }
        }
    };
}
