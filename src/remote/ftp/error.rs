//! FTP failures mapped once to an [`ErrorKind`] and a temporary flag.
//! RFC 959 4.2: a 4xx reply is a transient negative completion (trying again
//! may succeed), a 5xx reply a permanent one. The retry logic reads only the
//! flag, never the server's text.

use crate::remote::{ErrorKind, RemoteError};
use suppaftp::FtpError;
use suppaftp::types::Response;

/// Classifies a suppaftp error that happened while doing `context`.
pub fn classify(context: impl Into<String>, e: FtpError) -> RemoteError {
    let context = context.into();
    match e {
        FtpError::UnexpectedResponse(r) => from_reply(context, &r),
        FtpError::ConnectionError(io) => {
            let kind = if io.kind() == std::io::ErrorKind::TimedOut {
                ErrorKind::Timeout
            } else {
                ErrorKind::Connection
            };
            RemoteError::new(kind, true, context, io.to_string())
        }
        FtpError::SecureError(msg) => tls_error(context, msg),
        // A reply that cannot be parsed leaves the control connection out of
        // step: drop the session and try again on a new one.
        other => RemoteError::new(ErrorKind::Connection, true, context, other.to_string()),
    }
}

/// A TLS failure. A certificate that fails verification will fail the same
/// way next time: permanent, with what to configure.
pub fn tls_error(context: String, msg: String) -> RemoteError {
    // suppaftp hands rustls errors over as text; webpki's name for a
    // self-signed (CA) certificate that the server presents as its own.
    if msg.contains("CaUsedAsEndEntity") {
        let hint = "ca_file holds a CA certificate used as the server's own; \
                    use certificate_sha256 to pin a self-signed server";
        return RemoteError::new(
            ErrorKind::Auth,
            false,
            context,
            format!("TLS: {msg} ({hint})"),
        );
    }
    let lower = msg.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("certificate_sha256") {
        let hint = "check ca_file, certificate_sha256 or the server's certificate and host name";
        return RemoteError::new(
            ErrorKind::Auth,
            false,
            context,
            format!("TLS: {msg} ({hint})"),
        );
    }
    RemoteError::new(ErrorKind::Connection, true, context, format!("TLS: {msg}"))
}

/// The three-digit code of a reply; suppaftp maps codes it does not know to
/// `Unknown`, so read the digits from the reply text then.
pub fn reply_code(r: &Response) -> u32 {
    match r.status.code() {
        0 => String::from_utf8_lossy(r.body.get(..3).unwrap_or_default())
            .parse()
            .unwrap_or(0),
        c => c,
    }
}

fn from_reply(context: String, r: &Response) -> RemoteError {
    let code = reply_code(r);
    let text = String::from_utf8_lossy(&r.body).trim().to_string();
    let (kind, temporary) = reply_kind(code);
    let message = match code {
        522 => format!(
            "{text} (the server demands TLS session reuse on data connections, \
             vsftpd require_ssl_reuse=YES, and refused this data connection's session; \
             if it persists, set require_ssl_reuse=NO on the server)"
        ),
        _ => text,
    };
    RemoteError::new(kind, temporary, context, message)
}

/// Code -> (kind, temporary).
pub fn reply_kind(code: u32) -> (ErrorKind, bool) {
    match code {
        // Service closing or data connection trouble: a new session may work.
        421 | 425 | 426 => (ErrorKind::Connection, true),
        // Insufficient storage. RFC 959 also calls 552 permanent, but a
        // quota frees up like a full disk does (DESIGN: out of space is temporary).
        452 | 552 => (ErrorKind::Storage, true),
        // 430: invalid user name or password (RFC 2228 draft replies).
        430 | 530 | 532 => (ErrorKind::Auth, false),
        400..=499 => (ErrorKind::Other, true),
        // TLS required or refused by policy (RFC 4217).
        534 | 536 => (ErrorKind::Auth, false),
        550 => (ErrorKind::NotFound, false),
        553 => (ErrorKind::PermissionDenied, false),
        500..=599 => (ErrorKind::Other, false),
        _ => (ErrorKind::Other, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suppaftp::Status;

    #[test]
    fn replies_map_to_kinds_and_temporary_flags() {
        assert_eq!(reply_kind(550), (ErrorKind::NotFound, false));
        assert_eq!(reply_kind(530), (ErrorKind::Auth, false));
        assert_eq!(reply_kind(450), (ErrorKind::Other, true));
        assert_eq!(reply_kind(421), (ErrorKind::Connection, true));
        assert_eq!(reply_kind(552), (ErrorKind::Storage, true));
        assert_eq!(reply_kind(502), (ErrorKind::Other, false));
        assert_eq!(reply_kind(553), (ErrorKind::PermissionDenied, false));
    }

    #[test]
    fn unknown_codes_are_read_from_the_text() {
        let r = Response::new(Status::Unknown, b"522 SSL connection failed\r\n".to_vec());
        assert_eq!(reply_code(&r), 522);
        let e = classify("retr /x", FtpError::UnexpectedResponse(r));
        assert!(!e.temporary && e.message.contains("require_ssl_reuse"));
        let r = Response::new(
            Status::FileUnavailable,
            b"550 Failed to open file.\r\n".to_vec(),
        );
        let e = classify("retr /x", FtpError::UnexpectedResponse(r));
        assert_eq!((e.kind, e.temporary), (ErrorKind::NotFound, false));
    }

    #[test]
    fn certificate_failures_are_permanent() {
        let e = tls_error(
            "connect".into(),
            "invalid peer certificate: UnknownIssuer".into(),
        );
        assert_eq!((e.kind, e.temporary), (ErrorKind::Auth, false));
        let e = tls_error("connect".into(), "handshake eof".into());
        assert!(e.temporary);
    }
}
