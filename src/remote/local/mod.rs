//! The `local` transport: a directory on this machine or a mounted share,
//! served through the same interface and promises as a remote server.

use super::{Entry, EntryKind, RemoteError, Result, Session, Transport};
use async_trait::async_trait;
use std::fs::Metadata;
use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

pub struct LocalTransport;

#[async_trait]
impl Transport for LocalTransport {
    async fn connect(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(LocalSession))
    }
}

pub struct LocalSession;

fn entry(name: String, meta: &Metadata, link_target: Option<String>) -> Entry {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    };
    Entry {
        name,
        kind,
        size: meta.len(),
        mtime: meta.mtime(),
        link_target,
    }
}

/// Reads a directory on a blocking thread: one `readdir` and one `lstat` per
/// entry, far cheaper than a tokio round trip per entry on large directories.
fn list_blocking(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let Ok(name) = item.file_name().into_string() else {
            tracing::warn!(dir = %dir.display(), name = ?item.file_name(), "skipping a name that is not UTF-8");
            continue;
        };
        let meta = match item.metadata() {
            Ok(m) => m,
            // Removed between readdir and lstat: it is simply not there any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let target = meta
            .file_type()
            .is_symlink()
            .then(|| std::fs::read_link(item.path()).ok())
            .flatten()
            .map(|t| t.to_string_lossy().into_owned());
        out.push(entry(name, &meta, target));
    }
    Ok(out)
}

/// rename(2) replaces silently; renameat2 with RENAME_NOREPLACE refuses an
/// existing target atomically. File systems without it (some network
/// mounts) get a check-then-rename, which is as close as they allow.
fn rename_noreplace(from: &str, to: &str) -> std::io::Result<()> {
    use std::ffi::CString;
    let (f, t) = (CString::new(from)?, CString::new(to)?);
    // SAFETY: both strings are valid and NUL-terminated for the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(from, to)
        }
        _ => Err(e),
    }
}

#[async_trait]
impl Session for LocalSession {
    async fn list(&mut self, dir: &str) -> Result<Vec<Entry>> {
        let path = dir.to_string();
        tokio::task::spawn_blocking(move || list_blocking(Path::new(&path)))
            .await
            .map_err(|e| {
                RemoteError::new(
                    super::ErrorKind::Other,
                    true,
                    format!("list {dir}"),
                    e.to_string(),
                )
            })?
            .map_err(|e| RemoteError::from_io(format!("list {dir}"), &e))
    }

    async fn stat(&mut self, path: &str) -> Result<Entry> {
        let meta = tokio::fs::symlink_metadata(path)
            .await
            .map_err(|e| RemoteError::from_io(format!("stat {path}"), &e))?;
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        Ok(entry(name, &meta, None))
    }

    async fn read_into(
        &mut self,
        path: &str,
        offset: u64,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        let ctx = || format!("read {path}");
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| RemoteError::from_io(ctx(), &e))?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .await
                .map_err(|e| RemoteError::from_io(ctx(), &e))?;
        }
        let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, file);
        tokio::io::copy_buf(&mut reader, sink)
            .await
            .map_err(|e| RemoteError::from_io(ctx(), &e))
    }

    async fn write_from(
        &mut self,
        path: &str,
        append: bool,
        source: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64> {
        let ctx = || format!("write {path}");
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .await
            .map_err(|e| RemoteError::from_io(ctx(), &e))?;
        let n = tokio::io::copy(source, &mut file)
            .await
            .map_err(|e| RemoteError::from_io(ctx(), &e))?;
        file.flush()
            .await
            .map_err(|e| RemoteError::from_io(ctx(), &e))?;
        file.sync_all()
            .await
            .map_err(|e| RemoteError::from_io(ctx(), &e))?;
        Ok(n)
    }

    async fn rename(&mut self, from: &str, to: &str, replace: bool) -> Result<()> {
        let ctx = format!("rename {from} -> {to}");
        let (f, t) = (from.to_string(), to.to_string());
        let r = tokio::task::spawn_blocking(move || {
            if replace {
                std::fs::rename(f, t)
            } else {
                rename_noreplace(&f, &t)
            }
        })
        .await
        .map_err(|e| RemoteError::new(super::ErrorKind::Other, true, ctx.clone(), e.to_string()))?;
        r.map_err(|e| RemoteError::from_io(ctx, &e))
    }

    async fn remove(&mut self, path: &str) -> Result<()> {
        tokio::fs::remove_file(path)
            .await
            .map_err(|e| RemoteError::from_io(format!("remove {path}"), &e))
    }

    async fn create_dirs(&mut self, dir: &str) -> Result<()> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| RemoteError::from_io(format!("create directory {dir}"), &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_from_an_offset_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        std::fs::write(dir.path().join("a.txt"), b"0123456789").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut s = LocalSession;
        let mut out = Vec::new();
        let n = s
            .read_into(&format!("{root}/a.txt"), 4, &mut out)
            .await
            .unwrap();
        assert_eq!((n, out.as_slice()), (6, &b"456789"[..]));
        let mut names: Vec<_> = s
            .list(&root)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            names,
            vec![
                ("a.txt".into(), EntryKind::File),
                ("sub".into(), EntryKind::Dir)
            ]
        );
    }

    #[tokio::test]
    async fn rename_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a").to_str().unwrap().to_string();
        let b = dir.path().join("b").to_str().unwrap().to_string();
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let err = LocalSession.rename(&a, &b, false).await.unwrap_err();
        assert_eq!(err.kind, super::super::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&b).unwrap(), b"b");
        LocalSession.rename(&a, &b, true).await.unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"a");
    }

    #[tokio::test]
    async fn missing_file_is_permanent_not_found() {
        let err = LocalSession.stat("/nonexistent/ferry/x").await.unwrap_err();
        assert_eq!(err.kind, super::super::ErrorKind::NotFound);
        assert!(!err.temporary);
    }
}
