//! Where a file version lands locally: its final path, and the temporary
//! name beside it that holds the bytes until the atomic rename.

use super::error::FileError;
use super::safe_path;
use crate::config::Rule;
use crate::remote::ErrorKind;
use crate::state::{FileRow, Superseded};
use std::path::{Path, PathBuf};

pub struct Target {
    /// The file's own name in `local_dir`. The name it is finally delivered
    /// under may differ (`if_exists = "unique"`): see `deliver::choose`.
    pub final_path: PathBuf,
    /// In the same directory as `final_path`, so the rename is atomic. The
    /// row id and the version are in the name: a partial file can only
    /// resume the same row's same version, and no two rows share one.
    pub temp_path: PathBuf,
    /// For handler-only rules: the spool directory to remove once done.
    pub spool_dir: Option<PathBuf>,
}

pub(super) const TEMP_SUFFIX: &str = ".ferry-part";
/// The usual limit on one file name, in bytes.
const NAME_MAX: usize = 255;

pub fn resolve(rule: &Rule, spool_root: &Path, row: &FileRow) -> Result<Target, FileError> {
    resolve_version(rule, spool_root, row.id, &row.path, row.size, row.mtime)
}

/// Removes the partial download of a version that was replaced or vanished.
pub fn discard_partial(rule: &Rule, spool_root: &Path, v: &Superseded) {
    let Ok(t) = resolve_version(rule, spool_root, v.id, &v.path, v.size, v.mtime) else {
        return;
    };
    match std::fs::remove_file(&t.temp_path) {
        Ok(()) => {
            tracing::info!(path = %v.path, partial = %t.temp_path.display(), "removed the partial download of a replaced version")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(partial = %t.temp_path.display(), error = %e, "cannot remove a stale partial download")
        }
    }
}

/// What a row's unfinished download left locally, without creating
/// anything: its temporary file in `local_dir`, or (handler-only rules)
/// its spool directory. `None` for a name that could never be written.
pub fn leftover(rule: &Rule, spool_root: &Path, row: &FileRow) -> Option<PathBuf> {
    let parts = safe_path::components(&row.path).ok()?;
    match &rule.local_dir {
        Some(dir) => {
            let final_path = parts.iter().fold(dir.clone(), |p, c| p.join(c));
            Some(temp_path(&final_path, row.id, row.size, row.mtime))
        }
        None => Some(spool_root.join(&rule.name).join(row.id.to_string())),
    }
}

fn resolve_version(
    rule: &Rule,
    spool_root: &Path,
    id: i64,
    path: &str,
    size: i64,
    mtime: i64,
) -> Result<Target, FileError> {
    let (final_path, spool_dir) = match &rule.local_dir {
        Some(dir) => (safe_path::prepare(dir, path)?, None),
        None => {
            let parts = safe_path::components(path)
                .map_err(|m| FileError::permanent(ErrorKind::PermissionDenied, m))?;
            let dir = spool_root.join(&rule.name).join(id.to_string());
            std::fs::create_dir_all(&dir)
                .map_err(|e| FileError::local(format!("create {}", dir.display()), &e))?;
            (dir.join(parts[parts.len() - 1]), Some(dir))
        }
    };
    let temp_path = temp_path(&final_path, id, size, mtime);
    Ok(Target {
        final_path,
        temp_path,
        spool_dir,
    })
}

/// `.NAME.ID-MTIME-SIZE.ferry-part`: the name is cut to fit the tag, but
/// the tag (row id, version) is never cut, so two long names that share
/// their beginning never share a temporary file.
fn temp_path(final_path: &Path, id: i64, size: i64, mtime: i64) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    final_path.with_file_name(temp_file_name(&name, id, size, mtime))
}

/// The temporary name for `name` (see [`temp_path`]); uploads use it too.
pub(super) fn temp_file_name(name: &str, id: i64, size: i64, mtime: i64) -> String {
    let tag = format!(".{id}-{mtime}-{size}{TEMP_SUFFIX}");
    // Two bytes more for the side name of an overwrite (`deliver.rs`).
    let mut cut = name.len().min(NAME_MAX - 3 - tag.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}{tag}", &name[..cut])
}

/// Whether a file name is one of ferry's temporary files (partial
/// downloads, and uploads in progress). No listing ever takes one.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// The row id in a temporary name (`.NAME.ID-MTIME-SIZE.ferry-part`, or
/// its `.o` side name).
pub fn temp_row_id(name: &str) -> Option<i64> {
    if !is_temp_name(name) {
        return None;
    }
    let tag = name[..name.len() - TEMP_SUFFIX.len()].rsplit('.').next()?;
    tag.split_once('-')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_the_row_and_version_and_stay_short() {
        let t = temp_path(Path::new("/out/a.csv"), 7, 10, 1700000000);
        assert_eq!(t, PathBuf::from("/out/.a.csv.7-1700000000-10.ferry-part"));
        assert!(is_temp_name(t.file_name().unwrap().to_str().unwrap()));
        assert_eq!(
            temp_row_id(t.file_name().unwrap().to_str().unwrap()),
            Some(7)
        );
        assert_eq!(temp_row_id(".o.a.csv.8--5-10.ferry-part"), Some(8));
        assert_eq!(temp_row_id("a.csv"), None);
        let long = "é".repeat(200);
        let t = temp_path(&Path::new("/out").join(&long), i64::MAX, i64::MAX, i64::MIN);
        assert!(t.file_name().unwrap().len() <= 255);
    }

    #[test]
    fn long_names_sharing_their_start_never_share_a_temp_file() {
        let common = "x".repeat(240);
        let a = temp_path(&Path::new("/out").join(format!("{common}-a.csv")), 1, 5, 9);
        let b = temp_path(&Path::new("/out").join(format!("{common}-b.csv")), 2, 5, 9);
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().len() <= 255);
    }
}
