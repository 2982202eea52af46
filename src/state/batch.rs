//! Group commit of the per-file steps. Every file records three steps
//! (claim, downloaded, delivered), each of which must be committed before
//! the file moves on. Committed one by one they cost a transaction and three
//! hand-offs to SQLite's thread each; with many files in flight, the steps
//! that arrive while one transaction commits are applied together in the
//! next, one statement per kind of step. Each caller still waits for its own
//! commit, so the crash-safety order of ARCHITECTURE.md is unchanged: only
//! unrelated files share a transaction.

use super::{Error, Result};
use serde_json::{Value, json};
use sqlx::SqlitePool;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Steps applied in one transaction at most; more wait for the next one.
const MAX_BATCH: usize = 256;

/// One file's step, as the engine records it.
#[derive(Debug)]
pub enum Step {
    /// Counts an attempt and moves a pending row to `downloading`.
    Claim,
    /// The whole file is fsynced under its temporary name (inode
    /// `local_inode`), and `local_path` is the final name chosen for it.
    Downloaded {
        bytes: i64,
        local_path: String,
        local_inode: Option<i64>,
    },
    /// Send: the whole file is on the server under its temporary name,
    /// its size checked, and `sent_to` is the name chosen for it.
    Uploaded { bytes: i64, sent_to: String },
    /// The file is in place; `done` when no post-action follows.
    Delivered { local_path: String, done: bool },
    /// The post-action is done too.
    Done,
}

struct Request {
    id: i64,
    now: i64,
    step: Step,
    /// The attempt number for a claim, 0 for the other steps.
    reply: oneshot::Sender<Result<i64>>,
}

/// The sending side, shared by every clone of [`super::State`].
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Request>,
}

impl Batcher {
    /// Starts the writer task; it ends when the last `Batcher` is dropped.
    pub fn start(pool: SqlitePool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(pool, rx));
        Self { tx }
    }

    /// Records `step` for row `id` and returns once it is committed.
    pub async fn record(&self, id: i64, now: i64, step: Step) -> Result<i64> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            id,
            now,
            step,
            reply,
        };
        self.tx.send(request).map_err(|_| closed())?;
        let committed = answer.await.map_err(|_| closed())?;
        // A committed step is progress, for the daemon's watchdog.
        crate::progress::moved();
        committed
    }
}

fn closed() -> Error {
    Error::WriterStopped
}

async fn write_loop(pool: SqlitePool, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match apply(&pool, &batch).await {
            Ok(attempts) => {
                for r in batch.drain(..) {
                    let answer = match r.step {
                        Step::Claim => attempts
                            .get(&r.id)
                            .copied()
                            .ok_or(sqlx::Error::RowNotFound.into()),
                        _ => Ok(0),
                    };
                    let _ = r.reply.send(answer);
                }
            }
            Err(e) => {
                // sqlx errors cannot be cloned: every caller shares the one.
                let shared = Arc::new(e);
                for r in batch.drain(..) {
                    let _ = r.reply.send(Err(Error::Commit(shared.clone())));
                }
            }
        }
    }
}

/// Applies a batch in one transaction; returns the attempt number of each
/// claimed row.
async fn apply(pool: &SqlitePool, batch: &[Request]) -> sqlx::Result<HashMap<i64, i64>> {
    let (mut claims, mut downloaded, mut delivered, mut done) = (vec![], vec![], vec![], vec![]);
    let mut uploaded = vec![];
    for r in batch {
        match &r.step {
            Step::Claim => claims.push(json!([r.id, r.now])),
            Step::Downloaded {
                bytes,
                local_path,
                local_inode,
            } => downloaded.push(json!([r.id, r.now, bytes, local_path, local_inode])),
            Step::Uploaded { bytes, sent_to } => {
                uploaded.push(json!([r.id, r.now, bytes, sent_to]))
            }
            Step::Delivered { local_path, done } => {
                delivered.push(json!([r.id, r.now, local_path, done]))
            }
            Step::Done => done.push(json!([r.id, r.now])),
        }
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut attempts = HashMap::new();
    if !claims.is_empty() {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "UPDATE files SET attempts = attempts + 1, next_attempt_ms = NULL, held = NULL, updated_at_ms = s.now,
               state = CASE WHEN state IN ('seen', 'stable') THEN 'downloading' ELSE state END
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS now FROM json_each(?)) AS s
             WHERE files.id = s.id RETURNING files.id, attempts",
        )
        .bind(Value::Array(claims).to_string())
        .fetch_all(&mut *tx)
        .await?;
        attempts.extend(rows);
    }
    if !downloaded.is_empty() {
        sqlx::query(
            "UPDATE files SET state = 'downloaded', bytes_done = s.bytes, local_path = s.local,
               local_inode = s.inode, updated_at_ms = s.now
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS now, value ->> 2 AS bytes,
                          value ->> 3 AS local, value ->> 4 AS inode FROM json_each(?)) AS s
             WHERE files.id = s.id",
        )
        .bind(Value::Array(downloaded).to_string())
        .execute(&mut *tx)
        .await?;
    }
    if !uploaded.is_empty() {
        sqlx::query(
            "UPDATE files SET state = 'downloaded', bytes_done = s.bytes, sent_to = s.sent_to,
               updated_at_ms = s.now
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS now, value ->> 2 AS bytes,
                          value ->> 3 AS sent_to FROM json_each(?)) AS s
             WHERE files.id = s.id",
        )
        .bind(Value::Array(uploaded).to_string())
        .execute(&mut *tx)
        .await?;
    }
    if !delivered.is_empty() {
        sqlx::query(
            "UPDATE files SET state = CASE WHEN s.done THEN 'done' ELSE 'delivered' END,
               local_path = s.local, delivered_at_ms = s.now,
               done_at_ms = CASE WHEN s.done THEN s.now END, last_error = NULL, updated_at_ms = s.now
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS now, value ->> 2 AS local,
                          value ->> 3 AS done FROM json_each(?)) AS s
             WHERE files.id = s.id",
        )
        .bind(Value::Array(delivered).to_string())
        .execute(&mut *tx)
        .await?;
    }
    if !done.is_empty() {
        sqlx::query(
            "UPDATE files SET state = 'done', done_at_ms = s.now, last_error = NULL, updated_at_ms = s.now
             FROM (SELECT value ->> 0 AS id, value ->> 1 AS now FROM json_each(?)) AS s
             WHERE files.id = s.id",
        )
        .bind(Value::Array(done).to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(attempts)
}

#[cfg(test)]
mod tests {
    use crate::state::{Error, FileFilter, FileState, Listed, State};

    /// Many files' steps arrive at once and share transactions; each row
    /// must still end up with exactly its own values.
    #[tokio::test]
    async fn concurrent_steps_land_on_their_own_rows() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).await.unwrap();
        let listed: Vec<Listed> = (0..300)
            .map(|i| Listed {
                path: format!("f{i}"),
                size: i,
                mtime: 10,
                date_only: false,
            })
            .collect();
        s.record_listing("r", &listed, 1000).await.unwrap();
        let rows = s.files(&FileFilter::default()).await.unwrap();
        assert_eq!(rows.len(), 300);

        let claims = rows.iter().map(|r| s.claim(r.id, 2000 + r.id));
        let attempts = futures::future::try_join_all(claims).await.unwrap();
        assert!(attempts.iter().all(|&a| a == 1), "{attempts:?}");
        // A second claim of half the rows counts a second attempt for them only.
        let again = rows.iter().step_by(2).map(|r| s.claim(r.id, 3000));
        let attempts = futures::future::try_join_all(again).await.unwrap();
        assert!(attempts.iter().all(|&a| a == 2), "{attempts:?}");

        let steps = rows.iter().map(|r| async {
            let local = format!("/out/{}", r.path);
            s.mark_downloaded(r.id, r.size as u64, &local, Some(r.id as u64 + 7), 4000)
                .await?;
            // Odd sizes have a post-action: delivered first, done after.
            let keep = r.size % 2 == 0;
            s.mark_delivered(r.id, &local, keep, 5000).await?;
            if !keep {
                s.mark_done(r.id, 6000).await?;
            }
            Ok::<_, Error>(())
        });
        futures::future::try_join_all(steps).await.unwrap();

        for r in s.files(&FileFilter::default()).await.unwrap() {
            assert_eq!(r.state, FileState::Done, "{}", r.path);
            assert_eq!(r.bytes_done, r.size, "{}", r.path);
            assert_eq!(r.local_inode, Some(r.id + 7), "{}", r.path);
            assert_eq!(r.local_path.as_deref(), Some(&*format!("/out/{}", r.path)));
            assert_eq!(r.delivered_at_ms, Some(5000));
            let done_at = if r.size % 2 == 0 { 5000 } else { 6000 };
            assert_eq!(r.done_at_ms, Some(done_at), "{}", r.path);
            let claims = if r.size % 2 == 0 { 2 } else { 1 };
            assert_eq!(r.attempts, claims, "{}", r.path);
        }
    }

    #[tokio::test]
    async fn a_claim_of_a_missing_row_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("s.db")).await.unwrap();
        assert!(matches!(
            s.claim(42, 1).await,
            Err(Error::Db(sqlx::Error::RowNotFound))
        ));
    }
}
