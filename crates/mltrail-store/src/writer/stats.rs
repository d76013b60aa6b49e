//! What the writer tells `/metrics` about itself: how many writes each group commits, how long
//! a group takes, and groups that rolled back. Only the writer thread observes (once per group,
//! never per request), so the histograms' short locks are not contended on the request path.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Group sizes: 1 is a client writing one at a time; the writer caps a group at 512.
const SIZE_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// Seconds: an fsync on a fast disk is ~0.1-1 ms; a slow disk or a large group takes 10s of ms.
const SECONDS_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Shared by the writer thread (which observes) and the store's handle (which registers).
#[derive(Debug, Clone)]
pub(crate) struct WriterStats {
    group_size: Histogram,
    group_seconds: Histogram,
    failed_groups: Counter,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            group_size: Histogram::new(SIZE_BUCKETS),
            group_seconds: Histogram::new(SECONDS_BUCKETS),
            failed_groups: Counter::default(),
        }
    }
}

impl WriterStats {
    /// One group done: `size` messages taken, `seconds` from taking the first to answering
    /// the last (transaction, commit and fsync included), `failed` when any part rolled back.
    pub(crate) fn group(&self, size: usize, seconds: f64, failed: bool) {
        self.group_size.observe(size as f64);
        self.group_seconds.observe(seconds);
        if failed {
            self.failed_groups.inc();
        }
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "mltrail_store_write_group_size",
            "Writes committed together in one transaction (the writer's group commit; at most 512)",
            self.group_size.clone(),
        );
        registry.register_with_unit(
            "mltrail_store_write_group",
            "Time a write group took from taking its first write to answering its last: the statements, the commit and its fsync. Every write to the store waits for its group",
            prometheus_client::registry::Unit::Seconds,
            self.group_seconds.clone(),
        );
        registry.register(
            "mltrail_store_write_groups_failed",
            "Write groups that rolled back (each caller got the error; see the log)",
            self.failed_groups.clone(),
        );
    }
}
