//! The daemon as systemd runs it: SIGTERM/SIGINT stop it cleanly within the
//! grace period, SIGHUP reloads without dropping transfers in flight, and an
//! invalid new configuration leaves the old one running.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// A handler that records its start, sleeps, and records its end.
fn slow_handler(f: &Fixture, seconds: &str) -> String {
    let h = script(
        f,
        "slow.sh",
        &format!(
            "echo \"start $FERRY_ATTEMPT\" >> '{log}'; sleep {seconds}; echo \"end $FERRY_ATTEMPT\" >> '{log}'",
            log = f.path("handler.log").display()
        ),
    );
    format!("handler = [\"{}\"]", h.display())
}

fn handler_log(f: &Fixture) -> String {
    std::fs::read_to_string(f.path("handler.log")).unwrap_or_default()
}

#[test]
fn sigterm_lets_a_transfer_in_flight_finish_then_exits_zero() {
    let f = Fixture::new("");
    let text = std::fs::read_to_string(&f.config).unwrap() + &slow_handler(&f, "1");
    std::fs::write(&f.config, text).unwrap();
    f.put("a.csv", b"a");
    let mut d = f.spawn_run();
    wait_for(Duration::from_secs(10), "the handler to start", || {
        handler_log(&f).contains("start 1")
    });
    d.signal(libc::SIGTERM);
    assert_eq!(
        d.wait(Duration::from_secs(10)),
        Some(0),
        "log:\n{}",
        d.log()
    );
    assert_eq!(handler_log(&f), "start 1\nend 1\n");
    assert_eq!(f.files(Some("done")).len(), 1);
    assert!(d.log().contains("stopping"));
}

#[test]
fn sigint_past_the_grace_period_abandons_safely_and_the_next_start_resumes() {
    let f = Fixture::new("");
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("grace_period = \"5s\"", "grace_period = \"300ms\"")
        + &slow_handler(&f, "30");
    std::fs::write(&f.config, text).unwrap();
    f.put("a.csv", b"a");
    let mut d = f.spawn_run();
    wait_for(Duration::from_secs(10), "the handler to start", || {
        handler_log(&f).contains("start 1")
    });
    let t0 = Instant::now();
    d.signal(libc::SIGINT);
    assert_eq!(
        d.wait(Duration::from_secs(10)),
        Some(0),
        "log:\n{}",
        d.log()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t0.elapsed()
    );
    assert!(d.log().contains("abandoning"), "{}", d.log());
    // The file was downloaded; the handler run is repeated, told it is attempt 2.
    assert_eq!(f.files(Some("downloaded")).len(), 1);
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("sleep 30", "sleep 0");
    std::fs::write(&f.config, text).unwrap();
    std::fs::write(
        f.path("slow.sh"),
        std::fs::read_to_string(f.path("slow.sh"))
            .unwrap()
            .replace("sleep 30", "sleep 0"),
    )
    .unwrap();
    f.once(0);
    assert!(
        handler_log(&f).ends_with("start 2\nend 2\n"),
        "{}",
        handler_log(&f)
    );
    assert_eq!(f.files(Some("done")).len(), 1);
}

#[test]
fn sighup_applies_a_new_rule_and_keeps_the_transfer_in_flight() {
    let f = Fixture::new("");
    let slow = slow_handler(&f, "1.5");
    f.write_config(&(f.rule("a", "") + &slow));
    f.put("first.csv", b"1");
    let mut d = f.spawn_run();
    wait_for(Duration::from_secs(10), "the handler to start", || {
        handler_log(&f).contains("start 1")
    });
    // Add rule b over a second inbox, and change rule a's interval.
    let inbox_b = f.path("inbox-b");
    std::fs::create_dir_all(&inbox_b).unwrap();
    std::fs::write(inbox_b.join("b.csv"), b"b").unwrap();
    let rule_b = format!(
        "[[watch]]\nname = \"b\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\nstable_for = \"0s\"\ninterval = \"200ms\"\n",
        inbox_b.display(),
        f.path("outbox-b").display()
    );
    f.write_config(&(f.rule("a", "").replace("200ms", "300ms") + &slow + "\n" + &rule_b));
    d.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(10), "rule b to deliver", || {
        f.path("outbox-b/b.csv").exists()
    });
    wait_for(
        Duration::from_secs(10),
        "the first transfer to finish",
        || handler_log(&f).contains("end 1"),
    );
    assert_eq!(
        handler_log(&f),
        "start 1\nend 1\n",
        "the transfer in flight was not restarted"
    );
    assert!(d.log().contains("configuration reloaded"), "{}", d.log());
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
}

#[test]
fn sighup_with_an_invalid_config_logs_the_errors_and_keeps_running() {
    let f = Fixture::new("");
    let mut d = f.spawn_run();
    wait_for(Duration::from_secs(10), "start", || {
        d.log().contains("ferry started")
    });
    let good = std::fs::read_to_string(&f.config).unwrap();
    let bad = good.replace(
        "stable_for = \"0s\"",
        "stable_for = \"soon\"\nintervall = \"1s\"",
    );
    std::fs::write(&f.config, &bad).unwrap();
    d.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(10), "the reload to be refused", || {
        d.log().contains("still running on the previous one")
    });
    assert!(d.log().contains("intervall"), "{}", d.log());
    // The old rule still works.
    f.put("after.csv", b"x");
    wait_for(
        Duration::from_secs(10),
        "delivery after a refused reload",
        || f.outbox.join("after.csv").exists(),
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
}
