//! The read-only CLI as operators use it: in pipes, from a shell without
//! the daemon's secrets, filtering by the states the logs print, and
//! `ferry status` naming files' errors.

mod common;

use common::*;
use std::process::{Command, Stdio};

/// A server whose password comes from a variable no shell here sets, plus
/// the fixture's rule, which does not use it.
fn with_unset_secret(f: &Fixture, rule_extra: &str) {
    f.write_config(&format!(
        "[servers.partner]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nuser = \"u\"\n\
         password = {{ env = \"FERRY_TEST_NEVER_SET_PW\" }}\n\n{}",
        f.rule("r", rule_extra)
    ));
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let f = Fixture::new("");
    f.put("a.csv", b"1\n");
    f.once(0);
    for args in [&["files"][..], &["check"], &["status"]] {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("-c")
            .arg(&f.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone, as after `| head -1`
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    }
}

#[test]
fn read_only_commands_need_no_secrets_but_check_does() {
    let f = Fixture::new("");
    with_unset_secret(&f, "");
    for args in [
        &["status"][..],
        &["files"],
        &["retry", "--all"],
        &["forget", "--all"],
    ] {
        let out = f.ferry(args);
        let err = String::from_utf8_lossy(&out.stderr);
        // 1 is "nothing matched" for retry and forget.
        assert!(matches!(out.status.code(), Some(0 | 1)), "{args:?}: {err}");
        assert!(!err.contains("FERRY_TEST_NEVER_SET_PW"), "{args:?}: {err}");
    }
    for args in [&["check"][..], &["once"]] {
        let out = f.ferry(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("FERRY_TEST_NEVER_SET_PW is not set"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn files_filter_by_retrying_and_held_and_status_shows_file_errors() {
    let f = Fixture::new("");
    let fail = script(
        &f,
        "fail.sh",
        "echo 'import refused: bad header' >&2\nexit 1",
    );
    f.write_config(&format!(
        "{}{}",
        f.rule("r", "if_exists = \"wait\""),
        f.rule(
            "h",
            &format!(
                "handler = [\"{}\"]\nretry = {{ attempts = 3, first = \"1h\", max = \"1h\" }}",
                fail.display()
            )
        )
        .replace(
            &format!("local_dir = \"{}\"", f.outbox.display()),
            &format!("local_dir = \"{}\"", f.path("outbox-h").display())
        )
        .replace(
            "retry = { attempts = 3, first = \"0s\", max = \"0s\" }\n",
            ""
        ),
    ));
    std::fs::create_dir_all(&f.outbox).unwrap();
    std::fs::write(f.outbox.join("taken.csv"), b"old").unwrap();
    f.put("taken.csv", b"new");
    f.once(0);

    let held = f.files(Some("held"));
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["rule"], "r");
    assert_eq!(held[0]["path"], "taken.csv");
    let retrying = f.files(Some("retrying"));
    assert_eq!(retrying.len(), 1, "{retrying:?}");
    assert_eq!(retrying[0]["rule"], "h");
    assert!(f.files(Some("done")).is_empty());
    let bad = f.ferry(&["files", "--state", "bogus"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("retrying, held"));

    let text = f.ferry(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("file error") && text.contains("import refused: bad header"),
        "{text}"
    );
    let json = f.ferry(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let h = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "h")
        .unwrap();
    let errors = h["recent_file_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{h}");
    assert_eq!(errors[0]["path"], "taken.csv");
    assert!(
        errors[0]["error"].as_str().unwrap().contains("bad header"),
        "{h}"
    );
}
