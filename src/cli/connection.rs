//! `ferry test-connection SERVER`: the first thing to run against a new
//! partner. Connects, authenticates, lists, and prints the server's identity
//! so that it can be pinned.

use crate::config;
use crate::daemon::{EXIT_CONFIG, EXIT_FAILURES, EXIT_OK};
use crate::remote::{EntryKind, Pool};
use crate::text::Escaped;
use std::path::Path;
use std::time::Instant;

pub async fn test(config_path: &Path, name: &str, dir: Option<&str>) -> i32 {
    let cfg = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let Some(server) = cfg.servers.get(name) else {
        let known: Vec<_> = cfg.servers.keys().map(String::as_str).collect();
        eprintln!(
            "no server \"{name}\" in {} (defined: {})",
            config_path.display(),
            known.join(", ")
        );
        return EXIT_CONFIG;
    };
    let dir = dir.map(str::to_string).unwrap_or_else(|| {
        let rule = cfg.rules.iter().find(|r| r.server.name == *name);
        rule.map_or_else(|| "/".to_string(), |r| r.remote_dir.clone())
    });
    println!(
        "server {name}: {} {}:{}",
        server.protocol.as_str(),
        server.host,
        server.port
    );
    let t0 = Instant::now();
    let pool = Pool::new(server.clone());
    let mut session = match pool.get().await {
        Ok(s) => s,
        Err(e) => {
            println!("connect: FAILED: {e}");
            return EXIT_FAILURES;
        }
    };
    println!(
        "connected and authenticated in {} ms",
        t0.elapsed().as_millis()
    );
    if let Some(id) = session.identity() {
        println!("{id}");
    }
    match session.list(&dir).await {
        Ok(entries) => {
            let files = entries.iter().filter(|e| e.kind == EntryKind::File).count();
            println!("list {dir}: {} entries ({files} files)", entries.len());
            for e in entries.iter().take(10) {
                println!(
                    "  {:<9?} {:>12} {}",
                    e.kind,
                    e.size.map_or("?".into(), |s| s.to_string()),
                    Escaped(&e.name)
                );
            }
            EXIT_OK
        }
        Err(e) => {
            println!("list {dir}: FAILED: {e}");
            EXIT_FAILURES
        }
    }
}
