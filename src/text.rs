//! Showing text that comes from outside (remote file names, handler output)
//! on a terminal or in a log line: control characters become visible
//! escapes, so a name holding a newline cannot forge a second log line and
//! one holding ESC cannot recolour or rewrite the terminal.
//!
//! Only control characters (C0, DEL, C1) are escaped; other Unicode is kept
//! as it is, and so is `\`: the escaped text is for reading, the exact
//! bytes are in the JSON output and the state database.

use std::fmt::{self, Write};

/// Writes its text with control characters escaped: `\n`, `\r`, `\t`,
/// `\x1b` (other C0 and DEL), `\u{85}` (C1).
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        EscapeWriter(f).write_str(self.0)
    }
}

/// The escaped text as an owned string, for messages that are stored.
pub fn escape(s: &str) -> String {
    Escaped(s).to_string()
}

/// A `fmt::Write` that escapes everything written through it; lets a
/// formatter (`{:?}` of a log field) write straight into the output without
/// an intermediate string.
pub struct EscapeWriter<W>(pub W);

impl<W: Write> Write for EscapeWriter<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            if c.is_control() {
                self.0.write_str(&s[plain..i])?;
                write_escape(&mut self.0, c)?;
                plain = i + c.len_utf8();
            }
        }
        self.0.write_str(&s[plain..])
    }
}

fn write_escape(out: &mut impl Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(escape("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(escape("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(escape("nul\0del\x7f"), "nul\\x00del\\x7f");
        assert_eq!(escape("c1\u{85}\u{9b}"), "c1\\u{85}\\u{9b}");
    }

    #[test]
    fn other_text_is_left_as_it_is() {
        for s in [
            "",
            "plain.csv",
            "ünï cödé 日本語 🚢",
            "back\\slash",
            "a b;rm -rf",
        ] {
            assert_eq!(escape(s), s);
        }
        // Format characters are not controls: bidi marks stay (they cannot
        // break a line).
        assert_eq!(escape("\u{200e}x"), "\u{200e}x");
    }

    #[test]
    fn escaped_text_holds_no_control_character() {
        let all: String = (0u32..0x300).filter_map(char::from_u32).collect();
        let out = escape(&all);
        assert!(!out.chars().any(char::is_control), "{out:?}");
        assert_eq!(format!("{}", Escaped("x\ny")), "x\\ny");
    }
}
