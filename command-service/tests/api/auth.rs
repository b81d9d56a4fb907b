//! Login, lockout, tokens, line ownership and rate limits, against the real PostgreSQL
//! and Redis. Time moves on the app's manual clock, never by sleeping.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use command_service::auth::{channel_for, PgRevocations};
use reqwest::Method;
use serde_json::{json, Value};
use service_kit::auth::{
    FollowedRevocations, JwtConfig, KeySet, ManualClock, RedisRevocations, Revocations, Role,
    Tokens, LOCAL_DEV_KID,
};
use service_kit::redis_conn::RedisConn;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

async fn login(app: &TestApp, customer: &str, password: &str) -> reqwest::Response {
    app.anonymous
        .post(format!("{}/api/v1/auth/login", app.address))
        .json(&json!({"customerId": customer, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn logout(app: &TestApp, token: &str) -> reqwest::Response {
    app.anonymous
        .post(format!("{}/api/v1/auth/logout", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn me(app: &TestApp, token: &str) -> reqwest::Response {
    app.anonymous
        .get(format!("{}/api/v1/auth/me", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn set_password(app: &TestApp, customer: &str, password: &str) {
    let response = app
        .http
        .put(format!(
            "{}/api/v1/auth/customers/{customer}/password",
            app.address
        ))
        .json(&json!({"password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
}

async fn problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body
}

#[tokio::test]
async fn a_token_from_login_verifies_with_the_published_public_keys_alone() {
    // Given a customer who logs in
    let app = spawn_app().await;
    set_password(&app, "CUST0006", PASSWORD).await;
    let answer: Value = login(&app, "CUST0006", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let token = answer["accessToken"].as_str().unwrap();

    // When anyone reads the service's JWKS document, without a token
    let response = app
        .anonymous
        .get(format!("{}/.well-known/jwks.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let jwks: Value = response.json().await.unwrap();

    // Then it holds Ed25519 public keys only, and they verify the token
    let key = &jwks["keys"][0];
    assert_eq!(
        (&key["kty"], &key["crv"]),
        (&json!("OKP"), &json!("Ed25519"))
    );
    assert!(
        key.get("d").is_none(),
        "no private part is published: {key}"
    );
    use base64::Engine;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key["x"].as_str().unwrap())
        .unwrap();
    let published = KeySet::verifying(&format!(
        "{}:{}",
        key["kid"].as_str().unwrap(),
        base64::engine::general_purpose::STANDARD.encode(x)
    ))
    .unwrap();
    let verifier = tokens_with(published, ManualClock::new(app_now(&app)));
    assert_eq!(verifier.verify(token).unwrap().sub, "CUST0006");
}

#[tokio::test]
async fn given_a_password_when_the_customer_logs_in_then_the_token_carries_their_lines_and_works() {
    let app = spawn_app().await;
    set_password(&app, "CUST0001", PASSWORD).await;

    let response = login(&app, "CUST0001", PASSWORD).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 1800);
    assert_eq!(body["customerId"], "CUST0001");
    assert_eq!(body["lines"], json!([line(1)]));
    let token = body["accessToken"].as_str().unwrap();

    let me: Value = me(&app, token).await.json().await.unwrap();
    assert_eq!(me["customerId"], "CUST0001");
    assert_eq!(me["role"], "customer");
    let validation = app
        .anonymous
        .post(format!("{}/api/v1/product-changes/validation", app.address))
        .bearer_auth(token)
        .json(&valid_change(1))
        .send()
        .await
        .unwrap();
    assert_eq!(validation.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn given_five_wrong_passwords_then_the_account_is_locked_for_thirty_minutes_even_for_the_right_password(
) {
    let app = spawn_app().await;
    set_password(&app, "CUST0002", PASSWORD).await;
    for _ in 0..4 {
        problem(
            login(&app, "CUST0002", "wrong password").await,
            401,
            "INVALID_CREDENTIALS",
        )
        .await;
    }
    let locked = problem(
        login(&app, "CUST0002", "wrong password").await,
        423,
        "ACCOUNT_LOCKED",
    )
    .await;
    let until: chrono::DateTime<Utc> = locked["lockedUntil"].as_str().unwrap().parse().unwrap();
    let expected = app_now(&app) + TimeDelta::minutes(30);
    assert!(
        (until - expected).abs() < TimeDelta::milliseconds(1),
        "{until} vs {expected}"
    );

    problem(
        login(&app, "CUST0002", PASSWORD).await,
        423,
        "ACCOUNT_LOCKED",
    )
    .await;
    app.clock.advance(TimeDelta::minutes(29));
    problem(
        login(&app, "CUST0002", PASSWORD).await,
        423,
        "ACCOUNT_LOCKED",
    )
    .await;
    app.clock.advance(TimeDelta::minutes(1));
    assert_eq!(
        login(&app, "CUST0002", PASSWORD).await.status().as_u16(),
        200
    );
    app.stop().await;
}

fn app_now(app: &TestApp) -> chrono::DateTime<Utc> {
    use service_kit::auth::Clock;
    app.clock.now()
}

#[tokio::test]
async fn given_four_failures_when_the_right_password_is_used_then_the_count_starts_over() {
    let app = spawn_app().await;
    set_password(&app, "CUST0003", PASSWORD).await;
    for _ in 0..2 {
        for _ in 0..4 {
            problem(
                login(&app, "CUST0003", "nope-nope").await,
                401,
                "INVALID_CREDENTIALS",
            )
            .await;
        }
        assert_eq!(
            login(&app, "CUST0003", PASSWORD).await.status().as_u16(),
            200
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn given_an_unknown_customer_then_every_answer_is_the_same_as_for_a_known_one() {
    let app = spawn_app().await;
    set_password(&app, "CUST0004", PASSWORD).await;
    for attempt in 1..=6 {
        let known = login(&app, "CUST0004", "wrong password").await;
        let unknown = login(&app, "NOSUCH0004", "wrong password").await;
        assert_eq!(known.status(), unknown.status(), "attempt {attempt}");
        let (mut known, mut unknown): (Value, Value) =
            (known.json().await.unwrap(), unknown.json().await.unwrap());
        assert_eq!(
            known["code"],
            if attempt < 5 {
                "INVALID_CREDENTIALS"
            } else {
                "ACCOUNT_LOCKED"
            }
        );
        for body in [&mut known, &mut unknown] {
            body.as_object_mut().unwrap().remove("lockedUntil");
        }
        assert_eq!(known, unknown, "attempt {attempt}");
    }
    app.stop().await;
}

#[tokio::test]
async fn given_ten_concurrent_wrong_logins_then_none_is_lost_from_the_count() {
    let app = spawn_app().await;
    set_password(&app, "CUST0005", PASSWORD).await;
    let answers = futures::future::join_all((0..10).map(|_| async {
        login(&app, "CUST0005", "wrong password")
            .await
            .status()
            .as_u16()
    }))
    .await;
    let refused = answers.iter().filter(|s| **s == 401).count();
    let locked = answers.iter().filter(|s| **s == 423).count();
    assert_eq!((refused, locked), (4, 6), "{answers:?}");
    app.stop().await;
}

/// Every route that needs a token, with a body a valid admin token would get through.
fn protected_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/api/v1/product-changes",
            Some(valid_change(1)),
        ),
        (
            Method::POST,
            "/api/v1/product-changes/validation",
            Some(valid_change(1)),
        ),
        (Method::POST, "/api/v1/auth/logout", None),
        (Method::POST, "/api/v1/auth/logout-all", None),
        (Method::GET, "/api/v1/auth/me", None),
        (
            Method::PUT,
            "/api/v1/auth/customers/CUST0009/password",
            Some(json!({"password": "a-new-password"})),
        ),
    ]
}

fn tokens_with(keys: KeySet, clock: ManualClock) -> Tokens {
    Tokens::new(&JwtConfig::default(), keys, Arc::new(clock))
}

fn unsigned(claims: &Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": LOCAL_DEV_KID})),
        b64(claims)
    )
}

#[tokio::test]
async fn every_protected_endpoint_refuses_a_missing_forged_unsigned_expired_or_logged_out_token() {
    let app = spawn_app().await;
    let now = app_now(&app);
    let forged = tokens_with(
        KeySet::from_seed(LOCAL_DEV_KID, [0xff; 32]),
        ManualClock::new(now),
    )
    .issue("admin", Role::Admin, vec![])
    .0;
    let none = unsigned(&json!({
        "iss": "phonebill", "aud": "phonebill-api", "sub": "admin", "role": "admin",
        "lines": [], "iat": now.timestamp(), "exp": now.timestamp() + 600, "jti": "x"
    }));
    let expired = tokens_with(
        KeySet::local_dev(),
        ManualClock::new(now - TimeDelta::minutes(31)),
    )
    .issue("admin", Role::Admin, vec![])
    .0;
    let logged_out = app.tokens.issue("admin", Role::Admin, vec![]).0;
    let jti = app.tokens.verify(&logged_out).unwrap().jti.clone();
    let response = logout(&app, &logged_out).await;
    assert_eq!(response.status().as_u16(), 204);
    let redis = RedisConn::connect(&app.config.redis).await.unwrap();
    let shared = RedisRevocations::new(redis, &app.config.redis.key_prefix);
    let revoked = shared.current(Utc::now()).await.unwrap();
    let expiry = app.tokens.verify(&logged_out).unwrap().exp;
    assert!(
        revoked.contains(&(jti.clone(), expiry)),
        "the query side sees the logout until the token expires: {revoked:?}"
    );

    let cases: Vec<(&str, Option<&str>)> = vec![
        ("no token", None),
        ("another key", Some(&forged)),
        ("alg none", Some(&none)),
        ("expired", Some(&expired)),
        ("logged out", Some(&logged_out)),
        ("not a JWT", Some("not-a-jwt")),
    ];
    for (method, path, body) in protected_routes() {
        for (case, token) in &cases {
            let mut request = app
                .anonymous
                .request(method.clone(), format!("{}{path}", app.address));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 401, "{case} on {method} {path}");
            assert!(response.headers().contains_key("www-authenticate"));
            problem(response, 401, "UNAUTHENTICATED").await;
        }
        // The same request with a valid admin token gets through authentication.
        let valid = app.tokens.issue("admin", Role::Admin, vec![]).0;
        let mut request = app
            .anonymous
            .request(method.clone(), format!("{}{path}", app.address))
            .bearer_auth(valid);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert!(
            status < 300,
            "a valid token on {method} {path} got {status}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_customer_on_another_customers_line_is_forbidden_on_every_line_scoped_endpoint_and_sees_nothing_of_it(
) {
    let app = spawn_app().await;
    let customer_a = app.customer_token("CUST0001").await;
    let line_b = valid_change(2);
    for path in [
        "/api/v1/product-changes",
        "/api/v1/product-changes/validation",
    ] {
        let response = app
            .anonymous
            .post(format!("{}{path}", app.address))
            .bearer_auth(&customer_a)
            .json(&line_b)
            .send()
            .await
            .unwrap();
        let text = problem(response, 403, "FORBIDDEN_LINE").await.to_string();
        for secret in ["CUST0002", "010-0000-0002", "5G-LITE-002", "KT", "LGU"] {
            assert!(!text.contains(secret), "{path} leaked {secret}: {text}");
        }
    }
    let analyst = app.tokens.issue("analyst", Role::Analyst, vec![]).0;
    let post = |path: &'static str| {
        app.anonymous
            .post(format!("{}{path}", app.address))
            .bearer_auth(&analyst)
            .json(&line_b)
            .send()
    };
    problem(
        post("/api/v1/product-changes").await.unwrap(),
        403,
        "FORBIDDEN_LINE",
    )
    .await;
    assert_eq!(
        post("/api/v1/product-changes/validation")
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    problem(
        app.anonymous
            .put(format!(
                "{}/api/v1/auth/customers/CUST0002/password",
                app.address
            ))
            .bearer_auth(&customer_a)
            .json(&json!({"password": "taken-over-account"}))
            .send()
            .await
            .unwrap(),
        403,
        "FORBIDDEN",
    )
    .await;
    assert_eq!(app.event_count().await, 0);
    app.stop().await;
}

#[tokio::test]
async fn the_101st_request_in_a_minute_from_one_ip_is_refused_with_retry_after() {
    let app = spawn_app_with(Options {
        rate_limit_per_ip: 100,
        ..Options::default()
    })
    .await;
    let me = format!("{}/api/v1/auth/me", app.address);
    let started = std::time::Instant::now();
    for n in 1..=100 {
        let status = app.http.get(&me).send().await.unwrap().status().as_u16();
        assert_eq!(status, 200, "request {n}");
    }
    // The limit refills at 100 a minute (one every 0.6 s): on a slow machine the first
    // hundred may have earned a few more; past those, the next request is refused.
    let earned = (started.elapsed().as_secs_f64() / 0.6).ceil() as usize;
    let mut response = app.http.get(&me).send().await.unwrap();
    for _ in 0..earned {
        if response.status().as_u16() == 429 {
            break;
        }
        response = app.http.get(&me).send().await.unwrap();
    }
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    problem(response, 429, "RATE_LIMITED").await;
    let health = app
        .http
        .get(format!("{}/health/live", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200, "probes are not limited");
    app.stop().await;
}

#[tokio::test]
async fn given_redis_is_unreachable_when_a_customer_logs_out_then_the_answer_is_503_and_the_token_is_still_refused_here(
) {
    let app = spawn_app_with(Options {
        redis_url: Some("redis://127.0.0.1:1".into()),
        ..Options::default()
    })
    .await;
    let token = app.customer_token("CUST0006").await;
    let logout = logout(&app, &token).await;
    problem(logout, 503, "AUTH_UNAVAILABLE").await;
    let me = me(&app, &token).await;
    problem(me, 401, "UNAUTHENTICATED").await;
    app.stop().await;
}

#[tokio::test]
async fn the_seed_demo_passwords_command_gives_every_demo_account_its_documented_password() {
    let app = spawn_app().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_command-service"))
        .args(["seed-demo-passwords", "--customers", "150"])
        .env("PHONEBILL_DATABASE_URL", &app.config.database.url)
        .env("PHONEBILL_DATABASE_SCHEMA", &app.config.database.schema)
        .env("PHONEBILL_ARGON2_MEMORY_KIB", "256")
        .env("PHONEBILL_ARGON2_ITERATIONS", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    for (account, role, lines) in [
        ("CUST0001", "customer", json!([line(1)])),
        ("CUST0100", "customer", json!([line(100)])),
        ("analyst", "analyst", json!([])),
        ("admin", "admin", json!([])),
    ] {
        let response = login(&app, account, &format!("demo-{account}")).await;
        assert_eq!(response.status().as_u16(), 200, "{account}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["role"], role);
        assert_eq!(body["lines"], lines);
    }
    // A larger demo set (a load test's) has as many accounts, and no more.
    let response = login(&app, "CUST0150", "demo-CUST0150").await;
    assert_eq!(response.status().as_u16(), 200);
    problem(
        login(&app, "CUST0151", "demo-CUST0151").await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_command-service"))
        .args(["set-password", "CUST0001", "--role", "customer"])
        .env("PHONEBILL_NEW_PASSWORD", "a-brand-new-password")
        .env("PHONEBILL_DATABASE_URL", &app.config.database.url)
        .env("PHONEBILL_DATABASE_SCHEMA", &app.config.database.schema)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    problem(
        login(&app, "CUST0001", "demo-CUST0001").await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_eq!(
        login(&app, "CUST0001", "a-brand-new-password")
            .await
            .status()
            .as_u16(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn a_logout_on_one_replica_is_refused_by_another_replica_of_the_same_schema() {
    // Given a second replica's revocation set on the same schema (it listens for logouts)
    let app = spawn_app().await;
    let other = PgRevocations::start(app.pool.clone(), channel_for(&app.config.database.schema))
        .await
        .unwrap();
    let token = app.customer_token("CUST0002").await;
    let jti = app.tokens.verify(&token).unwrap().jti.clone();
    assert!(!other.is_revoked(&jti).await.unwrap());

    // When the customer logs out through this replica
    let response = logout(&app, &token).await;
    assert_eq!(response.status().as_u16(), 204);

    // Then the other replica refuses the token too (notified, no lookup per request)
    app.wait_for("the other replica to hear of the logout", || async {
        other.is_revoked(&jti).await.unwrap()
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn given_a_redis_cluster_when_a_customer_logs_out_then_a_follower_on_every_node_refuses_the_token(
) {
    // Azure Cache for Redis Premium is clustered, and there the revocation set and its
    // channel hash to different slots.
    let app = spawn_app_with(Options {
        redis_cluster: true,
        ..Options::default()
    })
    .await;
    let prefix = app.config.redis.key_prefix.clone();
    let store = RedisRevocations::new(
        RedisConn::connect(&app.config.redis).await.unwrap(),
        &prefix,
    );
    let mut followers = vec![];
    for node in app.config.redis.urls() {
        followers.push(
            FollowedRevocations::start(store.clone(), &node)
                .await
                .unwrap(),
        );
    }
    let token = app.customer_token("CUST0006").await;
    let jti = app.tokens.verify(&token).unwrap().jti.clone();
    assert!(followers
        .iter()
        .all(|f| matches!(f.is_revoked_now(&jti), Some(Ok(false)))));

    let logout = logout(&app, &token).await;

    assert_eq!(logout.status().as_u16(), 204);
    app.wait_for("every follower to have the logout", || async {
        followers
            .iter()
            .all(|f| matches!(f.is_revoked_now(&jti), Some(Ok(true))))
    })
    .await;
    assert!(
        store.is_revoked(&jti).await.unwrap(),
        "the set holds it too"
    );
    let me = me(&app, &token).await;
    problem(me, 401, "UNAUTHENTICATED").await;
    app.stop().await;
}

#[tokio::test]
async fn given_redis_lost_its_copy_of_the_logouts_then_command_service_writes_them_again_and_followers_hear_it(
) {
    // Given a logged-out token
    let app = spawn_app().await;
    let token = app.customer_token("CUST0007").await;
    let jti = app.tokens.verify(&token).unwrap().jti.clone();
    assert_eq!(logout(&app, &token).await.status().as_u16(), 204);
    let redis = RedisConn::connect(&app.config.redis).await.unwrap();
    let store = RedisRevocations::new(redis.clone(), &app.config.redis.key_prefix);

    // When Redis loses its copy (a flush, a shard that came back empty) and a follower
    // starts from what is left
    redis::cmd("DEL")
        .arg(store.key())
        .query_async::<()>(&mut redis.clone())
        .await
        .unwrap();
    let follower = FollowedRevocations::start(store.clone(), &app.config.redis.url)
        .await
        .unwrap();

    // Then command-service writes the logout again from PostgreSQL, and the follower
    // refuses the token
    app.wait_for("the logout back in Redis", || async {
        store
            .current(Utc::now())
            .await
            .unwrap()
            .iter()
            .any(|(id, _)| *id == jti)
    })
    .await;
    app.wait_for("the follower to refuse the token again", || async {
        matches!(follower.is_revoked_now(&jti), Some(Ok(true)))
    })
    .await;
    app.stop().await;
}

async fn logged_in(app: &TestApp, customer: &str, password: &str) -> String {
    let response = login(app, customer, password).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    body["accessToken"].as_str().unwrap().to_owned()
}

/// A follower of the shared revocations, as query-service, the projector and kos-mock run.
async fn follower(app: &TestApp) -> FollowedRevocations {
    let redis = RedisConn::connect(&app.config.redis).await.unwrap();
    let store = RedisRevocations::new(redis, &app.config.redis.key_prefix);
    FollowedRevocations::start(store, &app.config.redis.url)
        .await
        .unwrap()
}

/// The token is refused here and by a follower on the read side.
async fn refused_everywhere(app: &TestApp, follower: &FollowedRevocations, token: &str) {
    problem(me(app, token).await, 401, "UNAUTHENTICATED").await;
    let jti = app.tokens.verify(token).unwrap().jti.clone();
    app.wait_for("the read side to refuse the token", || async {
        matches!(follower.is_revoked_now(&jti), Some(Ok(true)))
    })
    .await;
}

#[tokio::test]
async fn given_a_customer_on_two_devices_when_an_admin_resets_the_password_then_both_tokens_stop_everywhere(
) {
    // Given a customer logged in on a phone and a laptop
    let app = spawn_app().await;
    set_password(&app, "CUST0011", PASSWORD).await;
    let phone = logged_in(&app, "CUST0011", PASSWORD).await;
    let laptop = logged_in(&app, "CUST0011", PASSWORD).await;
    let follower = follower(&app).await;
    assert_eq!(me(&app, &phone).await.status().as_u16(), 200);

    // When an admin sets a new password
    set_password(&app, "CUST0011", "a-brand-new-password").await;

    // Then neither old token works, on the command side or the read side
    refused_everywhere(&app, &follower, &phone).await;
    refused_everywhere(&app, &follower, &laptop).await;
    // And the new password gives a working token
    let fresh = logged_in(&app, "CUST0011", "a-brand-new-password").await;
    assert_eq!(me(&app, &fresh).await.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn given_an_analyst_demoted_to_customer_then_the_analyst_tokens_stop_at_once() {
    // Given an analyst's token
    let app = spawn_app().await;
    let set = |role: &'static str| {
        app.http
            .put(format!(
                "{}/api/v1/auth/customers/ANALYST7/password",
                app.address
            ))
            .json(&json!({"password": PASSWORD, "role": role}))
            .send()
    };
    assert_eq!(set("analyst").await.unwrap().status().as_u16(), 204);
    let token = logged_in(&app, "ANALYST7", PASSWORD).await;
    let follower = follower(&app).await;
    assert_eq!(app.tokens.verify(&token).unwrap().role, Role::Analyst);

    // When an admin changes the role
    assert_eq!(set("customer").await.unwrap().status().as_u16(), 204);

    // Then the token with the old role is refused everywhere
    refused_everywhere(&app, &follower, &token).await;
    app.stop().await;
}

#[tokio::test]
async fn given_a_customer_on_two_devices_when_they_log_out_everywhere_then_no_token_of_theirs_works(
) {
    // Given two sessions of one customer and one of another
    let app = spawn_app().await;
    set_password(&app, "CUST0012", PASSWORD).await;
    set_password(&app, "CUST0013", PASSWORD).await;
    let phone = logged_in(&app, "CUST0012", PASSWORD).await;
    let laptop = logged_in(&app, "CUST0012", PASSWORD).await;
    let neighbour = logged_in(&app, "CUST0013", PASSWORD).await;
    let follower = follower(&app).await;

    // When the customer logs out everywhere from the phone
    let response = app
        .anonymous
        .post(format!("{}/api/v1/auth/logout-all", app.address))
        .bearer_auth(&phone)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);

    // Then both their tokens are refused everywhere, and the other customer's still works
    refused_everywhere(&app, &follower, &phone).await;
    refused_everywhere(&app, &follower, &laptop).await;
    assert_eq!(me(&app, &neighbour).await.status().as_u16(), 200);
    let jti = app.tokens.verify(&neighbour).unwrap().jti.clone();
    assert!(matches!(follower.is_revoked_now(&jti), Some(Ok(false))));
    app.stop().await;
}

async fn login_from(app: &TestApp, address: &str, customer: &str, password: &str) -> u16 {
    app.anonymous
        .post(format!("{}/api/v1/auth/login", app.address))
        .header("x-forwarded-for", address)
        .json(&json!({"customerId": customer, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn behind_a_proxy() -> Options {
    Options {
        trusted_proxy_hops: 1,
        ..Options::default()
    }
}

#[tokio::test]
async fn given_a_guesser_locked_an_account_from_their_address_then_its_owner_logs_in_from_another()
{
    // Given five wrong passwords for CUST0014 from one address (behind the gateway)
    let app = spawn_app_with(behind_a_proxy()).await;
    set_password(&app, "CUST0014", PASSWORD).await;
    let guesser = "203.0.113.7:50123"; // AGIC writes ip:port
    for _ in 0..5 {
        login_from(&app, guesser, "CUST0014", "guess-guess").await;
    }
    assert_eq!(login_from(&app, guesser, "CUST0014", PASSWORD).await, 423);

    // When the owner logs in from their own address
    let owner = login_from(&app, "198.51.100.9", "CUST0014", PASSWORD).await;

    // Then they get in, and the guesser's address stays locked
    assert_eq!(owner, 200);
    assert_eq!(login_from(&app, guesser, "CUST0014", PASSWORD).await, 423);
    // An IPv6 guesser is one address for its whole /64
    for n in 0..5 {
        let address = format!("2001:db8:7:7::{n:x}");
        login_from(&app, &address, "CUST0014", "guess-guess").await;
    }
    assert_eq!(
        login_from(&app, "2001:db8:7:7::ffff", "CUST0014", PASSWORD).await,
        423
    );
    assert_eq!(
        login_from(&app, "2001:db8:7:8::1", "CUST0014", PASSWORD).await,
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn given_four_failures_spread_over_more_than_the_lockout_window_then_the_count_starts_over() {
    // Given four failures, then a quiet lockout window
    let app = spawn_app().await;
    set_password(&app, "CUST0015", PASSWORD).await;
    for _ in 0..4 {
        problem(
            login(&app, "CUST0015", "wrong password").await,
            401,
            "INVALID_CREDENTIALS",
        )
        .await;
    }
    app.clock.advance(TimeDelta::minutes(31));

    // When four more fail
    for _ in 0..4 {
        problem(
            login(&app, "CUST0015", "wrong password").await,
            401,
            "INVALID_CREDENTIALS",
        )
        .await;
    }

    // Then the account is not locked (the old four decayed); a fifth in a row locks it
    assert_eq!(login(&app, "CUST0015", PASSWORD).await.status(), 200);
    for _ in 0..5 {
        login(&app, "CUST0015", "wrong password").await;
    }
    problem(
        login(&app, "CUST0015", PASSWORD).await,
        423,
        "ACCOUNT_LOCKED",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn given_failed_logins_of_unknown_ids_then_they_leave_no_account_and_their_counts_expire() {
    // Given failed logins of ids nobody has
    let app = spawn_app().await;
    let accounts_before: i64 = sqlx::query_scalar("SELECT count(*) FROM credentials")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    for n in 0..20 {
        problem(
            login(&app, &format!("NOBODY{n}"), "wrong password").await,
            401,
            "INVALID_CREDENTIALS",
        )
        .await;
    }

    // Then no account row was made for them
    let accounts_after: i64 = sqlx::query_scalar("SELECT count(*) FROM credentials")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(accounts_after, accounts_before);

    // And once a lockout window has passed, the next failure clears their counts away
    app.clock.advance(TimeDelta::minutes(31));
    login(&app, "NOBODY-LATER", "wrong password").await;
    let counted: Vec<String> = sqlx::query_scalar("SELECT customer_id FROM login_failures")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(counted, vec!["NOBODY-LATER".to_owned()]);
    app.stop().await;
}

/// Two replicas with `options`' limits counted in one Redis key prefix, returned clear
/// of a minute's edge (the counts are per minute).
async fn replicas_sharing_limits(options: Options) -> (TestApp, TestApp) {
    let prefix = format!("test-shared-{}:", uuid::Uuid::new_v4().simple());
    let replica = || {
        spawn_app_with(Options {
            shared_rate_limit: Some(prefix.clone()),
            rate_limit_per_ip: options.rate_limit_per_ip,
            rate_limit_per_customer: options.rate_limit_per_customer,
            ..Options::default()
        })
    };
    let replicas = (replica().await, replica().await);
    use chrono::Timelike;
    while Utc::now().second() >= 55 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    replicas
}

#[tokio::test]
async fn given_a_shared_limit_then_two_replicas_count_one_address_together() {
    // Given two replicas counting the per-IP limit (4 a minute) in the same Redis
    let (a, b) = replicas_sharing_limits(Options {
        rate_limit_per_ip: 4,
        ..Options::default()
    })
    .await;
    let me = |app: &TestApp| {
        app.anonymous
            .get(format!("{}/api/v1/auth/me", app.address))
            .send()
    };

    // When one address sends two requests to each
    for app in [&a, &b, &a, &b] {
        assert_eq!(me(app).await.unwrap().status().as_u16(), 401);
    }

    // Then its fifth is refused, though this replica has seen only two
    let refused = me(&a).await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    problem(refused, 429, "RATE_LIMITED").await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn given_a_shared_limit_then_two_replicas_count_one_customer_together() {
    // Given two replicas counting the per-customer limit (3 a minute) in the same Redis
    let (a, b) = replicas_sharing_limits(Options {
        rate_limit_per_customer: 3,
        ..Options::default()
    })
    .await;
    let token = a.tokens.issue("CUST0001", Role::Customer, vec![line(1)]).0;
    let me = |app: &TestApp| {
        app.anonymous
            .get(format!("{}/api/v1/auth/me", app.address))
            .bearer_auth(&token)
            .send()
    };

    // When the customer sends two requests to one replica and one to the other
    for app in [&a, &a, &b] {
        assert_eq!(me(app).await.unwrap().status().as_u16(), 200);
    }

    // Then the next is refused on the replica that has seen only one of them
    let refused = me(&b).await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    problem(refused, 429, "RATE_LIMITED").await;
    a.stop().await;
    b.stop().await;
}
