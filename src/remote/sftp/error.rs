//! SSH and SFTP errors mapped once to a kind and a temporary flag.

use super::hostkey::HandshakeError;
use super::wire::{Error as SftpError, status};
use crate::remote::{ErrorKind, RemoteError};

/// An error from an SFTP request on `path`.
pub fn sftp(op: &str, path: &str, e: SftpError) -> RemoteError {
    let ctx = format!("{op} {path}");
    let (kind, temporary) = match &e {
        SftpError::Status { code, .. } => status_kind(*code),
        SftpError::Timeout => (ErrorKind::Timeout, true),
        SftpError::Closed(_) => (ErrorKind::Connection, true),
        // One reply that made no sense: this request failed, the session
        // is still in step (replies are matched by id).
        SftpError::BadReply(_) => (ErrorKind::Other, true),
    };
    RemoteError::new(kind, temporary, ctx, e.to_string())
}

/// v3 defines codes 0 to 8; the later drafts' codes that servers send
/// anyway (ProFTPD, asyncssh with newer clients) mean what they say. A code
/// nobody defined is a refusal of this request like SSH_FX_FAILURE.
fn status_kind(code: u32) -> (ErrorKind, bool) {
    match code {
        status::NO_SUCH_FILE | status::NO_SUCH_PATH => (ErrorKind::NotFound, false),
        status::PERMISSION_DENIED | status::WRITE_PROTECT => (ErrorKind::PermissionDenied, false),
        status::OP_UNSUPPORTED => (ErrorKind::Other, false),
        status::FILE_ALREADY_EXISTS => (ErrorKind::AlreadyExists, false),
        status::NO_SPACE_ON_FILESYSTEM | status::QUOTA_EXCEEDED => (ErrorKind::Storage, true),
        status::NO_CONNECTION | status::CONNECTION_LOST => (ErrorKind::Connection, true),
        // SSH_FX_FAILURE covers everything else the server would not say,
        // from a full disk to an existing target: worth another try.
        _ => (ErrorKind::Other, true),
    }
}

/// An error while connecting or authenticating.
pub fn handshake(endpoint: &str, e: HandshakeError) -> RemoteError {
    let ctx = format!("connect {endpoint}");
    match e {
        HandshakeError::Refused(why) => RemoteError::new(ErrorKind::Auth, false, ctx, why),
        HandshakeError::Ssh(e) => ssh(&ctx, e),
    }
}

pub fn ssh(ctx: &str, e: russh::Error) -> RemoteError {
    use russh::Error as E;
    let (kind, temporary) = match &e {
        E::NoCommonAlgo { .. } | E::UnknownAlgo | E::UnsupportedAuthMethod | E::NoAuthMethod => {
            (ErrorKind::Other, false)
        }
        E::ConnectionTimeout | E::KeepaliveTimeout | E::InactivityTimeout | E::Elapsed(_) => {
            (ErrorKind::Timeout, true)
        }
        E::Keys(_) | E::CouldNotReadKey => (ErrorKind::Auth, false),
        // Resets, disconnects ("too many connections" is one), I/O: the
        // network or a busy server; another try may well work.
        _ => (ErrorKind::Connection, true),
    };
    RemoteError::new(kind, temporary, ctx, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_beyond_v3_are_classified_and_unknown_ones_are_plain_refusals() {
        let e = |code| {
            let r = sftp(
                "rename",
                "/a -> /b",
                SftpError::Status {
                    code,
                    message: String::new(),
                },
            );
            (r.kind, r.temporary, r.breaks_session())
        };
        assert_eq!(e(11), (ErrorKind::AlreadyExists, false, false));
        assert_eq!(e(2), (ErrorKind::NotFound, false, false));
        assert_eq!(e(14), (ErrorKind::Storage, true, false));
        assert_eq!(e(0x1234), (ErrorKind::Other, true, false));
        let closed = sftp("read", "/x", SftpError::Closed("eof".into()));
        assert!(closed.breaks_session());
    }
}
