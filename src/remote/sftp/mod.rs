//! The `sftp` transport: SSH through russh, file operations through
//! russh-sftp's raw session so that reads and writes can be pipelined and
//! OpenSSH extensions (posix-rename, fsync) used when offered.

mod connect;
mod error;
mod hostkey;
mod progress;
mod transfer;

use super::{
    Entry, EntryKind, ErrorKind, RemoteError, Result, Session, Transport, Version, WriteMode,
};
use crate::config::Server;
use async_trait::async_trait;
use connect::Connected;
use futures::StreamExt;
use russh_sftp::protocol::{FileAttributes, FileType, Packet, StatusCode};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

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
        }))
    }
}

pub struct SftpSession {
    c: Connected,
    follow_symlinks: bool,
}

fn entry(name: String, attrs: &FileAttributes, link_target: Option<String>) -> Entry {
    let kind = match attrs.file_type() {
        FileType::Dir => EntryKind::Dir,
        FileType::File => EntryKind::File,
        FileType::Symlink => EntryKind::Symlink,
        FileType::Other => EntryKind::Other,
    };
    Entry {
        kind,
        size: attrs.size,
        mtime: i64::from(attrs.mtime.unwrap_or(0)),
        link_target,
        // russh-sftp keeps names as `String` and replaces bytes that are not
        // UTF-8 with U+FFFD: such a name can be shown but not opened.
        invalid_name: name.contains(char::REPLACEMENT_CHARACTER),
        date_only: false,
        name,
    }
}

fn is_status(e: &russh_sftp::client::error::Error, code: StatusCode) -> bool {
    matches!(e, russh_sftp::client::error::Error::Status(s) if s.status_code == code)
}

impl SftpSession {
    async fn read_dir(&self, dir: &str) -> Result<Vec<russh_sftp::protocol::File>> {
        let (c, sftp) = (&self.c, &self.c.sftp);
        let handle = c
            .io(sftp.opendir(dir))
            .await
            .map_err(|e| error::sftp("list", dir, e))?
            .handle;
        let mut files = Vec::new();
        let result = loop {
            match c.io(sftp.readdir(handle.as_str())).await {
                Ok(name) => files.extend(name.files),
                Err(e) if is_status(&e, StatusCode::Eof) => break Ok(files),
                Err(e) => break Err(error::sftp("list", dir, e)),
            }
        };
        let _ = c.io(sftp.close(handle)).await;
        result
    }

    /// A symlink as what it points to; a dangling one stays a symlink.
    async fn follow(&self, path: &str, name: String, attrs: &FileAttributes) -> Entry {
        let target = self
            .c
            .io(self.c.sftp.readlink(path))
            .await
            .ok()
            .and_then(|n| n.files.into_iter().next())
            .map(|f| f.filename);
        if self.follow_symlinks
            && let Ok(a) = self.c.io(self.c.sftp.stat(path)).await
        {
            return entry(name, &a.attrs, target);
        }
        entry(name, attrs, target)
    }

    async fn exists(&self, path: &str) -> Result<bool> {
        match self.c.io(self.c.sftp.lstat(path)).await {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(false),
            Err(e) => Err(error::sftp("stat", path, e)),
        }
    }

    async fn posix_rename(&self, from: &str, to: &str) -> Result<()> {
        let mut data = Vec::with_capacity(8 + from.len() + to.len());
        for s in [from, to] {
            data.extend_from_slice(&(s.len() as u32).to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        let ctx = format!("{from} -> {to}");
        match self.c.io(self.c.sftp.extended(POSIX_RENAME, data)).await {
            Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
            Ok(Packet::Status(s)) => Err(error::sftp("rename", &ctx, s.into())),
            Ok(_) => Err(RemoteError::new(
                ErrorKind::Other,
                true,
                format!("rename {ctx}"),
                "unexpected reply",
            )),
            Err(e) => Err(error::sftp("rename", &ctx, e)),
        }
    }
}

#[async_trait]
impl Session for SftpSession {
    async fn list(&mut self, dir: &str) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for f in self.read_dir(dir).await? {
            if f.filename == "." || f.filename == ".." {
                continue;
            }
            let e = if f.attrs.file_type() == FileType::Symlink {
                let path = super::join(dir, &f.filename);
                self.follow(&path, f.filename, &f.attrs).await
            } else {
                entry(f.filename, &f.attrs, None)
            };
            out.push(e);
        }
        Ok(out)
    }

    async fn stat(&mut self, path: &str) -> Result<Entry> {
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        let r = if self.follow_symlinks {
            self.c.io(self.c.sftp.stat(path)).await
        } else {
            self.c.io(self.c.sftp.lstat(path)).await
        };
        let attrs = r.map_err(|e| error::sftp("stat", path, e))?.attrs;
        Ok(entry(name, &attrs, None))
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

    async fn write_from(
        &mut self,
        path: &str,
        mode: WriteMode,
        source: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64> {
        transfer::upload(&self.c, path, mode, source).await
    }

    async fn set_mtime(&mut self, path: &str, mtime: i64) -> Result<bool> {
        let mut attrs = FileAttributes::empty();
        let t = u32::try_from(mtime.max(0)).unwrap_or(u32::MAX);
        attrs.atime = Some(t);
        attrs.mtime = Some(t);
        self.c
            .io(self.c.sftp.setstat(path, attrs))
            .await
            .map_err(|e| error::sftp("setstat", path, e))?;
        Ok(true)
    }

    async fn rename(&mut self, from: &str, to: &str, replace: bool) -> Result<()> {
        if replace && self.c.extensions.contains_key(POSIX_RENAME) {
            return self.posix_rename(from, to).await;
        }
        let ctx = format!("{from} -> {to}");
        if self.exists(to).await? {
            if !replace {
                return Err(RemoteError::new(
                    ErrorKind::AlreadyExists,
                    false,
                    format!("rename {ctx}"),
                    "target exists",
                ));
            }
            // Without posix-rename the replacement is two steps: a crash
            // between them leaves the target missing, never half-written.
            self.c
                .io(self.c.sftp.remove(to))
                .await
                .map_err(|e| error::sftp("remove", to, e))?;
        }
        // A plain SFTP rename never replaces (OpenSSH links, then unlinks),
        // so a target that appeared since the check is still not overwritten.
        match self.c.io(self.c.sftp.rename(from, to)).await {
            Ok(_) => Ok(()),
            Err(e)
                if !replace
                    && is_status(&e, StatusCode::Failure)
                    && self.exists(to).await.unwrap_or(false) =>
            {
                Err(RemoteError::new(
                    ErrorKind::AlreadyExists,
                    false,
                    format!("rename {ctx}"),
                    "target exists",
                ))
            }
            Err(e) => Err(error::sftp("rename", &ctx, e)),
        }
    }

    async fn remove(&mut self, path: &str) -> Result<()> {
        self.c
            .io(self.c.sftp.remove(path))
            .await
            .map(|_| ())
            .map_err(|e| error::sftp("remove", path, e))
    }

    async fn create_dirs(&mut self, dir: &str) -> Result<()> {
        let mut prefix = String::new();
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            prefix.push('/');
            prefix.push_str(part);
            if self.exists(&prefix).await? {
                continue;
            }
            if let Err(e) = self
                .c
                .io(self.c.sftp.mkdir(prefix.as_str(), FileAttributes::empty()))
                .await
            {
                // Another session may have made it meanwhile.
                if !self.exists(&prefix).await? {
                    return Err(error::sftp("create directory", &prefix, e));
                }
            }
        }
        Ok(())
    }

    fn is_alive(&self) -> bool {
        !self.c.ssh.is_closed()
    }

    async fn close(&mut self) {
        // Ends the sftp channel (EOF and close), then the connection.
        let _ = self.c.sftp.close_session();
        let _ = self
            .c
            .ssh
            .disconnect(russh::Disconnect::ByApplication, "ferry is done", "")
            .await;
    }

    fn identity(&self) -> Option<String> {
        Some(format!("host key {}", self.c.host_key))
    }
}
