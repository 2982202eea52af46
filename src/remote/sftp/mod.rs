//! The `sftp` transport: SSH through russh, file operations through
//! ferry's own SFTP v3 client (`wire/`), which keeps handles and names as
//! bytes, pipelines reads and writes, and uses the OpenSSH extensions
//! (posix-rename, fsync, limits) when offered.

mod connect;
mod error;
mod exec;
mod hostkey;
mod progress;
mod transfer;
mod wire;
mod writeback;

use super::{
    Entry, EntryKind, ErrorKind, RemoteError, Result, Session, Transport, Version, WriteMode,
    escape_name,
};
use crate::config::Server;
use async_trait::async_trait;
use connect::Connected;
use futures::StreamExt;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::Sender;
use wire::{Attrs, NameEntry, status};

const POSIX_RENAME: &str = "posix-rename@openssh.com";

pub struct SftpTransport {
    pub server: Arc<Server>,
}

#[async_trait]
impl Transport for SftpTransport {
    async fn connect(&self) -> Result<Box<dyn Session>> {
        let c = connect::open(&self.server).await?;
        tracing::debug!(server = %self.server.name, host_key = %c.host_key, "sftp session open");
        Ok(Box::new(SftpSession {
            c,
            follow_symlinks: self.server.sftp.follow_symlinks,
            exec_checksum: self.server.sftp.exec_checksum,
            io_timeout: self.server.io_timeout,
        }))
    }
}

pub struct SftpSession {
    c: Connected,
    follow_symlinks: bool,
    /// `exec_checksum`: digests by `sha256sum` over an exec channel.
    exec_checksum: bool,
    io_timeout: std::time::Duration,
}

const S_IFMT: u32 = 0o170_000;

fn entry(name: &[u8], attrs: &Attrs, link_target: Option<String>) -> Entry {
    let kind = match attrs.permissions.map(|p| p & S_IFMT) {
        Some(0o040_000) => EntryKind::Dir,
        Some(0o100_000) => EntryKind::File,
        Some(0o120_000) => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    // A name that is not UTF-8 is shown escaped and flagged; the engine
    // records it as failed without touching it, and its neighbours go on.
    let (name, invalid_name) = escape_name(name);
    Entry {
        kind,
        size: attrs.size,
        mtime: i64::from(attrs.mtime().unwrap_or(0)),
        link_target,
        invalid_name,
        date_only: false,
        name,
    }
}

/// `dir/name` as the server's bytes, so a name that is not UTF-8 still
/// reaches its file.
fn join_bytes(dir: &str, name: &[u8]) -> Vec<u8> {
    let mut p = dir.trim_end_matches('/').as_bytes().to_vec();
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn already_exists(ctx: &str) -> RemoteError {
    RemoteError::new(
        ErrorKind::AlreadyExists,
        false,
        format!("rename {ctx}"),
        "target exists",
    )
}

impl SftpSession {
    /// Lists `dir` a `READDIR` reply at a time (about a hundred names
    /// each from OpenSSH), each reply sent on as soon as it came.
    async fn read_dir(&self, dir: &str, out: &Sender<Vec<Entry>>) -> Result<()> {
        let (c, sftp) = (&self.c, &self.c.sftp);
        let handle = c
            .io(sftp.opendir(dir.as_bytes()))
            .await
            .map_err(|e| error::sftp("list", dir, e))?;
        let result = loop {
            match c.io(sftp.readdir(&handle)).await {
                Ok(Some(names)) => {
                    let entries = self.entries(dir, names).await;
                    if out.send(entries).await.is_err() {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(error::sftp("list", dir, e)),
            }
        };
        let _ = c.io(sftp.close(&handle)).await;
        result
    }

    /// One reply's names as entries, symlinks followed.
    async fn entries(&self, dir: &str, names: Vec<NameEntry>) -> Vec<Entry> {
        let mut out = Vec::with_capacity(names.len());
        for f in names {
            if f.name == b"." || f.name == b".." {
                continue;
            }
            let e = entry(&f.name, &f.attrs, None);
            let e = if e.kind == EntryKind::Symlink {
                self.follow(&join_bytes(dir, &f.name), &f.name, &f.attrs)
                    .await
            } else {
                e
            };
            out.push(e);
        }
        out
    }

    /// A symlink as what it points to; a dangling one stays a symlink.
    async fn follow(&self, path: &[u8], name: &[u8], attrs: &Attrs) -> Entry {
        let target = self
            .c
            .io(self.c.sftp.readlink(path))
            .await
            .ok()
            .map(|t| escape_name(&t).0);
        if self.follow_symlinks
            && let Ok(a) = self.c.io(self.c.sftp.stat(path)).await
        {
            return entry(name, &a, target);
        }
        entry(name, attrs, target)
    }

    /// Whether `path` exists; `None` when the server will not say
    /// (permission denied on the lstat itself).
    async fn exists(&self, path: &str) -> Result<Option<bool>> {
        match self.c.io(self.c.sftp.lstat(path.as_bytes())).await {
            Ok(_) => Ok(Some(true)),
            Err(e) if e.is_status(status::NO_SUCH_FILE) => Ok(Some(false)),
            Err(e) if e.is_status(status::PERMISSION_DENIED) => Ok(None),
            Err(e) => Err(error::sftp("stat", path, e)),
        }
    }

    /// One rename; takes `&self` so that many can be in flight together
    /// ([`Session::renames`]).
    async fn rename_one(&self, from: &str, to: &str, replace: bool) -> Result<()> {
        if replace && self.c.has(POSIX_RENAME) {
            return self.posix_rename(from, to).await;
        }
        let ctx = format!("{from} -> {to}");
        // The check keeps servers that let a plain rename replace a file
        // (against the protocol) from overwriting an archive. A server that
        // will not stat the target leaves the decision to its rename.
        if self.exists(to).await? == Some(true) {
            if !replace {
                return Err(already_exists(&ctx));
            }
            // Without posix-rename the replacement is two steps: a crash
            // between them leaves the target missing, never half-written.
            self.c
                .io(self.c.sftp.remove(to.as_bytes()))
                .await
                .map_err(|e| error::sftp("remove", to, e))?;
        }
        // A plain SFTP rename never replaces (OpenSSH links, then unlinks;
        // ProFTPD answers 11, "file already exists"), so a target that
        // appeared since the check is still not overwritten.
        match self
            .c
            .io(self.c.sftp.rename(from.as_bytes(), to.as_bytes()))
            .await
        {
            Ok(()) => Ok(()),
            Err(e)
                if !replace
                    && e.is_status(status::FAILURE)
                    && self.exists(to).await.ok().flatten() == Some(true) =>
            {
                Err(already_exists(&ctx))
            }
            Err(e) => Err(error::sftp("rename", &ctx, e)),
        }
    }

    async fn posix_rename(&self, from: &str, to: &str) -> Result<()> {
        self.c
            .io(self.c.sftp.posix_rename(from.as_bytes(), to.as_bytes()))
            .await
            .map_err(|e| error::sftp("rename", &format!("{from} -> {to}"), e))
    }
}

#[async_trait]
impl Session for SftpSession {
    async fn list(&mut self, dir: &str) -> Result<Vec<Entry>> {
        super::gather(|out| self.list_batches(dir, out)).await
    }

    async fn list_batches(&mut self, dir: &str, out: Sender<Vec<Entry>>) -> Result<()> {
        self.read_dir(dir, &out).await
    }

    async fn stat(&mut self, path: &str) -> Result<Entry> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let r = if self.follow_symlinks {
            self.c.io(self.c.sftp.stat(path.as_bytes())).await
        } else {
            self.c.io(self.c.sftp.lstat(path.as_bytes())).await
        };
        let attrs = r.map_err(|e| error::sftp("stat", path, e))?;
        Ok(entry(name.as_bytes(), &attrs, None))
    }

    async fn read_into(
        &mut self,
        path: &str,
        offset: u64,
        expected: Version,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        transfer::download(&self.c, path, offset, expected.size, sink).await
    }

    async fn read_range(
        &mut self,
        path: &str,
        offset: u64,
        len: u64,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        transfer::download_range(&self.c, path, offset, offset.saturating_add(len), sink).await
    }

    fn reads_ranges(&self) -> bool {
        true
    }

    async fn read_whole(&mut self, path: &str, expected: Version) -> Result<Vec<u8>> {
        transfer::read_whole(&self.c, path, expected.size).await
    }

    /// All the files at once on this one session: SFTP answers requests by
    /// id, so opens, reads and closes of many files share the connection's
    /// round trips, and the server reads them in bulk.
    async fn read_wholes(&mut self, files: &[(String, Version)]) -> Vec<Result<Vec<u8>>> {
        let mut all = futures::stream::FuturesOrdered::new();
        for (path, expected) in files {
            all.push_back(transfer::read_whole(&self.c, path, expected.size));
        }
        all.collect().await
    }

    /// All the files at once on this one session, like `read_wholes`: each
    /// is opened, written, closed and stat'ed with the others' requests in
    /// flight.
    async fn write_wholes(
        &mut self,
        files: &[(String, Vec<u8>)],
        mode: WriteMode,
    ) -> Vec<Result<Option<u64>>> {
        let c = &self.c;
        let mut all = futures::stream::FuturesOrdered::new();
        for (path, data) in files {
            all.push_back(async move {
                transfer::upload(c, path, mode, &mut &data[..], Some(data.len() as u64)).await?;
                let a = c
                    .io(c.sftp.stat(path.as_bytes()))
                    .await
                    .map_err(|e| error::sftp("stat", path, e))?;
                Ok(a.size)
            });
        }
        all.collect().await
    }

    async fn write_from(
        &mut self,
        path: &str,
        mode: WriteMode,
        source: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64> {
        transfer::upload(&self.c, path, mode, source, None).await
    }

    async fn set_mtime(&mut self, path: &str, mtime: i64) -> Result<bool> {
        // SSH_FILEXFER_ATTR_ACMODTIME sets both times; the access time
        // goes along as the same value.
        let t = u32::try_from(mtime.max(0)).unwrap_or(u32::MAX);
        let attrs = Attrs {
            times: Some((t, t)),
            ..Attrs::default()
        };
        self.c
            .io(self.c.sftp.setstat(path.as_bytes(), &attrs))
            .await
            .map_err(|e| error::sftp("setstat", path, e))?;
        Ok(true)
    }

    async fn rename(&mut self, from: &str, to: &str, replace: bool) -> Result<()> {
        self.rename_one(from, to, replace).await
    }

    async fn renames(&mut self, pairs: &[(String, String)], replace: bool) -> Vec<Result<()>> {
        let this = &*self;
        let all: futures::stream::FuturesOrdered<_> = pairs
            .iter()
            .map(|(from, to)| this.rename_one(from, to, replace))
            .collect();
        all.collect().await
    }

    async fn server_digest(
        &mut self,
        path: &str,
    ) -> Result<Option<crate::engine::digest::Expected>> {
        if !self.exec_checksum {
            return Ok(None);
        }
        exec::sha256(&self.c, path, self.io_timeout).await.map(Some)
    }

    async fn remove(&mut self, path: &str) -> Result<()> {
        self.c
            .io(self.c.sftp.remove(path.as_bytes()))
            .await
            .map_err(|e| error::sftp("remove", path, e))
    }

    async fn create_dirs(&mut self, dir: &str) -> Result<()> {
        let mut prefix = String::new();
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            prefix.push('/');
            prefix.push_str(part);
            if self.exists(&prefix).await? == Some(true) {
                continue;
            }
            if let Err(e) = self.c.io(self.c.sftp.mkdir(prefix.as_bytes())).await {
                // Another session may have made it meanwhile.
                if self.exists(&prefix).await? != Some(true) {
                    return Err(error::sftp("create directory", &prefix, e));
                }
            }
        }
        Ok(())
    }

    fn is_alive(&self) -> bool {
        !self.c.ssh.is_closed() && !self.c.sftp.is_closed()
    }

    async fn probe(&mut self) -> bool {
        match self.c.io(self.c.sftp.lstat(b".")).await {
            Ok(_) => true,
            // A refusal is an answer too: the connection is there.
            Err(wire::Error::Status { .. }) => true,
            Err(_) => false,
        }
    }

    async fn close(&mut self) {
        // Ends the sftp channel (EOF and close), then the connection.
        self.c.sftp.close_session();
        let _ = self
            .c
            .ssh
            .disconnect(russh::Disconnect::ByApplication, "ferry is done", "")
            .await;
        // Waits for the connection's task to send the goodbye and end: the
        // last sessions are closed as the process exits (`ferry once`),
        // which would otherwise drop the task before it writes.
        let _ = (&mut self.c.ssh).await;
    }

    fn identity(&self) -> Option<String> {
        Some(format!("host key {}", self.c.host_key))
    }
}
