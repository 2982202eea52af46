//! `daemon.node` and `daemon.lease`: defaults, and errors that point at
//! file:line:col and name the field.

use ferry::config;
use std::fs;
use std::time::Duration;

fn load(body: &str) -> (String, Result<config::Config, config::ConfigErrors>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    fs::create_dir(dir.path().join("out")).unwrap();
    let text = format!(
        "[daemon]\nstate = \"{root}/state.db\"\n{body}\n[[watch]]\nname = \"r\"\nremote_dir = \"{root}\"\nlocal_dir = \"{root}/out\"\n"
    );
    let file = dir.path().join("ferry.toml");
    fs::write(&file, &text).unwrap();
    let loaded = config::load(&file);
    // The directory must outlive the load only.
    drop(dir);
    (file.display().to_string(), loaded)
}

#[test]
fn node_defaults_to_the_hostname_and_lease_to_a_minute() {
    let (_, c) = load("");
    let c = c.expect("valid");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(c.daemon.node, host.trim());
    assert_eq!(c.daemon.lease, Duration::from_secs(60));
}

#[test]
fn node_and_a_short_lease_are_taken_as_written() {
    let (_, c) = load("node = \"gw-2\"\nlease = \"2s\"\n");
    let c = c.expect("valid");
    assert_eq!(c.daemon.node, "gw-2");
    assert_eq!(c.daemon.lease, Duration::from_secs(2));
}

#[test]
fn a_node_name_with_a_space_is_refused_at_its_position() {
    let (file, c) = load("node = \"gw 2\"\n");
    let e = c.expect_err("refused").0;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].col), (3, 8), "{}", e[0]);
    assert!(e[0].message.starts_with("daemon.node:"), "{}", e[0]);
    assert!(e[0].to_string().starts_with(&format!("{file}:3:8: ")));
}

#[test]
fn a_lease_under_a_second_or_not_a_duration_is_refused() {
    let (_, c) = load("lease = \"500ms\"\n");
    let e = c.expect_err("refused").0;
    assert_eq!((e[0].line, e[0].col), (3, 9), "{}", e[0]);
    assert!(e[0].message.contains("daemon.lease"), "{}", e[0]);
    assert!(e[0].message.contains("shorter than a second"), "{}", e[0]);

    let (_, c) = load("lease = \"soon\"\n");
    let e = c.expect_err("refused").0;
    assert_eq!((e[0].line, e[0].col), (3, 9), "{}", e[0]);
    assert!(
        e[0].message.contains("daemon.lease: bad duration"),
        "{}",
        e[0]
    );
}
