//! Which listed entries a rule takes: include/exclude globs, sizes, and the
//! ready-marker convention. Pure functions, tested beside them.

use crate::config::{Filter, Rule};

impl Filter {
    /// Include patterns (if any) must match, exclude patterns must not.
    /// Name patterns see the file name, path patterns the relative path.
    pub fn wants(&self, rel_path: &str, name: &str) -> bool {
        let included = (self.include_names.is_empty() && self.include_paths.is_empty())
            || self.include_names.is_match(name)
            || self.include_paths.is_match(rel_path);
        included && !self.excludes(rel_path, name)
    }

    pub fn excludes(&self, rel_path: &str, name: &str) -> bool {
        self.exclude_names.is_match(name) || self.exclude_paths.is_match(rel_path)
    }
}

/// The marker file name announcing that `name` is complete.
pub fn marker_for(pattern: &str, name: &str) -> String {
    pattern.replace("{name}", name)
}

/// Whether `name` is itself a marker under `pattern` (markers are never delivered).
pub fn is_marker(pattern: &str, name: &str) -> bool {
    let (prefix, suffix) = pattern.split_once("{name}").unwrap_or((pattern, ""));
    name.len() > prefix.len() + suffix.len() && name.starts_with(prefix) && name.ends_with(suffix)
}

/// Whether a file of this name and size is one the rule takes. A file whose
/// size the server did not report passes no size bound: a rule with
/// `min_size` or `max_size` cannot tell, and does not take it.
pub fn takes_file(rule: &Rule, rel_path: &str, name: &str, size: Option<u64>) -> bool {
    verdict(rule, rel_path, name, size) == Verdict::Taken
}

/// Why a rule takes a file or not: [`takes_file`] with the reason, for
/// `ferry explain` (one decision, so the explanation cannot drift from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Taken,
    /// A ready marker of the rule's `ready_marker` pattern, or a sidecar
    /// of its `checksum_file` pattern (which is a ready marker too).
    Marker(String),
    /// `min_size`/`max_size` is set and the size is unknown.
    SizeUnknown,
    TooSmall(u64),
    TooLarge(u64),
    /// `include` is set and no pattern matches.
    NotIncluded,
    /// This `exclude` pattern matches.
    Excluded(String),
}

pub fn verdict(rule: &Rule, rel_path: &str, name: &str, size: Option<u64>) -> Verdict {
    let markers = rule.ready_marker.iter().chain(&rule.checksum_file);
    if let Some(m) = markers.into_iter().find(|m| is_marker(m, name)) {
        return Verdict::Marker(m.to_string());
    }
    if rule.min_size.is_some() || rule.max_size.is_some() {
        let Some(size) = size else {
            return Verdict::SizeUnknown;
        };
        if let Some(min) = rule.min_size.filter(|&min| size < min) {
            return Verdict::TooSmall(min);
        }
        if let Some(max) = rule.max_size.filter(|&max| size > max) {
            return Verdict::TooLarge(max);
        }
    }
    if rule.filter.wants(rel_path, name) {
        return Verdict::Taken;
    }
    match rule.filter.excluded_by(rel_path, name) {
        Some(glob) => Verdict::Excluded(glob.to_string()),
        None => Verdict::NotIncluded,
    }
}

impl Filter {
    /// The first `exclude` pattern that matches, as written.
    pub fn excluded_by(&self, rel_path: &str, name: &str) -> Option<&str> {
        // The compiled sets hold the name patterns (no `/`) and the path
        // patterns apart, each in the order written.
        let by_name = self.exclude_names.matches(name);
        let by_path = self.exclude_paths.matches(rel_path);
        let (names, paths): (Vec<&String>, Vec<&String>) =
            self.exclude.iter().partition(|p| !p.contains('/'));
        let first = by_name.first().map(|&i| names[i]);
        let first = first.or_else(|| by_path.first().map(|&i| paths[i]));
        first.map(String::as_str)
    }
}

/// Whether a recursive walk descends into this directory: not excluded, and
/// not one of the rule's own move-to directories (which would loop).
pub fn enters_dir(rule: &Rule, rel_path: &str, name: &str, abs_path: &str) -> bool {
    let own = |d: &Option<String>| d.as_deref() == Some(abs_path);
    let archive = matches!(&rule.after, crate::config::PostAction::MoveTo(d) if d == abs_path);
    !archive && !own(&rule.failed_move_to) && !rule.filter.excludes(rel_path, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        assert_eq!(marker_for("{name}.done", "a.csv"), "a.csv.done");
        assert!(is_marker("{name}.done", "a.csv.done"));
        assert!(!is_marker("{name}.done", "a.csv"));
        assert!(!is_marker("{name}.done", ".done"));
        assert!(is_marker("ready-{name}", "ready-a.csv"));
    }

    #[test]
    fn globs_on_names_and_paths() {
        let text = r#"
            [[watch]]
            name = "r"
            remote_dir = "/tmp"
            local_dir = "/tmp/out"
            include = ["*.csv", "keep/*.xml"]
            exclude = [".*", "*.tmp"]
        "#;
        let cfg = crate::config::parse(std::path::Path::new("t.toml"), text).unwrap();
        let f = &cfg.rules[0].filter;
        assert!(f.wants("a.csv", "a.csv"));
        assert!(f.wants("sub/a.csv", "a.csv"));
        assert!(!f.wants("a.xml", "a.xml"));
        assert!(f.wants("keep/a.xml", "a.xml"));
        assert!(!f.wants("keep/sub/a.xml", "a.xml"), "* does not cross /");
        assert!(!f.wants(".a.csv", ".a.csv"));
        assert!(!f.wants("x.tmp", "x.tmp"));
        assert_eq!(f.excluded_by("x.tmp", "x.tmp"), Some("*.tmp"));
        assert_eq!(f.excluded_by(".a.csv", ".a.csv"), Some(".*"));
        assert_eq!(f.excluded_by("a.xml", "a.xml"), None);
        let rule = &cfg.rules[0];
        assert_eq!(verdict(rule, "a.csv", "a.csv", Some(1)), Verdict::Taken);
        assert_eq!(
            verdict(rule, "a.xml", "a.xml", Some(1)),
            Verdict::NotIncluded
        );
        assert_eq!(
            verdict(rule, "b.tmp", "b.tmp", None),
            Verdict::Excluded("*.tmp".into())
        );
    }
}
