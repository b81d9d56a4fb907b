//! The one problem model of every phonebill service: each stable `code` a client may
//! match on, with its HTTP status and title, and the `application/problem+json`
//! document (RFC 9457) they all answer with.
//!
//! A service's error type maps onto a [`Problem`] in one place (its `error.rs`); no other
//! code spells a problem code as a string. The web app's messages are checked against
//! [`ProblemCode::ALL`] (the `web_app_has_a_message_for_every_public_code` test).

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Who meets a code: the customers' and analysts' APIs (the web app has a message for
/// each) or the back-office ones (KOS's admin API, the analysts' time travel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Public,
    BackOffice,
}

macro_rules! problem_codes {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal, $status:ident, $title:literal, $audience:ident; )*) => {
        /// Every stable problem code. Serialized as the code itself (`"LINE_NOT_FOUND"`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum ProblemCode {
            $( $(#[doc = $doc])* $name, )*
        }

        impl ProblemCode {
            pub const ALL: &'static [ProblemCode] = &[$(ProblemCode::$name),*];

            pub const fn as_str(self) -> &'static str {
                match self { $(ProblemCode::$name => $code,)* }
            }

            pub const fn status(self) -> StatusCode {
                match self { $(ProblemCode::$name => StatusCode::$status,)* }
            }

            /// The same for every problem of the code (RFC 9457 `title`).
            pub const fn title(self) -> &'static str {
                match self { $(ProblemCode::$name => $title,)* }
            }

            pub const fn audience(self) -> Audience {
                match self { $(ProblemCode::$name => Audience::$audience,)* }
            }
        }
    };
}

problem_codes! {
    // The request itself.
    /// The body is not JSON, or not the JSON this endpoint reads.
    MalformedJson = "MALFORMED_JSON", BAD_REQUEST, "Malformed JSON", Public;
    /// One or more fields are missing or invalid.
    InvalidFields = "INVALID_FIELDS", BAD_REQUEST, "Invalid fields", Public;
    InvalidLineNumber = "INVALID_LINE_NUMBER", BAD_REQUEST, "Invalid line number", Public;
    InvalidProductCode = "INVALID_PRODUCT_CODE", BAD_REQUEST, "Invalid product code", Public;
    InvalidIdempotencyKey = "INVALID_IDEMPOTENCY_KEY", BAD_REQUEST, "Invalid idempotency key", Public;
    InvalidCustomerId = "INVALID_CUSTOMER_ID", BAD_REQUEST, "Invalid customer id", Public;
    InvalidPassword = "INVALID_PASSWORD", BAD_REQUEST, "Invalid password", Public;
    InvalidMonth = "INVALID_MONTH", BAD_REQUEST, "Invalid month", Public;
    /// A query parameter that is not a number, or out of range.
    InvalidParameter = "INVALID_PARAMETER", BAD_REQUEST, "Invalid parameter", Public;
    InvalidPage = "INVALID_PAGE", BAD_REQUEST, "Invalid page", Public;
    InvalidStatus = "INVALID_STATUS", BAD_REQUEST, "Invalid status", Public;
    InvalidRequestId = "INVALID_REQUEST_ID", BAD_REQUEST, "Invalid request id", Public;
    PayloadTooLarge = "PAYLOAD_TOO_LARGE", PAYLOAD_TOO_LARGE, "Request body too large", Public;
    UnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE", UNSUPPORTED_MEDIA_TYPE, "Unsupported media type", Public;

    // Who is asking.
    /// Wrong customer id or password (the same answer whether the customer exists).
    InvalidCredentials = "INVALID_CREDENTIALS", UNAUTHORIZED, "Invalid credentials", Public;
    AccountLocked = "ACCOUNT_LOCKED", LOCKED, "Account locked", Public;
    /// No token, or one that is invalid, expired or revoked.
    Unauthenticated = "UNAUTHENTICATED", UNAUTHORIZED, "Authentication required", Public;
    AuthUnavailable = "AUTH_UNAVAILABLE", SERVICE_UNAVAILABLE, "Authentication unavailable", Public;
    ForbiddenLine = "FORBIDDEN_LINE", FORBIDDEN, "No permission for this line", Public;
    /// The caller's role may not use this service.
    Forbidden = "FORBIDDEN", FORBIDDEN, "No permission for this service", Public;
    RateLimited = "RATE_LIMITED", TOO_MANY_REQUESTS, "Too many requests", Public;

    // What the request names.
    LineNotFound = "LINE_NOT_FOUND", NOT_FOUND, "Line not found", Public;
    BillNotFound = "BILL_NOT_FOUND", NOT_FOUND, "Bill not found", Public;
    /// A product change the views do not hold (yet).
    RequestNotFound = "REQUEST_NOT_FOUND", NOT_FOUND, "Request not found", Public;
    /// A KOS answer for a request the line never sent to KOS.
    UnknownRequest = "UNKNOWN_REQUEST", NOT_FOUND, "Unknown request", Public;
    /// A path under the API that no route serves.
    RouteNotFound = "ROUTE_NOT_FOUND", NOT_FOUND, "Not found", Public;

    // Product changes.
    PrecheckFailed = "PRECHECK_FAILED", UNPROCESSABLE_ENTITY, "Pre-check failed", Public;
    ChangeInFlight = "CHANGE_IN_FLIGHT", CONFLICT, "Another change is in progress", Public;
    IdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED", UNPROCESSABLE_ENTITY, "Idempotency key reused", Public;
    ConcurrentUpdate = "CONCURRENT_UPDATE", CONFLICT, "Concurrent update", Public;

    // Availability.
    Timeout = "TIMEOUT", SERVICE_UNAVAILABLE, "Request timed out", Public;
    /// A read asked for a position (`minPosition`) the views have not reached yet.
    ProjectionBehind = "PROJECTION_BEHIND", SERVICE_UNAVAILABLE, "Projection behind", Public;
    ReadModelUnavailable = "READ_MODEL_UNAVAILABLE", SERVICE_UNAVAILABLE, "Read model unavailable", Public;
    /// Never with details: they are logged, not shown.
    Internal = "INTERNAL", INTERNAL_SERVER_ERROR, "Internal error", Public;

    // KOS's admin API.
    InvalidName = "INVALID_NAME", BAD_REQUEST, "Invalid name", BackOffice;
    InvalidContract = "INVALID_CONTRACT", BAD_REQUEST, "Invalid contract", BackOffice;
    InvalidPaymentMethod = "INVALID_PAYMENT_METHOD", BAD_REQUEST, "Invalid payment method", BackOffice;
    InvalidReason = "INVALID_REASON", BAD_REQUEST, "Invalid reason", BackOffice;
    InvalidAmount = "INVALID_AMOUNT", BAD_REQUEST, "Invalid amount", BackOffice;
    InvalidOperator = "INVALID_OPERATOR", BAD_REQUEST, "Invalid operator", BackOffice;
    InvalidSettings = "INVALID_SETTINGS", BAD_REQUEST, "Invalid settings", BackOffice;
    InvalidDemoSize = "INVALID_DEMO_SIZE", BAD_REQUEST, "Invalid demo size", BackOffice;
    CustomerNotFound = "CUSTOMER_NOT_FOUND", NOT_FOUND, "Customer not found", BackOffice;
    ProductNotFound = "PRODUCT_NOT_FOUND", NOT_FOUND, "Product not found", BackOffice;
    OrderNotFound = "ORDER_NOT_FOUND", NOT_FOUND, "Order not found", BackOffice;
    LineExists = "LINE_EXISTS", CONFLICT, "Line exists", BackOffice;
    CustomerExists = "CUSTOMER_EXISTS", CONFLICT, "Customer exists", BackOffice;
    /// The product, line or customer belongs to another operator.
    OperatorMismatch = "OPERATOR_MISMATCH", CONFLICT, "Operator mismatch", BackOffice;

    // The analysts' time travel.
    InvalidAt = "INVALID_AT", BAD_REQUEST, "Invalid time", BackOffice;
    /// The events before the asked time are no longer on the topic.
    HistoryIncomplete = "HISTORY_INCOMPLETE", CONFLICT, "History incomplete", BackOffice;
    BrokerUnavailable = "BROKER_UNAVAILABLE", SERVICE_UNAVAILABLE, "Broker unavailable", BackOffice;
    TimeTravelBusy = "TIME_TRAVEL_BUSY", SERVICE_UNAVAILABLE, "Busy", BackOffice;
}

impl std::fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request refused with a stable code: bad input (`INVALID_*`), nothing at what it
/// names (`*_NOT_FOUND`), or a conflict with the state (`LINE_EXISTS`, ...). The code gives
/// the status; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Refusal {
    pub code: ProblemCode,
    pub detail: String,
}

impl Refusal {
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Refusal {
            code,
            detail: detail.into(),
        }
    }

    pub fn problem(&self) -> Problem {
        Problem::new(self.code, self.detail.clone())
    }
}

/// One failed pre-check of a refused product change (on `PRECHECK_FAILED`, `CHANGE_IN_FLIGHT`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProblemCheck {
    /// The pre-check's code (`TARGET_ON_SALE`, `NO_CHANGE_IN_FLIGHT`, ...).
    pub check: &'static str,
    pub message: String,
}

/// The problem document every service answers errors with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// `https://phonebill.dev/problems/<code in kebab case>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub code: ProblemCode,
    pub detail: String,
    /// On pre-check failures: the request the refusal was recorded under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    /// On pre-check failures: which checks failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_checks: Option<Vec<ProblemCheck>>,
    /// On `ACCOUNT_LOCKED`: when a login may be tried again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
    /// Sent as headers, not in the document (`Retry-After`, `WWW-Authenticate`).
    #[serde(skip)]
    #[schema(ignore)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Problem {
            type_uri: problem_type(code),
            title: code.title(),
            status: code.status().as_u16(),
            code,
            detail: detail.into(),
            request_id: None,
            failed_checks: None,
            locked_until: None,
            headers: Vec::new(),
        }
    }

    /// The answer to a failure whose details must not reach the client (they are logged).
    pub fn internal() -> Self {
        Problem::new(
            ProblemCode::Internal,
            "something went wrong on our side; try again",
        )
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn retry_after(self, seconds: u64) -> Self {
        self.with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        let headers = std::mem::take(&mut self.headers);
        let mut response = problem_json(self.code.status(), &self);
        for (name, value) in headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// The problems any route behind a token may answer with, beside its own statuses:
/// named in a route's `#[utoipa::path(responses(...))]` after them.
#[derive(utoipa::IntoResponses)]
pub enum TokenProblems {
    #[response(
        status = 401,
        description = "UNAUTHENTICATED: no valid token",
        content_type = "application/problem+json"
    )]
    Unauthenticated(Problem),
    #[response(
        status = 429,
        description = "RATE_LIMITED, with Retry-After",
        content_type = "application/problem+json"
    )]
    RateLimited(Problem),
    #[response(
        status = 500,
        description = "INTERNAL",
        content_type = "application/problem+json"
    )]
    Internal(Problem),
}

/// The `type` URI of a problem code: `BILL_NOT_FOUND` -> `.../problems/bill-not-found`.
pub fn problem_type(code: ProblemCode) -> String {
    format!(
        "https://phonebill.dev/problems/{}",
        code.as_str().to_lowercase().replace('_', "-")
    )
}

/// Sends a problem document as `application/problem+json`.
fn problem_json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_code_serializes_as_its_stable_string() {
        for code in ProblemCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
    }

    #[test]
    fn codes_are_unique_and_errors_only() {
        let names: BTreeSet<_> = ProblemCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ProblemCode::ALL.len());
        for code in ProblemCode::ALL {
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{code}"
            );
        }
    }

    #[test]
    fn a_problem_document_carries_status_code_title_and_type() {
        let doc = serde_json::to_value(Problem::new(ProblemCode::BillNotFound, "no bill")).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "type": "https://phonebill.dev/problems/bill-not-found",
                "title": "Bill not found",
                "status": 404,
                "code": "BILL_NOT_FOUND",
                "detail": "no bill",
            })
        );
    }

    #[test]
    fn headers_go_on_the_response_not_in_the_document() {
        let response = Problem::new(ProblemCode::RateLimited, "slow down")
            .retry_after(7)
            .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    /// Codes the web app shows although no service sends them: the reverse proxy's 404 for
    /// an `/api/` path no service owns, and the client's own (no answer, 5xx without a
    /// document, an unknown code).
    const WEB_ONLY: [&str; 4] = ["NOT_FOUND", "NETWORK", "SERVICE_UNAVAILABLE", "UNKNOWN"];

    /// The keys of `problemMessages` in `web/src/i18n.ts`.
    fn web_messages() -> BTreeSet<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/src/i18n.ts");
        let source = std::fs::read_to_string(path).expect("web/src/i18n.ts");
        let block = source
            .split("export const problemMessages")
            .nth(1)
            .and_then(|rest| rest.split("\n};").next())
            .expect("a problemMessages object in i18n.ts");
        block
            .lines()
            .filter_map(|line| {
                let key = line.trim().split(':').next()?;
                let is_code =
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_uppercase() || c == '_');
                is_code.then(|| key.to_owned())
            })
            .collect()
    }

    #[test]
    fn web_app_has_a_message_for_every_public_code() {
        let public: BTreeSet<String> = ProblemCode::ALL
            .iter()
            .filter(|c| c.audience() == Audience::Public)
            .map(|c| c.as_str().to_owned())
            .chain(WEB_ONLY.iter().map(|c| c.to_string()))
            .collect();
        let web = web_messages();
        let missing: Vec<_> = public.difference(&web).collect();
        let unknown: Vec<_> = web.difference(&public).collect();
        assert!(
            missing.is_empty(),
            "web/src/i18n.ts lacks messages for {missing:?}"
        );
        assert!(
            unknown.is_empty(),
            "web/src/i18n.ts has messages for codes no service sends: {unknown:?}"
        );
    }
}
