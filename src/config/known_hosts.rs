//! OpenSSH known_hosts files, parsed once at load: plain, `[host]:port` and
//! hashed (`|1|salt|hash`, HMAC-SHA1 of the name) host patterns. Marker
//! lines (`@cert-authority`, `@revoked`) are skipped: ferry trusts host
//! keys, not certificate authorities, and a revoked key is never accepted.

use russh::keys::PublicKey;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct KnownHosts {
    pub path: PathBuf,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// 1-based line in the file, for "HOST KEY CHANGED ... file:line".
    line: usize,
    patterns: String,
    key: PublicKey,
}

/// What the file says about a server's key.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Known,
    /// The host is listed with another key of the same algorithm, at this line.
    Changed(usize),
    Unknown,
}

impl KnownHosts {
    /// Parses the file's text; an error names the line and never quotes it.
    pub fn parse(path: PathBuf, text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(patterns), Some(_algorithm), Some(key)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(format!(
                    "line {}: expected \"HOSTS KEY-TYPE BASE64-KEY\"",
                    i + 1
                ));
            };
            let key = russh::keys::parse_public_key_base64(key)
                .map_err(|e| format!("line {}: not a public key: {e}", i + 1))?;
            entries.push(Entry {
                line: i + 1,
                patterns: patterns.to_string(),
                key,
            });
        }
        Ok(Self { path, entries })
    }

    /// Checks `key` as offered by `host:port`, as OpenSSH does: a listed key
    /// of the same algorithm that differs is a changed key.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let name = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        let mut changed = None;
        for e in self
            .entries
            .iter()
            .filter(|e| matches_host(&name, &e.patterns))
        {
            if e.key == *key {
                return Verdict::Known;
            }
            if e.key.algorithm() == key.algorithm() {
                changed.get_or_insert(e.line);
            }
        }
        changed.map_or(Verdict::Unknown, Verdict::Changed)
    }
}

fn matches_host(name: &str, patterns: &str) -> bool {
    patterns.split(',').any(|p| match p.strip_prefix("|1|") {
        Some(hashed) => matches_hashed(name, hashed),
        None => p == name,
    })
}

fn matches_hashed(name: &str, salt_and_hash: &str) -> bool {
    use data_encoding::BASE64;
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBcBlXCXsLtwVMhcBTxz9g8eqsGMtmJAaPrjJZT1gcbW";
    const ED2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAII4fppURa8yBegtypOSE8AO/YSAw09UmTh149ZFAMqh+";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    #[test]
    fn plain_ported_and_hashed_entries_match() {
        // A hashed entry for "[127.0.0.1]:2222", as ssh-keygen -H writes it.
        let salt = data_encoding::BASE64.encode(b"0123456789abcdefghij");
        let k = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            b"0123456789abcdefghij",
        );
        let hash = data_encoding::BASE64.encode(ring::hmac::sign(&k, b"[127.0.0.1]:2222").as_ref());
        let text = format!(
            "# comment\n\nexample.org ssh-ed25519 {ED}\n|1|{salt}|{hash} ssh-ed25519 {ED2}\n@cert-authority * ssh-ed25519 {ED}\n"
        );
        let kh = KnownHosts::parse("/k".into(), &text).unwrap();
        assert_eq!(kh.check("example.org", 22, &key(ED)), Verdict::Known);
        assert_eq!(kh.check("example.org", 22, &key(ED2)), Verdict::Changed(3));
        assert_eq!(kh.check("example.org", 2222, &key(ED)), Verdict::Unknown);
        assert_eq!(kh.check("127.0.0.1", 2222, &key(ED2)), Verdict::Known);
        assert_eq!(kh.check("127.0.0.1", 22, &key(ED2)), Verdict::Unknown);
    }

    #[test]
    fn a_broken_line_is_named() {
        let e = KnownHosts::parse("/k".into(), "a ssh-ed25519 AAAA\n").unwrap_err();
        assert!(e.starts_with("line 1: not a public key"), "{e}");
        let e = KnownHosts::parse("/k".into(), "# x\nhost-only\n").unwrap_err();
        assert!(e.starts_with("line 2: expected"), "{e}");
    }
}
