//! An upload over a plain data connection by sendfile(2): the kernel hands
//! the file's pages from the page cache to the socket. The bytes cross no
//! buffer of ferry's: no read into one, no copy between two, no write out
//! of one. Over loopback or a fast link those copies were a third of
//! ferry's CPU for a large file, on a machine whose cores the server and
//! the digest share. TLS data connections encrypt in ferry, so they take
//! the copy loop ([`super::transfer::pump`]).

use super::transfer::{Broken, stalled};
use crate::bandwidth::Throttle;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes per call at most: a progress beat and a throttle grant each.
const CHUNK: u64 = 4 * 1024 * 1024;

/// Sends `len` bytes of `file` from byte `offset` on `tcp`, under
/// `throttle`, failing when no byte moves for `io`. Returns the bytes
/// sent: fewer than `len` when the file ended early (it shrank; the size
/// check after the upload tells).
pub async fn send(
    tcp: &TcpStream,
    file: &File,
    offset: u64,
    len: u64,
    io: Duration,
    throttle: &Throttle,
) -> Result<u64, Broken> {
    let end = offset.saturating_add(len);
    let mut at = offset;
    let mut credit = 0u64;
    while at < end {
        let mut want = (end - at).min(CHUNK);
        if let Some(chunk) = throttle.chunk() {
            if credit == 0 {
                credit = want.min(chunk).max(1);
                throttle.acquire(credit).await;
            }
            want = want.min(credit);
        }
        let once = tcp.async_io(Interest::WRITABLE, || sendfile(tcp, file, at, want));
        let n = match tokio::time::timeout(io, once).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(side(e)),
            Err(_) => return Err(Broken::Remote(stalled(io))),
        };
        at += n;
        credit = credit.saturating_sub(n);
        crate::progress::sent(n);
    }
    Ok(at - offset)
}

/// One sendfile call: up to `want` bytes of `file` from byte `at`.
fn sendfile(tcp: &TcpStream, file: &File, at: u64, want: u64) -> io::Result<u64> {
    let mut off = libc::off_t::try_from(at).map_err(io::Error::other)?;
    let count = usize::try_from(want).unwrap_or(usize::MAX);
    // SAFETY: both descriptors are open for the call (borrowed), and `off`
    // is a live off_t that the kernel advances; no memory of ours is read
    // or written otherwise.
    let n = unsafe { libc::sendfile(tcp.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Ok(n as u64),
    }
}

/// Whose fault a failed sendfile is: the socket's errors are the data
/// connection's, the rest (EIO from a disk) the local file's.
fn side(e: io::Error) -> Broken {
    use io::ErrorKind::*;
    match e.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | TimedOut => {
            Broken::Remote(e)
        }
        _ => Broken::Local(e),
    }
}
