//! HTTP: one `router()` per resource, merged here with the cross-cutting layers.
//! Every API handler takes a [`Caller`](service_kit::auth::Caller) (401 without a valid
//! token) and checks the line it reads with `may_read_line` (403 `FORBIDDEN_LINE`); the
//! API routes carry the per-IP rate limit. Health, metrics and OpenAPI stay public.

mod bills;
mod health;
mod lines;
pub mod openapi;
mod product_changes;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use service_kit::auth::Authenticator;
use service_kit::hardening::{Hardened, HardeningConfig, RateLimit};
use service_kit::kafka::Admin;

use crate::error::AppError;
use crate::inquiries::Inquiries;
use crate::views::Doc;
use crate::views::Views;
use service_kit::problem::ProblemCode;

/// What handlers share, behind one `Arc`: every extractor of the state clones it, and
/// on the bill query path cloning (and dropping) each field was measurable.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Clone)]
pub struct Shared {
    pub views: Views,
    pub inquiries: Inquiries,
    pub admin: Arc<Admin>,
    pub request_timeout: Duration,
    pub max_wait: Duration,
    pub auth: Authenticator,
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// One HTTP worker's service: the router, inside the layers that go around it whole.
pub type App = Hardened<Router>;

/// One HTTP worker's service. `ip_limit` is shared by all workers' routers, so that a
/// client counts once whichever worker its connection landed on.
///
/// Only `observe` (which also turns a panic into a 500) goes on the routes: it labels
/// its metrics with the matched route, known only after routing. The others wrap the
/// router once: a `Router::layer` wraps every route, and each request then cloned and
/// boxed every wrapping (15 clones and 8 boxed futures a bill query, with observe,
/// catch-panic, CORS and the security headers all on the routes).
pub fn router(
    state: AppState,
    hardening: &HardeningConfig,
    ip_limit: Option<RateLimit>,
    metrics_beside_api: bool,
) -> App {
    let timeout = state.request_timeout;
    let api = Router::new()
        .merge(bills::router())
        .merge(lines::router())
        .merge(product_changes::router());
    let router = Router::new()
        .merge(RateLimit::apply(ip_limit, api))
        .merge(health::router(metrics_beside_api))
        .merge(service_kit::http::openapi_route(openapi::document))
        .fallback(|| async {
            AppError::refused(ProblemCode::RouteNotFound, "no such resource").into_response()
        })
        .layer(service_kit::http::ObserveLayer::new(timeout))
        .with_state(state);
    hardening.around(router)
}

/// A route's query parameters, read as `Query<HashMap<String, String>>` read them before
/// the routes had types: parsed as `form_urlencoded` (as axum's `Query` parses), a
/// repeated parameter's last value counting and unknown ones ignored. The structs' fields
/// are `Option<String>` and the handler checks them, so that a bad value gets its problem
/// code (`INVALID_PARAMETER`, `INVALID_PAGE`, ...) rather than axum's plain-text 400.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = form_urlencoded::parse(query.as_bytes())
            .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
            .collect::<serde_json::Map<_, _>>();
        serde_json::from_value(Value::Object(pairs))
            .map(Self)
            .map_err(|e| AppError::refused(ProblemCode::InvalidParameter, e.to_string()))
    }
}

/// A typed answer written as the `json!` bodies of these routes were before they had
/// types: serde_json (without `preserve_order`) sorts an object's keys, nested objects'
/// too, so the answers stay byte-for-byte what clients got. The view documents served as
/// stored ([`doc_response`]) are not re-serialized and keep their own order.
pub struct SortedJson<T>(pub T);

impl<T: Serialize> IntoResponse for SortedJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_value(&self.0) {
            Ok(value) => Json(value).into_response(),
            Err(e) => AppError::Internal(e.into()).into_response(),
        }
    }
}

/// `010-dddd-dddd`; the value itself when it is one.
pub fn line_number(value: Option<String>) -> Result<String, AppError> {
    let Some(v) = value else {
        return Err(AppError::refused(
            ProblemCode::InvalidLineNumber,
            "lineNumber is required",
        ));
    };
    let b = v.as_bytes();
    let ok = b.len() == 13
        && v.starts_with("010-")
        && b[8] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 3 || i == 8 || c.is_ascii_digit());
    if ok {
        Ok(v)
    } else {
        Err(AppError::refused(
            ProblemCode::InvalidLineNumber,
            format!("lineNumber `{v}` is not of the form 010-1234-5678"),
        ))
    }
}

/// A parameter's value as a non-negative integer, if given.
pub fn non_negative(name: &str, value: Option<&String>) -> Result<Option<i64>, AppError> {
    value
        .map(|v| {
            v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                AppError::refused(
                    ProblemCode::InvalidParameter,
                    format!("{name} must be a non-negative integer"),
                )
            })
        })
        .transpose()
}

/// The deepest page a history route serves. A line's history never runs to millions of
/// entries, and the offset (`page * size`) stays far from overflowing.
pub const MAX_PAGE: i64 = 100_000;

/// `page` (0..=[`MAX_PAGE`]) and `size` (1..=100, default 20).
pub fn paging(page: Option<&String>, size: Option<&String>) -> Result<(usize, usize), AppError> {
    let page = non_negative("page", page)?.unwrap_or(0);
    if page > MAX_PAGE {
        return Err(AppError::refused(
            ProblemCode::InvalidPage,
            format!("page must be between 0 and {MAX_PAGE}"),
        ));
    }
    let page = page as usize;
    let size = non_negative("size", size)?.unwrap_or(20);
    if !(1..=100).contains(&size) {
        return Err(AppError::refused(
            ProblemCode::InvalidParameter,
            "size must be between 1 and 100",
        ));
    }
    Ok((page, size as usize))
}

/// The request's `If-None-Match`, taken alone: the `HeaderMap` extractor copies every
/// header of the request.
pub struct IfNoneMatch(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get(header::IF_NONE_MATCH).cloned()))
    }
}

/// A stored view as the response body, with its ETag; 304 when the client has it.
pub fn doc_response(doc: &Doc, request: &IfNoneMatch, cache_control: HeaderValue) -> Response {
    let not_modified = request
        .0
        .as_ref()
        .is_some_and(|v| v.as_bytes() == doc.etag.as_bytes());
    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        Response::new(Body::from(doc.bytes.clone()))
    };
    let headers = response.headers_mut();
    // Room for what the layers and axum add too (security headers, CORS' `Vary`, the
    // correlation id, the length), so that the map is made once and never grows.
    headers.reserve(16);
    if !not_modified {
        headers.insert(header::CONTENT_TYPE, JSON);
    }
    headers.insert(header::ETAG, doc.etag.clone());
    headers.insert(header::CACHE_CONTROL, cache_control);
    response
}

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Private data that changes: clients may keep it but must revalidate (ETag).
pub const PRIVATE_REVALIDATE: HeaderValue = HeaderValue::from_static("private, no-cache");

#[cfg(test)]
mod tests {
    use super::*;

    fn paged(pairs: &[(&str, &str)]) -> Result<(usize, usize), AppError> {
        let get = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        paging(get("page").as_ref(), get("size").as_ref())
    }

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct TwoParams {
        line_number: Option<String>,
        page: Option<String>,
    }

    async fn read(uri: &str) -> TwoParams {
        let (mut parts, ()) = axum::http::Request::get(uri).body(()).unwrap().into_parts();
        QueryParams::<TwoParams>::from_request_parts(&mut parts, &())
            .await
            .map_err(|e| e.to_string())
            .unwrap()
            .0
    }

    #[tokio::test]
    async fn query_params_read_as_the_map_did_the_last_value_counting_unknown_ones_ignored() {
        assert_eq!(read("/x").await, TwoParams::default());
        assert_eq!(
            read("/x?page=1&lineNumber=010-1234-5678&page=-2&other=3&&=&page%20=4").await,
            TwoParams {
                line_number: Some("010-1234-5678".into()),
                page: Some("-2".into()),
            }
        );
        assert_eq!(
            read("/x?line%4Eumber=a+b%2B&page").await,
            TwoParams {
                line_number: Some("a b+".into()),
                page: Some(String::new()),
            }
        );
        // As `Query<HashMap<String, String>>` read them, for the same queries.
        for query in ["page=1&page=x&lineNumber=", "line%4Eumber=%FF&size=2"] {
            let map =
                axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(
                    &format!("/x?{query}").parse().unwrap(),
                )
                .unwrap()
                .0;
            let typed = read(&format!("/x?{query}")).await;
            assert_eq!(typed.line_number, map.get("lineNumber").cloned(), "{query}");
            assert_eq!(typed.page, map.get("page").cloned(), "{query}");
        }
    }

    fn code(result: Result<(usize, usize), AppError>) -> &'static str {
        match result {
            Err(AppError::Refused(refusal)) => refusal.code.as_str(),
            other => panic!("expected 400, got {:?}", other.map_err(|e| e.to_string())),
        }
    }

    #[test]
    fn a_page_beyond_the_deepest_is_refused_as_invalid_page_not_an_overflow() {
        assert_eq!(paged(&[]).unwrap(), (0, 20));
        assert_eq!(
            paged(&[("page", "100000"), ("size", "100")]).unwrap(),
            (100_000, 100)
        );
        for page in ["100001", "92233720368547759", "9223372036854775807"] {
            assert_eq!(code(paged(&[("page", page)])), "INVALID_PAGE", "{page}");
        }
        for page in ["-1", "x", "99999999999999999999"] {
            assert_eq!(
                code(paged(&[("page", page)])),
                "INVALID_PARAMETER",
                "{page}"
            );
        }
        assert_eq!(code(paged(&[("size", "101")])), "INVALID_PARAMETER");
    }
}
