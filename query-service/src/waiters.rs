//! Wake-ups for `minPosition` waiters, by the key they wait on.
//!
//! A waiter for a line's position (or a change request's view) rechecks Redis, and on a
//! miss the read tables, each time it is woken. Woken by every invalidation, eight
//! read-your-writes clients made every projected key cost eight rechecks, most of them
//! reading PostgreSQL for a request not yet projected: the query path then competed for
//! the CPU with the projector whose progress it was waiting for. Waking only the waiters
//! of the invalidated key keeps a recheck to when its answer may have changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Waiters registered by key; an entry lives while someone waits on it.
#[derive(Default)]
pub struct Waiters {
    by_key: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Waiters {
    /// Registers interest in `key`; the registration ends when the returned value drops.
    pub fn register(self: &Arc<Self>, key: &str) -> Registration {
        let notify = self
            .lock()
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        Registration {
            waiters: Arc::clone(self),
            key: key.to_owned(),
            notify: Some(notify),
        }
    }

    /// Wakes the waiters of `key` (none: nothing happens).
    pub fn wake(&self, key: &str) {
        if let Some(notify) = self.lock().get(key) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter (the namespace served changed: every answer may differ).
    pub fn wake_all(&self) {
        for notify in self.lock().values() {
            notify.notify_waiters();
        }
    }

    /// Keys with a waiter now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One waiter's interest in a key.
pub struct Registration {
    waiters: Arc<Waiters>,
    key: String,
    /// Taken on drop, under the map's lock, so that the count of references the last
    /// waiter sees is never inflated by another waiter leaving at the same time.
    notify: Option<Arc<Notify>>,
}

impl Registration {
    /// The next wake-up of this key. Enable the future (or poll it) before checking the
    /// condition, so a wake-up that lands during the check is not lost.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify
            .as_ref()
            .expect("present until dropped")
            .notified()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut by_key = self.waiters.lock();
        drop(self.notify.take());
        // Only the map's reference is left: no other waiter is on the key.
        if by_key
            .get(&self.key)
            .is_some_and(|notify| Arc::strong_count(notify) == 1)
        {
            by_key.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn woken(registration: &Registration, action: impl FnOnce()) -> bool {
        let notified = registration.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        action();
        tokio::time::timeout(Duration::from_millis(100), notified)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_its_own_key_and_not_by_others() {
        let waiters = Arc::new(Waiters::default());
        let mine = waiters.register("pos:{line:1}");

        assert!(!woken(&mine, || waiters.wake("pos:{line:2}")).await);
        assert!(woken(&mine, || waiters.wake("pos:{line:1}")).await);
    }

    #[tokio::test]
    async fn wake_all_reaches_every_key() {
        let waiters = Arc::new(Waiters::default());
        let one = waiters.register("a");
        let two = waiters.register("b");

        let notified = two.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        assert!(woken(&one, || waiters.wake_all()).await);
        assert!(tokio::time::timeout(Duration::from_millis(100), notified)
            .await
            .is_ok());
    }

    #[test]
    fn keys_are_forgotten_when_waiters_on_many_threads_leave_together() {
        let waiters = Arc::new(Waiters::default());
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..2_000 {
                        let _registration = waiters.register(&format!("key-{}", i % 3));
                    }
                });
            }
        });
        assert!(waiters.is_empty());
    }

    #[test]
    fn a_key_is_forgotten_when_its_last_waiter_leaves() {
        let waiters = Arc::new(Waiters::default());
        let first = waiters.register("a");
        let second = waiters.register("a");
        assert_eq!(waiters.len(), 1);

        drop(first);
        assert_eq!(waiters.len(), 1, "the second waiter still waits");
        drop(second);
        assert!(waiters.is_empty());
    }
}
