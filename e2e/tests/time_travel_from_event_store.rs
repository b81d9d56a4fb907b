//! Time travel when the broker's retention removed the beginning of a line's product
//! changes: the line's history comes from the command side's event store instead, and the
//! state is the one the live side shows.

mod support;

use std::time::Duration;

use chrono::Utc;
use events::topics::{partition_for, Topics};
use projector::time_travel;
use rdkafka::admin::AdminOptions;
use rdkafka::{Offset, TopicPartitionList};
use support::stack::Stack;

#[tokio::test]
async fn given_a_product_change_topic_whose_beginning_was_deleted_when_a_line_is_seen_as_of_now_then_its_history_comes_from_the_event_store(
) {
    // Given: a change to a premium plan went through the whole system ...
    let stack = Stack::start(&["CUST0005"]).await;
    let (line, premium, _) = stack.change_to_premium("CUST0005").await;
    let config = stack.projector.clone();
    let topic = Topics::new(&config.kafka.topic_prefix).product_change();
    // ... and every record of the line's partition was deleted, as retention does
    let partition = partition_for(&line, config.kafka.topic_partitions);
    let admin = service_kit::kafka::admin(&config.kafka, "test-retention")
        .await
        .unwrap();
    let mut records = TopicPartitionList::new();
    records
        .add_partition_offset(&topic, partition, Offset::End)
        .unwrap();
    admin
        .client()
        .delete_records(&records, &AdminOptions::new())
        .await
        .unwrap();

    // When
    let (state, stats) = tokio::time::timeout(
        Duration::from_secs(60),
        time_travel::as_of(&config, &line, Utc::now()),
    )
    .await
    .unwrap()
    .unwrap();

    // Then: the product changes were read from the event store, and the line is on the
    // plan it changed to, with no change pending
    assert!(stats.from_event_store, "{stats:?}");
    assert_eq!(state.current_product.product_code, premium, "{state:?}");
    assert!(state.pending_change.is_none(), "{state:?}");
    assert!(state.position >= 3, "{state:?}");
    stack.stop().await;
}
