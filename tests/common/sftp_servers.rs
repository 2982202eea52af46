//! SFTP servers other than OpenSSH, on 127.0.0.1 ports in a temp
//! directory, stopped on drop: asyncssh's SFTP server (handles that count
//! up and are never reused, OpenSSH extensions optional) and ProFTPD's
//! mod_sftp (handles as text, status codes from later drafts). Both serve
//! the real file system without chroot, log in `ferry` / `s3cret pass`,
//! and refuse to stat anything in the directory `nostat` (asyncssh: any
//! directory of that name), as some hosting setups do: a rename into it
//! reaches the server's own refusal.

use super::ftp_servers::require_proftpd;
use super::ftp_servers::{PY_PASSWORD, PY_USER, PYTHON, proftpd_base_conf, proftpd_spawn};
use super::process::{Proc, descendants, free_port, require};
use super::sshd::{fingerprint, keygen};
use std::io::Read;
use std::path::Path;
use std::process::Command;

pub const USER: &str = PY_USER;
pub const PASSWORD: &str = PY_PASSWORD;

/// A running server; killed (with the processes it forked) on drop.
pub struct SftpServer {
    proc: Proc,
    pub port: u16,
    /// `SHA256:...` of its host key, for `host_key = ...`.
    pub host_key: String,
    log: std::path::PathBuf,
}

impl SftpServer {
    pub fn log(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.log), read(&self.proc.log))
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
        let (log, stderr) = (self.log.clone(), self.proc.log.clone());
        self.proc.wait_port(
            self.port,
            |mut s| {
                let mut banner = [0u8; 7];
                s.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0"
            },
            || {
                let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
                format!("{}{}", read(&log), read(&stderr))
            },
        );
        self
    }
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        // ProFTPD forks a process per session; the listener goes with `proc`.
        for pid in descendants(self.proc.pid() as u32) {
            // SAFETY: kill(2) on a process this test started (its server's child).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
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
    require(PYTHON, "python3");
    let check = Command::new(PYTHON)
        .args(["-c", "import asyncssh"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "asyncssh is missing for {PYTHON}: run ./test.sh, or apt-get install python3-asyncssh"
    );
    let script = dir.join("asyncssh_sftp.py");
    std::fs::write(&script, ASYNCSSH_SCRIPT).unwrap();
    let port = free_port();
    let key = dir.join("asyncssh_host");
    let mut cmd = Command::new(PYTHON);
    cmd.args(["-W", "ignore"])
        .arg(&script)
        .arg(dir)
        .arg(port.to_string())
        .arg(&key)
        .arg(match extensions {
            Extensions::OpenSsh => "openssh",
            Extensions::None => "none",
        })
        .args([USER, PASSWORD]);
    let log = dir.join("asyncssh.log");
    let mut server = SftpServer {
        proc: Proc::spawn(cmd, &log),
        port,
        host_key: String::new(),
        log: log.clone(),
    }
    .wait_ready();
    // The script writes its generated key before it listens.
    server.host_key = fingerprint(&key.with_extension("pub"));
    server
}

/// ProFTPD 1.3.8's mod_sftp with password logins, running as the test's
/// own user (root in CI) so it serves the temp directory as it is.
pub fn proftpd(dir: &Path) -> SftpServer {
    require_proftpd("mod_sftp.so");
    // mod_sftp reads PEM host keys.
    let key = keygen(dir, "proftpd_host_rsa", "rsa", Some("2048"), "");
    let pem = Command::new("ssh-keygen")
        .args(["-q", "-p", "-N", "", "-m", "PEM", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(pem.status.success(), "ssh-keygen -m PEM failed");
    let port = free_port();
    // `<Limit LSTAT STAT>` in `nostat`: stat refused there.
    let conf = format!(
        "{base}LoadModule mod_sftp.c\nSFTPEngine on\nSFTPHostKey {key}\n\
         SFTPAuthMethods password\nSFTPLog {d}/proftpd.sftp.log\nMaxInstances 100\n\
         <Directory {d}/nostat>\n  <Limit LSTAT STAT>\n    DenyAll\n  </Limit>\n</Directory>\n\
         <Directory />\n  AllowOverwrite on\n</Directory>\n",
        base = proftpd_base_conf(dir, dir, port),
        d = dir.display(),
        key = key.display(),
    );
    SftpServer {
        proc: proftpd_spawn(dir, &conf),
        port,
        host_key: fingerprint(&key.with_extension("pub")),
        log: dir.join("proftpd.sftp.log"),
    }
    .wait_ready()
}
