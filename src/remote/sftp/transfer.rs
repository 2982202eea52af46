//! Pipelined transfers. SFTP answers one request per round trip, so a plain
//! read loop is latency-bound (~35 MB/s on loopback); keeping several
//! megabytes of requests in flight, as OpenSSH's own client does, lets the
//! connection run at the speed of the cipher. How much is in flight
//! follows the link ([`Window`]): on a slow one a long queue would only
//! make the last requests wait.

use super::connect::Connected;
use super::error;
use super::progress::Window;
use super::wire::{Attrs, Handle, WriteBuf, open};
use super::writeback::Writeback;
use crate::remote::{RemoteError, Result, WriteMode};
use futures::StreamExt;
use futures::stream::{FuturesOrdered, FuturesUnordered};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub(super) const FSYNC: &str = "fsync@openssh.com";

/// At most this many bytes requested but not yet answered, per transfer.
const IN_FLIGHT_BYTES: u64 = 8 * 1024 * 1024;

fn window(c: &Connected, chunk: u32) -> Window {
    Window::new(chunk, c.watch.io_timeout(), IN_FLIGHT_BYTES)
}

fn local(path: &str, e: &std::io::Error) -> RemoteError {
    RemoteError::from_io(format!("write local copy of {path}"), e)
}

/// Copies `path` from byte `start` into `sink`: to its end, but never past
/// one byte beyond the expected `size` (`None`: unknown, to the end).
pub async fn download(
    c: &Connected,
    path: &str,
    start: u64,
    size: Option<u64>,
    sink: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<u64> {
    let handle = open_read(c, path).await?;
    let r = read_all(c, &handle, path, start, size, None, sink).await;
    let _ = c.io(c.sftp.close(&handle)).await;
    r
}

/// Copies the bytes `[start, end)` of `path` into `sink`, fewer only where
/// the file ends first: one range of a segmented download, pipelined like
/// a whole file but never requesting past `end`.
pub async fn download_range(
    c: &Connected,
    path: &str,
    start: u64,
    end: u64,
    sink: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<u64> {
    let handle = open_read(c, path).await?;
    let r = read_all(c, &handle, path, start, Some(end), Some(end), sink).await;
    let _ = c.io(c.sftp.close(&handle)).await;
    r
}

async fn open_read(c: &Connected, path: &str) -> Result<Handle> {
    let opened = c.sftp.open(path.as_bytes(), open::READ, &Attrs::default());
    c.io(opened).await.map_err(|e| error::sftp("open", path, e))
}

/// A small file of known size: open, read, close. Asking for one byte more
/// than expected shows growth without the fstat round trip that
/// [`download`] needs: a POSIX server answers a read with everything up to
/// the end of the file, so a shorter answer is the end. A server that
/// answers short in the middle of a file gets asked for the rest. A file
/// of unknown size is read to its end.
pub async fn read_whole(c: &Connected, path: &str, size: Option<u64>) -> Result<Vec<u8>> {
    let Some(size) = size else {
        let mut data = Vec::new();
        download(c, path, 0, None, &mut data).await?;
        return Ok(data);
    };
    let handle = open_read(c, path).await?;
    let mut data = Vec::with_capacity(size as usize + 1);
    let r = read_to_size(c, &handle, path, size, &mut data).await;
    let _ = c.io(c.sftp.close(&handle)).await;
    r.map(|()| data)
}

async fn read_to_size(
    c: &Connected,
    handle: &Handle,
    path: &str,
    size: u64,
    data: &mut Vec<u8>,
) -> Result<()> {
    loop {
        let have = data.len() as u64;
        let want = (size + 1 - have.min(size)).min(u64::from(c.read_chunk)) as u32;
        match c.io(c.sftp.read(handle, have, want)).await {
            Ok(d) if d.is_empty() => return Ok(()),
            Ok(d) => {
                let short = (d.len() as u32) < want;
                data.extend_from_slice(d.bytes());
                if data.len() as u64 > size || (short && data.len() as u64 >= size) {
                    return Ok(());
                }
            }
            Err(e) => return Err(error::sftp("read", path, e)),
        }
    }
}

/// With a known size, requests are planned up to one byte past it: that
/// byte shows a file that grew, and nothing beyond it is ever requested,
/// nor an fstat round trip spent. An unknown size plans up to the size the
/// server reports for the open file, then reads on to EOF. A range
/// (`range_end`) plans up to its end and no further.
async fn read_all(
    c: &Connected,
    handle: &Handle,
    path: &str,
    start: u64,
    size: Option<u64>,
    range_end: Option<u64>,
    sink: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<u64> {
    let sftp = &c.sftp;
    let planned_end = match (range_end, size) {
        (Some(end), _) => end,
        (None, Some(s)) => s + 1,
        (None, None) => match c.io(sftp.fstat(handle)).await {
            Ok(a) => a.size.unwrap_or(start),
            Err(e) => return Err(error::sftp("stat", path, e)),
        },
    };
    let mut queue = FuturesOrdered::new();
    let mut window = window(c, c.read_chunk);
    let mut next = start;
    let mut pos = start;
    loop {
        while next < planned_end && (queue.is_empty() || next - pos < window.allowed()) {
            let len = u64::from(window.request_len(c.read_chunk)).min(planned_end - next) as u32;
            let off = next;
            let read = sftp.read(handle, off, len);
            queue.push_back(async move { (off, len, read.await) });
            next += u64::from(len);
        }
        let Some((off, len, result)) = c
            .io(async { Ok(queue.next().await) })
            .await
            .map_err(|e| error::sftp("read", path, e))?
        else {
            break;
        };
        debug_assert_eq!(off, pos);
        match result {
            Ok(d) => {
                window.answered(d.len() as u64);
                sink.write_all(d.bytes())
                    .await
                    .map_err(|e| local(path, &e))?;
                pos += d.len() as u64;
                let end = off + u64::from(len);
                // Short at or past the expected size: the end of the file
                // (a POSIX server answers up to the end). Short before it:
                // fetch the rest of this range before the (already
                // requested) ranges after it.
                if pos < end
                    && (size.is_some_and(|s| pos >= s)
                        || !read_range(c, handle, path, &mut pos, end, sink).await?)
                {
                    return Ok(pos - start);
                }
            }
            Err(e) => return Err(error::sftp("read", path, e)),
        }
    }
    if size.is_none() {
        read_range(c, handle, path, &mut pos, u64::MAX, sink).await?;
    }
    Ok(pos - start)
}

/// Reads sequentially from `*pos` up to `end` or the end of the file;
/// returns false when the file ended first.
async fn read_range(
    c: &Connected,
    handle: &Handle,
    path: &str,
    pos: &mut u64,
    end: u64,
    sink: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<bool> {
    while *pos < end {
        let len = u64::from(c.read_chunk).min(end - *pos) as u32;
        match c.io(c.sftp.read(handle, *pos, len)).await {
            Ok(d) if d.is_empty() => return Ok(false),
            Ok(d) => {
                sink.write_all(d.bytes())
                    .await
                    .map_err(|e| local(path, &e))?;
                *pos += d.len() as u64;
            }
            Err(e) => return Err(error::sftp("read", path, e)),
        }
    }
    Ok(true)
}

/// Writes `source` to `path` as `mode` says, with many writes in flight;
/// fsyncs on the server when it offers that. `expected`, the bytes the
/// source should hold, sizes the write requests: a 4 KiB file then costs a
/// 4 KiB request, not a zeroed buffer of the server's largest write.
pub async fn upload(
    c: &Connected,
    path: &str,
    mode: WriteMode,
    source: &mut (dyn AsyncRead + Send + Unpin),
    expected: Option<u64>,
) -> Result<u64> {
    let sftp = &c.sftp;
    let mut flags = open::WRITE | open::CREATE;
    if mode.truncates() {
        flags |= open::TRUNCATE;
    }
    let handle = c
        .io(sftp.open(path.as_bytes(), flags, &Attrs::default()))
        .await
        .map_err(|e| error::sftp("open", path, e))?;
    // Append: from the size of the file as opened (SSH_FXF_APPEND is not
    // honoured the same way by every server; an explicit offset is).
    let start = match mode {
        WriteMode::Replace | WriteMode::Fresh => Ok(0),
        WriteMode::At(n) => Ok(n),
        WriteMode::Append => c
            .io(sftp.fstat(&handle))
            .await
            .map(|a| a.size.unwrap_or(0))
            .map_err(|e| error::sftp("stat", path, e)),
    };
    let r = match start {
        Ok(start) => write_all(c, &handle, path, start, source, expected).await,
        Err(e) => Err(e),
    };
    let closed = c.io(sftp.close(&handle)).await;
    let n = r?;
    closed.map_err(|e| error::sftp("close", path, e))?;
    Ok(n)
}

async fn write_all(
    c: &Connected,
    handle: &Handle,
    path: &str,
    start: u64,
    source: &mut (dyn AsyncRead + Send + Unpin),
    expected: Option<u64>,
) -> Result<u64> {
    let sftp = &c.sftp;
    let full = c.write_chunk as usize;
    let mut pending = FuturesUnordered::new();
    // Writes keep the full window: their answers (acknowledgements) arrive
    // one by one as the server takes the data, so the link is never silent
    // for io_timeout while a write is queued; a growing window only cost
    // uploads a quarter of their speed on loopback (bench/README.md).
    let mut unanswered = 0u64;
    let mut offset = start;
    let mut writeback = Writeback::new(c, path);
    loop {
        // One byte more than the source should still hold, so its end is
        // seen in the same request; past the expected end, full chunks.
        let chunk = match expected {
            Some(e) if offset - start <= e => full.min((e - (offset - start)) as usize + 1),
            _ => full,
        };
        let mut req = sftp.write_buf(handle, offset, chunk);
        let filled = fill(&mut req, chunk, source)
            .await
            .map_err(|e| RemoteError::from_io(format!("read local data for {path}"), &e))?;
        if filled > 0 {
            let len = filled as u64;
            let write = sftp.write(req);
            pending.push(async move { write.await.map(|()| len) });
            offset += len;
            unanswered += len;
        }
        while unanswered >= IN_FLIGHT_BYTES || (filled < chunk && !pending.is_empty()) {
            let Some(r) = c
                .io(async { Ok(pending.next().await) })
                .await
                .map_err(|e| error::sftp("write", path, e))?
            else {
                break;
            };
            let len = r.map_err(|e| error::sftp("write", path, e))?;
            unanswered -= len;
        }
        if let Some(w) = &mut writeback {
            w.acknowledged(offset - start - unanswered);
        }
        if filled < chunk {
            break;
        }
    }
    if let Some(w) = writeback {
        w.finish().await;
    }
    if c.fsyncs() {
        c.io(sftp.fsync(handle))
            .await
            .map_err(|e| error::sftp("fsync", path, e))?;
    }
    Ok(offset - start)
}

/// Reads up to `chunk` bytes of `source` straight into the request, into
/// its spare capacity. Zeroing a quarter megabyte per request first, only
/// to read over it, cost a 1 GiB upload 1.9 % of the machine's samples in
/// memset and 2.5 % in page faults (1.1 % without it).
async fn fill(
    req: &mut WriteBuf,
    chunk: usize,
    source: &mut (dyn AsyncRead + Send + Unpin),
) -> std::io::Result<usize> {
    let buf = req.buffer();
    buf.reserve(chunk);
    let mut filled = 0;
    while filled < chunk {
        let n = (&mut *source)
            .take((chunk - filled) as u64)
            .read_buf(buf)
            .await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    debug_assert_eq!(req.data_len(), filled);
    Ok(filled)
}
