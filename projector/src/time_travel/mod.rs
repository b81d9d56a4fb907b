//! Time travel: a line's state (product, pending change, status) as of a
//! moment, computed from its events on the broker, for analysts (`phonebill-analyst as-of` and
//! `GET /api/v1/analytics/lines/{lineNumber}/state?at=`).
//!
//! - [`reader`]: the line's partition of `phonebill.product-change` and of
//!   `kos.billing`, from the log's beginning up to the moment asked for, with the shared
//!   bounded reader (manual assignment in a throwaway group: the live side is untouched).
//! - [`fold`]: the pure part; the live projections over an in-memory store, so the
//!   answer follows the same rules as the line summary query-service serves.
//!
//! Nothing is written anywhere: each request reads and folds afresh.

pub mod event_store;
pub mod fold;
pub mod reader;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use events::topics::Topics;
use rdkafka::ClientConfig;
use serde::Serialize;

pub use fold::{line_as_of, LineState};

pub use event_store::EventStore;
use sqlx::PgPool;

use crate::configuration::Config;
use crate::processor::Decoder;

/// `010-dddd-dddd`, the only line numbers there are.
pub fn is_line_number(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 13
        && value.starts_with("010-")
        && b[8] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 3 || i == 8 || c.is_ascii_digit())
}

#[derive(Debug, thiserror::Error)]
pub enum AsOfError {
    #[error("`{0}` is not a line number of the form 010-1234-5678")]
    BadLine(String),
    #[error("{at} is in the future: the state as of then is not known yet")]
    Future { at: DateTime<Utc> },
    #[error("line {line} has no events up to {at}")]
    NotFound { line: String, at: DateTime<Utc> },
    #[error(transparent)]
    Read(#[from] reader::ReadError),
    #[error("event store: {0}")]
    EventStore(#[from] sqlx::Error),
    #[error("reading task: {0}")]
    Task(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// How much was read to answer (for logs and the CLI's stderr).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadStats {
    pub messages: u64,
    pub line_events: u64,
    pub rejected: u64,
    pub millis: u64,
    /// The broker no longer held the beginning of the line's product changes: they were
    /// read from the command side's event store.
    pub from_event_store: bool,
}

/// What time travel needs: broker settings, topic names and the live decoder.
#[derive(Clone)]
pub struct TimeTravel {
    client: ClientConfig,
    topics: Topics,
    decoder: Decoder,
    event_store: EventStore,
}

impl TimeTravel {
    /// `decoder`: the processor's (`Processor::decoder`), so the compiled schemas are
    /// shared; the CLI makes its own. `pool` may read the command side's `events` table
    /// (schema `PHONEBILL_EVENT_STORE_SCHEMA`), for lines whose beginning the broker lost.
    pub fn new(config: &Config, decoder: Decoder, pool: PgPool) -> Self {
        // The reader gives it a throwaway group id of its own, never joined.
        let client = service_kit::kafka::client_config(&config.kafka, "projector-as-of");
        Self {
            client,
            topics: Topics::new(&config.kafka.topic_prefix),
            decoder,
            event_store: EventStore {
                pool,
                schema: config.event_store_schema.clone(),
            },
        }
    }

    /// The state of `line` as of `at`, read from the broker now.
    pub async fn line_as_of(
        &self,
        line: &str,
        at: DateTime<Utc>,
    ) -> Result<(LineState, ReadStats), AsOfError> {
        if !is_line_number(line) {
            return Err(AsOfError::BadLine(line.to_owned()));
        }
        let cut = Utc::now();
        if at > cut {
            return Err(AsOfError::Future { at });
        }
        let started = std::time::Instant::now();
        // Set when this future is dropped (a client gone away), so the readers quit.
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_on_drop = StopOnDrop(stop.clone());
        let read = |topic: String| {
            let (client, decoder, line, stop) = (
                self.client.clone(),
                self.decoder.clone(),
                line.to_owned(),
                stop.clone(),
            );
            tokio::task::spawn_blocking(move || {
                reader::read_topic(&client, &decoder, &topic, &line, at, cut, stop)
            })
        };
        let (kos, changes) = tokio::join!(
            read(self.topics.kos_billing()),
            read(self.topics.product_change())
        );
        let kos = kos.map_err(|e| AsOfError::Task(e.to_string()))??;
        let changes = changes.map_err(|e| AsOfError::Task(e.to_string()))?;
        // Retention removed the beginning of the line's product changes: the event store,
        // their source of truth, still has them.
        let (changes, from_event_store) = match changes {
            Err(reader::ReadError::Truncated {
                topic, partition, ..
            }) => {
                let read = self
                    .event_store
                    .read_line(&self.decoder, &topic, partition, line, at)
                    .await?;
                (read, true)
            }
            other => (other?, false),
        };
        let stats = ReadStats {
            messages: kos.messages + changes.messages,
            line_events: (kos.events.len() + changes.events.len()) as u64,
            rejected: kos.rejected + changes.rejected,
            millis: started.elapsed().as_millis() as u64,
            from_event_store,
        };
        tracing::debug!(line, %at, ?stats, "time travel");
        let state = line_as_of(line, at, kos.events.into_iter().chain(changes.events)).ok_or_else(
            || AsOfError::NotFound {
                line: line.to_owned(),
                at,
            },
        )?;
        Ok((state, stats))
    }
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `phonebill-analyst as-of`: the state of `line` as of `at`, from the broker alone (no
/// PostgreSQL or Redis needed).
pub async fn as_of(
    config: &Config,
    line: &str,
    at: DateTime<Utc>,
) -> Result<(LineState, ReadStats), AsOfError> {
    let kos = config
        .kos_verifier()
        .map_err(|e| AsOfError::Config(e.to_string()))?;
    let decoder = Decoder::new(Topics::new(&config.kafka.topic_prefix), kos);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy(&config.database.url)?;
    TimeTravel::new(config, decoder, pool)
        .line_as_of(line, at)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_010_line_numbers_are_line_numbers() {
        assert!(is_line_number("010-1234-5678"));
        for bad in [
            "010-1234-567",
            "011-1234-5678",
            "010-1234_5678",
            "010-12a4-5678",
            "",
        ] {
            assert!(!is_line_number(bad), "{bad}");
        }
    }
}
