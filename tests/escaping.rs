//! Names and handler output with control characters, through the real
//! binary: text logs and `ferry files` show them escaped, so they can
//! neither forge a line nor reach the terminal; JSON keeps them exact.

mod common;

use common::*;

/// Every log line is a real event: it starts with its timestamp.
fn assert_clean_log(log: &str) {
    assert!(!log.contains('\x1b'), "raw ESC in the log:\n{log:?}");
    for line in log.lines() {
        assert!(
            line.starts_with(|c: char| c.is_ascii_digit()),
            "a log line that is no event: {line:?}\nin:\n{log}"
        );
    }
}

#[test]
fn a_name_with_esc_and_a_newline_is_escaped_in_logs_and_in_ferry_files() {
    let f = Fixture::new("");
    let name = "red\x1b[31mname\n2026-01-01T00:00:00Z  INFO forged.csv";
    let escaped = "red\\x1b[31mname\\n2026-01-01T00:00:00Z  INFO forged.csv";
    f.put(name, b"x");
    f.put("fine.csv", b"y");
    let log = f.once(1);
    assert_clean_log(&log);
    assert!(log.contains(escaped), "{log}");
    // The engine refuses the name as unsafe; the other file goes through.
    let failed = f.files(Some("failed"));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["path"].as_str().unwrap().ends_with(name),
        "JSON keeps the name exact"
    );
    let out = f.ferry(&["files"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        !table.contains('\x1b'),
        "raw ESC in `ferry files`:\n{table:?}"
    );
    assert_eq!(table.lines().count(), 3, "header and two rows:\n{table}");
    assert!(table.contains(escaped), "{table}");
}

#[test]
fn json_logs_keep_such_a_name_exact_and_still_one_event_a_line() {
    let f = Fixture::new("");
    let name = "red\x1b[31mname\nline.csv";
    f.put(name, b"x");
    let out = f.ferry(&["--log-format", "json", "once"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains('\x1b'), "raw ESC in the JSON log:\n{log:?}");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["path"].as_str().is_some_and(|p| p.ends_with(name))),
        "{log}"
    );
}

#[test]
fn handler_output_with_control_characters_is_escaped_in_logs_and_in_ferry_files() {
    let f = Fixture::new("");
    let h = script(
        &f,
        "h.sh",
        "printf 'backend \\033[2J\\033[31mdown\\r\\nretry later\\n' >&2; exit 1",
    );
    let text =
        std::fs::read_to_string(&f.config).unwrap() + &format!("handler = [\"{}\"]\n", h.display());
    std::fs::write(&f.config, text).unwrap();
    f.put("a.csv", b"a");
    let log = f.once(0);
    assert_clean_log(&log);
    let escaped = "backend \\x1b[2J\\x1b[31mdown\\r\\nretry later";
    assert!(log.contains(escaped), "{log}");
    let out = f.ferry(&["files"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        !table.contains('\x1b'),
        "raw ESC in `ferry files`:\n{table:?}"
    );
    assert_eq!(table.lines().count(), 2, "header and one row:\n{table}");
    assert!(table.contains(escaped), "{table}");
}
