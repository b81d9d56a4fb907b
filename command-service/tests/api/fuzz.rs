//! Random bytes and random JSON at every request decoder (login, set password, product
//! change, validation; bodies, path and Idempotency-Key): never a panic or a 5xx, and
//! garbage is always a 4xx.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const BODY_ROUTES: [(&str, &str); 4] = [
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/product-changes"),
    ("POST", "/api/v1/product-changes/validation"),
    ("PUT", "/api/v1/auth/customers/CUST0042/password"),
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::hash_map(".{0,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects with the fields the decoders expect, holding anything.
fn shaped_json() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        any_json(),
        "010-[0-9]{4}-[0-9]{4}".prop_map(Value::from),
        "[A-Za-z0-9_-]{0,70}".prop_map(Value::from),
    ];
    (
        field.clone(),
        field.clone(),
        field.clone(),
        field,
        any::<u8>(),
    )
        .prop_map(|(a, b, c, d, drop)| {
            let mut object = json!({
                "customerId": a, "password": b,
                "lineNumber": c, "currentProductCode": d.clone(), "targetProductCode": d,
            });
            // Drop some fields so missing ones are tried too.
            let map = object.as_object_mut().unwrap();
            let keys: Vec<String> = map.keys().cloned().collect();
            for (i, key) in keys.iter().enumerate() {
                if drop & (1 << i) != 0 {
                    map.remove(key);
                }
            }
            object
        })
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    Json(Value),
    Shaped(Value),
}

fn any_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512).prop_map(Body::Bytes),
        any_json().prop_map(Body::Json),
        shaped_json().prop_map(Body::Shaped),
    ]
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: &Body,
    key: Option<&str>,
) -> reqwest::StatusCode {
    let bytes = match body {
        Body::Bytes(b) => b.clone(),
        Body::Json(v) | Body::Shaped(v) => serde_json::to_vec(v).unwrap(),
    };
    let mut request = app
        .http
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", app.address),
        )
        .header("content-type", "application/json")
        .body(bytes);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.expect("the service answers").status()
}

fn run<S: Strategy>(name: &str, strategy: S, case: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, case) {
        panic!("{name}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_and_json_at_every_decoder_get_a_4xx_and_never_a_panic_or_5xx() {
    let app = spawn_app().await;
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        for (method, path) in BODY_ROUTES {
            run(path, any_body(), |body| {
                let status = rt.block_on(send(&app, method, path, &body, None));
                prop_assert!(
                    !status.is_server_error(),
                    "{method} {path} {body:?} -> {status}"
                );
                if !matches!(body, Body::Shaped(_)) {
                    prop_assert!(
                        status.is_client_error(),
                        "{method} {path} {body:?} -> {status}"
                    );
                }
                Ok(())
            });
        }
        run(
            "Idempotency-Key",
            ("[ -~]{0,300}", any_body()),
            |(key, body)| {
                let status = rt.block_on(send(
                    &app,
                    "POST",
                    "/api/v1/product-changes",
                    &body,
                    Some(&key),
                ));
                prop_assert!(!status.is_server_error(), "{key:?} {body:?} -> {status}");
                Ok(())
            },
        );
        run("customer id in the path", "[^/?#]{0,80}", |id| {
            let path = format!("/api/v1/auth/customers/{}/password", urlencode(&id));
            let body = Body::Json(json!({"password": "short"}));
            let status = rt.block_on(send(&app, "PUT", &path, &body, None));
            prop_assert!(status.is_client_error(), "{id:?} -> {status}");
            Ok(())
        });
    });
    let live = app
        .http
        .get(format!("{}/health/live", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);
    app.stop().await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
