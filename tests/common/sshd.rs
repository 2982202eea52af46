//! A real OpenSSH sshd on a 127.0.0.1 port, with its own config, host key
//! and authorized keys in a temp directory, and a test user. Stopped on drop.

use super::process::{Proc, free_port, require};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const USER: &str = "ferrytest";
pub const PASSWORD: &str = "Ferry-test-pw-4821";
const SSHD: &str = "/usr/sbin/sshd";

/// Creates the test user with its password, once per test process. Other
/// test processes may do the same at once (nextest), so each step tolerates
/// the other's and chpasswd, which locks /etc/shadow, is retried.
pub fn ensure_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the SFTP tests run sshd and create a test user: run them as root"
        );
        let exists = || {
            Command::new("id")
                .arg(USER)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        };
        if !exists() {
            let _ = Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", USER])
                .stderr(Stdio::null())
                .status();
        }
        assert!(
            exists(),
            "could not create the test user {USER} with useradd"
        );
        for attempt in 0..20 {
            let mut p = Command::new("chpasswd")
                .stdin(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            p.stdin
                .take()
                .unwrap()
                .write_all(format!("{USER}:{PASSWORD}\n").as_bytes())
                .unwrap();
            if p.wait().unwrap().success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100 * (attempt + 1)));
        }
        panic!("chpasswd kept failing for {USER}");
    });
}

/// Runs `ssh-keygen` to make a key pair; returns the private key path.
pub fn keygen(dir: &Path, name: &str, kind: &str, bits: Option<&str>, passphrase: &str) -> PathBuf {
    require("/usr/bin/ssh-keygen", "openssh-client");
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", name, "-f"])
        .arg(&path);
    if let Some(b) = bits {
        cmd.args(["-b", b]);
    }
    assert!(
        cmd.status().unwrap().success(),
        "ssh-keygen -t {kind} failed"
    );
    path
}

/// The `SHA256:...` fingerprint of a public key file.
pub fn fingerprint(pub_path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1).unwrap().to_string()
}

pub struct Options {
    pub password: bool,
    /// Keyboard-interactive through PAM, with plain password auth off.
    pub keyboard_interactive_only: bool,
    /// `ForceCommand internal-sftp`, as SFTP-only accounts have: any exec
    /// request runs the SFTP server instead of the command.
    pub sftp_only: bool,
    /// The SFTP subsystem is OpenSSH's `sftp-server` logging every request
    /// it serves (`-l VERBOSE`) to `sftp.log` ([`Sshd::sftp_log`]): each
    /// SFTP channel its own process, its lines prefixed with its pid.
    pub sftp_log: bool,
    /// `MaxSessions`: channels one connection may open (200 unless set).
    pub max_sessions: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            password: true,
            keyboard_interactive_only: false,
            sftp_only: false,
            sftp_log: false,
            max_sessions: None,
        }
    }
}

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The host key's public line (`ssh-ed25519 AAAA... comment`).
    pub host_key_line: String,
    pub host_key_fingerprint: String,
    proc: Proc,
}

impl Sshd {
    pub fn start(opts: Options, authorized_keys: &[PathBuf]) -> Sshd {
        require(SSHD, "openssh-server");
        ensure_user();
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().unwrap();
        let host_key = keygen(dir.path(), "host_ed25519", "ed25519", None, "");
        let mut keys = String::new();
        for k in authorized_keys {
            keys.push_str(&std::fs::read_to_string(k.with_extension("pub")).unwrap());
        }
        let ak = dir.path().join("authorized_keys");
        std::fs::write(&ak, keys).unwrap();
        world_readable(dir.path());
        world_readable(&ak);
        let port = free_port();
        let subsystem = if opts.sftp_log {
            sftp_server_logging(dir.path())
        } else {
            "internal-sftp".to_string()
        };
        let (pam, password, kbd) = if opts.keyboard_interactive_only {
            ("yes", "no", "yes")
        } else {
            ("no", if opts.password { "yes" } else { "no" }, "no")
        };
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {ak}\nStrictModes no\nUsePAM {pam}\nPasswordAuthentication {password}\n\
             KbdInteractiveAuthentication {kbd}\nPubkeyAuthentication yes\nPermitRootLogin no\n\
             AllowUsers {USER}\nSubsystem sftp {subsystem}\nLogLevel VERBOSE\nMaxStartups 200\n\
             MaxSessions {max_sessions}\nMaxAuthTries 10\n{force}",
            force = if opts.sftp_only {
                "ForceCommand internal-sftp\n"
            } else {
                ""
            },
            max_sessions = opts.max_sessions.unwrap_or(200),
            hk = host_key.display(),
            d = dir.path().display(),
            ak = ak.display(),
        );
        let conf = dir.path().join("sshd_config");
        std::fs::write(&conf, config).unwrap();
        let mut cmd = Command::new(SSHD);
        cmd.arg("-D").arg("-e").arg("-f").arg(&conf);
        let proc = Proc::spawn(cmd, &dir.path().join("sshd.log"));
        let host_key_line = std::fs::read_to_string(host_key.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string();
        let host_key_fingerprint = fingerprint(&host_key.with_extension("pub"));
        let mut s = Sshd {
            dir,
            port,
            host_key_line,
            host_key_fingerprint,
            proc,
        };
        let log = s.proc.log.clone();
        s.proc.wait_port(
            port,
            |mut c| {
                let mut banner = [0u8; 7];
                c.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0"
            },
            || std::fs::read_to_string(&log).unwrap_or_default(),
        );
        s
    }

    pub fn log(&self) -> String {
        self.proc.stderr()
    }

    /// What `sftp-server` logged (with `Options::sftp_log`).
    pub fn sftp_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sftp.log")).unwrap_or_default()
    }

    /// A known_hosts file with this server's key for `[127.0.0.1]:port`.
    pub fn known_hosts(&self, dir: &Path, hashed: bool) -> PathBuf {
        let path = dir.join(if hashed {
            "known_hosts_hashed"
        } else {
            "known_hosts"
        });
        let mut parts = self.host_key_line.split_whitespace();
        let (alg, key) = (parts.next().unwrap(), parts.next().unwrap());
        std::fs::write(&path, format!("[127.0.0.1]:{} {alg} {key}\n", self.port)).unwrap();
        if hashed {
            assert!(
                Command::new("ssh-keygen")
                    .arg("-H")
                    .arg("-f")
                    .arg(&path)
                    .output()
                    .unwrap()
                    .status
                    .success()
            );
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("|1|"), "not hashed: {text}");
        }
        path
    }
}

const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// A subsystem command that runs `sftp-server` with its log (stderr, which
/// sshd would send to the client) appended to `dir/sftp.log`.
fn sftp_server_logging(dir: &Path) -> String {
    require(SFTP_SERVER, "openssh-sftp-server");
    let log = dir.join("sftp.log");
    std::fs::write(&log, "").unwrap();
    world_writable(&log);
    let wrapper = dir.join("sftp-server-logging");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"pid $$\" >> '{log}'\nexec {SFTP_SERVER} -e -l VERBOSE 2>> '{log}'\n",
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper.display().to_string()
}

fn world_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap();
}

/// Lets the test user reach files the tests (root) created.
pub fn world_readable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if p.is_dir() { 0o777 } else { 0o644 };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Makes a directory tree the test user can read and write.
pub fn shared_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    // Only ever below the temp directory: never loosen anything else.
    let tmp = std::env::temp_dir();
    let mut cur = Some(p);
    while let Some(d) = cur {
        if d == tmp || !d.starts_with(&tmp) {
            break;
        }
        world_readable(d);
        cur = d.parent();
    }
}
