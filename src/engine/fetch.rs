//! Downloading one file version into its temporary name, resuming from the
//! bytes already there, and making it durable before anyone is told.

use super::digest::{Digests, HashWrite, Hasher};
use super::direct::{self, DirectFile};
use super::error::FileError;
use crate::remote::{ErrorKind, PooledSession, Version};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use tokio::io::{AsyncWriteExt, BufWriter};

/// What a download left on disk.
pub struct Fetched {
    /// Bytes fetched in this call (not those resumed from).
    pub bytes: u64,
    /// The whole file's length: the size, also when the listing had none.
    pub len: u64,
    /// The temporary file's inode, which the delivered file keeps.
    pub inode: u64,
    /// Of the whole file: the bytes resumed from, then those streamed.
    pub digests: Digests,
}

/// Fetches `remote_path` (the `expected` version) into `temp`, continuing a
/// partial file of the same version. A file of unknown size is read to its
/// end, and what arrived is its size. After a local write or fsync error the
/// temporary file is removed, not resumed: a failed write or fsync (on NFS
/// above all) can leave a file of the right length with holes in it.
/// The digests (MD5 too with `md5`) are computed as the bytes stream; a
/// resumed file's bytes already on disk are read back once, before the
/// rest is fetched.
pub async fn download(
    session: &mut PooledSession,
    remote_path: &str,
    expected: Version,
    temp: &Path,
    md5: bool,
) -> Result<Fetched, FileError> {
    let ctx = |what: &str| format!("{what} {}", temp.display());
    let mut file = open_temp(temp)?;
    let meta = file
        .metadata()
        .map_err(|e| FileError::local(ctx("stat"), &e))?;
    let inode = meta.ino();
    let mut offset = meta.len();
    if expected.size.is_some_and(|size| offset > size) {
        file.set_len(0)
            .map_err(|e| FileError::local(ctx("truncate"), &e))?;
        offset = 0;
    }
    let mut hasher = Hasher::new(md5);
    if offset > 0 {
        tracing::info!(offset, size = expected.size, "resuming download");
        hasher = hash_prefix(hasher, temp, offset).await?;
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| FileError::local(ctx("seek"), &e))?;
    let mut sink = BufWriter::with_capacity(256 * 1024, DirectFile::new(file));
    let mut fetched = fetch(
        session,
        remote_path,
        offset,
        expected,
        &mut sink,
        &mut hasher,
        temp,
    )
    .await;
    if offset > 0 && matches!(&fetched, Err(e) if e.kind == ErrorKind::ResumeRefused) {
        tracing::info!(
            offset,
            "the server cannot resume (REST refused); downloading from the start"
        );
        let file = restart_from_zero(sink.into_inner().file, temp)?;
        offset = 0;
        hasher.reset();
        sink = BufWriter::with_capacity(256 * 1024, DirectFile::new(file));
        fetched = fetch(
            session,
            remote_path,
            offset,
            expected,
            &mut sink,
            &mut hasher,
            temp,
        )
        .await;
    }
    let fetched = fetched?;
    if let Err(e) = sink.flush().await {
        return Err(discard(temp, FileError::local(ctx("write"), &e)));
    }
    let file = sink.into_inner().file;
    let len = offset + fetched;
    if let Some(size) = expected.size
        && len != size
    {
        if len > size {
            // It grew while we read: a new version that the next listing will see.
            file.set_len(0)
                .map_err(|e| FileError::local(ctx("truncate"), &e))?;
        }
        return Err(FileError::temporary(
            ErrorKind::Other,
            format!(
                "read {len} bytes of {remote_path}, expected {size}: it changed during the download"
            ),
        ));
    }
    if let Err(e) = direct::sync(file).await {
        return Err(discard(temp, FileError::local(ctx("fsync"), &e)));
    }
    Ok(Fetched {
        bytes: fetched,
        len,
        inode,
        digests: hasher.finish(),
    })
}

/// The digests of a whole file already on disk, read back once (MD5 too
/// when `md5`). For segmented downloads: their ranges arrive out of order,
/// so they cannot be hashed as they stream.
pub(super) async fn digests_of(temp: &Path, len: u64, md5: bool) -> Result<Digests, FileError> {
    Ok(hash_prefix(Hasher::new(md5), temp, len).await?.finish())
}

/// Hashes the bytes an earlier attempt left in the partial file: read
/// back once, on a blocking thread, and only on a resume (see
/// ARCHITECTURE, "Content verification").
async fn hash_prefix(mut hasher: Hasher, temp: &Path, len: u64) -> Result<Hasher, FileError> {
    let path = temp.to_path_buf();
    let read = tokio::task::spawn_blocking(move || hasher.feed_file(&path, len).map(|()| hasher))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    read.map_err(|e| FileError::local(format!("read back {}", temp.display()), &e))
}

/// Reads the rest of the file from `offset` into `sink`; nothing when the
/// partial file already has every byte.
async fn fetch(
    session: &mut PooledSession,
    remote_path: &str,
    offset: u64,
    expected: Version,
    sink: &mut BufWriter<DirectFile>,
    hasher: &mut Hasher,
    temp: &Path,
) -> Result<u64, FileError> {
    if expected.size.is_some_and(|size| offset >= size) {
        return Ok(0);
    }
    let r = {
        let mut hashing = HashWrite::new(sink, hasher);
        session
            .read_into(remote_path, offset, expected, &mut hashing)
            .await
    };
    let write_failed = |e: &std::io::Error| {
        let ctx = format!("write {}", temp.display());
        discard(temp, FileError::local(ctx, e))
    };
    if let Some(e) = sink.get_mut().write_error.take() {
        return Err(write_failed(&e));
    }
    if r.is_err() {
        // Keep what arrived before the transport failed, so that the next
        // attempt resumes after it: a small file fits in the buffer whole,
        // and without this a cut would leave nothing to resume. Transports
        // write only bytes received, in order (an SFTP read pipeline
        // hands them over in offset order), so the file stays a prefix.
        if let Err(e) = sink.flush().await {
            return Err(write_failed(&e));
        }
    }
    Ok(r?)
}

/// Empties the partial file for a download from byte 0, when the server
/// cannot start a read part-way: its bytes are kept by no one.
fn restart_from_zero(mut file: std::fs::File, temp: &Path) -> Result<std::fs::File, FileError> {
    let ctx = |what: &str| format!("{what} {}", temp.display());
    file.set_len(0)
        .map_err(|e| FileError::local(ctx("truncate"), &e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| FileError::local(ctx("seek"), &e))?;
    Ok(file)
}

/// Opens this row's partial file to resume it, or creates it exclusively:
/// the row id in its name makes it this row's alone, and `O_EXCL` makes
/// sure of it. `O_NOFOLLOW`: a planted symlink must not redirect the download.
pub(super) fn open_temp(temp: &Path) -> Result<std::fs::File, FileError> {
    let ctx = |what: &str| format!("{what} {}", temp.display());
    let existing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(temp);
    match existing {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(temp)
            .map_err(|e| FileError::local(ctx("create"), &e)),
        Err(e) => Err(FileError::local(ctx("open"), &e)),
    }
}

/// Removes a temporary file whose bytes cannot be trusted, keeping `e`.
pub(super) fn discard(temp: &Path, e: FileError) -> FileError {
    match std::fs::remove_file(temp) {
        Ok(()) => {
            tracing::info!(partial = %temp.display(), "removed the temporary file after a local write error")
        }
        Err(re) if re.kind() == std::io::ErrorKind::NotFound => {}
        Err(re) => {
            tracing::warn!(partial = %temp.display(), error = %re, "cannot remove a temporary file after a local write error")
        }
    }
    e
}

/// A whole small file must have the size the listing reported; a file that
/// changed since is a new version, which the next listing picks up.
pub fn expect_size(
    remote_path: &str,
    expected: Version,
    data: Vec<u8>,
) -> Result<Vec<u8>, FileError> {
    let fetched = data.len() as u64;
    if let Some(size) = expected.size
        && fetched != size
    {
        return Err(FileError::temporary(
            ErrorKind::Other,
            format!(
                "read {fetched} bytes of {remote_path}, expected {size}: it changed during the download"
            ),
        ));
    }
    Ok(data)
}

/// Creates `path` exclusively, writes and fsyncs it; returns its inode.
/// A leftover of the same row (its id is in the name) from an earlier run
/// is replaced: batches fetch small files whole. On a write or fsync error
/// the file is removed. Blocking.
pub fn write_synced(path: &Path, data: &[u8]) -> Result<u64, FileError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    let mut file = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path).map_err(|e| FileError::local(ctx("remove"), &e))?;
            create()
        }
        other => other,
    }
    .map_err(|e| FileError::local(ctx("create"), &e))?;
    if let Err(e) = file.write_all(data).and_then(|()| file.sync_all()) {
        return Err(discard(path, FileError::local(ctx("write"), &e)));
    }
    let inode = file
        .metadata()
        .map_err(|e| FileError::local(ctx("stat"), &e))?
        .ino();
    Ok(inode)
}

/// Bytes already in a partial file, for the progress column after a failure.
pub fn partial_len(temp: &Path) -> u64 {
    std::fs::symlink_metadata(temp).map_or(0, |m| m.len())
}
