//! The nodes part of `ferry status`: every host that shares the state
//! database, the age of its last heartbeat, and the leases it holds.

use crate::state::{NodeStatus, State, now_ms};
use crate::text::Escaped;

/// Prints the nodes table; nothing when no node has joined yet.
pub async fn print(state: &State) {
    let now = now_ms();
    let nodes = match state.nodes(now).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot read the nodes: {e}");
            return;
        }
    };
    if nodes.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<20} {:<24} {:>8} {:>10} {:>7} {:>8}  STATE",
        "NODE", "HOST", "PID", "HEARTBEAT", "LEASES", "LISTING"
    );
    let lease = state.me().lease_ms;
    for n in &nodes {
        println!(
            "{:<20} {:<24} {:>8} {:>10} {:>7} {:>8}  {}",
            Escaped(&n.name).to_string(),
            Escaped(&n.host).to_string(),
            n.pid,
            age(now - n.heartbeat_ms),
            n.leases,
            n.listing,
            liveness(n, now, lease)
        );
    }
}

/// `live` while the heartbeat is younger than the lease (as this
/// configuration sets it); `silent` after, when its leases are up for
/// the taking.
fn liveness(n: &NodeStatus, now: i64, lease_ms: i64) -> &'static str {
    if now - n.heartbeat_ms <= lease_ms {
        "live"
    } else {
        "silent"
    }
}

/// "850ms ago", "12s ago", "5m ago", "3h ago".
fn age(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms}ms ago"),
        1_000..120_000 => format!("{}s ago", ms / 1_000),
        120_000..7_200_000 => format!("{}m ago", ms / 60_000),
        _ => format!("{}h ago", ms / 3_600_000),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(super::age(850), "850ms ago");
        assert_eq!(super::age(12_400), "12s ago");
        assert_eq!(super::age(300_000), "5m ago");
        assert_eq!(super::age(3 * 3_600_000), "3h ago");
    }
}
