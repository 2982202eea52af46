//! Many renames onto names that must be free, on one plain control
//! connection with the commands of a window sent together: a send batch
//! ends with one rename per file, and one at a time each costs three round
//! trips (the check that the target is free, RNFR, RNTO).
//!
//! The order per file stays that of [`super::FtpSession::rename`]: the
//! target is checked first, and only a target the server says is missing
//! is renamed onto. FTP servers read their control connection line by
//! line, so the replies come back in the order of the commands. Under TLS
//! the socket is not ours to write: the caller renames one by one then.

use super::Shared;
use super::connect::Conn;
use super::data::{reply, send_lines};
use crate::remote::{ErrorKind, RemoteError, Result};
use suppaftp::Status;

/// Files per round trip: small enough that a window's commands fit in the
/// socket buffers of both sides.
const WINDOW: usize = 32;

/// What a failure of the whole run names.
const RENAMES: &str = "rename (several at once)";

/// Renames each `(from, to)` whose `to` does not exist, with one answer
/// per pair in order (`AlreadyExists` for a taken name). `None` when the
/// commands cannot be sent together on this connection (TLS): nothing was
/// sent then.
pub async fn rename_to_free_names(
    conn: &mut Conn,
    shared: &Shared,
    pairs: &[(String, String)],
) -> Option<Vec<Result<()>>> {
    let io = shared.server.io_timeout;
    let mut out: Vec<Result<()>> = Vec::with_capacity(pairs.len());
    for window in pairs.chunks(WINDOW) {
        let checks: Vec<String> = window
            .iter()
            .map(|(_, to)| check_line(conn.features.mlsd, to))
            .collect();
        if let Err(e) = send_lines(conn, io, &checks).await {
            if out.is_empty() && e.kind() != std::io::ErrorKind::TimedOut {
                return None;
            }
            return Some(unsent(out, pairs.len(), RENAMES, &e));
        }
        // Which targets are free; a connection out of step ends everything.
        let mut free = Vec::with_capacity(window.len());
        let mut answers: Vec<Option<Result<()>>> = Vec::with_capacity(window.len());
        let mut lost = None;
        for ((from, to), check) in window.iter().zip(&checks) {
            let expect = [Status::File, Status::RequestedFileActionOk];
            match reply(conn, io, check, &expect).await {
                Ok(_) => answers.push(Some(Err(taken(from, to)))),
                Err(e) if e.kind == ErrorKind::NotFound => {
                    free.push((from, to));
                    answers.push(None);
                }
                Err(e) if breaks(&e) => {
                    lost = Some(e);
                    break;
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        if let Some(e) = lost {
            fill(&mut out, pairs.len(), RENAMES, e.kind, &e.message);
            return Some(out);
        }
        let lines: Vec<String> = free
            .iter()
            .flat_map(|(from, to)| [format!("RNFR {from}"), format!("RNTO {to}")])
            .collect();
        let mut renamed = Vec::with_capacity(free.len());
        if !lines.is_empty() {
            if let Err(e) = send_lines(conn, io, &lines).await {
                return Some(unsent(out, pairs.len(), RENAMES, &e));
            }
            for (from, to) in &free {
                let rnfr = format!("RNFR {from}");
                let rnto = format!("RNTO {to}");
                // Both replies are read whatever the first says (an RNTO
                // after a refused RNFR is answered 503), so that the
                // connection stays in step.
                let first = reply(conn, io, &rnfr, &[Status::RequestFilePending]).await;
                if let Err(e) = &first
                    && breaks(e)
                {
                    fill(&mut out, pairs.len(), RENAMES, e.kind, &e.message);
                    return Some(out);
                }
                let done = [Status::RequestedFileActionOk, Status::CommandOk];
                let second = reply(conn, io, &rnto, &done).await;
                if let Err(e) = &second
                    && breaks(e)
                {
                    fill(&mut out, pairs.len(), RENAMES, e.kind, &e.message);
                    return Some(out);
                }
                renamed.push(first.and(second.map(|_| ())));
            }
        }
        let mut renamed = renamed.into_iter();
        for a in answers {
            out.push(a.unwrap_or_else(|| renamed.next().unwrap_or(Ok(()))));
        }
    }
    Some(out)
}

/// MLST where the server has it (what `stat` uses), else SIZE: either
/// answers 550 for a name that is not there.
fn check_line(mlst: bool, path: &str) -> String {
    if mlst {
        format!("MLST {path}")
    } else {
        format!("SIZE {path}")
    }
}

fn taken(from: &str, to: &str) -> RemoteError {
    RemoteError::new(
        ErrorKind::AlreadyExists,
        false,
        format!("rename {from} -> {to}"),
        "target exists",
    )
}

/// No reply, or not one we can place: the replies after it would be read
/// against the wrong commands.
pub(super) fn breaks(e: &RemoteError) -> bool {
    matches!(e.kind, ErrorKind::Timeout | ErrorKind::Connection)
}

/// Commands that could not be sent (some may have reached the server):
/// every pair not yet answered fails as a connection error.
pub(super) fn unsent<T>(
    mut out: Vec<Result<T>>,
    total: usize,
    what: &str,
    e: &std::io::Error,
) -> Vec<Result<T>> {
    fill(&mut out, total, what, ErrorKind::Connection, &e.to_string());
    out
}

/// Every pair not yet answered fails with the error that ended the run.
pub(super) fn fill<T>(
    out: &mut Vec<Result<T>>,
    total: usize,
    what: &str,
    kind: ErrorKind,
    message: &str,
) {
    while out.len() < total {
        out.push(Err(RemoteError::new(kind, true, what, message)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_use_mlst_when_offered() {
        assert_eq!(check_line(true, "/a b"), "MLST /a b");
        assert_eq!(check_line(false, "/a"), "SIZE /a");
    }

    #[test]
    fn fill_answers_every_remaining_pair() {
        let mut out = vec![Ok(())];
        fill(&mut out, 3, RENAMES, ErrorKind::Timeout, "no reply");
        assert_eq!(out.len(), 3);
        assert!(out[0].is_ok());
        assert!(
            out[1..]
                .iter()
                .all(|r| matches!(r, Err(e) if e.kind == ErrorKind::Timeout && e.temporary))
        );
    }
}
