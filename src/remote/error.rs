//! Errors from transports, mapped once to a kind and to whether trying again
//! can help. Retry and failure routing read only these two facts.

use std::fmt;
use std::io;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    PermissionDenied,
    AlreadyExists,
    /// The connection broke or could not be made; the session is unusable.
    Connection,
    Timeout,
    Auth,
    /// The server is out of space or quota.
    Storage,
    /// The server cannot start a read part-way (an FTP server that refuses
    /// REST): the caller must read the file from its first byte.
    ResumeRefused,
    /// The bytes received or sent do not have the digest a sidecar
    /// checksum file or the server gives.
    Checksum,
    Other,
}

impl ErrorKind {
    /// A stable name for metrics labels (`ferry_errors_total{kind=...}`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Auth => "auth",
            ErrorKind::Storage => "storage",
            ErrorKind::ResumeRefused => "resume_refused",
            ErrorKind::Checksum => "checksum",
            ErrorKind::Other => "other",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RemoteError {
    pub kind: ErrorKind,
    pub temporary: bool,
    /// What was being done, e.g. `list /outbound`.
    pub context: String,
    pub message: String,
}

impl RemoteError {
    pub fn new(
        kind: ErrorKind,
        temporary: bool,
        context: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            temporary,
            context: context.into(),
            message: message.into(),
        }
    }

    /// Classifies a local I/O error. Out-of-space, interruptions and timeouts
    /// can pass; missing files and permissions do not fix themselves.
    pub fn from_io(context: impl Into<String>, e: &io::Error) -> Self {
        use io::ErrorKind as K;
        if e.raw_os_error() == Some(libc::ENAMETOOLONG) {
            // The name is as long next time: permanent, with the limits
            // (Linux: NAME_MAX per component, PATH_MAX per path), which
            // ferry's temporary names (`.NAME.ID-MTIME-SIZE.ferry-part`)
            // reach some 40 bytes before the final name does.
            let msg = format!(
                "{e}: a name may have at most 255 bytes (NAME_MAX), a path {} bytes (PATH_MAX)",
                libc::PATH_MAX
            );
            return Self::new(ErrorKind::Other, false, context, msg);
        }
        let (kind, temporary) = match e.kind() {
            K::NotFound => (ErrorKind::NotFound, false),
            K::PermissionDenied | K::ReadOnlyFilesystem => (ErrorKind::PermissionDenied, false),
            K::AlreadyExists => (ErrorKind::AlreadyExists, false),
            K::TimedOut => (ErrorKind::Timeout, true),
            K::StorageFull | K::QuotaExceeded => (ErrorKind::Storage, true),
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::NotConnected => {
                (ErrorKind::Connection, true)
            }
            _ => (ErrorKind::Other, true),
        };
        Self::new(kind, temporary, context, e.to_string())
    }

    /// Whether the session that produced this error should be discarded.
    pub fn breaks_session(&self) -> bool {
        matches!(self.kind, ErrorKind::Connection | ErrorKind::Timeout)
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.message)
    }
}

impl std::error::Error for RemoteError {}

pub type Result<T> = std::result::Result<T, RemoteError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified() {
        let nf = RemoteError::from_io("stat /x", &io::Error::from(io::ErrorKind::NotFound));
        assert_eq!((nf.kind, nf.temporary), (ErrorKind::NotFound, false));
        let full = RemoteError::from_io("write", &io::Error::from(io::ErrorKind::StorageFull));
        assert!(full.temporary);
        let reset = RemoteError::from_io("read", &io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(reset.temporary && reset.breaks_session());
        let long = io::Error::from_raw_os_error(libc::ENAMETOOLONG);
        let long = RemoteError::from_io("create /x", &long);
        assert!(!long.temporary && long.message.contains("at most 255 bytes"));
    }
}
