//! The server's digest of a file, for `verify = "server"`: `HASH` (the
//! draft-bryan-ftpext-hash command FileZilla Server and ProFTPD's
//! mod_digest offer) after `OPTS HASH SHA-256`, else the older `XSHA256`,
//! else `XMD5`, whichever FEAT announced.

use super::Shared;
use super::connect::Conn;
use super::data::command;
use crate::engine::digest::{Algo, Expected};
use crate::remote::{ErrorKind, RemoteError, Result};
use suppaftp::Status;

/// 213 for HASH (the draft) and most X commands; 250 from some servers.
const DIGEST_REPLY: &[Status] = &[Status::File, Status::RequestedFileActionOk];

/// The server's digest of `path`; `None` when FEAT offered no command.
pub async fn of(conn: &mut Conn, shared: &Shared, path: &str) -> Result<Option<Expected>> {
    let io = shared.server.io_timeout;
    let f = conn.features;
    if f.hash_sha256 {
        if !conn.hash_sha256_selected {
            command(conn, io, "OPTS HASH SHA-256", &[Status::CommandOk]).await?;
            conn.hash_sha256_selected = true;
        }
        let cmd = format!("HASH {path}");
        let reply = command(conn, io, &cmd, DIGEST_REPLY).await?;
        return read(&cmd, &reply, Algo::Sha256).map(Some);
    }
    for (has, cmd, algo) in [
        (f.xsha256, "XSHA256", Algo::Sha256),
        (f.xmd5, "XMD5", Algo::Md5),
    ] {
        if has {
            let cmd = format!("{cmd} {path}");
            let reply = command(conn, io, &cmd, DIGEST_REPLY).await?;
            return read(&cmd, &reply, algo).map(Some);
        }
    }
    Ok(None)
}

/// Whether FEAT's `HASH` line (`SHA-1;SHA-256*;MD5`, `*` the selected one)
/// offers SHA-256, and whether it is already selected.
pub fn hash_offers_sha256(value: Option<&str>) -> (bool, bool) {
    let mut offered = (false, false);
    for name in value.unwrap_or_default().split(';') {
        let name = name.trim();
        let (algo, selected) = match name.strip_suffix('*') {
            Some(a) => (a, true),
            None => (name, false),
        };
        if algo.eq_ignore_ascii_case("SHA-256") {
            offered = (true, selected);
        }
    }
    offered
}

/// The digest in a reply: `213 SHA-256 0-49 HEX path` (HASH) or `250 HEX`
/// (X commands): the first word of the right length in hex after the code.
fn read(cmd: &str, reply: &str, algo: Algo) -> Result<Expected> {
    let len = match algo {
        Algo::Sha256 => 64,
        Algo::Md5 => 32,
    };
    reply
        .split_whitespace()
        .skip(1)
        .find(|w| w.len() == len && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|w| Expected {
            algo,
            hex: w.to_ascii_lowercase(),
        })
        .ok_or_else(|| {
            RemoteError::new(
                ErrorKind::Other,
                false,
                cmd,
                format!("no {} digest in the reply: {}", algo.as_str(), reply.trim()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_each_command() {
        let h = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let e = read(
            "HASH /a",
            &format!("213 SHA-256 0-3 {h} /a b.csv"),
            Algo::Sha256,
        )
        .unwrap();
        assert_eq!(e.hex, h);
        let up = h.to_uppercase();
        let e = read("XSHA256 /a", &format!("250 {up}"), Algo::Sha256).unwrap();
        assert_eq!(e.hex, h);
        let m = "900150983cd24fb0d6963f7d28e17f72";
        assert_eq!(
            read("XMD5 /a", &format!("250 {m}\r\n"), Algo::Md5)
                .unwrap()
                .hex,
            m
        );
        assert!(read("XMD5 /a", "250 nope", Algo::Md5).is_err());
    }

    #[test]
    fn feat_hash_line() {
        assert_eq!(
            hash_offers_sha256(Some("SHA-1*;SHA-256;MD5")),
            (true, false)
        );
        assert_eq!(hash_offers_sha256(Some("SHA-1;SHA-256*")), (true, true));
        assert_eq!(hash_offers_sha256(Some("SHA-1;MD5")), (false, false));
        assert_eq!(hash_offers_sha256(None), (false, false));
    }
}
