//! Local delivery never loses or silently replaces a file: `if_exists`,
//! a repeat that recognises its own rename, a missing file that is not
//! taken for delivered, and `ferry retry` after `failed_move_to`.

mod common;

use common::*;

/// Runs SQL on the fixture's state database, as an operator or a crash would
/// leave it (Python's sqlite3 module; the tests use no SQLite client crate).
fn sql(f: &Fixture, statement: &str) {
    let db = f.path("state/ferry.db");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
        ])
        .arg(&db)
        .arg(statement)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn suffixed(f: &Fixture, stem: &str, ext: &str) -> Vec<String> {
    names(&f.outbox)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{stem}.")) && n.ends_with(&format!("Z.{ext}")))
        .collect()
}

#[test]
fn unique_is_the_default_and_keeps_the_file_the_consumer_has_not_read() {
    let f = Fixture::new("");
    f.put("orders.csv", b"hour 1");
    f.once(0);
    f.put("orders.csv", b"hour 2, longer");
    f.once(0);
    assert_eq!(
        std::fs::read(f.outbox.join("orders.csv")).unwrap(),
        b"hour 1"
    );
    let other = suffixed(&f, "orders", "csv");
    assert_eq!(other.len(), 1, "{:?}", names(&f.outbox));
    assert_eq!(
        std::fs::read(f.outbox.join(&other[0])).unwrap(),
        b"hour 2, longer"
    );
    let done = f.files(Some("done"));
    assert_eq!(done.len(), 2);
    assert!(
        done[1]["local_path"].as_str().unwrap().ends_with(&other[0]),
        "the row records the name it was delivered under: {done:?}"
    );
}

#[test]
fn overwrite_replaces_for_mirrors() {
    let f = Fixture::new("if_exists = \"overwrite\"");
    f.put("orders.csv", b"hour 1");
    f.once(0);
    f.put("orders.csv", b"hour 2, longer");
    f.once(0);
    assert_eq!(names(&f.outbox), vec!["orders.csv"]);
    assert_eq!(
        std::fs::read(f.outbox.join("orders.csv")).unwrap(),
        b"hour 2, longer"
    );
}

#[test]
fn wait_holds_the_file_without_spending_attempts_until_the_name_is_free() {
    let f = Fixture::new("if_exists = \"wait\"");
    f.put("orders.csv", b"hour 1");
    // A large file too, so that both the batch and the single-file paths wait.
    f.put("big.bin", &vec![1u8; 200_000]);
    f.once(0);
    f.put("orders.csv", b"hour 2, longer");
    f.put("big.bin", &vec![2u8; 300_000]);
    for _ in 0..5 {
        f.once(0);
    }
    assert_eq!(
        std::fs::read(f.outbox.join("orders.csv")).unwrap(),
        b"hour 1"
    );
    assert_eq!(
        std::fs::read(f.outbox.join("big.bin")).unwrap(),
        vec![1u8; 200_000]
    );
    let waiting = f.files(Some("stable"));
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    for row in &waiting {
        assert_eq!(row["held"], "name-taken", "{row}");
        assert_eq!(row["failures"], 0, "{row}");
        assert_eq!(row["attempts"], 0, "waiting is not an attempt: {row}");
    }
    let status = f.ferry(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("2 file(s) held (waiting for a free name"),
        "{text}"
    );
    // The consumer takes the old files: the new ones follow.
    std::fs::remove_file(f.outbox.join("orders.csv")).unwrap();
    std::fs::remove_file(f.outbox.join("big.bin")).unwrap();
    f.once(0);
    assert_eq!(
        std::fs::read(f.outbox.join("orders.csv")).unwrap(),
        b"hour 2, longer"
    );
    assert_eq!(
        std::fs::read(f.outbox.join("big.bin")).unwrap(),
        vec![2u8; 300_000]
    );
    assert_eq!(f.files(Some("done")).len(), 4);
    assert_eq!(names(&f.outbox), vec!["big.bin", "orders.csv"]);
}

#[test]
fn a_repeat_after_a_crash_recognises_its_own_rename() {
    let f = Fixture::new("");
    f.put("a.csv", b"alpha");
    f.put("big.bin", &vec![3u8; 200_000]);
    f.once(0);
    // As if the process died after the rename, before `delivered` was recorded.
    sql(
        &f,
        "UPDATE files SET state = 'downloaded', delivered_at_ms = NULL, done_at_ms = NULL",
    );
    let log = f.once(0);
    assert_eq!(names(&f.outbox), vec!["a.csv", "big.bin"], "no second copy");
    assert!(
        !log.contains("state=\"downloaded\""),
        "nothing downloaded again:\n{log}"
    );
    assert_eq!(f.files(Some("done")).len(), 2);
}

#[test]
fn a_missing_temp_file_is_not_proof_of_delivery() {
    let f = Fixture::new("");
    f.put("a.csv", b"alpha");
    f.put("big.bin", &vec![3u8; 200_000]);
    f.once(0);
    // A crash before the rename, then a cleaner that removed hidden files;
    // or a reload that moved local_dir: neither the temp nor the recorded
    // file is there.
    sql(
        &f,
        "UPDATE files SET state = 'downloaded', delivered_at_ms = NULL, done_at_ms = NULL",
    );
    std::fs::remove_file(f.outbox.join("a.csv")).unwrap();
    std::fs::remove_file(f.outbox.join("big.bin")).unwrap();
    f.once(0);
    assert_eq!(std::fs::read(f.outbox.join("a.csv")).unwrap(), b"alpha");
    assert_eq!(
        std::fs::read(f.outbox.join("big.bin")).unwrap(),
        vec![3u8; 200_000]
    );
    assert_eq!(f.files(Some("done")).len(), 2);
}

#[test]
fn a_recorded_name_taken_by_someone_else_is_chosen_again() {
    let f = Fixture::new("");
    f.put("a.csv", b"alpha");
    f.once(0);
    // Crash after the choice was recorded, before the rename; meanwhile
    // another writer put a file of the same size under that name.
    let temp = part_of(&f.outbox, &f.files(Some("done"))[0]);
    std::fs::rename(f.outbox.join("a.csv"), &temp).unwrap();
    std::fs::write(f.outbox.join("a.csv"), b"other").unwrap();
    sql(
        &f,
        "UPDATE files SET state = 'downloaded', delivered_at_ms = NULL, done_at_ms = NULL",
    );
    f.once(0);
    assert_eq!(std::fs::read(f.outbox.join("a.csv")).unwrap(), b"other");
    let other = suffixed(&f, "a", "csv");
    assert_eq!(other.len(), 1, "{:?}", names(&f.outbox));
    assert_eq!(std::fs::read(f.outbox.join(&other[0])).unwrap(), b"alpha");
    assert!(!temp.exists());
}

#[test]
fn retry_brings_back_what_failed_move_to_moved_away() {
    let f = Fixture::new("");
    let failed_dir = f.path("failed");
    let flag = f.path("backend-up");
    let h = script(&f, "h.sh", &format!("test -e '{}'", flag.display()));
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("attempts = 3", "attempts = 1")
        + &format!(
            "failed_move_to = \"{}\"\nmove_to = \"{}\"\nhandler = [\"{}\"]\n",
            failed_dir.display(),
            f.path("archive").display(),
            h.display()
        );
    std::fs::write(&f.config, text).unwrap();
    f.put("a.csv", b"alpha");
    f.put("sub.csv", b"beta");
    f.once(1);
    assert_eq!(names(&failed_dir), vec!["a.csv", "sub.csv"]);
    assert!(names(&f.inbox).is_empty());
    // The backend is back; the operator only says "retry".
    std::fs::write(&flag, b"").unwrap();
    let out = f.ferry(&["retry", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.once(0);
    assert_eq!(f.files(Some("done")).len(), 2, "{:?}", f.files(None));
    assert!(names(&failed_dir).is_empty());
    assert_eq!(names(&f.path("archive")), vec!["a.csv", "sub.csv"]);
    assert_eq!(std::fs::read(f.outbox.join("a.csv")).unwrap(), b"alpha");
}

#[test]
fn an_attempt_abandoned_by_a_stop_is_not_a_failure() {
    let f = Fixture::new("");
    let runs = f.path("runs");
    let h = script(
        &f,
        "h.sh",
        &format!("echo run >> '{}'; sleep 30", runs.display()),
    );
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("grace_period = \"5s\"", "grace_period = \"300ms\"")
        .replace("attempts = 3", "attempts = 1")
        + &format!("handler = [\"{}\"]\n", h.display());
    std::fs::write(&f.config, text).unwrap();
    f.put("a.csv", b"alpha");
    for n in 1..=3 {
        let mut d = f.spawn_run();
        wait_for(
            std::time::Duration::from_secs(10),
            "the handler to start",
            || std::fs::read_to_string(&runs).is_ok_and(|t| t.lines().count() == n),
        );
        d.signal(libc::SIGTERM);
        assert_eq!(d.wait(std::time::Duration::from_secs(10)), Some(0));
    }
    let rows = f.files(None);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["state"], "downloaded", "{rows:?}");
    assert_eq!(rows[0]["failures"], 0, "stops are not failures: {rows:?}");
    assert_eq!(rows[0]["attempts"], 3, "each start is an attempt: {rows:?}");
}

/// The temporary name stays linked to the delivered file until `delivered`
/// is committed: after a crash in between, it proves the delivery even
/// when the consumer has already moved the file away.
#[test]
fn the_receipt_proves_a_delivery_the_consumer_already_took() {
    let f = Fixture::new("");
    f.put("a.csv", b"alpha");
    f.put("big.bin", &vec![3u8; 200_000]);
    f.once(0);
    let taken = f.path("taken");
    std::fs::create_dir_all(&taken).unwrap();
    for row in f.files(Some("done")) {
        let name = row["path"].as_str().unwrap();
        let temp = part_of(&f.outbox, &row);
        std::fs::hard_link(f.outbox.join(name), &temp).unwrap();
        std::fs::rename(f.outbox.join(name), taken.join(name)).unwrap();
    }
    sql(
        &f,
        "UPDATE files SET state = 'downloaded', delivered_at_ms = NULL, done_at_ms = NULL",
    );
    f.once(0);
    assert!(
        names(&f.outbox).is_empty(),
        "delivered twice: {:?}",
        names(&f.outbox)
    );
    assert_eq!(f.files(Some("done")).len(), 2);
}

#[test]
fn leftover_receipts_of_delivered_files_are_removed_at_start() {
    let f = Fixture::new("");
    f.put("a.csv", b"alpha");
    f.once(0);
    let temp = part_of(&f.outbox, &f.files(Some("done"))[0]);
    std::fs::hard_link(f.outbox.join("a.csv"), &temp).unwrap();
    let other = f.outbox.join(part_name("b.csv", 999, 1, 1));
    std::fs::write(&other, b"x").unwrap();
    f.once(0);
    assert!(
        !temp.exists() && !other.exists(),
        "{:?}",
        std::fs::read_dir(&f.outbox)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read(f.outbox.join("a.csv")).unwrap(), b"alpha");
}
