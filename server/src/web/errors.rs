//! The one mapping of errors to HTTP statuses, for the JSON API and the server functions alike.

use app::PredictError;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::MAX_BODY_BYTES;

/// The HTTP status that goes with a submission's error.
pub fn status_of(error: &PredictError) -> StatusCode {
    match error {
        PredictError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        PredictError::BrokerUnavailable(_) | PredictError::NotRunning => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        PredictError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        PredictError::Busy => StatusCode::TOO_MANY_REQUESTS,
        PredictError::BadRequest(_) => StatusCode::BAD_REQUEST,
        PredictError::Transport(_) => StatusCode::INTERNAL_SERVER_ERROR,
        PredictError::SignInRequired => StatusCode::UNAUTHORIZED,
        PredictError::Forbidden(_) => StatusCode::FORBIDDEN,
    }
}

/// Why the JSON API answered no prediction.
#[derive(Debug)]
pub enum ApiError {
    /// The body is no customer record: not JSON (400), not a record (422), too large (413), ...
    /// with axum's status for it.
    NotARecord(JsonRejection),
    Predict(PredictError),
    /// An uploaded model that the scorers would refuse (422), with why.
    ModelRefused(String),
    /// A request this route cannot read (400), with what to send instead.
    BadRequest(String),
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::NotARecord(rejection)
    }
}

impl From<PredictError> for ApiError {
    fn from(error: PredictError) -> Self {
        ApiError::Predict(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotARecord(rejection) => {
                let error = serde_json::json!({ "error": format!("not a customer record: {}", rejection.body_text()) });
                (rejection.status(), Json(error)).into_response()
            }
            ApiError::Predict(error) => (status_of(&error), Json(error.to_json())).into_response(),
            ApiError::ModelRefused(reason) => {
                let error = serde_json::json!({ "error": reason });
                (StatusCode::UNPROCESSABLE_ENTITY, Json(error)).into_response()
            }
            ApiError::BadRequest(reason) => {
                let error = serde_json::json!({ "error": reason });
                (StatusCode::BAD_REQUEST, Json(error)).into_response()
            }
        }
    }
}

/// Server functions answer every error with 500; a `PredictError` gets its own status here
/// (400 for an unreadable payload, 429 when busy, ...), whether the function returned it or its
/// arguments could not be read.
pub async fn server_fn_status(response: Response) -> Response {
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key("serverfnerror")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    if let Ok(error) = serde_json::from_slice::<PredictError>(&bytes) {
        parts.status = status_of(&error);
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}
