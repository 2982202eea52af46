//! `ferry explain` through the real binary, on local rules: a delivered
//! file, a file a filter excludes, one waiting for stable_for, a failed
//! one, and a path no rule watches.

mod common;

use common::*;
use std::process::Output;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn explain(f: &Fixture, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["explain"];
    all.extend(args);
    let out = f.ferry(&all);
    (out.status.code(), text(&out))
}

#[test]
fn a_delivered_file_shows_where_it_went_and_every_step() {
    let f = Fixture::new("");
    let archive = f.path_str("archive");
    f.write_config(&f.rule("r", &format!("move_to = \"{archive}\"")));
    let src = f.put("a.csv", b"alpha");
    f.once(0);
    let (code, out) = explain(&f, &[src.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let delivered = f.outbox.join("a.csv");
    assert!(
        out.contains(&format!("delivered to {}", delivered.display())),
        "{out}"
    );
    assert!(out.contains(&format!("then moved to {archive}")), "{out}");
    for step in [
        "listed     (new) -> seen",
        "stable     seen -> stable",
        "attempt    stable -> downloading  attempt 1",
        "downloaded downloading -> downloaded  5 bytes",
        "delivered  downloaded -> delivered",
        "done       delivered -> done",
    ] {
        assert!(out.contains(step), "missing {step:?} in:\n{out}");
    }
    // Asked by where it landed, or by its row id: the same row.
    let (code, by_local) = explain(&f, &[delivered.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert!(
        by_local.contains("done       delivered -> done"),
        "{by_local}"
    );
    let id = f.files(Some("done"))[0]["id"].to_string();
    let (_, by_id) = explain(&f, &[&id]);
    assert!(by_id.contains("rule r ("), "{by_id}");
    assert!(by_id.contains(&format!("history of row {id} ")), "{by_id}");
    // And as JSON, with the history as data.
    let out = f.ferry(&["explain", "--json", &id]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let history = &v["rules"][0]["versions"][0]["history"];
    assert_eq!(history.as_array().unwrap().len(), 6, "{v}");
    assert_eq!(history[5]["to_state"], "done");
}

#[test]
fn a_filtered_file_names_the_glob() {
    let f = Fixture::new("include = [\"*.csv\"]\nexclude = [\"tmp-*\"]");
    let skipped = f.put("tmp-a.csv", b"x");
    let other = f.put("b.xml", b"x");
    f.once(0);
    let (code, out) = explain(&f, &[skipped.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("exclude pattern \"tmp-*\" matches tmp-a.csv"),
        "{out}"
    );
    assert!(!out.contains("history of row"), "never recorded: {out}");
    let (_, out) = explain(&f, &[other.to_str().unwrap()]);
    assert!(
        out.contains("no include pattern matches b.xml (include *.csv)"),
        "{out}"
    );
}

#[test]
fn a_file_waiting_for_stable_for_says_how_long() {
    let f = Fixture::new("");
    // The fixture's rule with a long window instead of 0s.
    f.write_config(
        &f.rule("r", "")
            .replace("stable_for = \"0s\"", "stable_for = \"1h\""),
    );
    let src = f.put("slow.csv", b"growing");
    f.once(0);
    let (code, out) = explain(&f, &[src.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("waiting for stable_for = 1h: unchanged since"),
        "{out}"
    );
    // Just polled: between 59 and 60 minutes are left.
    assert!(
        out.contains("stable in 59m") || out.contains("stable in 1h"),
        "{out}"
    );
    assert!(out.contains("on disk now: 7 bytes"), "{out}");
    assert!(!f.outbox.join("slow.csv").exists());
}

#[test]
fn a_failed_file_shows_its_attempts_and_error() {
    let f = Fixture::new("");
    let h = script(
        &f,
        "fail.sh",
        "echo 'import refused: bad header' >&2\nexit 3",
    );
    f.write_config(&(f.rule("r", "") + &format!("handler = [\"{}\"]\n", h.display())));
    let src = f.put("bad.csv", b"x");
    // retry.attempts = 3 with no wait: three passes fail it for good.
    for _ in 0..3 {
        let _ = f.ferry(&["once"]);
    }
    assert_eq!(f.files(Some("failed")).len(), 1);
    let (code, out) = explain(&f, &[src.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("failed for good (attempt 3, 3 failed of retry.attempts = 3)"),
        "{out}"
    );
    assert!(out.contains("import refused: bad header"), "{out}");
    assert!(out.contains("ferry retry --id"), "{out}");
    assert_eq!(
        out.matches("retry      downloaded -> downloaded").count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("failed     downloaded -> failed  attempt 3"),
        "{out}"
    );
}

#[test]
fn a_path_no_rule_watches_names_the_nearest_rule() {
    let f = Fixture::new("include = [\"*.csv\"]");
    let elsewhere = f.path("elsewhere/x/y.csv");
    let (code, out) = explain(&f, &[elsewhere.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        out.trim(),
        format!(
            "no rule watches {}: nearest rule r watches {} with include *.csv",
            elsewhere.display(),
            f.inbox.display()
        )
    );
}

trait PathStr {
    fn path_str(&self, rel: &str) -> String;
}

impl PathStr for Fixture {
    fn path_str(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
}
