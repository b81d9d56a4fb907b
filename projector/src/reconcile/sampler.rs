//! The projector's continuous reconciliation: every few seconds the next sample of lines
//! (in line order, wrapping around) is reconciled with its Redis views, so every line is
//! checked again and again. What it finds becomes metrics, which the PrometheusRule
//! alerts on:
//!
//! - `phonebill_reconciliation_divergent_lines`: lines found divergent and not found
//!   equal since (any value above 0 is an incident);
//! - `phonebill_reconciliation_oldest_lag_seconds`: among the last sample's lines that
//!   are behind without being parked, the age of the oldest event they lack;
//! - `phonebill_reconciliation_lines_checked_total{result}`;
//! - `phonebill_reconciliation_last_pass_timestamp_seconds`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::{check, read, settle, LineReport};
use crate::configuration::Config;
use crate::processor::Processor;

/// The sample's state across passes.
struct Sampler {
    /// The last line checked (the next sample starts after it; empty: from the start).
    cursor: String,
    /// Divergent lines not found equal since, in the namespace `prefix` names.
    divergent: BTreeSet<String>,
    prefix: Option<String>,
}

/// Runs until `shutdown`, reconciling the namespace `current` projects into.
pub async fn run(config: Config, current: Arc<ArcSwap<Processor>>, shutdown: CancellationToken) {
    if config.reconcile_every_secs == 0 {
        return;
    }
    let every = Duration::from_secs(config.reconcile_every_secs);
    let mut sampler = Sampler {
        cursor: String::new(),
        divergent: BTreeSet::new(),
        prefix: None,
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let processor = current.load_full();
        if let Err(e) = sampler.pass(&config, &processor).await {
            tracing::warn!(error = %e, "reconciliation pass failed; trying again later");
        }
    }
}

impl Sampler {
    async fn pass(&mut self, config: &Config, processor: &Processor) -> anyhow::Result<()> {
        let sources =
            processor.reconcile_sources(&config.event_store_schema, config.kafka.topic_partitions);
        let prefix = sources.redis.as_ref().map(|(_, p)| p.clone());
        if self.prefix != prefix {
            // Another namespace: what was found in the last one says nothing of it.
            self.divergent.clear();
            self.cursor.clear();
            self.prefix = prefix;
        }
        let cut = read::last_position(&sources.pool, &sources.event_store_schema).await?;
        let lines = read::next_lines(
            &sources.pool,
            &sources.event_store_schema,
            (&self.cursor, false),
            None,
            config.reconcile_sample_lines as i64,
        )
        .await?;
        self.cursor = match lines.last() {
            Some(last) if lines.len() == config.reconcile_sample_lines => last.clone(),
            _ => String::new(),
        };
        let mut reports = check(&sources, &lines, cut, true, None).await?;
        let wait = Duration::from_secs(config.reconcile_wait_secs);
        settle(&sources, &mut reports, cut, true, wait, None).await?;
        self.record(&reports);
        Ok(())
    }

    fn record(&mut self, reports: &[LineReport]) {
        let mut oldest_lag: f64 = 0.0;
        for r in reports {
            metrics::counter!("phonebill_reconciliation_lines_checked_total", "result" => r.standing)
                .increment(1);
            if r.is_divergent() {
                if self.divergent.insert(r.line.clone()) {
                    tracing::error!(line = %r.line, first_difference = ?r.first_difference,
                        reason = r.reason.as_deref().unwrap_or(""), "reconciliation: line divergent");
                }
            } else {
                self.divergent.remove(&r.line);
            }
            if let Some(lag) = r.unexplained_lag() {
                oldest_lag = oldest_lag.max(lag);
            }
        }
        metrics::gauge!("phonebill_reconciliation_divergent_lines")
            .set(self.divergent.len() as f64);
        metrics::gauge!("phonebill_reconciliation_oldest_lag_seconds").set(oldest_lag);
        metrics::gauge!("phonebill_reconciliation_last_pass_timestamp_seconds")
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    }
}
