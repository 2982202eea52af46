//! Content digests: computed while the bytes stream (a writer or reader
//! that hashes what passes through it), and the checksums they are compared
//! with (a partner's sidecar file, a server's answer).
//!
//! SHA-256 is always computed: it is recorded in the state database and
//! handed to handlers as `FERRY_SHA256`. MD5 is computed beside it only
//! when something asks for it (an `.md5` sidecar, a server that offers only
//! `XMD5`), since it costs a second pass over each buffer.

use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// A digest algorithm a checksum can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Sha256,
    Md5,
}

impl Algo {
    pub fn as_str(self) -> &'static str {
        match self {
            Algo::Sha256 => "SHA-256",
            Algo::Md5 => "MD5",
        }
    }

    /// Hex digits of a digest.
    fn hex_len(self) -> usize {
        match self {
            Algo::Sha256 => 64,
            Algo::Md5 => 32,
        }
    }
}

/// A digest someone claims a file has: lowercase hex, and its algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub algo: Algo,
    pub hex: String,
}

/// The digests of one file, fed as its bytes pass.
#[derive(Clone)]
pub struct Hasher {
    /// `None`: no digest at all ([`Hasher::none`]).
    sha256: Option<Sha256>,
    md5: Option<Md5>,
}

/// A finished [`Hasher`]: lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Empty when none was computed ([`Hasher::none`]).
    pub sha256: String,
    pub md5: Option<String>,
}

impl Hasher {
    /// SHA-256, and MD5 too when `md5`.
    pub fn new(md5: bool) -> Self {
        Hasher {
            sha256: Some(Sha256::new()),
            md5: md5.then(Md5::new),
        }
    }

    /// Computes nothing: a send rule with `digest = false`, whose files
    /// then cost no hashing (about half of the CPU of an FTP upload).
    pub fn none() -> Self {
        Hasher {
            sha256: None,
            md5: None,
        }
    }

    /// [`Hasher::new`] when `digest` (a send rule's choice), else
    /// [`Hasher::none`].
    pub fn unless_off(digest: bool, md5: bool) -> Self {
        match digest {
            true => Hasher::new(md5),
            false => Hasher::none(),
        }
    }

    /// Whether any digest is computed: a hasher that computes none needs
    /// no bytes read for it.
    pub fn is_on(&self) -> bool {
        self.sha256.is_some()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(s) = &mut self.sha256 {
            s.update(bytes);
        }
        if let Some(m) = &mut self.md5 {
            m.update(bytes);
        }
    }

    /// Starts again from no bytes (a download restarted from byte 0).
    pub fn reset(&mut self) {
        *self = Hasher::unless_off(self.is_on(), self.md5.is_some());
    }

    pub fn finish(self) -> Digests {
        let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
        Digests {
            sha256: self.sha256.map(|s| hex(&s.finalize())).unwrap_or_default(),
            md5: self.md5.map(|m| hex(&m.finalize())),
        }
    }

    /// Feeds the first `len` bytes of a local file: the part of a resumed
    /// transfer that an earlier attempt moved. Blocking.
    pub fn feed_file(&mut self, path: &std::path::Path, len: u64) -> std::io::Result<()> {
        let file = std::fs::File::open(path)?;
        let fed = self.feed_range(&file, 0, len, &AtomicBool::new(false))?;
        if fed != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} holds {fed} bytes, not {len}", path.display()),
            ));
        }
        Ok(())
    }

    /// Feeds up to `len` bytes of `file` from byte `from`, until the file
    /// ends or `stop` is set (checked between reads). Returns the bytes
    /// fed. Blocking.
    pub fn feed_range(
        &mut self,
        file: &std::fs::File,
        from: u64,
        len: u64,
        stop: &AtomicBool,
    ) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt;
        const READ: u64 = 256 * 1024;
        let mut buf = vec![0u8; READ.min(len) as usize];
        let mut fed = 0;
        while fed < len && !stop.load(Ordering::Relaxed) {
            let want = (len - fed).min(READ) as usize;
            let n = match file.read_at(&mut buf[..want], from + fed) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.update(&buf[..n]);
            fed += n as u64;
        }
        Ok(fed)
    }
}

/// The SHA-256 of bytes in memory, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Hasher::new(false);
    h.update(bytes);
    h.finish().sha256
}

impl Digests {
    /// This file's digest in `algo`, if it was computed.
    pub fn get(&self, algo: Algo) -> Option<&str> {
        match algo {
            Algo::Sha256 => self.sha256_hex(),
            Algo::Md5 => self.md5.as_deref(),
        }
    }

    /// The SHA-256, if one was computed.
    pub fn sha256_hex(&self) -> Option<&str> {
        (!self.sha256.is_empty()).then_some(self.sha256.as_str())
    }

    /// Compares with `expected`; the error says both digests and where
    /// the expected one came from.
    pub fn check(&self, expected: &Expected, from: &str) -> Result<(), String> {
        let got = self.get(expected.algo).unwrap_or("(not computed)");
        if got == expected.hex {
            return Ok(());
        }
        Err(format!(
            "{} mismatch: expected {} from {from}, got {got}",
            expected.algo.as_str(),
            expected.hex
        ))
    }
}

/// The algorithm a sidecar pattern names by its extension: `.md5` is MD5,
/// anything else SHA-256 (`.sha256`, `.sum`...).
pub fn sidecar_algo(pattern: &str) -> Algo {
    if pattern.to_ascii_lowercase().ends_with(".md5") {
        Algo::Md5
    } else {
        Algo::Sha256
    }
}

/// Reads a sidecar checksum file: `sha256sum`/`md5sum` output (`HEX  name`
/// or `HEX *name`, the first line whose name is `name`, or the only line)
/// or a bare hex digest; hex in either case. The digest length must fit
/// `algo`.
pub fn parse_sidecar(text: &[u8], name: &str, algo: Algo) -> Result<Expected, String> {
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let split = |l: &str| -> (String, Option<String>) {
        match l.split_once(char::is_whitespace) {
            Some((hex, rest)) => {
                let rest = rest.trim_start();
                let file = rest.strip_prefix('*').unwrap_or(rest);
                (hex.to_string(), Some(file.to_string()))
            }
            None => (l.to_string(), None),
        }
    };
    let entries: Vec<(String, Option<String>)> = lines.iter().map(|l| split(l)).collect();
    let base = |f: &str| f.rsplit('/').next().unwrap_or(f).to_string();
    let chosen = match entries.as_slice() {
        [] => return Err("the checksum file is empty".into()),
        [only] => only.clone(),
        many => many
            .iter()
            .find(|(_, f)| f.as_deref().map(base).as_deref() == Some(name))
            .cloned()
            .ok_or_else(|| format!("the checksum file has no line for {name}"))?,
    };
    let hex = chosen.0.to_ascii_lowercase();
    if hex.len() != algo.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the checksum file does not hold a {} digest (found \"{}\")",
            algo.as_str(),
            crate::text::escape(&chosen.0.chars().take(80).collect::<String>())
        ));
    }
    Ok(Expected { algo, hex })
}

/// A sidecar in `sha256sum` format for `name`, as uploads write it.
pub fn sidecar_text(sha256: &str, name: &str) -> String {
    format!("{sha256}  {name}\n")
}

/// An [`AsyncWrite`] that hashes every byte its inner writer accepts.
pub struct HashWrite<'a, W: ?Sized> {
    inner: &'a mut W,
    pub hasher: &'a mut Hasher,
}

impl<'a, W: ?Sized> HashWrite<'a, W> {
    pub fn new(inner: &'a mut W, hasher: &'a mut Hasher) -> Self {
        HashWrite { inner, hasher }
    }
}

impl<W: AsyncWrite + Unpin + ?Sized> AsyncWrite for HashWrite<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut *this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.hasher.update(&buf[..*n]);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const ABC_MD5: &str = "900150983cd24fb0d6963f7d28e17f72";

    #[test]
    fn known_digests() {
        let mut h = Hasher::new(true);
        h.update(b"a");
        h.update(b"bc");
        let d = h.finish();
        assert_eq!(d.sha256, ABC_SHA256);
        assert_eq!(d.md5.as_deref(), Some(ABC_MD5));
        assert_eq!(sha256_hex(b"abc"), ABC_SHA256);
        assert_eq!(Hasher::new(false).finish().md5, None);
    }

    #[tokio::test]
    async fn writer_hashes_only_what_the_inner_writer_took() {
        // A writer that takes at most 2 bytes per call: the adapter must
        // hash the 2, not the whole buffer it was offered.
        struct Slow(Vec<u8>);
        impl AsyncWrite for Slow {
            fn poll_write(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<std::io::Result<usize>> {
                let n = buf.len().min(2);
                self.get_mut().0.extend_from_slice(&buf[..n]);
                Poll::Ready(Ok(n))
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
        let mut inner = Slow(Vec::new());
        let mut h = Hasher::new(false);
        let mut w = HashWrite::new(&mut inner, &mut h);
        w.write_all(b"abc").await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(inner.0, b"abc");
        assert_eq!(h.finish().sha256, ABC_SHA256);
    }

    #[test]
    fn a_hasher_that_computes_none_stays_so_and_reports_none() {
        let mut h = Hasher::none();
        assert!(!h.is_on());
        h.update(b"abc");
        h.reset();
        assert!(!h.is_on(), "a reset keeps it off");
        h.update(b"abc");
        let d = h.finish();
        assert_eq!(d.sha256_hex(), None);
        assert_eq!(d.get(Algo::Sha256), None);
        assert_eq!(d.md5, None);
        let mut on = Hasher::new(false);
        on.reset();
        on.update(b"abc");
        assert_eq!(on.finish().sha256_hex(), Some(ABC_SHA256));
    }

    #[test]
    fn resumed_prefix_then_rest_equals_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"ab").unwrap();
        let mut h = Hasher::new(false);
        h.feed_file(&p, 2).unwrap();
        h.update(b"c");
        assert_eq!(h.finish().sha256, ABC_SHA256);
        assert!(Hasher::new(false).feed_file(&p, 3).is_err(), "short file");
    }

    #[test]
    fn sidecar_formats() {
        let up = ABC_SHA256.to_uppercase();
        for text in [
            format!("{ABC_SHA256}  a.csv\n"),
            format!("{ABC_SHA256} *a.csv\n"),
            format!("{up}\n"),
            ABC_SHA256.to_string(),
            format!("{ABC_SHA256}  other.csv\n{ABC_SHA256}  a.csv\n"),
            format!("# comment\n{ABC_SHA256}  dir/a.csv\r\n"),
        ] {
            let e = parse_sidecar(text.as_bytes(), "a.csv", Algo::Sha256).unwrap();
            assert_eq!(e.hex, ABC_SHA256, "{text}");
        }
        let md5 = parse_sidecar(format!("{ABC_MD5}  a.csv").as_bytes(), "a.csv", Algo::Md5);
        assert_eq!(md5.unwrap().hex, ABC_MD5);
        assert!(parse_sidecar(b"", "a.csv", Algo::Sha256).is_err());
        assert!(parse_sidecar(ABC_MD5.as_bytes(), "a.csv", Algo::Sha256).is_err());
        assert!(parse_sidecar(b"xyz  a.csv", "a.csv", Algo::Sha256).is_err());
        let two = format!("{ABC_SHA256}  b\n{ABC_SHA256}  c\n");
        assert!(parse_sidecar(two.as_bytes(), "a.csv", Algo::Sha256).is_err());
        assert_eq!(sidecar_algo("{name}.MD5"), Algo::Md5);
        assert_eq!(sidecar_algo("{name}.sha256"), Algo::Sha256);
        assert_eq!(
            sidecar_text(ABC_SHA256, "a.csv"),
            format!("{ABC_SHA256}  a.csv\n")
        );
    }

    #[test]
    fn mismatch_names_both_digests() {
        let d = Digests {
            sha256: ABC_SHA256.into(),
            md5: None,
        };
        let want = Expected {
            algo: Algo::Sha256,
            hex: "00".repeat(32),
        };
        let e = d.check(&want, "a.csv.sha256").unwrap_err();
        assert!(
            e.contains(&"00".repeat(32)) && e.contains(ABC_SHA256),
            "{e}"
        );
        assert!(e.contains("a.csv.sha256"), "{e}");
        let md5 = Expected {
            algo: Algo::Md5,
            hex: ABC_MD5.into(),
        };
        assert!(d.check(&md5, "x").is_err(), "MD5 not computed");
    }
}
