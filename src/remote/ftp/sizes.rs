//! The sizes of many files on one plain control connection, their SIZE
//! commands sent together: a send batch checks the size of every file it
//! uploaded, and one at a time each check is a round trip (and a wake-up
//! of both sides). Replies come back in the order of the commands, as for
//! the renames of `renames.rs`; under TLS the socket is not ours to write.

use super::Shared;
use super::connect::Conn;
use super::data::{reply, send_lines};
use super::ops::size_value;
use super::renames::{breaks, fill, unsent};
use crate::remote::Result;
use suppaftp::Status;

/// Commands per round trip, as many as fit the socket buffers of both sides.
const WINDOW: usize = 64;

const SIZES: &str = "SIZE (several at once)";

/// The size of each path by SIZE, answers in order (`NotFound` for a file
/// that is not there). `None` when the commands cannot be sent together
/// (TLS, a server without SIZE): nothing was sent then.
pub async fn sizes_together(
    conn: &mut Conn,
    shared: &Shared,
    paths: &[&str],
) -> Option<Vec<Result<Option<u64>>>> {
    if !conn.features.size {
        return None;
    }
    let io = shared.server.io_timeout;
    let mut out = Vec::with_capacity(paths.len());
    for window in paths.chunks(WINDOW) {
        let lines: Vec<String> = window.iter().map(|p| format!("SIZE {p}")).collect();
        if let Err(e) = send_lines(conn, io, &lines).await {
            if out.is_empty() && e.kind() != std::io::ErrorKind::TimedOut {
                return None;
            }
            return Some(unsent(out, paths.len(), SIZES, &e));
        }
        for line in &lines {
            let answer = match reply(conn, io, line, &[Status::File]).await {
                Ok(text) => size_value(line, &text),
                Err(e) if breaks(&e) => {
                    fill(&mut out, paths.len(), SIZES, e.kind, &e.message);
                    return Some(out);
                }
                Err(e) => Err(e),
            };
            out.push(answer.map(Some));
        }
    }
    Some(out)
}
