//! `ferry files`, `ferry retry` and `ferry forget`.

use super::{open_state, time};
use crate::daemon::{EXIT_FAILURES, EXIT_OK, EXIT_RUNTIME};
use crate::state::{FileFilter, now_ms};
use crate::text::Escaped;
use std::path::Path;

pub async fn list(config: &Path, filter: &FileFilter, json: bool) -> i32 {
    let state = match open_state(config).await {
        Ok((_, s)) => s,
        Err(code) => return code,
    };
    let rows = match state.files(filter).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot read the state database: {e}");
            return EXIT_RUNTIME;
        }
    };
    if json {
        for r in &rows {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
        return EXIT_OK;
    }
    println!(
        "{:>6} {:<16} {:<11} {:>10} {:>8} {:<21} {:<32} LAST ERROR",
        "ID", "RULE", "STATE", "SIZE", "ATTEMPTS", "UPDATED", "PATH"
    );
    for r in &rows {
        println!(
            "{:>6} {:<16} {:<11} {:>10} {:>8} {:<21} {:<32} {}",
            r.id,
            r.rule,
            r.state.as_str(),
            r.size,
            r.attempts,
            time(Some(r.updated_at_ms)),
            // Names and errors come from the partner's server: shown escaped.
            Escaped(&r.path).to_string(),
            Escaped(r.last_error.as_deref().unwrap_or("-"))
        );
    }
    EXIT_OK
}

pub async fn retry(config: &Path, filter: &FileFilter) -> i32 {
    let state = match open_state(config).await {
        Ok((_, s)) => s,
        Err(code) => return code,
    };
    match state.retry(filter, now_ms()).await {
        Ok(n) => {
            println!("requeued {n} failed file(s)");
            if n == 0 { EXIT_FAILURES } else { EXIT_OK }
        }
        Err(e) => {
            eprintln!("cannot update the state database: {e}");
            EXIT_RUNTIME
        }
    }
}

pub async fn forget(config: &Path, filter: &FileFilter) -> i32 {
    let state = match open_state(config).await {
        Ok((_, s)) => s,
        Err(code) => return code,
    };
    match state.forget(filter).await {
        Ok(n) => {
            println!("forgot {n} file(s)");
            if n == 0 { EXIT_FAILURES } else { EXIT_OK }
        }
        Err(e) => {
            eprintln!("cannot update the state database: {e}");
            EXIT_RUNTIME
        }
    }
}
