//! Group commit: concurrent product-change requests are decided and committed together.
//!
//! A request's own work is small (a pre-check and two events); what costs is the
//! database's per-statement and per-commit work: parsing, planning, locking, the WAL
//! flush, and the round trips. So requests wait in one queue; a writer (one by default,
//! `GroupCommitConfig`) takes whatever queued while it committed the previous group, up
//! to a maximum, loads all those lines in one statement, runs each line's aggregate, and
//! appends every line's events in one INSERT: one commit for the group. Alone (light
//! load), a request goes straight through, with no lingering.
//!
//! What holds:
//! - **All or nothing.** The INSERT is one statement; a conflict on any line (another
//!   writer got there first) fails the whole group and writes nothing. Then every request
//!   of the group is decided again on its own, with the conflict retry of the one-request
//!   path, so one busy line never fails the others.
//! - **A 202 is durable.** A request is answered only after its group's commit returned.
//!   If the commit's outcome is unknown (the connection failed while it ran), every
//!   request is decided again on its own: one that did commit is found in the line's
//!   memory (request ids are remembered) and gets the same answer.
//! - **A failure that wrote nothing is answered at once.** A failed load or an INSERT the
//!   database refused (other than a conflict) answers every request of the group with
//!   the error; retrying each alone would only multiply the load on a database in trouble.
//! - **One line once per group.** A second request for a line already in the group is
//!   decided after the group, on its own, against what the group wrote (not necessarily
//!   before the next group's request for that line: requests for one line that arrive
//!   together are serialized, not ordered).
//! - **A caller that gave up is not committed.** A request whose caller went away (the
//!   request deadline) before its group formed is dropped, not written.
//! - **Lines in a fixed order.** A group's rows are sorted by line, so two writers'
//!   groups never wait on each other's keys in opposite orders.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use backon::Retryable;
use chrono::Utc;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use uuid::Uuid;

use events::product_change::ProductChangeEvent;

use super::{conflict_backoff, line_error, metadata, once_more_if_connection_lost, store_error};
use super::{LineContext, Trace};
use crate::configuration::GroupCommitConfig;
use crate::domain::line::{Line, LineCommand, RequestProductChange, RequestRecord};
use crate::domain::line_number::LineNumber;
use crate::domain::product_change::ChangeRequest;
use crate::domain::reference::{LineFacts, ProductFacts};
use crate::error::AppError;
use crate::event_store;
use crate::reference::{change_facts, CHANGE_COLUMNS};

/// Requests waiting beyond this make callers wait to queue (back-pressure).
const QUEUE: usize = 1024;

/// One product-change request, as a writer decides it.
#[derive(Debug, Clone)]
pub struct ChangeCommand {
    pub line: LineNumber,
    pub request: ChangeRequest,
    pub request_id: Uuid,
    pub trace: Trace,
}

/// A line as a decision needs it: its reference facts, the target product's, and the
/// line rebuilt from its events.
pub struct LoadedLine {
    pub facts: LineFacts,
    pub target: Option<ProductFacts>,
    pub context: LineContext,
}

/// Loads lines and decides and commits requests on them: the database side of a group.
#[derive(Clone)]
pub struct Decider {
    pub pool: PgPool,
    /// Wakes the relay as soon as events are committed here.
    pub committed: Arc<Notify>,
    /// How long KOS has to answer a change before it fails with TIMEOUT.
    pub kos_timeout: chrono::Duration,
}

/// The reference facts of each `(line, target product)` and the line's events, in one
/// round trip whatever the number of lines (`$1` lines, `$2` targets, `$3` the aggregate
/// type). A line that is not known has no row. The line is rebuilt from its events
/// exactly as cqrs-es would; the commit's optimistic concurrency check is unchanged.
static LOAD_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT r.i, {CHANGE_COLUMNS},
                (SELECT json_agg(e.payload ORDER BY e.sequence) FROM events e
                  WHERE e.aggregate_type = $3 AND e.aggregate_id = r.line)
           FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS r(line, target, i)
           JOIN ref_lines l ON l.line_number = r.line
           LEFT JOIN ref_products p ON p.product_code = r.target"
    )
});

type LoadRow = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<bool>,
    Option<serde_json::Value>,
);

/// Why a group wrote nothing, or may have written.
#[derive(Debug)]
pub enum GroupFailure {
    /// Another writer got to one of the lines first; nothing was written.
    Conflict,
    /// Nothing was written: the load failed, or the database refused the INSERT.
    NotWritten(AppError),
    /// The connection failed while the INSERT ran: it may or may not have committed.
    Unknown(AppError),
}

impl GroupFailure {
    /// The error a caller gets.
    pub fn into_app_error(self) -> AppError {
        match self {
            GroupFailure::Conflict => AppError::Conflict,
            GroupFailure::NotWritten(e) | GroupFailure::Unknown(e) => e,
        }
    }

    fn of_append(e: cqrs_es::persist::PersistenceError) -> Self {
        use cqrs_es::persist::PersistenceError;
        match e {
            PersistenceError::OptimisticLockError => GroupFailure::Conflict,
            PersistenceError::ConnectionError(inner)
                if matches!(
                    inner.downcast_ref::<sqlx::Error>(),
                    Some(sqlx::Error::Database(_))
                ) =>
            {
                GroupFailure::NotWritten(AppError::Internal(anyhow::anyhow!(
                    "event store refused the group: {inner}"
                )))
            }
            other => {
                GroupFailure::Unknown(AppError::Internal(anyhow::anyhow!("event store: {other}")))
            }
        }
    }
}

impl Decider {
    /// The lines of `wanted` (line, target product), in its order, and the connection
    /// that read them, for the commit: each return of a connection to sqlx's pool costs a
    /// round trip (its release check), so a group uses one connection throughout.
    pub async fn load(
        &self,
        wanted: &[(&LineNumber, &ChangeRequest)],
    ) -> Result<(PoolConnection<Postgres>, Vec<Result<LoadedLine, AppError>>), AppError> {
        let lines: Vec<&str> = wanted.iter().map(|(line, _)| line.as_str()).collect();
        let targets: Vec<&str> = wanted
            .iter()
            .map(|(_, request)| request.target_product_code.as_str())
            .collect();
        let (conn, rows) = once_more_if_connection_lost(|| async {
            let mut conn = self.pool.acquire().await?;
            let rows: Vec<LoadRow> = sqlx::query_as(&LOAD_SQL)
                .bind(&lines)
                .bind(&targets)
                .bind(<Line as cqrs_es::Aggregate>::TYPE)
                .fetch_all(&mut *conn)
                .await?;
            Ok((conn, rows))
        })
        .await?;
        let mut loaded: Vec<Result<LoadedLine, AppError>> = wanted
            .iter()
            .map(|(line, _)| Err(AppError::LineNotFound(line.to_string())))
            .collect();
        for (i, a, b, c, d, e, f, history) in rows {
            let index = usize::try_from(i - 1).expect("ordinality starts at 1");
            let (line, request) = wanted[index];
            let (facts, target) = change_facts(
                line.as_str(),
                &request.target_product_code,
                (a, b, c, d, e, f),
            );
            loaded[index] = rebuild(line, history).map(|context| LoadedLine {
                facts,
                target,
                context,
            });
        }
        Ok((conn, loaded))
    }

    /// Decides every command against its line and commits all their events in one
    /// statement. The outer error is the group's; the inner ones are each request's own
    /// (an unknown line, a reused request id).
    pub async fn decide_all(
        &self,
        commands: &[&ChangeCommand],
    ) -> Result<Vec<Result<RequestRecord, AppError>>, GroupFailure> {
        let wanted: Vec<_> = commands.iter().map(|c| (&c.line, &c.request)).collect();
        let (mut conn, loaded) = self.load(&wanted).await.map_err(GroupFailure::NotWritten)?;
        let now = Utc::now();
        let mut to_append = Vec::new();
        let mut outcomes = Vec::with_capacity(commands.len());
        for (command, line) in commands.iter().zip(loaded) {
            let outcome = match line {
                Ok(line) => self.decide(command, line, now).await,
                Err(e) => Err(e),
            };
            outcomes.push(outcome.map(|(record, events)| {
                to_append.extend(events);
                record
            }));
        }
        if !to_append.is_empty() {
            event_store::append(&mut *conn, <Line as cqrs_es::Aggregate>::TYPE, &to_append)
                .await
                .map_err(GroupFailure::of_append)?;
            self.committed.notify_one();
        }
        Ok(outcomes)
    }

    /// Runs the line's aggregate on one request: the line's record of it and the events
    /// to append, serialized and numbered after the line's last event.
    async fn decide(
        &self,
        command: &ChangeCommand,
        mut line: LoadedLine,
        now: chrono::DateTime<Utc>,
    ) -> Result<(RequestRecord, Vec<cqrs_es::persist::SerializedEvent>), AppError> {
        use cqrs_es::AggregateContext;
        let request = LineCommand::RequestProductChange(RequestProductChange {
            request_id: command.request_id,
            request: command.request.clone(),
            requested_at: now,
            answer_by: now + self.kos_timeout,
            line: line.facts,
            target: line.target,
        });
        let sink = cqrs_es::event_sink::EventSink::default();
        cqrs_es::Aggregate::handle(line.context.aggregate(), request, &(), &sink)
            .await
            .map_err(line_error)?;
        let record = line
            .context
            .aggregate()
            .request(command.request_id)
            .cloned()
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!(
                    "line forgot request {}",
                    command.request_id
                ))
            })?;
        let events = event_store::serialize::<Line>(
            &line.context.aggregate_id,
            line.context.current_sequence,
            sink.collect().await,
            &metadata(&command.trace),
        )
        .map_err(|e| store_error(e.into()))?;
        Ok((record, events))
    }

    /// One request on its own, retried while another writer keeps getting to its line
    /// first, and once more if the outcome of its commit is unknown.
    async fn alone(&self, command: &ChangeCommand) -> Result<RequestRecord, AppError> {
        let attempt = || async {
            let mut outcomes = self.decide_all(&[command]).await?;
            Ok(outcomes.pop().expect("one outcome per command"))
        };
        let with_conflict_retry = || {
            attempt
                .retry(conflict_backoff())
                .when(|e| matches!(e, GroupFailure::Conflict))
        };
        let outcome = match with_conflict_retry().await {
            Err(GroupFailure::Unknown(_)) => with_conflict_retry().await,
            other => other,
        };
        outcome.map_err(GroupFailure::into_app_error)?
    }
}

/// The line rebuilt from its stored events (`None`: it has none yet).
fn rebuild(line: &LineNumber, history: Option<serde_json::Value>) -> Result<LineContext, AppError> {
    let events: Vec<ProductChangeEvent> = match history {
        Some(list) => serde_json::from_value(list)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("stored event unreadable: {e}")))?,
        None => Vec::new(),
    };
    let mut aggregate = Line::default();
    let current_sequence = events.len();
    for event in events {
        cqrs_es::Aggregate::apply(&mut aggregate, event);
    }
    Ok(LineContext {
        aggregate_id: line.to_string(),
        aggregate,
        current_sequence,
        current_snapshot: None,
    })
}

struct Pending {
    command: ChangeCommand,
    answer: oneshot::Sender<Result<RequestRecord, AppError>>,
}

/// The queue in front of the writers.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writers (each holds one pooled connection while it commits a group);
    /// they stop once every `GroupCommit` handle is dropped and the queue is empty.
    pub fn start(decider: Decider, config: &GroupCommitConfig) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..config.writers {
            tokio::spawn(write(
                decider.clone(),
                Arc::clone(&receiver),
                usize::from(config.max_requests),
            ));
        }
        Self { queue }
    }

    /// Decides and commits one request with whatever else is queued; returns the line's
    /// record of it once that is durable.
    pub async fn submit(&self, command: ChangeCommand) -> Result<RequestRecord, AppError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Pending { command, answer })
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("the request writers stopped")))?;
        answered
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("a request writer failed")))?
    }
}

/// A writer: takes what is queued, commits it as a group, and again.
async fn write(decider: Decider, queue: Arc<Mutex<mpsc::Receiver<Pending>>>, max: usize) {
    let mut taken = Vec::with_capacity(max);
    loop {
        // The lock is held only while waiting for the first request: the next writer
        // then waits for what arrives during this group's commit.
        if queue.lock().await.recv_many(&mut taken, max).await == 0 {
            return;
        }
        taken.retain(|p| !p.answer.is_closed());
        let (mut group, repeats) = one_per_line(std::mem::take(&mut taken));
        group.sort_by(|a, b| a.command.line.as_str().cmp(b.command.line.as_str()));
        metrics::histogram!("product_change_group_size").record(group.len() as f64);
        // In a task of its own: a panic fails this group's requests (their callers get
        // an error), not the writer.
        let _ = tokio::spawn(commit_group(decider.clone(), group)).await;
        for pending in repeats {
            tokio::spawn(answer_alone(decider.clone(), pending));
        }
    }
}

/// Splits off the requests for a line already earlier in the list.
fn one_per_line(taken: Vec<Pending>) -> (Vec<Pending>, Vec<Pending>) {
    let mut seen = HashSet::new();
    taken
        .into_iter()
        .partition(|p| seen.insert(p.command.line.as_str().to_owned()))
}

async fn commit_group(decider: Decider, group: Vec<Pending>) {
    if group.is_empty() {
        return;
    }
    let commands: Vec<&ChangeCommand> = group.iter().map(|p| &p.command).collect();
    match decider.decide_all(&commands).await {
        Ok(outcomes) => {
            for (pending, outcome) in group.into_iter().zip(outcomes) {
                // A caller that went away meanwhile still has its change committed.
                let _ = pending.answer.send(outcome);
            }
        }
        Err(GroupFailure::NotWritten(e)) => {
            let message = e.to_string();
            let mut first = Some(e);
            for pending in group {
                let error = first
                    .take()
                    .unwrap_or_else(|| AppError::Internal(anyhow::anyhow!("{message}")));
                let _ = pending.answer.send(Err(error));
            }
        }
        Err(failure) => {
            tracing::debug!(
                ?failure,
                size = group.len(),
                "group failed; deciding each alone"
            );
            for pending in group {
                tokio::spawn(answer_alone(decider.clone(), pending));
            }
        }
    }
}

async fn answer_alone(decider: Decider, pending: Pending) {
    let outcome = decider.alone(&pending.command).await;
    let _ = pending.answer.send(outcome);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(line: &str) -> Pending {
        let (answer, _) = oneshot::channel();
        Pending {
            command: ChangeCommand {
                line: LineNumber::parse(line).unwrap(),
                request: ChangeRequest {
                    current_product_code: "A".into(),
                    target_product_code: "B".into(),
                },
                request_id: Uuid::new_v4(),
                trace: Trace {
                    correlation_id: Uuid::nil(),
                    causation_id: Uuid::nil(),
                    traceparent: None,
                },
            },
            answer,
        }
    }

    #[test]
    fn a_group_holds_each_line_once_and_later_requests_for_it_wait_their_turn() {
        let taken = [
            "010-0000-0001",
            "010-0000-0002",
            "010-0000-0001",
            "010-0000-0003",
        ]
        .map(pending)
        .into();
        let (group, repeats) = one_per_line(taken);
        let lines = |list: &[Pending]| -> Vec<String> {
            list.iter().map(|p| p.command.line.to_string()).collect()
        };
        assert_eq!(
            lines(&group),
            ["010-0000-0001", "010-0000-0002", "010-0000-0003"]
        );
        assert_eq!(lines(&repeats), ["010-0000-0001"]);
    }
}
