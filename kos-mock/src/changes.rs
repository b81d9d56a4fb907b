//! Product changes: KOS consumes `ProductChangeSentToKos` from `phonebill.product-change`,
//! carries the change out after the simulated latency, and answers on
//! `kos.product-change-results`.
//!
//! - **Once per request.** The order row (primary key: request id), the line's new
//!   product, its `LineProductChanged` fact and the answer commit in one transaction,
//!   under the line's row lock. A request that arrives again (duplicate, redelivery after
//!   a crash or a rebalance) finds its order and gets the stored answer again, byte for
//!   byte (same event id): nothing is executed twice, every answer is the same.
//! - **Offsets after effects.** The consumer is `service_kit::group_worker`, ordered by
//!   key: an offset is stored (auto-committed later) only when its message and every
//!   earlier message of its partition are done, so a crash redelivers what was not
//!   durable, never skips it.
//! - **Concurrency.** Requests for different lines run side by side (a change takes
//!   300-800 ms), up to `max_in_flight` at once; one line's requests run in the order
//!   they arrived.
//! - **Bad input.** A message that cannot be decoded is judged dead: the worker copies it
//!   to the dead-letter topic with its bytes, key and the reason, then skips it. Database
//!   failures come back as errors, which the worker retries with backoff; they are never
//!   dead-lettered.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use events::kos::{
    KosFact, KosResult, LineProductChanged, ProductChangeExecuted, ProductChangeRefused,
};
use events::product_change::{ProductChangeEvent, ProductChangeSentToKos};
use events::topics::Topics;
use events::{codec, Envelope, EventPayload};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message};
use serde::Serialize;
use service_kit::group_worker::{GroupWorker, Handler, Ordering, Settings, Verdict};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::catalog::{self, Product};
use crate::error::AppError;
use crate::lines::{self, Line};
use crate::outbox::{append_envelope, append_fact, result_envelope, Cause, OutboxTopic};
use crate::simulation::{Simulation, SimulationHandle};
use service_kit::problem::ProblemCode;

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
                let result =
                    change_product(&mut tx, request, previous, new, &order_id, &cause).await?;
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
        let order = OrderRecord {
            request,
            order_id: &order_id,
            decision: &decision,
            received_at,
            answered_at: now,
            result: &result_envelope,
        };
        if !order.insert(&mut tx).await? {
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
            AppError::refused(
                ProblemCode::OrderNotFound,
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

impl ChangeConsumer {
    /// Creates the group member and subscribes (fails fast if the broker settings are
    /// wrong), then hands requests to [`ChangeRequests`] until `shutdown`: requests in
    /// hand finish, and the offsets of what is done are committed.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let group = self.member.get("group.id").unwrap_or_default().to_owned();
        let settings = Settings::new(
            group,
            vec![self.topics.product_change()],
            self.topics.dead_letter(),
            Ordering::key(self.max_in_flight),
        );
        let worker = GroupWorker::new(&self.member, &self.kafka, settings)?;
        let requests = Arc::new(ChangeRequests {
            changes: self.changes,
        });
        worker.run(requests, shutdown).await;
        Ok(())
    }
}

/// The domain side of the change consumer: one message of a line at a time.
pub struct ChangeRequests {
    changes: Changes,
}

#[async_trait]
impl Handler for ChangeRequests {
    async fn handle(&self, messages: &[OwnedMessage]) -> anyhow::Result<Vec<Verdict>> {
        let mut verdicts = Vec::with_capacity(messages.len());
        for message in messages {
            verdicts.push(self.request(message).await?);
        }
        Ok(verdicts)
    }
}

impl ChangeRequests {
    /// Answers a request; the topic's other events (the command side's own bookkeeping)
    /// need nothing. `Err` is transient.
    async fn request(&self, message: &OwnedMessage) -> Result<Verdict, sqlx::Error> {
        let received_at = Utc::now();
        let started = Instant::now();
        let bytes = message.payload().unwrap_or_default();
        let envelope = match codec::decode_envelope(bytes) {
            Ok(envelope) => envelope,
            Err(e) => return Ok(Verdict::dead(e.kind(), e.to_string())),
        };
        if envelope.event_type != "ProductChangeSentToKos" {
            return Ok(Verdict::Done);
        }
        let request = match ProductChangeEvent::from_payload(
            &envelope.event_type,
            envelope.event_version,
            envelope.payload.clone(),
        ) {
            Ok(ProductChangeEvent::ProductChangeSentToKos(request)) => request,
            Ok(_) => return Ok(Verdict::Done),
            Err(e) => return Ok(Verdict::dead(e.kind(), e.to_string())),
        };
        let handled = self
            .changes
            .handle(&envelope, &request, received_at)
            .await?;
        tracing::info!(request_id = %request.request_id, line = %request.line_number, ?handled, elapsed_ms = started.elapsed().as_millis() as u64, "change request answered");
        metrics::histogram!("kos_change_duration_seconds").record(started.elapsed().as_secs_f64());
        Ok(Verdict::Done)
    }
}

/// Moves the line to its new product: the line row, its history, the `LineProductChanged`
/// fact, all in the caller's transaction; returns the result KOS answers with.
async fn change_product(
    conn: &mut sqlx::PgConnection,
    request: &ProductChangeSentToKos,
    previous: &str,
    new: &str,
    order_id: &str,
    cause: &Cause,
) -> Result<KosResult, sqlx::Error> {
    let now = cause.occurred_at;
    sqlx::query("UPDATE lines SET product_code = $2 WHERE line_number = $1")
        .bind(&request.line_number)
        .bind(new)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO line_product_history
             (line_number, previous_product_code, new_product_code, kos_order_id, request_id, changed_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&request.line_number)
    .bind(previous)
    .bind(new)
    .bind(order_id)
    .bind(request.request_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let sequence = lines::advance(conn, &request.line_number).await?;
    let fact = KosFact::LineProductChanged(LineProductChanged {
        line_number: request.line_number.clone(),
        previous_product_code: previous.to_owned(),
        new_product_code: new.to_owned(),
        kos_order_id: order_id.to_owned(),
        request_id: Some(request.request_id),
    });
    append_fact(conn, &fact, sequence, cause).await?;
    Ok(KosResult::ProductChangeExecuted(ProductChangeExecuted {
        request_id: request.request_id,
        line_number: request.line_number.clone(),
        kos_order_id: order_id.to_owned(),
        previous_product_code: previous.to_owned(),
        new_product_code: new.to_owned(),
        message: format!("the line is now on {new}"),
        executed_at: now,
    }))
}

/// The order a request became, with the answer sent for it (answered again from here).
struct OrderRecord<'a> {
    request: &'a ProductChangeSentToKos,
    order_id: &'a str,
    decision: &'a Decision,
    received_at: DateTime<Utc>,
    answered_at: DateTime<Utc>,
    result: &'a Envelope,
}

impl OrderRecord<'_> {
    /// False when the request already has an order (answered concurrently).
    async fn insert(&self, conn: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
        let (outcome, previous, new, code, message) = match self.decision {
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
        .bind(self.request.request_id)
        .bind(self.order_id)
        .bind(&self.request.line_number)
        .bind(outcome)
        .bind(previous)
        .bind(new)
        .bind(code)
        .bind(&message)
        .bind(self.received_at)
        .bind(self.answered_at)
        .bind(sqlx::types::Json(self.result))
        .execute(conn)
        .await?;
        Ok(inserted.rows_affected() > 0)
    }
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
}
