//! Subscribes to the projector's invalidation channel and keeps L1 honest: each message
//! drops its key; while the subscription is down, L1 is off.

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::views::Views;

pub async fn run(url: String, channel: String, views: Views, shutdown: CancellationToken) {
    let mut pause = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match service_kit::pubsub::subscribe(&url, &channel).await {
            Ok(mut pubsub) => {
                pause = Duration::from_millis(100);
                views.set_l1_live(true);
                tracing::info!(%channel, "L1 cache live");
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = messages.next() => match m {
                            Some(m) => {
                                if let Ok(key) = m.get_payload::<String>() {
                                    views.invalidate(&key);
                                }
                            }
                            None => break,
                        }
                    }
                }
                views.set_l1_live(false);
                tracing::warn!("invalidation subscription lost; L1 off until it is back");
            }
            Err(e) => {
                views.set_l1_live(false);
                tracing::debug!(error = %e, "invalidation subscription failed");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
