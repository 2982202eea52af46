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
    if rule
        .ready_marker
        .as_deref()
        .is_some_and(|m| is_marker(m, name))
    {
        return false;
    }
    rule.min_size
        .is_none_or(|min| size.is_some_and(|s| s >= min))
        && rule
            .max_size
            .is_none_or(|max| size.is_some_and(|s| s <= max))
        && rule.filter.wants(rel_path, name)
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
    }
}
