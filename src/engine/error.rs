//! A file's failure: what kind it is and whether trying again can help.
//! Retry and failure routing decide from `temporary` alone.

use crate::remote::{ErrorKind, RemoteError};
use std::fmt;

#[derive(Debug, Clone)]
pub struct FileError {
    pub kind: ErrorKind,
    pub temporary: bool,
    pub message: String,
}

impl FileError {
    pub fn permanent(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            temporary: false,
            message: message.into(),
        }
    }

    pub fn temporary(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            temporary: true,
            message: message.into(),
        }
    }

    /// A local file-system error while delivering, with what was being done.
    pub fn local(context: impl fmt::Display, e: &std::io::Error) -> Self {
        RemoteError::from_io(context.to_string(), e).into()
    }
}

impl From<RemoteError> for FileError {
    fn from(e: RemoteError) -> Self {
        Self {
            kind: e.kind,
            temporary: e.temporary,
            message: e.to_string(),
        }
    }
}

impl From<sqlx::Error> for FileError {
    fn from(e: sqlx::Error) -> Self {
        Self::temporary(ErrorKind::Other, format!("state database: {e}"))
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
