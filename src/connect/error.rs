//! Typed errors of the Connect client. Messages carry the server's message and the
//! endpoint, never a secret value or the token.

use std::time::Duration;

/// Why a Connect call failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// 401: missing, invalid or revoked token, or a write with a read-only token.
    #[error("Connect rejected the token ({endpoint}): {message}")]
    Unauthorized { endpoint: &'static str, message: String },
    /// 403: the vault is outside the token's scope.
    #[error("Connect denied access ({endpoint}): {message}")]
    Forbidden { endpoint: &'static str, message: String },
    /// 404: unknown vault, item or file.
    #[error("not found in Connect ({endpoint}): {message}")]
    NotFound { endpoint: &'static str, message: String },
    /// 400: malformed id, filter or body.
    #[error("Connect refused the request as invalid ({endpoint}): {message}")]
    BadRequest { endpoint: &'static str, message: String },
    /// 413: a file too large to inline.
    #[error("Connect refused an oversized payload ({endpoint}): {message}")]
    PayloadTooLarge { endpoint: &'static str, message: String },
    /// 429: slow down; `retry_after` from the `Retry-After` header.
    #[error("Connect is rate limiting ({endpoint}){}: {message}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        endpoint: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    /// 5xx.
    #[error("Connect server error {status} ({endpoint}): {message}")]
    Server {
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    /// Any other status.
    #[error("unexpected Connect status {status} ({endpoint}): {message}")]
    UnexpectedStatus {
        endpoint: &'static str,
        status: u16,
        message: String,
    },
    /// Connection refused, timeout, TLS failure, broken body.
    #[error("cannot reach Connect ({endpoint})")]
    Transport {
        endpoint: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The body did not match the API schema.
    #[error("cannot decode the Connect response ({endpoint})")]
    Decode {
        endpoint: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The client was configured wrongly (bad host URL, unreadable CA bundle, bad token).
    #[error("invalid Connect client configuration: {0}")]
    Config(String),
}

impl ConnectError {
    /// Maps a non-success status and the server's message to the error.
    pub fn from_status(endpoint: &'static str, status: u16, message: String, retry_after: Option<Duration>) -> Self {
        match status {
            400 => Self::BadRequest { endpoint, message },
            401 => Self::Unauthorized { endpoint, message },
            403 => Self::Forbidden { endpoint, message },
            404 => Self::NotFound { endpoint, message },
            413 => Self::PayloadTooLarge { endpoint, message },
            429 => Self::RateLimited {
                endpoint,
                message,
                retry_after,
            },
            500..=599 => Self::Server {
                endpoint,
                status,
                message,
            },
            _ => Self::UnexpectedStatus {
                endpoint,
                status,
                message,
            },
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::BadRequest { .. } => Some(400),
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::NotFound { .. } => Some(404),
            Self::PayloadTooLarge { .. } => Some(413),
            Self::RateLimited { .. } => Some(429),
            Self::Server { status, .. } | Self::UnexpectedStatus { status, .. } => Some(*status),
            Self::Transport { .. } | Self::Decode { .. } | Self::Config(_) => None,
        }
    }

    /// Transient failures worth retrying: transport errors, 5xx and 429. Never other 4xx.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Transport { .. } | Self::Server { .. } | Self::RateLimited { .. }
        )
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// The token itself is the problem: calling again with it is pointless.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::Forbidden { .. })
    }

    /// A stable, low-cardinality name for metrics and status reasons.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::BadRequest { .. } => "bad_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::UnexpectedStatus { .. } => "unexpected_status",
            Self::Transport { .. } => "transport",
            Self::Decode { .. } => "decode",
            Self::Config(_) => "config",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_variants_and_back() {
        for status in [400, 401, 403, 404, 413, 429, 500, 502, 503, 418] {
            let err = ConnectError::from_status("get_item", status, "m".into(), None);
            assert_eq!(err.status(), Some(status), "{err}");
        }
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        let retryable: Vec<u16> = [400, 401, 403, 404, 413, 429, 500, 503, 418]
            .into_iter()
            .filter(|s| ConnectError::from_status("e", *s, String::new(), None).is_retryable())
            .collect();
        assert_eq!(retryable, vec![429, 500, 503]);
    }

    #[test]
    fn rate_limit_message_mentions_retry_after() {
        let err = ConnectError::from_status("list_items", 429, "slow down".into(), Some(Duration::from_secs(7)));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(
            err.to_string(),
            "Connect is rate limiting (list_items), retry after 7s: slow down"
        );
    }
}
