//! Poll records, gathered. Every poll of every rule records how it went
//! (the rule's row: last poll, duration, files listed, errors). With
//! hundreds of rules that is tens of statements a second, each a round
//! trip to the database's worker, for rows nobody reads until `ferry
//! status` asks. So the polls that arrive within [`GATHER`] of each other
//! are written by one statement (`UPDATE rules ... FROM` the batch as
//! JSON). Each caller still waits for its own record to be written, so
//! `ferry once` and the tests read what they recorded.

use super::{Backend, Error, Result};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long the writer waits after the first record of a batch for
/// others to join it: short against any interval, long enough that polls
/// spread over an interval share statements.
pub const GATHER: Duration = Duration::from_millis(100);

/// Records in one statement at most.
const MAX_BATCH: usize = 512;

/// One poll's figures, as the rule's row takes them.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PollRecord {
    pub rule: String,
    pub started_ms: i64,
    pub duration_ms: i64,
    /// Files listed; `None` when the poll did not list (an error, or
    /// another node's turn): the previous figure stays.
    pub listed: Option<i64>,
    pub error: Option<String>,
    /// Subdirectories skipped; `None` when the poll did not get as far as
    /// listing: the previous figures stay.
    pub skipped_dirs: Option<i64>,
    pub skipped_error: Option<String>,
}

struct Request {
    record: PollRecord,
    reply: oneshot::Sender<Result<()>>,
}

/// The sending side, shared by every clone of [`super::State`].
#[derive(Clone)]
pub(super) struct PollLog {
    tx: mpsc::UnboundedSender<Request>,
}

impl PollLog {
    /// Starts the writer task, gathering for `gather` after the first
    /// record of a batch; it ends when the last `PollLog` is dropped.
    pub fn start(backend: Backend, gather: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(backend, rx, gather));
        Self { tx }
    }

    /// Records one poll and returns once it is written.
    pub async fn record(&self, record: PollRecord) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { record, reply })
            .map_err(|_| Error::WriterStopped)?;
        answer.await.map_err(|_| Error::WriterStopped)?
    }
}

async fn write_loop(backend: Backend, mut rx: mpsc::UnboundedReceiver<Request>, gather: Duration) {
    // Rules whose row exists: only a rule new to this process needs the
    // insert before the update (rule rows are never deleted).
    let mut known: HashSet<String> = HashSet::new();
    let mut next: Option<Request> = None;
    loop {
        let first = match next.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        tokio::time::sleep(gather).await;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(r) = rx.try_recv() else { break };
            // A rule polled twice within the gather (intervals of a few
            // hundred ms): its second record goes in the next statement,
            // which counts its errors on top of the first.
            if batch.iter().any(|b| b.record.rule == r.record.rule) {
                next = Some(r);
                break;
            }
            batch.push(r);
        }
        let records: Vec<&PollRecord> = batch.iter().map(|r| &r.record).collect();
        let new: Vec<&str> = records
            .iter()
            .map(|r| r.rule.as_str())
            .filter(|r| !known.contains(*r))
            .collect();
        let written = write(&backend, &new, &records).await;
        match written {
            Ok(()) => {
                known.extend(new.iter().map(|r| r.to_string()));
                for r in batch {
                    let _ = r.reply.send(Ok(()));
                }
            }
            Err(e) => {
                // sqlx errors cannot be cloned: every caller shares the one.
                let shared = Arc::new(e);
                for r in batch {
                    let _ = r.reply.send(Err(Error::Commit(shared.clone())));
                }
            }
        }
    }
}

async fn write(
    backend: &Backend,
    new: &[&str],
    records: &[&PollRecord],
) -> std::result::Result<(), sqlx::Error> {
    let json = serde_json::to_string(records).expect("poll records serialize");
    match backend {
        Backend::Sqlite(db) => db.record_polls(new, &json).await,
        Backend::Postgres(db) => db.record_polls(new, &json).await,
    }
}

#[cfg(test)]
mod tests {
    use crate::state::transitions::Skipped;

    // Polls of many rules at once, some failing: each rule's row gets its
    // own figures, errors count up per rule and a success resets them.
    state_test!(gathered_polls_land_on_their_own_rules, |s| {
        let polls = (0..40).map(|i| {
            let s = s.clone();
            async move {
                let error = (i % 2 == 1).then_some("refused");
                let skipped = Skipped {
                    count: Some(i),
                    last_error: None,
                };
                let rule = format!("r{i}");
                s.record_poll(&rule, 1_000 + i as i64, 7, Some(i), error, &skipped)
                    .await
            }
        });
        futures::future::try_join_all(polls).await.unwrap();
        s.record_poll("r1", 2_000, 8, None, Some("again"), &Skipped::default())
            .await
            .unwrap();
        s.record_poll("r2", 2_000, 8, None, None, &Skipped::default())
            .await
            .unwrap();
        let health = s.rule_health().await.unwrap();
        let rule = |name: &str| health.iter().find(|r| r.name == name).unwrap();
        assert_eq!(health.len(), 40);
        assert_eq!(rule("r4").last_listed, Some(4));
        assert_eq!(rule("r4").consecutive_errors, 0);
        assert_eq!(rule("r4").last_success_ms, Some(1_004));
        assert_eq!(rule("r1").consecutive_errors, 2);
        assert_eq!(rule("r1").last_error.as_deref(), Some("again"));
        assert_eq!(rule("r1").last_listed, Some(1), "kept when not listed");
        assert_eq!(rule("r1").last_success_ms, None);
        assert_eq!(rule("r2").last_success_ms, Some(2_000));
        assert_eq!(rule("r2").skipped_dirs, 2, "kept when not listed");
    });
}
