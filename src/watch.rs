//! Events from a local directory (inotify, through notify) that tell a
//! rule when a file is complete, on top of its periodic rescans. Events
//! can be lost (queue overflow, network file systems that have none), so
//! they only ever speed things up or hold a file back while it is being
//! written; the rescan with `stable_for` still decides where there are none.
//!
//! - a file renamed or moved in (`IN_MOVED_TO`) is complete at once;
//! - a file written in place is complete `stable_for` after its last
//!   `IN_CLOSE_WRITE`, and held back while writes come in after that;
//! - a file that appears whole (`IN_CREATE` without writes: a hard link,
//!   as ferry's own delivery makes) is complete `stable_for` after it
//!   appeared;
//! - a file without events is judged by the rescan alone.

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What the events said about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Written to since its last close: not complete.
    Writing,
    /// Closed after writing at this instant.
    Closed(Instant),
    /// Renamed or moved into the directory: complete.
    Moved,
}

/// Whether a pending file may go now, by its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    Now,
    /// Not yet; look again after this long (`None`: when events say so).
    Later(Option<Duration>),
    /// No events seen: the rescan's `stable_for` decides.
    Unknown,
}

/// A running watch on one directory (and its subdirectories).
pub struct DirWatch {
    root: PathBuf,
    marks: Arc<Mutex<HashMap<String, Mark>>>,
    wake: Arc<Notify>,
    _watcher: notify::RecommendedWatcher,
}

impl DirWatch {
    /// Starts watching `root`. Fails where the file system or the inotify
    /// limits do not allow it; the caller then relies on rescans.
    pub fn start(root: &Path, recursive: bool) -> notify::Result<Self> {
        let marks: Arc<Mutex<HashMap<String, Mark>>> = Arc::default();
        let wake = Arc::new(Notify::new());
        let (m, w, base) = (marks.clone(), wake.clone(), root.to_path_buf());
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let Ok(event) = res else {
                    // An error (e.g. the queue overflowed): rescan now.
                    w.notify_one();
                    return;
                };
                if event.need_rescan() {
                    w.notify_one();
                }
                let mark = match event.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                        Some(Mark::Closed(Instant::now()))
                    }
                    EventKind::Modify(ModifyKind::Data(_)) => Some(Mark::Writing),
                    // Writes that follow turn this into `Writing`.
                    EventKind::Create(CreateKind::File) => Some(Mark::Closed(Instant::now())),
                    EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(Mark::Moved),
                    EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                        // paths = [from, to]: the new name is complete.
                        if let Some(to) = event.paths.get(1).and_then(|p| relative(&base, p)) {
                            m.lock().expect("marks lock").insert(to, Mark::Moved);
                            w.notify_one();
                        }
                        None
                    }
                    _ => None,
                };
                let Some(mark) = mark else { return };
                let mut wake_now = matches!(mark, Mark::Moved | Mark::Closed(_));
                for p in &event.paths {
                    if let Some(rel) = relative(&base, p) {
                        let mut marks = m.lock().expect("marks lock");
                        // A write after a move means the mover reopened it.
                        if mark == Mark::Writing && marks.get(&rel) == Some(&Mark::Moved) {
                            wake_now = false;
                        }
                        marks.insert(rel, mark);
                    }
                }
                if wake_now {
                    w.notify_one();
                }
            })?;
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher.watch(root, mode)?;
        Ok(Self {
            root: root.to_path_buf(),
            marks,
            wake,
            _watcher: watcher,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves when an event says a poll is worth doing.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Whether the file at `rel` (relative to the root) may go now.
    pub fn ready(&self, rel: &str, stable_for: Duration) -> Ready {
        match self.marks.lock().expect("marks lock").get(rel) {
            None => Ready::Unknown,
            Some(Mark::Moved) => Ready::Now,
            Some(Mark::Writing) => Ready::Later(None),
            Some(Mark::Closed(at)) => {
                let quiet = at.elapsed();
                if quiet >= stable_for {
                    Ready::Now
                } else {
                    Ready::Later(Some(stable_for - quiet))
                }
            }
        }
    }

    /// Forgets marks of files no longer listed, so marks stay as many as
    /// the files in the directory.
    pub fn retain(&self, listed: impl Fn(&str) -> bool) {
        self.marks
            .lock()
            .expect("marks lock")
            .retain(|k, _| listed(k));
    }
}

fn relative(root: &Path, p: &Path) -> Option<String> {
    let rel = p.strip_prefix(root).ok()?;
    let s = rel.to_str()?;
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    #[tokio::test]
    async fn moves_are_complete_at_once_writes_after_close_and_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let w = DirWatch::start(dir.path(), false).unwrap();
        let stable = Duration::from_millis(300);

        std::fs::write(dir.path().join("elsewhere"), b"x").unwrap();
        settle().await;
        std::fs::rename(dir.path().join("elsewhere"), dir.path().join("moved.csv")).unwrap();
        settle().await;
        assert_eq!(w.ready("moved.csv", stable), Ready::Now);

        use std::io::Write;
        let mut f = std::fs::File::create(dir.path().join("slow.csv")).unwrap();
        f.write_all(b"part one").unwrap();
        settle().await;
        assert_eq!(w.ready("slow.csv", stable), Ready::Later(None));
        drop(f);
        settle().await;
        assert!(matches!(w.ready("slow.csv", stable), Ready::Later(Some(_))));
        tokio::time::sleep(stable).await;
        assert_eq!(w.ready("slow.csv", stable), Ready::Now);

        assert_eq!(w.ready("never-seen.csv", stable), Ready::Unknown);
    }
}
