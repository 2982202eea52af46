//! An sshfs mount (FUSE) of a directory on this machine, served by an
//! `sftp-server` started directly: a network file system for the tests,
//! whose far side no inotify event reports (as NFS), and whose server can
//! be stopped (as a hung NFS server).

use super::process::{Proc, require};
use super::wait_for;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// An sshfs mount of `src` at `mnt`, served by an `sftp-server` started
/// directly (no sshd): stopping that process hangs every system call on the
/// mount, as a hung NFS mount does.
pub struct Mount {
    /// Held for its drop, which ends sshfs after the unmount.
    _sshfs: Proc,
    pub mnt: PathBuf,
    pub server_pid: i32,
}

impl Mount {
    pub fn start(dir: &Path, src: &Path, mnt: &Path) -> Mount {
        require("/usr/bin/sshfs", "sshfs");
        let pid_file = dir.join("sftp-server.pid");
        let fake_ssh = script_at(
            &dir.join("fake-ssh"),
            &format!(
                "cd {}\necho $$ > {}\nexec /usr/lib/openssh/sftp-server",
                src.display(),
                pid_file.display()
            ),
        );
        std::fs::create_dir_all(mnt).unwrap();
        let mut sshfs = Command::new("/usr/bin/sshfs");
        sshfs
            .arg("-f")
            .arg("-o")
            .arg(format!(
                "ssh_command={},dir_cache=no,entry_timeout=0,attr_timeout=0,negative_timeout=0",
                fake_ssh.display()
            ))
            .arg(format!("x:{}", src.display()))
            .arg(mnt);
        let sshfs = Proc::spawn(sshfs, &dir.join("sshfs.log"));
        wait_for(Duration::from_secs(10), "the sshfs mount", || {
            mnt.join("mounted").exists()
        });
        let server_pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Mount {
            _sshfs: sshfs,
            mnt: mnt.to_path_buf(),
            server_pid,
        }
    }

    pub fn signal_server(&self, sig: i32) {
        // SAFETY: kill(2) on the sftp-server this test started.
        assert_eq!(unsafe { libc::kill(self.server_pid, sig) }, 0);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.server_pid, libc::SIGCONT) };
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mnt)
            .status();
    }
}

fn script_at(p: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.to_path_buf()
}
