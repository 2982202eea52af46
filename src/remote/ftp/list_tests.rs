//! Recorded listings from real servers, and property tests: no input panics,
//! and any file name survives a UNIX LIST or MLSD line.

use super::*;
use proptest::prelude::*;

/// 2026-11-27 12:00:00 UTC.
const NOW: i64 = 1_796_212_800;

fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_opt(h, mi, s)
        .unwrap()
        .and_utc()
        .timestamp()
}

fn list(line: &str) -> Listed {
    parse_list(line, 0, NOW).unwrap_or_else(|| panic!("did not parse: {line:?}"))
}

#[test]
fn vsftpd_unix_listing() {
    let l = list("-rw-r--r--    1 0        0               6 Nov 27 12:04 a.txt");
    assert_eq!(l.entry.name, "a.txt");
    assert_eq!((l.entry.kind, l.entry.size), (EntryKind::File, Some(6)));
    assert_eq!(
        (l.entry.mtime, l.precision),
        (ts(2026, 11, 27, 12, 4, 0), Precision::Minutes)
    );
    let d = list("drwxrwxrwx    2 0        0            4096 Jan 02  2024 archive");
    assert_eq!(
        (d.entry.kind, d.entry.name.as_str()),
        (EntryKind::Dir, "archive")
    );
    assert_eq!(
        (d.entry.mtime, d.precision),
        (ts(2024, 1, 2, 0, 0, 0), Precision::Days)
    );
    assert!(parse_list("total 12", 0, NOW).is_none());
}

#[test]
fn recent_dates_take_the_year_that_is_not_in_the_future() {
    // Late November now: a "Dec 30" entry without a year is from last year.
    let l = list("-rw-r--r-- 1 ftp ftp 1 Dec 30 23:59 old");
    assert_eq!(l.entry.mtime, ts(2025, 12, 30, 23, 59, 0));
    let l = list("-rw-r--r-- 1 ftp ftp 1 Nov 27 20:00 later-today");
    assert_eq!(
        l.entry.mtime,
        ts(2026, 11, 27, 20, 0, 0),
        "within a day of slack"
    );
}

#[test]
fn server_timezone_shifts_list_times_to_utc() {
    let l = parse_list("-rw-r--r-- 1 a b 3 Nov 27 13:30 x", 3600, NOW).unwrap();
    assert_eq!(l.entry.mtime, ts(2026, 11, 27, 12, 30, 0));
    let l = parse_list("11-27-26  01:30PM                  3 x", 3600, NOW).unwrap();
    assert_eq!(l.entry.mtime, ts(2026, 11, 27, 12, 30, 0));
}

#[test]
fn odd_names_survive_unix_listings() {
    let cases = [
        (
            "-rw-r--r-- 1 u g 5 Nov 24 00:15 name with  spaces.txt",
            "name with  spaces.txt",
        ),
        (
            "-rw-r--r-- 1 u g 5 Nov 24 00:15 -leading-dash",
            "-leading-dash",
        ),
        (
            "-rw-r--r-- 1 u g 5 Nov 24 00:15  leading space",
            " leading space",
        ),
        (
            "-rw-r--r-- 1 u g 5 Nov 24 00:15 ünïcødé €.csv",
            "ünïcødé €.csv",
        ),
        (
            "-rw-r--r-- 1 u g 5 Nov 24 00:15 12 Nov 5 10:00 x",
            "12 Nov 5 10:00 x",
        ),
        // No group column (some appliances), numeric owner.
        ("-rw-r--r-- 1 1000 5 Nov 24 00:15 nogroup", "nogroup"),
    ];
    for (line, name) in cases {
        assert_eq!(list(line).entry.name, name, "{line}");
    }
}

#[test]
fn symlinks_long_iso_and_proftpd() {
    let l = list("lrwxrwxrwx 1 u g 7 Nov 24 00:15 cur -> archive/x");
    assert_eq!(l.entry.kind, EntryKind::Symlink);
    assert_eq!(
        (l.entry.name.as_str(), l.entry.link_target.as_deref()),
        ("cur", Some("archive/x"))
    );
    let l = list("-rw-r--r-- 1 u g 42 2026-11-24 00:15 iso.txt");
    assert_eq!(
        (l.entry.mtime, l.entry.size),
        (ts(2026, 11, 24, 0, 15, 0), Some(42))
    );
    // ProFTPD pads user and group.
    let l = list("-rw-r--r--   1 ftpuser  ftpgroup   1048576 Mar  3 09:07 big.bin");
    assert_eq!(
        (l.entry.size, l.entry.mtime),
        (Some(1_048_576), ts(2026, 3, 3, 9, 7, 0))
    );
}

#[test]
fn dos_and_iis_listings() {
    let d = list("11-24-26  12:15AM       <DIR>          Order Files");
    assert_eq!(
        (d.entry.kind, d.entry.name.as_str()),
        (EntryKind::Dir, "Order Files")
    );
    assert_eq!(d.entry.mtime, ts(2026, 11, 24, 0, 15, 0));
    let f = list("02-05-2025  03:04PM             1,234 report.csv");
    assert_eq!(
        (f.entry.size, f.entry.mtime),
        (Some(1234), ts(2025, 2, 5, 15, 4, 0))
    );
    let f = list("02-05-99  12:00PM  7 y2k.txt");
    assert_eq!(f.entry.mtime, ts(1999, 2, 5, 12, 0, 0));
    let f = list("11-24-2026  17:15       99 twentyfour.txt");
    assert_eq!(f.entry.mtime, ts(2026, 11, 24, 17, 15, 0));
}

#[test]
fn mlsd_facts() {
    let e =
        parse_mlsd("type=file;size=5;modify=20261124001500.123;UNIX.mode=0644; a b;c.txt").unwrap();
    assert_eq!(
        (e.name.as_str(), e.size, e.kind),
        ("a b;c.txt", Some(5), EntryKind::File)
    );
    assert_eq!(e.mtime, ts(2026, 11, 24, 0, 15, 0));
    let d = parse_mlsd("Type=dir;Modify=20260101000000;Perm=el; sub").unwrap();
    assert_eq!(d.kind, EntryKind::Dir);
    assert!(parse_mlsd("type=cdir;modify=20260101000000; /x").is_none());
    assert!(parse_mlsd("type=pdir;modify=20260101000000; ..").is_none());
    assert!(is_mlsd_self_or_parent(
        "Type=CDir;modify=20260101000000; /x"
    ));
    assert!(is_mlsd_self_or_parent(
        "type=pdir;modify=20260101000000; .."
    ));
    assert!(!is_mlsd_self_or_parent("type=file;size=many; broken.csv"));
    let l = parse_mlsd("type=OS.unix=slink:/etc/x;modify=20260101000000; ln").unwrap();
    assert_eq!(
        (l.kind, l.link_target.as_deref()),
        (EntryKind::Symlink, Some("/etc/x"))
    );
    assert!(parse_mlsd("type=file;size=x; bad").is_none());
    // No size fact: unknown, not zero.
    let e = parse_mlsd("type=file;modify=20261124001500; nosize.bin").unwrap();
    assert_eq!((e.kind, e.size), (EntryKind::File, None));
    assert_eq!(
        parse_mlsd_time("20261124001500"),
        Some(ts(2026, 11, 24, 0, 15, 0))
    );
    assert_eq!(parse_mlsd_time("20261324001500"), None);
}

proptest! {
    #[test]
    fn no_input_panics(line in ".{0,120}", offset in -50_000i32..50_000, now in 0i64..4_000_000_000) {
        let _ = parse_list(&line, offset, now);
        let _ = parse_mlsd(&line);
        let _ = parse_mlsd_time(&line);
    }

    #[test]
    fn listing_shaped_input_never_panics(
        head in "[-dlbcps][rwx-]{9}",
        cols in proptest::collection::vec("[0-9A-Za-z:,<>-]{0,6}", 0..8),
        tail in ".{0,20}",
    ) {
        let line = format!("{head} {} {tail}", cols.join(" "));
        let _ = parse_list(&line, 0, NOW);
    }

    #[test]
    fn any_name_survives_a_unix_line(
        name in "[^/\r\n\0]{1,40}".prop_filter("not . or ..", |n| n != "." && n != ".."),
        size in 0u64..u64::MAX,
        day in 1u32..29,
    ) {
        let line = format!("-rw-r--r--    1 ftp      ftp {size:>12} Feb {day:>2} 10:07 {name}");
        let l = parse_list(&line, 0, NOW).unwrap();
        prop_assert_eq!(&l.entry.name, &name);
        prop_assert_eq!(l.entry.size, Some(size));
    }

    #[test]
    fn any_name_survives_mlsd(
        name in "[^\r\n\0]{1,40}".prop_filter("not . or ..", |n| n != "." && n != ".."),
        size in 0u64..u64::MAX,
    ) {
        let line = format!("type=file;size={size};modify=20260102030405; {name}");
        let e = parse_mlsd(&line).unwrap();
        prop_assert_eq!(&e.name, &name);
        prop_assert_eq!(e.mtime, ts(2026, 1, 2, 3, 4, 5));
    }
}
