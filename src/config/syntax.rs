//! Reading the TOML into the raw structs while reporting every syntax and
//! type error, not just the first: serde stops at the first error, so the
//! table holding it is blanked out (positions kept) and the rest read again.

use super::error::{ConfigError, error_at};
use super::raw::RawConfig;
use std::ops::Range;
use std::path::Path;

/// More would only repeat the same mistake.
const MAX_ERRORS: usize = 50;

pub fn deserialize(path: &Path, text: &str) -> Result<RawConfig, Vec<ConfigError>> {
    let mut work = text.to_string();
    let mut errors = Vec::new();
    while errors.len() < MAX_ERRORS {
        let e = match toml::from_str::<RawConfig>(&work) {
            Ok(raw) if errors.is_empty() => return Ok(raw),
            Ok(_) => break,
            Err(e) => e,
        };
        let offset = e.span().map_or(0, |s| s.start);
        errors.push(error_at(
            path,
            text,
            offset,
            describe(text, offset, e.message().trim()),
        ));
        let region = table_around(&work, offset);
        if work[region.clone()].trim().is_empty() {
            break;
        }
        blank(&mut work, region);
    }
    Err(errors)
}

/// Names the key when serde's message does not (`invalid type: integer ...`).
fn describe(text: &str, offset: usize, message: &str) -> String {
    let offset = floor(text, offset);
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let before = text[line_start..offset].trim_end();
    let Some(before) = before.strip_suffix('=') else {
        return message.to_string();
    };
    let before = before.trim_end();
    let key_start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    let key = &before[key_start..];
    if key.is_empty() || message.contains(&format!("`{key}`")) {
        message.to_string()
    } else {
        format!("{key}: {message}")
    }
}

/// The byte range of the top-level table (header line to the next header)
/// that holds `offset`; before the first header, the keys above it.
fn table_around(text: &str, offset: usize) -> Range<usize> {
    let offset = floor(text, offset);
    let mut start = 0;
    let mut end = text.len();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let is_header = line.trim_start().starts_with('[');
        if is_header && pos <= offset {
            start = pos;
        } else if is_header && pos > offset {
            end = pos;
            break;
        }
        pos += line.len();
    }
    start..end
}

/// Replaces everything but line breaks in `range` with spaces, so that
/// positions of errors found later stay true to the original text.
fn blank(text: &mut String, range: Range<usize>) {
    let replaced: String = text[range.clone()]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(range, &replaced);
}

fn floor(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_with_a_mistake_is_reported() {
        let text = "[daemon]\nmax_transfers = \"many\"\n\n[[watch]]\nname = \"a\"\nintervall = \"1s\"\n\n[[watch]]\nname = 5\n";
        let errors = deserialize(Path::new("f.toml"), text).unwrap_err();
        let at: Vec<_> = errors.iter().map(|e| (e.line, e.col)).collect();
        assert_eq!(at, vec![(2, 17), (6, 1), (9, 8)], "{errors:?}");
        assert!(
            errors[0].message.starts_with("max_transfers: invalid type"),
            "{}",
            errors[0].message
        );
        assert!(errors[1].message.contains("intervall"));
    }

    #[test]
    fn the_region_is_the_enclosing_table() {
        let text = "a = 1\n[x]\nb = 2\n[[y]]\nc = 3\n";
        assert_eq!(table_around(text, 0), 0..6);
        assert_eq!(
            &text[table_around(text, text.find('b').unwrap())],
            "[x]\nb = 2\n"
        );
        assert_eq!(
            &text[table_around(text, text.find('c').unwrap())],
            "[[y]]\nc = 3\n"
        );
    }
}
