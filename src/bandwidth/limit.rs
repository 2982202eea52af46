//! One limit (a server's or a rule's) shared by every transfer under it:
//! a governor GCRA limiter for the rate in force, rebuilt when the
//! schedule moves to another slot or a reload changes the setting, and a
//! FIFO turn so that transfers waiting together are served in order.

use super::schedule::{self, Bandwidth};
use governor::{DefaultDirectRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most bytes that may pass at once after a pause: the limiter's
/// burst, about 50 ms at 5 MB/s. Small, so no transfer runs far ahead;
/// large enough that a task the OS schedules a few milliseconds late
/// (a loaded host) finds that time credited rather than lost: with a
/// 64 KiB burst, 20 MiB at 5 MB/s took 4.33 s on a loaded machine
/// instead of 4.14 s.
pub const MAX_BURST: u64 = 256 * 1024;

/// A grant is at most a quarter of the burst: a waiter that wakes a little
/// late (timers have a resolution of a millisecond) finds the time it
/// overslept credited in the rest of the burst instead of lost, so a
/// limit is met, not undershot.
const GRANTS_PER_BURST: u64 = 4;

/// How often the schedule is read again: a new slot applies within this
/// (plus one chunk's wait) to transfers in flight.
const RECHECK: Duration = Duration::from_millis(500);

/// A limit's limiter for one rate.
struct Gate {
    rate: u64,
    limiter: DefaultDirectRateLimiter,
    /// Bytes per cell: cells are bytes up to 1 MB/s; above, a cell is
    /// bigger, so that one cell is never shorter than a microsecond
    /// (governor keeps nanoseconds) and the rate stays exact to 0.1%.
    unit: u64,
    /// The largest grant, in bytes: a whole number of cells, a quarter
    /// of the burst.
    chunk: u64,
}

impl Gate {
    fn new(rate: u64) -> Self {
        let unit = rate.div_ceil(1_000_000).max(1);
        // The burst is at most a tenth of a second's worth, so that at low
        // rates the turns stay short and a schedule change lands soon.
        let least = unit * GRANTS_PER_BURST;
        let burst = (rate / 10).clamp(least, MAX_BURST.max(least));
        let cells = (burst / unit).clamp(1, u32::MAX as u64) as u32;
        let period_ns = (unit as u128 * 1_000_000_000 / rate as u128).max(1) as u64;
        let quota = Quota::with_period(Duration::from_nanos(period_ns))
            .expect("period is at least 1 ns")
            .allow_burst(NonZeroU32::new(cells).expect("at least one cell"));
        Self {
            rate,
            limiter: DefaultDirectRateLimiter::direct(quota),
            unit,
            chunk: (cells as u64 / GRANTS_PER_BURST).max(1) * unit,
        }
    }

    /// Waits until `bytes` (at most `self.chunk`) may go.
    async fn take(&self, bytes: u64) {
        let cells = bytes.div_ceil(self.unit).max(1) as u32;
        let n = NonZeroU32::new(cells).expect("at least one cell");
        loop {
            match self.limiter.check_n(n) {
                Ok(Ok(())) | Err(_) => return,
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(Instant::now());
                    tokio::time::sleep(wait.max(Duration::from_micros(100))).await;
                }
            }
        }
    }
}

struct Current {
    bandwidth: Bandwidth,
    checked: Option<Instant>,
    gate: Option<Arc<Gate>>,
}

/// A limit shared by every transfer under one server or rule.
pub struct Limit {
    /// `server NAME` or `rule NAME`, for the log line of a change.
    what: String,
    current: Mutex<Current>,
    /// Waiting transfers take turns in arrival order (tokio's mutex is
    /// fair), so a limit is shared evenly, not by who polls first.
    turn: tokio::sync::Mutex<()>,
}

impl Limit {
    pub fn new(what: impl Into<String>, bandwidth: Bandwidth) -> Arc<Self> {
        Arc::new(Self {
            what: what.into(),
            current: Mutex::new(Current {
                bandwidth,
                checked: None,
                gate: None,
            }),
            turn: tokio::sync::Mutex::new(()),
        })
    }

    /// No limit (a server without `bandwidth`).
    pub fn unlimited() -> Arc<Self> {
        Self::new("", Bandwidth::unlimited())
    }

    /// A reload's new setting; transfers in flight follow it from their
    /// next chunk.
    pub fn set(&self, bandwidth: &Bandwidth) {
        let mut c = self.current.lock().expect("limit lock");
        if c.bandwidth != *bandwidth {
            c.bandwidth = bandwidth.clone();
            c.checked = None;
        }
    }

    /// Waits until `bytes` may move under this limit, a grant at a time.
    /// The turn is taken per grant, not for all of `bytes`: a batch paying
    /// for megabytes interleaves with the transfers waiting beside it
    /// instead of stalling them (and their `io_timeout`) until it is done.
    pub async fn acquire(&self, mut bytes: u64) {
        while bytes > 0 {
            if self.gate().is_none() {
                return;
            }
            let _turn = self.turn.lock().await;
            let Some(gate) = self.gate() else { return };
            let n = bytes.min(gate.chunk);
            gate.take(n).await;
            bytes -= n;
        }
    }

    /// The limiter for the rate in force now (`None`: no limit), reading
    /// the schedule again every [`RECHECK`].
    fn gate(&self) -> Option<Arc<Gate>> {
        let mut c = self.current.lock().expect("limit lock");
        if c.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return c.gate.clone();
        }
        c.checked = Some(Instant::now());
        let rate = if c.bandwidth.is_unlimited() {
            None
        } else {
            c.bandwidth.rate_at(minute_now())
        };
        if rate != c.gate.as_ref().map(|g| g.rate) {
            if !self.what.is_empty() {
                tracing::info!(limit = %self.what, rate = %schedule::describe(rate), "bandwidth limit in force");
            }
            c.gate = rate.map(|r| Arc::new(Gate::new(r)));
        }
        c.gate.clone()
    }

    /// The largest grant now (for the adapters' reads and writes).
    pub fn chunk(&self) -> Option<u64> {
        self.gate().map(|g| g.chunk)
    }

    /// The rate in force now, bytes/s (`None`: no limit).
    pub fn rate_now(&self) -> Option<u64> {
        self.gate().map(|g| g.rate)
    }
}

/// The minute of the day in local time (`TZ`, else `/etc/localtime`).
fn minute_now() -> u16 {
    use chrono::Timelike;
    let now = chrono::Local::now();
    (now.hour() * 60 + now.minute()) as u16
}

/// The limits a transfer is under: its server's, and its rule's when the
/// rule has one. Cheap to clone.
#[derive(Clone, Default)]
pub struct Throttle {
    limits: Vec<Arc<Limit>>,
}

impl Throttle {
    pub fn of(limit: Arc<Limit>) -> Self {
        Self {
            limits: vec![limit],
        }
    }

    /// This throttle and `limit` too.
    pub fn and(mut self, limit: Arc<Limit>) -> Self {
        if !self.limits.iter().any(|l| Arc::ptr_eq(l, &limit)) {
            self.limits.push(limit);
        }
        self
    }

    /// Waits until `bytes` may move under every limit. Each limit is taken
    /// in turn, never one held while waiting for another, so two
    /// transfers under the same two limits cannot block each other.
    pub async fn acquire(&self, bytes: u64) {
        for l in self.limits.iter().rev() {
            l.acquire(bytes).await;
        }
    }

    /// The tightest rate in force now, bytes/s (`None`: no limit).
    pub fn rate_now(&self) -> Option<u64> {
        self.limits.iter().filter_map(|l| l.rate_now()).min()
    }

    /// The largest grant that keeps every limit's turns short; `None`
    /// when no limit is in force now.
    pub fn chunk(&self) -> Option<u64> {
        self.limits.iter().filter_map(|l| l.chunk()).min()
    }
}

/// Every server's and rule's limit by name, kept across reloads: a server
/// block changed by a reload gets a new session pool, but its transfers
/// (old pool and new) share one limit, which the reload updates in place.
#[derive(Default)]
pub struct Limits {
    servers: Mutex<std::collections::HashMap<String, Arc<Limit>>>,
    rules: Mutex<std::collections::HashMap<String, Arc<Limit>>>,
}

impl Limits {
    /// The server's limit; made from `bandwidth` the first time the name
    /// is seen (a reload updates it through [`Limits::set_server`]).
    pub fn server(&self, name: &str, bandwidth: &Bandwidth) -> Arc<Limit> {
        Self::get(&self.servers, "server", name, bandwidth)
    }

    /// The rule's limit, as [`Limits::server`].
    pub fn rule(&self, name: &str, bandwidth: &Bandwidth) -> Arc<Limit> {
        Self::get(&self.rules, "rule", name, bandwidth)
    }

    pub fn set_server(&self, name: &str, bandwidth: &Bandwidth) {
        Self::get(&self.servers, "server", name, bandwidth).set(bandwidth);
    }

    pub fn set_rule(&self, name: &str, bandwidth: &Bandwidth) {
        Self::get(&self.rules, "rule", name, bandwidth).set(bandwidth);
    }

    fn get(
        map: &Mutex<std::collections::HashMap<String, Arc<Limit>>>,
        kind: &str,
        name: &str,
        bandwidth: &Bandwidth,
    ) -> Arc<Limit> {
        map.lock()
            .expect("limits lock")
            .entry(name.to_string())
            .or_insert_with(|| Limit::new(format!("{kind} {name}"), bandwidth.clone()))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_keep_the_rate_exact_and_chunks_short() {
        let g = Gate::new(5_000_000);
        assert_eq!((g.unit, g.chunk), (5, 65_535));
        let g = Gate::new(20_000);
        assert_eq!((g.unit, g.chunk), (1, 500));
        let g = Gate::new(1_000_000_000);
        assert_eq!(g.unit, 1000);
        assert!(
            g.chunk <= MAX_BURST / 4 && g.chunk.is_multiple_of(1000),
            "{}",
            g.chunk
        );
    }

    #[tokio::test]
    async fn a_limit_holds_its_rate() {
        let limit = Limit::new("t", Bandwidth::constant(Some(1_000_000)));
        let t0 = Instant::now();
        // 300 KB at 1 MB/s: the first chunk (the burst) is free.
        for _ in 0..30 {
            limit.acquire(10_000).await;
        }
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(180) && took < Duration::from_millis(700),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn two_takers_share_one_limit_evenly() {
        let limit = Limit::new("t", Bandwidth::constant(Some(1_000_000)));
        let t0 = Instant::now();
        let take = |l: Arc<Limit>| async move {
            for _ in 0..60 {
                l.acquire(10_000).await;
            }
            t0.elapsed()
        };
        let (a, b) = tokio::join!(take(limit.clone()), take(limit.clone()));
        // 1.2 MB in all at 1 MB/s, 0.1 MB of it the burst: each finishes
        // near the end, not one after the other (only the burst goes to
        // the first to ask).
        let (first, last) = (a.min(b), a.max(b));
        assert!(last >= Duration::from_millis(1000), "{last:?}");
        assert!(first * 10 >= last * 8, "{first:?} vs {last:?}");
    }

    #[tokio::test]
    async fn a_large_payment_does_not_hold_up_a_small_one() {
        let limit = Limit::new("t", Bandwidth::constant(Some(1_000_000)));
        let big = tokio::spawn({
            let l = limit.clone();
            async move { l.acquire(1_000_000).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t0 = Instant::now();
        limit.acquire(10_000).await;
        let waited = t0.elapsed();
        assert!(waited < Duration::from_millis(300), "{waited:?}");
        assert!(!big.is_finished(), "the big one is still paying");
        big.await.unwrap();
    }

    #[tokio::test]
    async fn off_and_a_reload_to_off_let_everything_through() {
        let limit = Limit::new("t", Bandwidth::constant(Some(1_000)));
        limit.set(&Bandwidth::unlimited());
        let t0 = Instant::now();
        limit.acquire(100_000_000).await;
        assert!(t0.elapsed() < Duration::from_millis(50));
        assert!(Throttle::default().chunk().is_none());
    }

    #[test]
    fn limits_keep_one_object_per_name_across_reloads() {
        let limits = Limits::default();
        let a = limits.server("p", &Bandwidth::constant(Some(5_000_000)));
        limits.set_server("p", &Bandwidth::unlimited());
        let b = limits.server("p", &Bandwidth::constant(Some(1_000)));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.chunk().is_none(), "the reload's setting holds");
    }
}
