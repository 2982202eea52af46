//! A local file read ahead, and hashed, on a blocking thread while the
//! upload writes what was read before. Through `tokio::fs` every read is a
//! hand-off to the blocking pool and back, and the digest was computed on
//! the task that writes to the server: reading, hashing and sending took
//! turns. Here they overlap, with a few chunks in between.

use super::digest::Hasher;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes per read: large enough that a hand-off costs nothing per byte.
const CHUNK: usize = 256 * 1024;

/// Chunks read ahead of the writer.
const AHEAD: usize = 4;

/// The reading side of a read-ahead: an `AsyncRead` of the bytes the
/// thread sends, in order.
pub struct ReadAhead {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    /// Chunks sent on go back to the thread to be filled again: no
    /// allocation, zeroing and page faults per megabyte.
    spent: std::sync::mpsc::Sender<Vec<u8>>,
}

/// Reads `len` bytes of `file` from byte `from` on a blocking thread,
/// feeding them to `hasher` as they are read. [`Hashing::done`] gives the
/// hasher back once every byte was read (a dropped reader stops the
/// thread at its next chunk).
pub fn spawn(file: std::fs::File, from: u64, len: u64, mut hasher: Hasher) -> (ReadAhead, Hashing) {
    let (tx, rx) = mpsc::channel(AHEAD);
    let (spent, reuse) = std::sync::mpsc::channel::<Vec<u8>>();
    let handle = tokio::task::spawn_blocking(move || {
        let mut at = from;
        let end = from.saturating_add(len);
        while at < end {
            let want = usize::try_from(end - at).unwrap_or(CHUNK).min(CHUNK);
            let mut buf = reuse.try_recv().unwrap_or_default();
            buf.resize(want, 0);
            let got = match fill(&file, &mut buf, at) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            };
            if got == 0 {
                // Shorter than its row said: the size check after the
                // upload tells.
                break;
            }
            buf.truncate(got);
            hasher.update(&buf);
            at += got as u64;
            if tx.blocking_send(Ok(buf)).is_err() {
                break;
            }
        }
        Ok(hasher)
    });
    let reader = ReadAhead {
        rx,
        chunk: Vec::new(),
        at: 0,
        spent,
    };
    // The reader's drop stops this thread.
    (reader, Hashing { handle, stop: None })
}

/// The thread that hashes an upload's bytes, and gives the hasher back
/// once it read them all. Dropping it stops a [`hash_behind`] thread at
/// its next chunk (a [`spawn`] thread stops when its reader is dropped).
pub struct Hashing {
    handle: JoinHandle<io::Result<Hasher>>,
    /// Set on drop: a [`hash_behind`] thread's signal to stop.
    stop: Option<Arc<AtomicBool>>,
}

impl Hashing {
    /// The hasher, once every byte was read.
    pub async fn done(mut self) -> io::Result<Hasher> {
        (&mut self.handle).await.map_err(io::Error::other)?
    }
}

impl Drop for Hashing {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Hashes `len` bytes of `file` from byte `from` into `hasher` on a
/// blocking thread, while the kernel sends them (sendfile): the same
/// bytes, read a second time from the page cache, since none pass through
/// ferry. Reads nothing when the hasher computes nothing.
pub fn hash_behind(file: std::fs::File, from: u64, len: u64, mut hasher: Hasher) -> Hashing {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let handle = tokio::task::spawn_blocking(move || {
        if hasher.is_on() {
            // Shorter than its row said: the size check after the upload tells.
            hasher.feed_range(&file, from, len, &stopped)?;
        }
        Ok(hasher)
    });
    Hashing {
        handle,
        stop: Some(stop),
    }
}

/// Reads into `buf` at `offset` until it is full or the file ends.
fn fill(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl AsyncRead for ReadAhead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at == this.chunk.len() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(Ok(chunk)) => {
                    let spent = std::mem::replace(&mut this.chunk, chunk);
                    // The thread may be done; the chunk is then dropped.
                    let _ = this.spent.send(spent);
                    this.at = 0;
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.chunk.len() - this.at);
        buf.put_slice(&this.chunk[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::AsyncReadExt;

    fn file_of(data: &[u8]) -> (tempfile::TempDir, std::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(data)
            .unwrap();
        (dir, std::fs::File::open(&path).unwrap())
    }

    #[tokio::test]
    async fn reads_and_hashes_the_range_across_chunks() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let (_dir, file) = file_of(&data);
        let (mut r, hashed) = spawn(file, 5, data.len() as u64 - 5, Hasher::new(false));
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert!(got == data[5..], "the bytes from the offset, in order");
        let mut want = Hasher::new(false);
        want.update(&data[5..]);
        assert_eq!(hashed.done().await.unwrap().finish(), want.finish());
    }

    #[tokio::test]
    async fn a_file_shorter_than_asked_ends_early() {
        let (_dir, file) = file_of(b"abc");
        let (mut r, _) = spawn(file, 0, 10, Hasher::new(false));
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abc");
    }

    #[tokio::test]
    async fn a_dropped_reader_stops_the_thread() {
        let data = vec![7u8; 3 * CHUNK * AHEAD];
        let (_dir, file) = file_of(&data);
        let (r, hashed) = spawn(file, 0, data.len() as u64, Hasher::new(false));
        drop(r);
        // Ends instead of blocking on a full channel for ever.
        tokio::time::timeout(std::time::Duration::from_secs(10), hashed.done())
            .await
            .expect("the reading thread ends")
            .unwrap();
    }

    #[tokio::test]
    async fn hashes_behind_the_range_across_chunks() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let (_dir, file) = file_of(&data);
        let mut prefix = Hasher::new(false);
        prefix.update(&data[..5]);
        let behind = hash_behind(file, 5, data.len() as u64 - 5, prefix);
        let mut want = Hasher::new(false);
        want.update(&data);
        assert_eq!(behind.done().await.unwrap().finish(), want.finish());
    }

    #[tokio::test]
    async fn hashing_behind_with_the_hasher_off_reads_nothing() {
        // A directory cannot be read: any read would fail.
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::open(dir.path()).unwrap();
        let behind = hash_behind(file, 0, 1 << 20, Hasher::none());
        assert!(!behind.done().await.unwrap().is_on());
    }
}
