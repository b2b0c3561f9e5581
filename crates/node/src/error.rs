//! API errors: every failure is `{"error":{"code","message"}}` with a fitting status.

use crate::store::StoreError;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use verity_engine::EngineError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::DuplicateName { .. } | StoreError::DuplicateId { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already_published", e.to_string())
            }
            StoreError::Replay { .. } => {
                ApiError::new(StatusCode::CONFLICT, "replayed_nonce", e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let (status, code) = match &e {
            EngineError::MissingInput(_)
            | EngineError::UnknownInput { .. }
            | EngineError::InputMismatch { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input")
            }
            EngineError::UnsupportedOps(_) | EngineError::Unsupported(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unsupported_operator")
            }
            EngineError::Overflow(_) => (StatusCode::UNPROCESSABLE_ENTITY, "accumulator_overflow"),
            EngineError::NotOnnx(_)
            | EngineError::NotCanonical(_)
            | EngineError::InvalidModel(_) => (StatusCode::BAD_REQUEST, "invalid_model"),
            EngineError::Calibration(_) => (StatusCode::BAD_REQUEST, "invalid_calibration"),
            EngineError::Core(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            EngineError::Float(_) => (StatusCode::UNPROCESSABLE_ENTITY, "float_engine"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.body_text(),
            ),
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text())
            }
            JsonRejection::MissingJsonContentType(e) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_type",
                e.body_text(),
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::too_large(other.body_text())
            }
            other => ApiError::new(other.status(), "bad_request", other.body_text()),
        }
    }
}

impl From<MultipartError> for ApiError {
    fn from(e: MultipartError) -> ApiError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(e.body_text())
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_upload",
                format!("upload failed (truncated?): {}", e.body_text()),
            )
        }
    }
}
