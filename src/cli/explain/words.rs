//! A row and its history in plain words: where the file is in the
//! pipeline, what it waits for and until when.

use super::super::time;
use crate::config::{PostAction, Rule};
use crate::state::{FileRow, FileState, HistoryEntry};
use crate::text::escape;

/// `4s`, `2m 5s`: how long until `ms` (never negative).
fn wait(ms: i64) -> String {
    let secs = (ms.max(0) + 999) / 1000;
    humantime::format_duration(std::time::Duration::from_secs(secs as u64)).to_string()
}

/// What the latest row of a file says, with the rule (if it is still
/// configured) for its windows, retries and post-action.
pub fn latest(row: &FileRow, rule: Option<&Rule>, now: i64) -> Vec<String> {
    let mut out = Vec::new();
    let attempts = attempts(row, rule);
    match row.state {
        FileState::Seen | FileState::Stable => pending(row, rule, now, &attempts, &mut out),
        FileState::Downloading => out.push(format!(
            "being transferred ({attempts}), {} bytes so far; a stop or crash resumes it at the next poll",
            row.bytes_done
        )),
        FileState::Downloaded => out.push(format!(
            "transferred whole; being delivered as {}",
            row.local_path.as_deref().or(row.sent_to.as_deref()).unwrap_or("-")
        )),
        FileState::Delivered => {
            out.push(delivered(row));
            out.push(format!("the post-action ({}) is still to run", after(rule)));
        }
        FileState::Done => {
            out.push(delivered(row));
            out.push(format!("then {} (done at {})", after(rule), time(row.done_at_ms)));
        }
        FileState::Failed => failed(row, &attempts, &mut out),
        FileState::Skipped => out.push(format!(
            "not sent: {} (if_exists = \"skip\"); it stays in the outbox",
            escape(row.last_error.as_deref().unwrap_or("the name was taken"))
        )),
    }
    if let Some(sha) = &row.sha256 {
        out.push(format!("SHA-256 of the bytes transferred: {sha}"));
    }
    out
}

fn attempts(row: &FileRow, rule: Option<&Rule>) -> String {
    match rule {
        Some(r) => format!(
            "attempt {}, {} failed of retry.attempts = {}",
            row.attempts, row.failures, r.retry.attempts
        ),
        None => format!("attempt {}, {} failed", row.attempts, row.failures),
    }
}

fn pending(row: &FileRow, rule: Option<&Rule>, now: i64, attempts: &str, out: &mut Vec<String>) {
    let error = escape(row.last_error.as_deref().unwrap_or("-"));
    if let Some(why) = &row.held {
        out.push(format!("held without spending attempts ({why}): {error}"));
    } else if row.failures > 0 {
        out.push(format!("the last attempt failed ({attempts}): {error}"));
    }
    if let Some(next) = row.next_attempt_ms.filter(|&t| t > now) {
        out.push(format!(
            "next attempt at {} (in {})",
            time(Some(next)),
            wait(next - now)
        ));
    }
    let Some(rule) = rule else {
        return;
    };
    let stable_at = row.stable_since_ms + rule.stable_for.as_millis() as i64;
    let old_at = row.first_seen_ms + rule.min_age.as_millis() as i64;
    let for_ = humantime::format_duration(rule.stable_for);
    if stable_at > now {
        out.push(format!(
            "waiting for stable_for = {for_}: unchanged since {}, stable in {}",
            time(Some(row.stable_since_ms)),
            wait(stable_at - now)
        ));
    } else {
        out.push(format!(
            "stable: size and mtime unchanged for at least {for_}"
        ));
    }
    if old_at > now {
        let min_age = humantime::format_duration(rule.min_age);
        out.push(format!(
            "waiting for min_age = {min_age}: first seen {}, old enough in {}",
            time(Some(row.first_seen_ms)),
            wait(old_at - now)
        ));
    }
    if let Some(m) = &rule.ready_marker {
        let name = row.path.rsplit('/').next().unwrap_or(&row.path);
        let marker = crate::engine::filter::marker_for(m, name);
        out.push(format!(
            "taken only once its ready marker {marker} exists beside it"
        ));
    }
    if let Some(c) = &rule.checksum_file {
        let name = row.path.rsplit('/').next().unwrap_or(&row.path);
        let sidecar = crate::engine::filter::marker_for(c, name);
        out.push(format!(
            "taken only once its checksum file {sidecar} exists beside it; its digest is checked before the rename"
        ));
    }
    if stable_at <= now && old_at <= now && row.next_attempt_ms.is_none_or(|t| t <= now) {
        out.push("due: the next poll takes it".into());
    }
}

fn delivered(row: &FileRow) -> String {
    match (&row.sent_to, &row.local_path) {
        (Some(to), _) => format!("sent as {to} at {}", time(row.delivered_at_ms)),
        (None, Some(p)) if !p.is_empty() => {
            format!("delivered to {p} at {}", time(row.delivered_at_ms))
        }
        _ => format!("delivered at {}", time(row.delivered_at_ms)),
    }
}

fn after(rule: Option<&Rule>) -> String {
    match rule.map(|r| &r.after) {
        Some(PostAction::MoveTo(d)) => format!("moved to {d}"),
        Some(PostAction::Delete) => "deleted at the source".into(),
        Some(PostAction::Keep) => "left at the source (no move_to or delete)".into(),
        None => "post-action of a rule no longer configured".into(),
    }
}

fn failed(row: &FileRow, attempts: &str, out: &mut Vec<String>) {
    let error = escape(row.last_error.as_deref().unwrap_or("-"));
    out.push(format!("failed for good ({attempts}): {error}"));
    if row.delivered_at_ms.is_some() {
        out.push(format!("{}; only its post-action failed", delivered(row)));
    }
    if let Some(to) = &row.failed_moved_to {
        out.push(format!("moved to {to} on the server (failed_move_to)"));
    }
    out.push(format!("`ferry retry --id {}` requeues it", row.id));
}

/// One line per change: time, event, from -> to, and what goes with it.
pub fn history_line(h: &HistoryEntry) -> String {
    let mut line = format!(
        "{}  {:<10} {} -> {}",
        time(Some(h.at_ms)),
        h.event,
        h.from_state.as_deref().unwrap_or("(new)"),
        h.to_state
    );
    if h.attempt > 0 && matches!(h.event.as_str(), "attempt" | "retry" | "failed" | "held") {
        line.push_str(&format!("  attempt {}", h.attempt));
    }
    if let Some(b) = h.bytes {
        line.push_str(&format!("  {b} bytes"));
    }
    if let Some(e) = &h.error {
        line.push_str(&format!("  error: {}", escape(e)));
    }
    if h.event == "retry"
        && let Some(next) = h.next_attempt_ms
    {
        line.push_str(&format!("  next attempt {}", time(Some(next))));
    }
    line
}
