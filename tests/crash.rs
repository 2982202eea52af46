//! Promise 1 and 2 under fire: the real binary is killed with SIGKILL at
//! random moments while files arrive and are delivered, then restarted.
//! Every file must reach the consumer exactly once, whole, and nothing
//! temporary may be left visible.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Writes a file into the inbox atomically (hidden name, then rename), as a
/// well-behaved producer does; the rule excludes hidden names.
fn produce(f: &Fixture, name: &str, data: &[u8]) {
    let tmp = f.inbox.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, f.inbox.join(name)).unwrap();
}

/// Takes every visible file out of `outbox` by atomic rename, the way a
/// downstream system would, and records each taking.
fn consume(outbox: &Path, taken_dir: &Path, taken: &Mutex<Vec<(String, Vec<u8>)>>) {
    let Ok(rd) = std::fs::read_dir(outbox) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let mut list = taken.lock().unwrap();
        let dest = taken_dir.join(format!("{}", list.len()));
        if std::fs::rename(e.path(), &dest).is_ok() {
            let data = std::fs::read(&dest).unwrap();
            list.push((name, data));
        }
    }
}

/// Distinct content per file without generating every byte: the name, then a
/// random 64 KiB block repeated with a running counter mixed in.
fn content(name: &str, len: usize) -> Vec<u8> {
    let block: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
        .take(64 * 1024)
        .collect();
    let mut data = name.as_bytes().to_vec();
    let mut n: u8 = 0;
    while data.len() < len {
        data.extend(block.iter().map(|b| b ^ n));
        n = n.wrapping_add(1);
    }
    data.truncate(len);
    data
}

fn partials(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".ferry-part"))
        .collect()
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_delivers_each_file_once() {
    // Half small enough for the engine's batches, half streamed.
    kill_and_restart(25, 6, |i| {
        if i % 2 == 0 {
            fastrand::usize(0..48 * 1024)
        } else {
            fastrand::usize(16 * 1024..6 * 1024 * 1024)
        }
    });
}

/// Many small files per round: the kills land inside batches, where many
/// files share commits, fsyncs and directory fsyncs.
#[test]
fn sigkill_inside_batches_of_small_files_loses_nothing_and_delivers_each_once() {
    kill_and_restart(15, 150, |_| fastrand::usize(0..16 * 1024));
}

/// Produces `per_round` files (of `len(i)` bytes) per round, kills a
/// running ferry `kills` times at random moments, then lets it finish and
/// checks that each file reached the consumer exactly once, whole.
fn kill_and_restart(kills: usize, per_round: usize, len: impl Fn(usize) -> usize) {
    let f = Fixture::new(&format!(
        "exclude = [\".*\"]\nmove_to = \"{}\"",
        "@@archive@@"
    ));
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("@@archive@@", &f.path("archive").display().to_string())
        .replace("interval = \"200ms\"", "interval = \"30ms\"");
    std::fs::write(&f.config, text).unwrap();
    std::fs::create_dir_all(&f.outbox).unwrap();
    let taken_dir = f.path("taken");
    std::fs::create_dir_all(&taken_dir).unwrap();

    let taken = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (outbox, taken_dir, taken, stop) = (
            f.outbox.clone(),
            taken_dir.clone(),
            taken.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                consume(&outbox, &taken_dir, &taken);
                std::thread::sleep(Duration::from_millis(3));
            }
            consume(&outbox, &taken_dir, &taken);
        })
    };

    let mut expected: HashMap<String, Vec<u8>> = HashMap::new();
    let mut interrupted = 0;
    for round in 0..kills {
        for i in 0..per_round {
            let name = format!("f{round:02}-{i:03}.bin");
            let data = content(&name, len(i));
            produce(&f, &name, &data);
            expected.insert(name, data);
        }
        let mut d = f.spawn_run();
        if round % 2 == 0 {
            // Aim at the middle of the pipeline: just after a transfer starts.
            wait_for(Duration::from_secs(10), "a transfer to start", || {
                d.log().contains("downloading")
            });
            std::thread::sleep(Duration::from_millis(fastrand::u64(0..8)));
        } else {
            std::thread::sleep(Duration::from_millis(fastrand::u64(20..450)));
        }
        d.kill9();
        let mid_way = f
            .files(None)
            .iter()
            .filter(|r| {
                matches!(
                    r["state"].as_str(),
                    Some("downloading" | "downloaded" | "delivered")
                )
            })
            .count();
        if mid_way > 0 || !partials(&f.outbox).is_empty() {
            interrupted += 1;
        }
    }

    // Restart for good and let it finish.
    let mut d = f.spawn_run();
    wait_for(Duration::from_secs(120), "every file to be done", || {
        let rows = f.files(None);
        rows.len() == expected.len() && rows.iter().all(|r| r["state"] == "done")
    });
    std::thread::sleep(Duration::from_millis(500));
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
    stop.store(true, Ordering::Relaxed);
    consumer.join().unwrap();

    eprintln!("{kills} kills, {interrupted} left work half-way");
    assert!(
        interrupted > 0,
        "no kill interrupted any work: the test proved nothing"
    );
    let taken = taken.lock().unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (name, data) in taken.iter() {
        *counts.entry(name).or_default() += 1;
        let want = expected
            .get(name)
            .unwrap_or_else(|| panic!("unexpected file {name}"));
        assert!(
            data == want,
            "{name} delivered with wrong content ({} bytes, want {})",
            data.len(),
            want.len()
        );
    }
    for name in expected.keys() {
        assert_eq!(
            counts.get(name.as_str()).copied(),
            Some(1),
            "{name} delivered {:?} times",
            counts.get(name.as_str())
        );
    }
    assert!(
        partials(&f.outbox).is_empty(),
        "left behind: {:?}",
        partials(&f.outbox)
    );
    assert!(
        names(&f.outbox).is_empty(),
        "unexpected files in outbox: {:?}",
        names(&f.outbox)
    );
    let mut archived = names(&f.path("archive"));
    let mut want: Vec<String> = expected.keys().cloned().collect();
    archived.sort();
    want.sort();
    assert_eq!(archived, want, "every source archived once, never twice");
}
