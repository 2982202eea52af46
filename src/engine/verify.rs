//! Content verification of a transfer: the digest computed while the bytes
//! streamed, compared with a partner's sidecar checksum file
//! (`checksum_file`) or with the server's own digest (`verify = "server"`),
//! before the file is renamed into place.

use super::digest::{self, Digests, Expected};
use super::error::FileError;
use super::filter;
use crate::config::Rule;
use crate::remote::{self, ErrorKind, PooledSession};

/// A sidecar larger than this is not a checksum file.
const MAX_SIDECAR: u64 = 64 * 1024;

/// Whether the transfer must compute MD5 beside SHA-256: an `.md5`
/// sidecar, or a server check (a server may offer only `XMD5`).
pub fn needs_md5(rule: &Rule, server_check: bool) -> bool {
    server_check
        || rule
            .checksum_file
            .as_deref()
            .is_some_and(|p| digest::sidecar_algo(p) == digest::Algo::Md5)
}

/// The sidecar of `remote_path` under `pattern`, on the server.
pub fn sidecar_path(pattern: &str, remote_path: &str) -> String {
    let name = remote_path.rsplit('/').next().unwrap_or(remote_path);
    remote::join(
        remote::parent(remote_path),
        &filter::marker_for(pattern, name),
    )
}

/// Reads the digest a rule's sidecar gives for `remote_path`, before the
/// transfer: a sidecar that is missing (it was there at the gate), too
/// large or unreadable fails the attempt before any byte moves.
pub async fn read_sidecar(
    session: &mut PooledSession,
    rule: &Rule,
    remote_path: &str,
) -> Result<Option<(Expected, String)>, FileError> {
    let Some(pattern) = &rule.checksum_file else {
        return Ok(None);
    };
    let path = sidecar_path(pattern, remote_path);
    let entry = match session.stat(&path).await {
        // Gone since the gate saw it (a partner rewriting it): wait for it.
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(FileError::temporary(
                ErrorKind::NotFound,
                format!("checksum file {path} is gone since it was listed"),
            ));
        }
        other => other?,
    };
    let size = entry.size.unwrap_or(0);
    if size > MAX_SIDECAR {
        return Err(FileError::permanent(
            ErrorKind::Other,
            format!("checksum file {path} is {size} bytes: not a checksum file"),
        ));
    }
    let text = session.read_whole(&path, entry.version()).await?;
    let name = remote_path.rsplit('/').next().unwrap_or(remote_path);
    match digest::parse_sidecar(&text, name, digest::sidecar_algo(pattern)) {
        Ok(e) => Ok(Some((e, path))),
        // The partner may still be writing it: worth another attempt.
        Err(why) => Err(FileError::temporary(
            ErrorKind::Checksum,
            format!("checksum file {path}: {why}"),
        )),
    }
}

/// Compares the digests of the bytes moved with what `from` says.
pub fn check(got: &Digests, expected: &Expected, from: &str) -> Result<(), FileError> {
    got.check(expected, from)
        .map_err(|why| FileError::temporary(ErrorKind::Checksum, why))
}

/// Asks the server for its digest of `remote_path` and compares it with
/// the bytes moved. A server with no way to give one fails the file: the
/// rule asked for the check, and skipping it silently would be a lie.
pub async fn with_server(
    session: &mut PooledSession,
    remote_path: &str,
    got: &Digests,
) -> Result<(), FileError> {
    let Some(expected) = session.server_digest(remote_path).await? else {
        return Err(FileError::permanent(
            ErrorKind::Other,
            "verify = \"server\": the server offers no digest command (FTP: HASH, XSHA256 or XMD5 in FEAT; SFTP: exec_checksum)",
        ));
    };
    tracing::info!(algo = expected.algo.as_str(), digest = %expected.hex, "the server's digest");
    check(got, &expected, "the server")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_sits_beside_its_file() {
        assert_eq!(
            sidecar_path("{name}.sha256", "/in/a.csv"),
            "/in/a.csv.sha256"
        );
        assert_eq!(sidecar_path("{name}.md5", "/a.csv"), "/a.csv.md5");
    }
}
