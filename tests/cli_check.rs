//! `ferry check` as a user runs it: the real binary, a config file on disk,
//! exit status and what lands on stdout and stderr.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

const SECRET: &str = "Xyzzy-7741-distinctive-secret-Qq";

struct Fx {
    dir: TempDir,
}

impl Fx {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir(dir.path().join("in")).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        Self { dir }
    }

    fn root(&self) -> String {
        self.dir
            .path()
            .to_str()
            .expect("UTF-8 temp dir")
            .to_string()
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("ferry.toml")
    }

    /// Writes the config (`$T` = the temp dir) and returns its path.
    fn write(&self, template: &str) -> PathBuf {
        fs::write(self.file(), template.replace("$T", &self.root())).unwrap();
        self.file()
    }
}

fn ferry() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.env_remove("FERRY_CONFIG").env_remove("RUST_LOG");
    cmd
}

fn check(config: &Path) -> Output {
    ferry()
        .arg("check")
        .arg("-c")
        .arg(config)
        .output()
        .expect("run ferry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

const VALID: &str = r#"[daemon]
state = "$T/state.db"

[[watch]]
name = "partner-invoices"
remote_dir = "$T/in"
include = ["*.pdf"]
interval = "1m"
local_dir = "$T/out"
delete = true
"#;

#[test]
fn check_valid_config_exits_0_and_summarizes_the_rule() {
    let fx = Fx::new();
    let file = fx.write(VALID);
    let out = check(&file);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = text(&out.stdout);
    let root = fx.root();
    assert!(
        stdout.starts_with(&format!("{}: OK\n", file.display())),
        "{}",
        describe(&out)
    );
    assert!(
        stdout.contains(&format!("state {root}/state.db")),
        "{stdout}"
    );
    assert!(stdout.contains("rules:"), "{stdout}");
    let rule_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("partner-invoices"))
        .unwrap_or_else(|| panic!("no line for the rule in:\n{stdout}"));
    assert!(
        rule_line.contains(&format!("{root}/in -> {root}/out")),
        "{rule_line}"
    );
    assert!(stdout.contains("every 1m"), "{stdout}");
    assert!(stdout.contains("*.pdf"), "{stdout}");
    assert!(stdout.contains("then delete"), "{stdout}");
    assert!(!text(&out.stderr).contains("error"), "{}", describe(&out));
}

#[test]
fn check_broken_config_exits_2_with_file_line_col_on_stderr() {
    let fx = Fx::new();
    let file = fx.write(
        r#"[daemon]
state = "$T/state.db"
max_transfers = 0

[[watch]]
name = "partner-invoices"
remote_dir = "$T/in"
interval = "often"
local_dir = "out"
"#,
    );
    let out = check(&file);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout: {}",
        describe(&out)
    );
    let f = file.display();
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let expected_prefixes = [
        format!("{f}:3:17: daemon.max_transfers: must be at least 1, got 0"),
        format!("{f}:8:12: watch \"partner-invoices\": interval: bad duration \"often\""),
        format!("{f}:9:13: watch \"partner-invoices\": local_dir: \"out\" is relative"),
        format!("{f}: 3 error(s)"),
    ];
    assert_eq!(lines.len(), expected_prefixes.len(), "{}", describe(&out));
    for (line, prefix) in lines.iter().zip(&expected_prefixes) {
        assert!(
            line.starts_with(prefix.as_str()),
            "{line:?} should start with {prefix:?}"
        );
    }
}

#[test]
fn check_toml_syntax_error_exits_2_with_position() {
    let fx = Fx::new();
    let file = fx.write(&VALID.replace("interval = \"1m\"", "interval = 1m"));
    let out = check(&file);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = text(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("{}:8:12: ", file.display())),
        "{}",
        describe(&out)
    );
    assert!(
        stderr.contains(&format!("{}: 1 error(s)", file.display())),
        "{stderr}"
    );
}

#[test]
fn check_missing_config_file_exits_2() {
    let fx = Fx::new();
    let file = fx.dir.path().join("absent.toml");
    let out = check(&file);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out.stderr).starts_with(&format!(
            "{}:1:1: cannot read the configuration",
            file.display()
        )),
        "{}",
        describe(&out)
    );
}

#[test]
fn check_reads_the_config_path_from_ferry_config() {
    let fx = Fx::new();
    let file = fx.write(VALID);
    let out = ferry()
        .arg("check")
        .env("FERRY_CONFIG", &file)
        .output()
        .expect("run ferry");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        text(&out.stdout).starts_with(&format!("{}: OK", file.display())),
        "{}",
        describe(&out)
    );
}

#[test]
fn check_the_shipped_demo_config() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    if !file.exists() {
        return; // covered by config_errors::every_shipped_config_loads
    }
    let out = check(&file);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l.trim_start().starts_with("demo ")),
        "{}",
        describe(&out)
    );
}

const WITH_ENV_PASSWORD: &str = r#"[daemon]
state = "$T/state.db"

[servers.partner]
protocol = "local"
password = { env = "FERRY_TEST_SECRET" }

[[watch]]
name = "partner-invoices"
server = "partner"
remote_dir = "$T/in"
local_dir = "$T/out"
"#;

/// The check passes and the secret from the environment is never printed.
#[test]
fn check_passes_with_a_password_from_the_environment() {
    let fx = Fx::new();
    let file = fx.write(WITH_ENV_PASSWORD);
    let out = ferry()
        .arg("check")
        .arg("-c")
        .arg(&file)
        .env("FERRY_TEST_SECRET", SECRET)
        .output()
        .expect("run ferry");
    let shown = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(!shown.contains(SECRET), "secret shown:\n{shown}");
    let server_line = text(&out.stdout)
        .lines()
        .find(|l| l.trim_start().starts_with("partner "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no server line:\n{shown}"));
    assert!(server_line.contains("password: set"), "{server_line}");
    assert!(text(&out.stdout).contains("partner-invoices"), "{shown}");
}

#[test]
fn check_refuses_an_inline_password_without_echoing_it() {
    let fx = Fx::new();
    let file = fx.write(
        &WITH_ENV_PASSWORD.replace("{ env = \"FERRY_TEST_SECRET\" }", &format!("\"{SECRET}\"")),
    );
    let out = check(&file);
    let shown = describe(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(!shown.contains(SECRET), "secret shown:\n{shown}");
    assert!(
        text(&out.stderr).starts_with(&format!(
            "{}:6:12: servers.partner.password: secrets are not written into the configuration",
            file.display()
        )),
        "{shown}"
    );
}

/// The daemon's own logs, at the most verbose level, never carry the secret.
#[test]
fn logs_never_show_a_secret_even_at_trace_level() {
    let fx = Fx::new();
    let file = fx.write(WITH_ENV_PASSWORD);
    std::fs::write(fx.dir.path().join("in/a.csv"), b"a").unwrap();
    let out = ferry()
        .args(["once", "--log-format", "json", "-c"])
        .arg(&file)
        .env("FERRY_TEST_SECRET", SECRET)
        .env("RUST_LOG", "trace")
        .output()
        .expect("run ferry");
    let shown = describe(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("delivered"), "{shown}");
    assert!(
        // Parts of it too, but long enough not to turn up by chance in
        // timings or inode numbers.
        !shown.contains(SECRET)
            && !shown.contains("Xyzzy-7741")
            && !shown.contains("distinctive-secret"),
        "secret in logs:\n{shown}"
    );
}

#[test]
fn check_warns_when_two_rules_deliver_into_one_local_dir() {
    let fx = Fx::new();
    let two = format!(
        "{VALID}\n[[watch]]\nname = \"partner-orders\"\nremote_dir = \"$T/in\"\nlocal_dir = \"$T/out\"\nif_exists = \"wait\"\n"
    );
    let out = check(&fx.write(&two));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: rules partner-invoices, partner-orders all deliver into"),
        "{}",
        describe(&out)
    );
    assert!(
        text(&out.stdout).contains("if_exists wait"),
        "{}",
        describe(&out)
    );
    // One rule per directory: no warning.
    let out = check(&fx.write(VALID));
    assert!(!text(&out.stderr).contains("warning"), "{}", describe(&out));
}

#[test]
fn check_refuses_an_unknown_if_exists_policy_with_its_position() {
    let fx = Fx::new();
    let file = fx.write(&format!("{VALID}if_exists = \"replace\"\n"));
    let out = check(&file);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:11:13: watch \"partner-invoices\": if_exists: unknown policy \"replace\" (expected one of: unique, overwrite, wait)", file.display())),
        "{stderr}"
    );
}

/// Runs `ssh-keygen` to make an ed25519 key at `path` with `passphrase`.
fn keygen(path: &Path, passphrase: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", "test", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "{}", describe(&out));
}

/// `check` refuses what `run` would only meet at connect time, each error
/// at its field, and never prints a key, a passphrase or a password.
const KEYS: &str = r#"[daemon]
state = "$T/state.db"

[servers.garbled]
protocol = "sftp"
host = "127.0.0.1"
user = "u"
private_key = "$T/garbled"
insecure_accept_any_host_key = true

[servers.locked]
protocol = "sftp"
host = "127.0.0.1"
user = "u"
private_key = "$T/locked"
passphrase = { env = "FERRY_TEST_SECRET" }
insecure_accept_any_host_key = true

[servers.content]
protocol = "sftp"
host = "127.0.0.1"
user = "u"
private_key_content = { file = "$T/garbled" }
known_hosts = "$T/known_hosts"

[servers.missing]
protocol = "sftp"
host = "127.0.0.1"
user = "u"
private_key = "$T/no-such-key"
known_hosts = "$T/no-such-known-hosts"
"#;

#[test]
fn check_refuses_unusable_keys_and_known_hosts_at_their_fields() {
    let fx = Fx::new();
    let d = fx.dir.path();
    fs::write(d.join("garbled"), SECRET).unwrap();
    keygen(&d.join("locked"), "the-right-one");
    fs::write(d.join("known_hosts"), "# ok\nexample.org ssh-ed25519\n").unwrap();
    let file = fx.write(KEYS);
    let out = ferry()
        .arg("check")
        .arg("-c")
        .arg(&file)
        .env("FERRY_TEST_SECRET", "the-wrong-one")
        .output()
        .expect("run ferry");
    let shown = describe(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    let (f, t) = (file.display(), fx.root());
    let expected = [
        format!(
            "{f}:8:15: servers.garbled.private_key: cannot decode \"{t}/garbled\": not a private key in OpenSSH or PEM format"
        ),
        format!(
            "{f}:15:15: servers.locked.private_key: cannot decode \"{t}/locked\": the passphrase is wrong"
        ),
        format!(
            "{f}:23:23: servers.content.private_key_content: cannot decode the key: not a private key in OpenSSH or PEM format"
        ),
        format!(
            "{f}:24:15: servers.content.known_hosts: cannot parse {t}/known_hosts: line 2: expected \"HOSTS KEY-TYPE BASE64-KEY\""
        ),
        format!(
            "{f}:30:15: servers.missing.private_key: cannot read {t}/no-such-key: No such file or directory (os error 2)"
        ),
        format!(
            "{f}:31:15: servers.missing.known_hosts: cannot read {t}/no-such-known-hosts: No such file or directory (os error 2)"
        ),
    ];
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    for e in &expected {
        assert!(lines.contains(&e.as_str()), "missing {e:?} in\n{shown}");
    }
    assert_eq!(lines.len(), expected.len() + 1, "{shown}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("the-wrong-one"),
        "secret shown:\n{shown}"
    );

    // The right passphrase decodes the key; an encrypted key without one is named.
    let fixed = KEYS.split("[servers.content]").next().unwrap().replace(
        "private_key = \"$T/garbled\"",
        "private_key = \"$T/locked\"",
    );
    let file = fx.write(&fixed);
    let out = ferry()
        .arg("check")
        .arg("-c")
        .arg(&file)
        .env("FERRY_TEST_SECRET", "the-right-one")
        .output()
        .expect("run ferry");
    let shown = describe(&out);
    assert_eq!(
        text(&out.stderr).lines().next(),
        Some(
            format!(
                "{}:8:15: servers.garbled.private_key: cannot decode \"{t}/locked\": the key is encrypted; \
                 set passphrase = {{ env = \"NAME\" }} (or file, credential)",
                file.display()
            )
            .as_str()
        ),
        "{shown}"
    );
    assert_eq!(text(&out.stderr).lines().count(), 2, "{shown}");
}

/// Read-only commands read no secrets, and no keys either: their operator
/// may not be allowed to, and they never connect.
#[test]
fn status_does_not_read_keys() {
    let fx = Fx::new();
    let file = fx.write(&format!(
        "{}\n[[watch]]\nname = \"r\"\nserver = \"missing\"\nremote_dir = \"/in\"\nlocal_dir = \"$T/out\"\n",
        KEYS.split("[servers.garbled]").next().unwrap().to_string()
            + "[servers.missing]"
            + KEYS.split("[servers.missing]").nth(1).unwrap()
    ));
    fs::write(fx.dir.path().join("no-such-known-hosts"), "").unwrap();
    let out = ferry()
        .args(["status", "-c"])
        .arg(&file)
        .output()
        .expect("run ferry");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn check_refuses_unusable_tls_trust_and_proxy_credentials() {
    let fx = Fx::new();
    let d = fx.dir.path();
    fs::write(d.join("not-a-ca.pem"), "hello\n").unwrap();
    fs::write(d.join("long"), "p".repeat(256)).unwrap();
    let long_user = "u".repeat(256);
    let file = fx.write(&format!(
        r#"[daemon]
state = "$T/state.db"

[servers.tls]
protocol = "ftps"
host = "127.0.0.1"
ca_file = "$T/not-a-ca.pem"

[servers.pin]
protocol = "ftps"
host = "127.0.0.1"
certificate_sha256 = "ab:cd"

[servers.inline]
protocol = "sftp"
host = "127.0.0.1"
user = "u"
password = {{ env = "FERRY_TEST_SECRET" }}
insecure_accept_any_host_key = true
proxy = "socks5://me:{SECRET}@127.0.0.1:1080"

[servers.long]
protocol = "sftp"
host = "127.0.0.1"
user = "u"
password = {{ env = "FERRY_TEST_SECRET" }}
insecure_accept_any_host_key = true
proxy = "socks5://{long_user}@127.0.0.1:1080"

[servers.longpw]
protocol = "sftp"
host = "127.0.0.1"
user = "u"
password = {{ env = "FERRY_TEST_SECRET" }}
insecure_accept_any_host_key = true
proxy = "socks5://me@127.0.0.1:1080"
proxy_password = {{ file = "$T/long" }}
"#
    ));
    let out = ferry()
        .arg("check")
        .arg("-c")
        .arg(&file)
        .env("FERRY_TEST_SECRET", SECRET)
        .output()
        .expect("run ferry");
    let shown = describe(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    let (f, t) = (file.display(), fx.root());
    let expected = [
        format!(
            "{f}:7:11: servers.tls.ca_file: cannot use {t}/not-a-ca.pem: no PEM certificate (BEGIN CERTIFICATE) in it"
        ),
        format!(
            "{f}:12:22: servers.pin.certificate_sha256: expected 64 hexadecimal digits (':' separators allowed)"
        ),
        format!(
            "{f}:20:9: servers.inline.proxy: the password does not go into the URL; set proxy_password = {{ env = \"NAME\" }} (or file, credential)"
        ),
        format!(
            "{f}:28:9: servers.long.proxy: the user is longer than 255 bytes, the SOCKS5 limit"
        ),
        format!(
            "{f}:37:18: servers.longpw.proxy_password: longer than 255 bytes, the SOCKS5 limit"
        ),
    ];
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    for e in &expected {
        assert!(lines.contains(&e.as_str()), "missing {e:?} in\n{shown}");
    }
    assert_eq!(lines.len(), expected.len() + 1, "{shown}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("ppppp"),
        "secret shown:\n{shown}"
    );
}
