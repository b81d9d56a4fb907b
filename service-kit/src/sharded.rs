//! Metrics that each thread updates in memory of its own, folded into the recorder's
//! series when metrics are rendered ([`crate::telemetry::render`]).
//!
//! Why: a series of the recorder is one atomic (a counter, a gauge) or one sample buffer
//! (a histogram) that every thread writes. On the bill query path a request made six such
//! writes, and each moved a cache line from the other core. Here a thread adds to its own
//! line; only a scrape reads them all.
//!
//! Each series must be made once per process (a `static`, or a map of them): two sharded
//! counters over one series would overwrite each other's totals.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use thread_local::ThreadLocal;

/// Keeps each thread's value on a cache line (pair) of its own.
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// Folds every sharded metric into its series; called before each render.
pub fn publish_all() {
    for metric in registered().lock().expect("not poisoned").iter() {
        metric.publish();
    }
}

trait Publish: Send + Sync {
    fn publish(&self);
}

fn registered() -> &'static Mutex<Vec<&'static dyn Publish>> {
    static REGISTERED: Mutex<Vec<&'static dyn Publish>> = Mutex::new(Vec::new());
    &REGISTERED
}

fn register<T: Publish + 'static>(metric: T) -> &'static T {
    let metric: &'static T = Box::leak(Box::new(metric));
    registered().lock().expect("not poisoned").push(metric);
    metric
}

/// A monotonic counter.
pub struct Counter {
    shards: ThreadLocal<Padded<AtomicU64>>,
    series: metrics::Counter,
}

impl Counter {
    /// Lives as long as the process, as the recorder's series do.
    pub fn register(series: metrics::Counter) -> &'static Self {
        register(Self {
            shards: ThreadLocal::new(),
            series,
        })
    }

    pub fn increment(&self, n: u64) {
        self.shards
            .get_or_default()
            .0
            .fetch_add(n, Ordering::Relaxed);
    }
}

impl Publish for Counter {
    fn publish(&self) {
        let total = self
            .shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum();
        self.series.absolute(total);
    }
}

/// A gauge moved up and down (a thread may take one down that another took up).
pub struct Gauge {
    shards: ThreadLocal<Padded<AtomicI64>>,
    series: metrics::Gauge,
}

impl Gauge {
    pub fn register(series: metrics::Gauge) -> &'static Self {
        register(Self {
            shards: ThreadLocal::new(),
            series,
        })
    }

    pub fn increment(&self) {
        self.shards
            .get_or_default()
            .0
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn decrement(&self) {
        self.shards
            .get_or_default()
            .0
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Publish for Gauge {
    fn publish(&self) {
        let total: i64 = self
            .shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum();
        self.series.set(total as f64);
    }
}

/// A histogram: each thread holds a few samples, handed to the series in batches.
pub struct Histogram {
    pending: ThreadLocal<Padded<Mutex<Vec<f64>>>>,
    series: metrics::Histogram,
}

/// Samples a thread holds before handing them over.
const BATCH: usize = 64;

impl Histogram {
    pub fn register(series: metrics::Histogram) -> &'static Self {
        register(Self {
            pending: ThreadLocal::new(),
            series,
        })
    }

    pub fn record(&self, value: f64) {
        // Only a scrape ever contends for this lock.
        let mut pending = self
            .pending
            .get_or_default()
            .0
            .lock()
            .expect("not poisoned");
        pending.push(value);
        if pending.len() >= BATCH {
            self.hand_over(&mut pending);
        }
    }

    fn hand_over(&self, pending: &mut Vec<f64>) {
        for value in pending.drain(..) {
            self.series.record(value);
        }
    }
}

impl Publish for Histogram {
    fn publish(&self) {
        for shard in self.pending.iter() {
            self.hand_over(&mut shard.0.lock().expect("not poisoned"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(rendered: &str, line_start: &str) -> f64 {
        rendered
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {line_start} in {rendered}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn what_every_thread_counted_is_in_the_rendered_series() {
        // Given sharded metrics updated from four threads
        let handle = crate::telemetry::metrics_handle();
        let counter = Counter::register(metrics::counter!("sharded_test_total"));
        let gauge = Gauge::register(metrics::gauge!("sharded_test_active"));
        let histogram = Histogram::register(metrics::histogram!("sharded_test_seconds"));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        counter.increment(1);
                        histogram.record(0.002);
                    }
                    // Up on this thread, and down on another for half of them
                    for _ in 0..10 {
                        gauge.increment();
                    }
                });
            }
        });
        std::thread::spawn(|| (0..20).for_each(|_| gauge.decrement()))
            .join()
            .unwrap();
        // When metrics are rendered, then the series hold the totals, samples not yet
        // handed over included
        let rendered = crate::telemetry::render(&handle);
        assert_eq!(value_of(&rendered, "sharded_test_total "), 4_000.0);
        assert_eq!(value_of(&rendered, "sharded_test_active "), 20.0);
        assert_eq!(value_of(&rendered, "sharded_test_seconds_count "), 4_000.0);
        // And a later increment shows in the next render
        counter.increment(5);
        let rendered = crate::telemetry::render(&handle);
        assert_eq!(value_of(&rendered, "sharded_test_total "), 4_005.0);
    }
}
