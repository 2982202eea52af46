//! Running a rule's handler program: an argv with placeholders, no shell, a
//! cleared environment with the tracked properties as FERRY_* variables, a
//! timeout. How the process is run and killed is in `child`, how its output
//! is kept in `tail`.

mod child;
mod tail;

use super::error::FileError;
use crate::config::Handler;
use crate::remote::ErrorKind;
use crate::text::Escaped;
use std::ffi::OsString;

/// The tracked properties of one delivered file version.
#[derive(Debug, Clone)]
pub struct Props {
    pub rule: String,
    pub host: String,
    pub port: u16,
    pub remote_dir: String,
    pub remote_path: String,
    pub name: String,
    pub move_to_dir: String,
    /// The server's mtime, RFC 3339 UTC.
    pub timestamp: String,
    pub size: u64,
    pub local_path: String,
    pub attempt: i64,
    /// SHA-256 of the file's bytes, lowercase hex, computed while they
    /// streamed; empty for a row downloaded before ferry recorded it.
    pub sha256: String,
}

impl Props {
    fn value(&self, key: &str) -> Option<String> {
        Some(match key {
            "local_path" => self.local_path.clone(),
            "name" => self.name.clone(),
            "remote_path" => self.remote_path.clone(),
            "remote_dir" => self.remote_dir.clone(),
            "rule" => self.rule.clone(),
            "size" => self.size.to_string(),
            "timestamp" => self.timestamp.clone(),
            "attempt" => self.attempt.to_string(),
            "sha256" => self.sha256.clone(),
            _ => return None,
        })
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("FERRY_FILE_NAME", self.name.clone()),
            ("FERRY_REMOTE_DIR", self.remote_dir.clone()),
            ("FERRY_REMOTE_PATH", self.remote_path.clone()),
            ("FERRY_HOST", self.host.clone()),
            ("FERRY_PORT", self.port.to_string()),
            ("FERRY_MOVE_TO_DIR", self.move_to_dir.clone()),
            ("FERRY_TIMESTAMP", self.timestamp.clone()),
            ("FERRY_SIZE", self.size.to_string()),
            ("FERRY_RULE", self.rule.clone()),
            ("FERRY_LOCAL_PATH", self.local_path.clone()),
            ("FERRY_ATTEMPT", self.attempt.to_string()),
        ];
        if !self.sha256.is_empty() {
            env.push(("FERRY_SHA256", self.sha256.clone()));
        }
        env
    }

    /// Replaces `{key}` placeholders; each argument stays one argument,
    /// whatever characters the file name holds.
    pub fn expand(&self, arg: &str) -> String {
        let mut out = String::with_capacity(arg.len());
        let mut rest = arg;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            match after
                .find('}')
                .and_then(|end| Some((end, self.value(&after[..end])?)))
            {
                Some((end, v)) => {
                    out.push_str(&v);
                    rest = &after[end + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Where a handler finds programs when ferry itself has no PATH.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Runs the handler; its exit status decides, 0 is success. A non-zero exit
/// or a timeout is temporary (the handler's backend may come back); a
/// program that cannot be started is permanent.
pub async fn run(h: &Handler, props: &Props) -> Result<(), FileError> {
    let argv: Vec<String> = h.argv.iter().map(|a| props.expand(a)).collect();
    let program = Escaped(&argv[0]);
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(environment(&h.env, props, |name| std::env::var_os(name)));
    let running = child::spawn(&mut cmd).map_err(|e| {
        let temporary = e.kind() != std::io::ErrorKind::NotFound
            && e.kind() != std::io::ErrorKind::PermissionDenied;
        let kind = if temporary {
            ErrorKind::Other
        } else {
            ErrorKind::NotFound
        };
        FileError {
            kind,
            temporary,
            hold: None,
            lost: false,
            message: format!("cannot start handler \"{program}\": {e}"),
        }
    })?;
    let started = std::time::Instant::now();
    let done = running.finish(h.timeout).await.map_err(|e| {
        FileError::temporary(ErrorKind::Other, format!("handler \"{program}\": {e}"))
    })?;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (stdout, stderr) = (done.stdout.text(), done.stderr.text());
    let said = match (stderr.is_empty(), stdout.is_empty()) {
        (false, _) => format!(": {stderr}"),
        (true, false) => format!(": {stdout}"),
        (true, true) => String::new(),
    };
    match done.status {
        Some(status) if status.success() => {
            tracing::info!(program = %program, duration_ms, stdout = %stdout, stderr = %stderr, "handler succeeded");
            Ok(())
        }
        Some(status) => Err(FileError::temporary(
            ErrorKind::Other,
            format!("handler \"{program}\" failed ({status}){said}"),
        )),
        None => Err(FileError::temporary(
            ErrorKind::Timeout,
            format!(
                "handler \"{program}\" timed out after {}; its process group was killed{said}",
                humantime::format_duration(h.timeout)
            ),
        )),
    }
}

/// The handler's whole environment: PATH (a default when ferry has none),
/// LANG, the variables named in `handler_env` that ferry has, and the
/// FERRY_* properties. Nothing else of ferry's environment, where its own
/// secrets (`password = { env = ... }`) may be, reaches a handler.
fn environment(
    pass: &[String],
    props: &Props,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Vec<(String, OsString)> {
    let path = lookup("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let mut env = vec![("PATH".to_string(), path)];
    for name in std::iter::once("LANG").chain(pass.iter().map(String::as_str)) {
        if let Some(value) = lookup(name) {
            env.push((name.to_string(), value));
        }
    }
    // Last, so a property wins over a passed-through variable of its name.
    env.extend(
        props
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into())),
    );
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn props() -> Props {
        Props {
            rule: "r".into(),
            host: "h".into(),
            port: 22,
            remote_dir: "/in".into(),
            remote_path: "/in/a b;rm -rf.csv".into(),
            name: "a b;rm -rf.csv".into(),
            move_to_dir: String::new(),
            timestamp: "2026-11-24T00:15:00Z".into(),
            size: 3,
            local_path: "/out/a b;rm -rf.csv".into(),
            attempt: 2,
            sha256: String::new(),
        }
    }

    #[test]
    fn expands_placeholders_into_single_arguments() {
        let p = props();
        assert_eq!(p.expand("{local_path}"), "/out/a b;rm -rf.csv");
        assert_eq!(
            p.expand("--n={name}:{size}:{attempt}"),
            "--n=a b;rm -rf.csv:3:2"
        );
        assert_eq!(p.expand("{unknown} {"), "{unknown} {");
    }

    #[test]
    fn the_digest_is_passed_when_known() {
        let mut p = props();
        assert!(!p.env().iter().any(|(k, _)| *k == "FERRY_SHA256"));
        p.sha256 = "ab".repeat(32);
        let env = p.env();
        let got = env.iter().find(|(k, _)| *k == "FERRY_SHA256");
        assert_eq!(got.map(|(_, v)| v.as_str()), Some(&*"ab".repeat(32)));
        assert_eq!(p.expand("{sha256}"), "ab".repeat(32));
    }

    fn handler(argv: &[&str], timeout: Duration) -> Handler {
        Handler {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            timeout,
            env: vec![],
        }
    }

    /// A process that has exited is gone even while nobody reaps it.
    fn gone(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, s)| s.starts_with('Z')),
            Err(_) => true,
        }
    }

    /// Whether `pid` is gone within `timeout`.
    async fn gone_within(pid: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while !gone(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gone(pid)
    }

    fn kill(pid: &str) {
        let pid: i32 = pid.trim().parse().unwrap();
        // SAFETY: kill(2) on the test's own grandchild, by its pid.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }

    #[tokio::test]
    async fn runs_without_a_shell_and_reports_failures() {
        let ok = handler(&["test", "-n", "{name}"], Duration::from_secs(5));
        run(&ok, &props()).await.unwrap();
        let fail = handler(
            &["sh", "-c", "echo boom >&2; exit 3"],
            Duration::from_secs(5),
        );
        let e = run(&fail, &props()).await.unwrap_err();
        assert!(e.temporary && e.message.contains("boom"), "{}", e.message);
        let slow = handler(&["sleep", "5"], Duration::from_millis(100));
        let e = run(&slow, &props()).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        let missing = handler(&["/nonexistent/ferry-handler"], Duration::from_secs(1));
        assert!(!run(&missing, &props()).await.unwrap_err().temporary);
    }

    #[test]
    fn the_environment_holds_path_lang_passed_names_and_properties_only() {
        let ferry_env = |name: &str| match name {
            "LANG" => Some("de_DE.UTF-8".into()),
            "TOKEN" => Some("t".into()),
            "FERRY_RULE" => Some("not this".into()),
            _ => None,
        };
        let pass = ["TOKEN".to_string(), "UNSET".into(), "FERRY_RULE".into()];
        let env = environment(&pass, &props(), ferry_env);
        let get = |n: &str| {
            let v: Vec<_> = env.iter().filter(|(k, _)| k == n).map(|(_, v)| v).collect();
            v.last().map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(get("PATH").as_deref(), Some(DEFAULT_PATH));
        assert_eq!(get("LANG").as_deref(), Some("de_DE.UTF-8"));
        assert_eq!(get("TOKEN").as_deref(), Some("t"));
        assert_eq!(get("UNSET"), None);
        assert_eq!(get("FERRY_RULE").as_deref(), Some("r"));
        assert_eq!(env.len(), 3 + 1 + props().env().len());
    }

    #[tokio::test]
    async fn the_handler_gets_nothing_else_of_ferrys_environment() {
        // HOME is set for any test run; the handler must not see it.
        assert!(std::env::var_os("HOME").is_some());
        let h = handler(&["sh", "-c", "env >&2; exit 1"], Duration::from_secs(5));
        let e = run(&h, &props()).await.unwrap_err();
        assert!(e.message.contains("FERRY_RULE=r"), "{}", e.message);
        assert!(e.message.contains("PATH="), "{}", e.message);
        assert!(!e.message.contains("HOME="), "{}", e.message);
    }

    #[tokio::test]
    async fn a_flood_of_output_leaves_only_an_escaped_tail() {
        let script =
            "head -c 50000000 /dev/zero | tr '\\0' x; printf '\\nthe \\033[31mend\\n' >&2; exit 1";
        let h = handler(&["sh", "-c", script], Duration::from_secs(60));
        let e = run(&h, &props()).await.unwrap_err();
        assert!(
            e.message.len() < tail::TAIL + 200,
            "{} bytes",
            e.message.len()
        );
        assert!(e.message.ends_with("the \\x1b[31mend"), "{}", e.message);
        let h = handler(
            &["sh", "-c", "head -c 50000000 /dev/zero; exit 4"],
            Duration::from_secs(60),
        );
        let e = run(&h, &props()).await.unwrap_err();
        assert!(e.message.contains("…\\x00\\x00"), "{}", &e.message[..100]);
        assert!(
            e.message.len() < 5 * tail::TAIL,
            "{} bytes",
            e.message.len()
        );
    }

    #[tokio::test]
    async fn the_exit_status_decides_even_while_a_background_process_holds_the_pipes() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let pidfile_arg = pidfile.to_str().unwrap();
        let script = "sleep 600 & echo $! > \"$0\"; echo started; exit 0";
        let h = handler(&["sh", "-c", script, pidfile_arg], Duration::from_secs(30));
        let started = std::time::Instant::now();
        let result = run(&h, &props()).await;
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        kill(&pid);
        result.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let pidfile_arg = pidfile.to_str().unwrap();
        let script = "sleep 600 & echo $! > \"$0\"; echo waiting >&2; wait";
        let h = handler(
            &["sh", "-c", script, pidfile_arg],
            Duration::from_millis(500),
        );
        let e = run(&h, &props()).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.message.contains("waiting"), "{}", e.message);
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let survived = !gone_within(&pid, Duration::from_secs(5)).await;
        kill(&pid);
        assert!(
            !survived,
            "the handler's background process outlived the timeout"
        );
    }

    #[tokio::test]
    async fn an_abandoned_attempt_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let pidfile_arg = pidfile.to_str().unwrap();
        let script = "sleep 600 & echo $! > \"$0\"; wait";
        let h = handler(&["sh", "-c", script, pidfile_arg], Duration::from_secs(600));
        // Dropping the future is what a stop after the grace period does.
        let dropped = tokio::time::timeout(Duration::from_millis(500), run(&h, &props())).await;
        assert!(dropped.is_err());
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let survived = !gone_within(&pid, Duration::from_secs(5)).await;
        kill(&pid);
        assert!(
            !survived,
            "the handler's background process outlived its attempt"
        );
    }
}
