//! An upload over a plain data connection by sendfile(2): the kernel hands
//! the file's pages from the page cache to the socket. The bytes cross no
//! buffer of ferry's: no read into one, no copy between two, no write out
//! of one. Over loopback those copies were a quarter of ferry's CPU for a
//! large file (half without the digest), on a machine whose cores the
//! server and the digest share. TLS data connections encrypt in ferry, so
//! they take the copy loop ([`super::transfer::pump`]); a file whose file
//! system cannot splice goes by reads and writes here.

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
    send_from(tcp, file, (offset, len), io, throttle, true).await
}

/// [`send`], by sendfile while `splice` holds: a file its file system
/// cannot splice from (sendfile's EINVAL, ENOSYS or EOPNOTSUPP: nothing
/// was sent by the failed call) goes on by reads and writes instead.
async fn send_from(
    tcp: &TcpStream,
    file: &File,
    (offset, len): (u64, u64),
    io: Duration,
    throttle: &Throttle,
    mut splice: bool,
) -> Result<u64, Broken> {
    let end = offset.saturating_add(len);
    let mut at = offset;
    let mut credit = 0u64;
    let mut buf = Vec::new();
    while at < end {
        let mut want = (end - at).min(CHUNK);
        if let Some(chunk) = throttle.chunk() {
            if credit == 0 {
                credit = want.min(chunk).max(1);
                throttle.acquire(credit).await;
            }
            want = want.min(credit);
        }
        let n = if splice {
            let once = tcp.async_io(Interest::WRITABLE, || sendfile(tcp, file, at, want));
            match tokio::time::timeout(io, once).await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) if unspliceable(&e) => {
                    tracing::info!(error = %e, "the file system cannot sendfile this file; reading and writing it instead");
                    splice = false;
                    continue;
                }
                Ok(Err(e)) => return Err(side(e)),
                Err(_) => return Err(Broken::Remote(stalled(io))),
            }
        } else {
            copy_once(tcp, file, at, want, io, &mut buf).await?
        };
        if n == 0 {
            break;
        }
        at += n;
        credit = credit.saturating_sub(n);
        crate::progress::sent(n);
    }
    Ok(at - offset)
}

/// sendfile's answers for a file it cannot splice from.
fn unspliceable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// Up to `want` bytes (1 MiB at most) of `file` from byte `at`, read on a
/// blocking thread into `buf`, then written to `tcp`; 0 at the file's end.
async fn copy_once(
    tcp: &TcpStream,
    file: &File,
    at: u64,
    want: u64,
    io: Duration,
    buf: &mut Vec<u8>,
) -> Result<u64, Broken> {
    use std::os::unix::fs::FileExt;
    let copy = file.try_clone().map_err(Broken::Local)?;
    let mut b = std::mem::take(buf);
    b.resize(want.min(1024 * 1024) as usize, 0);
    let read = tokio::task::spawn_blocking(move || {
        let r = copy.read_at(&mut b, at);
        (b, r)
    });
    let (b, got) = read.await.map_err(|e| Broken::Local(io::Error::other(e)))?;
    *buf = b;
    let got = got.map_err(Broken::Local)?;
    let mut sent = 0;
    while sent < got {
        match tokio::time::timeout(io, tcp.writable()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(side(e)),
            Err(_) => return Err(Broken::Remote(stalled(io))),
        }
        match tcp.try_write(&buf[sent..got]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(side(e)),
        }
    }
    Ok(got as u64)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bandwidth::{Bandwidth, Limit};
    use std::io::Write;
    use std::time::Instant;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A file of `len` bytes that differ from their neighbours, and a
    /// connected pair of loopback sockets.
    async fn setup(len: usize) -> (tempfile::TempDir, File, Vec<u8>, TcpStream, TcpStream) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap().write_all(&data).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tx, rx) = tokio::join!(
            TcpStream::connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        (
            dir,
            File::open(&path).unwrap(),
            data,
            tx.unwrap(),
            rx.unwrap().0,
        )
    }

    async fn received(mut rx: TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        rx.read_to_end(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn a_range_of_the_file_arrives_whole_and_in_order() {
        // Larger than a socket buffer, so sendfile returns short and waits.
        let (_d, file, data, tx, rx) = setup(9 * 1024 * 1024 + 7).await;
        let reader = tokio::spawn(received(rx));
        let io = Duration::from_secs(10);
        let sent = send(&tx, &file, 1000, 8 * 1024 * 1024, io, &Throttle::default()).await;
        assert_eq!(sent.ok(), Some(8 * 1024 * 1024));
        drop(tx);
        assert!(reader.await.unwrap() == data[1000..1000 + 8 * 1024 * 1024]);
    }

    #[tokio::test]
    async fn without_sendfile_the_same_bytes_go_by_reads_and_writes() {
        let (_d, file, data, tx, rx) = setup(3 * 1024 * 1024 + 11).await;
        let reader = tokio::spawn(received(rx));
        let io = Duration::from_secs(10);
        let range = (5, data.len() as u64 - 5 + 100);
        let sent = send_from(&tx, &file, range, io, &Throttle::default(), false).await;
        assert_eq!(sent.ok(), Some(data.len() as u64 - 5), "to the file's end");
        drop(tx);
        assert!(reader.await.unwrap() == data[5..]);
    }

    #[test]
    fn only_a_file_sendfile_cannot_splice_goes_by_reads() {
        for errno in [libc::EINVAL, libc::ENOSYS, libc::EOPNOTSUPP] {
            assert!(unspliceable(&io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::EPIPE, libc::ECONNRESET, libc::EIO, libc::EAGAIN] {
            assert!(!unspliceable(&io::Error::from_raw_os_error(errno)));
        }
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_row_sends_what_it_has() {
        let (_d, file, data, tx, rx) = setup(5000).await;
        let reader = tokio::spawn(received(rx));
        let sent = send(
            &tx,
            &file,
            0,
            9000,
            Duration::from_secs(5),
            &Throttle::default(),
        )
        .await;
        assert_eq!(sent.ok(), Some(5000));
        drop(tx);
        assert_eq!(reader.await.unwrap(), data);
    }

    #[tokio::test]
    async fn the_throttle_paces_it() {
        let (_d, file, data, tx, rx) = setup(300_000).await;
        let reader = tokio::spawn(received(rx));
        let throttle = Throttle::of(Limit::new("t", Bandwidth::constant(Some(1_000_000))));
        let t0 = Instant::now();
        let sent = send(&tx, &file, 0, 300_000, Duration::from_secs(10), &throttle).await;
        let took = t0.elapsed();
        assert_eq!(sent.ok(), Some(300_000));
        drop(tx);
        assert_eq!(reader.await.unwrap(), data);
        // 300 kB at 1 MB/s, less the limit's first burst: well over 100 ms
        // (the upper bound only says it is not stuck).
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(10),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_reset_connection_is_the_servers_fault() {
        let (_d, file, _data, tx, rx) = setup(4 * 1024 * 1024).await;
        // The peer gone: the kernel answers further data with RST, and the
        // next sendfile fails with EPIPE or ECONNRESET.
        drop(rx);
        let sent = send(
            &tx,
            &file,
            0,
            4 * 1024 * 1024,
            Duration::from_secs(5),
            &Throttle::default(),
        )
        .await;
        assert!(
            matches!(sent, Err(Broken::Remote(_))),
            "{:?}",
            sent.map_err(|_| ())
        );
    }
}
