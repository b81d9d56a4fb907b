//! Product-change commands: the application service between the HTTP handlers and the
//! line aggregate. It loads the reference facts, runs the aggregate, commits its events
//! (which the relay then publishes) and turns the line's memory of the request into an
//! answer. Concurrent writers to one line are serialized by the event store's optimistic
//! concurrency: a conflict reloads the line and decides again. Customers' requests are
//! committed in groups (`group_commit`); KOS results and timeouts one at a time.

pub mod group_commit;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{AggregateContext, AggregateError, EventStore};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use events::kos::KosResult;
use events::product_change::ProductChangeEvent;

use crate::configuration::GroupCommitConfig;
use crate::domain::line::{Line, LineCommand, LineError, RequestRecord};
use crate::domain::line_number::LineNumber;
use crate::domain::product_change::{run_prechecks, ChangeRequest, CheckResult};
use crate::error::AppError;
use crate::event_store::EventRepository;
use group_commit::{ChangeCommand, Decider, GroupCommit};

pub type LineStore = PersistedEventStore<EventRepository, Line>;
type LineContext = EventStoreAggregateContext<Line>;

/// Who asked, for the envelope's correlation and causation ids, and the W3C trace
/// context the events are stored under (the relay's publish continues it).
#[derive(Debug, Clone)]
pub struct Trace {
    pub correlation_id: Uuid,
    pub causation_id: Uuid,
    pub traceparent: Option<String>,
}

impl Trace {
    /// Ids for events caused by `causation_id`, in the trace of the current span.
    pub fn here(correlation_id: Uuid, causation_id: Uuid) -> Self {
        Self {
            correlation_id,
            causation_id,
            traceparent: service_kit::traces::traceparent_here().map(|(parent, _)| parent),
        }
    }
}

/// The answer to a request: its id and what the line recorded for it.
#[derive(Debug, Clone)]
pub struct Decision {
    pub request_id: Uuid,
    pub record: RequestRecord,
}

#[derive(Clone)]
pub struct ProductChanges {
    store: Arc<LineStore>,
    /// Loads lines and decides requests (the validation's and the writers'); its pool
    /// and relay wake-up serve the KOS paths and idempotency keys too.
    decider: Decider,
    /// Where requests queue to be committed in groups.
    requests: GroupCommit,
}

impl ProductChanges {
    pub fn new(
        pool: PgPool,
        committed: Arc<Notify>,
        kos_timeout: Duration,
        group_commit: &GroupCommitConfig,
    ) -> Self {
        let store = PersistedEventStore::new_event_store(EventRepository::new(pool.clone()));
        let decider = Decider {
            pool,
            committed,
            kos_timeout: chrono::Duration::from_std(kos_timeout).unwrap_or(chrono::Duration::MAX),
        };
        Self {
            store: Arc::new(store),
            requests: GroupCommit::start(decider.clone(), group_commit),
            decider,
        }
    }

    /// Records a product-change request. With an idempotency key, a repeat by the same
    /// caller (even concurrent, even after a crash) gets the first request's answer and
    /// adds nothing; keys are the caller's own (`caller`: the token's subject).
    pub async fn request(
        &self,
        line: &LineNumber,
        request: ChangeRequest,
        idempotency_key: Option<(&str, &str)>,
        trace: Trace,
    ) -> Result<Decision, AppError> {
        let request_id = match idempotency_key {
            Some((caller, key)) => self.claim_key(caller, key, line, &request).await?,
            None => Uuid::new_v4(),
        };
        let record = self
            .requests
            .submit(ChangeCommand {
                line: line.clone(),
                request,
                request_id,
                trace,
            })
            .await?;
        Ok(Decision { request_id, record })
    }

    /// Records KOS's answer on the line: COMPLETED or FAILED if the request is still
    /// waiting, kept for audit if it already timed out, nothing if already recorded.
    pub async fn record_kos_result(&self, result: KosResult, trace: Trace) -> Result<(), AppError> {
        let line = result.line_number().to_owned();
        let command = || LineCommand::RecordKosResult {
            result: result.clone(),
            received_at: Utc::now(),
        };
        (|| self.execute(&line, command(), trace.clone()))
            .retry(conflict_backoff())
            .when(|e| matches!(e, AppError::Conflict))
            .await
    }

    /// Fails a request KOS did not answer by its `answer_by`, unless it was settled
    /// meanwhile.
    pub async fn time_out(
        &self,
        request_id: Uuid,
        line_number: &str,
        trace: Trace,
    ) -> Result<(), AppError> {
        let command = || LineCommand::TimeOut {
            request_id,
            line_number: line_number.to_owned(),
            now: Utc::now(),
        };
        (|| self.execute(line_number, command(), trace.clone()))
            .retry(conflict_backoff())
            .when(|e| matches!(e, AppError::Conflict))
            .await
    }

    /// Runs one command on the line as stored and commits what it decides.
    async fn execute(
        &self,
        line_number: &str,
        command: LineCommand,
        trace: Trace,
    ) -> Result<(), AppError> {
        let mut context = self
            .store
            .load_aggregate(line_number)
            .await
            .map_err(store_error)?;
        let sink = EventSink::default();
        cqrs_es::Aggregate::handle(context.aggregate(), command, &(), &sink)
            .await
            .map_err(line_error)?;
        self.commit(sink.collect().await, context, trace).await
    }

    async fn commit(
        &self,
        events: Vec<ProductChangeEvent>,
        context: LineContext,
        trace: Trace,
    ) -> Result<(), AppError> {
        if events.is_empty() {
            return Ok(());
        }
        self.store
            .commit(events, context, metadata(&trace))
            .await
            .map_err(store_error)?;
        self.decider.committed.notify_one();
        Ok(())
    }

    /// Runs the pre-checks against the current state, recording nothing.
    pub async fn validate(
        &self,
        line: &LineNumber,
        request: &ChangeRequest,
    ) -> Result<Vec<CheckResult>, AppError> {
        let (_, mut loaded) = self.decider.load(&[(line, request)]).await?;
        let mut line = loaded.pop().expect("one line per request")?;
        let in_flight = line.context.aggregate().in_flight();
        Ok(run_prechecks(
            &line.facts,
            line.target.as_ref(),
            request,
            in_flight,
        ))
    }

    /// Binds an idempotency key to a request id the first time it is seen; later uses
    /// with the same request get that id, a different request is refused.
    async fn claim_key(
        &self,
        caller: &str,
        key: &str,
        line: &LineNumber,
        request: &ChangeRequest,
    ) -> Result<Uuid, AppError> {
        let fingerprint = format!(
            "{}|{}|{}",
            line, request.current_product_code, request.target_product_code
        );
        // Safe to send twice: a claim that did commit is found by the second attempt.
        let candidate = Uuid::new_v4();
        let claimed: Option<(String, Uuid)> = once_more_if_connection_lost(|| {
            sqlx::query_as(
                "WITH claimed AS (
                     INSERT INTO idempotency_keys (caller, idempotency_key, fingerprint, request_id)
                     VALUES ($4, $1, $2, $3)
                     ON CONFLICT (caller, idempotency_key) DO NOTHING
                     RETURNING fingerprint, request_id)
                 SELECT fingerprint, request_id FROM claimed
                 UNION ALL
                 SELECT fingerprint, request_id FROM idempotency_keys
                  WHERE caller = $4 AND idempotency_key = $1
                 LIMIT 1",
            )
            .bind(key)
            .bind(&fingerprint)
            .bind(candidate)
            .bind(caller)
            .fetch_optional(&self.decider.pool)
        })
        .await?;
        // A claim committed by a concurrent request after this statement's snapshot is
        // invisible to it; a fresh statement sees it.
        let (stored_fingerprint, request_id) = match claimed {
            Some(row) => row,
            None => {
                sqlx::query_as(
                    "SELECT fingerprint, request_id FROM idempotency_keys
                  WHERE caller = $2 AND idempotency_key = $1",
                )
                .bind(key)
                .bind(caller)
                .fetch_one(&self.decider.pool)
                .await?
            }
        };
        if stored_fingerprint == fingerprint {
            Ok(request_id)
        } else {
            Err(AppError::IdempotencyKeyReused)
        }
    }
}

/// Runs a statement that is safe to repeat, once more if the connection it got had died
/// while idle in the pool (the pool does not ping connections before handing them out;
/// see `db::connect`). The failed connection is dropped, so the retry gets another.
async fn once_more_if_connection_lost<T, F, Fut>(statement: F) -> Result<T, sqlx::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    match statement().await {
        Err(sqlx::Error::Io(_)) => statement().await,
        result => result,
    }
}

fn metadata(trace: &Trace) -> HashMap<String, String> {
    let mut metadata = HashMap::from([
        (
            "correlation_id".to_owned(),
            trace.correlation_id.to_string(),
        ),
        ("causation_id".to_owned(), trace.causation_id.to_string()),
        ("occurred_at".to_owned(), Utc::now().to_rfc3339()),
    ]);
    if let Some(parent) = &trace.traceparent {
        metadata.insert(service_kit::traces::TRACEPARENT.to_owned(), parent.clone());
    }
    metadata
}

fn conflict_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(2))
        .with_max_delay(Duration::from_millis(100))
        .with_max_times(20)
        .with_jitter()
}

fn line_error(e: LineError) -> AppError {
    match e {
        LineError::RequestIdReused(_) => AppError::IdempotencyKeyReused,
        LineError::NotSentToKos(id) => AppError::UnknownRequest(id),
    }
}

fn store_error(e: AggregateError<LineError>) -> AppError {
    match e {
        AggregateError::AggregateConflict => AppError::Conflict,
        AggregateError::UserError(e) => line_error(e),
        other => AppError::Internal(anyhow::anyhow!("event store: {other}")),
    }
}
