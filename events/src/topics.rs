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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_prepended_to_every_topic() {
        let t = Topics::new("t1.");
        assert_eq!(t.product_change(), "t1.phonebill.product-change");
        assert_eq!(Topics::default().kos_billing(), "kos.billing");
    }
}
