//! Kafka client settings (Apache Kafka locally, Azure Event Hubs in production, by
//! configuration alone), consumer-group membership, and topic provisioning.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::OAuthToken;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{DeliveryResult, FutureProducer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

use clap::Args;

pub mod identity;

/// How to reach the broker, read from `PHONEBILL_KAFKA_*` (flattened into each
/// service's configuration).
#[derive(educe::Educe, Clone, Args)]
#[educe(Debug)]
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

    /// SASL mechanism: `PLAIN` with a connection string, or `OAUTHBEARER` for the
    /// workload's own identity (see [`identity`]).
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
    #[educe(Debug(method(crate::secret::option)))]
    pub sasl_password: Option<String>,

    /// OAUTHBEARER: the token endpoint. Unset: Entra ID's for `AZURE_TENANT_ID`.
    #[arg(
        long = "kafka-oauth-token-url",
        env = "PHONEBILL_KAFKA_OAUTH_TOKEN_URL"
    )]
    pub oauth_token_url: Option<String>,

    /// OAUTHBEARER: what the token is for (Event Hubs:
    /// `https://<namespace>.servicebus.windows.net/.default`).
    #[arg(long = "kafka-oauth-scope", env = "PHONEBILL_KAFKA_OAUTH_SCOPE")]
    pub oauth_scope: Option<String>,

    /// OAUTHBEARER: the workload identity's client id (set by AKS workload identity).
    #[arg(long = "azure-client-id", env = "AZURE_CLIENT_ID")]
    pub oauth_client_id: Option<String>,

    /// OAUTHBEARER: the file holding the pod's federated token, the client assertion
    /// (set and renewed by AKS workload identity).
    #[arg(
        long = "azure-federated-token-file",
        env = "AZURE_FEDERATED_TOKEN_FILE"
    )]
    pub oauth_assertion_file: Option<PathBuf>,

    /// OAUTHBEARER: the Entra ID tenant (set by AKS workload identity).
    #[arg(long = "azure-tenant-id", env = "AZURE_TENANT_ID")]
    pub azure_tenant_id: Option<String>,

    /// OAUTHBEARER: Entra ID's sign-in host (set by AKS workload identity).
    #[arg(
        long = "azure-authority-host",
        env = "AZURE_AUTHORITY_HOST",
        default_value = "https://login.microsoftonline.com/"
    )]
    pub azure_authority_host: String,

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

    /// Static group membership: this process's stable name (the pod name in AKS). Each
    /// consumer group member appends its role, so a process restarted under the same
    /// name takes its partitions back at once instead of waiting for its predecessor's
    /// session to expire. Unset: dynamic membership (a clean stop leaves the group).
    #[arg(long = "kafka-instance-id", env = "PHONEBILL_KAFKA_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// How long the group waits for a silent member before handing its partitions on
    /// (the bound on a crashed member's stall; Kafka's and Event Hubs' floor is 6 s).
    #[arg(
        long = "kafka-session-timeout-ms",
        env = "PHONEBILL_KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 6_000
    )]
    pub session_timeout_ms: u32,

    /// The longest a group member's fetch waits at the broker when no data comes. Kafka
    /// answers a fetch as soon as any of its partitions has data, so this bounds only
    /// idle fetches: it sets their rate (10 a second per member), not a message's
    /// latency; 10 ms and 100 ms gave the same freshness. (Tansu answered only at the
    /// wait's end, which once made this a floor under freshness.)
    #[arg(
        long = "kafka-fetch-wait-ms",
        env = "PHONEBILL_KAFKA_FETCH_WAIT_MS",
        default_value_t = 100
    )]
    pub fetch_wait_ms: u32,
}

impl KafkaConfig {
    /// Whether clients sign in as the workload's own identity (SASL `OAUTHBEARER`).
    pub fn uses_oauth(&self) -> bool {
        self.security_protocol
            .to_ascii_lowercase()
            .starts_with("sasl")
            && self.sasl_mechanism.eq_ignore_ascii_case("OAUTHBEARER")
    }

    /// What production (Event Hubs) needs, as a message naming the variable to set.
    pub fn check_production(&self) -> Result<(), String> {
        if !self.security_protocol.eq_ignore_ascii_case("sasl_ssl") {
            return Err("production needs PHONEBILL_KAFKA_SECURITY_PROTOCOL=sasl_ssl (Event Hubs' Kafka endpoint)".into());
        }
        if self.uses_oauth() {
            let settings =
                identity::OAuthSettings::from_config(self)?.expect("OAUTHBEARER has settings");
            if !settings.token_url.starts_with("https://") {
                return Err(format!(
                    "production needs an https token endpoint, not {}",
                    settings.token_url
                ));
            }
            return Ok(());
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
        identity::configure(&mut cc, config);
    }
    cc
}

/// The producer every publisher here uses (outbox relays, dead letters).
pub type Producer = FutureProducer<BrokerContext>;

/// The client context of every client that needs nothing more: it answers librdkafka's
/// requests for an `OAUTHBEARER` token from the workload's token source.
#[derive(Clone, Copy, Default)]
pub struct BrokerContext;

impl ClientContext for BrokerContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, config: Option<&str>) -> Result<OAuthToken, Box<dyn StdError>> {
        identity::token(config)
    }
}

impl ConsumerContext for BrokerContext {}

impl ProducerContext for BrokerContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// The settings of a consumer group member: `group.id`, the session (a crashed member's
/// partitions move on after `session_timeout_ms`; heartbeats three times within it) and,
/// with an instance id configured, static membership as `<instance id>-<role>`.
///
/// `max.poll.interval.ms` is also the group's rebalance timeout: every member here polls
/// continuously and hands slow work to tasks, so 30 s bounds how long a rebalance can
/// wait for a live member without ever being reached in normal operation.
pub fn group_member(
    config: &KafkaConfig,
    client_id: &str,
    group: &str,
    role: &str,
) -> ClientConfig {
    let mut cc = client_config(config, client_id);
    cc.set("group.id", group)
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout_ms / 3).max(100).to_string(),
        )
        .set("max.poll.interval.ms", "30000")
        .set("fetch.wait.max.ms", config.fetch_wait_ms.to_string());
    if let Some(instance) = static_member_id(config, role) {
        cc.set("group.instance.id", instance);
    }
    cc
}

/// `<instance id>-<role>` when static membership is configured.
pub fn static_member_id(config: &KafkaConfig, role: &str) -> Option<String> {
    config
        .instance_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| format!("{id}-{role}"))
}

/// How often a standby outbox publisher (command-service's relay, kos-mock's publisher)
/// tries to take the lead (a `pg_try_advisory_lock`, cheap). Fixed, not the failure
/// backoff: when the leader dies, its lock goes with its connection, and publishing
/// must resume within a rolling restart's budget rather than after a grown backoff.
pub const STANDBY_POLL: Duration = Duration::from_millis(250);

/// The admin client (topic creation, the readiness probe). rdkafka never serves an
/// admin client's token requests, so each use first hands it the current token.
pub struct Admin {
    client: AdminClient<BrokerContext>,
    settings: ClientConfig,
}

impl Admin {
    pub fn new(settings: ClientConfig) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            client: settings.create_with_context(BrokerContext)?,
            settings,
        })
    }

    /// The client, holding the workload's current token when it signs in with one.
    pub fn client(&self) -> &AdminClient<BrokerContext> {
        if let Err(e) = identity::prime(self.client.inner().native_client(), &self.settings) {
            tracing::warn!("the admin client has no broker token: {e}");
        }
        &self.client
    }
}

/// A topic's replication factor left to the broker (KIP-464).
const BROKER_DEFAULT: i32 = -1;

/// The service's admin client, once the workload holds its first broker token: a
/// refused identity stops start-up here, with the token endpoint's reason.
pub async fn admin(config: &KafkaConfig, client_id: &str) -> anyhow::Result<Admin> {
    identity::ready(config, IDENTITY_WAIT).await?;
    Ok(Admin::new(client_config(config, client_id))?)
}

/// How long start-up waits for the token endpoint (its retries back off up to 30 s).
const IDENTITY_WAIT: Duration = Duration::from_secs(60);

/// Creates the topics that do not exist yet, replicated as the cluster's
/// `default.replication.factor` says (3 on the local three-node cluster, 1 on one node;
/// Event Hubs' topics are provisioned, not created here).
pub async fn ensure_topics(admin: &Admin, names: &[String], partitions: i32) -> anyhow::Result<()> {
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(BROKER_DEFAULT)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.client().create_topics(&topics, &options).await? {
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
    tokio::task::spawn_blocking(move || {
        admin.client().inner().fetch_metadata(None, timeout).is_ok()
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaConfig,
    }

    /// The settings the command line `args` gives (also for `identity`'s tests).
    pub(super) fn config(args: &[&str]) -> KafkaConfig {
        Cli::parse_from(std::iter::once("test").chain(args.iter().copied())).kafka
    }

    #[test]
    fn without_an_instance_id_members_are_dynamic() {
        let member = group_member(&config(&[]), "svc", "group-a", "inbox");
        assert_eq!(member.get("group.id"), Some("group-a"));
        assert_eq!(member.get("group.instance.id"), None);
        assert_eq!(member.get("session.timeout.ms"), Some("6000"));
        assert_eq!(member.get("heartbeat.interval.ms"), Some("2000"));
        assert_eq!(member.get("fetch.wait.max.ms"), Some("100"));
    }

    #[test]
    fn an_instance_id_makes_each_role_a_static_member_of_its_own_name() {
        let kafka = config(&[
            "--kafka-instance-id",
            "command-service-7d9c-x2",
            "--kafka-session-timeout-ms",
            "9000",
        ]);
        let member = group_member(&kafka, "svc", "group-a", "kos-inbox");
        assert_eq!(
            member.get("group.instance.id"),
            Some("command-service-7d9c-x2-kos-inbox")
        );
        assert_eq!(member.get("session.timeout.ms"), Some("9000"));
        assert_eq!(member.get("heartbeat.interval.ms"), Some("3000"));
        assert_eq!(
            static_member_id(&config(&["--kafka-instance-id", " "]), "x"),
            None
        );
    }
}
