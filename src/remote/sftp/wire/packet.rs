//! SFTP v3 packets (draft-ietf-secsh-filexfer-02): requests encoded into
//! frames, replies decoded from them. Handles and names stay bytes: the
//! protocol defines both as byte strings, and servers use that (asyncssh's
//! handles are 4-byte counters, file names need not be UTF-8).

use super::Error;
use super::spare::Spares;

pub const INIT: u8 = 1;
pub const VERSION: u8 = 2;
pub const OPEN: u8 = 3;
pub const CLOSE: u8 = 4;
pub const READ: u8 = 5;
pub const WRITE: u8 = 6;
pub const LSTAT: u8 = 7;
pub const FSTAT: u8 = 8;
pub const SETSTAT: u8 = 9;
pub const OPENDIR: u8 = 11;
pub const READDIR: u8 = 12;
pub const REMOVE: u8 = 13;
pub const MKDIR: u8 = 14;
pub const STAT: u8 = 17;
pub const RENAME: u8 = 18;
pub const READLINK: u8 = 19;
pub const EXTENDED: u8 = 200;

const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const NAME: u8 = 104;
const ATTRS: u8 = 105;
const EXTENDED_REPLY: u8 = 201;

const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// Where the data of a DATA reply starts: type, id, length.
const DATA_START: usize = 9;

/// File attributes; each field is present only when the server sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid_gid: Option<(u32, u32)>,
    pub permissions: Option<u32>,
    /// (atime, mtime), Unix seconds.
    pub times: Option<(u32, u32)>,
}

impl Attrs {
    pub fn mtime(&self) -> Option<u32> {
        self.times.map(|(_, m)| m)
    }
}

/// One entry of a NAME reply: the name as the server's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameEntry {
    pub name: Vec<u8>,
    pub attrs: Attrs,
}

/// An open file or directory on the server: opaque bytes, sent back as
/// they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handle(pub Vec<u8>);

/// The bytes of a DATA reply, kept in the frame they arrived in. The
/// frame goes back to its session's spares when the reply is dropped.
#[derive(Default)]
pub struct Data {
    frame: Vec<u8>,
    spare: Option<Spares>,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Data({} bytes)", self.len())
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            spare.put(std::mem::take(&mut self.frame));
        }
    }
}

impl Data {
    /// This reply's frame goes back to `spare` once the reply is dropped.
    pub fn returning_to(mut self, spare: &Spares) -> Self {
        self.spare = Some(spare.clone());
        self
    }

    pub fn bytes(&self) -> &[u8] {
        self.frame.get(DATA_START..).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

#[derive(Debug)]
pub enum Reply {
    Status { code: u32, message: String },
    Handle(Handle),
    Data(Data),
    Name(Vec<NameEntry>),
    Attrs(Attrs),
    Extended(Vec<u8>),
}

/// A request being built: length and id are filled in when it is sent.
pub struct Frame(Vec<u8>);

impl Frame {
    pub fn new(kind: u8) -> Self {
        Self::with_capacity(kind, 64)
    }

    pub fn with_capacity(kind: u8, capacity: usize) -> Self {
        Self::in_buffer(kind, Vec::new(), capacity)
    }

    /// As [`Frame::with_capacity`], built in `buf` (emptied first): a
    /// buffer an earlier request used, whose memory is already mapped.
    pub fn in_buffer(kind: u8, mut buf: Vec<u8>, capacity: usize) -> Self {
        buf.clear();
        buf.reserve(capacity.max(9));
        buf.extend_from_slice(&[0, 0, 0, 0, kind, 0, 0, 0, 0]);
        Frame(buf)
    }

    pub fn u32(mut self, n: u32) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    pub fn u64(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    pub fn string(mut self, s: &[u8]) -> Self {
        self.0.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.0.extend_from_slice(s);
        self
    }

    pub fn attrs(mut self, a: &Attrs) -> Self {
        let mut flags = 0;
        for (set, bit) in [
            (a.size.is_some(), ATTR_SIZE),
            (a.uid_gid.is_some(), ATTR_UIDGID),
            (a.permissions.is_some(), ATTR_PERMISSIONS),
            (a.times.is_some(), ATTR_ACMODTIME),
        ] {
            if set {
                flags |= bit;
            }
        }
        self = self.u32(flags);
        if let Some(s) = a.size {
            self = self.u64(s);
        }
        if let Some((u, g)) = a.uid_gid {
            self = self.u32(u).u32(g);
        }
        if let Some(p) = a.permissions {
            self = self.u32(p);
        }
        if let Some((at, mt)) = a.times {
            self = self.u32(at).u32(mt);
        }
        self
    }

    /// The open tail of a WRITE request: `data` goes straight after it, and
    /// [`Frame::finish_data`] sets its length.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// For a frame that ends in a string whose bytes were appended through
    /// [`Frame::buffer`] after a 4-byte placeholder at `at`.
    pub fn finish_data(&mut self, at: usize) {
        let len = (self.0.len() - at - 4) as u32;
        self.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The bytes on the wire, with the request `id`.
    pub fn finish(mut self, id: u32) -> Vec<u8> {
        let len = (self.0.len() - 4) as u32;
        self.0[0..4].copy_from_slice(&len.to_be_bytes());
        self.0[5..9].copy_from_slice(&id.to_be_bytes());
        self.0
    }

    /// INIT carries the version where other requests carry an id.
    pub fn init(version: u32) -> Vec<u8> {
        Frame::new(INIT).finish(version)
    }
}

/// The request id of a reply (every reply but VERSION has one).
pub fn reply_id(body: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(body.get(1..5)?.try_into().ok()?))
}

/// Decodes a reply body (without its length). A reply that does not parse
/// fails only its own request.
pub fn decode(body: Vec<u8>) -> Result<Reply, Error> {
    let kind = body.first().copied().unwrap_or(0);
    if kind == DATA {
        let mut c = Cursor::new(&body[5..]);
        let len = c.u32()? as usize;
        if body.len() != DATA_START + len {
            return Err(bad("DATA length does not match its packet"));
        }
        return Ok(Reply::Data(Data {
            frame: body,
            spare: None,
        }));
    }
    let mut c = Cursor::new(body.get(5..).ok_or_else(|| bad("short packet"))?);
    let reply = match kind {
        STATUS => {
            let code = c.u32()?;
            // Some servers leave out the message and language tag.
            let message = if c.is_empty() {
                String::new()
            } else {
                String::from_utf8_lossy(c.string()?).into_owned()
            };
            Reply::Status { code, message }
        }
        HANDLE => Reply::Handle(Handle(c.string()?.to_vec())),
        NAME => {
            let count = c.u32()?;
            let mut names = Vec::with_capacity(count.min(4096) as usize);
            for _ in 0..count {
                let name = c.string()?.to_vec();
                let _long_name = c.string()?;
                let attrs = c.attrs()?;
                names.push(NameEntry { name, attrs });
            }
            Reply::Name(names)
        }
        ATTRS => Reply::Attrs(c.attrs()?),
        EXTENDED_REPLY => Reply::Extended(c.rest().to_vec()),
        other => return Err(bad(&format!("unknown reply type {other}"))),
    };
    Ok(reply)
}

/// Extensions a server announces: (name, data).
pub type Extensions = Vec<(String, Vec<u8>)>;

/// The server's VERSION: its protocol version and extensions.
pub fn decode_version(body: &[u8]) -> Result<(u32, Extensions), Error> {
    if body.first() != Some(&VERSION) {
        return Err(bad("the server did not answer INIT with VERSION"));
    }
    let mut c = Cursor::new(&body[1..]);
    let version = c.u32()?;
    let mut extensions = Vec::new();
    while !c.is_empty() {
        let name = String::from_utf8_lossy(c.string()?).into_owned();
        let data = c.string()?.to_vec();
        extensions.push((name, data));
    }
    Ok((version, extensions))
}

fn bad(what: &str) -> Error {
    Error::BadReply(what.to_string())
}

/// Reads big-endian fields from a reply.
pub struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.rest.len() < n {
            return Err(bad("reply ends early"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub fn string(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    fn attrs(&mut self) -> Result<Attrs, Error> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid_gid = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.times = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.string()?;
                self.string()?;
            }
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as a server sends it, without its length: the same layout
    /// as a request (type, id, fields).
    fn body(kind: u8, id: u32, fields: impl FnOnce(Frame) -> Frame) -> Vec<u8> {
        fields(Frame::new(kind)).finish(id)[4..].to_vec()
    }

    #[test]
    fn handles_and_names_keep_every_byte() {
        let handle = [0, 0, 0, 0x80];
        let b = body(HANDLE, 7, |f| f.string(&handle));
        assert_eq!(reply_id(&b), Some(7));
        match decode(b).unwrap() {
            Reply::Handle(h) => assert_eq!(h.0, handle),
            other => panic!("{other:?}"),
        }
        let attrs = Attrs {
            size: Some(5),
            uid_gid: None,
            permissions: Some(0o100644),
            times: Some((1, 2)),
        };
        let b = body(NAME, 8, |f| {
            f.u32(1)
                .string(b"a\xff.csv")
                .string(b"-rw-r--r-- ...")
                .attrs(&attrs)
        });
        match decode(b).unwrap() {
            Reply::Name(n) => {
                assert_eq!(n[0].name, b"a\xff.csv");
                assert_eq!(n[0].attrs, attrs);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn any_status_code_is_a_reply_and_a_bare_status_is_read() {
        let b = body(STATUS, 3, |f| {
            f.u32(11).string(b"File already exists").string(b"en")
        });
        match decode(b).unwrap() {
            Reply::Status { code, message } => {
                assert_eq!((code, message.as_str()), (11, "File already exists"))
            }
            other => panic!("{other:?}"),
        }
        let b = body(STATUS, 4, |f| f.u32(0x1234));
        assert!(matches!(
            decode(b).unwrap(),
            Reply::Status { code: 0x1234, .. }
        ));
    }

    #[test]
    fn data_is_read_in_place_and_bad_replies_are_errors() {
        match decode(body(DATA, 9, |f| f.string(b"hello"))).unwrap() {
            Reply::Data(d) => assert_eq!(d.bytes(), b"hello"),
            other => panic!("{other:?}"),
        }
        let short = body(DATA, 9, |f| f.u32(10));
        assert!(matches!(decode(short), Err(Error::BadReply(_))));
        let unknown = body(99, 9, |f| f);
        assert!(matches!(decode(unknown), Err(Error::BadReply(_))));
        let cut = body(NAME, 1, |f| f.u32(2).string(b"x"));
        assert!(matches!(decode(cut), Err(Error::BadReply(_))));
    }

    #[test]
    fn requests_carry_length_and_id() {
        let f = Frame::new(OPEN)
            .string(b"/x")
            .u32(1)
            .attrs(&Attrs::default())
            .finish(0x0102_0304);
        assert_eq!(&f[0..4], &((f.len() - 4) as u32).to_be_bytes());
        assert_eq!(&f[4..9], &[OPEN, 1, 2, 3, 4]);
        let mut w = Frame::new(WRITE).string(b"h").u64(0).u32(0);
        let at = w.len() - 4;
        w.buffer().extend_from_slice(b"abc");
        w.finish_data(at);
        let w = w.finish(1);
        assert_eq!(&w[w.len() - 7..], &[0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn version_lists_extensions() {
        // VERSION has the version where other packets have an id.
        let b = body(VERSION, 3, |f| f.string(b"fsync@openssh.com").string(b"1"));
        let (v, ext) = decode_version(&b).unwrap();
        assert_eq!(v, 3);
        assert_eq!(ext, vec![("fsync@openssh.com".to_string(), b"1".to_vec())]);
    }
}
