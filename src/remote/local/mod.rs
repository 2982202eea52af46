//! The `local` transport: a directory on this machine or a mounted share,
//! served through the same interface and promises as a remote server.
//! Symlinks are listed as symlinks and never followed, not even when one
//! replaces a listed file before it is read.

use super::{
    Entry, EntryKind, ErrorKind, RemoteError, Removal, Result, Session, Transport, Version,
    WriteMode,
};
use async_trait::async_trait;
use std::fs::Metadata;
use std::io::SeekFrom;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::Sender;

pub struct LocalTransport;

#[async_trait]
impl Transport for LocalTransport {
    async fn connect(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(LocalSession))
    }
}

pub struct LocalSession;

fn entry(name: String, meta: &Metadata, link_target: Option<String>) -> Entry {
    entry_named(name, false, meta, link_target)
}

fn entry_named(
    name: String,
    invalid_name: bool,
    meta: &Metadata,
    link_target: Option<String>,
) -> Entry {
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
        size: Some(meta.len()),
        mtime: meta.mtime(),
        link_target,
        invalid_name,
        date_only: false,
    }
}

/// Entries a local listing hands over at a time.
const BATCH: usize = 1024;

/// Reads a directory on a blocking thread: one `readdir` and one `lstat` per
/// entry, far cheaper than a tokio round trip per entry on large directories.
/// Sent on in batches as it goes; stops when the receiver is gone.
fn list_blocking(dir: &Path, out: &Sender<Vec<Entry>>) -> std::io::Result<()> {
    let mut batch = Vec::with_capacity(BATCH);
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        // Listed all the same, escaped: the rule records it as failed once.
        let (name, invalid_name) = super::escape_name(item.file_name().as_bytes());
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
        batch.push(entry_named(name, invalid_name, &meta, target));
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if out.blocking_send(full).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = out.blocking_send(batch);
    }
    Ok(())
}

/// Opens `path` for reading only if it is still the listed regular file.
/// `O_NOFOLLOW` refuses a symlink put in its place after the listing (the
/// open would otherwise read whatever it points to); `O_NONBLOCK` keeps a
/// FIFO put there from blocking the open. The fstat of the opened file must
/// show the listed size and mtime: the bytes read are then those of the
/// version the state database recorded.
async fn open_version(path: &str, expected: Version) -> Result<tokio::fs::File> {
    let ctx = || format!("read {path}");
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .await
        .map_err(|e| match e.raw_os_error() {
            // The listing skips symlinks, so no later listing makes this
            // file readable: permanent, with the reason on the failed row.
            Some(libc::ELOOP) => RemoteError::new(
                ErrorKind::PermissionDenied,
                false,
                ctx(),
                "refused: it is a symbolic link now (the local transport never follows links)",
            ),
            _ => RemoteError::from_io(ctx(), &e),
        })?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| RemoteError::from_io(ctx(), &e))?;
    if !meta.is_file() {
        return Err(RemoteError::new(
            ErrorKind::PermissionDenied,
            false,
            ctx(),
            "refused: it is no longer a regular file",
        ));
    }
    if expected.size.is_some_and(|s| s != meta.len()) || expected.mtime != meta.mtime() {
        // Another version: the next listing records it and its own window.
        return Err(RemoteError::new(
            ErrorKind::Other,
            true,
            ctx(),
            format!(
                "it changed since it was listed (now {} bytes, mtime {}; listed {:?} bytes, mtime {})",
                meta.len(),
                meta.mtime(),
                expected.size,
                expected.mtime
            ),
        ));
    }
    Ok(file)
}

#[async_trait]
impl Session for LocalSession {
    async fn list(&mut self, dir: &str) -> Result<Vec<Entry>> {
        super::gather(|out| self.list_batches(dir, out)).await
    }

    async fn list_batches(&mut self, dir: &str, out: Sender<Vec<Entry>>) -> Result<()> {
        let path = dir.to_string();
        tokio::task::spawn_blocking(move || list_blocking(Path::new(&path), &out))
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
        expected: Version,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        let ctx = || format!("read {path}");
        let mut file = open_version(path, expected).await?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .await
                .map_err(|e| RemoteError::from_io(ctx(), &e))?;
        }
        let reader = tokio::io::BufReader::with_capacity(256 * 1024, file);
        let limit = expected.read_limit(offset).unwrap_or(u64::MAX);
        tokio::io::copy_buf(&mut reader.take(limit), sink)
            .await
            .map_err(|e| RemoteError::from_io(ctx(), &e))
    }

    async fn write_from(
        &mut self,
        path: &str,
        mode: WriteMode,
        source: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64> {
        let ctx = || format!("write {path}");
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .append(mode == WriteMode::Append)
            .truncate(mode.truncates())
            .open(path)
            .await
            .map_err(|e| RemoteError::from_io(ctx(), &e))?;
        if let WriteMode::At(offset) = mode {
            resume_at(&mut file, offset)
                .await
                .map_err(|e| RemoteError::from_io(ctx(), &e))?;
        }
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

    async fn set_mtime(&mut self, path: &str, mtime: i64) -> Result<bool> {
        let ctx = format!("set the mtime of {path}");
        let p = path.to_string();
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime.max(0) as u64);
        let r = tokio::task::spawn_blocking(move || {
            let f = std::fs::OpenOptions::new().write(true).open(p)?;
            f.set_modified(when)
        })
        .await
        .map_err(|e| RemoteError::new(ErrorKind::Other, true, ctx.clone(), e.to_string()))?;
        r.map_err(|e| RemoteError::from_io(ctx, &e))?;
        Ok(true)
    }

    async fn rename(&mut self, from: &str, to: &str, replace: bool) -> Result<()> {
        let ctx = format!("rename {from} -> {to}");
        let (f, t) = (from.to_string(), to.to_string());
        let r = tokio::task::spawn_blocking(move || {
            if replace {
                std::fs::rename(f, t)
            } else {
                crate::fsx::rename_noreplace(Path::new(&f), Path::new(&t))
            }
        })
        .await
        .map_err(|e| RemoteError::new(super::ErrorKind::Other, true, ctx.clone(), e.to_string()))?;
        r.map_err(|e| RemoteError::from_io(ctx, &e))
    }

    /// The "server" is this machine: the file is read again and hashed, a
    /// second read that at least catches bytes changed on the way (a
    /// mount, a disk) between the transfer and the rename.
    async fn server_digest(
        &mut self,
        path: &str,
    ) -> Result<Option<crate::engine::digest::Expected>> {
        let owned = path.to_string();
        let hashed = tokio::task::spawn_blocking(move || {
            let len = std::fs::symlink_metadata(&owned)?.len();
            let mut h = crate::engine::digest::Hasher::new(false);
            h.feed_file(std::path::Path::new(&owned), len)?;
            Ok::<_, std::io::Error>(h.finish().sha256)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| RemoteError::from_io(format!("hash {path}"), &e))?;
        Ok(Some(crate::engine::digest::Expected {
            algo: crate::engine::digest::Algo::Sha256,
            hex: hashed,
        }))
    }

    async fn remove(&mut self, path: &str) -> Result<()> {
        tokio::fs::remove_file(path)
            .await
            .map_err(|e| RemoteError::from_io(format!("remove {path}"), &e))
    }

    async fn remove_unchanged(&mut self, files: &[(String, Version)]) -> Vec<Result<Removal>> {
        let files = files.to_vec();
        let n = files.len();
        let all = tokio::task::spawn_blocking(move || {
            files
                .iter()
                .map(|(path, version)| remove_unchanged_now(path, *version))
                .collect::<Vec<_>>()
        })
        .await;
        all.unwrap_or_else(|e| {
            let e = RemoteError::new(ErrorKind::Other, true, "remove", e.to_string());
            vec![Err(e); n]
        })
    }

    async fn create_dirs(&mut self, dir: &str) -> Result<()> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| RemoteError::from_io(format!("create directory {dir}"), &e))
    }
}

/// [`Session::remove_unchanged`] for one file (blocking).
fn remove_unchanged_now(path: &str, version: Version) -> Result<Removal> {
    let gone = |e: std::io::Error, what: &str| match e.kind() {
        std::io::ErrorKind::NotFound => Ok(Removal::Gone),
        _ => Err(RemoteError::from_io(format!("{what} {path}"), &e)),
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return gone(e, "stat"),
    };
    if entry(String::new(), &meta, None).version() != version {
        return Ok(Removal::Changed);
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(Removal::Removed),
        Err(e) => gone(e, "remove"),
    }
}

/// Positions a resumed write at `offset`: what is before it stays, what
/// is after it (a longer earlier attempt) is cut, and a file shorter than
/// `offset` is refused rather than given a hole.
async fn resume_at(file: &mut tokio::fs::File, offset: u64) -> std::io::Result<()> {
    let len = file.metadata().await?.len();
    if len < offset {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("cannot resume at byte {offset}: the file has {len}"),
        ));
    }
    if len > offset {
        file.set_len(offset).await?;
    }
    file.seek(SeekFrom::Start(offset)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large directory comes in batches of [`BATCH`]; a reader that
    /// stops early stops the listing without an error.
    #[tokio::test]
    async fn a_large_directory_is_listed_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..2500 {
            std::fs::write(dir.path().join(format!("f{i}")), b"").unwrap();
        }
        let root = dir.path().to_str().unwrap().to_string();
        let mut s = LocalSession;
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let listing = s.list_batches(&root, tx);
        let sizes = async {
            let mut sizes = Vec::new();
            while let Some(b) = rx.recv().await {
                sizes.push(b.len());
            }
            sizes
        };
        let (listed, sizes) = tokio::join!(listing, sizes);
        listed.unwrap();
        assert_eq!(sizes, [BATCH, BATCH, 2500 - 2 * BATCH]);
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let listing = s.list_batches(&root, tx);
        let first = async move { rx.recv().await.map(|b| b.len()) };
        let (listed, first) = tokio::join!(listing, first);
        listed.unwrap();
        assert_eq!(first, Some(BATCH));
    }

    #[tokio::test]
    async fn reads_from_an_offset_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        std::fs::write(dir.path().join("a.txt"), b"0123456789").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut s = LocalSession;
        let mut out = Vec::new();
        let a = format!("{root}/a.txt");
        let v = s.stat(&a).await.unwrap().version();
        let n = s.read_into(&a, 4, v, &mut out).await.unwrap();
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

    /// A batch's deletes remove only the versions they were given: a file
    /// rewritten since stays, a file already gone is said to be, and a
    /// directory is refused, not removed.
    #[tokio::test]
    async fn only_unchanged_files_are_removed_in_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
        for n in ["same", "rewritten"] {
            std::fs::write(path(n), b"four").unwrap();
        }
        std::fs::create_dir(path("dir")).unwrap();
        let mut s = LocalSession;
        let same = s.stat(&path("same")).await.unwrap().version();
        let rewritten = s.stat(&path("rewritten")).await.unwrap().version();
        std::fs::write(path("rewritten"), b"longer now").unwrap();
        let dir_version = s.stat(&path("dir")).await.unwrap().version();
        let answers = s
            .remove_unchanged(&[
                (path("same"), same),
                (path("rewritten"), rewritten),
                (path("never-there"), same),
                (path("dir"), dir_version),
            ])
            .await;
        let got: Vec<Option<Removal>> = answers.iter().map(|a| a.as_ref().ok().copied()).collect();
        assert_eq!(
            got[..3],
            [
                Some(Removal::Removed),
                Some(Removal::Changed),
                Some(Removal::Gone)
            ]
        );
        assert!(answers[3].is_err(), "{:?}", answers[3]);
        assert!(!dir.path().join("same").exists());
        assert_eq!(std::fs::read(path("rewritten")).unwrap(), b"longer now");
        assert!(dir.path().join("dir").is_dir());
    }

    #[tokio::test]
    async fn a_file_that_grew_is_refused_and_unknown_sizes_read_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, vec![7u8; 1 << 20]).unwrap();
        let a = a.to_str().unwrap();
        let mut s = LocalSession;
        let now = s.stat(a).await.unwrap().version();
        let listed_small = Version {
            size: Some(4),
            ..now
        };
        let mut sink = Vec::new();
        let err = s
            .read_into(a, 0, listed_small, &mut sink)
            .await
            .unwrap_err();
        assert!(err.temporary && err.message.contains("changed"), "{err}");
        assert!(sink.is_empty(), "refused before reading");
        let unknown = Version { size: None, ..now };
        assert_eq!(s.read_whole(a, unknown).await.unwrap().len(), 1 << 20);
    }

    #[tokio::test]
    async fn a_file_swapped_for_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("secret"));
        std::fs::write(&a, b"public").unwrap();
        std::fs::write(&b, b"secret").unwrap();
        let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&b)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let mut s = LocalSession;
        let root = dir.path().to_str().unwrap();
        let listed = s.list(root).await.unwrap();
        let e = listed.iter().find(|e| e.name == "a.csv").unwrap();
        // Same size, same mtime: only the open can tell.
        std::fs::remove_file(&a).unwrap();
        std::os::unix::fs::symlink(&b, &a).unwrap();
        let a = a.to_str().unwrap();
        let err = s.read_whole(a, e.version()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
        assert!(!err.temporary);
        assert!(err.message.contains("symbolic link"), "{err}");
        let err = s.read_into(a, 0, e.version(), &mut Vec::new()).await;
        assert!(err.is_err());
    }

    #[tokio::test]
    async fn a_replaced_file_is_another_version() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"one").unwrap();
        let a = a.to_str().unwrap();
        let mut s = LocalSession;
        let mut v = s.stat(a).await.unwrap().version();
        v.mtime -= 60;
        let err = s.read_whole(a, v).await.unwrap_err();
        assert!(err.temporary, "the next listing sees the new version");
        assert!(err.message.contains("changed since it was listed"), "{err}");
    }

    #[tokio::test]
    async fn names_that_are_not_utf8_are_listed_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"bad\xff.csv");
        std::fs::write(dir.path().join(name), b"x").unwrap();
        let listed = LocalSession
            .list(dir.path().to_str().unwrap())
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "bad\\xff.csv");
        assert!(listed[0].invalid_name);
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
