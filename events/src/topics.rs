//! Topic names. Every name takes a prefix so that test runs (and tenants) never collide;
//! production uses an empty prefix.

use std::collections::BTreeMap;

pub const PRODUCT_CHANGE: &str = "phonebill.product-change";
pub const KOS_RESULTS: &str = "kos.product-change-results";
pub const KOS_BILLING: &str = "kos.billing";
pub const DEAD_LETTER: &str = "phonebill.dead-letter";
pub const BILL_INQUIRIES: &str = "phonebill.bill-inquiries";

/// Every topic, unprefixed.
pub const ALL: [&str; 5] = [
    PRODUCT_CHANGE,
    KOS_RESULTS,
    KOS_BILLING,
    DEAD_LETTER,
    BILL_INQUIRIES,
];

/// Who may send to and listen on one topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct TopicAccess {
    pub senders: Vec<String>,
    pub listeners: Vec<String>,
}

/// Each topic's senders and listeners, by unprefixed name: `events/topic-access.json`,
/// from which Terraform grants each service's identity its Event Hubs roles and the
/// broker identity tests their Kafka ACLs.
pub fn access() -> BTreeMap<String, TopicAccess> {
    #[derive(serde::Deserialize)]
    struct File {
        topics: BTreeMap<String, TopicAccess>,
    }
    let file: File = serde_json::from_str(include_str!("../topic-access.json"))
        .expect("events/topic-access.json is valid");
    file.topics
}

/// Topic names under one prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn product_change(&self) -> String {
        self.named(PRODUCT_CHANGE)
    }

    pub fn kos_results(&self) -> String {
        self.named(KOS_RESULTS)
    }

    pub fn kos_billing(&self) -> String {
        self.named(KOS_BILLING)
    }

    pub fn dead_letter(&self) -> String {
        self.named(DEAD_LETTER)
    }

    pub fn bill_inquiries(&self) -> String {
        self.named(BILL_INQUIRIES)
    }

    fn named(&self, base: &str) -> String {
        format!("{}{}", self.prefix, base)
    }
}

/// The partition Kafka's default partitioner (Java clients, Event Hubs' Kafka endpoint,
/// librdkafka's `murmur2_random`) gives a key: murmur2 with Kafka's seed, made positive,
/// modulo the partition count. Every producer here keys by aggregate id (the line number
/// for a line's events and facts), so this is also where a reader finds one line.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let hash = murmur2::murmur2(key.as_bytes(), 0x9747_b28c) & 0x7fff_ffff;
    (hash % partitions as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_table_names_every_topic_and_only_the_services() {
        let access = access();
        let mut named: Vec<&str> = access.keys().map(String::as_str).collect();
        let mut all = ALL.to_vec();
        named.sort_unstable();
        all.sort_unstable();
        assert_eq!(named, all);
        let services = ["command-service", "kos-mock", "projector", "query-service"];
        for (topic, a) in &access {
            for who in a.senders.iter().chain(&a.listeners) {
                assert!(services.contains(&who.as_str()), "{topic}: {who}");
            }
        }
        // What the services' code does with each topic.
        assert_eq!(access[PRODUCT_CHANGE].senders, ["command-service"]);
        assert_eq!(access[KOS_RESULTS].senders, ["kos-mock"]);
        assert_eq!(access[KOS_BILLING].senders, ["kos-mock"]);
        assert_eq!(access[BILL_INQUIRIES].senders, ["query-service"]);
        assert!(access[DEAD_LETTER].listeners.is_empty());
    }

    #[test]
    fn prefix_is_prepended_to_every_topic() {
        let t = Topics::new("t1.");
        assert_eq!(t.product_change(), "t1.phonebill.product-change");
        assert_eq!(Topics::default().kos_billing(), "kos.billing");
    }

    #[test]
    fn partitions_match_kafkas_default_partitioner() {
        // Kafka's own test vectors for Utils.murmur2 (clients/.../UtilsTest.java).
        let cases = [
            ("21", -973_932_308i32),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
        ];
        for (key, java_hash) in cases {
            let ours = murmur2::murmur2(key.as_bytes(), 0x9747_b28c) as i32;
            assert_eq!(ours, java_hash, "murmur2({key})");
        }
        for key in ["010-1234-5678", "010-0000-0001"] {
            let p = partition_for(key, 12);
            assert!((0..12).contains(&p));
            assert_eq!(p, partition_for(key, 12));
        }
    }
}
