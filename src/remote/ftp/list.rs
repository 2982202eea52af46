//! Directory listings as servers send them: MLSD facts (RFC 3659, times in
//! UTC to the second) and the human LIST formats of the servers that lack
//! MLSD: UNIX `ls -l` (vsftpd, ProFTPD without mod_facts, most appliances),
//! `ls -l --time-style=long-iso`, and DOS/IIS.
//!
//! These are ferry's own parsers rather than suppaftp's `list::File`: that
//! type turns every time into a `SystemTime` in one fixed zone and forgets
//! how precise the listing was, and the diff needs both facts to decide when
//! a time must be refined with MDTM. Every parser takes any input without
//! panicking (property-tested below).

use crate::remote::{Entry, EntryKind};
use chrono::{Datelike, NaiveDate};

/// How exact a listed modification time is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    /// UNIX "recent" form (`Nov 24 00:15`, year inferred) and DOS.
    Minutes,
    /// UNIX "old" form (`Nov 24  2025`): a date only.
    Days,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub entry: Entry,
    pub precision: Precision,
}

/// One MLSD line: `type=file;size=5;modify=20261124001500; name`. `None`
/// for the `cdir`/`pdir` entries and for lines that are not entries.
pub fn parse_mlsd(line: &str) -> Option<Entry> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    // RFC 3659 7.2: facts end with ";" and one space separates them from the
    // name, which may itself hold spaces and ";".
    let (facts, name) = match line.strip_prefix(' ') {
        Some(name) => ("", name),
        None => {
            let end = line.find("; ")?;
            (&line[..=end], &line[end + 2..])
        }
    };
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    let mut entry = Entry {
        name: name.to_string(),
        kind: EntryKind::File,
        // No `size` fact: unknown, never taken for empty.
        size: None,
        mtime: 0,
        link_target: None,
        invalid_name: false,
        date_only: false,
    };
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let (key, value) = fact.split_once('=')?;
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                let v = value.to_ascii_lowercase();
                entry.kind = match v.as_str() {
                    "file" => EntryKind::File,
                    "dir" => EntryKind::Dir,
                    "cdir" | "pdir" => return None,
                    "link" | "os.unix=symlink" => EntryKind::Symlink,
                    _ if v.starts_with("os.unix=slink") => {
                        entry.link_target = value.split_once(':').map(|(_, t)| t.to_string());
                        EntryKind::Symlink
                    }
                    _ => EntryKind::Other,
                };
            }
            "size" | "sizd" => entry.size = Some(value.parse().ok()?),
            "modify" => entry.mtime = parse_mlsd_time(value)?,
            _ => {}
        }
    }
    Some(entry)
}

/// Whether an MLSD line that [`parse_mlsd`] gives no entry for is one it
/// skips on purpose: the directory itself or its parent (`type=cdir`,
/// `type=pdir`, or named `.`/`..`). Any other such line is unreadable.
pub fn is_mlsd_self_or_parent(line: &str) -> bool {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (facts, name) = line.split_once(' ').unwrap_or((line, ""));
    let self_type = facts.split(';').any(|f| {
        let f = f.to_ascii_lowercase();
        f == "type=cdir" || f == "type=pdir"
    });
    self_type || name == "." || name == ".."
}

/// `YYYYMMDDHHMMSS[.sss]`, UTC (RFC 3659 2.3), as in MLSD and MDTM replies.
pub fn parse_mlsd_time(v: &str) -> Option<i64> {
    let digits = v.split('.').next()?;
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |a: usize, b: usize| digits[a..b].parse::<u32>().ok();
    let date = NaiveDate::from_ymd_opt(n(0, 4)? as i32, n(4, 6)?, n(6, 8)?)?;
    Some(
        date.and_hms_opt(n(8, 10)?, n(10, 12)?, n(12, 14)?)?
            .and_utc()
            .timestamp(),
    )
}

/// One LIST line in any known dialect. `offset` is the server's offset
/// from UTC in seconds (`server_timezone`); `now` (Unix seconds) decides the
/// year of UNIX "recent" entries. `None` for `total` lines, `.`/`..` and
/// anything unrecognised.
pub fn parse_list(line: &str, offset: i32, now: i64) -> Option<Listed> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let listed = parse_unix(line, offset, now).or_else(|| parse_dos(line, offset))?;
    (listed.entry.name != "." && listed.entry.name != "..").then_some(listed)
}

/// Whitespace-separated words with their byte offsets.
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c == ' ' || c == '\t', start) {
            (true, Some(s)) => {
                out.push((s, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn month(s: &str) -> Option<u32> {
    let s = s.get(..3)?.to_ascii_lowercase();
    MONTHS.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

fn hour_minute(s: &str) -> Option<(u32, u32)> {
    let (h, m) = s.split_once(':')?;
    let (h, m) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && !s.starts_with('+') && !s.contains(":+")).then_some((h, m))
}

fn local_to_utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, offset: i32) -> Option<i64> {
    let t = NaiveDate::from_ymd_opt(y, mo, d)?.and_hms_opt(h, mi, 0)?;
    Some(t.and_utc().timestamp() - i64::from(offset))
}

/// `-rw-r--r-- 1 owner group 1234 Nov 24 00:15 name` (group optional), the
/// year form `Nov 24  2025`, and long-iso `2026-11-24 00:15`.
fn parse_unix(line: &str, offset: i32, now: i64) -> Option<Listed> {
    let w = words(line);
    let perms = w.first()?.1;
    if perms.len() < 10 || !perms.is_ascii() {
        return None;
    }
    let kind = match perms.as_bytes()[0] {
        b'-' => EntryKind::File,
        b'd' => EntryKind::Dir,
        b'l' => EntryKind::Symlink,
        b'b' | b'c' | b'p' | b's' => EntryKind::Other,
        _ => return None,
    };
    // The size is the first number followed by a date; owner and group
    // names may be numbers, so look for the whole size+date shape.
    for (i, (_, word)) in w.iter().enumerate().skip(2) {
        let Ok(size) = word.parse::<u64>() else {
            continue;
        };
        let Some((end, mtime, precision)) = unix_date(&w[i + 1..], offset, now) else {
            continue;
        };
        // ls separates the name from the date by exactly one space, so a
        // name's own leading spaces survive.
        let rest = line.get(end..)?.strip_prefix(' ')?;
        let (name, target) = match kind {
            EntryKind::Symlink => match rest.split_once(" -> ") {
                Some((n, t)) => (n, Some(t.to_string())),
                None => (rest, None),
            },
            _ => (rest, None),
        };
        if name.is_empty() {
            return None;
        }
        let entry = Entry {
            name: name.to_string(),
            kind,
            size: Some(size),
            mtime,
            link_target: target,
            invalid_name: false,
            date_only: false,
        };
        let entry = Entry {
            date_only: precision == Precision::Days,
            ..entry
        };
        return Some(Listed { entry, precision });
    }
    None
}

/// The date words after the size: returns where they end, the UTC time and its precision.
fn unix_date(w: &[(usize, &str)], offset: i32, now: i64) -> Option<(usize, i64, Precision)> {
    let (_, first) = *w.first()?;
    // long-iso: 2026-11-24 00:15
    if let [y, mo, d] = first.split('-').collect::<Vec<_>>()[..]
        && y.len() == 4
    {
        let (ts, tw) = *w.get(1)?;
        let (h, mi) = hour_minute(tw)?;
        let t = local_to_utc(
            y.parse().ok()?,
            mo.parse().ok()?,
            d.parse().ok()?,
            h,
            mi,
            offset,
        )?;
        return Some((ts + tw.len(), t, Precision::Minutes));
    }
    let mo = month(first).filter(|_| first.len() == 3)?;
    let day: u32 = w.get(1)?.1.parse().ok()?;
    let (yt_start, yt) = *w.get(2)?;
    let end = yt_start + yt.len();
    if let Some((h, mi)) = hour_minute(yt) {
        // No year: the most recent such date not in the future. A day of
        // slack covers clock skew and zone mistakes.
        let server_now = now + i64::from(offset);
        let year = chrono::DateTime::from_timestamp(server_now, 0)?.year();
        let t = [year, year - 1]
            .into_iter()
            .filter_map(|y| local_to_utc(y, mo, day, h, mi, offset))
            .find(|t| *t <= now + 86_400)?;
        return Some((end, t, Precision::Minutes));
    }
    if yt.len() == 4 {
        let t = local_to_utc(yt.parse().ok()?, mo, day, 0, 0, offset)?;
        return Some((end, t, Precision::Days));
    }
    None
}

/// IIS/DOS: `11-24-26  12:15AM       <DIR>          name` or with a size.
fn parse_dos(line: &str, offset: i32) -> Option<Listed> {
    let w = words(line);
    let date = w.first()?.1;
    let [mo, d, y] = date.split('-').collect::<Vec<_>>()[..] else {
        return None;
    };
    let (mo, d, y): (u32, u32, i32) = (mo.parse().ok()?, d.parse().ok()?, y.parse().ok()?);
    let y = match y {
        0..=69 => 2000 + y,
        70..=99 => 1900 + y,
        _ => y,
    };
    let mut i = 1;
    let mut time = w.get(i)?.1.to_ascii_uppercase();
    if let Some(next) = w.get(i + 1).map(|x| x.1.to_ascii_uppercase())
        && (next == "AM" || next == "PM")
    {
        time.push_str(&next);
        i += 1;
    }
    let (hm, pm) = match (time.strip_suffix("AM"), time.strip_suffix("PM")) {
        (Some(t), _) => (t, Some(false)),
        (_, Some(t)) => (t, Some(true)),
        _ => (time.as_str(), None),
    };
    let (mut h, mi) = hour_minute(hm)?;
    match pm {
        Some(_) if h == 0 || h > 12 => return None,
        Some(false) if h == 12 => h = 0,
        Some(true) if h != 12 => h += 12,
        _ => {}
    }
    let (what_start, what) = *w.get(i + 1)?;
    let (kind, size) = if what.eq_ignore_ascii_case("<DIR>") {
        (EntryKind::Dir, None)
    } else {
        (EntryKind::File, Some(what.replace(',', "").parse().ok()?))
    };
    // Columns are padded, so a name's leading spaces cannot be told apart.
    let name = line
        .get(what_start + what.len()..)?
        .trim_start_matches([' ', '\t']);
    if name.is_empty() {
        return None;
    }
    let entry = Entry {
        name: name.to_string(),
        kind,
        size,
        mtime: local_to_utc(y, mo, d, h, mi, offset)?,
        link_target: None,
        invalid_name: false,
        date_only: false,
    };
    Some(Listed {
        entry,
        precision: Precision::Minutes,
    })
}

#[cfg(test)]
#[path = "list_tests.rs"]
mod tests;
