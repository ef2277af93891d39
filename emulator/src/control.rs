//! The emulator's own routes under `/_emulator/`, for tests, scripts and demos. They take
//! no signature and see every Region.
//!
//! | route | what it does |
//! | --- | --- |
//! | `POST /_emulator/findings` `{"findings": [...]}` | stores findings in GetFindings' JSON shape; a finding whose id exists is replaced in place; each goes to the detector its `service.detectorId` names in the Region its `region` names (`us-east-1` when absent) |
//! | `GET /_emulator/findings` | every stored finding, every Region's, in insertion order |
//! | `GET /_emulator/findings/{findingId}/feedback` | the feedback given on a finding with UpdateFindingsFeedback (below); 404 for a finding the emulator does not hold |
//! | `GET /_emulator/stats` | how many times each operation was called: `{"ListFindings": 3, ...}` |
//! | `POST /_emulator/faults` `{"operation": "ListFindings", "times": 2}` | the next `times` calls of the operation answer HTTP 500 |
//!
//! The feedback of a finding:
//!
//! ```json
//! {
//!   "findingId": "f-1",
//!   "feedback": "USEFUL",
//!   "comments": "confirmed scanner",
//!   "submissions": [
//!     { "feedback": "USEFUL", "comments": "confirmed scanner", "region": "us-east-1",
//!       "detectorId": "12abc34d567e8fa901bc2d34e56789f0", "submittedAt": "2026-11-01T10:00:00.000Z" }
//!   ]
//! }
//! ```
//!
//! `feedback` and `comments` are those of the latest call (`comments` only when it had
//! some); `submissions` holds every call, oldest first, and is empty (with no `feedback`)
//! for a finding nobody gave feedback on.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::Emulator;
use crate::body::{RequestBody, invalid_input};
use crate::error::ApiError;
use crate::store::FeedbackSubmission;
use crate::time::format_iso8601;

pub(crate) fn routes() -> Router<Emulator> {
    Router::new()
        .route(
            "/_emulator/findings",
            get(all_findings)
                .post(post_findings)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/_emulator/findings/{finding_id}/feedback",
            get(finding_feedback),
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

/// `GET /_emulator/findings/{findingId}/feedback`: the feedback given on a finding.
async fn finding_feedback(
    State(emulator): State<Emulator>,
    Path(finding_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    emulator
        .feedback(&finding_id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("the emulator holds no finding {finding_id:?}")))
}

/// The feedback document of one finding (see the module documentation).
pub(crate) fn feedback_document(finding_id: &str, submissions: &[FeedbackSubmission]) -> Value {
    let mut document = json!({
        "findingId": finding_id,
        "submissions": submissions.iter().map(|submission| {
            let mut entry = json!({
                "feedback": submission.feedback,
                "region": submission.region,
                "detectorId": submission.detector_id,
                "submittedAt": format_iso8601(submission.submitted_at_ms),
            });
            if let Some(comments) = &submission.comments {
                entry["comments"] = json!(comments);
            }
            entry
        }).collect::<Vec<_>>(),
    });
    if let Some(latest) = submissions.last() {
        document["feedback"] = json!(latest.feedback);
        if let Some(comments) = &latest.comments {
            document["comments"] = json!(comments);
        }
    }
    document
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
