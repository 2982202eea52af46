//! The Listen pipeline end to end on the local transport, through the real
//! binary: delivery, versions, post-actions, handlers, gates, failures.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn delivers_whole_files_keeping_subpaths_and_never_repeats_an_unchanged_one() {
    let f = Fixture::new("recursive = true");
    f.put("a.csv", b"alpha");
    f.put("deep/er/b.csv", &vec![7u8; 300_000]);
    f.put("name with spaces ünï.txt", b"x");
    f.once(0);
    assert_eq!(std::fs::read(f.outbox.join("a.csv")).unwrap(), b"alpha");
    assert_eq!(
        std::fs::read(f.outbox.join("deep/er/b.csv")).unwrap(),
        vec![7u8; 300_000]
    );
    assert!(f.outbox.join("name with spaces ünï.txt").exists());
    assert_eq!(f.files(Some("done")).len(), 3);
    // A consumer takes the files; an unchanged source is never delivered again.
    std::fs::remove_file(f.outbox.join("a.csv")).unwrap();
    f.once(0);
    assert!(
        !f.outbox.join("a.csv").exists(),
        "unchanged file was delivered twice"
    );
    assert_eq!(f.files(None).len(), 3);
}

#[test]
fn a_changed_file_is_a_new_version_and_is_delivered_again() {
    let f = Fixture::new("");
    let src = f.put("a.csv", b"v1");
    f.once(0);
    std::fs::write(&src, b"version two").unwrap();
    f.once(0);
    // The consumer has not taken v1: it is kept (if_exists = "unique").
    assert_eq!(std::fs::read(f.outbox.join("a.csv")).unwrap(), b"v1");
    let later: Vec<_> = names(&f.outbox)
        .into_iter()
        .filter(|n| n.starts_with("a.") && n.ends_with("Z.csv"))
        .collect();
    assert_eq!(later.len(), 1, "{:?}", names(&f.outbox));
    assert_eq!(
        std::fs::read(f.outbox.join(&later[0])).unwrap(),
        b"version two"
    );
    let rows = f.files(Some("done"));
    assert_eq!(rows.len(), 2, "one row per version: {rows:?}");
}

#[test]
fn move_to_archives_and_never_overwrites_an_archived_file() {
    let f = Fixture::new(&format!(
        "move_to = \"{}\"\nrecursive = true",
        f_path("archive")
    ));
    let f = rebase(f, "archive");
    f.put("a.csv", b"first");
    f.put("sub/b.csv", b"b");
    f.once(0);
    assert_eq!(std::fs::read(f.path("archive/a.csv")).unwrap(), b"first");
    assert_eq!(std::fs::read(f.path("archive/sub/b.csv")).unwrap(), b"b");
    assert!(!f.inbox.join("a.csv").exists());
    // Same name again: archived under a UTC timestamp suffix.
    f.put("a.csv", b"second");
    f.once(0);
    assert_eq!(std::fs::read(f.path("archive/a.csv")).unwrap(), b"first");
    let archived = names(&f.path("archive"));
    let suffixed: Vec<_> = archived
        .iter()
        .filter(|n| n.starts_with("a.") && n.ends_with("Z.csv"))
        .collect();
    assert_eq!(suffixed.len(), 1, "{archived:?}");
    assert_eq!(
        std::fs::read(f.path("archive").join(suffixed[0])).unwrap(),
        b"second"
    );
    // Locally too, the unread first file is kept and the second set beside it.
    assert_eq!(std::fs::read(f.outbox.join("a.csv")).unwrap(), b"first");
    assert_eq!(
        names(&f.outbox)
            .iter()
            .filter(|n| n.starts_with("a.") && n.ends_with("Z.csv"))
            .count(),
        1
    );
}

/// The fixture's directory is only known after it is made: rewrite the
/// placeholder directory name in its config to the real path.
fn f_path(name: &str) -> String {
    format!("@@{name}@@")
}

fn rebase(f: Fixture, name: &str) -> Fixture {
    let text = std::fs::read_to_string(&f.config).unwrap();
    let real = f.path(name).display().to_string();
    std::fs::write(&f.config, text.replace(&f_path(name), &real)).unwrap();
    f
}

#[test]
fn delete_removes_the_source_after_delivery() {
    let f = Fixture::new("delete = true");
    f.put("a.csv", b"a");
    f.once(0);
    assert!(f.outbox.join("a.csv").exists());
    assert!(!f.inbox.join("a.csv").exists());
    assert_eq!(f.files(Some("done")).len(), 1);
}

#[test]
fn handler_gets_arguments_and_tracked_properties_without_a_shell() {
    let f = Fixture::new("");
    let out = f.path("handler.out");
    let h = script(
        &f,
        "h.sh",
        &format!(
            "{{ printf '%s|' \"$@\"; env | grep ^FERRY_ | sort; }} > '{}'",
            out.display()
        ),
    );
    let text = std::fs::read_to_string(&f.config).unwrap().replace(
        &format!("local_dir = \"{}\"\n", f.outbox.display()),
        &format!(
            "handler = [\"{}\", \"{{local_path}}\", \"{{name}}\", \"--size={{size}}\"]\n",
            h.display()
        ),
    );
    std::fs::write(&f.config, text).unwrap();
    f.put("odd $(name); rm -rf x.csv", b"12345");
    f.once(0);
    let got = std::fs::read_to_string(&out).unwrap();
    assert!(
        got.contains("|odd $(name); rm -rf x.csv|--size=5|"),
        "{got}"
    );
    for var in [
        "FERRY_FILE_NAME=odd $(name); rm -rf x.csv",
        "FERRY_RULE=r",
        "FERRY_SIZE=5",
        "FERRY_ATTEMPT=1",
        "FERRY_HOST=localhost",
        &format!("FERRY_REMOTE_DIR={}", f.inbox.display()),
        &format!(
            "FERRY_REMOTE_PATH={}/odd $(name); rm -rf x.csv",
            f.inbox.display()
        ),
        "FERRY_TIMESTAMP=20",
        "FERRY_MOVE_TO_DIR=",
        "FERRY_PORT=0",
        "FERRY_LOCAL_PATH=/",
    ] {
        assert!(got.contains(var), "missing {var:?} in:\n{got}");
    }
    // The handler-only spool copy is cleaned up once done.
    let spool = f.path("state/spool/r");
    assert!(names(&spool).is_empty(), "spool left: {:?}", names(&spool));
    assert_eq!(f.files(Some("done")).len(), 1);
}

#[test]
fn a_failing_handler_is_retried_with_its_attempt_number_then_succeeds() {
    let f = Fixture::new("");
    let flag = f.path("backend-up");
    let seen = f.path("attempts");
    let h = script(
        &f,
        "h.sh",
        &format!(
            "echo \"$FERRY_ATTEMPT\" >> '{}'; test -e '{}' || {{ echo backend down >&2; exit 1; }}",
            seen.display(),
            flag.display()
        ),
    );
    let text = std::fs::read_to_string(&f.config).unwrap()
        + &format!("handler = [\"{}\", \"{{local_path}}\"]\n", h.display());
    std::fs::write(&f.config, text).unwrap();
    f.put("a.csv", b"a");
    let log = f.once(0);
    assert!(log.contains("backend down"), "{log}");
    let rows = f.files(Some("downloaded"));
    assert_eq!(
        rows.len(),
        1,
        "the download is kept while the handler retries"
    );
    assert!(
        rows[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("backend down")
    );
    std::fs::write(&flag, b"").unwrap();
    f.once(0);
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "1\n2\n");
    assert_eq!(f.files(Some("done")).len(), 1);
    assert_eq!(std::fs::read(f.outbox.join("a.csv")).unwrap(), b"a");
}

#[test]
fn exhausted_attempts_fail_the_file_move_it_aside_and_retry_requeues_it() {
    let f = Fixture::new(&format!("failed_move_to = \"{}\"", f_path("failed")));
    let f = rebase(f, "failed");
    let flag = f.path("ok");
    let h = script(&f, "h.sh", &format!("test -e '{}'", flag.display()));
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("attempts = 3", "attempts = 2")
        + &format!("handler = [\"{}\"]\n", h.display());
    std::fs::write(&f.config, text).unwrap();
    f.put("a.csv", b"a");
    f.put("b.csv", b"b");
    f.once(0);
    f.once(1);
    let failed = f.files(Some("failed"));
    assert_eq!(failed.len(), 2);
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("moved to"),
        "{failed:?}"
    );
    assert_eq!(names(&f.path("failed")), vec!["a.csv", "b.csv"]);
    // Put one back and requeue it by hand.
    std::fs::rename(f.path("failed/a.csv"), f.inbox.join("a.csv")).unwrap();
    std::fs::write(&flag, b"").unwrap();
    let out = f.ferry(&["retry", "--path", "a.*"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.once(0);
    assert_eq!(f.files(Some("done")).len(), 1);
    assert_eq!(f.files(Some("failed")).len(), 1);
}

#[test]
fn unsafe_names_fail_alone_and_the_rest_of_the_batch_proceeds() {
    let f = Fixture::new("recursive = true");
    let outside = f.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&f.outbox).unwrap();
    // A symlink in local_dir leading out of it, and a source dir of that name.
    std::os::unix::fs::symlink(&outside, f.outbox.join("evil")).unwrap();
    f.put("evil/x.csv", b"x");
    f.put("bad\x01name.csv", b"y");
    f.put("fine.csv", b"z");
    f.once(1);
    assert_eq!(std::fs::read(f.outbox.join("fine.csv")).unwrap(), b"z");
    assert!(
        names(&outside).is_empty(),
        "wrote outside local_dir: {:?}",
        names(&outside)
    );
    let failed = f.files(Some("failed"));
    assert_eq!(failed.len(), 2, "{failed:?}");
    for row in &failed {
        let err = row["last_error"].as_str().unwrap();
        assert!(err.contains("unsafe remote name"), "{err}");
        assert_eq!(row["attempts"], 1, "permanent errors are not retried");
    }
}

#[test]
fn stable_for_waits_until_size_and_mtime_hold_still() {
    let f = Fixture::new("");
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("stable_for = \"0s\"", "stable_for = \"1500ms\"");
    std::fs::write(&f.config, text).unwrap();
    let src = f.put("growing.csv", b"part");
    f.once(0);
    assert!(!f.outbox.join("growing.csv").exists());
    assert_eq!(f.files(Some("seen")).len(), 1);
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::write(&src, b"part and more").unwrap();
    f.once(0);
    std::thread::sleep(Duration::from_millis(800));
    // 1.8 s since first seen, but only 0.8 s since the last change.
    f.once(0);
    assert!(
        !f.outbox.join("growing.csv").exists(),
        "taken while still changing"
    );
    std::thread::sleep(Duration::from_millis(900));
    f.once(0);
    assert_eq!(
        std::fs::read(f.outbox.join("growing.csv")).unwrap(),
        b"part and more"
    );
}

#[test]
fn ready_marker_gates_delivery_and_is_removed_with_the_file() {
    let f = Fixture::new("ready_marker = \"{name}.done\"\ndelete = true");
    f.put("a.csv", b"a");
    f.once(0);
    assert!(!f.outbox.join("a.csv").exists(), "taken before its marker");
    f.put("a.csv.done", b"");
    f.once(0);
    assert_eq!(std::fs::read(f.outbox.join("a.csv")).unwrap(), b"a");
    assert!(
        !f.outbox.join("a.csv.done").exists(),
        "the marker is never delivered"
    );
    assert!(names(&f.inbox).is_empty(), "{:?}", names(&f.inbox));
}

#[test]
fn include_exclude_and_size_filters() {
    let f =
        Fixture::new("include = [\"*.csv\"]\nexclude = [\"skip*\"]\nmin_size = 2\nmax_size = 5");
    f.put("ok.csv", b"abc");
    f.put("skip.csv", b"abc");
    f.put("other.txt", b"abc");
    f.put("tiny.csv", b"a");
    f.put("huge.csv", b"abcdefgh");
    f.once(0);
    assert_eq!(names(&f.outbox), vec!["ok.csv"]);
}

#[test]
fn status_files_and_forget_show_and_edit_the_state() {
    let f = Fixture::new("");
    f.put("a.csv", b"a");
    f.once(0);
    let out = f.ferry(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let line = text
        .lines()
        .find(|l| l.starts_with("r "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.split_whitespace().any(|w| w == "1"), "{line}");
    let out = f.ferry(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["files"]["done"], 1);
    assert_eq!(v[0]["last_listed"], 1);
    let out = f.ferry(&["forget"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "forget without a filter is refused"
    );
    let out = f.ferry(&["forget", "--rule", "r"]);
    assert!(out.status.success());
    std::fs::remove_file(f.outbox.join("a.csv")).unwrap();
    f.once(0);
    assert!(
        f.outbox.join("a.csv").exists(),
        "a forgotten file is new again"
    );
}

#[test]
fn a_second_process_on_the_same_state_is_refused() {
    let f = Fixture::new("");
    let mut d = f.spawn_run();
    wait_for(Duration::from_secs(10), "daemon start", || {
        d.log().contains("ferry started")
    });
    let out = f.ferry(&["once"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another ferry process"));
    d.kill9();
}

#[test]
fn an_interrupted_download_resumes_from_the_bytes_on_disk() {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new("");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let src = f.put("big.bin", &data);
    let meta = std::fs::metadata(&src).unwrap();
    // What a killed run leaves: the first 600 kB under the version's temp name.
    std::fs::create_dir_all(&f.outbox).unwrap();
    // The row id (1: the first row) and the version are in the name.
    let temp = f
        .outbox
        .join(part_name("big.bin", 1, meta.mtime(), meta.len()));
    std::fs::write(&temp, &data[..600_000]).unwrap();
    // A partial of another version of the file is never used.
    let stale = f
        .outbox
        .join(part_name("big.bin", 1, meta.mtime() - 5, meta.len()));
    std::fs::write(&stale, vec![0u8; 600_000]).unwrap();
    let log = f.once(0);
    assert!(
        log.contains("resuming download") && log.contains("offset=600000"),
        "{log}"
    );
    assert!(
        log.contains("bytes=400000"),
        "only the rest is fetched: {log}"
    );
    assert_eq!(std::fs::read(f.outbox.join("big.bin")).unwrap(), data);
    assert!(!temp.exists());
}

#[test]
fn json_logs_carry_rule_server_and_path_on_every_state_change() {
    let f = Fixture::new("");
    f.put("a.csv", b"abc");
    let out = f.ferry(&["once", "--log-format", "json"]);
    assert!(out.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let states: Vec<&str> = events.iter().filter_map(|e| e["state"].as_str()).collect();
    assert_eq!(
        states,
        [
            "seen",
            "stable",
            "downloading",
            "downloaded",
            "delivered",
            "done"
        ]
    );
    for e in events.iter().filter(|e| e["state"].is_string()) {
        let span = &e["span"];
        assert_eq!(span["rule"], "r", "{e}");
        assert_eq!(span["server"], "local", "{e}");
        let path = e["path"].as_str().or(span["path"].as_str());
        assert_eq!(path, Some("a.csv"), "{e}");
    }
    let downloaded = events.iter().find(|e| e["state"] == "downloaded").unwrap();
    assert_eq!(downloaded["bytes"], 3);
    assert!(downloaded["duration_ms"].is_u64());
}

#[test]
fn a_broken_rule_never_stops_the_others() {
    let f = Fixture::new("");
    let broken = f.rule("broken", "").replace(
        &format!("remote_dir = \"{}\"", f.inbox.display()),
        &format!("remote_dir = \"{}\"", f.path("missing").display()),
    );
    f.write_config(&(broken + "\n" + &f.rule("r", "")));
    f.put("a.csv", b"a");
    let log = f.once(1);
    assert_eq!(std::fs::read(f.outbox.join("a.csv")).unwrap(), b"a");
    let failure = log
        .lines()
        .find(|l| l.contains("poll failed"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        failure.contains("rule=broken")
            && failure.contains("server=local")
            && failure.contains("missing"),
        "{failure}"
    );
    let out = f.ferry(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let broken = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "broken")
        .unwrap();
    assert_eq!(broken["consecutive_errors"], 1);
    assert!(broken["last_error"].as_str().unwrap().contains("missing"));
}

#[test]
fn max_transfers_bounds_the_files_in_flight() {
    let f = Fixture::new("");
    let log = f.path("spans.log");
    let h = script(
        &f,
        "h.sh",
        &format!(
            "echo \"+ $(date +%s%N)\" >> '{l}'; sleep 0.3; echo \"- $(date +%s%N)\" >> '{l}'",
            l = log.display()
        ),
    );
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("max_transfers = 4", "max_transfers = 2")
        + &format!("handler = [\"{}\"]\n", h.display());
    std::fs::write(&f.config, text).unwrap();
    for i in 0..6 {
        f.put(&format!("f{i}.csv"), b"x");
    }
    f.once(0);
    let mut events: Vec<(u128, i32)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let (sign, t) = l.split_once(' ').unwrap();
            (t.parse().unwrap(), if sign == "+" { 1 } else { -1 })
        })
        .collect();
    events.sort();
    let (mut now, mut peak) = (0, 0);
    for (_, d) in events {
        now += d;
        peak = peak.max(now);
    }
    assert_eq!(peak, 2, "at most max_transfers at once, and that many used");
}
