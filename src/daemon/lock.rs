//! One daemon per state database: two processes working the same rules
//! would each take the same files.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Holds an exclusive `flock` on `<state>.lock` until dropped.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(state: &Path) -> Result<Self, String> {
        let path = PathBuf::from(format!("{}.lock", state.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let file =
            File::create(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: the descriptor is valid for the life of `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(format!(
                "another ferry process is working with the state database {} (lock {} is held)",
                state.display(),
                path.display()
            ));
        }
        Ok(Self { _file: file })
    }
}
