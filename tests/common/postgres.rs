//! A private PostgreSQL server for tests: `initdb` into a temp directory,
//! `postgres` on a free 127.0.0.1 port with its socket in that directory,
//! `fsync=off` (the data is thrown away). initdb refuses to run as root,
//! so as root the server runs as `nobody`. A role `ferry` logs in over TCP
//! with a password (scram-sha-256); the harness itself uses the socket as
//! the superuser `postgres`. Stopped by its PID on drop.
//!
//! Self-contained (std and libc only): the crate's own state tests include
//! this file too (`src/state/testing.rs`), so both start servers alike.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The role the tests' ferry logs in as, and its password.
pub const PG_USER: &str = "ferry";
pub const PG_PASSWORD: &str = "Ferry-pg-test-7310";

pub struct Postgres {
    pub port: u16,
    /// Holds the data directory, the socket and the server log.
    pub dir: PathBuf,
    bin: PathBuf,
    child: Child,
}

impl Postgres {
    /// Starts a fresh server. `die_with_thread`: the server gets SIGKILL
    /// when the thread that started it ends (for a server that lives as
    /// long as the test process, started from a thread that never ends).
    pub fn start(dir: PathBuf, die_with_thread: bool) -> Postgres {
        Self::start_with(dir, die_with_thread, None)
    }

    /// [`Postgres::start`] with TLS (`ssl=on`) from this certificate and
    /// key (PEM); clients may still connect without TLS.
    pub fn start_tls(dir: PathBuf, cert: &Path, key: &Path) -> Postgres {
        Self::start_with(dir, false, Some((cert, key)))
    }

    fn start_with(dir: PathBuf, die_with_thread: bool, tls: Option<(&Path, &Path)>) -> Postgres {
        let bin = bin_dir();
        let owner = unprivileged();
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((uid, gid)) = owner {
            chown(&dir, uid, gid);
        }
        let data = dir.join("data");
        let out = as_owner(Command::new(bin.join("initdb")), owner, false)
            .current_dir(&dir)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut settings = vec![
            "fsync=off".to_string(),
            "synchronous_commit=off".into(),
            "full_page_writes=off".into(),
            "max_connections=300".into(),
            // Dynamic shared memory in files of the data directory, not
            // in /dev/shm: a server killed with its test process leaves
            // nothing behind that the directory's removal does not take.
            "dynamic_shared_memory_type=mmap".into(),
        ];
        if let Some((cert, key)) = tls {
            // The server refuses a key others can read; it must own it.
            let (c, k) = (dir.join("server.pem"), dir.join("server.key"));
            std::fs::copy(cert, &c).unwrap();
            std::fs::copy(key, &k).unwrap();
            std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            if let Some((uid, gid)) = owner {
                chown(&c, uid, gid);
                chown(&k, uid, gid);
            }
            settings.push("ssl=on".into());
            settings.push(format!("ssl_cert_file={}", c.display()));
            settings.push(format!("ssl_key_file={}", k.display()));
        }
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        if let Some((uid, gid)) = owner {
            chown(&dir.join("server.log"), uid, gid);
        }
        let child = as_owner(Command::new(bin.join("postgres")), owner, die_with_thread)
            .current_dir(&dir)
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let pg = Postgres {
            port,
            dir,
            bin,
            child,
        };
        pg.wait_ready();
        pg.psql(&format!(
            "CREATE ROLE {PG_USER} LOGIN PASSWORD '{PG_PASSWORD}'"
        ));
        pg
    }

    /// Creates database `name`, owned by [`PG_USER`].
    pub fn create_database(&self, name: &str) {
        self.psql(&format!("CREATE DATABASE {name} OWNER {PG_USER}"));
    }

    /// The URL ferry is configured with: no password in it.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{PG_USER}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Runs `sql` as the superuser over the socket; panics on an error.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// [`Postgres::psql`] in database `database`; the result unaligned,
    /// without headers.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .arg("-h")
                .arg(&self.dir)
                .args(["-p", &self.port.to_string(), "-U", "postgres"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start within 60 s: {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postgres {
    /// SIGINT is PostgreSQL's fast shutdown: clients are cut, the server exits.
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the PID is our child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TOOLS: [&str; 4] = ["initdb", "postgres", "psql", "pg_isready"];

/// The directory holding all of [`TOOLS`]: one in PATH, or Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
fn bin_dir() -> PathBuf {
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).find(|d| TOOLS.iter().all(|t| d.join(t).is_file()))
    });
    if let Some(dir) = in_path {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            TOOLS
                .iter()
                .all(|t| bin.join(t).is_file())
                .then_some((v, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no initdb in PATH or /usr/lib/postgresql/*/bin): \
             apt-get install postgresql"
        ),
    }
}

/// `nobody`'s uid and gid when running as root (initdb refuses root);
/// `None` when already unprivileged.
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // SAFETY: a NUL-terminated name; the returned entry is read at once.
    let pw = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
    assert!(!pw.is_null(), "no user nobody to run postgres as");
    // SAFETY: non-null, points to libc's static entry.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Some((uid, gid))
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// `cmd` run as `owner` (gid first: after setuid it may not change), and
/// with `die_with_thread`, killed when the starting thread ends. The
/// death signal is set last: a change of uid clears it.
fn as_owner(mut cmd: Command, owner: Option<(u32, u32)>, die_with_thread: bool) -> Command {
    cmd.env("LC_ALL", "C");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = owner
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            if die_with_thread && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
