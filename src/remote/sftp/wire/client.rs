//! The request/reply dispatcher and the typed requests. Each request is
//! sent when its method is called (not when its future is first polled),
//! so requests reach the server in the order they were made, and a caller
//! can start many before awaiting any.

use super::packet::{self, Attrs, Data, Frame, Handle, NameEntry, Reply};
use super::spare::{LARGE, Spares};
use super::{Error, status};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The longest reply accepted. Reads ask for at most 255 KiB; a long
/// directory page or a server's own limit stays far below this.
const MAX_PACKET: usize = 4 * 1024 * 1024;
/// Queued requests joined into one write of the channel, at most this much.
const BATCH: usize = 256 * 1024;

type Waiter = oneshot::Sender<Result<Reply, Error>>;

struct Pending {
    waiting: HashMap<u32, Waiter>,
    /// Why the channel ended, once it has.
    closed: Option<String>,
}

struct Shared {
    pending: Mutex<Pending>,
    next_id: AtomicU32,
    /// Buffers of large frames written and DATA replies read, for the
    /// next ones.
    spare: Spares,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().expect("sftp pending lock")
    }

    /// Fails every request in flight and every later one with `why`.
    fn close(&self, why: String) {
        let waiting = {
            let mut p = self.pending();
            p.closed.get_or_insert(why);
            std::mem::take(&mut p.waiting)
        };
        let why = self.reason();
        for (_, w) in waiting {
            let _ = w.send(Err(Error::Closed(why.clone())));
        }
    }

    fn reason(&self) -> String {
        self.pending()
            .closed
            .clone()
            .unwrap_or_else(|| "the session ended".to_string())
    }
}

/// What the server said in its VERSION packet.
pub struct Version {
    pub version: u32,
    /// Extension name -> its data (`"1"` for the OpenSSH ones).
    pub extensions: HashMap<String, Vec<u8>>,
}

/// `limits@openssh.com`: 0 means "no limit".
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_read: u64,
    pub max_write: u64,
}

pub struct Client {
    shared: Arc<Shared>,
    /// Frames for the writer task; an empty one asks it to end the channel.
    out: mpsc::UnboundedSender<Vec<u8>>,
    reader: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        // The writer ends by itself when `out` is dropped.
        self.reader.abort();
    }
}

impl Client {
    /// Sends INIT, reads VERSION, then starts the reader and writer tasks.
    pub async fn start<S>(stream: S) -> Result<(Client, Version), Error>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, mut w) = tokio::io::split(stream);
        let mut r = BufReader::with_capacity(64 * 1024, r);
        w.write_all(&Frame::init(3)).await.map_err(gone)?;
        w.flush().await.map_err(gone)?;
        let body = read_packet(&mut r, &Spares::default())
            .await
            .map_err(Error::Closed)?;
        let (version, extensions) = packet::decode_version(&body)?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                waiting: HashMap::new(),
                closed: None,
            }),
            next_id: AtomicU32::new(1),
            spare: Spares::shared(),
        });
        let (out, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_requests(w, rx, shared.clone()));
        let reader = tokio::spawn(read_replies(r, shared.clone()));
        let version = Version {
            version,
            extensions: extensions.into_iter().collect(),
        };
        Ok((
            Client {
                shared,
                out,
                reader,
            },
            version,
        ))
    }

    /// True once the channel has ended (read or write side).
    pub fn is_closed(&self) -> bool {
        self.shared.pending().closed.is_some()
    }

    /// Sends EOF on the channel after the requests already queued.
    pub fn close_session(&self) {
        let _ = self.out.send(Vec::new());
    }

    /// Registers the request, then queues it: its reply can never arrive
    /// before someone waits for it.
    fn call(&self, frame: Frame) -> impl Future<Output = Result<Reply, Error>> + Send + use<> {
        let shared = self.shared.clone();
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let registered = {
            let mut p = shared.pending();
            match &p.closed {
                Some(why) => Err(Error::Closed(why.clone())),
                None => {
                    p.waiting.insert(id, tx);
                    Ok(())
                }
            }
        };
        if registered.is_ok() && self.out.send(frame.finish(id)).is_err() {
            shared.close("the writer stopped".to_string());
        }
        async move {
            registered?;
            // A caller that gives up (a timeout) leaves no waiter behind.
            let _forget = Forget {
                shared: &shared,
                id,
            };
            match rx.await {
                Ok(reply) => reply,
                Err(_) => Err(Error::Closed(shared.reason())),
            }
        }
    }

    pub fn open(
        &self,
        path: &[u8],
        flags: u32,
        attrs: &Attrs,
    ) -> impl Future<Output = Result<Handle, Error>> + Send + use<> {
        let call = self.call(
            Frame::new(packet::OPEN)
                .string(path)
                .u32(flags)
                .attrs(attrs),
        );
        async move { handle(call.await?) }
    }

    pub fn opendir(
        &self,
        path: &[u8],
    ) -> impl Future<Output = Result<Handle, Error>> + Send + use<> {
        let call = self.call(Frame::new(packet::OPENDIR).string(path));
        async move { handle(call.await?) }
    }

    pub fn close(&self, h: &Handle) -> impl Future<Output = Result<(), Error>> + Send + use<> {
        self.done(Frame::new(packet::CLOSE).string(&h.0))
    }

    /// Up to `len` bytes from `offset`; empty at the end of the file.
    pub fn read(
        &self,
        h: &Handle,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<Data, Error>> + Send + use<> {
        let call = self.call(Frame::new(packet::READ).string(&h.0).u64(offset).u32(len));
        async move {
            match call.await? {
                Reply::Data(d) => Ok(d),
                Reply::Status {
                    code: status::EOF, ..
                } => Ok(Data::default()),
                other => Err(refused(other)),
            }
        }
    }

    /// A WRITE request whose data the caller appends: the bytes go from
    /// the caller's reads into the packet with no copy in between.
    pub fn write_buf(&self, h: &Handle, offset: u64, capacity: usize) -> WriteBuf {
        let buf = self.shared.spare.take();
        let frame = Frame::in_buffer(packet::WRITE, buf, 30 + h.0.len() + capacity)
            .string(&h.0)
            .u64(offset)
            .u32(0);
        let at = frame.len() - 4;
        WriteBuf { frame, at }
    }

    pub fn write(
        &self,
        mut buf: WriteBuf,
    ) -> impl Future<Output = Result<(), Error>> + Send + use<> {
        buf.frame.finish_data(buf.at);
        self.done(buf.frame)
    }

    /// The next page of a directory; `None` at its end.
    pub fn readdir(
        &self,
        h: &Handle,
    ) -> impl Future<Output = Result<Option<Vec<NameEntry>>, Error>> + Send + use<> {
        let call = self.call(Frame::new(packet::READDIR).string(&h.0));
        async move {
            match call.await? {
                Reply::Name(names) => Ok(Some(names)),
                Reply::Status {
                    code: status::EOF, ..
                } => Ok(None),
                other => Err(refused(other)),
            }
        }
    }

    pub fn stat(&self, path: &[u8]) -> impl Future<Output = Result<Attrs, Error>> + Send + use<> {
        self.attrs(Frame::new(packet::STAT).string(path))
    }

    pub fn lstat(&self, path: &[u8]) -> impl Future<Output = Result<Attrs, Error>> + Send + use<> {
        self.attrs(Frame::new(packet::LSTAT).string(path))
    }

    pub fn fstat(&self, h: &Handle) -> impl Future<Output = Result<Attrs, Error>> + Send + use<> {
        self.attrs(Frame::new(packet::FSTAT).string(&h.0))
    }

    pub fn setstat(
        &self,
        path: &[u8],
        attrs: &Attrs,
    ) -> impl Future<Output = Result<(), Error>> + Send + use<> {
        self.done(Frame::new(packet::SETSTAT).string(path).attrs(attrs))
    }

    pub fn remove(&self, path: &[u8]) -> impl Future<Output = Result<(), Error>> + Send + use<> {
        self.done(Frame::new(packet::REMOVE).string(path))
    }

    pub fn mkdir(&self, path: &[u8]) -> impl Future<Output = Result<(), Error>> + Send + use<> {
        self.done(
            Frame::new(packet::MKDIR)
                .string(path)
                .attrs(&Attrs::default()),
        )
    }

    /// The plain v3 rename, which must fail when `to` exists.
    pub fn rename(
        &self,
        from: &[u8],
        to: &[u8],
    ) -> impl Future<Output = Result<(), Error>> + Send + use<> {
        self.done(Frame::new(packet::RENAME).string(from).string(to))
    }

    /// `posix-rename@openssh.com`: replaces `to` atomically.
    pub fn posix_rename(
        &self,
        from: &[u8],
        to: &[u8],
    ) -> impl Future<Output = Result<(), Error>> + Send + use<> {
        self.done(
            Frame::new(packet::EXTENDED)
                .string(b"posix-rename@openssh.com")
                .string(from)
                .string(to),
        )
    }

    /// `fsync@openssh.com` on an open file.
    pub fn fsync(&self, h: &Handle) -> impl Future<Output = Result<(), Error>> + Send + use<> {
        self.done(
            Frame::new(packet::EXTENDED)
                .string(b"fsync@openssh.com")
                .string(&h.0),
        )
    }

    pub fn readlink(
        &self,
        path: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, Error>> + Send + use<> {
        let call = self.call(Frame::new(packet::READLINK).string(path));
        async move {
            match call.await? {
                Reply::Name(mut names) if !names.is_empty() => Ok(names.swap_remove(0).name),
                other => Err(refused(other)),
            }
        }
    }

    pub fn limits(&self) -> impl Future<Output = Result<Limits, Error>> + Send + use<> {
        let call = self.call(Frame::new(packet::EXTENDED).string(b"limits@openssh.com"));
        async move {
            match call.await? {
                Reply::Extended(data) => {
                    let mut c = packet::Cursor::new(&data);
                    let _max_packet = c.u64()?;
                    Ok(Limits {
                        max_read: c.u64()?,
                        max_write: c.u64()?,
                    })
                }
                other => Err(refused(other)),
            }
        }
    }

    fn done(&self, frame: Frame) -> impl Future<Output = Result<(), Error>> + Send + use<> {
        let call = self.call(frame);
        async move {
            match call.await? {
                Reply::Status { code: 0, .. } => Ok(()),
                other => Err(refused(other)),
            }
        }
    }

    fn attrs(&self, frame: Frame) -> impl Future<Output = Result<Attrs, Error>> + Send + use<> {
        let call = self.call(frame);
        async move {
            match call.await? {
                Reply::Attrs(a) => Ok(a),
                other => Err(refused(other)),
            }
        }
    }
}

/// A WRITE request being filled; see [`Client::write_buf`].
pub struct WriteBuf {
    frame: Frame,
    at: usize,
}

impl WriteBuf {
    /// The packet so far: append the data to it.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.frame.buffer()
    }

    /// Bytes of data appended so far.
    pub fn data_len(&self) -> usize {
        self.frame.len() - self.at - 4
    }
}

struct Forget<'a> {
    shared: &'a Shared,
    id: u32,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.pending().waiting.remove(&self.id);
    }
}

fn handle(reply: Reply) -> Result<Handle, Error> {
    match reply {
        Reply::Handle(h) => Ok(h),
        other => Err(refused(other)),
    }
}

/// A status where another reply was due is the server's refusal; any
/// other reply is a reply to something else.
fn refused(reply: Reply) -> Error {
    match reply {
        Reply::Status { code, message } if code != 0 => Error::Status { code, message },
        other => Error::BadReply(format!("{other:.40?} does not answer the request")),
    }
}

fn gone(e: std::io::Error) -> Error {
    Error::Closed(e.to_string())
}

async fn read_packet<R: AsyncRead + Unpin>(r: &mut R, spare: &Spares) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "the server ended the session".to_string(),
        _ => e.to_string(),
    })?;
    let len = u32::from_be_bytes(len) as usize;
    if !(5..=MAX_PACKET).contains(&len) {
        return Err(format!("the server sent a packet of {len} bytes"));
    }
    let mut body = spare.take_len(len);
    r.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    Ok(body)
}

async fn read_replies<R: AsyncRead + Unpin>(mut r: R, shared: Arc<Shared>) {
    let why = loop {
        let body = match read_packet(&mut r, &shared.spare).await {
            Ok(b) => b,
            Err(why) => break why,
        };
        let Some(id) = packet::reply_id(&body) else {
            continue;
        };
        let reply = packet::decode(body).map(|r| match r {
            Reply::Data(d) => Reply::Data(d.returning_to(&shared.spare)),
            other => other,
        });
        let waiter = shared.pending().waiting.remove(&id);
        if let Some(w) = waiter {
            let _ = w.send(reply);
        }
    };
    shared.close(why);
}

/// Writes frames as they come; small frames that queued meanwhile go out
/// in one write (one SSH packet for many small requests). A large frame (a
/// WRITE) is written as it is, never copied, and its buffer goes back to
/// the spares.
async fn write_requests<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut batch = Vec::new();
    // A frame taken from the queue that did not fit the last write.
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(f) => f,
            None => match rx.recv().await {
                Some(f) => f,
                None => break,
            },
        };
        if first.is_empty() {
            break;
        }
        batch.clear();
        let ending;
        (ending, next) = gather(&first, &mut rx, &mut batch);
        let bytes = if batch.is_empty() { &first } else { &batch };
        let sent = async {
            w.write_all(bytes).await?;
            w.flush().await
        };
        if let Err(e) = sent.await {
            shared.close(format!("write failed: {e}"));
            return;
        }
        shared.spare.put(first);
        if ending {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// Joins the small frames queued behind a small `first` into `batch` (left
/// empty when `first` goes alone). Returns whether the end marker came, and
/// the frame that stopped the gathering (a large one, or one that would
/// pass [`BATCH`]), which goes next.
fn gather(
    first: &[u8],
    rx: &mut mpsc::UnboundedReceiver<Vec<u8>>,
    batch: &mut Vec<u8>,
) -> (bool, Option<Vec<u8>>) {
    if first.len() >= LARGE {
        return (false, None);
    }
    loop {
        match rx.try_recv() {
            Ok(f) if f.is_empty() => return (true, None),
            Ok(f) if f.len() >= LARGE || batch.len().max(first.len()) + f.len() > BATCH => {
                return (false, Some(f));
            }
            Ok(f) => {
                if batch.is_empty() {
                    batch.extend_from_slice(first);
                }
                batch.extend_from_slice(&f);
            }
            Err(_) => return (false, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            pending: Mutex::new(Pending {
                waiting: HashMap::new(),
                closed: None,
            }),
            next_id: AtomicU32::new(1),
            spare: Spares::default(),
        })
    }

    /// Small frames queued together share a write, a large one goes alone
    /// and uncopied: the bytes on the channel are the frames in the order
    /// they were queued, and the large frames' buffers come back as spares.
    #[tokio::test]
    async fn frames_go_out_in_order_and_write_buffers_come_back() {
        let frames: Vec<Vec<u8>> = vec![
            vec![1; 10],
            vec![2; 20],
            vec![3; LARGE],
            vec![4; 30],
            vec![5; LARGE + 7],
            vec![6; 5],
            vec![7; 5],
        ];
        let (tx, rx) = mpsc::unbounded_channel();
        for f in &frames {
            tx.send(f.clone()).unwrap();
        }
        tx.send(Vec::new()).unwrap();
        // One byte written after the empty frame (the end) must not appear.
        tx.send(vec![9]).unwrap();
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let s = shared();
        write_requests(near, rx, s.clone()).await;
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, frames.concat());
        assert_eq!(s.spare.count(), 2);
    }

    /// A DATA reply's frame is a spare again once its reader drops it.
    #[test]
    fn a_data_reply_gives_its_frame_back_when_dropped() {
        let spare = Spares::default();
        // DATA (103), id 1, a string of LARGE bytes.
        let mut body = vec![103u8, 0, 0, 0, 1];
        body.extend_from_slice(&(LARGE as u32).to_be_bytes());
        body.resize(9 + LARGE, 5);
        let Ok(Reply::Data(d)) = packet::decode(body) else {
            panic!("not decoded as DATA");
        };
        let d = d.returning_to(&spare);
        assert_eq!(d.bytes(), vec![5u8; LARGE].as_slice());
        assert_eq!(spare.count(), 0);
        drop(d);
        assert_eq!(spare.count(), 1);
    }
}
