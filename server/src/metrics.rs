//! `/metrics`, in Prometheus' text format. Plain atomics: the handful of
//! numbers an operator watches, no registry to configure. Names follow
//! Prometheus' conventions: a `ferrydb_` prefix, base units in the name
//! (`_seconds`, `_bytes`), `_total` on counters; the store's kind is a label
//! on its latencies, so dashboards compare stores across deployments.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `ferrydb_requests_total{endpoint}` | counter | push and pull requests received |
//! | `ferrydb_failed_requests_total` | counter | sync requests answered with 4xx/5xx |
//! | `ferrydb_mutations_total{outcome}` | counter | mutations by what the server did |
//! | `ferrydb_sync_duration_seconds{endpoint,store}` | histogram | time the store took for a push or pull |
//! | `ferrydb_pull_rows_total` | counter | patch operations sent in pulls |
//! | `ferrydb_pull_bytes_total` | counter | bytes of pull response bodies |
//! | `ferrydb_realtime_clients` | gauge | open realtime (SSE) connections |
//! | `ferrydb_pokes_total` | counter | pokes written to realtime connections |
//! | `ferrydb_sync_lag_seconds` | histogram | commit known to this server → poke written |
//! | `ferrydb_queue_depth{queue}` | gauge | work waiting: store queue, undelivered pokes |

use crate::store::{Pokes, Store};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Default)]
pub struct Metrics {
    pub push_requests: AtomicU64,
    pub pull_requests: AtomicU64,
    /// Requests answered with an error status (4xx/5xx).
    pub failed_requests: AtomicU64,
    pub mutations_ok: AtomicU64,
    pub mutations_rejected: AtomicU64,
    pub mutations_already_processed: AtomicU64,
    pub push_duration: Histogram,
    pub pull_duration: Histogram,
    pub pull_rows: AtomicU64,
    pub pull_bytes: AtomicU64,
    pub realtime_clients: AtomicU64,
    pub pokes_sent: AtomicU64,
    pub sync_lag: Histogram,
}

/// Upper bounds of the latency buckets, in seconds: Prometheus client
/// libraries' defaults (5 ms to 10 s, up to a Postgres push near its
/// statement timeout) with 1 and 2.5 ms below them, where a local SQLite
/// commit and an in-process poke fall.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram: a count per bucket (rendered cumulatively, as
/// Prometheus expects), the sum in microseconds and the count.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The sample lines for one label set (`labels` without braces).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            // `Display` of 1.0 is `1`, of 0.0025 `0.0025`: Prometheus' `le` spelling.
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braced} {sum}");
        let _ = writeln!(out, "{name}_count{braced} {count}");
    }
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Everything, with the gauges read now from the store and the pokes.
    pub fn render(&self, store: Option<&Store>, pokes: &Pokes) -> String {
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let mut line = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            head(&mut out, name, kind, help);
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let get = |counter: &AtomicU64| counter.load(Relaxed);
        line(
            "ferrydb_requests_total",
            "counter",
            "Sync requests received.",
            &[
                ("{endpoint=\"push\"}", get(&self.push_requests)),
                ("{endpoint=\"pull\"}", get(&self.pull_requests)),
            ],
        );
        line(
            "ferrydb_failed_requests_total",
            "counter",
            "Sync requests answered with an error status.",
            &[("", get(&self.failed_requests))],
        );
        line(
            "ferrydb_mutations_total",
            "counter",
            "Mutations in pushes, by what the server did with them.",
            &[
                ("{outcome=\"ok\"}", get(&self.mutations_ok)),
                ("{outcome=\"rejected\"}", get(&self.mutations_rejected)),
                (
                    "{outcome=\"already_processed\"}",
                    get(&self.mutations_already_processed),
                ),
            ],
        );
        line(
            "ferrydb_pull_rows_total",
            "counter",
            "Patch operations sent in pull responses.",
            &[("", get(&self.pull_rows))],
        );
        line(
            "ferrydb_pull_bytes_total",
            "counter",
            "Bytes of pull response bodies.",
            &[("", get(&self.pull_bytes))],
        );
        line(
            "ferrydb_realtime_clients",
            "gauge",
            "Open realtime (SSE) connections.",
            &[("", get(&self.realtime_clients))],
        );
        line(
            "ferrydb_pokes_total",
            "counter",
            "Pokes written to realtime connections.",
            &[("", get(&self.pokes_sent))],
        );
        let mut queues = vec![("{queue=\"pokes\"}".to_owned(), pokes.backlog())];
        if let Some(store) = store {
            let (queue, depth) = store.queue_depth();
            queues.push((format!("{{queue=\"{queue}\"}}"), depth));
        }
        let queues: Vec<_> = queues
            .iter()
            .map(|(labels, depth)| (labels.as_str(), *depth as u64))
            .collect();
        line(
            "ferrydb_queue_depth",
            "gauge",
            "Work waiting: pokes not yet received by every realtime connection, \
             requests waiting for the store (its thread, or a pooled connection).",
            &queues,
        );
        let name = "ferrydb_sync_duration_seconds";
        head(
            &mut out,
            name,
            "histogram",
            "Time the store took to process a push or answer a pull.",
        );
        let kind = store.map_or("none", Store::kind);
        for (endpoint, histogram) in [("push", &self.push_duration), ("pull", &self.pull_duration)]
        {
            let labels = format!("endpoint=\"{endpoint}\",store=\"{kind}\"");
            histogram.render(&mut out, name, &labels);
        }
        let name = "ferrydb_sync_lag_seconds";
        head(
            &mut out,
            name,
            "histogram",
            "From a commit reaching this server (its own, or a Postgres notification) \
             to the poke written to a realtime connection, per connection.",
        );
        self.sync_lag.render(&mut out, name, "");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_its_sum_and_count() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(30));
        histogram.observe(Duration::from_secs(60));
        let mut out = String::new();
        histogram.render(&mut out, "x_seconds", "a=\"b\"");
        assert!(
            out.contains("x_seconds_bucket{a=\"b\",le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{a=\"b\",le=\"0.025\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{a=\"b\",le=\"0.05\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{a=\"b\",le=\"1\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{a=\"b\",le=\"10\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{a=\"b\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_sum{a=\"b\"} 60.0305\n"), "{out}");
        assert!(out.contains("x_seconds_count{a=\"b\"} 3\n"), "{out}");
    }
}
