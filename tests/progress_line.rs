//! The progress line of `ferry once`: drawn on a terminal (a pseudo
//! terminal made by util-linux `script`), absent when stderr is a pipe or
//! when systemd runs the process.

mod common;

use common::*;
use std::process::Command;

/// A fixture whose five files each take a handler a third of a second, so
/// that the line is redrawn several times with files done.
fn slow_fixture() -> Fixture {
    let f = Fixture::new("");
    let h = script(&f, "h.sh", "sleep 0.3");
    f.write_config(&f.rule("r", &format!("handler = [\"{}\"]\n", h.display())));
    for i in 0..5 {
        f.put(&format!("f{i}.csv"), &vec![b'x'; 2048]);
    }
    f
}

/// Runs `ferry once` under a pseudo terminal; what the terminal received.
fn once_on_a_terminal(f: &Fixture, env: &[(&str, &str)]) -> String {
    assert!(
        std::path::Path::new("/usr/bin/script").exists(),
        "util-linux `script` is missing: apt-get install bsdutils"
    );
    let cmd = format!("{BIN} once -c {}", f.config.display());
    let mut c = Command::new("/usr/bin/script");
    c.args(["-qec", &cmd, "/dev/null"])
        .env_remove("INVOCATION_ID")
        .env_remove("JOURNAL_STREAM");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    text
}

#[test]
fn a_terminal_gets_files_bytes_and_rate() {
    let f = slow_fixture();
    let text = once_on_a_terminal(&f, &[]);
    assert!(text.contains("/5 files, "), "no progress line in:\n{text}");
    assert!(
        text.contains("5/5 files, 10.00 KiB/10.00 KiB") || text.contains("4/5 files"),
        "the line never counted files done:\n{text}"
    );
    assert!(text.contains("/s"), "no rate in:\n{text}");
    // Log lines still arrive whole.
    assert!(text.contains("pass finished"), "{text}");
}

#[test]
fn a_pipe_or_systemd_gets_no_line() {
    let f = slow_fixture();
    let out = f.ferry(&["once"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pass finished"), "{err}");
    assert!(!err.contains(" files, "), "a line on a pipe:\n{err}");

    let f = slow_fixture();
    let text = once_on_a_terminal(&f, &[("INVOCATION_ID", "0123456789abcdef")]);
    assert!(text.contains("pass finished"), "{text}");
    assert!(!text.contains(" files, "), "a line under systemd:\n{text}");
}
