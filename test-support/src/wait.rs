//! Polling with a deadline: a test waits for what happens asynchronously (a projection,
//! a relay, an answer from KOS) and fails naming what it waited for.

use std::future::Future;
use std::time::{Duration, Instant};

/// The pause between two polls.
const PAUSE: Duration = Duration::from_millis(50);

/// Polls `check` until it holds; fails the test after `timeout`, naming `what`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, timeout, || {
        let check = check();
        async move { check.await.then_some(()) }
    })
    .await
}

/// Polls `check` until it gives a value, and returns it; fails the test after `timeout`,
/// naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(PAUSE).await;
    }
}
