//! SFTP servers other than OpenSSH, on 127.0.0.1 ports in a temp
//! directory, stopped on drop: asyncssh's SFTP server (handles that count
//! up and are never reused, OpenSSH extensions optional) and ProFTPD's
//! mod_sftp (handles as text, status codes from later drafts). Both serve
//! the real file system without chroot, log in `ferry` / `s3cret pass`,
//! and refuse to stat anything in the directory `nostat` (asyncssh: any
//! directory of that name), as some hosting setups do: a rename into it
//! reaches the server's own refusal.

use super::sshd::{fingerprint, free_port, keygen};
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "ferry";
pub const PASSWORD: &str = "s3cret pass";
const PYTHON: &str = "/usr/bin/python3";

/// A running server; killed (with the processes it forked) on drop.
pub struct SftpServer {
    child: Child,
    pub port: u16,
    /// `SHA256:...` of its host key, for `host_key = ...`.
    pub host_key: String,
    pub log: PathBuf,
    name: &'static str,
}

impl SftpServer {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A `[servers.s]` block for this server (password from `pw_file`).
    pub fn server_block(&self, pw_file: &Path, extra: &str) -> String {
        std::fs::write(pw_file, PASSWORD).unwrap();
        format!(
            "[servers.s]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
             password = {{ file = \"{}\" }}\nhost_key = \"{}\"\nio_timeout = \"10s\"\n{extra}\n",
            self.port,
            pw_file.display(),
            self.host_key
        )
    }

    fn wait_ready(mut self) -> Self {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log()
                );
            }
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.port)) {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut banner = [0u8; 7];
                if c.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0" {
                    return self;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready on port {}:\n{}",
                self.name,
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        // ProFTPD forks a process per session: stop those too.
        for pid in children(self.child.id()) {
            // SAFETY: kill(2) on a process this test started (its server's child).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The direct children of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let p: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == pid).then_some(p)
    })
    .collect()
}

/// Which SFTP extensions asyncssh announces.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Extensions {
    /// Its defaults: posix-rename, hardlink, fsync, statvfs (no limits).
    OpenSsh,
    /// None at all: a plain SFTP v3 server.
    None,
}

/// asyncssh 2.10's server in a few lines. The class attribute
/// `SFTPServerHandler._extensions` is the list it announces in VERSION;
/// emptying it leaves a plain v3 server. Its own `rename` answers an
/// existing target with SSH_FX_FAILURE (it maps later codes down for v3
/// clients); this one answers 11, FILE_ALREADY_EXISTS, as ProFTPD does,
/// a code v3 clients do not know.
const ASYNCSSH_SCRIPT: &str = r#"
import asyncio, os, sys
import asyncssh
from asyncssh.packet import String, UInt32

root, port, key_path, extensions, user, password = sys.argv[1:7]
if extensions == "none":
    asyncssh.sftp.SFTPServerHandler._extensions = []

class Exists(asyncssh.SFTPError):
    def __init__(self):
        super().__init__(11, "File already exists")
    def encode(self, version):
        return UInt32(11) + String("File already exists") + String("en")

def refused(path):
    return b"/nostat/" in path or path.endswith(b"/nostat")

class Files(asyncssh.SFTPServer):
    def stat(self, path):
        if refused(path):
            raise asyncssh.SFTPPermissionDenied("stat refused here")
        return super().stat(path)
    def lstat(self, path):
        if refused(path):
            raise asyncssh.SFTPPermissionDenied("stat refused here")
        return super().lstat(path)
    def rename(self, oldpath, newpath):
        if os.path.lexists(newpath):
            raise Exists()
        os.rename(oldpath, newpath)

class Logins(asyncssh.SSHServer):
    def begin_auth(self, username):
        return True
    def password_auth_supported(self):
        return True
    def validate_password(self, username, pw):
        return username == user and pw == password

async def main():
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_public_key(key_path + ".pub")
    await asyncssh.listen("127.0.0.1", int(port), server_host_keys=[key],
                          server_factory=Logins, sftp_factory=Files,
                          allow_scp=False)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

pub fn asyncssh(dir: &Path, extensions: Extensions) -> SftpServer {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: install it with `apt-get install python3`"
    );
    let check = Command::new(PYTHON)
        .args(["-c", "import asyncssh"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "asyncssh is missing for {PYTHON}: run ./test.sh, or `apt-get install python3-asyncssh`"
    );
    let script = dir.join("asyncssh_sftp.py");
    std::fs::write(&script, ASYNCSSH_SCRIPT).unwrap();
    let port = free_port();
    let key = dir.join("asyncssh_host");
    let log = dir.join("asyncssh.log");
    let child = Command::new(PYTHON)
        .args(["-W", "ignore"])
        .arg(&script)
        .arg(dir)
        .arg(port.to_string())
        .arg(&key)
        .arg(match extensions {
            Extensions::OpenSsh => "openssh",
            Extensions::None => "none",
        })
        .args([USER, PASSWORD])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = SftpServer {
        child,
        port,
        host_key: String::new(),
        log,
        name: "asyncssh",
    }
    .wait_ready();
    // The script writes its generated key before it listens.
    server.host_key = fingerprint(&key.with_extension("pub"));
    server
}

/// Where ./test.sh unpacks ProFTPD (its package conflicts with vsftpd's).
fn proftpd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/proftpd/root")
}

/// ProFTPD 1.3.8's mod_sftp with password logins, running as the test's
/// own user (root in CI) so it serves the temp directory as it is.
pub fn proftpd(dir: &Path) -> SftpServer {
    let base = proftpd_dir();
    let program = base.join("usr/sbin/proftpd");
    assert!(
        program.exists() && base.join("usr/lib/proftpd/mod_sftp.so").exists(),
        "ProFTPD with mod_sftp is missing from {}: run ./test.sh once, which downloads \
         proftpd-core and its libraries with `apt-get download` and unpacks them there",
        base.display()
    );
    // mod_sftp reads PEM host keys; it refuses keys and user files others can read.
    let key = keygen(dir, "proftpd_host_rsa", "rsa", Some("2048"), "");
    let pem = Command::new("ssh-keygen")
        .args(["-q", "-p", "-N", "", "-m", "PEM", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(pem.status.success(), "ssh-keygen -m PEM failed");
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let hash = Command::new("/usr/bin/openssl")
        .args(["passwd", "-5", PASSWORD])
        .output()
        .unwrap();
    assert!(hash.status.success(), "openssl passwd failed");
    let hash = String::from_utf8(hash.stdout).unwrap();
    let private = |name: &str, text: String| {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        path
    };
    let passwd = private(
        "proftpd.passwd",
        format!(
            "{USER}:{}:{uid}:{gid}::{}:/bin/sh\n",
            hash.trim(),
            dir.display()
        ),
    );
    let group = private("proftpd.group", format!("ferry:x:{gid}:\n"));
    let port = free_port();
    let log = dir.join("proftpd.log");
    let user = if uid == 0 {
        "User root\nGroup root\nRootLogin on\n"
    } else {
        ""
    };
    // `<Limit LSTAT STAT>` in a `nostat` directory: stat refused there.
    let conf = format!(
        "ServerType standalone\nDefaultServer on\nPort {port}\nDefaultAddress 127.0.0.1\n\
         SocketBindTight on\nUseIPv6 off\n{user}RequireValidShell off\nAuthUserFile {passwd}\n\
         AuthGroupFile {group}\nAuthOrder mod_auth_file.c\nWtmpLog off\nUseReverseDNS off\n\
         ScoreboardFile {d}/proftpd.scoreboard\nPidFile {d}/proftpd.pid\nDelayTable none\n\
         SystemLog {log}\nModulePath {modules}\nLoadModule mod_sftp.c\nSFTPEngine on\n\
         SFTPHostKey {key}\nSFTPAuthMethods password\nSFTPLog {d}/proftpd.sftp.log\n\
         MaxInstances 100\n<Directory {d}/nostat>\n  <Limit LSTAT STAT>\n    DenyAll\n  </Limit>\n\
         </Directory>\n<Directory />\n  AllowOverwrite on\n</Directory>\n",
        passwd = passwd.display(),
        group = group.display(),
        d = dir.display(),
        log = log.display(),
        modules = base.join("usr/lib/proftpd").display(),
        key = key.display(),
    );
    let conf_path = dir.join("proftpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(&program)
        .args(["-n", "-q", "-c"])
        .arg(&conf_path)
        .env("LD_LIBRARY_PATH", base.join("usr/lib/x86_64-linux-gnu"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("proftpd.stderr")).unwrap())
        .spawn()
        .unwrap();
    SftpServer {
        child,
        port,
        host_key: fingerprint(&key.with_extension("pub")),
        log,
        name: "ProFTPD",
    }
    .wait_ready()
}
