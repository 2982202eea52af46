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
pub use pool::{Pool, PooledSession, Slot};

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
    /// The name within its directory (no `/`). See `invalid_name`.
    pub name: String,
    pub kind: EntryKind,
    /// `None` when the server did not say (SFTP attributes without the size
    /// flag, MLSD without a `size` fact): such a file is read to its end,
    /// never taken for empty.
    pub size: Option<u64>,
    /// Modification time, Unix seconds (UTC).
    pub mtime: i64,
    pub link_target: Option<String>,
    /// The name is not valid UTF-8. `name` shows it with the invalid bytes
    /// escaped as `\xNN` ([`escape_name`], every protocol alike), so it
    /// names the file for people but cannot open it.
    pub invalid_name: bool,
    /// The listing gave a date without a time (UNIX LIST for files older
    /// than six months, where MDTM is not offered): `mtime` is that day's
    /// start, and a version recorded with a time on that day is the same.
    pub date_only: bool,
}

impl Entry {
    pub fn version(&self) -> Version {
        Version {
            size: self.size,
            mtime: self.mtime,
        }
    }
}

/// What [`Session::remove_unchanged`] did with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// Not there any more: nothing to remove.
    Gone,
    /// Another version is there now: left alone.
    Changed,
}

/// The version of a file that a read expects: what the listing reported.
/// Reads stop one byte past `size`, so a file that grew shows it without
/// being read to its new end; transports that can also check the mtime of
/// the file they opened (local) refuse another version outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// `None`: unknown, read to the end of the file.
    pub size: Option<u64>,
    /// Unix seconds.
    pub mtime: i64,
}

impl Version {
    /// The most bytes a read from `offset` takes: up to one past the
    /// expected end. `None` (unknown size): to the end of the file.
    pub fn read_limit(&self, offset: u64) -> Option<u64> {
        self.size.map(|s| (s + 1).saturating_sub(offset))
    }
}

/// Why a listed file with an [`Entry::invalid_name`] fails.
pub const NOT_UTF8: &str = "name is not valid UTF-8";

/// A file name as UTF-8 text: valid parts as they are, each invalid byte as
/// `\xNN`. Returns whether anything was escaped.
pub fn escape_name(bytes: &[u8]) -> (String, bool) {
    let mut out = String::with_capacity(bytes.len());
    let mut escaped = false;
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
            escaped = true;
        }
    }
    (out, escaped)
}

/// Where a write puts its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create the file, or empty an existing one first.
    Replace,
    /// Create a file under a name no earlier attempt wrote (a new row's
    /// temporary name). Where the file exists after all, a transport may
    /// empty it or append to it: the caller checks the size afterwards.
    /// FTP sends APPE, not STOR: vsftpd empties a STOR's file with
    /// `ftruncate`, which makes ext4 allocate and start writing all of the
    /// file in its `close`, and answers nothing until that is done (0.4-0.5
    /// s per GiB; about 0.1 ms of server CPU per small file).
    Fresh,
    /// After the current end of the file (created when missing).
    Append,
    /// From this offset, keeping what is before it: a resumed upload.
    /// `At(0)` on a missing file creates it.
    At(u64),
}

impl WriteMode {
    /// Whether the file is emptied first where it exists: a transport that
    /// does not append for [`WriteMode::Fresh`] writes it as `Replace`.
    pub fn truncates(self) -> bool {
        matches!(self, WriteMode::Replace | WriteMode::Fresh)
    }
}

/// Opens sessions to one server.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn connect(&self) -> Result<Box<dyn Session>>;
}

/// [`Session::list`] for a transport that streams: every batch
/// `list_batches` sends, gathered.
pub(crate) async fn gather<T, F, Fut>(list_batches: F) -> Result<Vec<T>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Vec<T>>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let gathered = async {
        let mut all = Vec::new();
        while let Some(mut batch) = rx.recv().await {
            all.append(&mut batch);
        }
        all
    };
    let (listed, all) = tokio::join!(list_batches(tx), gathered);
    listed.map(|()| all)
}

/// [`Session::file_size`] of each path in turn: the default of
/// [`Session::file_sizes`], and what a transport falls back to where it
/// cannot ask for several at once.
pub async fn sizes_one_by_one<S: Session + ?Sized>(
    s: &mut S,
    paths: &[&str],
) -> Vec<Result<Option<u64>>> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        out.push(s.file_size(path).await);
    }
    out
}

/// One open connection. Paths are absolute on the server, `/`-separated.
/// Reads and writes push bytes through the caller's stream so each protocol
/// can pipeline and finish its transfer in its own way.
#[async_trait]
pub trait Session: Send {
    /// Entries of one directory, without `.` and `..`.
    async fn list(&mut self, dir: &str) -> Result<Vec<Entry>>;
    /// [`Session::list`] in batches, sent to `out` as the server hands
    /// them over, so that a large directory is never held whole. Stops,
    /// without an error, once `out`'s receiver is gone. The default sends
    /// the whole listing as one batch (as FTP does with a `LIST`, whose
    /// times are refined with `MDTM` once it is complete).
    async fn list_batches(
        &mut self,
        dir: &str,
        out: tokio::sync::mpsc::Sender<Vec<Entry>>,
    ) -> Result<()> {
        let entries = self.list(dir).await?;
        let _ = out.send(entries).await;
        Ok(())
    }
    async fn stat(&mut self, path: &str) -> Result<Entry>;
    /// The size of the file at `path` (`None`: the server does not say),
    /// to check an upload. The default asks [`Session::stat`]; FTP asks
    /// `SIZE` alone where a stat takes `SIZE` and `MDTM`.
    async fn file_size(&mut self, path: &str) -> Result<Option<u64>> {
        self.stat(path).await.map(|e| e.size)
    }
    /// Copies the file from byte `offset` into `sink`, up to the end of the
    /// file but never more than [`Version::read_limit`]: one byte past the
    /// expected size, so the caller sees that a file grew without the
    /// transport reading (or holding) its new end. Returns bytes copied.
    async fn read_into(
        &mut self,
        path: &str,
        offset: u64,
        expected: Version,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64>;
    /// Copies at most `len` bytes from byte `offset` into `sink`, fewer
    /// only where the file ends first: one range of a segmented download
    /// (`engine/segments.rs`), several of which run at once on sessions of
    /// their own. Only transports that say so in
    /// [`Session::reads_ranges`] implement it.
    async fn read_range(
        &mut self,
        path: &str,
        _offset: u64,
        _len: u64,
        _sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        Err(RemoteError::new(
            ErrorKind::ResumeRefused,
            false,
            format!("read a range of {path}"),
            "this transport reads no ranges",
        ))
    }
    /// Whether [`Session::read_range`] works here: the file can be read
    /// in parallel ranges on several sessions.
    fn reads_ranges(&self) -> bool {
        false
    }
    /// The whole of a small file, in memory: at most its expected size plus
    /// one byte, so a file that grew to gigabytes since the listing costs
    /// no more. The result is longer or shorter than expected when the file
    /// changed; the caller checks. Transports that can use the known size
    /// to save round trips override this.
    async fn read_whole(&mut self, path: &str, expected: Version) -> Result<Vec<u8>> {
        let mut data = Vec::with_capacity(expected.read_limit(0).unwrap_or(0) as usize);
        self.read_into(path, 0, expected, &mut data).await?;
        Ok(data)
    }
    /// [`Session::read_whole`] for several files, answers in order. Transports
    /// whose protocol can have many requests in flight on one session
    /// override this; the default reads the files one after another.
    async fn read_wholes(&mut self, files: &[(String, Version)]) -> Vec<Result<Vec<u8>>> {
        let mut out = Vec::with_capacity(files.len());
        for (path, expected) in files {
            out.push(self.read_whole(path, *expected).await);
        }
        out
    }
    /// Writes `source` to `path` as `mode` says. Returns bytes written.
    async fn write_from(
        &mut self,
        path: &str,
        mode: WriteMode,
        source: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64>;
    /// Whether [`Session::write_file`] works here: a local file's bytes go
    /// to the server without passing through ferry's buffers.
    fn splices(&self) -> bool {
        false
    }
    /// [`Session::write_from`] for `len` bytes of a local `file` from byte
    /// `offset`, moved by the kernel (sendfile), under `throttle`. Only
    /// where [`Session::splices`] says so.
    #[allow(clippy::too_many_arguments)]
    async fn write_file(
        &mut self,
        path: &str,
        _mode: WriteMode,
        _file: &std::fs::File,
        _offset: u64,
        _len: u64,
        _throttle: &crate::bandwidth::Throttle,
    ) -> Result<u64> {
        Err(RemoteError::new(
            ErrorKind::Other,
            false,
            format!("write {path}"),
            "this transport cannot send a file by sendfile",
        ))
    }
    /// Writes several small files whole, each as `mode` says (`Replace` or
    /// `Fresh`), and returns for each the size the server reports afterwards
    /// (`None`: it did not say), for the caller's size check; answers in
    /// order. Transports whose protocol can have many requests in flight on
    /// one session override this; the default writes one after another,
    /// then asks the sizes of those written ([`Session::file_sizes`]).
    async fn write_wholes(
        &mut self,
        files: &[(String, Vec<u8>)],
        mode: WriteMode,
    ) -> Vec<Result<Option<u64>>> {
        let mut out = Vec::with_capacity(files.len());
        for (path, data) in files {
            let written = self.write_from(path, mode, &mut &data[..]).await;
            out.push(written.map(|_| None));
        }
        let written: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_ok()).collect();
        let paths: Vec<&str> = written.iter().map(|&i| files[i].0.as_str()).collect();
        for (i, size) in written.into_iter().zip(self.file_sizes(&paths).await) {
            out[i] = size;
        }
        out
    }
    /// [`Session::file_size`] of each path, in order; transports that can
    /// ask for several at once (FTP, `remote/ftp/sizes.rs`) override it.
    async fn file_sizes(&mut self, paths: &[&str]) -> Vec<Result<Option<u64>>> {
        sizes_one_by_one(self, paths).await
    }
    /// Sets the modification time (Unix seconds) of `path`. `Ok(false)`:
    /// the server offers no way to (FTP without `MFMT`).
    async fn set_mtime(&mut self, path: &str, mtime: i64) -> Result<bool>;
    /// Renames `from` to `to`. With `replace`, an existing `to` is replaced
    /// (atomically where the protocol allows); without it the rename fails
    /// with `AlreadyExists`, so an archive is never overwritten.
    async fn rename(&mut self, from: &str, to: &str, replace: bool) -> Result<()>;
    /// Renames many files, each as [`Session::rename`] would, with one
    /// answer per pair in order. A batch of small uploads ends with one
    /// rename each: where the protocol lets requests be in flight together
    /// (SFTP), a transport sends them at once instead of one round trip at
    /// a time. The default renames one after another.
    async fn renames(&mut self, pairs: &[(String, String)], replace: bool) -> Vec<Result<()>> {
        let mut out = Vec::with_capacity(pairs.len());
        for (from, to) in pairs {
            out.push(self.rename(from, to, replace).await);
        }
        out
    }
    async fn remove(&mut self, path: &str) -> Result<()>;
    /// Removes each file that is still the version given, with one answer
    /// per file in order: the post-action `delete` of a batch. A file whose
    /// version differs is left for the next poll, one already gone is
    /// reported so. The default checks and removes one after another; the
    /// local transport does a batch in one blocking call instead of two
    /// thread hand-offs per file.
    async fn remove_unchanged(&mut self, files: &[(String, Version)]) -> Vec<Result<Removal>> {
        let mut out = Vec::with_capacity(files.len());
        for (path, version) in files {
            let r = match self.stat(path).await {
                Err(e) if e.kind == ErrorKind::NotFound => Ok(Removal::Gone),
                Err(e) => Err(e),
                Ok(e) if e.version() != *version => Ok(Removal::Changed),
                Ok(_) => match self.remove(path).await {
                    Ok(()) => Ok(Removal::Removed),
                    Err(e) if e.kind == ErrorKind::NotFound => Ok(Removal::Gone),
                    Err(e) => Err(e),
                },
            };
            out.push(r);
        }
        out
    }
    /// The server's own digest of `path` (SHA-256 where it offers it, else
    /// MD5), for `verify = "server"`. `Ok(None)`: this server has no way
    /// to give one (the default).
    async fn server_digest(
        &mut self,
        _path: &str,
    ) -> Result<Option<crate::engine::digest::Expected>> {
        Ok(None)
    }
    /// Creates `dir` and its missing parents.
    async fn create_dirs(&mut self, dir: &str) -> Result<()>;
    /// False once the connection is known to be gone: the pool drops it.
    fn is_alive(&self) -> bool {
        true
    }
    /// One round trip that shows an idle connection still answers. The
    /// pool asks it of a session that sat idle a while before lending it
    /// again, so a connection the server or a NAT dropped meanwhile costs
    /// a reconnect, not a failed poll. The default trusts
    /// [`Session::is_alive`] (FTP sends its own NOOP after a pause).
    async fn probe(&mut self) -> bool {
        self.is_alive()
    }
    /// Ends the session the way the protocol says (SSH: close the channel,
    /// then disconnect), so the server logs a goodbye, not a dropped socket.
    /// The default just lets it drop.
    async fn close(&mut self) {}
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

/// An absolute `/`-separated path with `//`, `/./`, `..` and a trailing
/// `/` resolved lexically, so that one directory is always one string.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
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

    #[test]
    fn names_escape_only_invalid_bytes() {
        assert_eq!(
            escape_name("é.csv".as_bytes()),
            ("é.csv".to_string(), false)
        );
        assert_eq!(
            escape_name(b"a\xff\xfe.csv"),
            ("a\\xff\\xfe.csv".to_string(), true)
        );
    }

    #[test]
    fn reads_stop_one_byte_past_the_expected_size() {
        let v = |size| Version { size, mtime: 0 };
        assert_eq!(v(Some(10)).read_limit(0), Some(11));
        assert_eq!(v(Some(10)).read_limit(10), Some(1));
        assert_eq!(v(Some(10)).read_limit(20), Some(0));
        assert_eq!(v(None).read_limit(5), None);
    }

    #[test]
    fn one_directory_one_string() {
        assert_eq!(normalize("/x//archive/"), "/x/archive");
        assert_eq!(normalize("/x/./a/../b"), "/x/b");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("//"), "/");
    }
}
