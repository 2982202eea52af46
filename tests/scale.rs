//! Polls over more files than one chunk of due rows: every file is taken
//! once, and rows a chunk leaves due (waiting for a marker) neither stop
//! the later chunks nor are fetched again in the same poll.

mod common;

use common::*;

/// More than two chunks of due rows (the engine takes 1024 at a time).
const FILES: usize = 2600;

fn body(i: usize) -> Vec<u8> {
    // Every 97th file is too big for a batch and goes on its own.
    let len = if i.is_multiple_of(97) {
        70_000
    } else {
        10 + i % 50
    };
    (0..len).map(|n| (n + i) as u8).collect()
}

#[test]
fn a_first_pass_over_several_chunks_delivers_every_file_once() {
    let f = Fixture::new("");
    for i in 0..FILES {
        f.put(&format!("f{i:05}.dat"), &body(i));
    }
    f.once(0);
    let out = names(&f.outbox);
    assert_eq!(out.len(), FILES, "one delivered name per file");
    for i in 0..FILES {
        let got = std::fs::read(f.outbox.join(format!("f{i:05}.dat"))).unwrap();
        assert_eq!(got, body(i), "f{i:05}.dat");
    }
    assert_eq!(f.files(Some("done")).len(), FILES);
    // Unchanged: nothing is due, nothing is delivered again.
    f.once(0);
    assert_eq!(names(&f.outbox).len(), FILES);
}

#[test]
fn rows_a_chunk_leaves_due_do_not_stop_the_later_chunks() {
    let f = Fixture::new("ready_marker = \"{name}.ok\"");
    for i in 0..FILES {
        f.put(&format!("f{i:05}.dat"), &body(i));
    }
    // Only the files past the first two chunks are ready.
    let ready = 2100..FILES;
    for i in ready.clone() {
        f.put(&format!("f{i:05}.dat.ok"), b"");
    }
    f.once(0);
    assert_eq!(names(&f.outbox).len(), ready.len());
    for i in ready {
        let got = std::fs::read(f.outbox.join(format!("f{i:05}.dat"))).unwrap();
        assert_eq!(got, body(i));
    }
    assert_eq!(f.files(Some("seen")).len(), 2100, "the rest wait");
    for i in 0..2100 {
        f.put(&format!("f{i:05}.dat.ok"), b"");
    }
    f.once(0);
    assert_eq!(names(&f.outbox).len(), FILES);
    assert_eq!(f.files(Some("done")).len(), FILES);
}

/// A listing of several transport batches (1,024 local entries each) and
/// several diff chunks: files added, changed and removed among thousands
/// are exactly what the next poll records, and an unchanged directory
/// records nothing.
#[test]
fn changes_among_thousands_of_files_are_recorded_and_nothing_else() {
    const MANY: usize = 6000;
    let f = Fixture::new("");
    for i in 0..MANY {
        f.put(&format!("g{i:05}.dat"), &body(i));
    }
    f.once(0);
    assert_eq!(f.files(Some("done")).len(), MANY);
    for i in [1000, 3000, 5000] {
        std::fs::remove_file(f.inbox.join(format!("g{i:05}.dat"))).unwrap();
        f.put(&format!("h{i:05}.dat"), &body(i));
    }
    f.put("g04000.dat", b"a new version");
    let log = f.once(0);
    let seen: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("state=\"seen\"") || l.contains("state=seen"))
        .collect();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    assert_eq!(f.files(Some("done")).len(), MANY + 4);
    assert_eq!(
        std::fs::read(f.outbox.join("h03000.dat")).unwrap(),
        body(3000)
    );
    let log = f.once(0);
    assert!(
        !log.contains("state=\"seen\"") && !log.contains("state=seen"),
        "{log}"
    );
}
