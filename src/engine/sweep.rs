//! Leftover temporary names of delivered files. A delivered file keeps its
//! temporary name (the receipt, `deliver.rs`) until `delivered` is
//! committed; a crash just after the commit leaves the name behind, a
//! second link to a file the consumer may long have taken, holding its
//! disk space. The first poll of a rule after a start removes those whose
//! row is delivered, done or forgotten.

use super::{Engine, target};
use crate::config::Rule;
use crate::state::FileState;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

impl Engine {
    pub(super) async fn sweep_leftovers(&self, rule: &Rule) {
        let Some(dir) = rule.local_dir.clone() else {
            return;
        };
        let recursive = rule.recursive;
        let found = tokio::task::spawn_blocking(move || temp_files(&dir, recursive))
            .await
            .unwrap_or_default();
        if found.is_empty() {
            return;
        }
        let ids: Vec<i64> = found.values().copied().collect();
        let states = match self.state.states_of(&ids).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look up leftover temporary files");
                return;
            }
        };
        for (path, id) in found {
            let finished = match states.get(&id) {
                None => true,
                Some(s) => matches!(s, FileState::Delivered | FileState::Done),
            };
            if finished && std::fs::remove_file(&path).is_ok() {
                tracing::info!(rule = %rule.name, temp = %path.display(), "removed the leftover temporary name of a delivered file");
            }
        }
    }
}

/// ferry's temporary files under `dir` (and its subdirectories when
/// `recursive`), with the row id in their names.
fn temp_files(dir: &Path, recursive: bool) -> HashMap<PathBuf, i64> {
    let mut out = HashMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name();
            let name = name.to_string_lossy();
            if ft.is_dir() && recursive {
                dirs.push(e.path());
            } else if ft.is_file()
                && let Some(id) = target::temp_row_id(&name)
            {
                out.insert(e.path(), id);
            }
        }
    }
    out
}
