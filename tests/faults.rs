//! Fault campaigns: the real binary under SIGKILL, a full disk and a
//! failing handler, each printing what a gateway team counts (lost,
//! duplicated, partial, overwritten), all of which must be 0.
//!
//! `./test.sh` runs the short versions; `faults/run` runs the long ones
//! (`FERRY_FAULTS=long`): 120 kills, a disk full for three minutes.

mod common;

use common::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a campaign counts. Every field must be 0.
#[derive(Debug, Default)]
struct Tally {
    lost: usize,
    duplicated: usize,
    partial: usize,
    overwritten: usize,
}

impl Tally {
    fn report_and_check(&self, campaign: &str, extra: &str) {
        eprintln!(
            "{campaign}: lost {} duplicated {} partial {} overwritten {} ({extra})",
            self.lost, self.duplicated, self.partial, self.overwritten
        );
        assert_eq!(
            (self.lost, self.duplicated, self.partial, self.overwritten),
            (0, 0, 0, 0),
            "{campaign}: {self:?}"
        );
    }
}

/// File contents that say which produced version they are: `id NNNNNN\n`,
/// then bytes derived from the id, so a wrong or cut file is recognised.
fn content(id: usize, len: usize) -> Vec<u8> {
    let mut data = format!("id {id:06}\n").into_bytes();
    let mut x = id as u32 ^ 0x9e37_79b9;
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len.max(10));
    data
}

fn id_of(data: &[u8]) -> Option<usize> {
    let head = std::str::from_utf8(data.get(..10)?).ok()?;
    head.strip_prefix("id ")?.trim_end().parse().ok()
}

/// Writes a file into the inbox atomically, as a well-behaved producer does.
fn produce(inbox: &Path, name: &str, data: &[u8]) {
    let tmp = inbox.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, inbox.join(name)).unwrap();
}

/// A downstream system that takes files out of the outbox now and then,
/// so that an unread file often sits there when its name comes again. It
/// remembers which version it last saw under each name: a name that shows
/// another version before it was taken was overwritten.
struct Consumer {
    stop: Arc<AtomicBool>,
    taken: Arc<Mutex<Vec<Vec<u8>>>>,
    overwritten: Arc<Mutex<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Consumer {
    fn start(outbox: PathBuf, taken_dir: PathBuf, every: Duration) -> Self {
        std::fs::create_dir_all(&taken_dir).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let taken = Arc::new(Mutex::new(Vec::new()));
        let overwritten = Arc::new(Mutex::new(0));
        let thread = {
            let (stop, taken, overwritten) = (stop.clone(), taken.clone(), overwritten.clone());
            std::thread::spawn(move || {
                let mut seen: HashMap<String, usize> = HashMap::new();
                let mut n = 0;
                loop {
                    let last = stop.load(Ordering::Relaxed);
                    for name in names(&outbox) {
                        if name.starts_with('.') {
                            continue;
                        }
                        let p = outbox.join(&name);
                        let Ok(data) = std::fs::read(&p) else {
                            continue;
                        };
                        if let Some(id) = id_of(&data)
                            && let Some(before) = seen.insert(name.clone(), id)
                            && before != id
                        {
                            *overwritten.lock().unwrap() += 1;
                        }
                        // Take about one file in three per scan, all at the end.
                        if last || fastrand::u8(..3) == 0 {
                            let dest = taken_dir.join(n.to_string());
                            n += 1;
                            if std::fs::rename(&p, &dest).is_ok() {
                                seen.remove(&name);
                                taken.lock().unwrap().push(std::fs::read(&dest).unwrap());
                            }
                        }
                    }
                    if last {
                        break;
                    }
                    std::thread::sleep(every);
                }
            })
        };
        Self {
            stop,
            taken,
            overwritten,
            thread: Some(thread),
        }
    }

    /// Takes everything left and counts against `expected` (id -> content).
    fn finish(mut self, expected: &BTreeMap<usize, Vec<u8>>, outbox: &Path) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let mut t = Tally {
            overwritten: *self.overwritten.lock().unwrap(),
            ..Tally::default()
        };
        let mut delivered: HashMap<usize, usize> = HashMap::new();
        for data in self.taken.lock().unwrap().iter() {
            match id_of(data) {
                Some(id) if expected.get(&id) == Some(data) => {
                    *delivered.entry(id).or_default() += 1
                }
                _ => t.partial += 1,
            }
        }
        t.lost = expected
            .keys()
            .filter(|id| !delivered.contains_key(id))
            .count();
        t.duplicated = delivered.values().map(|n| n - 1).sum();
        t.partial += names(outbox)
            .iter()
            .filter(|n| n.ends_with(".ferry-part"))
            .count();
        t
    }
}

/// Ferry's rule over the fixture with a faster interval and `extra` lines.
fn configure(f: &Fixture, extra: &str) {
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("interval = \"200ms\"", "interval = \"50ms\"")
        + extra;
    std::fs::write(&f.config, text).unwrap();
}

fn all_done(f: &Fixture, produced: usize) -> bool {
    let rows = f.files(None);
    rows.len() == produced && rows.iter().all(|r| r["state"] == "done")
}

#[test]
fn sigkill_campaign_with_names_sent_again() {
    let kills = if long_faults() { 120 } else { 20 };
    let f = Fixture::new("exclude = [\".*\"]");
    configure(
        &f,
        &format!("move_to = \"{}\"\n", f.path("archive").display()),
    );
    std::fs::create_dir_all(&f.outbox).unwrap();
    let consumer = Consumer::start(f.outbox.clone(), f.path("taken"), Duration::from_millis(40));
    let mut expected = BTreeMap::new();
    let mut interrupted = 0;
    for round in 0..kills {
        // Twelve names, sent again whenever the previous file of that name
        // has left the inbox: small ones for batches, large ones streamed.
        for slot in 0..12 {
            let name = format!("n{slot:02}.bin");
            if f.inbox.join(&name).exists() {
                continue;
            }
            let id = expected.len();
            let len = if slot % 3 == 0 {
                fastrand::usize(64 * 1024..3 * 1024 * 1024)
            } else {
                fastrand::usize(10..40 * 1024)
            };
            let data = content(id, len);
            produce(&f.inbox, &name, &data);
            expected.insert(id, data);
        }
        let mut d = f.spawn_run();
        if round % 2 == 0 {
            wait_for(Duration::from_secs(10), "a transfer to start", || {
                d.log().contains("downloading")
            });
            std::thread::sleep(Duration::from_millis(fastrand::u64(0..30)));
        } else {
            std::thread::sleep(Duration::from_millis(fastrand::u64(30..400)));
        }
        d.kill9();
        let mid_way = f.files(None).iter().any(|r| {
            matches!(
                r["state"].as_str(),
                Some("downloading" | "downloaded" | "delivered")
            )
        });
        interrupted += usize::from(mid_way);
    }
    let mut d = f.spawn_run();
    wait_for(Duration::from_secs(180), "every file to be done", || {
        all_done(&f, expected.len())
    });
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
    let tally = consumer.finish(&expected, &f.outbox);
    tally.report_and_check(
        "sigkill",
        &format!(
            "{kills} kills, {interrupted} mid-way, {} files",
            expected.len()
        ),
    );
    assert!(
        interrupted > 0,
        "no kill interrupted any work: the campaign proved nothing"
    );
}

/// A small tmpfs mounted over a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this campaign mounts a small tmpfs and must run as root (./test.sh under sudo, or faults/run as root)"
        );
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    /// Writes a filler file until the file system is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let p = self.0.join(".filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
        // The last partial block may still fit: fill byte by byte.
        while f.write_all(&[0]).is_ok() {}
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_campaign_fails_nothing_and_loses_nothing() {
    let outage = if long_faults() {
        Duration::from_secs(180)
    } else {
        Duration::from_secs(4)
    };
    let f = Fixture::new("exclude = [\".*\"]");
    configure(
        &f,
        &format!(
            "move_to = \"{}\"\nfailed_move_to = \"{}\"\n",
            f.path("archive").display(),
            f.path("failed").display()
        ),
    );
    // attempts = 3 with no backoff: without the local-storage hold, every
    // file would be failed within a second of the outage.
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("max = \"0s\"", "max = \"500ms\"");
    std::fs::write(&f.config, text).unwrap();
    let disk = Tmpfs::mount(&f.outbox, "16m");
    let filler = disk.fill();
    let mut expected = BTreeMap::new();
    for i in 0..30 {
        let len = if i % 5 == 0 {
            1024 * 1024 + i * 7
        } else {
            1000 + i * 300
        };
        let data = content(i, len);
        produce(&f.inbox, &format!("f{i:02}.bin"), &data);
        expected.insert(i, data);
    }
    let mut d = f.spawn_run();
    let started = Instant::now();
    let mut polls = 0;
    while started.elapsed() < outage {
        std::thread::sleep(Duration::from_millis(500));
        polls += 1;
        let rows = f.files(None);
        let failed = rows.iter().filter(|r| r["state"] == "failed").count();
        assert_eq!(failed, 0, "a full disk failed files: {rows:?}");
        let spent = rows
            .iter()
            .filter(|r| r["failures"].as_i64() != Some(0))
            .count();
        assert_eq!(spent, 0, "a full disk spent attempts: {rows:?}");
    }
    let rows = f.files(None);
    let held = rows.iter().filter(|r| r["held"] == "local-storage").count();
    assert!(
        held > 0,
        "no file shows the local storage trouble: {rows:?}"
    );
    assert!(
        rows.iter().any(|r| r["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left"))),
        "the error is visible: {rows:?}"
    );
    let status = f.ferry(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(text.contains("local storage trouble"), "{text}");
    assert!(
        names(&f.outbox).iter().all(|n| !n.ends_with(".ferry-part")),
        "temporary files of failed writes are discarded: {:?}",
        names(&f.outbox)
    );
    // The consumer takes files within the same file system (rename).
    let consumer = Consumer::start(
        f.outbox.clone(),
        f.outbox.join(".taken"),
        Duration::from_millis(30),
    );
    std::fs::remove_file(&filler).unwrap();
    wait_for(
        Duration::from_secs(60),
        "every file to be done after the disk is freed",
        || all_done(&f, expected.len()),
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(10)), Some(0));
    let tally = consumer.finish(&expected, &f.outbox);
    assert!(names(&f.path("failed")).is_empty());
    tally.report_and_check(
        "full disk",
        &format!(
            "outage {}s, {polls} checks, {held} files held",
            outage.as_secs()
        ),
    );
}

#[test]
fn failing_handler_campaign_retry_brings_every_file_back() {
    let n = if long_faults() { 200 } else { 40 };
    let f = Fixture::new("exclude = [\".*\"]");
    let up = f.path("backend-up");
    let ran = f.path("handled");
    std::fs::create_dir_all(&ran).unwrap();
    // The handler records each success under the file's id: a second
    // success for one id is a duplicate.
    let h = script(
        &f,
        "h.sh",
        &format!(
            "test -e '{up}' || {{ echo backend down >&2; exit 1; }}\nid=$(head -c 9 \"$1\" | cut -c4-)\ncp \"$1\" '{ran}'/$id.$FERRY_ATTEMPT",
            up = up.display(),
            ran = ran.display()
        ),
    );
    configure(
        &f,
        &format!(
            "move_to = \"{}\"\nfailed_move_to = \"{}\"\nhandler = [\"{}\", \"{{local_path}}\"]\n",
            f.path("archive").display(),
            f.path("failed").display(),
            h.display()
        ),
    );
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("attempts = 3", "attempts = 2");
    std::fs::write(&f.config, text).unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let data = content(i, 100 + (i * 997) % 200_000);
        produce(&f.inbox, &format!("h{i:03}.bin"), &data);
        expected.insert(i, data);
    }
    f.once(0);
    f.once(1);
    assert_eq!(f.files(Some("failed")).len(), n, "{:?}", f.files(None));
    assert_eq!(names(&f.path("failed")).len(), n);
    std::fs::write(&up, b"").unwrap();
    let out = f.ferry(&["retry", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.once(0);
    assert!(all_done(&f, n), "{:?}", f.files(None));
    let mut tally = Tally::default();
    let mut handled: HashMap<usize, usize> = HashMap::new();
    for name in names(&ran) {
        let id: usize = name.split('.').next().unwrap().parse().unwrap();
        *handled.entry(id).or_default() += 1;
        if Some(&std::fs::read(ran.join(&name)).unwrap()) != expected.get(&id) {
            tally.partial += 1;
        }
    }
    tally.lost = expected
        .keys()
        .filter(|id| !handled.contains_key(id))
        .count();
    tally.duplicated = handled.values().map(|c| c - 1).sum();
    let archived: HashSet<String> = names(&f.path("archive")).into_iter().collect();
    tally.lost += (0..n)
        .filter(|i| !archived.contains(&format!("h{i:03}.bin")))
        .count();
    assert!(
        names(&f.path("failed")).is_empty(),
        "{:?}",
        names(&f.path("failed"))
    );
    tally.report_and_check(
        "failing handler",
        &format!("{n} files failed, retried, all handled once"),
    );
}
