//! Tokens on every query route (401), ownership on every line-scoped route (403), the
//! per-IP limit (429), and logouts followed from Redis.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use service_kit::auth::{KeySet, ManualClock, RedisRevocations, Role, Tokens, LOCAL_DEV_KID};
use service_kit::redis_conn::RedisConn;
use uuid::Uuid;

use crate::helpers::{bill, line, registered, requested, sent, wait_until};
use crate::helpers::{spawn_app, spawn_with_config, test_config, TestApp};

/// Every API route of query-service, on `line` (and change request `request`).
fn routes(line: &str, request: Uuid) -> Vec<String> {
    vec![
        format!("/api/v1/bills/menu?lineNumber={line}"),
        format!("/api/v1/bills?lineNumber={line}&month=2026-03"),
        format!("/api/v1/bills/history?lineNumber={line}"),
        format!("/api/v1/lines/{line}"),
        format!("/api/v1/lines/{line}/product-changes"),
        format!("/api/v1/products/available?lineNumber={line}"),
        format!("/api/v1/product-changes/{request}"),
    ]
}

/// A line with a bill and a change request in flight, all projected.
async fn line_with_data(app: &TestApp, n: u32) -> (String, Uuid) {
    let l = line(n);
    let r = Uuid::new_v4();
    app.kos_facts(&[(1, registered(&l)), (2, bill(&l, "2026-03", 77_123))])
        .await;
    app.line_events(&l, 1, &[requested(&l, r, 0), sent(&l, r, 1)])
        .await;
    app.wait_for_status(&format!("/api/v1/bills?lineNumber={l}&month=2026-03"), 200)
        .await;
    app.wait_for_status(&format!("/api/v1/product-changes/{r}"), 200)
        .await;
    (l, r)
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn every_query_route_answers_401_to_a_missing_forged_unsigned_expired_or_logged_out_token() {
    let app = spawn_app().await;
    let (l, r) = line_with_data(&app, 301).await;

    let forged = Tokens::new(
        &app.config.jwt,
        KeySet::from_seed(LOCAL_DEV_KID, [0xff; 32]),
        Arc::new(ManualClock::new(Utc::now())),
    )
    .issue("analyst", Role::Analyst, vec![])
    .0;
    let unsigned = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT","kid":"local-dev"}"#),
        base64url(
            format!(
                r#"{{"iss":"phonebill","aud":"phonebill-api","sub":"analyst","role":"analyst","iat":0,"exp":{},"jti":"j"}}"#,
                Utc::now().timestamp() + 600
            )
            .as_bytes()
        )
    );
    let expired = Tokens::new(
        &app.config.jwt,
        app.config.jwt.signing_keys(false).unwrap(),
        Arc::new(ManualClock::new(Utc::now() - TimeDelta::minutes(31))),
    )
    .issue("analyst", Role::Analyst, vec![])
    .0;
    let (logged_out, claims) = app.tokens.issue("analyst", Role::Analyst, vec![]);

    // Given: the logged-out token works until command-service publishes its logout.
    let path = format!("/api/v1/lines/{l}");
    assert_eq!(app.get_as(Some(&logged_out), &path).await.status(), 200);
    let redis = RedisConn::connect(&app.config.redis).await.unwrap();
    RedisRevocations::new(redis, &app.config.redis.key_prefix)
        .revoke(
            &claims.jti,
            chrono::DateTime::from_timestamp(claims.exp, 0).unwrap(),
            Utc::now(),
        )
        .await
        .unwrap();
    wait_until(
        "the logout reaches query-service",
        Duration::from_secs(10),
        || async { app.get_as(Some(&logged_out), &path).await.status() == 401 },
    )
    .await;

    let cases: [(&str, Option<&str>); 6] = [
        ("no token", None),
        ("another key", Some(&forged)),
        ("alg none", Some(&unsigned)),
        ("expired", Some(&expired)),
        ("logged out", Some(&logged_out)),
        ("not a JWT", Some("garbage")),
    ];
    for route in routes(&l, r) {
        // Control: a valid token passes.
        let ok = app.get(&route).await.status();
        assert!(ok.is_success(), "{route} with a valid token: {ok}");
        for (case, token) in cases {
            let response = app.get_as(token, &route).await;
            assert_eq!(response.status(), 401, "{case} on {route}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"phonebill\""
            );
            let problem: serde_json::Value = response.json().await.unwrap();
            assert_eq!(problem["code"], "UNAUTHENTICATED", "{case} on {route}");
        }
    }
    // Health, metrics and the API description stay public.
    for public in ["/health/live", "/metrics", "/api-docs/openapi.json"] {
        assert_eq!(app.get_as(None, public).await.status(), 200, "{public}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_customer_on_another_customers_line_gets_403_forbidden_line_on_every_line_scoped_route_and_none_of_its_data(
) {
    let app = spawn_app().await;
    let (a, request_a) = line_with_data(&app, 302).await;
    let (b, request_b) = line_with_data(&app, 303).await;
    let customer_a = app.customer_token("CUST-A", &[&a]);

    for route in routes(&b, request_b) {
        let response = app.get_as(Some(&customer_a), &route).await;
        assert_eq!(response.status(), 403, "{route}");
        let body = response.text().await.unwrap();
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["code"], "FORBIDDEN_LINE", "{route}");
        for secret in [
            b.as_str(),
            "77123",
            "5G-PREMIUM-001",
            &request_b.to_string(),
        ] {
            assert!(!body.contains(secret), "{route} leaks {secret}: {body}");
        }
    }
    // The same customer reads their own line on every route.
    for route in routes(&a, request_a) {
        let status = app.get_as(Some(&customer_a), &route).await.status();
        assert!(status.is_success(), "own line {route}: {status}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_bill_menu_of_a_customer_lists_their_lines_and_defaults_to_the_first() {
    let app = spawn_app().await;
    let (a, _) = line_with_data(&app, 304).await;
    let token = app.customer_token("CUST-A", &[&a, &line(305)]);
    let menu: serde_json::Value = app
        .get_as(Some(&token), "/api/v1/bills/menu")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(menu["lineNumber"], a.as_str());
    assert_eq!(menu["lines"], serde_json::json!([a, line(305)]));
    assert_eq!(menu["months"], serde_json::json!(["2026-03"]));
    // An analyst has no lines of their own and must name one.
    let response = app.get("/api/v1/bills/menu").await;
    assert_eq!(response.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn the_101st_request_in_a_minute_from_one_ip_gets_429_with_retry_after() {
    let (mut config, projector) = test_config().await;
    config.hardening.per_ip_per_minute = 100;
    let app = spawn_with_config(projector, config).await;
    let path = format!("/api/v1/lines/{}", line(306));
    let started = std::time::Instant::now();
    for n in 1..=100 {
        let status = app.get(&path).await.status();
        assert_ne!(status, 429, "request {n} is within the limit");
    }
    // The limit refills at 100 a minute (one every 0.6 s): on a slow machine the first
    // hundred may have earned a few more; past those, the next request is refused.
    let earned = (started.elapsed().as_secs_f64() / 0.6).ceil() as usize;
    let mut response = app.get(&path).await;
    for _ in 0..earned {
        if response.status() == 429 {
            break;
        }
        response = app.get(&path).await;
    }
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "RATE_LIMITED");
    // Health checks are not counted.
    assert_eq!(app.get("/health/live").await.status(), 200);
    app.stop().await;
}
