//! Counters and histograms for `/metrics` (Prometheus text format).
//! Lock-free on the hot path: atomics indexed by enum position.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::challenge::{Kind, Status};

/// Fine below 10 ms, where onepush's targets are.
pub const BUCKETS: [f64; 23] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
];

#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; 24],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS.iter().position(|&b| s <= b).unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.counts[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cum}");
    }
}

/// The codes of the answers the HTTP edge sends itself.
const EDGE_CODES: [&str; 5] = ["headers_too_large", "request_timeout", "bad_request", "body_too_large", "overloaded"];

#[derive(Default)]
pub struct Metrics {
    challenges_created: [AtomicU64; 3],
    challenges_closed: [[AtomicU64; 7]; 3],
    logins: Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>,
    push: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    pub http_requests: AtomicU64,
    pub http_errors_5xx: AtomicU64,
    /// Requests the HTTP edge answered itself, by `EDGE_CODES`.
    edge_rejections: [AtomicU64; 5],
    /// Reads the HTTP server's open connections, once it runs.
    pub open_connections: std::sync::OnceLock<Box<dyn Fn() -> usize + Send + Sync>>,
    pub parked_rp: AtomicI64,
    pub parked_device: AtomicI64,
    pub registrations: AtomicU64,
    pub registration_failures: AtomicU64,
    pub provisioned: AtomicU64,
    pub fraud_reports: AtomicU64,
    pub wakeups_sent: AtomicU64,
    pub wakeup_failures: AtomicU64,
    pub sweeper_lag: Histogram,
    /// Decision committed → parked RP waiter answered.
    pub wake_latency: Histogram,
    /// Challenge created → decided (approved, rejected, token_mismatch).
    pub decision_latency: Histogram,
}

fn kind_index(k: Kind) -> usize {
    Kind::ALL.iter().position(|x| *x == k).unwrap_or(0)
}
fn status_index(s: Status) -> usize {
    Status::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

impl Metrics {
    pub fn challenge_created(&self, kind: Kind) {
        self.challenges_created[kind_index(kind)].fetch_add(1, Relaxed);
    }

    pub fn challenge_closed(&self, kind: Kind, status: Status) {
        self.challenges_closed[kind_index(kind)][status_index(status)].fetch_add(1, Relaxed);
    }

    pub fn closed_count(&self, kind: Kind, status: Status) -> u64 {
        self.challenges_closed[kind_index(kind)][status_index(status)].load(Relaxed)
    }

    /// A push message's outcome: `kind` webpush or unifiedpush; `outcome`
    /// sent, gone (404/410: subscription removed), refused (an address or
    /// answer that retrying will not change), failed (after its retries),
    /// expired (the challenge ended first), dropped (queue full).
    pub fn push_outcome(&self, kind: &'static str, outcome: &'static str) {
        *crate::sync::lock(&self.push).entry((kind, outcome)).or_insert(0) += 1;
    }

    /// `operation` is login or approval, `result` allow/deny/challenge.
    pub fn decision(&self, operation: &'static str, result: &'static str, reason: &'static str) {
        let mut m = crate::sync::lock(&self.logins);
        *m.entry((operation, result, reason)).or_insert(0) += 1;
    }

    /// Counts a request refused at the HTTP edge, by its error code.
    pub fn edge_rejected(&self, code: &str) {
        if let Some(i) = EDGE_CODES.iter().position(|c| *c == code) {
            self.edge_rejections[i].fetch_add(1, Relaxed);
        }
    }

    pub fn render(&self, store_bytes: u64, writer: &WriterStats) -> String {
        let mut out = String::with_capacity(8192);
        let _ = writeln!(out, "# HELP onepush_challenges_created_total Push challenges created, by kind.");
        let _ = writeln!(out, "# TYPE onepush_challenges_created_total counter");
        for k in Kind::ALL {
            let v = self.challenges_created[kind_index(k)].load(Relaxed);
            let _ = writeln!(out, "onepush_challenges_created_total{{kind=\"{}\"}} {v}", k.as_str());
        }
        let _ = writeln!(out, "# HELP onepush_challenges_closed_total Challenges that left pending, by kind and outcome.");
        let _ = writeln!(out, "# TYPE onepush_challenges_closed_total counter");
        for k in Kind::ALL {
            for s in Status::ALL.iter().skip(1) {
                let v = self.closed_count(k, *s);
                let _ = writeln!(out, "onepush_challenges_closed_total{{kind=\"{}\",status=\"{}\"}} {v}", k.as_str(), s.as_str());
            }
        }
        let _ = writeln!(out, "# HELP onepush_decisions_total Login and approval answers to the RP, by result and reason.");
        let _ = writeln!(out, "# TYPE onepush_decisions_total counter");
        for ((op, result, reason), v) in crate::sync::lock(&self.logins).iter() {
            let _ = writeln!(out, "onepush_decisions_total{{operation=\"{op}\",result=\"{result}\",reason=\"{reason}\"}} {v}");
        }
        let _ = writeln!(out, "# HELP onepush_push_total Push messages to phones, by kind and outcome.");
        let _ = writeln!(out, "# TYPE onepush_push_total counter");
        for ((kind, outcome), v) in crate::sync::lock(&self.push).iter() {
            let _ = writeln!(out, "onepush_push_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {v}");
        }
        let counters: [(&str, &str, u64); 12] = [
            ("onepush_wakeups_total", "Push messages delivered (every kind).", self.wakeups_sent.load(Relaxed)),
            (
                "onepush_wakeup_failures_total",
                "Push messages not delivered (refused, failed after their retries, expired or dropped).",
                self.wakeup_failures.load(Relaxed),
            ),
            ("onepush_store_commits_total", "Write transactions committed (each may hold many jobs).", writer.commits.load(Relaxed)),
            ("onepush_store_jobs_total", "Write jobs run by the single writer.", writer.jobs.load(Relaxed)),
            ("onepush_store_failed_batches_total", "Write batches that failed to commit.", writer.failed_batches.load(Relaxed)),
            ("onepush_http_requests_total", "HTTP requests answered.", self.http_requests.load(Relaxed)),
            ("onepush_http_server_errors_total", "HTTP 5xx answers.", self.http_errors_5xx.load(Relaxed)),
            ("onepush_registrations_total", "Successful registrations.", self.registrations.load(Relaxed)),
            ("onepush_registration_failures_total", "Failed registration attempts.", self.registration_failures.load(Relaxed)),
            ("onepush_tokens_provisioned_total", "Tokens provisioned.", self.provisioned.load(Relaxed)),
            ("onepush_fraud_reports_total", "Rejections reported as fraud by the user.", self.fraud_reports.load(Relaxed)),
            ("onepush_store_bytes", "Size of the store file.", store_bytes),
        ];
        for (name, help, v) in counters {
            let ty = if name.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}\n{name} {v}");
        }
        let _ =
            writeln!(out, "# HELP onepush_http_edge_rejections_total Requests the HTTP edge answered itself (a limit passed), by code.");
        let _ = writeln!(out, "# TYPE onepush_http_edge_rejections_total counter");
        for (code, v) in EDGE_CODES.iter().zip(&self.edge_rejections) {
            let _ = writeln!(out, "onepush_http_edge_rejections_total{{code=\"{code}\"}} {}", v.load(Relaxed));
        }
        let open = self.open_connections.get().map_or(0, |f| f());
        let _ = writeln!(
            out,
            "# HELP onepush_http_open_connections Open HTTP connections, parked long-polls included (max_connections caps them)."
        );
        let _ = writeln!(out, "# TYPE onepush_http_open_connections gauge\nonepush_http_open_connections {open}");
        let _ = writeln!(out, "# HELP onepush_parked_requests Long-polls parked, waiting for a change.");
        let _ = writeln!(out, "# TYPE onepush_parked_requests gauge");
        let _ = writeln!(out, "onepush_parked_requests{{side=\"rp\"}} {}", self.parked_rp.load(Relaxed));
        let _ = writeln!(out, "onepush_parked_requests{{side=\"device\"}} {}", self.parked_device.load(Relaxed));
        self.wake_latency.render(&mut out, "onepush_wake_latency_seconds", "Decision committed to parked RP waiter answered.");
        self.decision_latency.render(&mut out, "onepush_decision_latency_seconds", "Challenge created to answered by the phone.");
        self.sweeper_lag.render(&mut out, "onepush_sweeper_lag_seconds", "expires_at to closed by the sweeper.");
        writer.commit_time.render(&mut out, "onepush_store_commit_seconds", "One write batch, transaction start to durable commit.");
        out
    }
}

/// What the store's single writer has done, for `/metrics`.
#[derive(Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub jobs: AtomicU64,
    pub failed_batches: AtomicU64,
    /// Time from the start of a batch's transaction to its commit returning.
    pub commit_time: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.challenge_created(Kind::Login);
        m.challenge_closed(Kind::Login, Status::Approved);
        m.decision("login", "deny", "bad_credentials");
        m.wake_latency.observe(Duration::from_micros(300));
        let text = m.render(4096, &WriterStats::default());
        assert!(text.contains("onepush_challenges_closed_total{kind=\"login\",status=\"approved\"} 1"));
        assert!(text.contains("onepush_decisions_total{operation=\"login\",result=\"deny\",reason=\"bad_credentials\"} 1"));
        assert!(text.contains("onepush_wake_latency_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("onepush_wake_latency_seconds_bucket{le=\"0.00025\"} 0"));
        assert!(text.contains("onepush_store_bytes 4096"));
    }
}
