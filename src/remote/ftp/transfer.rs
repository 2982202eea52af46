//! Moving file bytes: RETR (with REST to resume), STOR and APPE, through
//! a copy loop that fails only when no byte moves for `io_timeout`, never
//! on the total length of a transfer.

use super::Shared;
use super::connect::{Conn, on_ctrl};
use super::data::{self, finish, timeout};
use crate::bandwidth::Throttle;
use crate::remote::{ErrorKind, RemoteError, Result, WriteMode};
use std::sync::atomic::Ordering;
use std::time::Duration;
use suppaftp::{FtpError, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// RETR from `offset`, taking at most `limit` bytes (`None`: to the end).
/// The caller's limit is one byte past the listed size: when it is reached
/// the file grew, and the data connection is closed without reading the
/// rest (a file that grew to gigabytes is not fetched to learn that).
pub async fn read_into(
    conn: &mut Conn,
    shared: &Shared,
    path: &str,
    offset: u64,
    limit: Option<u64>,
    sink: &mut (dyn AsyncWrite + Send + Unpin),
) -> std::result::Result<u64, Failed> {
    let cmd = format!("RETR {path}");
    let stream = data::open(conn, shared, &cmd, offset)
        .await
        .map_err(Failed::refused)?;
    receive(conn, shared, path, &cmd, stream, limit, sink)
        .await
        .map_err(Failed::broken)
}

/// Why a transfer failed, and whether its control connection is still in
/// step: the server refusing the command itself (a 550 to STOR, a refused
/// REST) leaves it so, with its reply read, and the session goes on (a
/// batch whose remote directory is missing costs a round trip per file,
/// not a new login: a full TLS handshake, and ProFTPD's mod_delay);
/// anything after the data connection was used may leave a reply
/// pending, and the session must go.
pub struct Failed {
    pub error: RemoteError,
    pub in_step: bool,
}

impl Failed {
    fn refused(error: RemoteError) -> Self {
        // The data connection's own failures (EPSV, connecting to it) are
        // Connection or Timeout errors, which end the session anyway.
        let in_step = !error.breaks_session();
        Failed { error, in_step }
    }

    fn broken(error: RemoteError) -> Self {
        Failed {
            error,
            in_step: false,
        }
    }
}

/// The rest of [`read_into`], once the data connection is open.
async fn receive(
    conn: &mut Conn,
    shared: &Shared,
    path: &str,
    cmd: &str,
    mut stream: data::DataStream,
    limit: Option<u64>,
    sink: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<u64> {
    let io = shared.server.io_timeout;
    let mut buf = std::mem::take(&mut conn.buf);
    let copied = match limit {
        Some(limit) => pump(&mut (&mut stream).take(limit), sink, io, true, &mut buf).await,
        None => pump(&mut stream, sink, io, true, &mut buf).await,
    };
    conn.buf = buf;
    match copied {
        Ok(n) if limit == Some(n) => {
            drop(stream);
            cut_short(conn, cmd).await?;
            Ok(n)
        }
        Ok(n) => {
            drop(stream);
            finish(conn, io, cmd).await?;
            Ok(n)
        }
        Err(Broken::Local(e)) => Err(RemoteError::from_io(
            format!("write the download of {path}"),
            &e,
        )),
        Err(Broken::Remote(e)) => {
            drop(stream);
            let fallback = remote_io(cmd, &e);
            Err(data::reason(conn, cmd, fallback).await)
        }
    }
}

/// Reads the reply to a RETR (or a listing) whose data connection ferry closed early:
/// 426 (vsftpd: "Failure writing network stream"), 451, or 226 when the
/// server had sent everything before it noticed. Any reply keeps the
/// control connection in step; without one it is out of step and the
/// error drops it (its kind breaks the session).
pub(super) async fn cut_short(conn: &mut Conn, cmd: &str) -> Result<()> {
    let wait = Duration::from_secs(5);
    let done = [Status::ClosingDataConnection, Status::RequestedFileActionOk];
    let r =
        on_ctrl!(&mut conn.ctrl, s => tokio::time::timeout(wait, s.read_response_in(&done)).await);
    match r {
        Ok(Ok(_)) | Ok(Err(FtpError::UnexpectedResponse(_))) => Ok(()),
        Ok(Err(e)) => Err(RemoteError::new(
            ErrorKind::Connection,
            true,
            cmd,
            format!("no reply after closing the data connection early: {e}"),
        )),
        Err(_) => Err(timeout(cmd, wait)),
    }
}

pub async fn write_from(
    conn: &mut Conn,
    shared: &Shared,
    path: &str,
    mode: WriteMode,
    source: &mut (dyn AsyncRead + Send + Unpin),
) -> std::result::Result<u64, Failed> {
    let (cmd, stream) = open_write(conn, shared, path, mode)
        .await
        .map_err(Failed::refused)?;
    send(conn, shared, path, &cmd, stream, source)
        .await
        .map_err(Failed::broken)
}

/// [`write_from`] for `len` bytes of a local file from byte `offset`, by
/// sendfile on a plain data connection ([`super::splice`]).
#[allow(clippy::too_many_arguments)]
pub async fn write_file(
    conn: &mut Conn,
    shared: &Shared,
    path: &str,
    mode: WriteMode,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    throttle: &Throttle,
) -> std::result::Result<u64, Failed> {
    let (cmd, stream) = open_write(conn, shared, path, mode)
        .await
        .map_err(Failed::refused)?;
    let io = shared.server.io_timeout;
    let sent = match stream.tcp() {
        Some(tcp) => super::splice::send(tcp, file, offset, len, io, throttle).await,
        // Plain FTP's data connections are plain TCP (`data::open`).
        None => Err(Broken::Local(std::io::Error::other(
            "sendfile needs a plain data connection",
        ))),
    };
    settle(conn, shared, path, &cmd, stream, sent)
        .await
        .map_err(Failed::broken)
}

/// The data connection of an upload, and the command that opened it.
async fn open_write(
    conn: &mut Conn,
    shared: &Shared,
    path: &str,
    mode: WriteMode,
) -> Result<(String, data::DataStream)> {
    let (cmd, offset) = match mode {
        WriteMode::Replace => (format!("STOR {path}"), 0),
        // APPE appends to a file that exists after all, which only a size
        // check catches: without SIZE the server may not say the size.
        WriteMode::Fresh if !conn.features.size || shared.stor_for_new.load(Ordering::Relaxed) => {
            (format!("STOR {path}"), 0)
        }
        WriteMode::Fresh => return open_fresh(conn, shared, path).await,
        WriteMode::Append => (format!("APPE {path}"), 0),
        WriteMode::At(n) => (format!("STOR {path}"), n),
    };
    match data::open(conn, shared, &cmd, offset).await {
        // REST before STOR is optional (RFC 3659), and some servers take
        // the REST but refuse the STOR after it (ProFTPD without
        // AllowStoreRestart: "Overwrite permission denied"). The caller
        // found the file `offset` bytes long, so APPE continues at the
        // same place.
        Err(e) if offset > 0 && (e.kind == ErrorKind::ResumeRefused || !e.temporary) => {
            tracing::debug!(error = %e, "STOR at an offset refused; appending instead");
            let cmd = format!("APPE {path}");
            match data::open(conn, shared, &cmd, 0).await {
                Err(a) if a.kind != ErrorKind::Connection && a.kind != ErrorKind::Timeout => {
                    Err(RemoteError::new(
                        ErrorKind::ResumeRefused,
                        false,
                        cmd,
                        format!(
                            "the server refuses to continue a file at byte {offset}: REST + STOR: {}; APPE: {}",
                            e.message, a.message
                        ),
                    ))
                }
                r => Ok((cmd, r?)),
            }
        }
        r => Ok((cmd, r?)),
    }
}

/// A new file by APPE (see [`WriteMode::Fresh`]). A server that refuses
/// it outright (pyftpdlib without the `a` permission) gets STOR, and if
/// STOR is taken, STOR for every new file from then on; a refusal of both
/// (a missing directory) is STOR's.
async fn open_fresh(
    conn: &mut Conn,
    shared: &Shared,
    path: &str,
) -> Result<(String, data::DataStream)> {
    let appe = format!("APPE {path}");
    let refused = match data::open(conn, shared, &appe, 0).await {
        Ok(stream) => return Ok((appe, stream)),
        Err(e) if e.breaks_session() || e.temporary => return Err(e),
        Err(e) => e,
    };
    let stor = format!("STOR {path}");
    let stream = data::open(conn, shared, &stor, 0).await?;
    if !shared.stor_for_new.swap(true, Ordering::Relaxed) {
        tracing::info!(
            server = %shared.server.name,
            appe = %refused,
            "the server refuses APPE for new files; sending them with STOR"
        );
    }
    Ok((stor, stream))
}

/// The rest of [`write_from`], once the data connection is open.
async fn send(
    conn: &mut Conn,
    shared: &Shared,
    path: &str,
    cmd: &str,
    mut stream: data::DataStream,
    source: &mut (dyn AsyncRead + Send + Unpin),
) -> Result<u64> {
    let io = shared.server.io_timeout;
    let mut buf = std::mem::take(&mut conn.buf);
    let pumped = pump(source, &mut stream, io, false, &mut buf).await;
    conn.buf = buf;
    settle(conn, shared, path, cmd, stream, pumped).await
}

/// Ends an upload whose bytes went (`pumped`): the data connection's end
/// is the file's end, and only then does the server answer 226.
async fn settle(
    conn: &mut Conn,
    shared: &Shared,
    path: &str,
    cmd: &str,
    mut stream: data::DataStream,
    pumped: std::result::Result<u64, Broken>,
) -> Result<u64> {
    let io = shared.server.io_timeout;
    let copied = match pumped {
        Ok(n) => data::end_upload(&mut stream, io)
            .await
            .map(|()| n)
            .map_err(Broken::Remote),
        Err(e) => Err(e),
    };
    drop(stream);
    match copied {
        Ok(n) => finish(conn, io, cmd).await.map(|_| n),
        Err(Broken::Local(e)) => Err(RemoteError::from_io(
            format!("read the upload for {path}"),
            &e,
        )),
        Err(Broken::Remote(e)) => {
            let fallback = remote_io(cmd, &e);
            Err(data::reason(conn, cmd, fallback).await)
        }
    }
}

pub fn remote_io(cmd: &str, e: &std::io::Error) -> RemoteError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return timeout(cmd, Duration::ZERO);
    }
    RemoteError::new(
        ErrorKind::Connection,
        true,
        cmd,
        format!("data connection: {e}"),
    )
}

/// Bytes per write to the sink: large writes mean few blocking-pool hops
/// for tokio files.
const CHUNK: usize = 512 * 1024;

/// Which side of a copy failed: the server's data connection or the local file.
pub enum Broken {
    Remote(std::io::Error),
    Local(std::io::Error),
}

/// Copies `from` to `to` in large writes (fewer blocking-pool hops for
/// tokio files), failing when a read or write makes no progress for `io`.
/// For downloads `from` is remote, for uploads `to` is.
pub async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    io: Duration,
    download: bool,
    buf: &mut Vec<u8>,
) -> std::result::Result<u64, Broken>
where
    R: AsyncRead + Unpin + Send + ?Sized,
    W: AsyncWrite + Unpin + Send + ?Sized,
{
    if buf.len() < CHUNK {
        buf.resize(CHUNK, 0);
    }
    let mut filled = 0;
    let mut total = 0u64;
    type Side = fn(std::io::Error) -> Broken;
    let (read_side, write_side): (Side, Side) = if download {
        (Broken::Remote, Broken::Local)
    } else {
        (Broken::Local, Broken::Remote)
    };
    loop {
        let read = match tokio::time::timeout(io, from.read(&mut buf[filled..])).await {
            Ok(Ok(n)) => Ok(n),
            // A TLS server that closes without close_notify: the end of the
            // data all the same. The 226 reply on the protected control
            // connection and the caller's size check vouch for completeness.
            Ok(Err(e)) if download && e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(stalled(io)),
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                // A download keeps what arrived before the data connection
                // broke, in order: the caller resumes after it.
                if download && filled > 0 {
                    write_out(to, &buf[..filled], io)
                        .await
                        .map_err(write_side)?;
                }
                return Err(read_side(e));
            }
        };
        filled += n;
        if filled > 0 && (n == 0 || filled >= CHUNK / 2) {
            write_out(to, &buf[..filled], io)
                .await
                .map_err(write_side)?;
            total += filled as u64;
            filled = 0;
        }
        if n == 0 {
            return Ok(total);
        }
    }
}

pub(super) fn stalled(io: Duration) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no data for {io:?}"))
}

/// Writes all of `data`, failing when a write makes no progress for `io`.
async fn write_out<W>(to: &mut W, data: &[u8], io: Duration) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin + Send + ?Sized,
{
    match tokio::time::timeout(io, to.write_all(data)).await {
        Ok(r) => r,
        Err(_) => Err(stalled(io)),
    }
}
