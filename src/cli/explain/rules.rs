//! Which rules watch a path, and whether their listing and filters take
//! it. The decisions are the engine's own (`engine::filter`), asked for
//! their reasons, so an explanation cannot drift from what a poll does.

use crate::config::{Protocol, Rule};
use crate::engine::filter::{self, Verdict};
use crate::engine::is_temp_name;
use std::sync::Arc;

/// A file as a local-source rule can see it now.
pub struct OnDisk {
    pub size: u64,
    pub mtime_s: i64,
}

/// The rules whose directory holds `path` (absolute), with the path
/// relative to that directory.
pub fn watching<'a>(rules: &'a [Arc<Rule>], path: &str) -> Vec<(&'a Arc<Rule>, String)> {
    rules
        .iter()
        .filter_map(|r| {
            let rel = path
                .strip_prefix(r.remote_dir.as_str())?
                .strip_prefix('/')?;
            (!rel.is_empty()).then(|| (r, rel.to_string()))
        })
        .collect()
}

/// "no rule watches P: nearest rule R watches D with include ...": the
/// rule whose directory shares the most leading components with `path`.
pub fn nearest(rules: &[Arc<Rule>], path: &str) -> String {
    let shared = |dir: &str| {
        dir.split('/')
            .zip(path.split('/'))
            .take_while(|(a, b)| a == b)
            .count()
    };
    let best = rules
        .iter()
        .enumerate()
        .max_by_key(|(i, r)| (shared(&r.remote_dir), std::cmp::Reverse(*i)));
    match best {
        Some((_, r)) => format!(
            "no rule watches {path}: nearest rule {} watches {} with {}",
            r.name,
            r.remote_dir,
            patterns(r)
        ),
        None => format!("no rule watches {path}: the configuration has no rules"),
    }
}

/// `include *.csv, *.xml, exclude .*` as the rule writes them.
pub fn patterns(rule: &Rule) -> String {
    let include = match rule.filter.include.is_empty() {
        true => "no include (every file)".to_string(),
        false => format!("include {}", rule.filter.include.join(", ")),
    };
    match rule.filter.exclude.is_empty() {
        true => include,
        false => format!("{include}, exclude {}", rule.filter.exclude.join(", ")),
    }
}

/// What `rule`'s listing makes of `rel`: `Ok` with a sentence when it is
/// listed and taken, `Err` with the reason when it is not.
pub fn takes(rule: &Rule, rel: &str, size: Option<u64>) -> Result<String, String> {
    let (dirs, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, rel),
    };
    if let Some(dirs) = dirs {
        if !rule.recursive {
            return Err(format!(
                "{rel} is in the subdirectory {dirs}, and rule {} is not recursive",
                rule.name
            ));
        }
        let mut sub = String::new();
        for part in dirs.split('/') {
            if !sub.is_empty() {
                sub.push('/');
            }
            sub.push_str(part);
            let abs = crate::remote::join(&rule.remote_dir, &sub);
            if !filter::enters_dir(rule, &sub, part, &abs) {
                return Err(match rule.filter.excluded_by(&sub, part) {
                    Some(g) => format!("the directory {sub} is excluded by \"{g}\""),
                    None => format!("{abs} is one of the rule's move_to directories, never listed"),
                });
            }
        }
    }
    if is_temp_name(name) {
        return Err(format!(
            "{name} is one of ferry's own temporary files, never taken"
        ));
    }
    match filter::verdict(rule, rel, name, size) {
        Verdict::Taken => Ok(format!("the rule's filters take it ({})", patterns(rule))),
        Verdict::Marker(m) if rule.checksum_file.as_deref() == Some(&m) => Err(format!(
            "{name} is a checksum file (checksum_file = \"{m}\"): a ready marker, never delivered"
        )),
        Verdict::Marker(m) => Err(format!(
            "{name} is a ready marker (ready_marker = \"{m}\"): markers are never delivered"
        )),
        Verdict::SizeUnknown => Err(
            "its size is not known, and the rule has min_size or max_size: it is not taken".into(),
        ),
        Verdict::TooSmall(min) => Err(format!(
            "{} bytes is below min_size = {min}",
            size.unwrap_or(0)
        )),
        Verdict::TooLarge(max) => Err(format!(
            "{} bytes is above max_size = {max}",
            size.unwrap_or(0)
        )),
        Verdict::NotIncluded => Err(format!(
            "excluded by the filter: no include pattern matches {name} (include {})",
            rule.filter.include.join(", ")
        )),
        Verdict::Excluded(g) => Err(format!(
            "excluded by the filter: exclude pattern \"{g}\" matches {rel}"
        )),
    }
}

/// For a rule whose source is on this machine: the file as it is now.
/// `Err` says why there is nothing to take (missing, not a regular file).
pub fn stat_local(rule: &Rule, rel: &str) -> Option<Result<OnDisk, String>> {
    if rule.server.protocol != Protocol::Local {
        return None;
    }
    let path = std::path::Path::new(&rule.remote_dir).join(rel);
    Some(match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {
            use std::os::unix::fs::MetadataExt;
            Ok(OnDisk {
                size: m.len(),
                mtime_s: m.mtime(),
            })
        }
        Ok(m) if m.file_type().is_symlink() => {
            Err(format!("{} is a symlink: never followed", path.display()))
        }
        Ok(_) => Err(format!("{} is not a regular file", path.display())),
        Err(e) => Err(format!("{} is not there now: {e}", path.display())),
    })
}
