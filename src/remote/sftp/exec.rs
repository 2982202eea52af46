//! The server's digest of a file over an SSH exec channel beside the SFTP
//! one: `sha256sum -- 'PATH'`, for `verify = "server"` with
//! `exec_checksum = true`. Many SFTP-only servers (chrooted `internal-sftp`
//! accounts, appliances) refuse exec, so it is only tried when configured.
//! The command sees the path as a shell on the server does, which is the
//! SFTP path on servers that do not chroot.

use super::connect::Connected;
use super::error;
use crate::engine::digest::{Algo, Expected};
use crate::remote::{ErrorKind, RemoteError, Result};
use russh::ChannelMsg;
use std::time::Duration;

/// Output beyond this is not a digest line.
const MAX_OUTPUT: usize = 64 * 1024;

/// Runs `sha256sum` on the server. Hashing a large file prints nothing
/// until it ends, so the wait is ten `io_timeout`s, not one.
pub async fn sha256(c: &Connected, path: &str, io_timeout: Duration) -> Result<Expected> {
    let cmd = command(path);
    let run = run(c, &cmd);
    match tokio::time::timeout(io_timeout * 10, run).await {
        Ok(r) => r,
        Err(_) => Err(RemoteError::new(
            ErrorKind::Timeout,
            true,
            cmd,
            format!("no answer within {:?}", io_timeout * 10),
        )),
    }
}

async fn run(c: &Connected, cmd: &str) -> Result<Expected> {
    let mut channel = c
        .ssh
        .channel_open_session()
        .await
        .map_err(|e| error::ssh(cmd, e))?;
    channel
        .exec(true, cmd.as_bytes())
        .await
        .map_err(|e| error::ssh(cmd, e))?;
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Failure => {
                return Err(refused(cmd, "the server refuses exec requests"));
            }
            ChannelMsg::Data { data } if out.len() < MAX_OUTPUT => out.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, .. } if err.len() < MAX_OUTPUT => {
                err.extend_from_slice(&data)
            }
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    let _ = channel.close().await;
    if status != Some(0) {
        let why = String::from_utf8_lossy(&err).trim().to_string();
        let why = match (status, why.is_empty()) {
            // sha256sum says why it fails on stderr; silence means it did
            // not run at all.
            (Some(s), true) => format!(
                "exit status {s} and nothing on stderr: the account may not run commands (SFTP only, e.g. ForceCommand internal-sftp); drop exec_checksum for this server"
            ),
            (Some(s), false) => format!("exit status {s}: {why}"),
            (None, _) => format!("no exit status: {why}"),
        };
        // NotFound for a missing file; a missing sha256sum or a refusal is
        // the configuration's to fix: neither is retried.
        let kind = if why.contains("No such file") {
            ErrorKind::NotFound
        } else {
            ErrorKind::Other
        };
        return Err(RemoteError::new(
            kind,
            false,
            cmd,
            crate::text::escape(&why),
        ));
    }
    parse(&out).ok_or_else(|| {
        let shown = String::from_utf8_lossy(&out)
            .chars()
            .take(200)
            .collect::<String>();
        refused(
            cmd,
            &format!(
                "no SHA-256 digest in its output: {}",
                crate::text::escape(&shown)
            ),
        )
    })
}

fn refused(cmd: &str, why: &str) -> RemoteError {
    RemoteError::new(ErrorKind::Other, false, cmd, why)
}

/// `sha256sum -- 'PATH'`, the path single-quoted for a POSIX shell (a `'`
/// inside becomes `'\''`), so no name a partner chooses can run a command.
pub fn command(path: &str) -> String {
    format!("sha256sum -- '{}'", path.replace('\'', r"'\''"))
}

/// The digest of `sha256sum`'s line: `HEX  NAME`, or `\HEX  NAME` when
/// the name held a backslash or a newline (GNU coreutils escapes it then).
fn parse(out: &[u8]) -> Option<Expected> {
    let text = std::str::from_utf8(out).ok()?;
    let first = text.split_whitespace().next()?;
    let hex = first.strip_prefix('\\').unwrap_or(first);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Expected {
        algo: Algo::Sha256,
        hex: hex.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_the_name_one_word() {
        assert_eq!(command("/in/a b.csv"), "sha256sum -- '/in/a b.csv'");
        assert_eq!(
            command("/in/it's;rm -rf ~"),
            r"sha256sum -- '/in/it'\''s;rm -rf ~'"
        );
        assert_eq!(command("/in/$(x)`y`"), "sha256sum -- '/in/$(x)`y`'");
        // The shell itself reads it back as the one name.
        for name in ["/in/it's", "/in/a b", "/in/$(echo x)", "/in/-n", "/in/a\nb"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(command(name).replacen("sha256sum --", "printf %s", 1))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), name);
        }
    }

    #[test]
    fn output_lines() {
        let h = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(parse(format!("{h}  /in/a\n").as_bytes()).unwrap().hex, h);
        assert_eq!(
            parse(format!("\\{h}  /in/a\\nb\n").as_bytes()).unwrap().hex,
            h
        );
        assert!(parse(b"").is_none());
        assert!(parse(b"sha256sum: x: No such file").is_none());
    }
}
