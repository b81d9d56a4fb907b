//! `/api/v1/auth/*`: login, logout, who am I, and the admin's password reset.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_kit::auth::{Caller, Role};
use service_kit::hardening::ClientAddress;
use utoipa::ToSchema;

use super::AppState;
use crate::error::AppError;
use service_kit::http::ApiJson;
use service_kit::problem::{Problem, TokenProblems};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/logout-all", post(logout_all))
        .route("/api/v1/auth/me", get(me))
        .route(
            "/api/v1/auth/customers/{customer_id}/password",
            put(set_password),
        )
        .route("/.well-known/jwks.json", get(jwks))
}

/// The public keys that verify this service's tokens (RFC 7517, Ed25519 as RFC 8037):
/// the current key and, during a rotation, the previous one. Public: anyone may check a
/// token; only this service can make one.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    responses(
        (status = 200, description = "A JSON Web Key Set", body = Object, content_type = "application/json")
    )
)]
pub(super) async fn jwks(
    State(state): State<AppState>,
) -> (
    [(axum::http::HeaderName, &'static str); 1],
    Json<jsonwebtoken::jwk::JwkSet>,
) {
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        Json(state.credentials.jwks()),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginBody {
    pub customer_id: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginAnswer {
    /// Send as `Authorization: Bearer <accessToken>`.
    pub access_token: String,
    /// `Bearer`
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
    pub customer_id: String,
    /// `customer`, `analyst` or `admin`.
    #[schema(value_type = String)]
    pub role: Role,
    /// The customer's line numbers (empty for analysts and admins, who see every line).
    pub lines: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub customer_id: String,
    #[schema(value_type = String)]
    pub role: Role,
    pub lines: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordBody {
    /// 8 to 128 characters.
    pub password: String,
    /// Optionally change the role: `customer`, `analyst` or `admin`.
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
}

/// Log in with customer id and password.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    request_body = LoginBody,
    responses(
        (status = 200, description = "An access token", body = LoginAnswer),
        (status = 400, description = "Malformed input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "INVALID_CREDENTIALS (the same whether the customer exists or not)", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "ACCOUNT_LOCKED after 5 consecutive failures from this client address, with lockedUntil", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "RATE_LIMITED, with Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn login(
    State(state): State<AppState>,
    ClientAddress(from): ClientAddress,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<LoginAnswer>, AppError> {
    let grant = state
        .credentials
        .login(&body.customer_id, &body.password, from)
        .await?;
    Ok(Json(LoginAnswer {
        access_token: grant.access_token,
        token_type: "Bearer",
        expires_in: grant.expires_in,
        customer_id: grant.customer_id,
        role: grant.role,
        lines: grant.lines,
    }))
}

/// Revoke the caller's token on every replica and on the query side.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The token no longer works"),
        (status = 503, description = "AUTH_UNAVAILABLE: the revocation could not be published; retry", body = Problem, content_type = "application/problem+json"),
        TokenProblems
    )
)]
pub(super) async fn logout(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, AppError> {
    state.logout.revoke(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the token belongs to.
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        TokenProblems
    )
)]
pub(super) async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        customer_id: caller.customer_id().to_owned(),
        role: caller.role(),
        lines: caller.lines().to_vec(),
        expires_at: caller.expires_at(),
    })
}

/// Admin only: set an account's password (and unlock it).
#[utoipa::path(
    put,
    path = "/api/v1/auth/customers/{customerId}/password",
    security(("bearer" = [])),
    params(("customerId" = String, Path, description = "The account id")),
    request_body = PasswordBody,
    responses(
        (status = 204, description = "Set; the account is unlocked and every token it held is revoked"),
        (status = 400, description = "INVALID_PASSWORD, INVALID_CUSTOMER_ID or malformed input", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN: not an admin", body = Problem, content_type = "application/problem+json"),
        TokenProblems
    )
)]
pub(super) async fn set_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(customer_id): Path<String>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, AppError> {
    caller.require_admin()?;
    state
        .credentials
        .set_password(&customer_id, &body.password, body.role)
        .await?;
    // Whoever held the old password (or the old role) keeps nothing of it.
    let revoked = state.logout.revoke_all(&customer_id).await?;
    tracing::info!(admin = %caller.customer_id(), account = %customer_id, revoked, "password set");
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke every token of the caller's account (every device), this one included.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout-all",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "No token of the account works any more"),
        (status = 503, description = "AUTH_UNAVAILABLE: the revocations could not be published; retry", body = Problem, content_type = "application/problem+json"),
        TokenProblems
    )
)]
pub(super) async fn logout_all(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, AppError> {
    state.logout.revoke(&caller).await?;
    state.logout.revoke_all(caller.customer_id()).await?;
    Ok(StatusCode::NO_CONTENT)
}
