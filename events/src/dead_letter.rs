//! Dead letters: a message a consumer could not decode (or that failed its schema) is
//! copied to `phonebill.dead-letter` byte for byte, with the key it had, and these
//! headers say where it came from and why. Keeping the value untouched means an operator
//! can fix the consumer and re-publish the original as it was.

/// Why the message was dead-lettered (a [`crate::DecodeError`]'s text).
pub const REASON: &str = "dlq-reason";
/// The topic, partition and offset the message was read from.
pub const SOURCE_TOPIC: &str = "dlq-source-topic";
pub const SOURCE_PARTITION: &str = "dlq-source-partition";
pub const SOURCE_OFFSET: &str = "dlq-source-offset";
/// The consumer group that gave up on it (`command-service`, `projector`, `kos`).
pub const CONSUMER: &str = "dlq-consumer";
