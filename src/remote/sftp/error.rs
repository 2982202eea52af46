//! SSH and SFTP errors mapped once to a kind and a temporary flag.

use super::hostkey::HandshakeError;
use crate::remote::{ErrorKind, RemoteError};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::StatusCode;

/// An error from an SFTP request on `path`.
pub fn sftp(op: &str, path: &str, e: SftpError) -> RemoteError {
    let ctx = format!("{op} {path}");
    let (kind, temporary) = match &e {
        SftpError::Status(s) => match s.status_code {
            StatusCode::NoSuchFile => (ErrorKind::NotFound, false),
            StatusCode::PermissionDenied => (ErrorKind::PermissionDenied, false),
            StatusCode::OpUnsupported => (ErrorKind::Other, false),
            StatusCode::NoConnection | StatusCode::ConnectionLost => (ErrorKind::Connection, true),
            // SSH_FX_FAILURE covers everything else the server would not say,
            // from a full disk to an existing target: worth another try.
            _ => (ErrorKind::Other, true),
        },
        SftpError::Timeout => (ErrorKind::Timeout, true),
        SftpError::Limited(_) => (ErrorKind::Other, false),
        SftpError::IO(_) | SftpError::UnexpectedBehavior(_) | SftpError::UnexpectedPacket => {
            (ErrorKind::Connection, true)
        }
    };
    RemoteError::new(kind, temporary, ctx, e.to_string())
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
