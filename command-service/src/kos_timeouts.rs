//! The timeout sweeper: a change KOS has not answered by its `answer_by` ends FAILED with
//! reason TIMEOUT.
//!
//! Deadlines live in `kos_deadlines`, which a trigger on the event store keeps in the
//! same transaction as the events (a row per `ProductChangeSentToKos`, deleted by the
//! request's `Completed` / `Failed`), so a restart loses no timer. Every instance may
//! sweep: the line aggregate settles a request once, and optimistic concurrency turns a
//! race with KOS's answer or another sweeper into "already settled, nothing to do".

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::product_change::{ProductChanges, Trace};

/// Requests handled per round; the rest wait for the next round.
const BATCH: i64 = 200;

pub struct TimeoutSweeper {
    pool: PgPool,
    changes: ProductChanges,
    interval: Duration,
}

impl TimeoutSweeper {
    pub fn new(pool: PgPool, changes: ProductChanges, interval: Duration) -> Self {
        Self {
            pool,
            changes,
            interval,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.sweep().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "timeout sweep failed; trying again"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// Times out every request past its deadline; returns how many it looked at.
    pub async fn sweep(&self) -> anyhow::Result<usize> {
        let due: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT request_id, line_number FROM kos_deadlines
              WHERE answer_by <= now() ORDER BY answer_by LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        for (request_id, line_number) in &due {
            let trace = Trace::here(*request_id, *request_id);
            self.changes
                .time_out(*request_id, line_number, trace)
                .await?;
            metrics::counter!("phonebill_kos_timeouts_total").increment(1);
        }
        Ok(due.len())
    }
}
