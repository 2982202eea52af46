//! A file's failure: what kind it is and whether trying again can help.
//! Retry and failure routing decide from `temporary` alone.

use crate::remote::{ErrorKind, RemoteError};
use std::fmt;

/// Why a file waits without spending attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// `if_exists = "wait"` and the name is taken in `local_dir`.
    NameTaken,
    /// ENOSPC, EDQUOT, EROFS or EIO on the local side.
    LocalStorage,
}

impl Hold {
    /// As stored in the `held` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::NameTaken => "name-taken",
            Hold::LocalStorage => "local-storage",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FileError {
    pub kind: ErrorKind,
    pub temporary: bool,
    /// Set when the file must wait for something that is not its fault;
    /// it then spends no attempts and never fails for it.
    pub hold: Option<Hold>,
    /// Another node owns the file now (its lease ran out while this one
    /// was stalled): stop working on it, count nothing.
    pub lost: bool,
    pub message: String,
}

impl FileError {
    pub fn permanent(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            temporary: false,
            hold: None,
            lost: false,
            message: message.into(),
        }
    }

    pub fn temporary(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            temporary: true,
            hold: None,
            lost: false,
            message: message.into(),
        }
    }

    /// The file waits until its name is free (`if_exists = "wait"`).
    pub fn name_taken(path: &std::path::Path) -> Self {
        Self {
            kind: ErrorKind::AlreadyExists,
            temporary: true,
            hold: Some(Hold::NameTaken),
            lost: false,
            message: format!(
                "waiting: {} exists and if_exists = \"wait\"",
                path.display()
            ),
        }
    }

    /// A local file-system error while delivering, with what was being done.
    /// ENOSPC, EDQUOT, EROFS and EIO are the host's storage trouble: the
    /// file waits for it to pass, however long that takes.
    pub fn local(context: impl fmt::Display, e: &std::io::Error) -> Self {
        let mut fe: Self = RemoteError::from_io(context.to_string(), e).into();
        if let Some(code) = e.raw_os_error()
            && [libc::ENOSPC, libc::EDQUOT, libc::EROFS, libc::EIO].contains(&code)
        {
            fe.kind = ErrorKind::Storage;
            fe.temporary = true;
            fe.hold = Some(Hold::LocalStorage);
        }
        fe
    }
}

impl From<RemoteError> for FileError {
    fn from(e: RemoteError) -> Self {
        Self {
            kind: e.kind,
            temporary: e.temporary,
            hold: None,
            lost: false,
            message: e.to_string(),
        }
    }
}

impl From<crate::state::Error> for FileError {
    fn from(e: crate::state::Error) -> Self {
        let lost = matches!(e, crate::state::Error::Lost(_));
        Self {
            lost,
            ..Self::temporary(ErrorKind::Other, format!("state database: {e}"))
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_storage_trouble_is_told_apart() {
        for code in [libc::ENOSPC, libc::EDQUOT, libc::EROFS, libc::EIO] {
            let e = FileError::local("write /x", &std::io::Error::from_raw_os_error(code));
            assert!(
                e.hold == Some(Hold::LocalStorage) && e.temporary,
                "{code}: {e:?}"
            );
        }
        let e = FileError::local("open /x", &std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(e.hold.is_none() && !e.temporary);
    }
}
