//! The admin API of the simulated KOS (paths under `/admin`; `/api/v1/*` belongs to the
//! public services). Bad input is refused with 400 and a stable code before anything
//! changes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use service_kit::http::CorrelationId;
use uuid::Uuid;

use super::AppState;
use crate::billing::{CycleReport, Month};
use crate::catalog::{NewProduct, Product};
use crate::changes::Order;
use crate::error::AppError;
use crate::lines::{Customer, Line, NewCustomer, NewLine};
use crate::outbox::Cause;
use crate::simulation::Simulation;
use service_kit::http::ApiJson;
use service_kit::problem::Problem;
use service_kit::problem::ProblemCode;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/customers", post(add_customer))
        .route("/admin/lines", post(register_line))
        .route("/admin/lines/{line_number}", get(get_line))
        .route("/admin/lines/{line_number}/suspend", post(suspend_line))
        .route("/admin/lines/{line_number}/resume", post(resume_line))
        .route("/admin/lines/{line_number}/bills/{month}", get(get_bill))
        .route("/admin/products", get(list_products).post(publish_product))
        .route("/admin/products/{product_code}", get(get_product))
        .route(
            "/admin/products/{product_code}/withdraw",
            post(withdraw_product),
        )
        .route(
            "/admin/products/{product_code}/reprice",
            post(reprice_product),
        )
        .route("/admin/bill-cycles", post(run_bill_cycle))
        .route("/admin/settings", get(get_settings).put(put_settings))
        .route("/admin/orders/{request_id}", get(get_order))
}

/// What every admin route may answer before it runs: no valid token, not an admin, the
/// logouts unreadable (Redis away).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // never built: it only names the responses for the OpenAPI document
pub enum AdminProblems {
    #[response(
        status = 401,
        description = "UNAUTHENTICATED: no valid token",
        content_type = "application/problem+json"
    )]
    Unauthenticated(Problem),
    #[response(
        status = 403,
        description = "FORBIDDEN: not an admin",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 503,
        description = "AUTH_UNAVAILABLE: the logouts cannot be read; TIMEOUT",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// Adds a customer (201; 200 if the same customer exists).
#[utoipa::path(post, path = "/admin/customers", request_body = NewCustomer,
    responses((status = 201, body = Customer), (status = 200, body = Customer),
              (status = 400, description = "INVALID_CUSTOMER_ID, INVALID_NAME, MALFORMED_JSON, INVALID_FIELDS", body = Problem, content_type = "application/problem+json"), (status = 409, description = "CUSTOMER_EXISTS: the id is taken by a different customer", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn add_customer(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewCustomer>,
) -> Result<(StatusCode, Json<Customer>), AppError> {
    let (customer, created) = state.lines.add_customer(new).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(customer)))
}

/// Registers a line of an existing customer and publishes `LineRegistered`.
#[utoipa::path(post, path = "/admin/lines", request_body = NewLine,
    responses((status = 201, body = Line), (status = 400, description = "INVALID_LINE_NUMBER, INVALID_CUSTOMER_ID, INVALID_PRODUCT_CODE, INVALID_OPERATOR, INVALID_CONTRACT, INVALID_AMOUNT, INVALID_PAYMENT_METHOD, MALFORMED_JSON, INVALID_FIELDS", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "CUSTOMER_NOT_FOUND, PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"), (status = 409, description = "LINE_EXISTS, OPERATOR_MISMATCH", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn register_line(
    State(state): State<AppState>,
    CorrelationId(correlation): CorrelationId,
    ApiJson(new): ApiJson<NewLine>,
) -> Result<(StatusCode, Json<Line>), AppError> {
    let line = state.lines.register(new, Cause::new(correlation)).await?;
    Ok((StatusCode::CREATED, Json(line)))
}

#[utoipa::path(get, path = "/admin/lines/{line_number}",
    responses((status = 200, body = Line), (status = 400, description = "INVALID_LINE_NUMBER", body = Problem, content_type = "application/problem+json"), (status = 404, description = "LINE_NOT_FOUND", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn get_line(
    State(state): State<AppState>,
    Path(line_number): Path<String>,
) -> Result<Json<Line>, AppError> {
    Ok(Json(state.lines.get(&line_number).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Suspension {
    pub reason: String,
}

/// Suspends a line and publishes `LineSuspended` (already suspended: no change).
#[utoipa::path(post, path = "/admin/lines/{line_number}/suspend", request_body = Suspension,
    responses((status = 200, body = Line), (status = 400, description = "INVALID_LINE_NUMBER, INVALID_REASON, MALFORMED_JSON, INVALID_FIELDS", body = Problem, content_type = "application/problem+json"), (status = 404, description = "LINE_NOT_FOUND", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn suspend_line(
    State(state): State<AppState>,
    CorrelationId(correlation): CorrelationId,
    Path(line_number): Path<String>,
    ApiJson(body): ApiJson<Suspension>,
) -> Result<Json<Line>, AppError> {
    let line = state
        .lines
        .suspend(&line_number, &body.reason, Cause::new(correlation))
        .await?;
    Ok(Json(line))
}

/// Resumes a line and publishes `LineResumed` (already active: no change).
#[utoipa::path(post, path = "/admin/lines/{line_number}/resume",
    responses((status = 200, body = Line), (status = 400, description = "INVALID_LINE_NUMBER", body = Problem, content_type = "application/problem+json"), (status = 404, description = "LINE_NOT_FOUND", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn resume_line(
    State(state): State<AppState>,
    CorrelationId(correlation): CorrelationId,
    Path(line_number): Path<String>,
) -> Result<Json<Line>, AppError> {
    Ok(Json(
        state
            .lines
            .resume(&line_number, Cause::new(correlation))
            .await?,
    ))
}

/// A line's bill for a month, as issued (with its current payment status).
#[utoipa::path(get, path = "/admin/lines/{line_number}/bills/{month}",
    responses((status = 200, body = Object), (status = 400, description = "INVALID_LINE_NUMBER, INVALID_MONTH", body = Problem, content_type = "application/problem+json"), (status = 404, description = "BILL_NOT_FOUND", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn get_bill(
    State(state): State<AppState>,
    Path((line_number, month)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, AppError> {
    let month: Month = month.parse()?;
    Ok(Json(state.billing.get(&line_number, month).await?))
}

#[utoipa::path(get, path = "/admin/products", responses((status = 200, body = [Product]), AdminProblems))]
pub async fn list_products(State(state): State<AppState>) -> Result<Json<Vec<Product>>, AppError> {
    Ok(Json(state.catalog.list().await?))
}

#[utoipa::path(get, path = "/admin/products/{product_code}",
    responses((status = 200, body = Product), (status = 400, description = "INVALID_PRODUCT_CODE", body = Problem, content_type = "application/problem+json"), (status = 404, description = "PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn get_product(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Json<Product>, AppError> {
    Ok(Json(state.catalog.get(&code).await?))
}

/// Puts a product on sale (new or updated) and publishes `ProductPublished`.
#[utoipa::path(post, path = "/admin/products", request_body = NewProduct,
    responses((status = 200, body = Product), (status = 400, description = "INVALID_PRODUCT_CODE, INVALID_NAME, INVALID_OPERATOR, INVALID_AMOUNT, MALFORMED_JSON, INVALID_FIELDS", body = Problem, content_type = "application/problem+json"), (status = 409, description = "OPERATOR_MISMATCH: the code belongs to another operator", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn publish_product(
    State(state): State<AppState>,
    CorrelationId(correlation): CorrelationId,
    ApiJson(new): ApiJson<NewProduct>,
) -> Result<Json<Product>, AppError> {
    Ok(Json(
        state.catalog.publish(new, Cause::new(correlation)).await?,
    ))
}

/// Takes a product off sale and publishes `ProductWithdrawn` (already off sale: no change).
#[utoipa::path(post, path = "/admin/products/{product_code}/withdraw",
    responses((status = 200, body = Product), (status = 400, description = "INVALID_PRODUCT_CODE", body = Problem, content_type = "application/problem+json"), (status = 404, description = "PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn withdraw_product(
    State(state): State<AppState>,
    CorrelationId(correlation): CorrelationId,
    Path(code): Path<String>,
) -> Result<Json<Product>, AppError> {
    Ok(Json(
        state
            .catalog
            .withdraw(&code, Cause::new(correlation))
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reprice {
    pub monthly_fee: i64,
}

/// Changes a product's monthly fee and publishes `ProductRepriced`.
#[utoipa::path(post, path = "/admin/products/{product_code}/reprice", request_body = Reprice,
    responses((status = 200, body = Product), (status = 400, description = "INVALID_PRODUCT_CODE, INVALID_AMOUNT, MALFORMED_JSON, INVALID_FIELDS", body = Problem, content_type = "application/problem+json"), (status = 404, description = "PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn reprice_product(
    State(state): State<AppState>,
    CorrelationId(correlation): CorrelationId,
    Path(code): Path<String>,
    ApiJson(body): ApiJson<Reprice>,
) -> Result<Json<Product>, AppError> {
    Ok(Json(
        state
            .catalog
            .reprice(&code, body.monthly_fee, Cause::new(correlation))
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BillCycle {
    /// `YYYY-MM`.
    pub month: String,
}

/// Issues the month's bill to every active line without one (idempotent per line and month).
#[utoipa::path(post, path = "/admin/bill-cycles", request_body = BillCycle,
    responses((status = 200, body = CycleReport), (status = 400, description = "INVALID_MONTH, MALFORMED_JSON, INVALID_FIELDS", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn run_bill_cycle(
    State(state): State<AppState>,
    CorrelationId(correlation): CorrelationId,
    ApiJson(body): ApiJson<BillCycle>,
) -> Result<Json<CycleReport>, AppError> {
    let month: Month = body.month.parse()?;
    Ok(Json(
        state
            .billing
            .run_cycle(month, Cause::new(correlation))
            .await?,
    ))
}

/// The simulation settings in force (in memory: they last until the process restarts).
#[utoipa::path(get, path = "/admin/settings", responses((status = 200, body = Simulation), AdminProblems))]
pub async fn get_settings(State(state): State<AppState>) -> Json<Simulation> {
    Json(state.changes.simulation().get())
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsChange {
    pub latency_min_ms: Option<u64>,
    pub latency_max_ms: Option<u64>,
    pub success_rate: Option<f64>,
    pub random_seed: Option<u64>,
}

/// Changes some or all simulation settings; refused as a whole if the result is invalid.
#[utoipa::path(put, path = "/admin/settings", request_body = SettingsChange,
    responses((status = 200, body = Simulation), (status = 400, description = "INVALID_SETTINGS, MALFORMED_JSON, INVALID_FIELDS", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn put_settings(
    State(state): State<AppState>,
    ApiJson(change): ApiJson<SettingsChange>,
) -> Result<Json<Simulation>, AppError> {
    let handle = state.changes.simulation();
    let current = handle.get();
    let next = Simulation {
        latency_min_ms: change.latency_min_ms.unwrap_or(current.latency_min_ms),
        latency_max_ms: change.latency_max_ms.unwrap_or(current.latency_max_ms),
        success_rate: change.success_rate.unwrap_or(current.success_rate),
        random_seed: change.random_seed.unwrap_or(current.random_seed),
    };
    next.check()
        .map_err(|e| AppError::refused(ProblemCode::InvalidSettings, e))?;
    handle.set(next);
    tracing::info!(settings = ?next, "simulation settings changed");
    Ok(Json(next))
}

/// KOS's order for a product-change request: outcome, and how often it was executed.
#[utoipa::path(get, path = "/admin/orders/{request_id}",
    responses((status = 200, body = Order), (status = 400, description = "INVALID_REQUEST_ID", body = Problem, content_type = "application/problem+json"), (status = 404, description = "ORDER_NOT_FOUND", body = Problem, content_type = "application/problem+json"), AdminProblems))]
pub async fn get_order(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
) -> Result<Json<Order>, AppError> {
    let id = Uuid::parse_str(&request_id).map_err(|_| {
        AppError::refused(
            ProblemCode::InvalidRequestId,
            format!("`{request_id}` is not a UUID"),
        )
    })?;
    Ok(Json(state.changes.order(id).await?))
}
