//! Remote names can never write outside the local target directory:
//! relative paths are checked component by component, and directories are
//! created one at a time, refusing any symlink that leads out.

use super::error::FileError;
use crate::remote::ErrorKind;
use std::io;
use std::path::{Path, PathBuf};

/// Checks a remote path relative to the watched directory and returns its
/// components. Refuses absolute paths, empty, `.` and `..` components, and
/// NUL or other control characters.
pub fn components(rel: &str) -> Result<Vec<&str>, String> {
    if rel.starts_with('/') {
        return Err(format!("unsafe remote name {rel:?}: absolute path"));
    }
    let parts: Vec<&str> = rel.split('/').collect();
    for p in &parts {
        if p.is_empty() || *p == "." || *p == ".." {
            return Err(format!(
                "unsafe remote name {rel:?}: empty, \".\" or \"..\" component"
            ));
        }
        if p.chars().any(char::is_control) {
            return Err(format!("unsafe remote name {rel:?}: control character"));
        }
    }
    Ok(parts)
}

/// Returns the local path for `rel` under `root`, creating the directories
/// between them. A symlink on the way must resolve inside `root`.
pub fn prepare(root: &Path, rel: &str) -> Result<PathBuf, FileError> {
    let parts =
        components(rel).map_err(|m| FileError::permanent(ErrorKind::PermissionDenied, m))?;
    std::fs::create_dir_all(root)
        .map_err(|e| FileError::local(format!("create {}", root.display()), &e))?;
    let real_root = root
        .canonicalize()
        .map_err(|e| FileError::local(format!("resolve {}", root.display()), &e))?;
    let (name, dirs) = parts.split_last().expect("split yields at least one part");
    let mut dir = root.to_path_buf();
    for d in dirs {
        dir.push(d);
        ensure_dir_inside(&dir, &real_root, rel)?;
    }
    Ok(dir.join(name))
}

fn ensure_dir_inside(dir: &Path, real_root: &Path, rel: &str) -> Result<(), FileError> {
    let outside = || {
        FileError::permanent(
            ErrorKind::PermissionDenied,
            format!(
                "unsafe remote name {rel:?}: {} leads outside the local directory",
                dir.display()
            ),
        )
    };
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            let real = dir.canonicalize().map_err(|_| outside())?;
            if !real.starts_with(real_root) || !real.is_dir() {
                return Err(outside());
            }
            Ok(())
        }
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(FileError::permanent(
            ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", dir.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                ensure_dir_inside(dir, real_root, rel)
            }
            Err(e) => Err(FileError::local(format!("create {}", dir.display()), &e)),
        },
        Err(e) => Err(FileError::local(format!("inspect {}", dir.display()), &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_traversal_and_control_characters() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\0b",
            "a\nb",
            "a\x1b[31m",
            "",
        ] {
            assert!(components(bad).is_err(), "{bad:?} must be refused");
        }
        for good in [
            "a.csv",
            "sub/dir/a b.csv",
            "ünïcode.txt",
            "-leading-dash",
            "..hidden",
            "a\\b",
        ] {
            assert!(components(good).is_ok(), "{good:?} must be accepted");
        }
    }

    #[test]
    fn creates_subdirectories_inside_root() {
        let root = tempfile::tempdir().unwrap();
        let p = prepare(root.path(), "x/y/z.txt").unwrap();
        assert_eq!(p, root.path().join("x/y/z.txt"));
        assert!(root.path().join("x/y").is_dir());
    }

    #[test]
    fn refuses_a_symlink_that_leads_outside() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("evil")).unwrap();
        let err = prepare(root.path(), "evil/x.txt").unwrap_err();
        assert!(err.message.contains("outside"), "{}", err.message);
        assert!(!err.temporary);
        std::fs::create_dir(root.path().join("real")).unwrap();
        std::os::unix::fs::symlink(root.path().join("real"), root.path().join("fine")).unwrap();
        assert!(prepare(root.path(), "fine/x.txt").is_ok());
    }
}
