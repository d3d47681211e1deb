//! Counters for `/metrics`, in Prometheus' text format. Plain atomics: the
//! handful of numbers an operator watches, no registry to configure.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Metrics {
    pub push_requests: AtomicU64,
    pub pull_requests: AtomicU64,
    /// Requests answered with an error status (4xx/5xx).
    pub failed_requests: AtomicU64,
    pub mutations_ok: AtomicU64,
    pub mutations_rejected: AtomicU64,
    pub mutations_already_processed: AtomicU64,
    pub pull_rows: AtomicU64,
    pub realtime_clients: AtomicU64,
    pub pokes_sent: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, samples: &[(&str, &AtomicU64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {}", value.load(Relaxed));
            }
        };
        line(
            "ferrydb_requests_total",
            "counter",
            "Sync requests received.",
            &[
                ("{endpoint=\"push\"}", &self.push_requests),
                ("{endpoint=\"pull\"}", &self.pull_requests),
            ],
        );
        line(
            "ferrydb_failed_requests_total",
            "counter",
            "Sync requests answered with an error status.",
            &[("", &self.failed_requests)],
        );
        line(
            "ferrydb_mutations_total",
            "counter",
            "Mutations in pushes, by what the server did with them.",
            &[
                ("{outcome=\"ok\"}", &self.mutations_ok),
                ("{outcome=\"rejected\"}", &self.mutations_rejected),
                (
                    "{outcome=\"already_processed\"}",
                    &self.mutations_already_processed,
                ),
            ],
        );
        line(
            "ferrydb_pull_rows_total",
            "counter",
            "Patch operations sent in pull responses.",
            &[("", &self.pull_rows)],
        );
        line(
            "ferrydb_realtime_clients",
            "gauge",
            "Open realtime (SSE) connections.",
            &[("", &self.realtime_clients)],
        );
        line(
            "ferrydb_pokes_total",
            "counter",
            "Pokes written to realtime connections.",
            &[("", &self.pokes_sent)],
        );
        out
    }
}
