//! Requests committed as a group: each request keeps its own answer, and the group's
//! events are written all together or not at all.

use std::sync::Arc;

use command_service::domain::line::RequestOutcome;
use command_service::domain::line_number::LineNumber;
use command_service::domain::product_change::ChangeRequest;
use command_service::error::AppError;
use command_service::product_change::group_commit::{ChangeCommand, Decider, GroupFailure};
use command_service::product_change::Trace;
use futures::future::join_all;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::*;

fn decider(app: &TestApp) -> Decider {
    Decider {
        pool: app.pool.clone(),
        committed: Arc::new(tokio::sync::Notify::new()),
        kos_timeout: chrono::Duration::minutes(5),
    }
}

/// The request of `body` (a `valid_change`-shaped JSON), with a fresh request id.
fn command(body: &Value) -> ChangeCommand {
    ChangeCommand {
        line: LineNumber::parse(body["lineNumber"].as_str().unwrap()).unwrap(),
        request: ChangeRequest {
            current_product_code: body["currentProductCode"].as_str().unwrap().into(),
            target_product_code: body["targetProductCode"].as_str().unwrap().into(),
        },
        request_id: Uuid::new_v4(),
        trace: Trace {
            correlation_id: Uuid::new_v4(),
            causation_id: Uuid::new_v4(),
            traceparent: None,
        },
    }
}

async fn event_types_of_line(app: &TestApp, line: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(line)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_group_answers_each_request_on_its_own_and_commits_every_decided_line() {
    // Given a running service (its relay publishes what the group writes)
    let app = spawn_app().await;

    // When one group holds a valid change, a change for an unknown line and a change
    // whose current product is not the line's
    let mut wrong_current = valid_change(3);
    wrong_current["currentProductCode"] = "5G-LITE-002".into();
    let unknown = serde_json::json!({
        "lineNumber": "010-9999-9999",
        "currentProductCode": "5G-STANDARD-001",
        "targetProductCode": "5G-PREMIUM-001"
    });
    let commands = [
        command(&valid_change(1)),
        command(&unknown),
        command(&wrong_current),
    ];
    let outcomes = decider(&app)
        .decide_all(&commands.iter().collect::<Vec<_>>())
        .await
        .expect("the group commits");

    // Then the valid change is processing, the unknown line is not found, and the
    // mismatch is rejected
    assert_eq!(outcomes.len(), 3);
    let accepted = outcomes[0].as_ref().expect("accepted");
    assert_eq!(accepted.outcome, RequestOutcome::Processing);
    assert!(matches!(&outcomes[1], Err(AppError::LineNotFound(l)) if l == "010-9999-9999"));
    let rejected = outcomes[2].as_ref().expect("recorded");
    assert!(matches!(rejected.outcome, RequestOutcome::Rejected(_)));

    // And the store holds exactly those lines' events, numbered from 1 per line
    assert_eq!(
        event_types_of_line(&app, &line(1)).await,
        ["ProductChangeRequested", "ProductChangeSentToKos"]
    );
    assert_eq!(
        event_types_of_line(&app, &line(3)).await,
        ["ProductChangeRejected"]
    );
    assert!(event_types_of_line(&app, "010-9999-9999").await.is_empty());
    let deadlines: i64 = sqlx::query_scalar("SELECT count(*) FROM kos_deadlines")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(deadlines, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_conflict_on_one_line_fails_the_whole_group_and_writes_nothing() {
    // Given a running service
    let app = spawn_app().await;

    // When a group holds two requests for line 6, both decided against the same state
    // (so both claim its first sequence) and one for line 5
    let commands = [
        command(&valid_change(5)),
        command(&valid_change(6)),
        command(&valid_change(6)),
    ];
    let result = decider(&app)
        .decide_all(&commands.iter().collect::<Vec<_>>())
        .await;

    // Then the group fails as a conflict, and not even line 5's events were written
    assert!(matches!(result, Err(GroupFailure::Conflict)), "{result:?}");
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn requests_arriving_together_for_one_line_get_one_acceptance_and_the_rest_wait_their_turn() {
    // Given a running service
    let app = spawn_app().await;

    // When ten different changes for line 7 arrive together with changes for 30 other
    // lines (so the writers form groups holding line 7 more than once)
    let mut same_line = Vec::new();
    for target in ["5G-PREMIUM-001", "5G-LITE-002"] {
        for _ in 0..5 {
            let mut body = valid_change(7);
            body["targetProductCode"] = target.into();
            same_line.push(body);
        }
    }
    let others: Vec<Value> = (10..40).filter(|n| n % 25 != 0).map(valid_change).collect();
    let post = |body: Value| {
        let app = &app;
        async move { app.post_change(&body, None).await.status().as_u16() }
    };
    let (line_7, others) = tokio::join!(
        join_all(same_line.into_iter().map(post)),
        join_all(others.into_iter().map(post))
    );

    // Then every other line is accepted; line 7 accepts one change and refuses the
    // others as CHANGE_IN_FLIGHT (or, for the target equal to its product, a failed
    // pre-check), each decided after the one before
    assert!(others.iter().all(|&s| s == 202), "{others:?}");
    assert_eq!(
        line_7.iter().filter(|&&s| s == 202).count(),
        1,
        "{line_7:?}"
    );
    assert!(
        line_7.iter().all(|&s| [202, 409, 422].contains(&s)),
        "{line_7:?}"
    );
    // And line 7's stream is one request sent to KOS plus one rejection per refusal,
    // numbered without a gap
    let sequences: Vec<i64> =
        sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
            .bind(line(7))
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(sequences, (1..=11).collect::<Vec<i64>>());
    app.stop().await;
}

#[tokio::test]
async fn a_group_whose_lines_cannot_be_loaded_fails_as_not_written() {
    // Given a running service, and a decider whose database pool is closed
    let app = spawn_app().await;
    let closed = sqlx::PgPool::connect_lazy(&app.config.database.url).unwrap();
    closed.close().await;
    let decider = Decider {
        pool: closed,
        ..decider(&app)
    };

    // When it decides a group
    let commands = [command(&valid_change(8)), command(&valid_change(9))];
    let result = decider
        .decide_all(&commands.iter().collect::<Vec<_>>())
        .await;

    // Then the group fails as not written (its callers are answered at once, not
    // retried one by one), and nothing is stored
    assert!(
        matches!(result, Err(GroupFailure::NotWritten(_))),
        "{result:?}"
    );
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}
