//! The broker's identity side of a test: the OAUTHBEARER listener of the test broker
//! (`infra/local/stack test` starts it with ACLs on) and a local stand-in for Entra
//! ID's federated token exchange, which no test can reach.
//!
//! [`IdentityProvider`] answers the client-credentials grant with a client assertion as
//! Entra ID does for a workload identity: the assertion is a service-account token
//! signed by the cluster's key, it must be for `api://AzureADTokenExchange` and its
//! subject must be the one federated with the client id, and the access token it gives
//! names the application in `sub` (the broker's principal), signed by the issuer key
//! whose public half the broker's JWKS file holds. [`Workload`] is a pod: a client id
//! and its projected token file. [`grant_topic_access`] gives the applications the
//! Kafka ACLs that `events/topic-access.json` gives them as Event Hubs roles.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine;
use clap::Parser;
use ed25519_dalek::SigningKey;
use events::topics::TopicAccess;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use service_kit::kafka::KafkaConfig;
use service_kit::signed::PKCS8_PREFIX;
use uuid::Uuid;

/// The audience a workload's federated token is made for, as AKS writes it.
const EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
const CLUSTER_ISSUER: &str = "https://oidc.cluster.phonebill.test/";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The test broker's OAUTHBEARER listener and what its tokens must carry, from the
/// environment the test command sets.
#[derive(Debug, Clone)]
pub struct OAuthBroker {
    pub brokers: String,
    pub issuer: String,
    pub audience: String,
    /// The issuer's private key (PKCS#8 DER) and its `kid` in the broker's JWKS.
    pub issuer_key: PathBuf,
    pub issuer_kid: String,
}

impl OAuthBroker {
    /// `PHONEBILL_TEST_KAFKA_OAUTH_*`: fails the test, naming the command that sets them.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run the broker identity tests with `infra/local/stack test`, which starts the broker's OAUTHBEARER listener")
            })
        };
        Self {
            brokers: var("PHONEBILL_TEST_KAFKA_OAUTH_BROKERS"),
            issuer: var("PHONEBILL_TEST_KAFKA_OAUTH_ISSUER"),
            audience: var("PHONEBILL_TEST_KAFKA_OAUTH_AUDIENCE"),
            issuer_key: var("PHONEBILL_TEST_KAFKA_OAUTH_ISSUER_KEY").into(),
            issuer_kid: var("PHONEBILL_TEST_KAFKA_OAUTH_ISSUER_KID"),
        }
    }
}

/// An Ed25519 key as jsonwebtoken takes it.
#[derive(Clone)]
struct Key {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Key {
    fn random() -> Self {
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(Uuid::new_v4().as_bytes());
        seed[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        Self::from_seed(seed)
    }

    fn from_seed(seed: [u8; 32]) -> Self {
        let der: Vec<u8> = PKCS8_PREFIX.iter().chain(&seed).copied().collect();
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        Self {
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_components(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
            )
            .expect("an Ed25519 public key"),
        }
    }

    fn from_pkcs8(der: &[u8]) -> Self {
        let seed: [u8; 32] = der[der.len() - 32..].try_into().expect("a 32-byte seed");
        assert_eq!(
            &der[..der.len() - 32],
            PKCS8_PREFIX,
            "an Ed25519 PKCS#8 key"
        );
        Self::from_seed(seed)
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
}

struct Federated {
    subject: String,
    application: String,
}

struct Provider {
    broker: OAuthBroker,
    issuer_key: Key,
    cluster_key: Key,
    lifetime: Duration,
    federated: Mutex<HashMap<String, Federated>>,
    issued: Mutex<HashMap<String, u32>>,
}

/// The local token endpoint; it serves from a thread and runtime of its own, so a
/// client waiting for a token on a test's runtime never holds up the answer.
#[derive(Clone)]
pub struct IdentityProvider {
    url: String,
    inner: Arc<Provider>,
    tokens: PathBuf,
}

impl IdentityProvider {
    /// A provider signing with the issuer key the broker trusts; tokens live `lifetime`.
    pub fn start(broker: &OAuthBroker, lifetime: Duration) -> Self {
        let der = std::fs::read(&broker.issuer_key).expect("the issuer key file");
        Self::with_key(broker, Key::from_pkcs8(&der), lifetime)
    }

    /// A provider signing with a key of its own, which the broker does not trust (with
    /// the trusted key's `kid`): an impostor.
    pub fn impostor(broker: &OAuthBroker) -> Self {
        Self::with_key(broker, Key::random(), Duration::from_secs(300))
    }

    fn with_key(broker: &OAuthBroker, issuer_key: Key, lifetime: Duration) -> Self {
        let inner = Arc::new(Provider {
            broker: broker.clone(),
            issuer_key,
            cluster_key: Key::random(),
            lifetime,
            federated: Mutex::default(),
            issued: Mutex::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/token", post(token))
            .with_state(Arc::clone(&inner));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        let tokens = std::env::temp_dir().join(format!("phonebill-workloads-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&tokens).unwrap();
        Self { url, inner, tokens }
    }

    /// A pod of `application`: a client id federated with its service account, and
    /// the service-account token the cluster signed for it.
    pub fn workload(&self, application: &str) -> Workload {
        let subject = format!("system:serviceaccount:phonebill:{application}");
        self.workload_presenting(application, &subject)
    }

    /// A pod of `application` whose service-account token names `subject` (another
    /// account than the one federated with its client id when they differ).
    pub fn workload_presenting(&self, application: &str, subject: &str) -> Workload {
        let client_id = Uuid::new_v4().to_string();
        self.inner.federated.lock().unwrap().insert(
            client_id.clone(),
            Federated {
                subject: format!("system:serviceaccount:phonebill:{application}"),
                application: application.to_owned(),
            },
        );
        let now = chrono::Utc::now().timestamp();
        let assertion = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &Claims {
                iss: CLUSTER_ISSUER.into(),
                sub: subject.into(),
                aud: EXCHANGE_AUDIENCE.into(),
                iat: now,
                exp: now + 3600,
            },
            &self.inner.cluster_key.encoding,
        )
        .unwrap();
        let token_file = self.tokens.join(format!("{client_id}.jwt"));
        std::fs::write(&token_file, assertion).unwrap();
        Workload {
            client_id,
            token_file,
            token_url: self.url.clone(),
            broker: self.inner.broker.clone(),
        }
    }

    /// How many access tokens `application` has been given.
    pub fn issued_to(&self, application: &str) -> u32 {
        self.inner
            .issued
            .lock()
            .unwrap()
            .get(application)
            .copied()
            .unwrap_or(0)
    }
}

/// One pod's identity: what AKS workload identity gives its containers.
pub struct Workload {
    pub client_id: String,
    pub token_file: PathBuf,
    token_url: String,
    broker: OAuthBroker,
}

impl Workload {
    /// The Kafka settings of a service in this pod: the OAUTHBEARER listener, tokens
    /// from the local provider for the broker's audience, topics under `prefix`.
    pub fn kafka(&self, prefix: &str) -> KafkaConfig {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            kafka: KafkaConfig,
        }
        let scope = format!("{}/.default", self.broker.audience);
        let token_file = self.token_file.display().to_string();
        Cli::parse_from([
            "test",
            "--kafka-brokers",
            &self.broker.brokers,
            "--kafka-security-protocol",
            "sasl_plaintext",
            "--kafka-sasl-mechanism",
            "OAUTHBEARER",
            "--kafka-oauth-token-url",
            &self.token_url,
            "--kafka-oauth-scope",
            &scope,
            "--azure-client-id",
            &self.client_id,
            "--azure-federated-token-file",
            &token_file,
            "--topic-prefix",
            prefix,
        ])
        .kafka
    }
}

#[derive(Deserialize)]
struct Grant {
    grant_type: String,
    client_id: String,
    scope: String,
    client_assertion_type: String,
    client_assertion: String,
}

fn refused(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(State(p): State<Arc<Provider>>, Form(grant): Form<Grant>) -> Response {
    if grant.grant_type != "client_credentials" || grant.client_assertion_type != ASSERTION_TYPE {
        return refused(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "client credentials with a client assertion only",
        );
    }
    if grant.scope != format!("{}/.default", p.broker.audience) {
        return refused(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS70011: the scope is not valid",
        );
    }
    let application = {
        let federated = p.federated.lock().unwrap();
        let Some(record) = federated.get(&grant.client_id) else {
            return refused(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "AADSTS700016: application not found",
            );
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[EXCHANGE_AUDIENCE]);
        validation.set_issuer(&[CLUSTER_ISSUER]);
        let assertion = match jsonwebtoken::decode::<Claims>(
            &grant.client_assertion,
            &p.cluster_key.decoding,
            &validation,
        ) {
            Ok(a) => a.claims,
            Err(e) => {
                return refused(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    &format!("AADSTS700211: the assertion is not valid: {e}"),
                )
            }
        };
        if assertion.sub != record.subject {
            return refused(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                &format!("AADSTS70021: No matching federated identity record found for presented assertion subject '{}'", assertion.sub),
            );
        }
        record.application.clone()
    };
    // `exp` is whole seconds: `expires_in` counts to it, not to a second later.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let now = now_ms / 1000;
    let lifetime = p.lifetime.as_secs().max(2) as i64;
    let expires_in = ((now + lifetime) * 1000 - now_ms) / 1000;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(p.broker.issuer_kid.clone());
    let access = jsonwebtoken::encode(
        &header,
        &Claims {
            iss: p.broker.issuer.clone(),
            sub: application.clone(),
            aud: p.broker.audience.clone(),
            iat: now,
            exp: now + lifetime,
        },
        &p.issuer_key.encoding,
    )
    .unwrap();
    *p.issued.lock().unwrap().entry(application).or_default() += 1;
    Json(json!({"token_type": "Bearer", "expires_in": expires_in, "access_token": access}))
        .into_response()
}

/// The ACL tool's arguments allowing `principal` each of `operations` on `topics`, or on
/// the consumer groups named under `group_prefix`.
fn acl(
    principal: &str,
    operations: &[&str],
    topics: &[String],
    group_prefix: Option<&str>,
) -> Vec<String> {
    let mut args = vec!["--add".into(), "--allow-principal".into(), principal.into()];
    for operation in operations {
        args.extend(["--operation".into(), (*operation).into()]);
    }
    for topic in topics {
        args.extend(["--topic".into(), topic.clone()]);
    }
    if let Some(prefix) = group_prefix {
        args.extend(["--resource-pattern-type", "prefixed", "--group", prefix].map(String::from));
    }
    args
}

/// Gives each application the Kafka ACLs on the topics under `prefix` that
/// `events/topic-access.json` gives it as Event Hubs roles: Write to what it sends
/// to, Read from what it listens on (with its consumer groups, named under `prefix`).
/// Only `applications` are granted (each grant is a JVM run of Kafka's ACL tool).
pub async fn grant_topic_access(prefix: &str, applications: &[&str]) {
    let access = events::topics::access();
    // The topics (under `prefix`) where `role` of their access names `app`.
    let topics = |app: &str, role: fn(&TopicAccess) -> &Vec<String>| -> Vec<String> {
        access
            .iter()
            .filter(|(_, a)| role(a).iter().any(|who| who == app))
            .map(|(t, _)| format!("{prefix}{t}"))
            .collect()
    };
    let mut runs = Vec::new();
    for app in applications {
        let principal = format!("User:{app}");
        let sends = topics(app, |a| &a.senders);
        if !sends.is_empty() {
            runs.push(acl(&principal, &["Write", "Describe"], &sends, None));
        }
        let listens = topics(app, |a| &a.listeners);
        if !listens.is_empty() {
            runs.push(acl(&principal, &["Read", "Describe"], &listens, None));
            runs.push(acl(&principal, &["Read"], &[], Some(prefix)));
        }
    }
    let script = std::env::var("PHONEBILL_KAFKA_SCRIPT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/local/kafka.sh").into());
    let runs = runs.into_iter().map(|args| {
        let script = script.clone();
        async move {
            let out = tokio::process::Command::new("bash")
                .arg(&script)
                .arg("acls")
                .arg(crate::brokers())
                .args(&args)
                .output()
                .await
                .expect("Kafka's ACL tool");
            assert!(
                out.status.success(),
                "kafka.sh acls {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    futures::future::join_all(runs).await;
}

/// How long a test gives the broker to answer a client signed in with a token.
pub const ANSWER: Duration = Duration::from_secs(30);
