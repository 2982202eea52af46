//! Operational metrics and health, in one room: the Prometheus registry,
//! the few methods the engine and scheduler call when something happens
//! (a poll ended, a file failed, a file arrived), the rule clocks behind
//! `/healthz`, and the HTTP server (`http.rs`) that serves both. Values
//! the state database already holds (files by state) and the pools know
//! (sessions open) are read at scrape time instead of being mirrored.

mod health;
mod http;

pub use health::Stale;
pub use http::{bind, serve};

use crate::remote::ErrorKind;
use crate::state::StateCount;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollLabels {
    rule: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransferLabels {
    rule: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    rule: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    rule: String,
    direction: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabel {
    server: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric family ferry exports, registered once with its help text.
pub struct Metrics {
    registry: Registry,
    polls: Family<PollLabels, Counter>,
    poll_seconds: Histograms<RuleLabel>,
    listed: Family<RuleLabel, Gauge>,
    last_success: Family<RuleLabel, Gauge>,
    bytes: Family<TransferLabels, Counter>,
    transfer_seconds: Histograms<TransferLabels>,
    errors: Family<ErrorLabels, Counter>,
    retries: Family<RuleLabel, Counter>,
    files: Family<FileLabels, Gauge>,
    sessions: Family<ServerLabel, Gauge>,
    health: health::Clocks,
    /// One scrape at a time: each clears and refills the scrape-time
    /// families, and a second one must not encode them half refilled.
    scrape: std::sync::Mutex<()>,
}

/// Buckets from 10 ms to about 45 min: a listing of a local directory up to
/// a large file over a slow link.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 10))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("ferry"),
            polls: Family::default(),
            poll_seconds: Family::new_with_constructor(seconds_histogram),
            listed: Family::default(),
            last_success: Family::default(),
            bytes: Family::default(),
            transfer_seconds: Family::new_with_constructor(seconds_histogram),
            errors: Family::default(),
            retries: Family::default(),
            files: Family::default(),
            sessions: Family::default(),
            health: health::Clocks::default(),
            scrape: std::sync::Mutex::new(()),
        };
        let r = &mut m.registry;
        r.register(
            "polls",
            "Polls of a rule, by result (ok, error)",
            m.polls.clone(),
        );
        r.register_with_unit(
            "poll_duration",
            "How long a poll took: listing and the transfers it started",
            Unit::Seconds,
            m.poll_seconds.clone(),
        );
        r.register(
            "listed_files",
            "Files in the rule's last successful listing",
            m.listed.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "When the rule's last successful poll ended (Unix time)",
            m.last_success.clone(),
        );
        r.register_with_unit(
            "transferred",
            "Bytes of the files transferred, counted when a file is done",
            Unit::Bytes,
            m.bytes.clone(),
        );
        r.register_with_unit(
            "transfer_duration",
            "How long a file took from claim to done (a batch of small files: the batch's time)",
            Unit::Seconds,
            m.transfer_seconds.clone(),
        );
        r.register(
            "errors",
            "Failed polls and failed file attempts, by error kind",
            m.errors.clone(),
        );
        r.register(
            "retries",
            "File attempts that failed and were scheduled to be retried",
            m.retries.clone(),
        );
        r.register(
            "files",
            "Files in the state database, by rule, direction and state",
            m.files.clone(),
        );
        r.register(
            "sessions_open",
            "Sessions to a server in use, connecting or idle",
            m.sessions.clone(),
        );
        m
    }

    /// The rules whose health `/healthz` reports, after a start or reload.
    pub fn set_rules<'a>(&self, rules: impl IntoIterator<Item = (&'a str, Duration)>) {
        self.health.set_rules(rules);
    }

    /// A poll of `rule` ended; `listed` is its listing size when it succeeded.
    pub fn poll(&self, rule: &str, took: Duration, listed: Option<usize>) {
        let label = RuleLabel { rule: rule.into() };
        let result = if listed.is_some() { "ok" } else { "error" };
        self.polls
            .get_or_create(&PollLabels {
                rule: rule.into(),
                result,
            })
            .inc();
        self.poll_seconds
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if let Some(n) = listed {
            self.listed.get_or_create(&label).set(n as i64);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.last_success
                .get_or_create(&label)
                .set(now.as_secs() as i64);
            self.health.polled(rule);
        }
    }

    /// A poll or a file attempt of `rule` failed with an error of `kind`.
    pub fn error(&self, rule: &str, kind: ErrorKind) {
        self.errors
            .get_or_create(&ErrorLabels {
                rule: rule.into(),
                kind: kind.as_str(),
            })
            .inc();
    }

    /// A failed file attempt of `rule` is to be tried again.
    pub fn retry(&self, rule: &str) {
        self.retries
            .get_or_create(&RuleLabel { rule: rule.into() })
            .inc();
    }

    /// A file of `bytes` is done; `took` from its claim.
    pub fn transferred(&self, rule: &str, direction: &'static str, bytes: u64, took: Duration) {
        let labels = TransferLabels {
            rule: rule.into(),
            direction,
        };
        self.bytes.get_or_create(&labels).inc_by(bytes);
        self.transfer_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Rules that have not polled successfully within three intervals.
    pub fn stale(&self) -> Vec<Stale> {
        self.health.stale(std::time::Instant::now())
    }

    /// The exposition text, with the values read at scrape time.
    pub fn encode(&self, files: &[StateCount], sessions: &[(String, usize)]) -> String {
        let _one = self.scrape.lock().expect("scrape lock");
        self.files.clear();
        for c in files {
            let labels = FileLabels {
                rule: c.rule.clone(),
                direction: c.direction.clone(),
                state: c.state.clone(),
            };
            self.files.get_or_create(&labels).set(c.files);
        }
        self.sessions.clear();
        for (server, n) in sessions {
            let label = ServerLabel {
                server: server.clone(),
            };
            self.sessions.get_or_create(&label).set(*n as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
