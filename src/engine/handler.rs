//! Running a rule's handler program: an argv with placeholders, the tracked
//! properties as FERRY_* variables, no shell, a timeout.

use super::error::FileError;
use crate::config::Handler;
use crate::remote::ErrorKind;
use std::process::Stdio;

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
            _ => return None,
        })
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
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
        ]
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

const OUTPUT_TAIL: usize = 2000;

/// Runs the handler; exit status 0 is success. A non-zero exit or a timeout
/// is temporary (the handler's backend may come back); a program that
/// cannot be started is permanent.
pub async fn run(h: &Handler, props: &Props) -> Result<(), FileError> {
    let argv: Vec<String> = h.argv.iter().map(|a| props.expand(a)).collect();
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(props.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| {
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
            message: format!("cannot start handler {:?}: {e}", argv[0]),
        }
    })?;
    let started = std::time::Instant::now();
    let output = match tokio::time::timeout(h.timeout, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| {
            FileError::temporary(ErrorKind::Other, format!("handler {:?}: {e}", argv[0]))
        })?,
        // Dropping the future kills the child (kill_on_drop).
        Err(_) => {
            return Err(FileError::temporary(
                ErrorKind::Timeout,
                format!(
                    "handler {:?} timed out after {}",
                    argv[0],
                    humantime::format_duration(h.timeout)
                ),
            ));
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let stdout = tail(&output.stdout);
    let stderr = tail(&output.stderr);
    if output.status.success() {
        tracing::info!(program = %argv[0], duration_ms, stdout = %stdout, stderr = %stderr, "handler succeeded");
        return Ok(());
    }
    Err(FileError::temporary(
        ErrorKind::Other,
        format!(
            "handler {:?} failed ({}): {}",
            argv[0],
            output.status,
            if stderr.is_empty() { &stdout } else { &stderr }
        ),
    ))
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut start = text.len().saturating_sub(OUTPUT_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
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

    #[tokio::test]
    async fn runs_without_a_shell_and_reports_failures() {
        let ok = Handler {
            argv: vec!["test".into(), "-n".into(), "{name}".into()],
            timeout: Duration::from_secs(5),
        };
        run(&ok, &props()).await.unwrap();
        let fail = Handler {
            argv: vec!["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()],
            timeout: Duration::from_secs(5),
        };
        let e = run(&fail, &props()).await.unwrap_err();
        assert!(e.temporary && e.message.contains("boom"), "{}", e.message);
        let slow = Handler {
            argv: vec!["sleep".into(), "5".into()],
            timeout: Duration::from_millis(100),
        };
        let e = run(&slow, &props()).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        let missing = Handler {
            argv: vec!["/nonexistent/ferry-handler".into()],
            timeout: Duration::from_secs(1),
        };
        assert!(!run(&missing, &props()).await.unwrap_err().temporary);
    }
}
