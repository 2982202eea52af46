//! The end of a handler's stdout or stderr: read as it comes, only the last
//! [`TAIL`] bytes kept, so a handler that writes gigabytes costs ferry a
//! few KiB.

use crate::text::escape;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Enough for the last lines of an error report.
pub const TAIL: usize = 2000;

#[derive(Debug, Default)]
pub struct Tail {
    bytes: Vec<u8>,
    /// Earlier output was dropped.
    cut: bool,
}

impl Tail {
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > TAIL {
            self.bytes.drain(..self.bytes.len() - TAIL);
            self.cut = true;
        }
    }

    /// Reads `pipe` until its end or an error; the caller bounds the time.
    pub async fn read_from(&mut self, mut pipe: impl AsyncRead + Unpin) {
        let mut chunk = vec![0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
            self.push(&chunk[..n]);
        }
    }

    /// The tail as one line for messages and logs: trimmed, control
    /// characters escaped, `…` in front when earlier output was dropped.
    pub fn text(&self) -> String {
        let mut bytes = &self.bytes[..];
        if self.cut {
            // The cut may fall inside a UTF-8 character; drop its rest.
            let partial = bytes.iter().take(3).take_while(|b| *b & 0xc0 == 0x80);
            bytes = &bytes[partial.count()..];
        }
        let text = escape(String::from_utf8_lossy(bytes).trim());
        if self.cut { format!("…{text}") } else { text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_bytes_whatever_is_written() {
        let mut t = Tail::default();
        t.push(b"  first line\n");
        assert_eq!(t.text(), "first line");
        for _ in 0..10_000 {
            t.push(&[b'x'; 1000]);
            assert!(t.bytes.len() <= TAIL);
        }
        t.push(b"\nlast line\x1b[0m\n");
        let text = t.text();
        assert!(
            text.starts_with('…') && text.ends_with("\\nlast line\\x1b[0m"),
            "{text}"
        );
        assert!(text.len() <= TAIL + 20);
    }

    #[test]
    fn a_character_cut_in_half_is_dropped() {
        let mut t = Tail::default();
        t.push("€".repeat(TAIL).as_bytes());
        assert!(t.cut);
        let text = t.text();
        assert!(!text.contains('\u{fffd}'), "{text}");
    }

    #[tokio::test]
    async fn reads_a_pipe_to_its_end() {
        let mut t = Tail::default();
        t.read_from(&b"hello\n"[..]).await;
        assert_eq!(t.text(), "hello");
    }
}
