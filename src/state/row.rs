//! A file's row and the states it moves through.

use crate::remote::Version;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Where a file version is in the pipeline. The order of the crash-safe
/// steps: `downloaded` (whole and fsynced under its temporary name) before
/// the rename, `delivered` before the remote post-action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    Seen,
    Stable,
    Downloading,
    Downloaded,
    Delivered,
    Done,
    Failed,
    /// Send with `if_exists = "skip"`: the server already had the name, so
    /// nothing was sent; the file stays in the outbox.
    Skipped,
}

impl FileState {
    pub const ALL: [FileState; 8] = [
        FileState::Seen,
        FileState::Stable,
        FileState::Downloading,
        FileState::Downloaded,
        FileState::Delivered,
        FileState::Done,
        FileState::Failed,
        FileState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Seen => "seen",
            FileState::Stable => "stable",
            FileState::Downloading => "downloading",
            FileState::Downloaded => "downloaded",
            FileState::Delivered => "delivered",
            FileState::Done => "done",
            FileState::Failed => "failed",
            FileState::Skipped => "skipped",
        }
    }

    /// Not yet taken: a new version of the file may replace this one in place.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            FileState::Seen | FileState::Stable | FileState::Downloading
        )
    }
}

impl fmt::Display for FileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FileState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = FileState::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state \"{s}\" (one of: {})", all.join(", "))
            })
    }
}

/// Which way a rule moves files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From a server into `local_dir` or a handler (`[[watch]]`).
    Listen,
    /// From a local outbox to a server (`[[send]]`).
    Send,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Listen, Direction::Send];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Listen => "listen",
            Direction::Send => "send",
        }
    }
}

impl FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Direction::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("unknown direction \"{s}\" (one of: listen, send)"))
    }
}

impl TryFrom<String> for Direction {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FileRow {
    pub id: i64,
    pub rule: String,
    #[sqlx(try_from = "String")]
    pub direction: Direction,
    /// Relative to the rule's `remote_dir` (listen) or outbox (send).
    pub path: String,
    pub size: i64,
    pub mtime: i64,
    #[sqlx(try_from = "String")]
    pub state: FileState,
    pub first_seen_ms: i64,
    pub stable_since_ms: i64,
    /// Attempts started, stops and restarts included (FERRY_ATTEMPT).
    pub attempts: i64,
    /// Failed attempts, counted against `retry.attempts`.
    pub failures: i64,
    pub next_attempt_ms: Option<i64>,
    pub bytes_done: i64,
    /// The final name chosen for the file, recorded before the rename.
    pub local_path: Option<String>,
    /// The inode of the fsynced temporary file, which the final file keeps.
    pub local_inode: Option<i64>,
    /// Why a pending file waits without spending attempts, if it does.
    pub held: Option<String>,
    /// Where `failed_move_to` put the file on the server.
    pub failed_moved_to: Option<String>,
    /// Send: the remote path chosen for the file, recorded before the rename.
    pub sent_to: Option<String>,
    /// Send with `append`: the remote file's size before the first byte.
    pub append_base: Option<i64>,
    /// SHA-256 (lowercase hex) of the bytes moved, recorded with
    /// `downloaded` (migration 0008).
    pub sha256: Option<String>,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
    pub done_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

impl FileRow {
    /// The version this row records, as a read expects it.
    pub fn version(&self) -> Version {
        Version {
            size: size_from_db(self.size),
            mtime: self.mtime,
        }
    }
}

/// Sizes are stored as integers, an unknown one (the server did not say)
/// as -1: never 0, which would pass for an empty file.
pub fn size_to_db(size: Option<u64>) -> i64 {
    size.map_or(-1, |s| s as i64)
}

pub fn size_from_db(size: i64) -> Option<u64> {
    u64::try_from(size).ok()
}

impl TryFrom<String> for FileState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in FileState::ALL {
            assert_eq!(s.as_str().parse::<FileState>().unwrap(), s);
        }
        assert!("gone".parse::<FileState>().unwrap_err().contains("one of"));
    }
}
