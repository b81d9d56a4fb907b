//! Kafka client settings (local Tansu or Azure Event Hubs, by configuration alone) and
//! topic provisioning.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::configuration::KafkaConfig;

/// Settings shared by every client of this process.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.brokers)
        .set("security.protocol", &config.security_protocol)
        .set("client.id", "command-service");
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

pub fn admin(config: &KafkaConfig) -> Result<Admin, rdkafka::error::KafkaError> {
    client_config(config).create()
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
