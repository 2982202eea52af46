//! The shipped unit, `systemd/ferry.service`, as systemd reads it:
//! `systemd-analyze verify` finds nothing to say, with and without the
//! hardening drop-in, and the unit keeps the settings gateways rely on.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const ANALYZE: &str = "/usr/bin/systemd-analyze";

fn shipped(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shipped unit in `dir`, with only the binary's path replaced by the
/// test build (verify checks that ExecStart programs exist), and the man
/// page that `Documentation=man:ferry(1)` names under `dir/man` (verify
/// runs `man` for it).
fn stage(dir: &Path) -> PathBuf {
    let unit = shipped("ferry.service");
    assert!(
        unit.contains("ExecStart=/usr/bin/ferry run "),
        "the unit runs the packaged binary"
    );
    let unit_path = dir.join("ferry.service");
    std::fs::write(
        &unit_path,
        unit.replace("/usr/bin/ferry ", &format!("{BIN} ")),
    )
    .unwrap();
    let man1 = dir.join("man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    let page = Command::new(BIN).arg("man").output().unwrap();
    assert!(page.status.success());
    std::fs::write(man1.join("ferry.1"), page.stdout).unwrap();
    unit_path
}

/// `systemd-analyze verify UNIT`; fails the test on any output or error.
fn verify(unit: &Path, man_dir: &Path) {
    require(ANALYZE, "systemd");
    // verify runs `man` for Documentation=man:ferry(1).
    require("/usr/bin/man", "man-db");
    let out = Command::new(ANALYZE)
        .arg("verify")
        .arg(unit)
        .env("MANPATH", man_dir)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {}: {}\n{said}",
        unit.display(),
        out.status
    );
}

#[test]
fn the_shipped_unit_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let unit = stage(dir.path());
    verify(&unit, &dir.path().join("man"));
}

#[test]
fn the_unit_verifies_clean_with_the_hardening_drop_in() {
    let dir = tempfile::tempdir().unwrap();
    let unit = stage(dir.path());
    let drop_ins = dir.path().join("ferry.service.d");
    std::fs::create_dir_all(&drop_ins).unwrap();
    let hardening = shipped("hardening.conf");
    assert!(hardening.contains("\nMemoryDenyWriteExecute=yes\n"));
    std::fs::write(drop_ins.join("hardening.conf"), hardening).unwrap();
    verify(&unit, &dir.path().join("man"));
}

#[test]
fn the_unit_runs_as_the_static_user_with_a_group_umask_and_no_jit_ban() {
    let unit = shipped("ferry.service");
    let settings: Vec<&str> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for want in [
        "Type=notify",
        "User=ferry",
        "Group=ferry",
        "UMask=0007",
        "ProtectSystem=strict",
        "StateDirectory=ferry",
    ] {
        assert!(settings.contains(&want), "{want} missing");
    }
    for banned in ["DynamicUser", "MemoryDenyWriteExecute"] {
        assert!(
            !settings.iter().any(|l| l.starts_with(banned)),
            "{banned} must not be set in the unit"
        );
    }
    assert!(unit.contains("#LoadCredential="), "the credential example");
    let sysusers = shipped("ferry.sysusers");
    assert!(sysusers.lines().any(|l| l.starts_with("u ferry ")));
}
