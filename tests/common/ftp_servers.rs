//! Real FTP servers for the tests: vsftpd, pyftpdlib and ProFTPD, started on
//! 127.0.0.1 with their configuration, root directory and test
//! certificates in a temp directory, and killed on drop. A missing server
//! program fails the test with how to install it; nothing is skipped.

use super::process::{Proc, descendants, free_port, require};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const VSFTPD: &str = "/usr/sbin/vsftpd";
/// Debian's Python, which has pyftpdlib (a pyenv `python3` earlier on PATH may not).
pub const PYTHON: &str = "/usr/bin/python3";

/// A test CA, a server certificate it signed for 127.0.0.1, and an
/// unrelated CA that must not be trusted for it.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub other_ca: PathBuf,
    /// SHA-256 of the server certificate, hex with colons (as openssl prints it).
    pub sha256: String,
}

pub fn make_certs(dir: &Path) -> Certs {
    require("/usr/bin/openssl", "openssl");
    let run = |args: &[&str]| {
        let out = Command::new("/usr/bin/openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for ca in ["ca", "other-ca"] {
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=ferry test {ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ]);
    }
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    let fp = run(&[
        "x509",
        "-in",
        "server.pem",
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        other_ca: dir.join("other-ca.pem"),
        sha256: fp.trim().split_once('=').unwrap().1.to_string(),
    }
}

/// A running server; killed (with its session processes) on drop.
pub struct FtpServer {
    proc: Proc,
    pub port: u16,
    /// Where the server's files are on this machine.
    pub root: PathBuf,
    /// How the server names `root`: vsftpd runs as the launching user
    /// without chroot (it is root here), so its paths are the real ones.
    remote_root: String,
    pub log: PathBuf,
}

impl FtpServer {
    /// The server's absolute path for `rel` under `root`.
    pub fn remote(&self, rel: &str) -> String {
        format!("{}/{rel}", self.remote_root)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the processes serving connections (vsftpd forks one per
    /// session), cutting every transfer while the listener keeps running.
    pub fn cut_sessions(&self) {
        for pid in descendants(self.proc.pid() as u32) {
            // SAFETY: kill(2) on a process this test started (a child of its server).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }

    /// Freezes the session processes (SIGSTOP): connections stay open, nothing moves.
    pub fn freeze_sessions(&self) {
        for pid in descendants(self.proc.pid() as u32) {
            // SAFETY: kill(2) on a process this test started (a child of its server).
            unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        }
    }

    fn wait_ready(mut self, tls_first: bool) -> Self {
        let (log, stderr) = (self.log.clone(), self.proc.log.clone());
        self.proc.wait_port(
            self.port,
            |mut s| {
                let mut banner = [0u8; 3];
                tls_first || (s.read_exact(&mut banner).is_ok() && &banner == b"220")
            },
            || {
                let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
                format!("{}{}", read(&log), read(&stderr))
            },
        );
        self
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        // The listener itself goes when `proc` drops.
        self.cut_sessions();
    }
}

#[derive(Default, Clone)]
pub struct Vsftpd {
    /// Explicit FTPS (AUTH TLS required) with these certificates, and
    /// `require_ssl_reuse=YES` on data connections.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Bytes per second per transfer (`anon_max_rate`), 0 for unlimited.
    pub max_rate: u64,
    pub extra: String,
}

/// vsftpd with anonymous read-write access, starting in `dir/root`,
/// passive ports from a private range, every command logged.
pub fn vsftpd(dir: &Path, opts: &Vsftpd) -> FtpServer {
    require(VSFTPD, "vsftpd");
    let root = dir.join("root");
    let empty = dir.join("vsftpd-empty");
    std::fs::create_dir_all(root.join("pub")).unwrap();
    std::fs::create_dir_all(&empty).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("pub"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = free_port();
    let pasv = 20000 + fastrand_u16(40000);
    let log = dir.join("vsftpd.log");
    let mut conf = format!(
        "listen=YES\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\nseccomp_sandbox=NO\n\
         run_as_launching_user=YES\nanonymous_enable=YES\nlocal_enable=NO\nanon_root={root}\n\
         no_anon_password=YES\nwrite_enable=YES\nanon_upload_enable=YES\nanon_mkdir_write_enable=YES\n\
         anon_other_write_enable=YES\nanon_world_readable_only=NO\nanon_umask=022\n\
         pasv_enable=YES\npasv_min_port={pasv}\npasv_max_port={}\nport_enable=YES\nconnect_from_port_20=NO\n\
         secure_chroot_dir={empty}\nvsftpd_log_file={log}\nxferlog_enable=YES\nlog_ftp_protocol=YES\n\
         dual_log_enable=NO\nsyslog_enable=NO\nanon_max_rate={}\nidle_session_timeout=600\n",
        pasv + 40,
        opts.max_rate,
        root = root.display(),
        empty = empty.display(),
        log = log.display(),
    );
    if let Some((cert, key)) = &opts.tls {
        conf.push_str(&format!(
            "ssl_enable=YES\nallow_anon_ssl=YES\nforce_anon_logins_ssl=YES\nforce_anon_data_ssl=YES\n\
             require_ssl_reuse=YES\nrsa_cert_file={}\nrsa_private_key_file={}\n",
            cert.display(),
            key.display()
        ));
    }
    conf.push_str(&opts.extra);
    let conf_path = dir.join("vsftpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new(VSFTPD);
    cmd.arg(&conf_path);
    let server = FtpServer {
        proc: Proc::spawn(cmd, &dir.join("vsftpd.stderr")),
        port,
        remote_root: root.display().to_string(),
        root,
        log,
    };
    server.wait_ready(false)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PyTls {
    None,
    Explicit,
    Implicit,
}

pub const PY_USER: &str = "ferry";
pub const PY_PASSWORD: &str = "s3cret pass";

const PYFTPD_SCRIPT: &str = r#"
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

root, port, tls, cert, key, lo, log = sys.argv[1:8]
logging.basicConfig(filename=log, level=logging.DEBUG if sys.argv[10] in ("nat", "debug") else logging.INFO)
auth = DummyAuthorizer()
auth.add_user(sys.argv[8], sys.argv[9], root, perm="elradfmwMT")

if tls == "none":
    class Handler(FTPHandler):
        pass
else:
    class Handler(TLS_FTPHandler):
        tls_control_required = True
        tls_data_required = True
    Handler.certfile = cert
    Handler.keyfile = key
    if tls == "implicit":
        # pyftpdlib has no implicit mode: handshake first, banner after.
        class Implicit(Handler):
            def handle(self):
                self.secure_connection(self.ssl_context)
            def handle_ssl_established(self):
                TLS_FTPHandler.handle(self)
        Handler = Implicit
if sys.argv[10] == "nat":
    # No EPSV, and PASV names a private address that is not the server's,
    # as a server behind NAT does.
    Handler.proto_cmds = {k: v for k, v in Handler.proto_cmds.items() if k != "EPSV"}
    Handler.masquerade_address = "10.255.255.1"
if sys.argv[10] in ("nosize", "blind"):
    # MLSD and MLST without the size fact, as some servers send them.
    class NoSize(Handler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._current_facts = [f for f in self._current_facts if f != "size"]
    Handler = NoSize
if sys.argv[10] == "blind":
    # Nor SIZE: nothing tells a file's size but a listing.
    Handler.proto_cmds = {k: v for k, v in Handler.proto_cmds.items() if k != "SIZE"}
if sys.argv[10] == "norest":
    # No REST, as some appliances have: "500 Command not understood".
    Handler.proto_cmds = {k: v for k, v in Handler.proto_cmds.items() if k != "REST"}
if sys.argv[10] == "noappe":
    # APPE refused outright, as some servers are set up; each refusal logged.
    class NoAppe(Handler):
        def ftp_APPE(self, file):
            self.log("APPE refused " + file)
            self.respond("502 APPE not allowed here.")
    Handler = NoAppe
if sys.argv[10] == "badmlsd":
    # One MLSD line no parser reads (a size that is not a number).
    from pyftpdlib.filesystems import AbstractedFS
    class BadLineFS(AbstractedFS):
        def format_mlsx(self, *args, **kwargs):
            yield b"type=file;size=many;modify=20260101000000; broken.csv\r\n"
            yield from super().format_mlsx(*args, **kwargs)
    Handler.abstracted_fs = BadLineFS
if sys.argv[10] == "corrupt":
    # XSHA256 (in FEAT) answers the digest of the stored file, while RETR
    # sends it with its first byte changed: bytes corrupted on the way,
    # which only the server's digest can show.
    import hashlib, io
    class Corrupted(io.BytesIO):
        name = ""
    class Corrupt(Handler):
        proto_cmds = dict(Handler.proto_cmds)
        proto_cmds["XSHA256"] = dict(perm="r", auth=True, arg=True, help="Syntax: XSHA256 <SP> file-name")
        def ftp_FEAT(self, line):
            said = []
            self.push = said.append
            self.respond = lambda reply: said.append(reply + "\r\n")
            try:
                super().ftp_FEAT(line)
            finally:
                del self.push, self.respond
            text = "".join(said)
            self.push(text.replace("211 End", " XSHA256\r\n211 End"))
        def ftp_XSHA256(self, path):
            with open(path, "rb") as f:
                self.respond("250 " + hashlib.sha256(f.read()).hexdigest())
    class CorruptFS(Handler.abstracted_fs):
        def open(self, filename, mode):
            f = super().open(filename, mode)
            if "r" not in mode:
                return f
            data = bytearray(f.read())
            f.close()
            if data:
                data[0] ^= 0x20
            out = Corrupted(bytes(data))
            out.name = filename
            return out
    Corrupt.abstracted_fs = CorruptFS
    Handler = Corrupt
if sys.argv[10] == "paced":
    # Every data connection paced at 1 MB/s, after the burst pyftpdlib's
    # throttle lets through first (two seconds' worth at full speed).
    from pyftpdlib.handlers import ThrottledDTPHandler
    class Paced(ThrottledDTPHandler):
        read_limit = 1000000
        write_limit = 1000000
    Handler.dtp_handler = Paced
Handler.authorizer = auth
Handler.passive_ports = range(int(lo), int(lo) + 40)
Handler.use_gmt_times = True
server = FTPServer(("127.0.0.1", int(port)), Handler)
server.serve_forever()
"#;

/// pyftpdlib (MLSD, MLST) with user `ferry` / `s3cret pass` rooted at `dir/root`.
pub fn pyftpdlib(dir: &Path, tls: PyTls, certs: Option<&Certs>) -> FtpServer {
    pyftpdlib_with(dir, tls, certs, "-")
}

/// [`pyftpdlib`] logging every reply too (the passive ports it offered).
pub fn pyftpdlib_logging_replies(dir: &Path, tls: PyTls, certs: Option<&Certs>) -> FtpServer {
    pyftpdlib_with(dir, tls, certs, "debug")
}

/// pyftpdlib as behind NAT: EPSV refused, PASV announcing 10.255.255.1.
pub fn pyftpdlib_nat(dir: &Path) -> FtpServer {
    pyftpdlib_with(dir, PyTls::None, None, "nat")
}

/// pyftpdlib whose MLSD and MLST leave out the `size` fact.
pub fn pyftpdlib_without_sizes(dir: &Path) -> FtpServer {
    pyftpdlib_with(dir, PyTls::None, None, "nosize")
}

/// [`pyftpdlib_without_sizes`] without SIZE either.
pub fn pyftpdlib_blind_to_sizes(dir: &Path) -> FtpServer {
    pyftpdlib_with(dir, PyTls::None, None, "blind")
}

/// pyftpdlib without REST: downloads cannot resume part-way.
pub fn pyftpdlib_without_rest(dir: &Path) -> FtpServer {
    pyftpdlib_with(dir, PyTls::None, None, "norest")
}

/// pyftpdlib without APPE: files can only be sent with STOR.
pub fn pyftpdlib_without_appe(dir: &Path) -> FtpServer {
    pyftpdlib_with(dir, PyTls::None, None, "noappe")
}

/// pyftpdlib that offers `XSHA256` (the stored file's digest) but sends
/// every file with its first byte changed.
pub fn pyftpdlib_corrupting(dir: &Path) -> FtpServer {
    pyftpdlib_with(dir, PyTls::None, None, "corrupt")
}

/// pyftpdlib pacing each data connection at 1 MB/s, after a first burst
/// of two seconds' worth at full speed.
pub fn pyftpdlib_paced(dir: &Path) -> FtpServer {
    pyftpdlib_with(dir, PyTls::None, None, "paced")
}

/// pyftpdlib whose MLSD starts with a line no parser reads.
pub fn pyftpdlib_with_a_bad_mlsd_line(dir: &Path) -> FtpServer {
    pyftpdlib_with(dir, PyTls::None, None, "badmlsd")
}

fn pyftpdlib_with(dir: &Path, tls: PyTls, certs: Option<&Certs>, variant: &str) -> FtpServer {
    require(PYTHON, "python3");
    let check = Command::new(PYTHON)
        .args(["-c", "import pyftpdlib"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "pyftpdlib is missing for {PYTHON}: run ./test.sh, or apt-get install python3-pyftpdlib"
    );
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let script = dir.join("pyftpd.py");
    std::fs::write(&script, PYFTPD_SCRIPT).unwrap();
    let port = free_port();
    let log = dir.join("pyftpd.log");
    let (cert, key) = match certs {
        Some(c) => (c.cert.display().to_string(), c.key.display().to_string()),
        None => (String::new(), String::new()),
    };
    let mode = match tls {
        PyTls::None => "none",
        PyTls::Explicit => "explicit",
        PyTls::Implicit => "implicit",
    };
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script)
        .arg(&root)
        .arg(port.to_string())
        .args([mode, &cert, &key])
        .arg((20000 + fastrand_u16(40000)).to_string())
        .arg(&log)
        .args([PY_USER, PY_PASSWORD, variant]);
    let server = FtpServer {
        proc: Proc::spawn(cmd, &dir.join("pyftpd.stderr")),
        port,
        remote_root: String::new(),
        root,
        log,
    };
    server.wait_ready(tls == PyTls::Implicit)
}

/// Where ./test.sh unpacks ProFTPD and the libraries it needs (the
/// Debian package conflicts with vsftpd, so it is not installed).
pub fn proftpd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/proftpd/root")
}

/// Fails the test unless ./test.sh has unpacked ProFTPD with `module`.
pub fn require_proftpd(module: &str) -> PathBuf {
    let base = proftpd_dir();
    assert!(
        base.join("usr/sbin/proftpd").exists()
            && base.join("usr/lib/proftpd").join(module).exists(),
        "ProFTPD with {module} is missing from {}: run ./test.sh once, which downloads \
         proftpd-core, proftpd-mod-crypto and their libraries with `apt-get download` \
         and unpacks them there",
        base.display()
    );
    base
}

/// The directives every ProFTPD the tests start shares: standalone on
/// `port` of 127.0.0.1, user `ferry` / `s3cret pass` (from files in `dir`)
/// with `home` as home directory, logs and run files in `dir`.
pub fn proftpd_base_conf(dir: &Path, home: &Path, port: u16) -> String {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let hash = Command::new("/usr/bin/openssl")
        .args(["passwd", "-5", PY_PASSWORD])
        .output()
        .unwrap();
    assert!(hash.status.success(), "openssl passwd failed");
    let hash = String::from_utf8(hash.stdout).unwrap();
    // mod_auth_file refuses world-readable user and group files.
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
            "{PY_USER}:{}:{uid}:{gid}::{}:/bin/sh\n",
            hash.trim(),
            home.display()
        ),
    );
    let group = private("proftpd.group", format!("ferry:x:{gid}:\n"));
    // Running as root (as CI does), it must not switch to a user that
    // cannot read the temp directory; as another user it stays that user.
    let user = if uid == 0 {
        "User root\nGroup root\nRootLogin on\n"
    } else {
        ""
    };
    format!(
        "ServerType standalone\nDefaultServer on\nPort {port}\nDefaultAddress 127.0.0.1\n\
         SocketBindTight on\nUseIPv6 off\n{user}RequireValidShell off\nAuthUserFile {passwd}\n\
         AuthGroupFile {group}\nAuthOrder mod_auth_file.c\nWtmpLog off\nUseReverseDNS off\n\
         ScoreboardFile {d}/proftpd.scoreboard\nPidFile {d}/proftpd.pid\nDelayTable none\n\
         SystemLog {d}/proftpd.log\nModulePath {modules}\n",
        passwd = passwd.display(),
        group = group.display(),
        d = dir.display(),
        modules = proftpd_dir().join("usr/lib/proftpd").display(),
    )
}

/// Writes `conf` into `dir` and starts ProFTPD on it in the foreground.
pub fn proftpd_spawn(dir: &Path, conf: &str) -> Proc {
    let base = proftpd_dir();
    let conf_path = dir.join("proftpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new(base.join("usr/sbin/proftpd"));
    cmd.args(["-n", "-q", "-c"])
        .arg(&conf_path)
        .env("LD_LIBRARY_PATH", base.join("usr/lib/x86_64-linux-gnu"));
    Proc::spawn(cmd, &dir.join("proftpd.stderr"))
}

/// ProFTPD 1.3.8 with mod_tls at its defaults (so each data connection
/// must resume its own control connection's TLS session), explicit FTPS
/// required, MLSD, user `ferry` / `s3cret pass` with `dir/root` as home.
/// Its paths are the real ones (no chroot).
pub fn proftpd_tls(dir: &Path, certs: &Certs) -> FtpServer {
    proftpd_tls_with(dir, certs, true)
}

/// [`proftpd_tls`]; with `allow_overwrite` false, ProFTPD's own default:
/// STOR and RNTO refuse an existing target.
pub fn proftpd_tls_with(dir: &Path, certs: &Certs, allow_overwrite: bool) -> FtpServer {
    proftpd_tls_versions(dir, certs, allow_overwrite, "TLSv1.2 TLSv1.3")
}

/// [`proftpd_tls`] that refuses every TLS version but 1.3.
pub fn proftpd_tls13_only(dir: &Path, certs: &Certs) -> FtpServer {
    proftpd_tls_versions(dir, certs, true, "TLSv1.3")
}

fn proftpd_tls_versions(
    dir: &Path,
    certs: &Certs,
    allow_overwrite: bool,
    versions: &str,
) -> FtpServer {
    require_proftpd("mod_tls.so");
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("pub")).unwrap();
    let port = free_port();
    let pasv = 20000 + fastrand_u16(40000);
    let conf = format!(
        "{base}TransferLog {d}/proftpd.xferlog\nPassivePorts {pasv} {}\n\
         LoadModule mod_tls.c\nTLSEngine on\nTLSLog {d}/proftpd.tls.log\n\
         TLSProtocol {versions}\nTLSRSACertificateFile {cert}\nTLSRSACertificateKeyFile {key}\n\
         TLSRequired on\nTLSVerifyClient off\n<Directory />\n  AllowOverwrite {overwrite}\n</Directory>\n",
        pasv + 40,
        base = proftpd_base_conf(dir, &root, port),
        d = dir.display(),
        cert = certs.cert.display(),
        key = certs.key.display(),
        overwrite = if allow_overwrite { "on" } else { "off" },
    );
    let server = FtpServer {
        proc: proftpd_spawn(dir, &conf),
        port,
        remote_root: root.display().to_string(),
        root,
        log: dir.join("proftpd.log"),
    };
    server.wait_ready(false)
}

fn fastrand_u16(below: u16) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    ((nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % u32::from(below)) as u16
}

/// Plain-FTP ProFTPD with mod_digest (HASH, XSHA256, XMD5 in FEAT), user
/// `ferry` / `s3cret pass` with `dir/root` as home (no chroot), and every
/// command logged in `dir/proftpd.commands` (`log` reads it).
pub fn proftpd_digest(dir: &Path) -> FtpServer {
    require_proftpd("mod_digest.so");
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("pub")).unwrap();
    let port = free_port();
    let pasv = 20000 + fastrand_u16(40000);
    let conf = format!(
        "{base}PassivePorts {pasv} {}\nLoadModule mod_digest.c\nDigestEngine on\n\
         ExtendedLog {d}/proftpd.commands ALL\n<Directory />\n  AllowOverwrite on\n</Directory>\n",
        pasv + 40,
        base = proftpd_base_conf(dir, &root, port),
        d = dir.display(),
    );
    let server = FtpServer {
        proc: proftpd_spawn(dir, &conf),
        port,
        remote_root: root.display().to_string(),
        root,
        log: dir.join("proftpd.commands"),
    };
    server.wait_ready(false)
}

/// Whether ferry's log shows a data connection refused (425), as a reply
/// code, not as digits inside a timestamp.
pub fn data_connection_refused(log: &str) -> bool {
    log.lines()
        .any(|l| l.contains(" 425 ") || l.contains(": 425"))
}
