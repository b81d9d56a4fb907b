//! Reconciliation catches what it is for: with the whole system running, a change
//! request deleted from the read table, a corrupted request, a corrupted Redis view, an
//! event lost between the relay and the projector, an event delivered again out of
//! order, and an order KOS holds for a change never sent are each reported for the right
//! line, at the right stage, with the first differing sequence; the lines around them,
//! changed at the same time, are equal. The command
//! (`phonebill-analyst reconcile`), the admin endpoint and the projector's continuous
//! check (its metric) all see it.

mod support;

use std::time::Duration;

use analyst::configuration::ReconcileArgs;
use events::stored::{StoredEvent, LINE_AGGREGATE_TYPE};
use events::topics::Topics;
use events::{codec, event_id_for};
use projector::faults;
use projector::reconcile::Report;
use read_model::keys::View;
use support::stack::Stack;
use test_support::wait::wait_until;

/// The customers whose lines are damaged (the first six are also part of the load).
const CUSTOMERS: [&str; 8] = [
    "CUST0001", "CUST0002", "CUST0003", "CUST0004", "CUST0005", "CUST0006", "CUST0007", "CUST0008",
];

/// Thirty customers whose changes are only load (every 25th demo line is suspended).
fn load_customers() -> Vec<String> {
    (11..=41)
        .filter(|n| n % 25 != 0)
        .map(|n| format!("CUST{n:04}"))
        .collect()
}

fn args(stack: &Stack, wait_secs: u64, redis: bool) -> ReconcileArgs {
    ReconcileArgs {
        from: None,
        to: None,
        limit: None,
        position: None,
        wait_secs,
        no_views: false,
        redis,
        broker: true,
        kos_schema: Some(stack.kos_schema.clone()),
        namespace: None,
        json: true,
        quiet: true,
    }
}

async fn reconcile(stack: &Stack, wait_secs: u64) -> Report {
    analyst::reconcile::run(&stack.projector, &args(stack, wait_secs, true))
        .await
        .expect("reconciliation runs")
}

/// How many events the event store holds for `line`.
async fn events_of(stack: &Stack, line: &str) -> u64 {
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".events WHERE aggregate_type = $1 AND aggregate_id = $2",
        stack.projector.event_store_schema
    ))
    .bind(LINE_AGGREGATE_TYPE)
    .bind(line)
    .fetch_one(&stack.read_pool)
    .await
    .unwrap();
    n as u64
}

/// The line's first line number (a customer's first line).
async fn first_line(stack: &Stack, customer: &str) -> String {
    stack.login(customer).await.1[0].clone()
}

#[tokio::test]
async fn given_changes_under_way_and_six_kinds_of_damage_when_reconciled_then_exactly_the_damaged_lines_are_divergent_at_their_first_differing_sequence(
) {
    let load = load_customers();
    let everyone: Vec<&str> = CUSTOMERS
        .iter()
        .copied()
        .chain(load.iter().map(String::as_str))
        .collect();
    let stack = Stack::start(&everyone).await;

    // Given changes on 36 lines at once, reconciled three times while they are under
    // way: nothing in flight is called a difference
    let changes = futures::future::join_all(
        CUSTOMERS[..6]
            .iter()
            .copied()
            .chain(load.iter().map(String::as_str))
            .map(|c| stack.change_to_premium(c)),
    );
    let reconciled_meanwhile = async {
        let mut runs = vec![];
        for _ in 0..3 {
            runs.push(reconcile(&stack, 15).await);
        }
        runs
    };
    let (done, during) = tokio::join!(changes, reconciled_meanwhile);
    for run in during {
        assert_eq!(run.divergent, 0, "{}", run.summary());
    }
    let after = reconcile(&stack, 15).await;
    assert_eq!(after.divergent, 0, "{}", after.summary());
    assert_eq!(after.equal, after.lines, "{}", after.summary());
    assert_eq!(after.events_committed, 36 * 3, "{}", after.summary());
    let [deleted, corrupted, cached, _, _, foreign] = [0, 1, 2, 3, 4, 5].map(|i| done[i].clone());

    // When: a request is deleted from the read table ...
    sqlx::query("DELETE FROM change_requests WHERE request_id = $1::uuid")
        .bind(&deleted.2)
        .execute(&stack.read_pool)
        .await
        .unwrap();
    // ... another one's status is corrupted ...
    sqlx::query(
        "UPDATE change_requests SET doc = jsonb_set(doc, '{status}', '\"FAILED\"')
          WHERE request_id = $1::uuid",
    )
    .bind(&corrupted.2)
    .execute(&stack.read_pool)
    .await
    .unwrap();
    // ... a line's Redis view is overwritten ...
    let redis = service_kit::redis_conn::RedisConn::connect(&stack.projector.redis)
        .await
        .unwrap();
    let mut conn = redis.clone();
    let key = View::Line {
        line: cached.0.clone(),
    }
    .redis_key(&stack.projector.redis.key_prefix);
    let _: () = redis::AsyncCommands::set(&mut conn, &key, b"{\"corrupt\":true}".as_slice())
        .await
        .unwrap();
    // ... KOS holds an order for a change never sent to it ...
    sqlx::query(&format!(
        "INSERT INTO \"{}\".orders (request_id, kos_order_id, line_number, outcome, message,
                                    received_at, answered_at, result)
         VALUES (gen_random_uuid(), 'KOS-FOREIGN', $1, 'EXECUTED', 'changed', now(), now(), '{{}}')",
        stack.kos_schema
    ))
    .bind(&foreign.0)
    .execute(&stack.kos_pool)
    .await
    .unwrap();
    // ... a change's SentToKos never reaches the projector ...
    let lost_line = first_line(&stack, CUSTOMERS[6]).await;
    let lost_sequence = events_of(&stack, &lost_line).await + 2;
    faults::lose(event_id_for(LINE_AGGREGATE_TYPE, &lost_line, lost_sequence));
    // ... and another's reaches it only after the completion that followed it
    let late_line = first_line(&stack, CUSTOMERS[7]).await;
    let late_sequence = events_of(&stack, &late_line).await + 2;
    let late_id = event_id_for(LINE_AGGREGATE_TYPE, &late_line, late_sequence);
    faults::lose(late_id);
    stack.change_to_premium(CUSTOMERS[6]).await;
    stack.change_to_premium(CUSTOMERS[7]).await;
    let projector = stack
        .metrics
        .iter()
        .find(|(service, _, _)| *service == "projector")
        .unwrap()
        .clone();
    let metrics_url = format!("{}/metrics", projector.2);
    let passed_over = || async {
        metric(&stack, &metrics_url, "phonebill_projector_events_total{event_type=\"ProductChangeSentToKos\",outcome=\"duplicate\"}").await
    };
    let before = passed_over().await;
    faults::deliver(late_id);
    redeliver(&stack, &late_line, late_sequence).await;
    wait_until(
        "the projector has had the late event",
        Duration::from_secs(30),
        || async { passed_over().await > before },
    )
    .await;

    // Then: the six lines, and only they, are divergent where the damage is (the late
    // event was published twice, so the broker's copy of its line is the first to differ)
    let report = reconcile(&stack, 5).await;
    let expected = [
        (&deleted.0, "views", Some(1)),
        (&corrupted.0, "views", Some(3)),
        (&cached.0, "redis", None),
        (&foreign.0, "kos", None),
        (&lost_line, "projector", Some(lost_sequence)),
        (&late_line, "broker", Some(late_sequence)),
    ];
    assert_eq!(report.divergent, 6, "{}", report.summary());
    for (line, stage, first) in expected {
        let found = report
            .differences
            .iter()
            .find(|d| &d.line == line)
            .unwrap_or_else(|| panic!("{line} not reported:\n{}", report.summary()));
        assert_eq!(found.standing, "divergent", "{found:?}");
        assert_eq!(found.stage, Some(stage), "{found:?}");
        assert_eq!(found.first_difference, first, "{found:?}");
    }
    assert_eq!(report.equal, report.lines - 6, "{}", report.summary());
    // 38 changes of three events each, the lines with no change not being known
    assert_eq!(report.events_committed, 38 * 3, "{}", report.summary());
    assert_eq!(report.behind, 0, "{}", report.summary());

    // ... the admin endpoint and the continuous check (the read side's stages only:
    // neither reads the broker nor KOS) report the other five ...
    let answer: serde_json::Value = stack
        .http
        .get(format!("{}/admin/reconciliation?waitSecs=2", projector.1))
        .bearer_auth(&stack.kos_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["divergent"], 5, "{answer}");

    wait_until(
        "the continuous check reports five divergent lines",
        Duration::from_secs(60),
        || async {
            metric(
                &stack,
                &metrics_url,
                "phonebill_reconciliation_divergent_lines",
            )
            .await
                == 5.0
        },
    )
    .await;
    stack.stop().await;
}

/// A sample's value on the metrics page (0 when absent).
async fn metric(stack: &Stack, url: &str, sample: &str) -> f64 {
    let text = stack
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Publishes the line's event `sequence` again, as the relay published it.
async fn redeliver(stack: &Stack, line: &str, sequence: u64) {
    let stored: StoredEvent = sqlx::query_as(&format!(
        "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at
           FROM \"{}\".events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
        stack.projector.event_store_schema
    ))
    .bind(LINE_AGGREGATE_TYPE)
    .bind(line)
    .bind(sequence as i64)
    .fetch_one(&stack.read_pool)
    .await
    .unwrap();
    let envelope = stored.into_envelope().unwrap();
    let topic = Topics::new(&stack.projector.kafka.topic_prefix).product_change();
    let producer = test_support::topic::producer();
    test_support::topic::publish(&producer, &topic, line, &codec::encode(&envelope)).await;
}

#[tokio::test]
async fn given_a_rebuilt_namespace_that_differs_from_the_event_store_when_switching_then_the_switch_is_refused_unless_forced(
) {
    // Given: a change went through, and a replay rebuilt the views in namespace `gate`
    let stack = Stack::start(&["CUST0003"]).await;
    let (line, _, request) = stack.change_to_premium("CUST0003").await;
    let config = stack.projector.clone();
    analyst::replay::run(
        &config,
        analyst::replay::ReplayOptions {
            id: Some("gate".into()),
            progress: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (control, _, _) = projector::startup::active_config(&config).await.unwrap();
    let rebuilt = format!("{}_gate", config.database.schema);
    let set_status = |status: &'static str| {
        let sql = format!(
            "UPDATE \"{rebuilt}\".change_requests SET doc = jsonb_set(doc, '{{status}}', to_jsonb($2::text))
              WHERE request_id = $1::uuid"
        );
        let (pool, request) = (stack.read_pool.clone(), request.clone());
        async move {
            sqlx::query(&sql)
                .bind(&request)
                .bind(status)
                .execute(&pool)
                .await
                .unwrap();
        }
    };

    // When the rebuilt request is corrupted, then the switch is refused, naming the line
    set_status("FAILED").await;
    let refused = analyst::reconcile::gate(&config, &control, "gate", false)
        .await
        .expect_err("a namespace that differs from the event store is not switched to");
    assert!(refused.to_string().contains(&line), "{refused}");
    // ... unless forced
    analyst::reconcile::gate(&config, &control, "gate", true)
        .await
        .unwrap();

    // When it is what its events make again, then the switch may go ahead
    set_status("COMPLETED").await;
    analyst::reconcile::gate(&config, &control, "gate", false)
        .await
        .unwrap();
    stack.stop().await;
}
