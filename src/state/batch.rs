//! Group commit of the per-file steps. Every file records three steps
//! (claim, downloaded, delivered), each of which must be committed before
//! the file moves on. Committed one by one they cost a transaction and a
//! round trip each; with many files in flight, the steps that arrive while
//! one transaction commits are applied together in the next, one statement
//! per kind of step. Each caller still waits for its own commit, so the
//! crash-safety order of ARCHITECTURE.md is unchanged: only unrelated files
//! share a transaction. The statements are each backend's ([`Writer`]).

use super::{Error, Result};
use std::collections::HashMap;
use std::future::Future;
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
        /// SHA-256 of the bytes, as lowercase hex, where computed.
        sha256: Option<String>,
    },
    /// Send: the whole file is on the server under its temporary name,
    /// its size checked, and `sent_to` is the name chosen for it. The
    /// row's lease, where it holds one, runs until `lease_until` from
    /// then: the rename follows at once, and this commit, fenced like
    /// every step, says the row is still this instance's as a separate
    /// confirmation would.
    Uploaded {
        bytes: i64,
        sent_to: String,
        sha256: Option<String>,
        lease_until: i64,
    },
    /// The file is in place; `done` when no post-action follows. A row
    /// with a post-action to go keeps its lease, renewed until
    /// `lease_until` (it stands for the confirmation before that
    /// post-action); a `done` one gives it back.
    Delivered {
        local_path: String,
        done: bool,
        lease_until: i64,
    },
    /// The post-action is done too.
    Done,
}

struct Request {
    id: i64,
    now: i64,
    step: Step,
    /// The instance recording it: the step applies only while the row is
    /// that instance's (or nobody's), see `state/claims.rs`.
    owner: Arc<str>,
    /// The attempt number for a claim, 0 for the other steps.
    reply: oneshot::Sender<Result<i64>>,
}

/// (id, now, bytes, sent_to, sha256, lease_until) of an `uploaded` step.
pub(super) type UploadedStep<'a> = (i64, i64, i64, &'a str, Option<&'a str>, i64);

/// (id, now, bytes, local_path, local_inode, sha256) of a `downloaded` step.
pub(super) type DownloadedStep<'a> = (i64, i64, i64, &'a str, Option<i64>, Option<&'a str>);

/// A batch's steps sorted by kind, each with its row id and time first:
/// what a backend turns into one statement per kind.
#[derive(Default)]
pub(super) struct Groups<'a> {
    /// (id, now)
    pub claims: Vec<(i64, i64)>,
    /// (id, now, bytes, local_path, local_inode, sha256)
    pub downloaded: Vec<DownloadedStep<'a>>,
    /// (id, now, bytes, sent_to, sha256, lease_until)
    pub uploaded: Vec<UploadedStep<'a>>,
    /// (id, now, local_path, done, lease_until)
    pub delivered: Vec<(i64, i64, &'a str, bool, i64)>,
    /// (id, now)
    pub done: Vec<(i64, i64)>,
    /// (id, owner instance) of every step: a backend first finds the rows
    /// another instance owns now ([`Groups::without`] drops them).
    pub fence: Vec<(i64, &'a str)>,
}

impl<'a> Groups<'a> {
    /// The same steps without those of the rows in `lost`.
    pub fn without(&self, lost: &[i64]) -> Groups<'a> {
        let keep = |id: &i64| !lost.contains(id);
        Groups {
            claims: self.claims.iter().filter(|s| keep(&s.0)).cloned().collect(),
            downloaded: self
                .downloaded
                .iter()
                .filter(|s| keep(&s.0))
                .cloned()
                .collect(),
            uploaded: self
                .uploaded
                .iter()
                .filter(|s| keep(&s.0))
                .cloned()
                .collect(),
            delivered: self
                .delivered
                .iter()
                .filter(|s| keep(&s.0))
                .cloned()
                .collect(),
            done: self.done.iter().filter(|s| keep(&s.0)).cloned().collect(),
            fence: Vec::new(),
        }
    }
}

/// What a backend's commit did: the attempt number of each claimed row,
/// and the rows whose steps were not applied because another instance
/// owns them now.
pub(super) struct Applied {
    pub attempts: HashMap<i64, i64>,
    pub lost: Vec<i64>,
}

fn group(batch: &[Request]) -> Groups<'_> {
    let mut g = Groups::default();
    for r in batch {
        let (id, now) = (r.id, r.now);
        g.fence.push((id, &r.owner));
        match &r.step {
            Step::Claim => g.claims.push((id, now)),
            Step::Downloaded {
                bytes,
                local_path,
                local_inode,
                sha256,
            } => g.downloaded.push((
                id,
                now,
                *bytes,
                local_path.as_str(),
                *local_inode,
                sha256.as_deref(),
            )),
            Step::Uploaded {
                bytes,
                sent_to,
                sha256,
                lease_until,
            } => g.uploaded.push((
                id,
                now,
                *bytes,
                sent_to.as_str(),
                sha256.as_deref(),
                *lease_until,
            )),
            Step::Delivered {
                local_path,
                done,
                lease_until,
            } => g
                .delivered
                .push((id, now, local_path.as_str(), *done, *lease_until)),
            Step::Done => g.done.push((id, now)),
        }
    }
    g
}

/// A backend's side of the group commit: in one transaction, finds the
/// rows of `groups.fence` that another instance owns, applies the other
/// steps, and returns the attempt number of each claimed row.
pub(super) trait Writer: Send + Sync + 'static {
    fn apply(&self, groups: &Groups<'_>) -> impl Future<Output = sqlx::Result<Applied>> + Send;
}

/// The sending side, shared by every clone of [`super::State`].
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Request>,
}

impl Batcher {
    /// Starts the writer task; it ends when the last `Batcher` is dropped.
    pub(super) fn start(writer: impl Writer) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(writer, rx));
        Self { tx }
    }

    /// Records `step` for row `id` and returns once it is committed.
    pub async fn record(&self, owner: &Arc<str>, id: i64, now: i64, step: Step) -> Result<i64> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            id,
            now,
            step,
            owner: owner.clone(),
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

async fn write_loop(writer: impl Writer, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let applied = writer.apply(&group(&batch)).await;
        match applied {
            Ok(Applied { attempts, lost }) => {
                for r in batch.drain(..) {
                    let answer = match r.step {
                        _ if lost.contains(&r.id) => Err(Error::Lost(vec![r.id])),
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

#[cfg(test)]
mod tests {
    use crate::state::{Error, FileFilter, FileState, Listed};

    // Many files' steps arrive at once and share transactions; each row
    // must still end up with exactly its own values.
    state_test!(concurrent_steps_land_on_their_own_rows, |s| {
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
    });

    // The digest rides with the downloaded/uploaded step, in the same
    // group commit, each row its own.
    state_test!(digests_are_recorded_with_their_step, |s| {
        let listed: Vec<Listed> = (0..3)
            .map(|i| Listed {
                path: format!("f{i}"),
                size: 1,
                mtime: 10,
                date_only: false,
            })
            .collect();
        s.record_listing("r", &listed, 1000).await.unwrap();
        let rows = s.files(&FileFilter::default()).await.unwrap();
        let hex = |i: i64| format!("{i:064x}");
        let steps = rows.iter().map(|r| async {
            s.claim(r.id, 2000).await?;
            match r.path.as_str() {
                "f0" => {
                    let h = hex(r.id);
                    s.mark_downloaded_with(r.id, 1, "/o/f0", None, Some(&h), 3000)
                        .await
                }
                "f1" => {
                    let h = hex(r.id);
                    s.mark_uploaded_with(r.id, 1, "/in/f1", Some(&h), 3000)
                        .await
                }
                _ => s.mark_downloaded(r.id, 1, "/o/f2", None, 3000).await,
            }
        });
        futures::future::try_join_all(steps).await.unwrap();
        for r in s.files(&FileFilter::default()).await.unwrap() {
            let want = (r.path != "f2").then(|| hex(r.id));
            assert_eq!(r.sha256, want, "{}", r.path);
            assert_eq!(r.state, FileState::Downloaded);
        }
    });

    state_test!(a_claim_of_a_missing_row_is_an_error, |s| {
        assert!(matches!(
            s.claim(42, 1).await,
            Err(Error::Db(sqlx::Error::RowNotFound))
        ));
    });
}
