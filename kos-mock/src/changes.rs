//! Product changes: KOS consumes `ProductChangeSentToKos` from `phonebill.product-change`,
//! carries the change out after the simulated latency, and answers on
//! `kos.product-change-results`.
//!
//! - **Once per request.** The order row (primary key: request id), the line's new
//!   product, its `LineProductChanged` fact and the answer commit in one transaction,
//!   under the line's row lock. A request that arrives again (duplicate, redelivery after
//!   a crash or a rebalance) finds its order and gets the stored answer again, byte for
//!   byte (same event id): nothing is executed twice, every answer is the same.
//! - **Offsets after effects.** An offset is stored (auto-committed later) only when its
//!   message and every earlier message of its partition are done, so a crash redelivers
//!   what was not durable, never skips it.
//! - **Concurrency.** Requests for different lines run side by side (a change takes
//!   300-800 ms); one line's requests run in the order they arrived.
//! - **Bad input.** A message that cannot be decoded goes to the dead-letter topic with
//!   its bytes, key and the reason; it is then skipped. Database and broker failures are
//!   retried with backoff, never dead-lettered.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use events::kos::{
    KosFact, KosResult, LineProductChanged, ProductChangeExecuted, ProductChangeRefused,
};
use events::product_change::{ProductChangeEvent, ProductChangeSentToKos};
use events::topics::Topics;
use events::{codec, dead_letter, Envelope, EventPayload};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Serialize;
use service_kit::consumer::{GroupConsumer, GroupContext};
use sqlx::PgPool;
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::catalog::{self, Product};
use crate::error::AppError;
use crate::lines::{self, Line};
use crate::outbox::{append_envelope, append_fact, result_envelope, Cause, OutboxTopic};
use crate::simulation::{Simulation, SimulationHandle};

/// KOS's refusal codes (see `events::kos::ProductChangeRefused`).
pub mod reason {
    pub const SYSTEM_ERROR: &str = "SYSTEM_ERROR";
    pub const LINE_NOT_FOUND: &str = "LINE_NOT_FOUND";
    pub const LINE_SUSPENDED: &str = "LINE_SUSPENDED";
    pub const PRODUCT_NOT_ON_SALE: &str = "PRODUCT_NOT_ON_SALE";
    pub const OPERATOR_MISMATCH: &str = "OPERATOR_MISMATCH";
    pub const CURRENT_PRODUCT_MISMATCH: &str = "CURRENT_PRODUCT_MISMATCH";
    pub const REQUEST_EXPIRED: &str = "REQUEST_EXPIRED";
}

/// The KOS order id of a request: derived from it, so it is the same however often the
/// request arrives.
pub fn kos_order_id(request_id: Uuid) -> String {
    format!("KOS-{}", request_id.simple().to_string().to_uppercase())
}

/// What KOS does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Execute { previous: String, new: String },
    Refuse { code: &'static str, message: String },
}

/// Decides a request from KOS's state, checks in order: deadline, line, status, target
/// on sale, operator, current product, then the simulated system (`succeeds`).
pub fn decide(
    now: DateTime<Utc>,
    request: &ProductChangeSentToKos,
    line: Option<&Line>,
    target: Option<&Product>,
    succeeds: bool,
) -> Decision {
    let refuse = |code, message: String| Decision::Refuse { code, message };
    if now > request.answer_by {
        return refuse(
            reason::REQUEST_EXPIRED,
            format!(
                "the request arrived after its deadline {}",
                request.answer_by
            ),
        );
    }
    let Some(line) = line else {
        return refuse(
            reason::LINE_NOT_FOUND,
            format!("line {} is not known to KOS", request.line_number),
        );
    };
    if !line.is_active() {
        return refuse(
            reason::LINE_SUSPENDED,
            format!("line {} is suspended", line.line_number),
        );
    }
    let target_code = &request.target_product_code;
    let Some(target) = target.filter(|p| p.on_sale) else {
        return refuse(
            reason::PRODUCT_NOT_ON_SALE,
            format!("product {target_code} is not on sale"),
        );
    };
    if target.operator != line.operator {
        return refuse(
            reason::OPERATOR_MISMATCH,
            format!(
                "product {target_code} is sold by {}, the line belongs to {}",
                target.operator, line.operator
            ),
        );
    }
    if line.product_code != request.current_product_code {
        return refuse(
            reason::CURRENT_PRODUCT_MISMATCH,
            format!(
                "line {} is on {}, not {}",
                line.line_number, line.product_code, request.current_product_code
            ),
        );
    }
    if !succeeds {
        return refuse(
            reason::SYSTEM_ERROR,
            "KOS could not carry the change out; try again later".into(),
        );
    }
    Decision::Execute {
        previous: line.product_code.clone(),
        new: target.product_code.clone(),
    }
}

/// How a request was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Executed,
    Refused,
    /// It had been answered before; the stored answer was sent again.
    AnsweredAgain,
}

/// An order as the admin API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub request_id: Uuid,
    pub kos_order_id: String,
    pub line_number: String,
    /// `EXECUTED` or `REFUSED`.
    pub outcome: String,
    pub previous_product_code: Option<String>,
    pub new_product_code: Option<String>,
    pub reason_code: Option<String>,
    pub message: String,
    /// How many times KOS changed the line for this request (never more than 1).
    pub executions: i64,
    /// How many times the request arrived (duplicates and redeliveries included).
    pub deliveries: i32,
    pub received_at: DateTime<Utc>,
    pub answered_at: DateTime<Utc>,
}

/// Carries requests out.
#[derive(Clone)]
pub struct Changes {
    pool: PgPool,
    committed: Arc<Notify>,
    simulation: SimulationHandle,
}

impl Changes {
    pub fn new(pool: PgPool, committed: Arc<Notify>, simulation: SimulationHandle) -> Self {
        Self {
            pool,
            committed,
            simulation,
        }
    }

    pub fn simulation(&self) -> &SimulationHandle {
        &self.simulation
    }

    /// Answers a request: again if it was answered before, else after the simulated
    /// latency, by carrying it out or refusing it.
    pub async fn handle(
        &self,
        envelope: &Envelope,
        request: &ProductChangeSentToKos,
        received_at: DateTime<Utc>,
    ) -> Result<Handled, sqlx::Error> {
        if self.answer_again(request.request_id).await? {
            return Ok(Handled::AnsweredAgain);
        }
        let simulation = self.simulation.get();
        tokio::time::sleep(simulation.latency(request.request_id)).await;
        self.execute(envelope, request, &simulation, received_at)
            .await
    }

    /// Sends the stored answer of a known request again; false if the request is new.
    async fn answer_again(&self, request_id: Uuid) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(String, sqlx::types::Json<Envelope>)> = sqlx::query_as(
            "UPDATE orders SET deliveries = deliveries + 1 WHERE request_id = $1
             RETURNING line_number, result",
        )
        .bind(request_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((line_number, result)) = row else {
            return Ok(false);
        };
        append_envelope(&mut tx, OutboxTopic::Results, &line_number, &result.0).await?;
        tx.commit().await?;
        self.committed.notify_one();
        metrics::counter!("kos_change_requests_repeated_total").increment(1);
        Ok(true)
    }

    async fn execute(
        &self,
        envelope: &Envelope,
        request: &ProductChangeSentToKos,
        simulation: &Simulation,
        received_at: DateTime<Utc>,
    ) -> Result<Handled, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // The line's lock serialises this with every other change of the line, including
        // a copy of this very request handled elsewhere.
        let line = lines::lock(&mut tx, &request.line_number).await?;
        let known: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM orders WHERE request_id = $1)")
                .bind(request.request_id)
                .fetch_one(&mut *tx)
                .await?;
        if known {
            drop(tx);
            self.answer_again(request.request_id).await?;
            return Ok(Handled::AnsweredAgain);
        }
        let target = catalog::find(&mut tx, &request.target_product_code).await?;
        let now = Utc::now();
        let decision = decide(
            now,
            request,
            line.as_ref(),
            target.as_ref(),
            simulation.succeeds(request.request_id),
        );
        let order_id = kos_order_id(request.request_id);
        let cause = Cause {
            correlation_id: envelope.correlation_id,
            causation_id: Some(envelope.event_id),
            occurred_at: now,
        };
        let (result, handled) = match &decision {
            Decision::Execute { previous, new } => {
                sqlx::query("UPDATE lines SET product_code = $2 WHERE line_number = $1")
                    .bind(&request.line_number)
                    .bind(new)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO line_product_history
                         (line_number, previous_product_code, new_product_code, kos_order_id, request_id, changed_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&request.line_number)
                .bind(previous)
                .bind(new)
                .bind(&order_id)
                .bind(request.request_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let sequence = lines::advance(&mut tx, &request.line_number).await?;
                let fact = KosFact::LineProductChanged(LineProductChanged {
                    line_number: request.line_number.clone(),
                    previous_product_code: previous.clone(),
                    new_product_code: new.clone(),
                    kos_order_id: order_id.clone(),
                    request_id: Some(request.request_id),
                });
                append_fact(&mut tx, &fact, sequence, &cause).await?;
                let result = KosResult::ProductChangeExecuted(ProductChangeExecuted {
                    request_id: request.request_id,
                    line_number: request.line_number.clone(),
                    kos_order_id: order_id.clone(),
                    previous_product_code: previous.clone(),
                    new_product_code: new.clone(),
                    message: format!("the line is now on {new}"),
                    executed_at: now,
                });
                (result, Handled::Executed)
            }
            Decision::Refuse { code, message } => {
                let result = KosResult::ProductChangeRefused(ProductChangeRefused {
                    request_id: request.request_id,
                    line_number: request.line_number.clone(),
                    kos_order_id: order_id.clone(),
                    reason_code: (*code).to_owned(),
                    message: message.clone(),
                    refused_at: now,
                });
                (result, Handled::Refused)
            }
        };
        let result_envelope = result_envelope(&result, &cause);
        let (outcome, previous, new, code, message) = match &decision {
            Decision::Execute { previous, new } => (
                "EXECUTED",
                Some(previous.as_str()),
                Some(new.as_str()),
                None,
                format!("the line is now on {new}"),
            ),
            Decision::Refuse { code, message } => {
                ("REFUSED", None, None, Some(*code), message.clone())
            }
        };
        let inserted = sqlx::query(
            "INSERT INTO orders (request_id, kos_order_id, line_number, outcome,
                 previous_product_code, new_product_code, reason_code, message,
                 received_at, answered_at, result)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(request.request_id)
        .bind(&order_id)
        .bind(&request.line_number)
        .bind(outcome)
        .bind(previous)
        .bind(new)
        .bind(code)
        .bind(&message)
        .bind(received_at)
        .bind(now)
        .bind(sqlx::types::Json(&result_envelope))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // Answered concurrently (possible only for an unknown line, which has no lock).
            drop(tx);
            self.answer_again(request.request_id).await?;
            return Ok(Handled::AnsweredAgain);
        }
        append_envelope(
            &mut tx,
            OutboxTopic::Results,
            &request.line_number,
            &result_envelope,
        )
        .await?;
        tx.commit().await?;
        self.committed.notify_one();
        let (label, reason) = match &decision {
            Decision::Execute { .. } => ("executed", "none"),
            Decision::Refuse { code, .. } => ("refused", *code),
        };
        metrics::counter!("kos_product_changes_total", "outcome" => label, "reason" => reason)
            .increment(1);
        Ok(handled)
    }

    pub async fn order(&self, request_id: Uuid) -> Result<Order, AppError> {
        sqlx::query_as(
            "SELECT o.request_id, o.kos_order_id, o.line_number, o.outcome,
                    o.previous_product_code, o.new_product_code, o.reason_code, o.message,
                    (SELECT count(*) FROM line_product_history h
                      WHERE h.request_id = o.request_id) AS executions,
                    o.deliveries, o.received_at, o.answered_at
               FROM orders o WHERE o.request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            AppError::not_found(
                "ORDER_NOT_FOUND",
                format!("KOS has no order for request {request_id}"),
            )
        })
    }
}

/// Reads `phonebill.product-change` as a member of the group `member` names
/// (`service_kit::kafka::group_member`) and hands each request to [`Changes`].
pub struct ChangeConsumer {
    pub changes: Changes,
    /// Client settings the dead-letter producer starts from.
    pub kafka: ClientConfig,
    pub member: ClientConfig,
    pub topics: Topics,
    pub max_in_flight: usize,
}

/// Per partition: offsets handed out and not yet done, and the highest seen.
#[derive(Default)]
struct OffsetTracker {
    partitions: HashMap<i32, PartitionOffsets>,
}

struct PartitionOffsets {
    pending: BTreeSet<i64>,
    highest: i64,
    stored: i64,
}

impl OffsetTracker {
    fn begin(&mut self, partition: i32, offset: i64) {
        let p = self
            .partitions
            .entry(partition)
            .or_insert_with(|| PartitionOffsets {
                pending: BTreeSet::new(),
                highest: offset,
                stored: offset,
            });
        p.pending.insert(offset);
        p.highest = p.highest.max(offset);
    }

    /// Marks `offset` done; returns the offset to store (the next to read) if it moved.
    fn finish(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        p.pending.remove(&offset);
        let next = p.pending.first().copied().unwrap_or(p.highest + 1);
        (next > p.stored).then(|| {
            p.stored = next;
            next
        })
    }
}

struct Shared {
    changes: Changes,
    consumer: Arc<GroupConsumer>,
    dead_letters: FutureProducer,
    topic: String,
    dead_letter_topic: String,
    group: String,
    offsets: Mutex<OffsetTracker>,
    /// Per ordering key (line): the task that must finish before the next may start.
    chains: Mutex<HashMap<String, (u64, oneshot::Receiver<()>)>>,
}

impl ChangeConsumer {
    /// Creates the consumer and subscribes (fails fast if the broker settings are wrong).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let group = self.member.get("group.id").unwrap_or_default().to_owned();
        let mut config = self.member.clone();
        config
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000");
        let consumer: GroupConsumer =
            config.create_with_context(GroupContext::new(group.clone()))?;
        let topic = self.topics.product_change();
        consumer.subscribe(&[&topic])?;
        let mut producer_config = self.kafka.clone();
        producer_config
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000");
        let shared = Arc::new(Shared {
            changes: self.changes,
            consumer: Arc::new(consumer),
            dead_letters: producer_config.create()?,
            topic,
            dead_letter_topic: self.topics.dead_letter(),
            group,
            offsets: Mutex::new(OffsetTracker::default()),
            chains: Mutex::new(HashMap::new()),
        });
        tracing::info!(topic = %shared.topic, group = %shared.group, "consuming change requests");
        let permits = Arc::new(Semaphore::new(self.max_in_flight));
        let mut tasks = JoinSet::new();
        let mut next_id: u64 = 0;
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = shared.consumer.recv() => m,
            };
            let message = match message {
                Ok(m) => m.detach(),
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let (partition, offset) = (message.partition(), message.offset());
            shared
                .offsets
                .lock()
                .expect("offset lock")
                .begin(partition, offset);
            let key = ordering_key(&message);
            next_id += 1;
            let id = next_id;
            let (done, waiter) = oneshot::channel();
            let previous = shared
                .chains
                .lock()
                .expect("chain lock")
                .insert(key.clone(), (id, waiter))
                .map(|(_, rx)| rx);
            let shared = shared.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                if let Some(previous) = previous {
                    let _ = previous.await;
                }
                let finished = shared.process(&message, &shutdown).await;
                {
                    let mut chains = shared.chains.lock().expect("chain lock");
                    if chains.get(&key).is_some_and(|(owner, _)| *owner == id) {
                        chains.remove(&key);
                    }
                }
                let _ = done.send(());
                if finished {
                    shared.store(partition, offset);
                }
                drop(permit);
            });
        }
        // Finish what is in flight, then commit what is done.
        while tasks.join_next().await.is_some() {}
        if let Err(e) = shared.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final offset commit");
        }
        tracing::info!("change consumer stopped");
        Ok(())
    }
}

/// The line a message is about (its key), so one line's messages stay in order.
fn ordering_key(message: &OwnedMessage) -> String {
    message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default()
}

impl Shared {
    /// Handles one message; false if it was abandoned (shutdown) and must be read again.
    async fn process(&self, message: &OwnedMessage, shutdown: &CancellationToken) -> bool {
        let received_at = Utc::now();
        let started = Instant::now();
        let bytes = message.payload().unwrap_or_default();
        let envelope = match codec::decode_envelope(bytes) {
            Ok(envelope) => envelope,
            Err(e) => return self.dead_letter(message, &e.to_string(), shutdown).await,
        };
        if envelope.event_type != "ProductChangeSentToKos" {
            // The topic's other events are the command side's own bookkeeping.
            return true;
        }
        let request = match ProductChangeEvent::from_payload(
            &envelope.event_type,
            envelope.event_version,
            envelope.payload.clone(),
        ) {
            Ok(ProductChangeEvent::ProductChangeSentToKos(request)) => request,
            Ok(_) => return true,
            Err(e) => return self.dead_letter(message, &e.to_string(), shutdown).await,
        };
        let attempt = || self.changes.handle(&envelope, &request, received_at);
        let result = attempt
            .retry(backoff())
            .when(|_| !shutdown.is_cancelled())
            .notify(|e, wait| {
                metrics::counter!("kos_change_retries_total").increment(1);
                tracing::warn!(error = %e, retry_in = ?wait, request_id = %request.request_id, "change request failed; retrying");
            })
            .await;
        match result {
            Ok(handled) => {
                tracing::info!(request_id = %request.request_id, line = %request.line_number, ?handled, elapsed_ms = started.elapsed().as_millis() as u64, "change request answered");
                metrics::histogram!("kos_change_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, request_id = %request.request_id, "change request abandoned at shutdown");
                false
            }
        }
    }

    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        tracing::warn!(
            reason,
            partition = message.partition(),
            offset = message.offset(),
            "dead-lettering an undecodable message"
        );
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let send = || async {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: dead_letter::REASON,
                    value: Some(reason),
                })
                .insert(Header {
                    key: dead_letter::SOURCE_TOPIC,
                    value: Some(message.topic()),
                })
                .insert(Header {
                    key: dead_letter::SOURCE_PARTITION,
                    value: Some(&partition),
                })
                .insert(Header {
                    key: dead_letter::SOURCE_OFFSET,
                    value: Some(&offset),
                })
                .insert(Header {
                    key: dead_letter::CONSUMER,
                    value: Some(&self.group),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.dead_letter_topic)
                    .payload(message.payload().unwrap_or_default())
                    .headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            self.dead_letters
                .send(record, Duration::from_secs(10))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        };
        let result = send
            .retry(backoff())
            .when(|_| !shutdown.is_cancelled())
            .notify(|e, wait| tracing::warn!(error = %e, retry_in = ?wait, "dead-letter publish failed; retrying"))
            .await;
        if result.is_ok() {
            metrics::counter!("kos_dead_letters_total").increment(1);
        }
        result.is_ok()
    }

    fn store(&self, partition: i32, offset: i64) {
        let next = self
            .offsets
            .lock()
            .expect("offset lock")
            .finish(partition, offset);
        if let Some(next) = next {
            let mut list = TopicPartitionList::new();
            if list
                .add_partition_offset(&self.topic, partition, Offset::Offset(next))
                .is_ok()
            {
                // Fails only if the partition was revoked meanwhile; its new owner
                // re-reads from the last commit and finds the orders answered.
                if let Err(e) = self.consumer.store_offsets(&list) {
                    tracing::debug!(error = %e, partition, next, "offset not stored");
                }
            }
        }
    }
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .with_jitter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeDelta};

    fn request(current: &str, target: &str) -> ProductChangeSentToKos {
        let now = Utc::now();
        ProductChangeSentToKos {
            request_id: Uuid::from_u128(7),
            line_number: "010-0000-0001".into(),
            customer_id: "CUST0001".into(),
            current_product_code: current.into(),
            target_product_code: target.into(),
            sent_at: now,
            answer_by: now + TimeDelta::seconds(300),
        }
    }

    fn line(status: &str) -> Line {
        Line {
            line_number: "010-0000-0001".into(),
            customer_id: "CUST0001".into(),
            customer_name: "김민준".into(),
            operator: "KT".into(),
            status: status.into(),
            product_code: "5G-STANDARD-001".into(),
            commitment_months: 24,
            contract_started_on: NaiveDate::from_ymd_opt(2025, 2, 1).unwrap(),
            contract_ends_on: NaiveDate::from_ymd_opt(2027, 2, 1).unwrap(),
            device_price: 0,
            payment_method: "CARD".into(),
            sequence: 1,
        }
    }

    fn product(code: &str, operator: &str, on_sale: bool) -> Product {
        Product {
            product_code: code.into(),
            name: code.into(),
            operator: operator.into(),
            monthly_fee: 89_000,
            data_mb: None,
            voice_minutes: None,
            sms_count: None,
            on_sale,
            sequence: 1,
        }
    }

    fn code(d: Decision) -> &'static str {
        match d {
            Decision::Refuse { code, .. } => code,
            Decision::Execute { .. } => "EXECUTED",
        }
    }

    #[test]
    fn each_refusal_has_its_code_in_order_of_the_checks() {
        let r = request("5G-STANDARD-001", "5G-PREMIUM-001");
        let premium = product("5G-PREMIUM-001", "KT", true);
        let active = line("ACTIVE");
        let now = Utc::now();
        let late = r.answer_by + TimeDelta::milliseconds(1);
        assert_eq!(
            code(decide(late, &r, Some(&active), Some(&premium), true)),
            reason::REQUEST_EXPIRED
        );
        assert_eq!(
            code(decide(now, &r, None, Some(&premium), true)),
            reason::LINE_NOT_FOUND
        );
        assert_eq!(
            code(decide(
                now,
                &r,
                Some(&line("SUSPENDED")),
                Some(&premium),
                true
            )),
            reason::LINE_SUSPENDED
        );
        assert_eq!(
            code(decide(now, &r, Some(&active), None, true)),
            reason::PRODUCT_NOT_ON_SALE
        );
        let withdrawn = product("5G-PREMIUM-001", "KT", false);
        assert_eq!(
            code(decide(now, &r, Some(&active), Some(&withdrawn), true)),
            reason::PRODUCT_NOT_ON_SALE
        );
        let lgu = product("5G-PREMIUM-001", "LGU", true);
        assert_eq!(
            code(decide(now, &r, Some(&active), Some(&lgu), true)),
            reason::OPERATOR_MISMATCH
        );
        let stale = request("5G-BASIC-001", "5G-PREMIUM-001");
        assert_eq!(
            code(decide(now, &stale, Some(&active), Some(&premium), true)),
            reason::CURRENT_PRODUCT_MISMATCH
        );
        assert_eq!(
            code(decide(now, &r, Some(&active), Some(&premium), false)),
            reason::SYSTEM_ERROR
        );
        assert_eq!(
            decide(now, &r, Some(&active), Some(&premium), true),
            Decision::Execute {
                previous: "5G-STANDARD-001".into(),
                new: "5G-PREMIUM-001".into()
            }
        );
        // Exactly at the deadline is still in time.
        assert_eq!(
            code(decide(r.answer_by, &r, Some(&active), Some(&premium), true)),
            "EXECUTED"
        );
    }

    #[test]
    fn kos_order_ids_are_derived_from_the_request() {
        let id = Uuid::from_u128(0xabc);
        assert_eq!(kos_order_id(id), kos_order_id(id));
        assert_ne!(kos_order_id(id), kos_order_id(Uuid::from_u128(0xabd)));
        assert!(kos_order_id(id).starts_with("KOS-"));
        assert!(kos_order_id(id).len() <= 64);
    }

    #[test]
    fn offsets_are_stored_only_up_to_the_lowest_unfinished() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.begin(0, o);
        }
        assert_eq!(t.finish(0, 12), None);
        assert_eq!(t.finish(0, 11), None);
        assert_eq!(t.finish(0, 10), Some(13));
        assert_eq!(t.finish(0, 14), None);
        assert_eq!(t.finish(0, 13), Some(15));
    }
}
