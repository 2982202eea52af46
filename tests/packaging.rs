//! The Debian package as `packaging/build-deb.sh` builds it, here from the
//! binary under test (`--profile dev --no-build` in `./test.sh`, so the
//! tests never pay for a release build): the files it installs and their modes, the
//! conffile, the dependencies, and the maintainer scripts.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const DPKG_DEB: &str = "/usr/bin/dpkg-deb";

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: Output) -> String {
    String::from_utf8(out.stdout).unwrap()
}

/// The package, built once for all tests of this file (cargo-deb stages
/// its files in one directory under the target directory, so two builds at
/// once would mix).
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(build)
}

/// Builds the package into the target directory and returns its path.
fn build() -> PathBuf {
    require(DPKG_DEB, "dpkg");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The binary under test: its profile's directory in the target directory,
    // wherever CARGO_TARGET_DIR put it (`debug` is the dev profile's).
    let profile_dir = Path::new(BIN).parent().unwrap();
    let target = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let deb = target.join("packaging-test/ferry.deb");
    let _ = std::fs::remove_file(&deb);
    let started = Command::new(root.join("packaging/build-deb.sh"))
        .args(["--profile", profile, "--no-build", "--fast", "--output"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("packaging/build-deb.sh");
    let said = String::from_utf8_lossy(&started.stderr);
    assert!(
        !said.contains("no such command: `deb`"),
        "cargo-deb is missing: run ./test.sh, or cargo install cargo-deb --locked --version 3.8.0"
    );
    assert!(started.status.success(), "build-deb.sh failed:\n{said}");
    deb
}

/// `dpkg-deb -c`: each packaged path (without the leading `.`) with its
/// mode string, e.g. `-rwxr-xr-x`.
fn contents(deb: &Path) -> HashMap<String, String> {
    text(run(Command::new(DPKG_DEB).arg("-c").arg(deb)))
        .lines()
        .map(|l| {
            let mode = l.split_whitespace().next().unwrap().to_string();
            let path = l.split_whitespace().last().unwrap();
            (path.trim_start_matches('.').to_string(), mode)
        })
        .collect()
}

/// `dpkg-deb -I DEB NAME`: one control member (control, conffiles, postinst).
fn control(deb: &Path, member: &str) -> String {
    text(run(Command::new(DPKG_DEB).arg("-I").arg(deb).arg(member)))
}

#[test]
fn the_package_installs_binary_unit_user_config_man_page_and_completions() {
    let deb = deb();
    let dir = tempfile::tempdir().unwrap();
    let files = contents(deb);
    for (path, mode) in [
        ("/usr/bin/ferry", "-rwxr-xr-x"),
        ("/usr/lib/systemd/system/ferry.service", "-rw-r--r--"),
        ("/usr/lib/sysusers.d/ferry.conf", "-rw-r--r--"),
        ("/etc/ferry/ferry.toml", "-rw-r-----"),
        ("/usr/share/man/man1/ferry.1.gz", "-rw-r--r--"),
        ("/usr/share/bash-completion/completions/ferry", "-rw-r--r--"),
        ("/usr/share/zsh/vendor-completions/_ferry", "-rw-r--r--"),
        (
            "/usr/share/fish/vendor_completions.d/ferry.fish",
            "-rw-r--r--",
        ),
        ("/usr/share/doc/ferry/hardening.conf", "-rw-r--r--"),
        ("/usr/share/doc/ferry/README.md", "-rw-r--r--"),
    ] {
        assert_eq!(
            files.get(path).map(String::as_str),
            Some(mode),
            "{path} in {files:#?}"
        );
    }

    // What the files hold: the shipped unit and example, a working binary.
    let root = dir.path().join("root");
    run(Command::new(DPKG_DEB).arg("-x").arg(deb).arg(&root));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let same = |packaged: &str, source: &str| {
        assert_eq!(
            std::fs::read(root.join(packaged)).unwrap(),
            std::fs::read(repo.join(source)).unwrap(),
            "{packaged} is not {source}"
        );
    };
    same(
        "usr/lib/systemd/system/ferry.service",
        "systemd/ferry.service",
    );
    same("usr/lib/sysusers.d/ferry.conf", "systemd/ferry.sysusers");
    same("etc/ferry/ferry.toml", "config/ferry.example.toml");
    let version = text(run(
        Command::new(root.join("usr/bin/ferry")).arg("--version")
    ));
    assert_eq!(
        version.trim(),
        format!("ferry {}", env!("CARGO_PKG_VERSION"))
    );
    let man = text(run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/ferry.1.gz"))));
    assert!(
        man.starts_with(".ie \\n(.g") || man.contains(".TH ferry 1"),
        "{man}"
    );
    assert!(man.contains("completions"), "the page lists every command");
    let bash =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/ferry")).unwrap();
    assert!(bash.contains("complete -F _ferry"), "{bash}");
}

#[test]
fn the_control_data_names_the_conffile_dependencies_and_user_setup() {
    let deb = deb();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(control(deb, "conffiles").trim(), "/etc/ferry/ferry.toml");

    let fields = control(deb, "control");
    assert!(fields.contains("Package: ferry\n"), "{fields}");
    let depends = fields
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends in {fields}"));
    assert!(depends.contains("libc6"), "{depends}");
    assert!(
        depends.contains("systemd | systemd-standalone-sysusers | systemd-sysusers"),
        "{depends}"
    );

    let postinst = control(deb, "postinst");
    assert!(!postinst.contains("#DEBHELPER#"), "fragments inserted");
    for want in [
        "systemd-sysusers",
        "ferry.conf",
        "install -d -o ferry -g ferry -m 0750 /var/lib/ferry",
        "dpkg-statoverride --update --add root ferry 0640 /etc/ferry/ferry.toml",
        "ferry.service",
    ] {
        assert!(
            postinst.contains(want),
            "{want} not in postinst:\n{postinst}"
        );
    }
    assert!(
        !postinst.contains("deb-systemd-invoke start"),
        "installing must not start the unpatched example configuration:\n{postinst}"
    );
    let postrm = control(deb, "postrm");
    assert!(postrm.contains("dpkg-statoverride --remove /etc/ferry/ferry.toml"));
    for (name, script) in [("postinst", &postinst), ("postrm", &postrm)] {
        let path = dir.path().join(name);
        std::fs::write(&path, script).unwrap();
        run(Command::new("sh").arg("-n").arg(&path));
    }
}
