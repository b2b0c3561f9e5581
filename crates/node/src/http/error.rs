//! API errors: every failure is `{"error":{"code","message"}}` with a fitting status. The
//! services' errors get their status and code here, and only here.

use crate::cache::BlobError;
use crate::executor::ExecError;
use crate::hub::HubError;
use crate::inference::InferError;
use crate::node::NoLedger;
use crate::peers::PeerError;
use crate::quorum::QuorumError;
use crate::scheduler::JobError;
use crate::settle::SettleError;
use crate::store::StoreError;
use crate::zk::ProvingError;
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
            EngineError::UnsupportedOps(_)
            | EngineError::Unsupported(_)
            | EngineError::FloatUnsupported(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unsupported_operator")
            }
            EngineError::TooCostly(_) => (StatusCode::UNPROCESSABLE_ENTITY, "too_costly"),
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

/// The error's own message under `status` and `code`.
fn with(status: StatusCode, code: &'static str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(status, code, e.to_string())
}

impl From<NoLedger> for ApiError {
    fn from(e: NoLedger) -> ApiError {
        with(StatusCode::SERVICE_UNAVAILABLE, "no_ledger", e)
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_model",
            format!("invalid model: {e}"),
        )
    }
}

impl From<PeerError> for ApiError {
    fn from(e: PeerError) -> ApiError {
        match e {
            PeerError::NoLedger(e) => e.into(),
            PeerError::Store(e) => e.into(),
            PeerError::NoModel(_) => ApiError::not_found(e.to_string()),
            PeerError::Unregistered(_) | PeerError::Failed { .. } => {
                with(StatusCode::BAD_GATEWAY, "peer_failed", e)
            }
        }
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        match e {
            HubError::Peer(e) => e.into(),
            HubError::Store(e) => e.into(),
            HubError::Engine(e) => e.into(),
            HubError::BadReference(_) | HubError::Invalid(_) => {
                ApiError::bad_request(e.to_string())
            }
            HubError::NotFound(_) => ApiError::not_found(e.to_string()),
            HubError::TooLarge { .. } => ApiError::too_large(e.to_string()),
            HubError::Truncated { .. } => with(StatusCode::BAD_REQUEST, "truncated_upload", e),
            HubError::HashMismatch { .. } => with(StatusCode::BAD_REQUEST, "hash_mismatch", e),
            HubError::PublisherSignature => with(StatusCode::UNAUTHORIZED, "invalid_signature", e),
            HubError::PublisherNotAllowed(_) => {
                with(StatusCode::FORBIDDEN, "publisher_not_allowed", e)
            }
            HubError::StoreFull { .. } => with(StatusCode::INSUFFICIENT_STORAGE, "store_full", e),
            HubError::Job(e) => e.into(),
            HubError::FileUnavailable(_) | HubError::Internal(_) => {
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> ApiError {
        match e {
            ExecError::Blob(e) => e.into(),
            ExecError::Engine(e) => e.into(),
            ExecError::Llm(_) => ApiError::internal(e.to_string()),
            ExecError::WrongFormat { .. } => {
                with(StatusCode::UNPROCESSABLE_ENTITY, "wrong_format", e)
            }
        }
    }
}

impl From<ProvingError> for ApiError {
    fn from(e: ProvingError) -> ApiError {
        match e {
            ProvingError::NotCanonical { .. } | ProvingError::Unprovable(_) => {
                with(StatusCode::UNPROCESSABLE_ENTITY, "not_provable", e)
            }
            ProvingError::Blob(e) => e.into(),
            ProvingError::Setup(_) | ProvingError::Prove(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<SettleError> for ApiError {
    fn from(e: SettleError) -> ApiError {
        let (status, code) = match &e {
            SettleError::NoLedger(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_ledger"),
            SettleError::NotTheEscrow { .. } | SettleError::NotOpenRequest => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            SettleError::EscrowSignature => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            SettleError::AlreadyEscrowed(_) => (StatusCode::CONFLICT, "request_exists"),
            SettleError::NoListing { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "model_not_registered")
            }
            SettleError::InsufficientFunds { .. } => {
                (StatusCode::PAYMENT_REQUIRED, "insufficient_funds")
            }
            SettleError::QuorumTooLarge { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "quorum_too_large")
            }
            SettleError::LedgerBusy(_) => (StatusCode::SERVICE_UNAVAILABLE, "ledger_busy"),
            SettleError::EscrowRefused(_) => (StatusCode::PAYMENT_REQUIRED, "escrow_refused"),
            SettleError::EscrowTimeout => (StatusCode::SERVICE_UNAVAILABLE, "escrow_timeout"),
            SettleError::NotOpen(_) => (StatusCode::PAYMENT_REQUIRED, "escrow_not_open"),
        };
        with(status, code, e)
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> ApiError {
        match e {
            JobError::Busy { .. } => with(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", e),
            JobError::Stopped(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> ApiError {
        match e {
            InferError::ClientSignature => with(StatusCode::UNAUTHORIZED, "invalid_signature", e),
            InferError::EscrowRequired => ApiError::bad_request(e.to_string()),
            InferError::ReplayedNonce(_) => with(StatusCode::CONFLICT, "replayed_nonce", e),
            InferError::ChatModel(_) => with(StatusCode::UNPROCESSABLE_ENTITY, "chat_model", e),
            InferError::NotCanonical { .. } => {
                with(StatusCode::UNPROCESSABLE_ENTITY, "not_canonical", e)
            }
            InferError::Model(e) => e.into(),
            InferError::Exec(e) => e.into(),
            InferError::Proving(e) => e.into(),
            InferError::Settle(e) => e.into(),
            InferError::Job(e) => e.into(),
            InferError::Store(e) => e.into(),
        }
    }
}

impl From<QuorumError> for ApiError {
    fn from(e: QuorumError) -> ApiError {
        match e {
            QuorumError::EscrowRequired | QuorumError::NotQuorum | QuorumError::PeerNotQuorum => {
                ApiError::bad_request(e.to_string())
            }
            QuorumError::NotEligible(_) => with(StatusCode::FORBIDDEN, "not_eligible", e),
            QuorumError::Unavailable { .. } => {
                with(StatusCode::SERVICE_UNAVAILABLE, "quorum_unavailable", e)
            }
            QuorumError::Disagreement(_) | QuorumError::DisputeNotFiled { .. } => {
                with(StatusCode::BAD_GATEWAY, "quorum_disagreement", e)
            }
            QuorumError::NoDisagreement => ApiError::bad_request(e.to_string()),
            QuorumError::Receipt(_) => with(StatusCode::UNPROCESSABLE_ENTITY, "invalid_receipt", e),
            QuorumError::NoLedger(e) => e.into(),
            QuorumError::Settle(e) => e.into(),
            QuorumError::Infer(e) => e.into(),
        }
    }
}
