//! The reconciliation ledger: what one stage of the pipeline holds of an aggregate's
//! events, in two numbers: how many, and a running hash over their ids in the order the
//! stage took them. The event store's ledger of a line is the truth; a stage that took
//! the same events in the same order holds an equal ledger, one that lags holds a prefix
//! of it, and one that missed, doubled or reordered an event holds neither.
//!
//! The hash is XXH3 (64 bits) of each event id, seeded with the hash before it: cheap
//! enough to keep on every apply, and stored as a PostgreSQL `bigint`.

use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64;
use uuid::Uuid;

/// How many events a stage took of an aggregate, and the running hash over their ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ledger {
    pub count: u64,
    pub hash: u64,
}

impl Ledger {
    /// The ledger of a stage that took nothing yet.
    pub const EMPTY: Ledger = Ledger { count: 0, hash: 0 };

    /// This ledger after taking one more event.
    #[must_use]
    pub fn with(self, event_id: Uuid) -> Ledger {
        Ledger {
            count: self.count + 1,
            hash: XxHash3_64::oneshot_with_seed(self.hash, event_id.as_bytes()),
        }
    }

    /// The ledger of these events taken in this order.
    pub fn of(ids: impl IntoIterator<Item = Uuid>) -> Ledger {
        ids.into_iter().fold(Ledger::EMPTY, Ledger::with)
    }

    /// A ledger as PostgreSQL keeps it (`bigint` columns; the hash's bits unchanged).
    pub fn from_columns(count: i64, hash: i64) -> Ledger {
        Ledger {
            count: count.max(0) as u64,
            hash: hash as u64,
        }
    }

    /// The hash as a `bigint` column holds it.
    pub fn hash_column(&self) -> i64 {
        self.hash as i64
    }
}

/// Where a stage stands against the committed events of an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "standing")]
pub enum Standing {
    /// The stage holds every event committed up to the cut (or more, committed after it),
    /// in order.
    Equal,
    /// The stage holds an in-order prefix, `by` events short of the cut.
    Behind { by: u64 },
    /// The stage holds something the committed events never were: an event missed,
    /// doubled, reordered or foreign, or a ledger damaged.
    Divergent,
}

/// The committed ledgers of an aggregate after each of its events: `prefix(n)` is the
/// ledger of its first `n` events.
#[derive(Debug, Clone)]
pub struct Committed {
    prefixes: Vec<Ledger>,
}

impl Committed {
    /// The aggregate's committed event ids in sequence order.
    pub fn of(ids: impl IntoIterator<Item = Uuid>) -> Committed {
        let mut prefixes = vec![Ledger::EMPTY];
        for id in ids {
            let last = *prefixes.last().expect("starts with the empty ledger");
            prefixes.push(last.with(id));
        }
        Committed { prefixes }
    }

    /// Every event committed.
    pub fn total(&self) -> Ledger {
        *self.prefixes.last().expect("starts with the empty ledger")
    }

    /// The ledger of the first `count` events, if that many were committed.
    pub fn prefix(&self, count: u64) -> Option<Ledger> {
        self.prefixes.get(usize::try_from(count).ok()?).copied()
    }

    /// Where a stage holding `held` stands when `at_cut` events were committed up to the
    /// cut. Read the stage before the committed events, so the committed side holds at
    /// least what the stage could have taken.
    pub fn standing(&self, at_cut: u64, held: Ledger) -> Standing {
        match self.prefix(held.count) {
            Some(prefix) if prefix == held => {
                if held.count < at_cut {
                    Standing::Behind {
                        by: at_cut - held.count,
                    }
                } else {
                    Standing::Equal
                }
            }
            _ => Standing::Divergent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::event_id_for;

    fn ids(n: u64) -> Vec<Uuid> {
        (1..=n)
            .map(|s| event_id_for("Line", "010-0000-0001", s))
            .collect()
    }

    #[test]
    fn equal_events_in_equal_order_make_equal_ledgers() {
        assert_eq!(Ledger::of(ids(5)), Ledger::of(ids(5)));
        assert_eq!(Ledger::of(ids(5)).count, 5);
        assert_ne!(Ledger::of(ids(5)).hash, 0);
    }

    #[test]
    fn a_missing_doubled_or_reordered_event_changes_the_ledger() {
        let all = ids(4);
        let committed = Ledger::of(all.clone());
        let missing = Ledger::of([all[0], all[1], all[3]]);
        let doubled = Ledger::of([all[0], all[1], all[1], all[2], all[3]]);
        let reordered = Ledger::of([all[0], all[2], all[1], all[3]]);
        for other in [missing, doubled, reordered] {
            assert_ne!(other, committed);
        }
        assert_eq!(
            reordered.count, committed.count,
            "only the hash tells a reorder"
        );
    }

    #[test]
    fn a_prefix_is_behind_by_what_it_lacks_up_to_the_cut() {
        let committed = Committed::of(ids(6));
        let held = Ledger::of(ids(4));
        assert_eq!(committed.standing(6, held), Standing::Behind { by: 2 });
        assert_eq!(committed.standing(4, held), Standing::Equal);
    }

    #[test]
    fn events_committed_after_the_cut_still_count_as_equal() {
        let committed = Committed::of(ids(6));
        assert_eq!(committed.standing(3, Ledger::of(ids(5))), Standing::Equal);
    }

    #[test]
    fn a_gap_more_events_than_committed_or_a_damaged_hash_is_divergent() {
        let all = ids(4);
        let committed = Committed::of(all.clone());
        let gap = Ledger::of([all[0], all[2]]);
        assert_eq!(committed.standing(4, gap), Standing::Divergent);
        assert_eq!(
            committed.standing(4, Ledger::of(ids(5))),
            Standing::Divergent
        );
        let damaged = Ledger {
            hash: Ledger::of(all.clone()).hash ^ 1,
            ..Ledger::of(all)
        };
        assert_eq!(committed.standing(4, damaged), Standing::Divergent);
    }

    #[test]
    fn the_hash_survives_a_bigint_column() {
        let ledger = Ledger::of(ids(3));
        let back = Ledger::from_columns(ledger.count as i64, ledger.hash_column());
        assert_eq!(back, ledger);
    }
}
