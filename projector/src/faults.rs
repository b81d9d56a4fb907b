//! Test-only faults (feature `fault-injection`, enabled by the end-to-end tests only):
//! events the projector treats as if the broker had never delivered them, as a message
//! lost between the relay and the consumer would be. Reconciliation's tests use it to
//! show that such a loss is reported.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use uuid::Uuid;

static LOST: LazyLock<Mutex<HashSet<Uuid>>> = LazyLock::new(Default::default);

/// From now on the event with this id is passed over when it arrives.
pub fn lose(event_id: Uuid) {
    LOST.lock().expect("not poisoned").insert(event_id);
}

/// The event is delivered as usual again.
pub fn deliver(event_id: Uuid) {
    LOST.lock().expect("not poisoned").remove(&event_id);
}

pub(crate) fn is_lost(event_id: Uuid) -> bool {
    LOST.lock().expect("not poisoned").contains(&event_id)
}
