//! The workload's own identity on the broker (SASL `OAUTHBEARER`).
//!
//! With `PHONEBILL_KAFKA_SASL_MECHANISM=OAUTHBEARER` every Kafka client of the process
//! signs in with an OAuth access token naming this application, so the broker grants it
//! what this application may do and no more (on Event Hubs, Entra ID roles per hub:
//! Data Sender or Data Receiver, from `events/topic-access.json`). The token comes from
//! the client-credentials grant authenticated by a client assertion (RFC 7523): the
//! pod's federated service-account token, which AKS workload identity writes to
//! `AZURE_FEDERATED_TOKEN_FILE` and renews. That is Entra ID's federated flow, which
//! librdkafka's own OIDC methods do not send, hence the exchange here.
//!
//! One token source per identity and process: a thread of its own fetches the first
//! token, then a fresh one when three quarters of the current one's life has passed
//! (retrying with backoff meanwhile). librdkafka asks for a token through the client
//! context's `generate_oauth_token` (every context in this workspace answers from
//! [`token`]), which only reads the cache: the callback runs on a client's poll path
//! (a runtime worker for a stream consumer) and must not wait on the network. A client
//! used before its first poll (the admin client, which rdkafka never polls for this, or
//! a consumer's watermark query) is handed the token with [`prime`].

use std::collections::HashMap;
use std::error::Error as StdError;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use base64::Engine;
use rdkafka::client::{NativeClient, OAuthToken};
use rdkafka::ClientConfig;
use serde::Deserialize;

use super::KafkaConfig;

/// The grant's client-assertion type (RFC 7523 section 2.2).
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client's first request for a token may wait for the source's first fetch
/// (only at start-up: afterwards the cache always holds one).
const FIRST_TOKEN_WAIT: Duration = Duration::from_secs(10);

/// Where and as whom this workload asks for its broker tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OAuthSettings {
    pub token_url: String,
    pub client_id: String,
    /// Read again for every token: the kubelet renews the projected token in place.
    pub assertion_file: PathBuf,
    pub scope: String,
}

impl OAuthSettings {
    /// The settings when the configuration asks for `OAUTHBEARER`; an error names what
    /// is missing. The token endpoint defaults to Entra ID's for `AZURE_TENANT_ID`.
    pub fn from_config(config: &KafkaConfig) -> Result<Option<Self>, String> {
        if !config.uses_oauth() {
            return Ok(None);
        }
        let present = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let token_url = match (present(&config.oauth_token_url), present(&config.azure_tenant_id)) {
            (Some(url), _) => url,
            (None, Some(tenant)) => format!(
                "{}/{tenant}/oauth2/v2.0/token",
                config.azure_authority_host.trim_end_matches('/')
            ),
            (None, None) => {
                return Err("OAUTHBEARER needs AZURE_TENANT_ID (set by AKS workload identity) or PHONEBILL_KAFKA_OAUTH_TOKEN_URL".into())
            }
        };
        let client_id = present(&config.oauth_client_id)
            .ok_or("OAUTHBEARER needs AZURE_CLIENT_ID (the workload identity's client id)")?;
        let assertion_file = config
            .oauth_assertion_file
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or("OAUTHBEARER needs AZURE_FEDERATED_TOKEN_FILE (the pod's federated token)")?;
        let scope = present(&config.oauth_scope).ok_or(
            "OAUTHBEARER needs PHONEBILL_KAFKA_OAUTH_SCOPE (Event Hubs: https://<namespace>.servicebus.windows.net/.default)",
        )?;
        Ok(Some(Self {
            token_url,
            client_id,
            assertion_file,
            scope,
        }))
    }

    /// The name of this identity's token source, carried in each client's
    /// `sasl.oauthbearer.config` and handed back to [`token`] by librdkafka.
    fn key(&self) -> String {
        format!(
            "token_url={} client_id={} assertion_file={} scope={}",
            self.token_url,
            self.client_id,
            self.assertion_file.display(),
            self.scope
        )
    }
}

/// Adds the identity's settings to a client's configuration and makes sure its token
/// source runs. No-op unless the configuration asks for `OAUTHBEARER`.
pub(super) fn configure(cc: &mut ClientConfig, config: &KafkaConfig) {
    match OAuthSettings::from_config(config) {
        Ok(Some(settings)) => {
            cc.set("sasl.oauthbearer.config", source(&settings).settings.key());
        }
        Ok(None) => {}
        // The client then fails to authenticate; `ready` and the production check
        // report the same message at start-up.
        Err(e) => tracing::error!("Kafka OAUTHBEARER settings: {e}"),
    }
}

/// Waits for this workload's first broker token, so that a refused assertion or a wrong
/// endpoint stops start-up with the reason instead of leaving clients retrying.
pub async fn ready(config: &KafkaConfig, within: Duration) -> anyhow::Result<()> {
    let Some(settings) = OAuthSettings::from_config(config).map_err(anyhow::Error::msg)? else {
        return Ok(());
    };
    let source = source(&settings);
    tokio::task::spawn_blocking(move || source.current(within))
        .await?
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("no broker token for {}: {e}", settings.client_id))
}

/// The token for a client's `generate_oauth_token` callback: `config` is the client's
/// `sasl.oauthbearer.config`.
pub fn token(config: Option<&str>) -> Result<OAuthToken, Box<dyn StdError>> {
    let key = config.ok_or(
        "sasl.oauthbearer.config is not set: the client was not configured by kafka::client_config",
    )?;
    let source = SOURCES
        .lock()
        .expect("token sources")
        .get(key)
        .cloned()
        .ok_or("no token source for this client's identity")?;
    let token = source.current(FIRST_TOKEN_WAIT)?;
    Ok(OAuthToken {
        token: token.access,
        principal_name: token.principal,
        lifetime_ms: token.expires_at_ms,
    })
}

/// Hands a client the current token at once, for clients used before (or without)
/// polling: rdkafka's admin client never serves the refresh event, and a watermark
/// query waits for a connection only a token opens. Call it again before later use of
/// an admin client: nothing renews a primed token.
pub fn prime(client: &NativeClient, cc: &ClientConfig) -> Result<(), String> {
    if cc.get("sasl.oauthbearer.config").is_none() {
        return Ok(());
    }
    let token = token(cc.get("sasl.oauthbearer.config")).map_err(|e| e.to_string())?;
    let value = CString::new(token.token).map_err(|e| e.to_string())?;
    let principal = CString::new(token.principal_name).map_err(|e| e.to_string())?;
    let mut error = [0 as std::os::raw::c_char; 512];
    // SAFETY: `client` is a live librdkafka handle (borrowed for the call); the strings
    // and the error buffer outlive the call, which copies what it keeps; no extensions.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_oauthbearer_set_token(
            client.ptr(),
            value.as_ptr(),
            token.lifetime_ms,
            principal.as_ptr(),
            std::ptr::null_mut(),
            0,
            error.as_mut_ptr(),
            error.len(),
        )
    };
    if code == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        // SAFETY: librdkafka writes a NUL-terminated message into the buffer.
        let message = unsafe { std::ffi::CStr::from_ptr(error.as_ptr()) };
        Err(message.to_string_lossy().into_owned())
    }
}

static SOURCES: LazyLock<Mutex<HashMap<String, Arc<Source>>>> = LazyLock::new(Default::default);

fn source(settings: &OAuthSettings) -> Arc<Source> {
    let mut sources = SOURCES.lock().expect("token sources");
    Arc::clone(
        sources
            .entry(settings.key())
            .or_insert_with(|| Source::start(settings.clone())),
    )
}

/// An access token as the broker gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub access: String,
    /// The token's `sub` (the broker's principal on Apache Kafka), for logs.
    pub principal: String,
    /// Milliseconds since the Unix epoch, as librdkafka takes a token's lifetime.
    pub expires_at_ms: i64,
}

#[derive(Default)]
struct State {
    token: Option<Token>,
    error: Option<Failure>,
}

/// Why the last fetch failed. `refused`: the endpoint answered with an OAuth error (a
/// workload it does not recognise, a scope it does not know), which retrying at once
/// will not change, so start-up reports it without waiting out its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub refused: bool,
}

impl Failure {
    fn unanswered(message: String) -> Self {
        Self {
            message,
            refused: false,
        }
    }
}

struct Source {
    settings: OAuthSettings,
    state: Mutex<State>,
    changed: Condvar,
}

impl Source {
    fn start(settings: OAuthSettings) -> Arc<Self> {
        let source = Arc::new(Self {
            settings,
            state: Mutex::default(),
            changed: Condvar::new(),
        });
        let refresher = Arc::clone(&source);
        // A thread with a runtime of its own: the source outlives whichever runtime
        // first asked for it (each test has its own), and never competes with request
        // handling for a worker.
        std::thread::Builder::new()
            .name("kafka-token".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the token source's runtime");
                runtime.block_on(refresher.refresh_forever());
            })
            .expect("the token source's thread");
        source
    }

    /// The current token, waiting up to `within` for the first one (not when the
    /// endpoint has refused this workload).
    fn current(&self, within: Duration) -> Result<Token, String> {
        let deadline = Instant::now() + within;
        let mut state = self.state.lock().expect("token state");
        loop {
            if let Some(token) = state.token.as_ref().filter(|t| t.expires_at_ms > now_ms()) {
                return Ok(token.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match &state.error {
                // Only the first token is waited for: once one has expired, the caller
                // (a client's poll path) hears of the outage at once and asks again.
                Some(failure) if failure.refused || left.is_zero() || state.token.is_some() => {
                    return Err(failure.message.clone())
                }
                None if left.is_zero() => {
                    return Err("the token endpoint has not answered yet".into())
                }
                _ => {}
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .expect("token state")
                .0;
        }
    }

    async fn refresh_forever(&self) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        loop {
            let fetched = (|| fetch(&http, &self.settings))
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(200))
                        .with_max_delay(Duration::from_secs(30))
                        .without_max_times(),
                )
                .notify(|e: &Failure, _| {
                    tracing::warn!(client_id = %self.settings.client_id, "broker token: {}", e.message);
                    self.state.lock().expect("token state").error = Some(e.clone());
                    self.changed.notify_all();
                })
                .await
                .expect("retried without limit");
            let renew_in = renew_after(&fetched, now_ms());
            tracing::debug!(principal = %fetched.principal, ?renew_in, "broker token renewed");
            {
                let mut state = self.state.lock().expect("token state");
                state.token = Some(fetched);
                state.error = None;
            }
            self.changed.notify_all();
            tokio::time::sleep(renew_in).await;
        }
    }
}

/// When to fetch the next token: once three quarters of this one's life has passed
/// (librdkafka asks again at four fifths), never sooner than a second from now.
fn renew_after(token: &Token, now_ms: i64) -> Duration {
    let left = (token.expires_at_ms - now_ms).max(0) as u64;
    Duration::from_millis(left / 4 * 3).max(Duration::from_secs(1))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn fetch(http: &reqwest::Client, settings: &OAuthSettings) -> Result<Token, Failure> {
    let unanswered =
        |e: &dyn std::fmt::Display| Failure::unanswered(format!("{}: {e}", settings.token_url));
    let assertion = tokio::fs::read_to_string(&settings.assertion_file)
        .await
        .map_err(|e| {
            Failure::unanswered(format!(
                "reading the federated token {}: {e}",
                settings.assertion_file.display()
            ))
        })?;
    let started_ms = now_ms();
    let response = http
        .post(&settings.token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", settings.client_id.as_str()),
            ("scope", settings.scope.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.trim()),
        ])
        .send()
        .await
        .map_err(|e| unanswered(&e))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| unanswered(&e))?;
    token_from_response(status, &body, started_ms, &settings.client_id).map_err(|e| Failure {
        message: format!("{}: {}", settings.token_url, e.message),
        ..e
    })
}

#[derive(Deserialize)]
struct Granted {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct Refused {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// The token endpoint's answer (RFC 6749 section 5): a token whose life counts from when
/// it was asked for, or the endpoint's own error and description.
pub fn token_from_response(
    status: u16,
    body: &[u8],
    asked_at_ms: i64,
    client_id: &str,
) -> Result<Token, Failure> {
    if !(200..300).contains(&status) {
        return Err(match serde_json::from_slice::<Refused>(body) {
            Ok(r) if (400..500).contains(&status) => Failure {
                message: format!("refused ({status}) {}: {}", r.error, r.error_description),
                refused: true,
            },
            Ok(r) => Failure::unanswered(format!(
                "failed ({status}) {}: {}",
                r.error, r.error_description
            )),
            Err(_) => Failure::unanswered(format!("answered {status}")),
        });
    }
    let granted: Granted = serde_json::from_slice(body)
        .map_err(|e| Failure::unanswered(format!("an unreadable token response: {e}")))?;
    if granted.access_token.is_empty() || granted.expires_in == 0 {
        return Err(Failure::unanswered(
            "a token response without a token or a lifetime".into(),
        ));
    }
    let (principal, exp) =
        claims(&granted.access_token).unwrap_or_else(|| (client_id.to_owned(), None));
    // `expires_in` is whole seconds counted from the answer; a JWT's own `exp` is what
    // the broker ends the session at, and may come first.
    let answered = asked_at_ms + (granted.expires_in as i64) * 1000;
    let expires_at_ms = exp.map_or(answered, |exp| answered.min(exp * 1000));
    Ok(Token {
        access: granted.access_token,
        principal,
        expires_at_ms,
    })
}

/// A JWT's `sub` and `exp`, unverified: a label for logs and the expiry the broker will
/// hold the session to (the broker checks the token).
fn claims(jwt: &str) -> Option<(String, Option<i64>)> {
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
        exp: Option<i64>,
    }
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Claims>(&bytes)
        .ok()
        .map(|c| (c.sub, c.exp))
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;
    use super::*;

    const WORKLOAD: &[&str] = &[
        "--kafka-security-protocol",
        "sasl_ssl",
        "--kafka-sasl-mechanism",
        "OAUTHBEARER",
        "--azure-tenant-id",
        "tenant-1",
        "--azure-client-id",
        "client-1",
        "--azure-federated-token-file",
        "/var/run/secrets/azure/tokens/azure-identity-token",
        "--kafka-oauth-scope",
        "https://ns.servicebus.windows.net/.default",
    ];

    #[test]
    fn without_oauthbearer_there_are_no_settings() {
        assert_eq!(OAuthSettings::from_config(&config(&[])), Ok(None));
    }

    #[test]
    fn a_workload_identity_asks_entra_for_its_tenant_unless_told_another_endpoint() {
        let settings = OAuthSettings::from_config(&config(WORKLOAD))
            .unwrap()
            .unwrap();
        assert_eq!(
            settings.token_url,
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        );
        assert_eq!(settings.client_id, "client-1");
        assert_eq!(settings.scope, "https://ns.servicebus.windows.net/.default");

        let mut args = WORKLOAD.to_vec();
        args.extend(["--kafka-oauth-token-url", "http://127.0.0.1:9/token"]);
        let settings = OAuthSettings::from_config(&config(&args)).unwrap().unwrap();
        assert_eq!(settings.token_url, "http://127.0.0.1:9/token");
    }

    #[test]
    fn each_missing_setting_is_named() {
        for (missing, named) in [
            ("--azure-tenant-id", "AZURE_TENANT_ID"),
            ("--azure-client-id", "AZURE_CLIENT_ID"),
            ("--azure-federated-token-file", "AZURE_FEDERATED_TOKEN_FILE"),
            ("--kafka-oauth-scope", "PHONEBILL_KAFKA_OAUTH_SCOPE"),
        ] {
            let at = WORKLOAD.iter().position(|a| *a == missing).unwrap();
            let mut args = WORKLOAD.to_vec();
            args.drain(at..at + 2);
            let error = OAuthSettings::from_config(&config(&args)).unwrap_err();
            assert!(error.contains(named), "{missing}: {error}");
        }
    }

    #[test]
    fn a_granted_token_lives_from_when_it_was_asked_for_or_to_its_exp_and_names_its_subject() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"projector","aud":"x","exp":4000}"#);
        let jwt = format!("e30.{payload}.sig");
        let body = format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"{jwt}"}}"#);
        let token = token_from_response(200, body.as_bytes(), 1_000, "client-1").unwrap();
        assert_eq!(token.access, jwt);
        assert_eq!(token.principal, "projector");
        assert_eq!(token.expires_at_ms, 1_000 + 3_599_000);

        // A token whose own `exp` comes before the answer's count ends at its `exp`.
        let early = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"projector","exp":3000}"#);
        let body = format!(r#"{{"expires_in":3599,"access_token":"e30.{early}.sig"}}"#);
        let token = token_from_response(200, body.as_bytes(), 1_000, "client-1").unwrap();
        assert_eq!(token.expires_at_ms, 3_000_000);

        let opaque = token_from_response(
            200,
            br#"{"expires_in":60,"access_token":"opaque"}"#,
            0,
            "client-1",
        )
        .unwrap();
        assert_eq!(opaque.principal, "client-1");
    }

    #[test]
    fn a_refusal_keeps_the_endpoints_reason_and_only_an_answered_one_is_final() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS70021: No matching federated identity record found"}"#;
        let error = token_from_response(401, body, 0, "c").unwrap_err();
        assert!(error.refused);
        assert!(
            error.message.contains("invalid_client") && error.message.contains("AADSTS70021"),
            "{error:?}"
        );
        let unavailable = token_from_response(502, b"<html>", 0, "c").unwrap_err();
        assert_eq!(unavailable, Failure::unanswered("answered 502".into()));
        let busy = br#"{"error":"temporarily_unavailable"}"#;
        assert!(!token_from_response(503, busy, 0, "c").unwrap_err().refused);
        let empty = token_from_response(200, br#"{"access_token":"","expires_in":60}"#, 0, "c");
        assert!(!empty.unwrap_err().refused);
    }

    #[test]
    fn a_token_is_renewed_when_three_quarters_of_its_life_have_passed() {
        let token = |expires_at_ms| Token {
            access: "t".into(),
            principal: "p".into(),
            expires_at_ms,
        };
        assert_eq!(
            renew_after(&token(10_000 + 3_600_000), 10_000),
            Duration::from_secs(2_700)
        );
        assert_eq!(renew_after(&token(5_000), 10_000), Duration::from_secs(1));
    }
}
