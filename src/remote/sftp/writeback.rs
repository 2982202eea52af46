//! Early writeback of a large upload on the server.
//!
//! An upload is fsynced on the server before its rename, so the final name
//! never shows bytes a server crash could still lose. For a large file
//! that fsync is a long wait at the end: the server's kernel holds the
//! whole file in its page cache until asked (0.38 s per GiB on the bench's
//! disk, all of it after the last byte). Fsyncs along the way, sent on a
//! second SFTP channel (on OpenSSH a second `sftp-server`, so they never
//! hold up the writes on the first), let the disk write while the network
//! carries the rest, and leave the final fsync only the last stretch.
//! Best effort: whatever happens here, the final fsync on the writing
//! handle is still the guarantee.

use super::connect::Connected;
use super::wire::{Attrs, Client, open};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// An early fsync after each this many acknowledged bytes: small files
/// never open the second channel, and a gigabyte gets fifteen.
pub const EVERY: u64 = 64 * 1024 * 1024;

pub struct Writeback<'c> {
    c: &'c Connected,
    path: &'c str,
    /// Acknowledged bytes at which the next early fsync is due;
    /// `u64::MAX` once the second channel could not be had.
    next: u64,
    /// The second channel while it opens: polled as the writes go on, so
    /// a slow server delays no write.
    opening: Option<BoxFuture<'c, Option<Arc<Client>>>>,
    second: Option<Arc<Client>>,
    running: Option<JoinHandle<()>>,
}

impl<'c> Writeback<'c> {
    /// `None` where there is no fsync to start early (not offered, or the
    /// server's `fsync = false`).
    pub fn new(c: &'c Connected, path: &'c str) -> Option<Self> {
        c.fsyncs().then_some(Writeback {
            c,
            path,
            next: EVERY,
            opening: None,
            second: None,
            running: None,
        })
    }

    /// Told how many bytes the server has acknowledged; starts an fsync of
    /// them on the second channel when one is due and the last one has
    /// ended. Never waits: the fsync runs on by itself.
    pub fn acknowledged(&mut self, bytes: u64) {
        if let Some(opening) = &mut self.opening {
            let Some(second) = opening.now_or_never() else {
                return;
            };
            self.opening = None;
            match second {
                Some(s) => self.second = Some(s),
                None => self.next = u64::MAX,
            }
        }
        if bytes < self.next || self.running.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Some(second) = self.second.clone() else {
            self.opening = Some(Box::pin(self.c.second_channel()));
            return;
        };
        self.next = bytes + EVERY;
        let path = self.path.as_bytes().to_vec();
        self.running = Some(tokio::spawn(async move {
            let synced = async {
                let h = second.open(&path, open::READ, &Attrs::default()).await?;
                let r = second.fsync(&h).await;
                let _ = second.close(&h).await;
                r
            };
            match synced.await {
                Ok(()) => tracing::debug!(bytes, "early fsync on the second channel"),
                Err(e) => tracing::debug!(error = %e, "early fsync on the second channel failed"),
            }
        }));
    }

    /// Lets a second channel still opening finish (within its timeout), so
    /// that no half-open channel is left behind on the server.
    pub async fn finish(self) {
        if let Some(opening) = self.opening {
            opening.await;
        }
    }
}
