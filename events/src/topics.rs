//! Topic names. Every name takes a prefix so that test runs (and tenants) never collide;
//! production uses an empty prefix.

pub const PRODUCT_CHANGE: &str = "phonebill.product-change";
pub const KOS_RESULTS: &str = "kos.product-change-results";
pub const KOS_BILLING: &str = "kos.billing";
pub const DEAD_LETTER: &str = "phonebill.dead-letter";
pub const BILL_INQUIRIES: &str = "phonebill.bill-inquiries";

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
