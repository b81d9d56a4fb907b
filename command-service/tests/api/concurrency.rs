//! Many clients at once: nothing lost, nothing repeated, one change per idempotency key.

use std::time::Duration;

use futures::future::join_all;

use crate::helpers::*;

#[tokio::test]
async fn fifty_concurrent_changes_and_twenty_repeats_of_one_key_give_exactly_the_expected_events() {
    // Given a running service
    let app = spawn_app().await;

    // When 50 changes on distinct lines and 20 requests sharing one key arrive together
    // (every 25th demo line is suspended; line 99 is the keyed one)
    let lines: Vec<u32> = (1..99u32).filter(|n| n % 25 != 0).take(50).collect();
    assert_eq!(lines.len(), 50);
    let distinct = lines.iter().map(|&n| {
        let app = &app;
        async move {
            app.post_change(&valid_change(n), None)
                .await
                .status()
                .as_u16()
        }
    });
    let shared = valid_change(99);
    let repeats = (0..20).map(|_| {
        let app = &app;
        let shared = shared.clone();
        async move {
            let response = app.post_change(&shared, Some("same-key-for-twenty")).await;
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        }
    });
    let (statuses, repeats) = tokio::join!(join_all(distinct), join_all(repeats));

    // Then every distinct change is accepted, and the twenty get one identical answer
    assert!(statuses.iter().all(|&s| s == 202), "{statuses:?}");
    let first = &repeats[0].1;
    for (status, body) in &repeats {
        assert_eq!(*status, 202, "{body}");
        assert_eq!(body, first);
    }

    // And the broker holds exactly 51 changes, two events each, in per-line order
    app.wait_until_relayed(Duration::from_secs(30)).await;
    let messages = read_topic(&app.config.kafka.brokers, &app.topics.product_change()).await;
    assert_eq!(messages.len(), 51 * 2);
    assert_exactly_once_in_order(&messages);
    let keyed: Vec<_> = messages.iter().filter(|m| m.key == line(99)).collect();
    assert_eq!(keyed.len(), 2);
    assert!(keyed
        .iter()
        .all(|m| m.json["payload"]["request_id"] == first["requestId"]));
    app.stop().await;
}
