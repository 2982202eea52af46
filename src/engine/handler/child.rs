//! A handler's process: started in a process group of its own, its output
//! read into bounded tails, waited for under a timeout, and on timeout (or
//! when ferry drops the attempt) killed with its whole group, so that
//! nothing it started lives on.

use super::tail::Tail;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// How long output is still read once the handler has exited. A process it
/// left in the background may hold the pipes open for ever; its output is
/// not the handler's result, and the exit status alone decides.
const DRAIN: Duration = Duration::from_secs(1);

/// How a handler run ended, with the tails of its output.
#[derive(Debug)]
pub struct Finished {
    /// `None`: it timed out and its group was killed.
    pub status: Option<ExitStatus>,
    pub stdout: Tail,
    pub stderr: Tail,
}

/// A started handler; dropping it before [`Running::finish`] returns kills
/// its process group.
pub struct Running {
    child: Child,
    /// The child's pid, which is also its group's id.
    group: libc::pid_t,
    /// Once the child is reaped its pid may be reused: the group is never
    /// signalled after that.
    reaped: bool,
}

/// Starts `cmd` as the leader of a new process group, stdin closed, stdout
/// and stderr piped to ferry.
pub fn spawn(cmd: &mut Command) -> io::Result<Running> {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("the handler has no pid"))?;
    Ok(Running {
        child,
        group: pid as libc::pid_t,
        reaped: false,
    })
}

impl Running {
    /// Waits for the handler's exit for at most `timeout`, reading its
    /// output meanwhile and for at most [`DRAIN`] after.
    pub async fn finish(mut self, timeout: Duration) -> io::Result<Finished> {
        let (mut stdout, mut stderr) = (Tail::default(), Tail::default());
        let pipes = (self.child.stdout.take(), self.child.stderr.take());
        let status = {
            let reading = read_both(pipes, &mut stdout, &mut stderr);
            tokio::pin!(reading);
            let mut read_all = false;
            let waited = tokio::time::timeout(timeout, async {
                loop {
                    tokio::select! {
                        status = self.child.wait() => break status,
                        () = &mut reading, if !read_all => read_all = true,
                    }
                }
            })
            .await;
            let status = match waited {
                Ok(status) => Some(status?),
                Err(_) => {
                    self.kill_group();
                    self.child.wait().await?;
                    None
                }
            };
            self.reaped = true;
            if !read_all {
                let _ = tokio::time::timeout(DRAIN, &mut reading).await;
            }
            status
        };
        Ok(Finished {
            status,
            stdout,
            stderr,
        })
    }

    fn kill_group(&self) {
        if !self.reaped {
            // SAFETY: killpg(2) takes plain integers. The group id is our
            // child's pid, which is not reused while the child is unreaped.
            unsafe { libc::killpg(self.group, libc::SIGKILL) };
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_group();
    }
}

async fn read_both(
    (stdout, stderr): (Option<ChildStdout>, Option<ChildStderr>),
    out: &mut Tail,
    err: &mut Tail,
) {
    let out = async {
        if let Some(p) = stdout {
            out.read_from(p).await;
        }
    };
    let err = async {
        if let Some(p) = stderr {
            err.read_from(p).await;
        }
    };
    tokio::join!(out, err);
}
