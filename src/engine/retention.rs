//! What failed files leave on local disk: a partial download under its
//! temporary name in `local_dir`, or a handler-only rule's spool copy. They
//! are kept while an operator may still `ferry retry` the file (it resumes
//! from them) and removed once the row has been failed for longer than
//! `daemon.retention`. The row itself stays: failed rows are never pruned.

use super::{Engine, target};
use crate::config::Rule;
use crate::state::now_ms;
use std::time::{Duration, Instant};

/// How often a rule's failed files are looked at.
const EVERY: Duration = Duration::from_secs(3600);

impl Engine {
    /// At the first poll of `rule` after a start, then hourly.
    pub(super) async fn clean_failed_leftovers(&self, rule: &Rule) {
        let Some(retention) = self.retention else {
            return;
        };
        if rule.send.is_some() {
            return;
        }
        {
            let mut last = self.cleaned.lock().expect("cleaned lock");
            if last.get(&rule.name).is_some_and(|t| t.elapsed() < EVERY) {
                return;
            }
            last.insert(rule.name.clone(), Instant::now());
        }
        let cutoff = now_ms() - retention.as_millis() as i64;
        let rows = match self.state.failed_before(&rule.name, cutoff).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up failed files for retention");
                return;
            }
        };
        for row in rows {
            let Some(path) = target::leftover(rule, &self.spool_dir, &row) else {
                continue;
            };
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {
                    tracing::info!(path = %row.path, id = row.id, leftover = %path.display(), "removed what a failed file left, after daemon.retention")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(leftover = %path.display(), error = %e, "cannot remove what a failed file left")
                }
            }
        }
    }
}
