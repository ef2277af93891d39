//! GuardDuty's error responses: the status code, the `x-amzn-ErrorType` header the SDK
//! reads to pick the typed error, and the JSON body (`message`, `__type`) GuardDuty sends.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The message GuardDuty answers for a detector id that the caller does not own.
pub(crate) const UNKNOWN_DETECTOR_MESSAGE: &str =
    "The request is rejected because the input detectorId is not owned by the current account.";

/// A failed call, rendered as GuardDuty renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    /// The modeled error (`x-amzn-ErrorType`): what the SDK turns into a typed variant.
    code: &'static str,
    /// GuardDuty's internal error name, sent as `__type` in the body.
    internal_type: &'static str,
    message: String,
}

impl ApiError {
    /// 400 `BadRequestException` with `__type` `InvalidInputException`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "BadRequestException",
            internal_type: "InvalidInputException",
            message: message.into(),
        }
    }

    /// The answer for a detector id that does not exist (GuardDuty says "not owned").
    pub(crate) fn unknown_detector() -> Self {
        Self::bad_request(UNKNOWN_DETECTOR_MESSAGE)
    }

    /// 400 for a `nextToken` that this emulator did not hand out (or has forgotten).
    pub(crate) fn invalid_next_token() -> Self {
        Self::bad_request("The request is rejected because the input nextToken is invalid.")
    }

    /// 404 from a control route, for something the emulator does not hold.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "NotFoundException",
            internal_type: "NotFoundException",
            message: message.into(),
        }
    }

    /// 500 `InternalServerErrorException`.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalServerErrorException",
            internal_type: "InternalException",
            message: message.into(),
        }
    }

    /// 404 for a path no GuardDuty operation (or emulator control route) lives at.
    pub(crate) fn unknown_operation(method: &str, path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "UnknownOperationException",
            internal_type: "UnknownOperationException",
            message: format!("The guardduty emulator has no operation at {method} {path}"),
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "message": self.message, "__type": self.internal_type });
        let mut response = (self.status, Json(body)).into_response();
        response
            .headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(self.code));
        response
    }
}
