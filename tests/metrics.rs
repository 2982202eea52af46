//! `daemon.metrics` as Prometheus and a load balancer see it: `ferry run`
//! serves `/metrics` and `/healthz` on a loopback port, read here over a
//! plain TCP connection speaking HTTP/1.1.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The fixture's configuration with `metrics = "127.0.0.1:PORT"` in `[daemon]`.
fn with_metrics(f: &Fixture, rules: &str) -> u16 {
    let port = free_port();
    f.write_config(rules);
    let text = std::fs::read_to_string(&f.config).unwrap().replacen(
        "grace_period = \"5s\"\n",
        &format!("grace_period = \"5s\"\nmetrics = \"127.0.0.1:{port}\"\n"),
        1,
    );
    std::fs::write(&f.config, text).unwrap();
    port
}

/// `GET path`: the status code, the Content-Type and the body.
fn get(port: u16, path: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    Some((status, content_type, body.to_string()))
}

fn scrape(port: u16) -> String {
    let (status, content_type, body) = get(port, "/metrics").expect("metrics answer");
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    body
}

/// The value of the sample `series` (name and labels as written), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

/// Scrapes until `series` is at least `want`; returns that scrape.
fn wait_for_value(port: u16, series: &str, want: f64) -> String {
    wait_for_values(port, &[(series, want)])
}

/// Scrapes until every series is at least its value, in one scrape.
/// The `ferry_files` gauge is read from the state database, which a batch
/// commits before its counters are added, so a test that checks both waits
/// for both.
fn wait_for_values(port: u16, wants: &[(&str, f64)]) -> String {
    wait_for_scrape(port, &format!("{wants:?}"), |body| {
        wants
            .iter()
            .all(|(series, want)| value(body, series).is_some_and(|v| v >= *want))
    })
}

/// Scrapes until `reached` holds for a scrape; returns that scrape.
fn wait_for_scrape(port: u16, what: &str, reached: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Some((200, _, body)) = get(port, "/metrics") {
            if reached(&body) {
                return body;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} never reached; last scrape:\n{last}");
}

/// The sum of every `ferry_errors_total` sample of `rule`, whatever its kind.
fn errors_of(text: &str, rule: &str) -> f64 {
    let prefix = format!("ferry_errors_total{{rule=\"{rule}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn metrics_count_polls_files_bytes_errors_and_retries() {
    let f = Fixture::new("");
    let failing = f.path("inbox-h");
    std::fs::create_dir_all(&failing).unwrap();
    let rule_h = format!(
        "[[watch]]\nname = \"h\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\nstable_for = \"0s\"\ninterval = \"200ms\"\nhandler = [\"/bin/false\"]\nretry = {{ attempts = 3, first = \"0s\", max = \"0s\" }}\n",
        failing.display(),
        f.path("outbox-h").display()
    );
    let port = with_metrics(&f, &(f.rule("r", "") + "\n" + &rule_h));
    // Three small files go in a batch, the large one on its own.
    let sizes = [1usize, 10, 100, 70_000];
    for (i, n) in sizes.iter().enumerate() {
        f.put(&format!("f{i}.bin"), &vec![b'x'; *n]);
    }
    std::fs::write(failing.join("bad.csv"), b"bad").unwrap();
    let _d = f.spawn_run();

    let total: usize = sizes.iter().sum();
    let text = wait_for_values(
        port,
        &[
            (
                r#"ferry_files{rule="r",direction="listen",state="done"}"#,
                4.0,
            ),
            (
                r#"ferry_transferred_bytes_total{rule="r",direction="listen"}"#,
                total as f64,
            ),
            (
                r#"ferry_transfer_duration_seconds_count{rule="r",direction="listen"}"#,
                4.0,
            ),
            // The poll's own figures are set when it ends, which can be
            // after its files were counted.
            (r#"ferry_listed_files{rule="r"}"#, 4.0),
        ],
    );
    assert_eq!(
        value(
            &text,
            r#"ferry_transferred_bytes_total{rule="r",direction="listen"}"#
        ),
        Some(total as f64),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"ferry_transfer_duration_seconds_count{rule="r",direction="listen"}"#
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"ferry_listed_files{rule="r"}"#),
        Some(4.0),
        "{text}"
    );
    assert!(value(&text, r#"ferry_polls_total{rule="r",result="ok"}"#).unwrap() >= 1.0);
    assert!(value(&text, r#"ferry_poll_duration_seconds_count{rule="r"}"#).unwrap() >= 1.0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let last = value(&text, r#"ferry_last_success_timestamp_seconds{rule="r"}"#).unwrap();
    assert!((now - last).abs() < 60.0, "last success {last}, now {now}");
    assert!(text.contains("# TYPE ferry_sessions_open gauge"), "{text}");
    assert!(
        value(&text, r#"ferry_sessions_open{server="local"}"#).is_some(),
        "{text}"
    );

    // The handler fails three times: two retries, then failed for good.
    let text = wait_for_scrape(port, "rule h failed after three errors", |body| {
        value(
            body,
            r#"ferry_files{rule="h",direction="listen",state="failed"}"#,
        )
        .is_some_and(|v| v >= 1.0)
            && value(body, r#"ferry_retries_total{rule="h"}"#).is_some_and(|v| v >= 2.0)
            && errors_of(body, "h") >= 3.0
    });
    assert_eq!(
        value(&text, r#"ferry_retries_total{rule="h"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(errors_of(&text, "h"), 3.0, "{text}");
    assert_eq!(
        value(
            &text,
            r#"ferry_transferred_bytes_total{rule="h",direction="listen"}"#
        ),
        None
    );
}

#[test]
fn healthz_names_a_rule_whose_source_cannot_be_listed() {
    let f = Fixture::new("");
    let other = f.path("inbox-b");
    std::fs::create_dir_all(&other).unwrap();
    let rule_b = format!(
        "[[watch]]\nname = \"b\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\nstable_for = \"0s\"\ninterval = \"200ms\"\n",
        other.display(),
        f.path("outbox-b").display()
    );
    let port = with_metrics(&f, &(f.rule("r", "") + "\n" + &rule_b));
    let _d = f.spawn_run();
    wait_for_value(port, r#"ferry_polls_total{rule="r",result="ok"}"#, 1.0);
    let (status, _, body) = get(port, "/healthz").unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    std::fs::remove_dir_all(&f.inbox).unwrap();
    let mut last = None;
    wait_for(Duration::from_secs(15), "healthz to turn 503", || {
        last = get(port, "/healthz");
        matches!(&last, Some((503, _, _)))
    });
    let (_, _, body) = last.unwrap();
    assert!(body.contains("stale rule r:"), "{body}");
    assert!(!body.contains("rule b"), "{body}");
    let text = scrape(port);
    assert!(value(&text, r#"ferry_polls_total{rule="r",result="error"}"#).unwrap() >= 1.0);
    assert!(
        value(&text, r#"ferry_errors_total{rule="r",kind="not_found"}"#).unwrap() >= 1.0,
        "{text}"
    );

    // Back: the next successful poll makes it healthy again.
    std::fs::create_dir_all(&f.inbox).unwrap();
    wait_for(Duration::from_secs(15), "healthz to turn 200", || {
        matches!(get(port, "/healthz"), Some((200, _, _)))
    });
    let (status, _, _) = get(port, "/nothing").unwrap();
    assert_eq!(status, 404);
}

#[test]
fn a_metrics_port_already_taken_stops_the_start() {
    let f = Fixture::new("");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    f.write_config(&f.rule("r", ""));
    let text = std::fs::read_to_string(&f.config).unwrap().replacen(
        "grace_period = \"5s\"\n",
        &format!("grace_period = \"5s\"\nmetrics = \"127.0.0.1:{port}\"\n"),
        1,
    );
    std::fs::write(&f.config, text).unwrap();
    let out = f.ferry(&["run"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert!(
        log.contains(&format!("cannot serve metrics on 127.0.0.1:{port}")),
        "{log}"
    );
}

#[test]
fn a_metrics_value_that_is_not_a_socket_address_is_a_config_error_at_its_position() {
    let f = Fixture::new("");
    let text = std::fs::read_to_string(&f.config).unwrap().replacen(
        "grace_period = \"5s\"\n",
        "grace_period = \"5s\"\nmetrics = \"localhost\"\n",
        1,
    );
    std::fs::write(&f.config, text).unwrap();
    let out = f.ferry(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(":5:11: daemon.metrics: \"localhost\" is not a socket address"),
        "{err}"
    );
}
