//! Kafka client settings (local Tansu or Azure Event Hubs, by configuration alone) and
//! topic provisioning.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use clap::Args;

/// How to reach the broker, read from `PHONEBILL_KAFKA_*` (flattened into each
/// service's configuration).
#[derive(Debug, Clone, Args)]
pub struct KafkaConfig {
    /// Bootstrap servers (`host:port,...`); Event Hubs: `<ns>.servicebus.windows.net:9093`.
    #[arg(
        long = "kafka-brokers",
        env = "PHONEBILL_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,

    /// `plaintext` locally, `sasl_ssl` for Event Hubs.
    #[arg(
        long = "kafka-security-protocol",
        env = "PHONEBILL_KAFKA_SECURITY_PROTOCOL",
        default_value = "plaintext"
    )]
    pub security_protocol: String,

    /// SASL mechanism; Event Hubs takes `PLAIN`.
    #[arg(
        long = "kafka-sasl-mechanism",
        env = "PHONEBILL_KAFKA_SASL_MECHANISM",
        default_value = "PLAIN"
    )]
    pub sasl_mechanism: String,

    /// SASL user name; Event Hubs takes the literal `$ConnectionString`.
    #[arg(long = "kafka-sasl-username", env = "PHONEBILL_KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,

    /// SASL password; for Event Hubs, the namespace connection string (a secret).
    #[arg(
        long = "kafka-sasl-password",
        env = "PHONEBILL_KAFKA_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,

    /// Prefix of every topic name (empty in production; unique per test run).
    #[arg(
        long = "topic-prefix",
        env = "PHONEBILL_TOPIC_PREFIX",
        default_value = ""
    )]
    pub topic_prefix: String,

    /// Create missing topics at start-up (off where topics are provisioned, as on Event Hubs).
    #[arg(long = "kafka-create-topics", env = "PHONEBILL_KAFKA_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,

    /// Partitions of topics this service creates.
    #[arg(
        long = "topic-partitions",
        env = "PHONEBILL_TOPIC_PARTITIONS",
        default_value_t = 12
    )]
    pub topic_partitions: i32,

    /// librdkafka debug contexts for diagnosis (e.g. `cgrp,consumer`; logged at debug).
    #[arg(long = "kafka-debug", env = "PHONEBILL_KAFKA_DEBUG")]
    pub debug: Option<String>,
}

impl KafkaConfig {
    /// What production (Event Hubs) needs, as a message naming the variable to set.
    pub fn check_production(&self) -> Result<(), String> {
        if !self.security_protocol.eq_ignore_ascii_case("sasl_ssl") {
            return Err("production needs PHONEBILL_KAFKA_SECURITY_PROTOCOL=sasl_ssl (Event Hubs' Kafka endpoint)".into());
        }
        if self.sasl_username.as_deref().unwrap_or("").is_empty() {
            return Err("production needs PHONEBILL_KAFKA_SASL_USERNAME (`$ConnectionString` for Event Hubs)".into());
        }
        if self.sasl_password.as_deref().unwrap_or("").is_empty() {
            return Err("production needs the secret PHONEBILL_KAFKA_SASL_PASSWORD (the Event Hubs connection string)".into());
        }
        Ok(())
    }
}

/// Settings shared by every client of this process; `client_id` names the service in
/// broker logs.
pub fn client_config(config: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.brokers)
        .set("security.protocol", &config.security_protocol)
        .set("client.id", client_id)
        // Small requests must not wait for Nagle's algorithm against the peer's delayed
        // ACK (about 40 ms a hop, measured: 76 ms of freshness p50).
        .set("socket.nagle.disable", "true");
    if let Some(contexts) = config.debug.as_deref().filter(|c| !c.is_empty()) {
        cc.set("debug", contexts);
    }
    if config
        .security_protocol
        .to_ascii_lowercase()
        .starts_with("sasl")
    {
        cc.set("sasl.mechanism", &config.sasl_mechanism);
        if let Some(user) = &config.sasl_username {
            cc.set("sasl.username", user);
        }
        if let Some(password) = &config.sasl_password {
            cc.set("sasl.password", password);
        }
    }
    cc
}

pub type Admin = AdminClient<DefaultClientContext>;

pub fn admin(config: &KafkaConfig, client_id: &str) -> Result<Admin, rdkafka::error::KafkaError> {
    client_config(config, client_id).create()
}

/// Creates the topics that do not exist yet.
pub async fn ensure_topics(admin: &Admin, names: &[String], partitions: i32) -> anyhow::Result<()> {
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// True when the broker answers a metadata request in time (readiness).
pub async fn reachable(admin: &Arc<Admin>, timeout: Duration) -> bool {
    let admin = Arc::clone(admin);
    tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, timeout).is_ok())
        .await
        .unwrap_or(false)
}
