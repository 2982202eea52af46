//! A small SFTP v3 client over any byte stream (ferry gives it the SSH
//! channel). Requests are told apart by id, so any number can be in
//! flight from `&self`; one task reads the replies and hands each to its
//! request, one task writes the requests, several per SSH packet when
//! they queue up.
//!
//! Written for ferry rather than taken from a crate (ARCHITECTURE.md,
//! SFTP, has the measurements): russh-sftp 3.0 keeps handles and names as
//! `String` (handle `00 00 00 80` went back to asyncssh changed) and drops
//! the connection on a status code it does not know; openssh-sftp-client
//! 0.15 keeps bytes, but its `rename` replaces the target wherever
//! `posix-rename@openssh.com` is offered, and ferry's archive moves need
//! the plain rename that never replaces. Here a status is a number: it
//! fails its own request, nothing else.

mod client;
mod packet;
mod spare;

pub use client::{Client, WriteBuf};
pub use packet::{Attrs, Handle, NameEntry};

use std::fmt;

/// SSH_FX_* status codes. v3 defines 0 to 8; servers also send later
/// drafts' codes (ProFTPD: 11 for a rename onto an existing name).
pub mod status {
    pub const EOF: u32 = 1;
    pub const NO_SUCH_FILE: u32 = 2;
    pub const PERMISSION_DENIED: u32 = 3;
    pub const FAILURE: u32 = 4;
    pub const NO_CONNECTION: u32 = 6;
    pub const CONNECTION_LOST: u32 = 7;
    pub const OP_UNSUPPORTED: u32 = 8;
    pub const NO_SUCH_PATH: u32 = 10;
    pub const FILE_ALREADY_EXISTS: u32 = 11;
    pub const WRITE_PROTECT: u32 = 12;
    pub const NO_SPACE_ON_FILESYSTEM: u32 = 14;
    pub const QUOTA_EXCEEDED: u32 = 15;
}

/// SSH_FXF_* open flags.
pub mod open {
    pub const READ: u32 = 0x1;
    pub const WRITE: u32 = 0x2;
    pub const CREATE: u32 = 0x8;
    pub const TRUNCATE: u32 = 0x10;
}

#[derive(Debug)]
pub enum Error {
    /// The server refused the request with this status.
    Status { code: u32, message: String },
    /// The reply did not fit the request or did not parse: this request
    /// fails, the session goes on.
    BadReply(String),
    /// Nothing heard on the channel for `io_timeout`.
    Timeout,
    /// The channel is gone; every request in flight fails with this.
    Closed(String),
}

impl Error {
    pub fn is_status(&self, code: u32) -> bool {
        matches!(self, Error::Status { code: c, .. } if *c == code)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Status { code, message } if message.is_empty() => {
                write!(f, "{} (SFTP status {code})", status_name(*code))
            }
            Error::Status { code, message } => write!(f, "{message} (SFTP status {code})"),
            Error::BadReply(why) => write!(f, "unexpected reply: {why}"),
            Error::Timeout => write!(f, "no answer within io_timeout"),
            Error::Closed(why) => write!(f, "the SFTP channel closed: {why}"),
        }
    }
}

impl std::error::Error for Error {}

fn status_name(code: u32) -> &'static str {
    match code {
        status::EOF => "end of file",
        status::NO_SUCH_FILE => "no such file",
        status::PERMISSION_DENIED => "permission denied",
        status::FAILURE => "failure",
        status::OP_UNSUPPORTED => "operation unsupported",
        status::FILE_ALREADY_EXISTS => "file already exists",
        _ => "refused",
    }
}
