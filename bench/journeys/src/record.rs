//! What the customers saw, per step of their journey: latency histograms, errors by
//! status and problem code, a timeline in fixed windows (for the soak: does latency
//! grow?), and every accepted product change with how it ended.
//!
//! goose keeps its own per-request statistics for its HTML report; this record is
//! ours because a step is not always one request (a change's completion is many
//! status reads) and because an error here is told apart by the problem's `code`.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use uuid::Uuid;

/// One step of a customer's journey, as the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Login,
    Menu,
    /// A month this customer has read before in the session.
    BillWarm,
    /// The first read of a month by this customer.
    BillCold,
    Products,
    Validation,
    /// `POST /api/v1/product-changes` up to its 202.
    Change,
    /// One read of a change's status while following it.
    Status,
    /// From the change's 202 to the query side showing it COMPLETED or FAILED.
    Completion,
    Histories,
    Logout,
    /// The bare-HTTP ceiling: the same customers and think times against a server that
    /// answers every GET from memory.
    Bare,
}

impl Step {
    /// The steps the read targets apply to (p95 < 200 ms).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Step::Menu
                | Step::BillWarm
                | Step::BillCold
                | Step::Products
                | Step::Status
                | Step::Histories
        )
    }
}

/// How an accepted change ended, as the customer saw it through the query side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Completed,
    Failed,
    /// Not terminal within the follow deadline (the run's end check looks again).
    Unfinished,
}

struct StepStats {
    micros: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl StepStats {
    fn new() -> Self {
        Self {
            micros: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            errors: BTreeMap::new(),
        }
    }
}

struct Window {
    requests: u64,
    errors: u64,
    reads: Histogram<u64>,
}

struct Inner {
    started: Instant,
    window: Duration,
    steps: BTreeMap<Step, StepStats>,
    timeline: Vec<Window>,
    changes: Vec<(Uuid, Option<Outcome>)>,
    not_eligible: u64,
}

static RECORD: OnceLock<Mutex<Inner>> = OnceLock::new();

fn record() -> &'static Mutex<Inner> {
    RECORD.get_or_init(|| {
        Mutex::new(Inner {
            started: Instant::now(),
            window: Duration::from_secs(30),
            steps: BTreeMap::new(),
            timeline: Vec::new(),
            changes: Vec::new(),
            not_eligible: 0,
        })
    })
}

fn with<T>(f: impl FnOnce(&mut Inner) -> T) -> T {
    f(&mut record()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// Starts the clock; `window` is the timeline's resolution.
pub fn start(window: Duration) {
    with(|r| {
        r.started = Instant::now();
        r.window = window;
    });
}

/// One step done: how long it took and, when it failed, why (`"429 RATE_LIMITED"`,
/// `"transport"`...).
pub fn step(step: Step, took: Duration, error: Option<String>) {
    let micros = (took.as_micros() as u64).max(1);
    with(|r| {
        let stats = r.steps.entry(step).or_insert_with(StepStats::new);
        stats.micros.saturating_record(micros);
        let failed = error.is_some();
        if let Some(error) = error {
            *stats.errors.entry(error).or_default() += 1;
        }
        let index = (r.started.elapsed().as_secs_f64() / r.window.as_secs_f64()) as usize;
        while r.timeline.len() <= index {
            r.timeline.push(Window {
                requests: 0,
                errors: 0,
                reads: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            });
        }
        let window = &mut r.timeline[index];
        window.requests += 1;
        window.errors += u64::from(failed);
        if step.is_read() {
            window.reads.saturating_record(micros);
        }
    });
}

/// A product change was accepted (202); its index for [`change_ended`].
pub fn change_accepted(request_id: Uuid) -> usize {
    with(|r| {
        r.changes.push((request_id, None));
        r.changes.len() - 1
    })
}

pub fn change_ended(index: usize, outcome: Outcome) {
    with(|r| r.changes[index].1 = Some(outcome));
}

/// The validation said the change may not be made (a suspended line, say): the
/// customer stops there; not an error.
pub fn not_eligible() {
    with(|r| r.not_eligible += 1);
}

/// The request ids of every accepted change, for the end-of-run check in the database.
pub fn accepted_ids() -> Vec<Uuid> {
    with(|r| r.changes.iter().map(|(id, _)| *id).collect())
}

#[derive(Debug, Serialize)]
pub struct StepSummary {
    pub requests: u64,
    pub errors: BTreeMap<String, u64>,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct WindowSummary {
    pub from_s: u64,
    pub requests: u64,
    pub errors: u64,
    pub read_p50_ms: f64,
    pub read_p95_ms: f64,
    pub read_p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct ChangeSummary {
    pub accepted: usize,
    pub completed: usize,
    pub failed: usize,
    pub unfinished: usize,
    pub not_eligible: u64,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub seconds: f64,
    pub steps: BTreeMap<Step, StepSummary>,
    pub timeline: Vec<WindowSummary>,
    pub changes: ChangeSummary,
}

fn ms(micros: u64) -> f64 {
    (micros as f64 / 10.0).round() / 100.0
}

pub fn summary() -> Summary {
    with(|r| {
        let seconds = r.started.elapsed().as_secs_f64();
        let steps = r
            .steps
            .iter()
            .map(|(step, s)| {
                let h = &s.micros;
                let summary = StepSummary {
                    requests: h.len(),
                    errors: s.errors.clone(),
                    per_second: (h.len() as f64 / seconds * 10.0).round() / 10.0,
                    p50_ms: ms(h.value_at_quantile(0.5)),
                    p95_ms: ms(h.value_at_quantile(0.95)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                    max_ms: ms(h.max()),
                };
                (*step, summary)
            })
            .collect();
        let window = r.window.as_secs();
        let timeline = r
            .timeline
            .iter()
            .enumerate()
            .map(|(i, w)| WindowSummary {
                from_s: i as u64 * window,
                requests: w.requests,
                errors: w.errors,
                read_p50_ms: ms(w.reads.value_at_quantile(0.5)),
                read_p95_ms: ms(w.reads.value_at_quantile(0.95)),
                read_p99_ms: ms(w.reads.value_at_quantile(0.99)),
            })
            .collect();
        let count = |o: Outcome| r.changes.iter().filter(|(_, e)| *e == Some(o)).count();
        let changes = ChangeSummary {
            accepted: r.changes.len(),
            completed: count(Outcome::Completed),
            failed: count(Outcome::Failed),
            unfinished: r.changes.len() - count(Outcome::Completed) - count(Outcome::Failed),
            not_eligible: r.not_eligible,
        };
        Summary {
            seconds: (seconds * 10.0).round() / 10.0,
            steps,
            timeline,
            changes,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // One process-wide record: the test reads what it wrote, with steps no other test uses.
    #[test]
    fn a_step_is_summarised_with_its_errors_by_status_and_code() {
        start(Duration::from_secs(30));
        for ms in [10, 20, 30, 40, 1000] {
            step(Step::Logout, Duration::from_millis(ms), None);
        }
        step(
            Step::Logout,
            Duration::from_millis(5),
            Some("429 RATE_LIMITED".into()),
        );
        let index = change_accepted(Uuid::nil());
        change_ended(index, Outcome::Failed);
        not_eligible();

        let summary = summary();
        let logout = &summary.steps[&Step::Logout];
        assert_eq!(logout.requests, 6);
        assert_eq!(logout.errors["429 RATE_LIMITED"], 1);
        assert!((19.9..=20.1).contains(&logout.p50_ms), "{logout:?}");
        assert!((999.0..=1001.0).contains(&logout.max_ms), "{logout:?}");
        assert_eq!(summary.changes.accepted, 1);
        assert_eq!(summary.changes.failed, 1);
        assert_eq!(summary.changes.unfinished, 0);
        assert_eq!(summary.timeline[0].errors, 1);
        assert!(!Step::Logout.is_read() && Step::BillCold.is_read());
    }
}
