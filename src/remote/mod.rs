//! The one interface the engine uses to reach a server. Each protocol lives
//! in its own folder behind [`Transport`] and [`Session`]; only [`choose`]
//! looks at the configured protocol.

mod error;
pub mod ftp;
pub mod local;
mod pool;
pub mod proxy;
pub mod sftp;

pub use error::{ErrorKind, RemoteError, Result};
pub use pool::{Pool, PooledSession};

use crate::config::{Protocol, Server};
use async_trait::async_trait;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One directory entry as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name within its directory (no `/`).
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Modification time, Unix seconds (UTC).
    pub mtime: i64,
    pub link_target: Option<String>,
}

/// Opens sessions to one server.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn connect(&self) -> Result<Box<dyn Session>>;
}

/// One open connection. Paths are absolute on the server, `/`-separated.
/// Reads and writes push bytes through the caller's stream so each protocol
/// can pipeline and finish its transfer in its own way.
#[async_trait]
pub trait Session: Send {
    /// Entries of one directory, without `.` and `..`.
    async fn list(&mut self, dir: &str) -> Result<Vec<Entry>>;
    async fn stat(&mut self, path: &str) -> Result<Entry>;
    /// Copies the file from byte `offset` to its end into `sink`; returns bytes copied.
    async fn read_into(
        &mut self,
        path: &str,
        offset: u64,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64>;
    /// The whole of a small file that the listing reported as `size` bytes,
    /// in memory. The result is longer or shorter than `size` when the file
    /// changed; the caller checks. Transports that can use the known size
    /// to save round trips override this.
    async fn read_whole(&mut self, path: &str, size: u64) -> Result<Vec<u8>> {
        let mut data = Vec::with_capacity(size as usize);
        self.read_into(path, 0, &mut data).await?;
        Ok(data)
    }
    /// [`Session::read_whole`] for several files, answers in order. Transports
    /// whose protocol can have many requests in flight on one session
    /// override this; the default reads the files one after another.
    async fn read_wholes(&mut self, files: &[(String, u64)]) -> Vec<Result<Vec<u8>>> {
        let mut out = Vec::with_capacity(files.len());
        for (path, size) in files {
            out.push(self.read_whole(path, *size).await);
        }
        out
    }
    /// Writes `source` to `path`, replacing it or (with `append`) adding to its end.
    async fn write_from(
        &mut self,
        path: &str,
        append: bool,
        source: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64>;
    /// Renames `from` to `to`. With `replace`, an existing `to` is replaced
    /// (atomically where the protocol allows); without it the rename fails
    /// with `AlreadyExists`, so an archive is never overwritten.
    async fn rename(&mut self, from: &str, to: &str, replace: bool) -> Result<()>;
    async fn remove(&mut self, path: &str) -> Result<()>;
    /// Creates `dir` and its missing parents.
    async fn create_dirs(&mut self, dir: &str) -> Result<()>;
    /// False once the connection is known to be gone: the pool drops it.
    fn is_alive(&self) -> bool {
        true
    }
    /// How the server proved who it is (host key, certificate), for
    /// `ferry test-connection`.
    fn identity(&self) -> Option<String> {
        None
    }
}

/// Maps a `[servers.NAME]` block to its transport: the only `match` on protocol.
pub fn choose(server: &Arc<Server>) -> Arc<dyn Transport> {
    match server.protocol {
        Protocol::Local => Arc::new(local::LocalTransport),
        Protocol::Sftp => Arc::new(sftp::SftpTransport {
            server: server.clone(),
        }),
        Protocol::Ftp | Protocol::Ftps | Protocol::FtpsImplicit => {
            Arc::new(ftp::FtpTransport::new(server.clone()))
        }
    }
}

/// Joins a directory and a relative path with exactly one `/`.
pub fn join(dir: &str, rel: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{rel}")
    } else {
        format!("{dir}/{rel}")
    }
}

/// The directory part of a `/`-separated path (`/` for top-level names).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_parent() {
        assert_eq!(join("/a", "b/c"), "/a/b/c");
        assert_eq!(join("/", "b"), "/b");
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(parent("/c"), "/");
    }
}
