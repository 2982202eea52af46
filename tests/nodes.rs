//! Several hosts on one PostgreSQL state database: three real `ferry run`
//! processes against one real sshd and one shared `local_dir`. Killed
//! (SIGKILL) mid-batch and mid-download, or stopped (SIGSTOP) while they
//! hold claims, the nodes still deliver every file exactly once, whole,
//! and a node that wakes after its files were taken over delivers none
//! of them again.

mod common;

use common::postgres::{PG_PASSWORD, Postgres};
use common::sshd::{self, PASSWORD, Sshd, USER};
use common::throttle::Throttle;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A short lease, so that takeovers happen within the test's patience.
const LEASE: &str = "3s";
const BIG: usize = 24 * 1024 * 1024;

struct Cluster {
    dir: tempfile::TempDir,
    pg: Postgres,
    sshd: Sshd,
    remote: PathBuf,
    outbox: PathBuf,
    /// Name -> content of every file put on the server.
    files: BTreeMap<String, Vec<u8>>,
    throttles: Vec<Throttle>,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let pg = Postgres::start(dir.path().join("pg"), false);
        pg.create_database("ferry");
        std::fs::write(dir.path().join("pg.pw"), PG_PASSWORD).unwrap();
        let sshd = Sshd::start(Default::default(), &[]);
        let remote = dir.path().join("remote");
        sshd::shared_dir(&remote.join("inbox"));
        sshd::shared_dir(&remote.join("archive"));
        let outbox = dir.path().join("outbox");
        std::fs::create_dir_all(&outbox).unwrap();
        std::fs::write(dir.path().join("pw"), PASSWORD).unwrap();
        Cluster {
            dir,
            pg,
            sshd,
            remote,
            outbox,
            files: BTreeMap::new(),
            throttles: Vec::new(),
        }
    }

    fn put(&mut self, name: &str, data: Vec<u8>) {
        std::fs::write(self.remote.join("inbox").join(name), &data).unwrap();
        self.files.insert(name.to_string(), data);
    }

    /// Small files (batches) and a few large ones (streamed, long enough
    /// at the throttled rate to be killed mid-download).
    fn put_mix(&mut self, small: usize, big: usize) {
        for i in 0..small {
            let len = 1024 + fastrand::usize(0..5 * 1024);
            self.put(&format!("s{i:04}.dat"), pattern(len, i as u8));
        }
        for i in 0..big {
            self.put(&format!("big{i}.bin"), pattern(BIG + i, 200 + i as u8));
        }
    }

    /// The config of node `name`, reaching sshd through a relay of its
    /// own that passes `rate` bytes per second.
    fn config(&mut self, name: &str, rate: u64) -> PathBuf {
        self.config_polling(name, rate, "300ms")
    }

    /// [`Cluster::config`] with the rule polling every `interval`.
    fn config_polling(&mut self, name: &str, rate: u64, interval: &str) -> PathBuf {
        let relay = Throttle::start(self.sshd.port, rate);
        let port = relay.port;
        self.throttles.push(relay);
        let path = self.dir.path().join(format!("{name}.toml"));
        let state_lines = format!(
            "state = \"{}\"\nstate_password = {{ file = \"{}\" }}",
            self.pg.url("ferry"),
            self.dir.path().join("pg.pw").display()
        );
        let text = format!(
            "[daemon]\n{state}\nnode = \"{name}\"\nlease = \"{LEASE}\"\nmax_transfers = 4\ngrace_period = \"2s\"\n\
             spool_dir = \"{spool}\"\n\n\
             [servers.s]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{USER}\"\n\
             password = {{ file = \"{pw}\" }}\nhost_key = \"{hk}\"\nmax_sessions = 2\nio_timeout = \"30s\"\n\n\
             [[watch]]\nname = \"r\"\nserver = \"s\"\nremote_dir = \"{inbox}\"\nlocal_dir = \"{out}\"\n\
             stable_for = \"0s\"\ninterval = \"{interval}\"\nmove_to = \"{archive}\"\n\
             retry = {{ attempts = 10, first = \"0s\", max = \"1s\" }}\n",
            state = state_lines,
            spool = self.dir.path().join(format!("spool-{name}")).display(),
            pw = self.dir.path().join("pw").display(),
            hk = self.sshd.host_key_fingerprint,
            inbox = self.remote.join("inbox").display(),
            out = self.outbox.display(),
            archive = self.remote.join("archive").display(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn sql(&self, query: &str) -> String {
        self.pg.psql_in("ferry", query)
    }

    fn count(&self, query: &str) -> usize {
        self.sql(query).trim().parse().unwrap_or(0)
    }

    fn done(&self) -> usize {
        self.count("SELECT count(*) FROM files WHERE state = 'done'")
    }

    /// Waits until every file is `done`, failing with the nodes' logs.
    fn wait_all_done(&self, nodes: &[&Node], within: Duration) {
        let deadline = Instant::now() + within;
        while self.done() < self.files.len() {
            if Instant::now() > deadline {
                let logs: Vec<String> = nodes.iter().map(|n| n.tail()).collect();
                panic!(
                    "{} of {} files done after {within:?}; rows:\n{}\nlogs:\n{}",
                    self.done(),
                    self.files.len(),
                    self.sql("SELECT state, owner, count(*) FROM files GROUP BY 1, 2"),
                    logs.join("\n----\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Exactly once, whole, nothing temporary: the shared `local_dir`
    /// holds each file under its own name (a second delivery would add a
    /// `name.TIMESTAMP.ext` beside it), byte for byte.
    fn assert_delivered_once(&self) {
        let got = names(&self.outbox);
        let want: Vec<String> = self.files.keys().cloned().collect();
        let extra: Vec<&String> = got
            .iter()
            .filter(|n| !self.files.contains_key(*n))
            .collect();
        let missing: Vec<&String> = want.iter().filter(|n| !got.contains(n)).collect();
        assert!(
            extra.is_empty(),
            "extra names (partial or twice delivered): {extra:?}"
        );
        assert!(missing.is_empty(), "not delivered: {missing:?}");
        for (name, data) in &self.files {
            let on_disk = std::fs::read(self.outbox.join(name)).unwrap();
            assert!(
                on_disk == *data,
                "{name} differs from the source ({} vs {} bytes)",
                on_disk.len(),
                data.len()
            );
        }
        assert!(
            names(&self.remote.join("inbox")).is_empty(),
            "left on the server"
        );
    }

    /// The node that owns the row of `path` now.
    fn owner(&self, path: &str) -> String {
        self.sql(&format!(
            "SELECT owner FROM files WHERE path = '{path}' AND lease_until_ms IS NOT NULL"
        ))
        .trim()
        .to_string()
    }
}

/// A `ferry run` of one node, killed by its PID when dropped.
struct Node {
    name: String,
    proc: Proc,
}

impl Node {
    fn start(config: &Path, name: &str) -> Node {
        Self::start_logging(config, name, "info")
    }

    fn start_logging(config: &Path, name: &str, filter: &str) -> Node {
        let log = config.with_extension("log");
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "-c"]).arg(config).env("RUST_LOG", filter);
        Node {
            name: name.to_string(),
            proc: Proc::spawn(cmd, &log),
        }
    }

    fn log(&self) -> String {
        self.proc.stderr()
    }

    fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "[{}]\n{}",
            self.name,
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// Waits until `node` holds a large file half downloaded (its partial
/// file in the outbox, its row claimed by it): the moment the fault tests
/// stop or kill it.
fn wait_mid_download(c: &Cluster, node: &str) {
    wait_for(
        Duration::from_secs(60),
        &format!("{node} holding a large file half downloaded"),
        || partial_big(&c.outbox).is_some_and(|p| c.owner(&p) == node),
    );
}

/// A `.ferry-part` of a large file that holds some but not all of it.
fn partial_big(outbox: &Path) -> Option<String> {
    names(outbox).into_iter().find_map(|n| {
        let len = std::fs::metadata(outbox.join(&n)).map_or(0, |m| m.len()) as usize;
        let big = n.starts_with(".big") && n.ends_with(".ferry-part");
        let path = n
            .trim_start_matches('.')
            .split(".ferry")
            .next()?
            .rsplit_once('.')?
            .0
            .to_string();
        (big && len > 0 && len < BIG).then_some(path)
    })
}

#[test]
fn three_nodes_killed_mid_batch_and_mid_download_deliver_every_file_once() {
    let mut c = Cluster::new();
    c.put_mix(400, 3);
    let rate = 12 * 1024 * 1024;
    let configs: Vec<PathBuf> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| c.config(n, rate))
        .collect();
    let mut nodes: Vec<Option<Node>> = ["n1", "n2", "n3"]
        .iter()
        .zip(&configs)
        .map(|(n, cfg)| Some(Node::start(cfg, n)))
        .collect();

    // Mid-batch: small files are arriving in the shared directory.
    wait_for(Duration::from_secs(60), "the first deliveries", || {
        names(&c.outbox).len() >= 20
    });
    let first = nodes
        .iter()
        .position(|n| {
            n.as_ref().is_some_and(|n| {
                n.log().contains("state=\"delivered\"") || n.log().contains("state=delivered")
            })
        })
        .unwrap_or(0);
    let mut killed = nodes[first].take().unwrap();
    killed.proc.kill();
    let killed_name = killed.name.clone();

    // Mid-download: a large file partly on disk, owned by a live node.
    let mut second = None;
    wait_for(
        Duration::from_secs(90),
        "a large download in progress on a live node",
        || {
            let Some(path) = partial_big(&c.outbox) else {
                return false;
            };
            let owner = c.owner(&path);
            second = nodes
                .iter()
                .position(|n| n.as_ref().is_some_and(|n| n.name == owner));
            second.is_some()
        },
    );
    let mut victim = nodes[second.unwrap()].take().unwrap();
    victim.proc.kill();

    let survivors: Vec<&Node> = nodes.iter().flatten().collect();
    assert_eq!(
        survivors.len(),
        1,
        "{killed_name} and {} killed",
        victim.name
    );
    c.wait_all_done(&survivors, Duration::from_secs(180));
    c.assert_delivered_once();
    assert!(partials(&c.outbox).is_empty());
}

#[test]
fn a_stopped_node_loses_its_files_and_delivers_none_of_them_when_it_wakes() {
    let mut c = Cluster::new();
    c.put_mix(150, 2);
    // n1 is slow, so it is mid-download when stopped; n2 is fast.
    let slow = c.config("n1", 4 * 1024 * 1024);
    let fast = c.config("n2", 64 * 1024 * 1024);
    let n1 = Node::start(&slow, "n1");
    wait_mid_download(&c, "n1");
    let held = c.count("SELECT count(*) FROM files WHERE owner = 'n1' AND lease_until_ms IS NOT NULL AND state <> 'done'");
    assert!(held > 0, "n1 holds no claims");
    n1.proc.signal(libc::SIGSTOP);
    let n2 = Node::start(&fast, "n2");

    c.wait_all_done(&[&n2], Duration::from_secs(120));
    assert!(
        c.count("SELECT count(*) FROM files WHERE owner = 'n2'") >= held,
        "n2 did not take n1's files over"
    );
    n1.proc.signal(libc::SIGCONT);
    // Long enough for n1 to renew, find its files gone and try its next steps.
    std::thread::sleep(Duration::from_secs(6));
    let log = n1.log();
    assert!(
        log.contains("lost"),
        "n1 does not say it lost its files:\n{}",
        n1.tail()
    );
    c.assert_delivered_once();
    assert!(partials(&c.outbox).is_empty());
    assert_eq!(c.done(), c.files.len());
}

#[test]
fn a_dead_nodes_files_are_taken_over_about_a_lease_later_not_at_the_next_poll() {
    let mut c = Cluster::new();
    c.put_mix(40, 2);
    // Polls a minute apart: a survivor that waited for its next poll
    // would take the files over a minute later, not a few seconds.
    let slow = c.config_polling("n1", 1024 * 1024, "60s");
    let fast = c.config_polling("n2", 64 * 1024 * 1024, "60s");
    let n1 = Node::start(&slow, "n1");
    wait_mid_download(&c, "n1");
    let n2 = Node::start_logging(&fast, "n2", "info,ferry::daemon::scheduler=debug");
    wait_for(Duration::from_secs(30), "n2's first poll", || {
        n2.log().contains("poll starts")
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(c.done() < c.files.len(), "n1 finished before it was killed");
    let mut n1 = n1;
    n1.proc.kill();
    let killed = Instant::now();

    c.wait_all_done(&[&n2], Duration::from_secs(50));
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "took {took:?} with a {LEASE} lease; n2:\n{}",
        n2.tail()
    );
    assert!(n2.log().contains("taking them over"), "{}", n2.tail());
    c.assert_delivered_once();
    assert!(partials(&c.outbox).is_empty());
}

/// The survivor is busy: as the lister, its poll walks a large backlog
/// forward by id, already past the rows the dead node held (claimed by
/// then, so skipped). Its renewal finds those leases run out and its poll
/// goes back for them after its current chunk, instead of leaving them
/// until the whole backlog is done.
#[test]
fn a_busy_survivor_takes_a_dead_nodes_files_before_its_own_backlog_ends() {
    let mut c = Cluster::new();
    for i in 0..2000 {
        c.put(&format!("f{i:05}.dat"), pattern(2048, i as u8));
    }
    // n2 lists and works through the backlog, a chunk of 256 rows in
    // about 4 s; n1 claims a chunk too, which takes it about 30 s.
    let busy = c.config("n2", 128 * 1024);
    let slow = c.config("n1", 16 * 1024);
    let holding = |node: &str| {
        c.count(&format!(
            "SELECT count(*) FROM files WHERE owner = '{node}' AND lease_until_ms IS NOT NULL AND state <> 'done'"
        ))
    };
    let n2 = Node::start_logging(&busy, "n2", "info,ferry::engine=debug");
    wait_for(Duration::from_secs(60), "n2's schema", || {
        c.count("SELECT count(*) FROM information_schema.columns WHERE table_name = 'files' AND column_name IN ('owner', 'lease_until_ms')") == 2
    });
    wait_for(
        Duration::from_secs(60),
        "n2 holding its first chunk",
        || holding("n2") >= 200,
    );
    let n1 = Node::start(&slow, "n1");
    wait_for(Duration::from_secs(60), "n1 holding a chunk", || {
        holding("n1") >= 200
    });
    wait_for(Duration::from_secs(60), "n2 working past n1's rows", || {
        c.count("SELECT count(*) FROM files WHERE owner = 'n2' AND state = 'done'") >= 300
    });
    let mut n1 = n1;
    n1.proc.kill();
    let killed = Instant::now();
    let held = c.sql(
        "SELECT string_agg(id::text, ',') FROM files WHERE owner = 'n1' AND lease_until_ms IS NOT NULL AND state <> 'done'",
    );
    let held = held.trim().to_string();
    assert!(!held.is_empty(), "n1 held nothing when it was killed");
    let pending = |ids: &str| {
        c.count(&format!(
            "SELECT count(*) FROM files WHERE id IN ({ids}) AND state <> 'done'"
        ))
    };
    let backlog = c.files.len() - c.done() - pending(&held);
    wait_for(Duration::from_secs(120), "n1's files taken over", || {
        pending(&held) == 0
    });
    let took = killed.elapsed();
    let left = c.files.len() - c.done();
    eprintln!(
        "n1's files done {took:?} after the kill; {left} of n2's backlog of {backlog} still to do"
    );
    // Without the rewind they would come last, with nothing left.
    assert!(
        left * 5 >= backlog,
        "n1's files waited for most of the backlog ({left} of {backlog} left, {took:?}); n2:\n{}",
        n2.tail()
    );
    assert!(
        n2.log().contains("back to the first due row"),
        "{}",
        n2.tail()
    );
    c.wait_all_done(&[&n2], Duration::from_secs(180));
    c.assert_delivered_once();
    assert!(partials(&c.outbox).is_empty());
}

fn partials(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".ferry-part"))
        .collect()
}

/// A partner replaces a file (a new version, renamed over the old one)
/// while a node downloads the old version, and that node stops (SIGSTOP)
/// before it is done. The survivor takes the rule over and finds the new
/// version: it delivers that one, once, and archives it; the stopped node,
/// woken, delivers nothing. (While the first node's lease runs, a listing
/// leaves its row alone: `a_listing_leaves_a_changed_file_to_the_node_
/// fetching_it` in `state/claims.rs`.)
#[test]
fn a_file_replaced_while_a_node_fetches_it_then_stops_is_delivered_in_its_new_version() {
    let mut c = Cluster::new();
    let old = pattern(BIG, 31);
    let new = pattern(BIG + 4096, 32);
    c.put("big0.bin", old.clone());
    let slow = c.config("n1", 2 * 1024 * 1024);
    let fast = c.config("n2", 64 * 1024 * 1024);
    let n1 = Node::start(&slow, "n1");
    wait_mid_download(&c, "n1");
    // Renamed over the old one, as a careful partner uploads.
    let staged = c.remote.join("big0.bin.upload");
    std::fs::write(&staged, &new).unwrap();
    std::fs::rename(&staged, c.remote.join("inbox/big0.bin")).unwrap();
    n1.proc.signal(libc::SIGSTOP);
    let n2 = Node::start(&fast, "n2");

    let archive = c.remote.join("archive");
    let archived = || {
        names(&archive)
            .iter()
            .any(|n| std::fs::read(archive.join(n)).ok().as_ref() == Some(&new))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(archived() && names(&c.remote.join("inbox")).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the new version was not delivered and archived; inbox {:?}, archive {:?}; rows:\n{}\nn2:\n{}",
            names(&c.remote.join("inbox")),
            names(&archive),
            c.sql("SELECT id, state, size, owner FROM files ORDER BY id"),
            n2.tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    n1.proc.signal(libc::SIGCONT);
    // Long enough for n1 to renew, find its file gone and try its next steps.
    std::thread::sleep(Duration::from_secs(6));
    let delivered: Vec<Vec<u8>> = names(&c.outbox)
        .iter()
        .map(|n| std::fs::read(c.outbox.join(n)).unwrap())
        .collect();
    let of = |v: &Vec<u8>| delivered.iter().filter(|d| *d == v).count();
    assert_eq!(
        (of(&new), of(&old), delivered.len()),
        (1, 0, 1),
        "the new version once and nothing else: {:?}\nn1:\n{}",
        names(&c.outbox),
        n1.tail()
    );
    assert_eq!(
        c.count("SELECT count(*) FROM files WHERE state = 'failed'"),
        0,
        "{}",
        c.sql("SELECT id, state, size, last_error FROM files")
    );
}
