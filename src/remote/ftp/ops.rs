//! The Session operations other than moving bytes (`transfer.rs`): listing,
//! stat, rename, delete, mkdir. Every command goes through `data::command`
//! or `data::open`, each bounded by `io_timeout`.

use super::Shared;
use super::connect::Conn;
use super::data::{self, command, finish};
use super::list::{self, Listed, Precision};
use super::transfer::{cut_short, remote_io, stalled};
use crate::remote::{Entry, EntryKind, ErrorKind, RemoteError, Result, escape_name, join, parent};
use std::collections::HashMap;
use suppaftp::Status;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc::{self, Sender};

const DONE: &[Status] = &[Status::RequestedFileActionOk, Status::CommandOk];

/// Times listed without seconds are refined with MDTM every poll while
/// they are this recent: within one listed minute a file can change again
/// with the same size and the same listed time.
const SETTLED_AFTER: i64 = 180;

/// Entries an MLSD listing hands over at a time.
const BATCH: usize = 1000;

/// Lists `dir` into `out`: MLSD in batches as its lines arrive; a `LIST`
/// whole, since its coarse times are refined with `MDTM` once it is
/// complete. Stops, without an error, once `out`'s receiver is gone.
pub async fn list_batches(
    conn: &mut Conn,
    shared: &Shared,
    dir: &str,
    out: &Sender<Vec<Entry>>,
) -> Result<()> {
    if conn.features.mlsd {
        let (tx, rx) = mpsc::channel::<Lines>(1);
        let cmd = format!("MLSD {dir}");
        let read = each_line(conn, shared, &cmd, tx);
        let parsed = async {
            // Owned here: when `out` is gone, dropping it stops the reading.
            let mut rx = rx;
            let mut unreadable = Unreadable::default();
            while let Some(lines) = rx.recv().await {
                let mut entries = Vec::with_capacity(lines.len());
                for (line, escaped) in &lines {
                    match list::parse_mlsd(line) {
                        Some(e) => entries.push(flag_invalid(e, *escaped)),
                        None if list::is_mlsd_self_or_parent(line) => {}
                        None => unreadable.note(line),
                    }
                }
                if out.send(entries).await.is_err() {
                    break;
                }
            }
            unreadable
        };
        let (sent, unreadable) = tokio::join!(read, parsed);
        match sent {
            Ok(()) => {
                unreadable.warn(dir, "MLSD");
                return Ok(());
            }
            // Advertised in FEAT but refused (500/502): use LIST from now
            // on. Refused before any line, so nothing was sent.
            Err(e) if !e.temporary && e.kind == ErrorKind::Other => conn.features.mlsd = false,
            Err(e) => return Err(e),
        }
    }
    let entries = list_long(conn, shared, dir).await?;
    let _ = out.send(entries).await;
    Ok(())
}

/// A directory by `LIST`, times refined.
async fn list_long(conn: &mut Conn, shared: &Shared, dir: &str) -> Result<Vec<Entry>> {
    // CWD and a bare LIST: servers read a LIST argument as ls options or a
    // glob, which names with a leading dash or a `*` would trip.
    let io = shared.server.io_timeout;
    command(conn, io, &format!("CWD {dir}"), DONE).await?;
    let lines = lines(conn, shared, "LIST").await?;
    let now = unix_now();
    let offset = shared.server.ftp.server_utc_offset;
    let mut listed = Vec::with_capacity(lines.len());
    let mut unreadable = Unreadable::default();
    for (line, escaped) in &lines {
        match list::parse_list(line, offset, now) {
            Some(mut l) => {
                l.entry = flag_invalid(l.entry, *escaped);
                listed.push(l)
            }
            None if line.starts_with("total ") || is_dot_entry(line) => {}
            None => unreadable.note(line),
        }
    }
    unreadable.warn(dir, "LIST");
    refine(conn, shared, dir, &mut listed, now).await?;
    Ok(listed.into_iter().map(|l| l.entry).collect())
}

/// The lines of a listing no parser could read: the files they name are
/// not seen at all, which someone should know. Counted, with the first as
/// an example, and warned about once per listing.
#[derive(Default)]
struct Unreadable {
    count: usize,
    example: Option<String>,
}

impl Unreadable {
    fn note(&mut self, line: &str) {
        self.count += 1;
        self.example.get_or_insert_with(|| line.to_string());
    }

    fn warn(&self, dir: &str, cmd: &str) {
        if let Some(example) = &self.example {
            tracing::warn!(
                dir,
                count = self.count,
                example,
                "{cmd} lines in an unknown format were skipped"
            );
        }
    }
}

/// Marks an entry parsed from a line that was not UTF-8 when its name holds
/// the escaped bytes (they may be in the owner's name instead).
fn flag_invalid(mut e: Entry, escaped: bool) -> Entry {
    e.invalid_name = escaped && e.name.contains("\\x");
    e
}

/// The lines of a listing command's data connection, each with whether it
/// held bytes that are not UTF-8 (escaped as `\xNN`, see `escape_name`).
async fn lines(conn: &mut Conn, shared: &Shared, cmd: &str) -> Result<Lines> {
    crate::remote::gather(|out| each_line(conn, shared, cmd, out)).await
}

/// Lines of a listing, each with whether it held bytes that are not
/// UTF-8 (escaped as `\xNN`, see `escape_name`).
type Lines = Vec<(String, bool)>;

/// Reads a listing command's data connection and sends its lines to
/// `out` as they arrive, [`BATCH`] at a time. Once `out`'s receiver is
/// gone the reading stops: the data connection is closed and the
/// server's final reply read, so the control connection stays in step.
async fn each_line(
    conn: &mut Conn,
    shared: &Shared,
    cmd: &str,
    out: mpsc::Sender<Lines>,
) -> Result<()> {
    let io = shared.server.io_timeout;
    let mut stream = data::open(conn, shared, cmd, 0).await?;
    let mut reader = BufReader::new(&mut stream);
    let (mut line, mut batch) = (Vec::new(), Vec::new());
    let mut stopped = false;
    let read = loop {
        line.clear();
        let n = match tokio::time::timeout(io, reader.read_until(b'\n', &mut line)).await {
            Ok(Ok(n)) => n,
            // A TLS server that closes without close_notify: the end of
            // the listing all the same (its 226 vouches for it).
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Ok(Err(e)) => break Err(e),
            Err(_) => break Err(stalled(io)),
        };
        if n == 0 {
            break Ok(());
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let (text, escaped) = escape_name(text.strip_suffix(b"\r").unwrap_or(text));
        if !text.is_empty() {
            batch.push((text, escaped));
        }
        if batch.len() >= BATCH && out.send(std::mem::take(&mut batch)).await.is_err() {
            stopped = true;
            break Ok(());
        }
    };
    drop(reader);
    drop(stream);
    if let Err(e) = read {
        let fallback = remote_io(cmd, &e);
        return Err(data::reason(conn, cmd, fallback).await);
    }
    if stopped {
        // Cut short on purpose: any final reply (426 "transfer aborted"
        // most often) keeps the control connection in step.
        return cut_short(conn, cmd).await;
    }
    if !batch.is_empty() {
        let _ = out.send(batch).await;
    }
    finish(conn, io, cmd).await
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn is_dot_entry(line: &str) -> bool {
    line.ends_with(" .") || line.ends_with(" ..")
}

/// Replaces listed times coarser than a second (UNIX LIST: minutes, or
/// days for old files) with MDTM's UTC seconds, so the version of a file
/// (size, mtime) is the same whether it comes from a listing or a stat.
/// Settled files reuse the last MDTM answer while their listed size and
/// time are unchanged, so a poll of an unchanged directory costs no MDTM.
async fn refine(
    conn: &mut Conn,
    shared: &Shared,
    dir: &str,
    listed: &mut [Listed],
    now: i64,
) -> Result<()> {
    if !conn.features.mdtm {
        return Ok(());
    }
    let old = shared
        .mdtm
        .lock()
        .expect("mdtm cache lock")
        .remove(dir)
        .unwrap_or_default();
    // Cached answers first; the rest are asked for together.
    let mut new = HashMap::new();
    let mut ask = Vec::new();
    for (i, l) in listed.iter_mut().enumerate() {
        if l.entry.kind != EntryKind::File || l.precision == Precision::Seconds {
            continue;
        }
        let key = (l.entry.size, l.entry.mtime);
        let settled = l.entry.mtime < now - SETTLED_AFTER;
        match old
            .get(&l.entry.name)
            .filter(|c| settled && (c.0, c.1) == key)
        {
            Some(c) => {
                new.insert(l.entry.name.clone(), *c);
                l.entry.mtime = c.2;
                l.entry.date_only = false;
            }
            None => ask.push(i),
        }
    }
    let paths: Vec<String> = ask
        .iter()
        .map(|&i| join(dir, &listed[i].entry.name))
        .collect();
    let answers = mdtm_all(conn, shared, &paths).await;
    for (&i, answer) in ask.iter().zip(answers) {
        let l = &mut listed[i];
        let t = match answer {
            Ok(t) => t,
            // Gone since the listing: the next listing will not show it.
            Err(e) if e.kind == ErrorKind::NotFound => continue,
            Err(e) if !e.temporary => {
                tracing::warn!(dir, error = %e, "MDTM refused; using LIST times (minute precision)");
                conn.features.mdtm = false;
                break;
            }
            Err(e) => return Err(e),
        };
        new.insert(l.entry.name.clone(), (l.entry.size, l.entry.mtime, t));
        l.entry.mtime = t;
        l.entry.date_only = false;
    }
    shared
        .mdtm
        .lock()
        .expect("mdtm cache lock")
        .insert(dir.to_string(), new);
    Ok(())
}

/// MDTM replies arriving in this many per round trip on plain connections.
const MDTM_WINDOW: usize = 64;

/// MDTM of every path, in order. A directory of ten thousand new files
/// would otherwise cost ten thousand round trips before the first download.
/// On a plain connection the commands go out a window at a time and the
/// replies are read in order (FTP servers read their control connection
/// line by line); under TLS the socket is not ours to write, so they go
/// one by one. An error ends the answers early: the caller stops there.
async fn mdtm_all(conn: &mut Conn, shared: &Shared, paths: &[String]) -> Vec<Result<i64>> {
    let mut out = Vec::with_capacity(paths.len());
    for window in paths.chunks(MDTM_WINDOW) {
        // Refused under TLS: the commands then go one by one.
        let sent = window.len() > 1
            && data::send_lines(conn, shared.server.io_timeout, &mdtm_lines(window))
                .await
                .is_ok();
        let mut stop = false;
        for path in window {
            // Every reply of a sent window is read, even after an error,
            // so that the connection stays in step.
            let r = match (sent, stop) {
                (true, _) => mdtm_reply(conn, shared, path).await,
                (false, false) => mdtm(conn, shared, path).await,
                (false, true) => break,
            };
            // No reply read at all: the connection is out of step or gone.
            let lost = matches!(&r, Err(e) if matches!(e.kind, ErrorKind::Timeout | ErrorKind::Connection));
            if !stop {
                stop = matches!(&r, Err(e) if e.kind != ErrorKind::NotFound);
                out.push(r);
            }
            if lost {
                break;
            }
        }
        if stop {
            break;
        }
    }
    out
}

fn mdtm_lines(paths: &[String]) -> Vec<String> {
    paths.iter().map(|p| format!("MDTM {p}")).collect()
}

/// Reads the reply to an MDTM already sent.
async fn mdtm_reply(conn: &mut Conn, shared: &Shared, path: &str) -> Result<i64> {
    let cmd = format!("MDTM {path}");
    let reply = data::reply(conn, shared.server.io_timeout, &cmd, &[Status::File]).await?;
    mdtm_value(&cmd, &reply)
}

async fn mdtm(conn: &mut Conn, shared: &Shared, path: &str) -> Result<i64> {
    let cmd = format!("MDTM {path}");
    let reply = command(conn, shared.server.io_timeout, &cmd, &[Status::File]).await?;
    mdtm_value(&cmd, &reply)
}

fn mdtm_value(cmd: &str, reply: &str) -> Result<i64> {
    let value = reply.get(4..).unwrap_or_default().trim();
    list::parse_mlsd_time(value).ok_or_else(|| bad(cmd, reply))
}

async fn size(conn: &mut Conn, shared: &Shared, path: &str) -> Result<u64> {
    let cmd = format!("SIZE {path}");
    let reply = command(conn, shared.server.io_timeout, &cmd, &[Status::File]).await?;
    size_value(&cmd, &reply)
}

/// `213 N`: a reply that says anything else leaves the connection out of
/// step with nothing to place it by.
pub(super) fn size_value(cmd: &str, reply: &str) -> Result<u64> {
    let value = reply.get(4..).unwrap_or_default().trim();
    value.parse().map_err(|_| bad(cmd, reply))
}

fn bad(cmd: &str, reply: &str) -> RemoteError {
    RemoteError::new(
        ErrorKind::Connection,
        true,
        cmd,
        format!("unreadable reply: {}", reply.trim()),
    )
}

/// A file's size: `SIZE` alone (MLST where the server has it). A missing
/// file and a temporary error answer as they are; any other refusal of
/// `SIZE` gets the whole [`stat`] (which then lists the parent).
pub async fn file_size(conn: &mut Conn, shared: &Shared, path: &str) -> Result<Option<u64>> {
    if conn.features.mlsd {
        let listed = stat(conn, shared, path).await?.size;
        // An MLST without the size fact: SIZE, where the server has it.
        if listed.is_some() || !conn.features.size {
            return Ok(listed);
        }
        return size(conn, shared, path).await.map(Some);
    }
    match size(conn, shared, path).await {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind == ErrorKind::NotFound || e.temporary => Err(e),
        Err(_) => stat(conn, shared, path).await.map(|e| e.size),
    }
}

/// MLST where the server has it; else SIZE and MDTM (what `refine` uses),
/// CWD to tell a directory, and a listing of the parent as the last resort.
pub async fn stat(conn: &mut Conn, shared: &Shared, path: &str) -> Result<Entry> {
    let io = shared.server.io_timeout;
    let name = path.rsplit('/').next().unwrap_or(path).to_string();
    if conn.features.mlsd {
        let reply = command(
            conn,
            io,
            &format!("MLST {path}"),
            &[Status::RequestedFileActionOk],
        )
        .await?;
        let fact_line = reply.lines().find_map(|l| l.strip_prefix(' '));
        let mut e = fact_line
            .and_then(|l| list::parse_mlsd(l.trim_end_matches('\r')))
            .ok_or_else(|| bad("MLST", &reply))?;
        e.name = name;
        return Ok(e);
    }
    match size(conn, shared, path).await {
        Ok(size) if conn.features.mdtm => {
            if let Ok(mtime) = mdtm(conn, shared, path).await {
                let kind = EntryKind::File;
                return Ok(Entry {
                    name,
                    kind,
                    size: Some(size),
                    mtime,
                    link_target: None,
                    invalid_name: false,
                    date_only: false,
                });
            }
        }
        Ok(_) => {}
        Err(e) if e.kind == ErrorKind::NotFound => {
            // SIZE fails on directories too.
            if command(conn, io, &format!("CWD {path}"), DONE)
                .await
                .is_ok()
            {
                let kind = EntryKind::Dir;
                return Ok(Entry {
                    name,
                    kind,
                    size: None,
                    mtime: 0,
                    link_target: None,
                    invalid_name: false,
                    date_only: false,
                });
            }
            return Err(e);
        }
        Err(e) if e.temporary => return Err(e),
        Err(_) => {}
    }
    crate::remote::gather(|out| async move { list_batches(conn, shared, parent(path), &out).await })
        .await?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| {
            RemoteError::new(
                ErrorKind::NotFound,
                false,
                format!("stat {path}"),
                "not in its directory's listing",
            )
        })
}

/// RNFR + RNTO. The caller has checked that `to` does not exist.
pub async fn rename(conn: &mut Conn, shared: &Shared, from: &str, to: &str) -> Result<()> {
    let io = shared.server.io_timeout;
    command(
        conn,
        io,
        &format!("RNFR {from}"),
        &[Status::RequestFilePending],
    )
    .await?;
    command(conn, io, &format!("RNTO {to}"), DONE)
        .await
        .map(|_| ())
}

/// DELE. 550 means "not found" and "not allowed" alike; a file still there
/// after a 550 was refused, which must not pass for already gone.
pub async fn remove(conn: &mut Conn, shared: &Shared, path: &str) -> Result<()> {
    match command(
        conn,
        shared.server.io_timeout,
        &format!("DELE {path}"),
        DONE,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ErrorKind::NotFound => match stat(conn, shared, path).await {
            Ok(_) => Err(RemoteError::new(
                ErrorKind::PermissionDenied,
                false,
                e.context,
                e.message,
            )),
            Err(_) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// MKD for each missing level, top down. A refused MKD is fine when the
/// directory turns out to exist (created meanwhile, or MKD on an existing one).
pub async fn create_dirs(conn: &mut Conn, shared: &Shared, dir: &str) -> Result<()> {
    let io = shared.server.io_timeout;
    if command(conn, io, &format!("CWD {dir}"), DONE).await.is_ok() {
        return Ok(());
    }
    let mut prefix = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        let made = command(conn, io, &format!("MKD {prefix}"), &[Status::PathCreated]).await;
        if let Err(e) = made
            && command(conn, io, &format!("CWD {prefix}"), DONE)
                .await
                .is_err()
        {
            return Err(e);
        }
    }
    Ok(())
}

/// MFMT (draft-somers-ftp-mfxx), where FEAT lists it: the only common way
/// to set a file's time over FTP. `Ok(false)` without it.
pub async fn set_mtime(conn: &mut Conn, shared: &Shared, path: &str, mtime: i64) -> Result<bool> {
    if !conn.features.mfmt {
        return Ok(false);
    }
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime.max(0) as u64);
    let stamp: String = humantime::format_rfc3339_seconds(when)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let cmd = format!("MFMT {stamp} {path}");
    command(conn, shared.server.io_timeout, &cmd, &[Status::File]).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_from_213_replies() {
        assert_eq!(size_value("SIZE /a", "213 4096\r\n").unwrap(), 4096);
        assert_eq!(size_value("SIZE /a", "213 0").unwrap(), 0);
        let bad = size_value("SIZE /a", "213 many").unwrap_err();
        assert_eq!(bad.kind, ErrorKind::Connection);
        assert!(bad.message.contains("213 many"), "{bad:?}");
    }
}
