//! Time travel against the real broker: a line's state as of moments between its events,
//! from the CLI's function and from the analyst endpoint.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use events::kos::{self, KosFact};
use events::product_change::{self as pc, ProductChangeEvent};
use events::topics::partition_for;
use events::{codec, Envelope};
use projector::time_travel::{self, AsOfError, LineState};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use service_kit::auth::{Role, SystemClock, Tokens};
use uuid::Uuid;

use test_support::fixtures::envelope_at as envelope;

use crate::helpers::{producer, spawn_app, test_config, wait_until, TestApp, PARTITIONS};

/// Publishes an event keyed by its aggregate id; checks it landed on the partition
/// time travel will read.
async fn publish(producer: &FutureProducer, topic: &str, envelope: &Envelope) {
    let bytes = codec::encode(envelope);
    let delivery = producer
        .send(
            FutureRecord::to(topic)
                .key(&envelope.aggregate_id)
                .payload(&bytes)
                .headers(test_support::kos_signed(&envelope.aggregate_id, &bytes)),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(
        delivery.partition,
        partition_for(&envelope.aggregate_id, PARTITIONS)
    );
}

fn registered(line: &str, product: &str) -> KosFact {
    KosFact::LineRegistered(kos::LineRegistered {
        line_number: line.into(),
        customer_id: "CUST001".into(),
        customer_name: "Kim".into(),
        operator: "KT".into(),
        status: kos::LineStatus::Active,
        product_code: product.into(),
        contract: kos::Contract {
            commitment_months: 24,
            started_on: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            ends_on: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        },
    })
}

fn requested(line: &str, id: Uuid, from: &str, to: &str, at: DateTime<Utc>) -> ProductChangeEvent {
    ProductChangeEvent::ProductChangeRequested(pc::ProductChangeRequested {
        request_id: id,
        line_number: line.into(),
        customer_id: "CUST001".into(),
        operator: "KT".into(),
        current_product_code: from.into(),
        target_product_code: to.into(),
        requested_at: at,
    })
}

/// The line's history, `base` + minutes: registered on 5G-STANDARD-001 (0); a change to
/// 5G-PREMIUM-001 requested (10), sent to KOS (11), completed (12, with KOS's fact);
/// another change to 5G-BASIC-001 requested (20). Another line's events share the
/// topics (and maybe the partitions).
struct History {
    line: String,
    base: DateTime<Utc>,
    first: Uuid,
    second: Uuid,
}

impl History {
    fn at(&self, minutes: f64) -> DateTime<Utc> {
        self.base + chrono::Duration::milliseconds((minutes * 60_000.0) as i64)
    }

    async fn publish(&self, app: &TestApp) {
        let (line, first, second) = (self.line.as_str(), self.first, self.second);
        let producer = producer();
        let kos_topic = app.topics.kos_billing();
        let changes_topic = app.topics.product_change();
        let other = "010-9999-0001";
        let kos_fact = |seq, minutes, f: KosFact| {
            envelope(
                f.aggregate_type(),
                f.aggregate_id(),
                seq,
                self.at(minutes),
                &f,
            )
        };
        let change = |line: &str, seq, minutes, e: ProductChangeEvent| {
            envelope("Line", line, seq, self.at(minutes), &e)
        };
        let kos_facts = [
            kos_fact(1, 0.0, registered(other, "5G-PREMIUM-001")),
            kos_fact(1, 0.0, registered(line, "5G-STANDARD-001")),
            kos_fact(
                2,
                12.0,
                KosFact::LineProductChanged(kos::LineProductChanged {
                    line_number: line.into(),
                    previous_product_code: "5G-STANDARD-001".into(),
                    new_product_code: "5G-PREMIUM-001".into(),
                    kos_order_id: "KOS-1".into(),
                    request_id: Some(first),
                }),
            ),
        ];
        let std = "5G-STANDARD-001";
        let premium = "5G-PREMIUM-001";
        let changes = [
            change(
                line,
                1,
                10.0,
                requested(line, first, std, premium, self.at(10.0)),
            ),
            change(
                other,
                1,
                10.0,
                requested(other, Uuid::new_v4(), premium, std, self.at(10.0)),
            ),
            change(
                line,
                2,
                11.0,
                ProductChangeEvent::ProductChangeSentToKos(pc::ProductChangeSentToKos {
                    request_id: first,
                    line_number: line.into(),
                    customer_id: "CUST001".into(),
                    current_product_code: std.into(),
                    target_product_code: premium.into(),
                    sent_at: self.at(11.0),
                    answer_by: self.at(16.0),
                }),
            ),
            change(
                line,
                3,
                12.0,
                ProductChangeEvent::ProductChangeCompleted(pc::ProductChangeCompleted {
                    request_id: first,
                    line_number: line.into(),
                    kos_order_id: "KOS-1".into(),
                    previous_product_code: std.into(),
                    new_product_code: premium.into(),
                    message: "changed".into(),
                    completed_at: self.at(12.0),
                }),
            ),
            change(
                line,
                4,
                20.0,
                requested(line, second, premium, "5G-BASIC-001", self.at(20.0)),
            ),
        ];
        for e in &kos_facts {
            publish(&producer, &kos_topic, e).await;
        }
        for e in &changes {
            publish(&producer, &changes_topic, e).await;
        }
    }
}

/// The product and the pending change (request id and status) a state shows.
fn summary(state: &LineState) -> (String, Option<(Uuid, String)>) {
    (
        state.current_product.product_code.clone(),
        state
            .pending_change
            .as_ref()
            .map(|p| (p.request_id, p.status.clone())),
    )
}

fn json_summary(body: &Value) -> (String, Option<(Uuid, String)>) {
    let pending = &body["pendingChange"];
    (
        body["currentProduct"]["productCode"]
            .as_str()
            .unwrap()
            .to_owned(),
        (!pending.is_null()).then(|| {
            (
                pending["requestId"].as_str().unwrap().parse().unwrap(),
                pending["status"].as_str().unwrap().to_owned(),
            )
        }),
    )
}

#[tokio::test]
async fn a_lines_state_as_of_each_moment_shows_the_product_and_pending_change_of_then() {
    // Given a line registered, a change requested, sent and completed, then another
    // requested, all in the last hour.
    let config = test_config();
    let app = spawn_app(config.clone()).await;
    let history = History {
        line: "010-4321-0007".into(),
        base: Utc::now() - chrono::Duration::hours(1),
        first: Uuid::new_v4(),
        second: Uuid::new_v4(),
    };
    history.publish(&app).await;
    let line = history.line.as_str();
    wait_until(
        "the whole history is readable",
        Duration::from_secs(30),
        || async {
            time_travel::as_of(&config, line, Utc::now())
                .await
                .is_ok_and(|(s, _)| s.position == 4)
        },
    )
    .await;

    // When asking as of moments between the events (the CLI's function), then each
    // answer shows that moment's product and pending change.
    let std = "5G-STANDARD-001".to_owned();
    let premium = "5G-PREMIUM-001".to_owned();
    let expected = [
        (5.0, (std.clone(), None), 0),
        (
            10.0,
            (std.clone(), Some((history.first, "VALIDATED".into()))),
            1,
        ),
        (
            11.5,
            (std.clone(), Some((history.first, "PROCESSING".into()))),
            2,
        ),
        (15.0, (premium.clone(), None), 3),
        (
            25.0,
            (premium.clone(), Some((history.second, "VALIDATED".into()))),
            4,
        ),
    ];
    for (minutes, want, position) in &expected {
        let (state, stats) = time_travel::as_of(&config, line, history.at(*minutes))
            .await
            .unwrap();
        assert_eq!(&summary(&state), want, "as of minute {minutes}");
        assert_eq!(state.position, *position, "as of minute {minutes}");
        assert_eq!(state.line_number, line);
        assert_eq!(state.customer_id, "CUST001");
        assert_eq!(state.status, "ACTIVE");
        assert_eq!(stats.rejected, 0);
    }
    // Before the line existed there is nothing.
    let before = time_travel::as_of(&config, line, history.at(-1.0)).await;
    assert!(
        matches!(before, Err(AsOfError::NotFound { .. })),
        "{before:?}"
    );

    // The same answers from the analyst endpoint.
    let tokens = Tokens::new(
        &config.jwt,
        config.jwt.signing_keys(false).unwrap(),
        Arc::new(SystemClock),
    );
    let (analyst, _) = tokens.issue("analyst", Role::Analyst, vec![]);
    let (admin, _) = tokens.issue("admin", Role::Admin, vec![]);
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/analytics/lines/{line}/state", app.address);
    for (minutes, want, position) in &expected {
        let response = client
            .get(&url)
            .query(&[("at", history.at(*minutes).to_rfc3339())])
            .bearer_auth(&analyst)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "as of minute {minutes}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(&json_summary(&body), want, "as of minute {minutes}");
        assert_eq!(body["position"], *position);
        assert_eq!(body["lineNumber"], line);
    }
    let response = client
        .get(&url)
        .query(&[("at", history.at(15.0).to_rfc3339())])
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "admins may too");

    // As of now, time travel agrees with the live projection of the same events.
    wait_until(
        "the live projector applied the line",
        Duration::from_secs(30),
        || async { app.line_position(line).await == 4 },
    )
    .await;
    let live: Value = sqlx::query_scalar("SELECT doc FROM lines WHERE line_number = $1")
        .bind(line)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let (now, _) = time_travel::as_of(&config, line, Utc::now()).await.unwrap();
    assert_eq!(json_summary(&live), summary(&now));

    app.stop().await;
}

#[tokio::test]
async fn the_state_endpoint_is_for_analysts_the_parked_endpoints_for_admins_and_bad_input_gets_stable_codes(
) {
    // Given a projector and a line with one registration fact.
    let config = test_config();
    let app = spawn_app(config.clone()).await;
    let line = "010-4321-0008";
    let registered_at = Utc::now() - chrono::Duration::minutes(5);
    let fact = registered(line, "5G-STANDARD-001");
    publish(
        &producer(),
        &app.topics.kos_billing(),
        &envelope(fact.aggregate_type(), line, 1, registered_at, &fact),
    )
    .await;
    let tokens = Tokens::new(
        &config.jwt,
        config.jwt.signing_keys(false).unwrap(),
        Arc::new(SystemClock),
    );
    let (analyst, _) = tokens.issue("analyst", Role::Analyst, vec![]);
    let (customer, _) = tokens.issue("CUST001", Role::Customer, vec![line.into()]);
    let client = reqwest::Client::new();
    let base = format!("{}/api/v1/analytics/lines", app.address);
    let now = Utc::now().to_rfc3339();
    let before = (registered_at - chrono::Duration::seconds(1)).to_rfc3339();
    let get = |path: String, at: Option<&str>, token: Option<&str>| {
        let mut request = client.get(format!("{base}/{path}"));
        if let Some(at) = at {
            request = request.query(&[("at", at)]);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let problem = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(content_type, "application/problem+json");
        let body: Value = response.json().await.unwrap();
        (status, body["code"].as_str().unwrap().to_owned())
    };
    wait_until(
        "the registration is readable",
        Duration::from_secs(30),
        || async {
            get(format!("{line}/state"), Some(&now), Some(&analyst))
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;

    // When a customer asks (even about their own line), or nobody logged in, or the
    // input is bad, then each gets its problem.
    let cases = [
        (
            format!("{line}/state"),
            Some(now.as_str()),
            Some(customer.as_str()),
            (403, "FORBIDDEN"),
        ),
        (
            format!("{line}/state"),
            Some(now.as_str()),
            None,
            (401, "UNAUTHENTICATED"),
        ),
        (
            format!("{line}/state"),
            Some(now.as_str()),
            Some("not-a-token"),
            (401, "UNAUTHENTICATED"),
        ),
        (
            "010-12-34/state".into(),
            Some(now.as_str()),
            Some(analyst.as_str()),
            (400, "INVALID_LINE_NUMBER"),
        ),
        (
            format!("{line}/state"),
            None,
            Some(analyst.as_str()),
            (400, "INVALID_AT"),
        ),
        (
            format!("{line}/state"),
            Some("yesterday"),
            Some(analyst.as_str()),
            (400, "INVALID_AT"),
        ),
        (
            format!("{line}/state"),
            Some("2999-01-01T00:00:00Z"),
            Some(analyst.as_str()),
            (400, "INVALID_AT"),
        ),
        (
            format!("{line}/state"),
            Some(before.as_str()),
            Some(analyst.as_str()),
            (404, "LINE_NOT_FOUND"),
        ),
        (
            "010-4321-0009/state".into(),
            Some(now.as_str()),
            Some(analyst.as_str()),
            (404, "LINE_NOT_FOUND"),
        ),
    ];
    for (path, at, token, (status, code)) in cases {
        let got = problem(get(path.clone(), at, token).await.unwrap()).await;
        assert_eq!(got, (status, code.to_owned()), "{path} at {at:?}");
    }

    // The parked-events endpoints share the port (reachable from the gateway's subnet
    // since this route): admins only.
    let (admin, _) = tokens.issue("admin", Role::Admin, vec![]);
    let parked = format!("{}/admin/parked", app.address);
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.unwrap().status().as_u16()
    };
    assert_eq!(status(client.get(&parked)).await, 401);
    assert_eq!(status(client.get(&parked).bearer_auth(&analyst)).await, 403);
    assert_eq!(
        status(client.post(format!("{parked}/retry")).bearer_auth(&analyst)).await,
        403
    );
    assert_eq!(status(client.get(&parked).bearer_auth(&admin)).await, 200);

    app.stop().await;
}

#[tokio::test]
async fn the_admin_and_analyst_endpoints_are_limited_per_address_and_answer_with_the_security_headers(
) {
    // Given a projector allowing 3 requests a minute per address (behind one proxy)
    let mut config = test_config();
    config.hardening.per_ip_per_minute = 3;
    config.hardening.trusted_proxy_hops = 1;
    let app = spawn_app(config).await;
    let client = reqwest::Client::new();
    let state = format!(
        "{}/api/v1/analytics/lines/010-0000-0001/state?at=2026-01-01T00:00:00Z",
        app.address
    );
    let from = |address: &'static str| client.get(&state).header("x-forwarded-for", address);

    // When one address sends four, then the fourth is refused with Retry-After
    for _ in 0..3 {
        let response = from("203.0.113.5").send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    let refused = from("203.0.113.5").send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED");

    // And another address, the admin route and health are not held back by it
    assert_eq!(from("198.51.100.1").send().await.unwrap().status(), 401);
    let parked = client
        .get(format!("{}/admin/parked", app.address))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(parked.status(), 401);
    for _ in 0..5 {
        let health = client
            .get(format!("{}/health/live", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
    app.stop().await;
}
