//! Listing a rule's remote directory (recursively when asked) and keeping
//! the files the rule takes.

use super::filter;
use crate::config::Rule;
use crate::remote::{self, EntryKind, PooledSession, Result};
use crate::state::Listed;
use std::collections::{HashSet, VecDeque};

pub struct Listing {
    /// Files the rule takes.
    pub files: Vec<Listed>,
    /// Every file path seen, markers included, for the ready-marker gate.
    pub all: HashSet<String>,
}

pub async fn list(session: &mut PooledSession, rule: &Rule) -> Result<Listing> {
    let mut out = Listing {
        files: Vec::new(),
        all: HashSet::new(),
    };
    let mut dirs = VecDeque::from([String::new()]);
    while let Some(rel_dir) = dirs.pop_front() {
        let abs_dir = if rel_dir.is_empty() {
            rule.remote_dir.clone()
        } else {
            remote::join(&rule.remote_dir, &rel_dir)
        };
        let entries = session.list(&abs_dir).await;
        for e in session.check(entries)? {
            let rel = if rel_dir.is_empty() {
                e.name.clone()
            } else {
                format!("{rel_dir}/{}", e.name)
            };
            match e.kind {
                EntryKind::File => {
                    if filter::takes_file(rule, &rel, &e.name, e.size) {
                        out.files.push(Listed {
                            path: rel.clone(),
                            size: e.size,
                            mtime: e.mtime,
                        });
                    }
                    out.all.insert(rel);
                }
                EntryKind::Dir if rule.recursive => {
                    if filter::enters_dir(rule, &rel, &e.name, &remote::join(&abs_dir, &e.name)) {
                        dirs.push_back(rel);
                    }
                }
                _ => {
                    tracing::debug!(path = %rel, kind = ?e.kind, "skipping an entry that is not a regular file")
                }
            }
        }
    }
    Ok(out)
}
