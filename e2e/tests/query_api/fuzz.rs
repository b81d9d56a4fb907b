//! Random text in every query parameter and path segment of every route, as an analyst
//! and as a customer: never a panic or a 5xx (except the bounded `minPosition` wait,
//! 503 PROJECTION_BEHIND), and every refusal is a problem document.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::helpers::{spawn_with_config, test_config};

const PARAMETERS: [&str; 9] = [
    "lineNumber",
    "month",
    "page",
    "size",
    "minPosition",
    "status",
    "from",
    "to",
    "unknown",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "010-[0-9]{4}-[0-9]{4}",
        "[0-9]{4}-[0-9]{2}",
        "-?[0-9]{1,25}",
        "[A-Z]{0,12}",
    ]
}

/// A route (by index), a path segment, and some parameters with values.
fn request() -> impl Strategy<Value = (usize, String, Vec<(usize, String)>, bool)> {
    (
        0..7usize,
        value(),
        prop::collection::vec((0..PARAMETERS.len(), value()), 0..5),
        any::<bool>(),
    )
}

fn path(route: usize, segment: &str) -> String {
    let segment = urlencoding(segment);
    match route {
        0 => "/api/v1/bills/menu".into(),
        1 => "/api/v1/bills".into(),
        2 => "/api/v1/bills/history".into(),
        3 => format!("/api/v1/lines/{segment}"),
        4 => format!("/api/v1/lines/{segment}/product-changes"),
        5 => "/api/v1/products/available".into(),
        _ => format!("/api/v1/product-changes/{segment}"),
    }
}

fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn random_parameters_and_path_segments_on_every_route_never_cause_a_5xx() {
    let (mut config, projector) = test_config().await;
    config.min_position_wait_ms = 20;
    let app = spawn_with_config(projector, config).await;
    let customer = app.customer_token("CUST-F", &["010-0000-0001"]);
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let (app_ref, customer) = (&app, &customer);
    tokio::task::block_in_place(|| {
        runner.run(&request(), |(route, segment, params, as_customer)| {
            let url = reqwest::Url::parse_with_params(
                &format!("{}{}", app_ref.address, path(route, &segment)),
                params.iter().map(|(i, v)| (PARAMETERS[*i], v.as_str())),
            )
            .unwrap();
            let (status, body) = handle.block_on(async {
                let request = if as_customer {
                    app_ref.anonymous.get(url.clone()).bearer_auth(customer)
                } else {
                    app_ref.http.get(url.clone())
                };
                let response = request.send().await.unwrap();
                (response.status(), response.text().await.unwrap())
            });
            let problem: Option<serde_json::Value> = serde_json::from_str(&body).ok();
            let code = problem
                .as_ref()
                .and_then(|p| p["code"].as_str())
                .unwrap_or("");
            if status.is_server_error() && code != "PROJECTION_BEHIND" {
                return Err(TestCaseError::fail(format!("{url} -> {status} {body}")));
            }
            if status.is_client_error() && code.is_empty() {
                return Err(TestCaseError::fail(format!(
                    "{url} -> {status} without a problem code: {body}"
                )));
            }
            Ok(())
        })
    })
    .unwrap();
    app.stop().await;
}
