//! What a listing takes, through the real binary on the local transport:
//! never ferry's own partial downloads, and names that are not UTF-8 show
//! up once as failed files instead of vanishing.

mod common;

use common::*;
use std::os::unix::ffi::OsStrExt;

/// Two stages: rule `b` watches rule `a`'s local_dir with `include = ["*"]`.
/// A partial download there (ferry's hidden temp name) is never taken by
/// `b`; the finished file is.
#[test]
fn a_rule_watching_another_rules_local_dir_never_takes_its_partial_files() {
    let f = Fixture::new("");
    let last = f.path("last");
    let second = format!(
        "[[watch]]\nname = \"b\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\nstable_for = \"0s\"\n\
         interval = \"200ms\"\ninclude = [\"*\"]\n",
        f.outbox.display(),
        last.display()
    );
    f.write_config(&format!("{}\n{second}", f.rule("a", "")));
    std::fs::create_dir_all(&f.outbox).unwrap();
    std::fs::write(f.outbox.join(".x.csv.1-2.ferry-part"), b"half").unwrap();
    f.put("done.csv", b"whole");
    f.once(0);
    f.once(0);
    assert_eq!(std::fs::read(last.join("done.csv")).unwrap(), b"whole");
    assert_eq!(names(&last), vec!["done.csv".to_string()]);
    let taken: Vec<_> = f
        .files(None)
        .into_iter()
        .filter(|r| r["rule"] == "b")
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(taken, vec!["done.csv".to_string()]);
}

/// A name with bytes that are not UTF-8 is a failed row with the escaped
/// name and why, recorded once, not on every poll; the other files go on.
#[test]
fn a_name_that_is_not_utf8_fails_once_with_a_clear_error() {
    let f = Fixture::new("");
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9.csv");
    std::fs::write(f.inbox.join(bad), b"latin-1").unwrap();
    f.put("fine.csv", b"fine");
    let log = f.once(1);
    assert!(log.contains("name is not valid UTF-8"), "{log}");
    f.once(0);
    assert_eq!(std::fs::read(f.outbox.join("fine.csv")).unwrap(), b"fine");
    let failed = f.files(Some("failed"));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["path"], "caf\\xe9.csv");
    assert_eq!(failed[0]["last_error"], "name is not valid UTF-8");
    assert_eq!(f.files(None).len(), 2);
}
