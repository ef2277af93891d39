//! The emulator's own routes under `/_emulator/`, for tests, scripts and demos: seed or
//! replace findings, read them back, read how often each operation was called, and make
//! the next calls of an operation fail.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::Emulator;
use crate::body::{RequestBody, invalid_input};
use crate::error::ApiError;

pub(crate) fn routes() -> Router<Emulator> {
    Router::new()
        .route(
            "/_emulator/findings",
            get(all_findings)
                .post(post_findings)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/_emulator/stats", get(request_counts))
        .route("/_emulator/faults", post(inject_failures))
}

/// Reads `{"findings": [...]}`, the shape GetFindings returns.
pub fn parse_findings_document(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let document: Value =
        serde_json::from_slice(bytes).map_err(|error| format!("not valid JSON: {error}"))?;
    match document {
        Value::Object(mut members) => match members.remove("findings") {
            Some(Value::Array(findings)) => Ok(findings),
            _ => {
                Err("expected {\"findings\": [...]}: the findings member must be a list".to_owned())
            }
        },
        _ => Err("expected a JSON object {\"findings\": [...]}".to_owned()),
    }
}

/// `POST /_emulator/findings`: stores the findings (same id = replaced in place).
async fn post_findings(
    State(emulator): State<Emulator>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let findings = parse_findings_document(&body).map_err(ApiError::bad_request)?;
    let upserted = emulator
        .upsert_findings(findings)
        .map_err(ApiError::bad_request)?;
    Ok(Json(json!({ "upserted": upserted })))
}

/// `GET /_emulator/findings`: every stored finding, in insertion order.
async fn all_findings(State(emulator): State<Emulator>) -> Json<Value> {
    Json(json!({ "findings": emulator.findings() }))
}

/// `GET /_emulator/stats`: `{"ListFindings": 3, ...}`.
async fn request_counts(State(emulator): State<Emulator>) -> Json<Value> {
    Json(json!(emulator.request_counts()))
}

/// `POST /_emulator/faults` `{"operation": "ListFindings", "times": 2}`: the next `times`
/// calls of the operation answer HTTP 500 `InternalServerErrorException`.
async fn inject_failures(
    State(emulator): State<Emulator>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = RequestBody::parse(&body)?;
    let operation = body
        .string("operation")?
        .ok_or_else(|| invalid_input("operation is required"))?;
    let times = body.integer("times")?.unwrap_or(1);
    let times = u32::try_from(times).map_err(|_| {
        invalid_input(format!(
            "times must be between 0 and {}, got {times}",
            u32::MAX
        ))
    })?;
    emulator.fail_next(operation, times);
    Ok(Json(json!({ "operation": operation, "times": times })))
}
