//! Logs as the journal receives them. A real systemd-journald runs in a
//! private mount namespace (`unshare -m`, tmpfs over `/run` and
//! `/var/log`), so its socket sits where ferry looks for it without touching
//! the machine's own journal; `journalctl` then answers the query an
//! operator types. Without a journald socket, ferry falls back to text, and
//! a `JOURNAL_STREAM` that names another file keeps text logs.

mod common;

use common::*;
use std::process::Command;

/// Runs inside the namespace. First a run with `--log-format journal` and
/// no journald (the fallback), then journald starts and a second run finds
/// stderr named by `JOURNAL_STREAM`, as systemd sets it.
const SCRIPT: &str = r#"
set -eu
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/log
RUST_LOG=info timeout 60 "$FERRY" --log-format journal once -c "$CONFIG" 2>"$DIR/fallback.log"
echo b > "$DIR/inbox/b.csv"
mkdir -p /run/systemd/journal
/lib/systemd/systemd-journald </dev/null >/dev/null 2>&1 &
journald=$!
trap 'kill $journald; wait $journald || true' EXIT
i=0
while [ ! -S /run/systemd/journal/socket ]; do
    i=$((i + 1)); [ $i -lt 200 ] || { echo "journald did not start" >&2; exit 90; }
    sleep 0.05
done
: > "$DIR/stderr.log"
JOURNAL_STREAM=$(stat -c %d:%i "$DIR/stderr.log") RUST_LOG=info timeout 60 "$FERRY" once -c "$CONFIG" 2>>"$DIR/stderr.log"
journalctl --sync
journalctl -o json RULE=r > "$DIR/rule-r.json"
journalctl -o json SYSLOG_IDENTIFIER=ferry > "$DIR/all.json"
"#;

fn entries(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn field<'a>(e: &'a serde_json::Value, name: &str) -> &'a str {
    e[name].as_str().unwrap_or("")
}

#[test]
fn file_events_reach_a_real_journald_with_rule_server_path_state_and_file_id() {
    require("/lib/systemd/systemd-journald", "systemd");
    require("/usr/bin/unshare", "util-linux");
    let f = Fixture::new("");
    f.put("a.csv", b"a");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", SCRIPT])
        .env("FERRY", BIN)
        .env("CONFIG", &f.config)
        .env("DIR", f.dir.path())
        .output()
        .unwrap();
    let read = |rel: &str| std::fs::read_to_string(f.path(rel)).unwrap_or_default();
    assert!(
        out.status.success(),
        "script failed: {}\nfallback log:\n{}\nstderr log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        read("fallback.log"),
        read("stderr.log")
    );

    // Without journald: a warning, then text logs as usual.
    let fallback = read("fallback.log");
    assert!(
        fallback.contains("cannot reach journald's socket"),
        "{fallback}"
    );
    assert!(fallback.contains("path=a.csv"), "{fallback}");

    // With it, nothing goes to stderr: every line is a journal entry.
    assert_eq!(read("stderr.log"), "", "text logs beside the journal");
    let rule_r = entries(&f.path("rule-r.json"));
    let done = rule_r
        .iter()
        .find(|e| field(e, "MESSAGE") == "done" && field(e, "PATH") == "b.csv")
        .unwrap_or_else(|| panic!("no done entry for b.csv in {rule_r:#?}"));
    assert_eq!(field(done, "RULE"), "r");
    assert_eq!(field(done, "SERVER"), "local");
    assert_eq!(field(done, "STATE"), "done");
    assert_eq!(field(done, "FILE_ID"), "2");
    assert_eq!(field(done, "PRIORITY"), "5", "info is notice");
    assert_eq!(field(done, "SYSLOG_IDENTIFIER"), "ferry");
    // `RULE=r` found only rule r's entries, and each state of b.csv.
    assert!(rule_r.iter().all(|e| field(e, "RULE") == "r"));
    for state in ["seen", "stable", "downloading", "delivered", "done"] {
        assert!(
            rule_r
                .iter()
                .any(|e| field(e, "STATE") == state && field(e, "PATH") == "b.csv"),
            "no {state} entry in {rule_r:#?}"
        );
    }
    // The message is the message: no timestamp or level of our own before it.
    let all = entries(&f.path("all.json"));
    let pass = all
        .iter()
        .find(|e| field(e, "MESSAGE") == "pass finished")
        .unwrap_or_else(|| panic!("no pass finished entry in {all:#?}"));
    assert_eq!(field(pass, "DONE"), "1");
}

#[test]
fn a_journal_stream_naming_another_file_keeps_text_logs() {
    let f = Fixture::new("");
    f.put("a.csv", b"a");
    let out = Command::new(BIN)
        .args(["once", "-c"])
        .arg(&f.config)
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", "1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains(" INFO "), "{log}");
    assert!(log.contains("file_id=1"), "{log}");
    assert!(!log.contains("journald"), "{log}");
}
