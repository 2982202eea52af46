//! The server side of a send: the temporary name an upload is written
//! under, the resumable upload itself (from a local file that must still
//! be the version its row records), the size check, and the final name
//! chosen by `if_exists`.

use super::digest::{Digests, Hasher};
use super::error::FileError;
use super::post::{utc_stamp, with_suffix};
use super::target::temp_file_name;
use crate::config::{SendIfExists, SendTo, UploadTemp};
use crate::remote::{self, ErrorKind, PooledSession, WriteMode};
use crate::state::{FileRow, Superseded};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::time::SystemTime;

/// Where a row's bytes go until the rename. The row id and version are in
/// the name, so a resume only ever continues the same version's upload.
pub fn temp_path(to: &SendTo, row: &FileRow, final_path: &str) -> String {
    temp_path_of(to, row.id, row.size, row.mtime, final_path)
}

/// [`temp_path`] of a version given by its parts.
pub fn temp_path_of(to: &SendTo, id: i64, size: i64, mtime: i64, final_path: &str) -> String {
    let name = final_path.rsplit('/').next().unwrap_or(final_path);
    let hidden = temp_file_name(name, id, size, mtime);
    match &to.temp {
        UploadTemp::Hidden => remote::join(remote::parent(final_path), &hidden),
        UploadTemp::Extension(ext) => {
            // `.NAME.TAG.ferry-part` -> `NAME.TAG` + ext: same cut, same tag.
            let tagged = hidden
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(super::target::TEMP_SUFFIX))
                .unwrap_or(&hidden);
            remote::join(remote::parent(final_path), &format!("{tagged}{ext}"))
        }
        UploadTemp::Staging(dir) => remote::join(dir, &hidden),
    }
}

/// The local file of a send row, opened without following symlinks and
/// checked to be the version the row records (size and mtime): a file
/// changed since the listing is the next listing's business. Blocking (an
/// open and a stat; a batch makes its calls in one blocking call).
pub fn open_source_now(path: &str, row: &FileRow) -> Result<std::fs::File, FileError> {
    let ctx = format!("open {path}");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| FileError::local(&ctx, &e))?;
    let meta = file.metadata().map_err(|e| FileError::local(&ctx, &e))?;
    if !meta.is_file() {
        return Err(FileError::permanent(
            ErrorKind::Other,
            format!("{path} is not a regular file"),
        ));
    }
    if meta.len() as i64 != row.size || meta.mtime() != row.mtime {
        return Err(FileError::temporary(
            ErrorKind::Other,
            format!(
                "{path} changed since it was listed (now {} bytes, mtime {}); the next scan records the new version",
                meta.len(),
                meta.mtime()
            ),
        ));
    }
    Ok(file)
}

/// Checks, after the bytes went out, that the local file is still the
/// version that was read: a writer that reopened it meanwhile would
/// otherwise have a mix of two versions sent.
pub fn still_same(path: &str, row: &FileRow) -> Result<(), FileError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| FileError::local(format!("stat {path}"), &e))?;
    if meta.len() as i64 != row.size || meta.mtime() != row.mtime {
        return Err(FileError::temporary(
            ErrorKind::Other,
            format!("{path} changed while it was being sent; it is sent again once stable"),
        ));
    }
    Ok(())
}

/// The size of a remote file, `None` when it does not exist.
pub async fn remote_size(
    session: &mut PooledSession,
    path: &str,
) -> Result<Option<Option<u64>>, FileError> {
    match session.file_size(path).await {
        Ok(size) => Ok(Some(size)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes the local file from byte `from` to `dest` as `mode` says
/// ([`write_mode`]). With `create_dirs`, a missing
/// directory is made and the write tried once more. A server that will
/// not continue a file (FTP without REST + STOR or APPE) gets a temporary
/// file again from its first byte; an append there fails for good.
/// `hasher` ends with the digest of the local file's bytes up to the end
/// of the write: those before `from` read back once, the rest as they go.
#[allow(clippy::too_many_arguments)]
pub async fn write(
    session: &mut PooledSession,
    to: &SendTo,
    local: &str,
    row: &FileRow,
    dest: &str,
    mut from: u64,
    mut mode: WriteMode,
    dirs: &[&str],
    hasher: &mut Hasher,
) -> Result<u64, FileError> {
    let at = match mode {
        WriteMode::At(n) => n,
        _ => 0,
    };
    let temporary_file = from == at;
    let mut made_dirs = false;
    loop {
        hasher.reset();
        hash_local(hasher, local, from).await?;
        let part = Part {
            local,
            file: open_source_now(local, row)?,
            from,
            len: (row.size as u64).saturating_sub(from),
        };
        match send_part(session, dest, mode, part, hasher).await? {
            Ok(n) => return Ok(n),
            Err(e) if e.kind == ErrorKind::ResumeRefused && at > 0 && temporary_file => {
                tracing::warn!(remote = %dest, error = %e, "cannot resume the upload; sending it from the start");
                (from, mode) = (0, WriteMode::Replace);
            }
            Err(e) if e.kind == ErrorKind::ResumeRefused => {
                return Err(FileError::permanent(
                    ErrorKind::ResumeRefused,
                    format!("cannot append to {dest}: {}", e.message),
                ));
            }
            // FTP servers answer a missing directory with 550 or 553 alike:
            // with create_dirs, any refusal of the first write makes them.
            Err(e)
                if to.create_dirs
                    && !made_dirs
                    && (e.kind == ErrorKind::NotFound || !e.temporary) =>
            {
                made_dirs = true;
                for d in dirs {
                    session.create_dirs(d).await?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The bytes of a local file a write sends: `len` from byte `from`.
struct Part<'a> {
    local: &'a str,
    file: std::fs::File,
    from: u64,
    len: u64,
}

/// Sends `part`, its digest taken into `hasher` on a thread: by sendfile
/// where the session can (the thread reads the same bytes beside it),
/// else through ferry's buffers, read ahead and hashed by the thread
/// ([`super::read_ahead`]). The outer error is the local file's, the
/// inner the server's.
async fn send_part(
    session: &mut PooledSession,
    dest: &str,
    mode: WriteMode,
    part: Part<'_>,
    hasher: &mut Hasher,
) -> Result<remote::Result<u64>, FileError> {
    let read_error = |e: std::io::Error| FileError::local(format!("read {}", part.local), &e);
    let (from, len) = (part.from, part.len);
    let (written, hashing) = match session.splices() {
        true => {
            let copy = part.file.try_clone().map_err(read_error)?;
            let hashing = super::read_ahead::hash_behind(copy, from, len, hasher.clone());
            let written = session.write_file(dest, mode, &part.file, from, len).await;
            (written, hashing)
        }
        false => {
            let (ahead, hashing) = super::read_ahead::spawn(part.file, from, len, hasher.clone());
            let mut source = crate::progress::Counted(ahead);
            (session.write_from(dest, mode, &mut source).await, hashing)
        }
    };
    if written.is_ok() {
        *hasher = hashing.done().await.map_err(read_error)?;
    }
    Ok(written)
}

/// How a write at byte `at` of the remote file starts: `Fresh` for a
/// temporary name no attempt wrote before (`fresh`) whose size is checked
/// after the upload (which catches an append to a leftover file, see
/// [`WriteMode::Fresh`]), `Replace` for another write from the start.
pub fn write_mode(at: u64, fresh: bool, to: &SendTo) -> WriteMode {
    match at {
        0 if fresh && to.verify_size => WriteMode::Fresh,
        0 => WriteMode::Replace,
        n => WriteMode::At(n),
    }
}

/// Feeds the first `len` bytes of the local file (sent by an earlier
/// attempt) into `hasher`, on a blocking thread.
pub async fn hash_local(hasher: &mut Hasher, local: &str, len: u64) -> Result<(), FileError> {
    if len == 0 || !hasher.is_on() {
        return Ok(());
    }
    let mut h = hasher.clone();
    let path = local.to_string();
    let fed = tokio::task::spawn_blocking(move || {
        h.feed_file(std::path::Path::new(&path), len).map(|()| h)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(|e| FileError::local(format!("read {local}"), &e))?;
    *hasher = fed;
    Ok(())
}

/// Uploads the row's file to `temp`, continuing a partial upload of the
/// same version, then checks the size on the server, and with `verify =
/// "server"` the server's digest. Returns bytes sent and the digests of
/// the whole file.
pub async fn to_temp(
    session: &mut PooledSession,
    to: &SendTo,
    local: &str,
    row: &FileRow,
    temp: &str,
    final_path: &str,
) -> Result<(u64, Digests), FileError> {
    let size = row.size as u64;
    // A row never attempted has no temporary file to continue (the name
    // holds its id): one round trip less per file.
    let fresh = row.attempts == 0;
    let offset = match fresh {
        true => 0,
        false => match remote_size(session, temp).await? {
            Some(Some(have)) if have <= size => have,
            _ => 0,
        },
    };
    if offset > 0 {
        tracing::info!(remote = %temp, offset, "resuming the upload");
    }
    let dirs = [remote::parent(temp), remote::parent(final_path)];
    let mut hasher = Hasher::unless_off(to.digest, to.verify_server);
    let sent = if offset == size && size > 0 {
        hash_local(&mut hasher, local, size).await?;
        0
    } else {
        write(
            session,
            to,
            local,
            row,
            temp,
            offset,
            write_mode(offset, fresh, to),
            &dirs,
            &mut hasher,
        )
        .await?
    };
    still_same(local, row)?;
    if to.verify_size {
        verify(session, temp, size).await?;
    }
    let digests = hasher.finish();
    if to.verify_server
        && let Err(e) = super::verify::with_server(session, temp, &digests).await
    {
        if e.kind == ErrorKind::Checksum {
            // Not resumed: the next attempt sends every byte again.
            let _ = session.remove(temp).await;
        }
        return Err(e);
    }
    Ok((sent, digests))
}

/// `write_checksum_file`: `NAME.sha256` in sha256sum format beside the
/// file's final name, written under a temporary name of the same kind as
/// the file's and renamed over any earlier one. Written after the file's
/// rename, so a partner that waits for it finds the file complete.
pub async fn write_sidecar(
    session: &mut PooledSession,
    to: &SendTo,
    row: &FileRow,
    named: &str,
    sha256: &str,
) -> Result<(), FileError> {
    let name = named.rsplit('/').next().unwrap_or(named);
    let text = super::digest::sidecar_text(sha256, name);
    let sidecar = format!("{named}.sha256");
    let temp = temp_path_of(to, row.id, text.len() as i64, row.mtime, &sidecar);
    session
        .write_from(&temp, WriteMode::Replace, &mut text.as_bytes())
        .await?;
    session.rename(&temp, &sidecar, true).await?;
    tracing::info!(remote = %sidecar, "checksum file written");
    Ok(())
}

/// The size check before the rename. A mismatch removes the temporary
/// file (a resume from a wrong length would only repeat the mistake) and
/// is a temporary error.
pub async fn verify(session: &mut PooledSession, path: &str, size: u64) -> Result<(), FileError> {
    match remote_size(session, path).await? {
        Some(Some(n)) if n == size => Ok(()),
        Some(None) => Ok(()),
        found => {
            let _ = session.remove(path).await;
            Err(FileError::temporary(
                ErrorKind::Other,
                format!(
                    "{path} has {} on the server after the upload, expected {size} bytes; sending again",
                    found
                        .flatten()
                        .map_or("no size".into(), |n| format!("{n} bytes"))
                ),
            ))
        }
    }
}

/// What the name check decided.
pub enum Named {
    /// Rename to this path.
    To(String),
    /// `skip`: the name is taken; nothing is sent.
    Skip(String),
}

/// The final remote name by `if_exists`, before the first rename.
/// `overwrite` and `unique` keep the name (a unique name is found when the
/// rename says it is taken: [`choose_free`]); `error` fails the file for
/// good; `skip` reports the taken name.
pub async fn choose(
    session: &mut PooledSession,
    policy: SendIfExists,
    final_path: &str,
) -> Result<Named, FileError> {
    // `unique` tries the plain name first: the rename never replaces, and
    // a taken name is chosen again there (send.rs), so no stat is needed.
    if matches!(
        policy,
        SendIfExists::Overwrite | SendIfExists::Append | SendIfExists::Unique
    ) {
        return Ok(Named::To(final_path.to_string()));
    }
    if remote_size(session, final_path).await?.is_none() {
        return Ok(Named::To(final_path.to_string()));
    }
    match policy {
        SendIfExists::Error => Err(taken(final_path)),
        SendIfExists::Skip => Ok(Named::Skip(final_path.to_string())),
        _ => choose_free(session, final_path).await.map(Named::To),
    }
}

/// `unique` after the plain name was found taken: `NAME.STAMP.ext`, or
/// `NAME.STAMP-N.ext` while that is taken too.
pub async fn choose_free(
    session: &mut PooledSession,
    final_path: &str,
) -> Result<String, FileError> {
    let stamp = utc_stamp(SystemTime::now());
    for n in 0..100 {
        let tag = if n == 0 {
            stamp.clone()
        } else {
            format!("{stamp}-{n}")
        };
        let candidate = with_suffix(final_path, &tag);
        if remote_size(session, &candidate).await?.is_none() {
            return Ok(candidate);
        }
    }
    Err(FileError::temporary(
        ErrorKind::AlreadyExists,
        format!("no free name for {final_path} on the server"),
    ))
}

/// `if_exists = "error"` and the name is taken.
pub fn taken(path: &str) -> FileError {
    FileError::permanent(
        ErrorKind::AlreadyExists,
        format!(
            "{path} exists on the server (if_exists = \"error\"); the file stays in the outbox"
        ),
    )
}

/// Removes the partial uploads of versions that were replaced in the
/// outbox or vanished from it: their temporary names would never be
/// continued. Best effort; a failure only leaves a stray file.
pub async fn discard_partials(session: &mut PooledSession, to: &SendTo, gone: &[Superseded]) {
    for v in gone {
        if to.if_exists == SendIfExists::Append {
            return; // appends write no temporary file
        }
        let final_path = remote::join(&to.remote_dir, &v.path);
        let temp = temp_path_of(to, v.id, v.size, v.mtime, &final_path);
        match session.remove(&temp).await {
            Ok(()) => {
                tracing::info!(remote = %temp, "removed the partial upload of a replaced version")
            }
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(remote = %temp, error = %e, "cannot remove a stale partial upload")
            }
        }
    }
}
