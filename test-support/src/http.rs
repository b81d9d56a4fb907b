//! HTTP clients for the services' APIs.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};

/// A client sending `Authorization: Bearer <token>` on every request (unless a request
/// sets its own).
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}
