//! Each application signs in to the broker as itself (SASL OAUTHBEARER with a token got
//! for its workload identity) and may send and listen only where
//! `events/topic-access.json` says. Against the test broker's OAUTHBEARER listener
//! with ACLs on, and a local stand-in for Entra ID's token exchange
//! (`test_support::broker_identity`).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message};
use service_kit::bounded_reader::BoundedReader;
use service_kit::kafka::{self, identity, Admin, BrokerContext, KafkaConfig, Producer};
use test_support::broker_identity::{grant_topic_access, IdentityProvider, OAuthBroker};
use test_support::{read_topic, Namespace};

/// Topics under a fresh prefix, made over the plaintext listener (whose anonymous
/// clients are the test broker's super users), with each application's ACLs.
async fn topics_granted_to(applications: &[&str]) -> String {
    let prefix = Namespace::new().topic_prefix();
    let mut plain = ClientConfig::new();
    plain.set("bootstrap.servers", test_support::brokers());
    let names: Vec<String> = events::topics::ALL
        .iter()
        .map(|t| format!("{prefix}{t}"))
        .collect();
    kafka::ensure_topics(&Admin::new(plain).unwrap(), &names, 1)
        .await
        .unwrap();
    grant_topic_access(&prefix, applications).await;
    prefix
}

fn producer(config: &KafkaConfig, client_id: &str) -> Producer {
    kafka::client_config(config, client_id)
        .set("message.timeout.ms", "10000")
        .create_with_context(BrokerContext)
        .unwrap()
}

async fn send(producer: &Producer, topic: &str, payload: &str) -> Result<(), KafkaError> {
    producer
        .send(
            FutureRecord::to(topic)
                .key("010-0000-0001")
                .payload(payload),
            Timeout::Never,
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

async fn payloads(topic: &str) -> Vec<String> {
    read_topic(&test_support::brokers(), topic)
        .await
        .into_iter()
        .map(|m| String::from_utf8(m.payload).unwrap())
        .collect()
}

#[tokio::test]
async fn each_application_sends_only_where_it_is_granted_and_reads_where_it_listens() {
    // Given command-service and the projector, each with its workload identity and the
    // grants of the access table
    let broker = OAuthBroker::from_env();
    let provider = IdentityProvider::start(&broker, Duration::from_secs(300));
    let prefix = topics_granted_to(&["command-service", "projector"]).await;
    let topics = events::topics::Topics::new(&prefix);
    let command = provider.workload("command-service").kafka(&prefix);
    let projector = provider.workload("projector").kafka(&prefix);
    identity::ready(&command, Duration::from_secs(30))
        .await
        .unwrap();
    identity::ready(&projector, Duration::from_secs(30))
        .await
        .unwrap();
    let admin = Arc::new(kafka::admin(&command, "command-service").await.unwrap());
    assert!(
        kafka::reachable(&admin, Duration::from_secs(10)).await,
        "the readiness probe signs in too"
    );

    // When command-service publishes a change, and the projector forges one on the same
    // topic and on KOS's topic
    send(
        &producer(&command, "command-service"),
        &topics.product_change(),
        "change",
    )
    .await
    .expect("command-service sends product changes");
    let forger = producer(&projector, "projector");
    let forged = send(&forger, &topics.product_change(), "forged change").await;
    let forged_fact = send(&forger, &topics.kos_billing(), "forged fact").await;

    // Then the broker refuses both forgeries, and takes the projector's dead letters
    for refusal in [forged, forged_fact] {
        assert_eq!(
            refusal.unwrap_err().rdkafka_error_code(),
            Some(RDKafkaErrorCode::TopicAuthorizationFailed)
        );
    }
    send(&forger, &topics.dead_letter(), "rejected")
        .await
        .expect("the projector dead-letters");

    // And the projector's group member reads command-service's change, and only it
    let member: StreamConsumer<BrokerContext> = kafka::group_member(
        &projector,
        "projector",
        &format!("{prefix}projector"),
        "changes",
    )
    .set("auto.offset.reset", "earliest")
    .create_with_context(BrokerContext)
    .unwrap();
    member.subscribe(&[&topics.product_change()]).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), member.recv())
        .await
        .expect("a message within 30 s")
        .unwrap();
    assert_eq!(got.payload(), Some(&b"change"[..]));
    assert_eq!(payloads(&topics.product_change()).await, ["change"]);
    assert_eq!(payloads(&topics.kos_billing()).await, Vec::<String>::new());

    // And command-service sees the KOS results it listens on, but not the bill inquiries
    // it was never granted
    let reader = BoundedReader::from_config(&command, "command-service").unwrap();
    assert_eq!(reader.partitions(&topics.kos_results()).unwrap(), [0]);
    assert!(reader.partitions(&topics.bill_inquiries()).is_err());
}

#[tokio::test]
async fn a_token_the_broker_does_not_trust_publishes_nothing() {
    // Given a workload whose tokens come from an issuer key the broker does not hold
    // (same key id: only the signature differs)
    let broker = OAuthBroker::from_env();
    let impostor = IdentityProvider::impostor(&broker);
    let prefix = topics_granted_to(&["command-service"]).await;
    let topics = events::topics::Topics::new(&prefix);
    let forged = impostor.workload("command-service").kafka(&prefix);
    identity::ready(&forged, Duration::from_secs(30))
        .await
        .expect("the impostor hands out tokens");

    // When it publishes a product change as command-service
    let sent = send(
        &producer(&forged, "command-service"),
        &topics.product_change(),
        "forged",
    )
    .await;

    // Then the broker never lets it in: the message expires unsent, the topic stays empty
    assert_eq!(
        sent.unwrap_err().rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageTimedOut)
    );
    assert_eq!(
        payloads(&topics.product_change()).await,
        Vec::<String>::new()
    );
    assert!(impostor.issued_to("command-service") >= 1);
}

#[tokio::test]
async fn a_workload_whose_account_is_not_the_federated_one_gets_no_token_and_says_why() {
    // Given a pod presenting another service account's token with projector's client id
    let broker = OAuthBroker::from_env();
    let provider = IdentityProvider::start(&broker, Duration::from_secs(300));
    let pod =
        provider.workload_presenting("projector", "system:serviceaccount:phonebill:debug-pod");

    // When a service of that pod starts
    let started = kafka::admin(&pod.kafka("unused."), "projector").await;

    // Then start-up stops with the token endpoint's reason, and no token was given
    let error = started
        .err()
        .expect("no start without a broker token")
        .to_string();
    assert!(error.contains("AADSTS70021"), "{error}");
    assert_eq!(provider.issued_to("projector"), 0);
}

#[tokio::test]
async fn tokens_are_renewed_before_they_expire_and_publishing_carries_on() {
    // Given command-service with tokens that live 5 s, on a broker that makes a
    // connection sign in again when its token expires
    let broker = OAuthBroker::from_env();
    let provider = IdentityProvider::start(&broker, Duration::from_secs(5));
    let prefix = topics_granted_to(&["command-service"]).await;
    let topics = events::topics::Topics::new(&prefix);
    let command = provider.workload("command-service").kafka(&prefix);
    identity::ready(&command, Duration::from_secs(30))
        .await
        .unwrap();
    let producer = producer(&command, "command-service");

    // When it publishes one change after another until its fourth token
    let mut sent = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut pace = tokio::time::interval(Duration::from_millis(250));
    while provider.issued_to("command-service") < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no fourth token within 60 s"
        );
        pace.tick().await;
        send(
            &producer,
            &topics.product_change(),
            &format!("change {sent}"),
        )
        .await
        .unwrap_or_else(|e| panic!("change {sent} was refused: {e}"));
        sent += 1;
    }

    // Then every change was taken, across three renewals, each in its place
    let expected: Vec<String> = (0..sent).map(|i| format!("change {i}")).collect();
    assert_eq!(payloads(&topics.product_change()).await, expected);
}
