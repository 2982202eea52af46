//! A poll's listing, streamed into the state database as the server sends
//! it: the walk hands over batches, the diff compares a chunk at a time,
//! and what each chunk changed is logged and acted on at once. Neither the
//! listing nor the rows it is compared with are ever held whole.

use super::{Engine, FileError, PollReport, target, upload, walk};
use crate::config::Rule;
use crate::remote::Pool;
use crate::state::{Listed, ListingDiff, ListingOutcome};
use crate::watch::DirWatch;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Batches between the walk and the diff: the walk lists on while a
/// chunk is compared.
const IN_FLIGHT: usize = 4;

impl Engine {
    /// Lists the rule and records the listing; the paths every file seen
    /// (for the ready-marker gate, when the rule has one).
    pub(super) async fn list_and_record(
        &self,
        rule: &Arc<Rule>,
        pool: &Arc<Pool>,
        watch: Option<&DirWatch>,
        now: i64,
        report: &mut PollReport,
    ) -> Result<HashSet<String>, FileError> {
        let mut diff = self
            .state
            .diff_listing(&rule.name, super::direction(rule), now)
            .await?;
        let (tx, rx) = mpsc::channel::<walk::Walked>(IN_FLIGHT);
        let walking = async {
            let mut session = pool.get().await?;
            self.restore_retried(rule, &mut session).await?;
            Ok::<_, FileError>(walk::list(&mut session, rule, tx).await?)
        };
        let recording = self.record_batches(rule, &mut diff, rx, report);
        let (walked, recorded) = tokio::join!(walking, recording);
        // A diff that failed stopped the walk: its error is the one to tell.
        recorded?;
        let listing = walked?;
        report.listed = listing.files;
        report.skipped_dirs = Some(listing.skipped.len());
        report.skipped_error = listing.skipped.last().map(|(d, e)| format!("{d}: {e}"));
        // Files under a directory that could not be listed are kept as
        // last recorded: not taken for gone.
        for f in walk::keep_skipped(&self.state, rule, &listing.skipped).await? {
            self.push(rule, &mut diff, f, report).await?;
        }
        if let Some(w) = watch {
            w.retain(|path| diff.saw(path));
        }
        let out = diff.finish().await?;
        if out.ignored_empty {
            tracing::warn!(remote = %rule.remote_dir, "the listing came back empty while files were pending; treating it as unknown");
        }
        self.took(rule, out, report).await;
        Ok(listing.all)
    }

    async fn record_batches(
        &self,
        rule: &Arc<Rule>,
        diff: &mut ListingDiff,
        mut batches: mpsc::Receiver<walk::Walked>,
        report: &mut PollReport,
    ) -> Result<(), FileError> {
        while let Some(batch) = batches.recv().await {
            for x in batch.refused {
                diff.refuse(x);
            }
            for f in batch.files {
                self.push(rule, diff, f, report).await?;
            }
        }
        Ok(())
    }

    /// One file into the diff, and what the chunk it completed changed.
    async fn push(
        &self,
        rule: &Rule,
        diff: &mut ListingDiff,
        file: Listed,
        report: &mut PollReport,
    ) -> Result<(), FileError> {
        if let Some(out) = diff.push(file).await? {
            self.took(rule, out, report).await;
        }
        Ok(())
    }

    /// Logs what a chunk of the listing changed, one event per state
    /// change, and removes the partial transfers of versions it replaced.
    async fn took(&self, rule: &Rule, out: ListingOutcome, report: &mut PollReport) {
        for f in out.new.iter().chain(&out.changed) {
            tracing::info!(state = "seen", path = %f.path, size = f.size, mtime = f.mtime, "seen");
        }
        report.failed += out.refused.len();
        for x in &out.refused {
            tracing::error!(state = "failed", path = %x.file.path, error = %x.error, "cannot take this file");
        }
        match &rule.send {
            None => {
                for v in &out.superseded {
                    target::discard_partial(rule, &self.spool_dir, v);
                }
            }
            Some(to) if !out.superseded.is_empty() => {
                if let Ok(mut session) = self.pool_for(&to.server).get().await {
                    upload::discard_partials(&mut session, to, &out.superseded).await;
                }
            }
            Some(_) => {}
        }
        for path in &out.vanished {
            tracing::error!(state = "failed", path = %path, "disappeared from the server before it was delivered");
        }
        for path in &out.deferred {
            tracing::info!(path = %path, "changed or gone while another node works on it; looked at again once it is done");
        }
    }
}
