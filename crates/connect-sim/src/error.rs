//! The simulator's error responses: always a JSON `{"status","message"}` body, as the real
//! server sends (the Python SDK crashes on anything else).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use onepassword_connect::models::ErrorBody;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn invalid_token() -> Self {
        Self::new(401, "Invalid bearer token")
    }

    pub fn unknown_token() -> Self {
        Self::new(401, "Invalid token signature")
    }

    pub fn read_only() -> Self {
        Self::new(
            401,
            "Unauthorized Request, token does not have write access to the Vault",
        )
    }

    pub fn vault_forbidden(vault_id: &str) -> Self {
        Self::new(
            403,
            format!("Authorization: token does not have access to vault {vault_id}"),
        )
    }

    pub fn item_not_found(item_id: &str) -> Self {
        Self::new(404, format!("item {item_id} not found"))
    }

    pub fn file_not_found(file_id: &str) -> Self {
        Self::new(404, format!("file {file_id} not found"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&ErrorBody {
            status: self.status,
            message: self.message,
        })
        .expect("error body encodes");
        let mut response = (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
