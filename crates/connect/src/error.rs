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
    /// 408: the server's sync with 1Password is not ready yet (`OP_SYNC_TIMEOUT`).
    #[error("Connect is not ready yet ({endpoint}): {message}")]
    NotReady { endpoint: &'static str, message: String },
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
    /// The body did not match the API schema. `detail` says where, never what: serde's own
    /// message would quote the offending value, which may be a secret.
    #[error("cannot decode the Connect response ({endpoint}): {detail}")]
    Decode { endpoint: &'static str, detail: String },
    /// An answer, or what it announces, is larger than the client accepts: read no further.
    #[error("Connect's answer is too large ({endpoint}): {detail}")]
    TooLarge { endpoint: &'static str, detail: String },
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
            408 => Self::NotReady { endpoint, message },
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
            Self::NotReady { .. } => Some(408),
            Self::PayloadTooLarge { .. } => Some(413),
            Self::RateLimited { .. } => Some(429),
            Self::Server { status, .. } | Self::UnexpectedStatus { status, .. } => Some(*status),
            Self::Transport { .. } | Self::Decode { .. } | Self::TooLarge { .. } | Self::Config(_) => None,
        }
    }

    /// Transient failures worth retrying: transport errors, 5xx, 408 and 429. Never other
    /// 4xx (401 and 403 get a few quick retries of their own in the client).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Transport { .. } | Self::Server { .. } | Self::NotReady { .. } | Self::RateLimited { .. }
        )
    }

    /// A failure that says nothing about the item: Connect is down, slow, not ready or
    /// rate limiting.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Transport { .. } | Self::Server { .. } | Self::NotReady { .. }
        )
    }

    /// Where a body failed to decode, without any of its content.
    pub fn decode(endpoint: &'static str, error: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let what = match error.classify() {
            Category::Io => "the body could not be read",
            Category::Syntax => "the body is not valid JSON",
            Category::Data => "a value has the wrong type or shape for the API schema",
            Category::Eof => "the body ends too early",
        };
        Self::Decode {
            endpoint,
            detail: format!("{what} (line {}, column {})", error.line(), error.column()),
        }
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

    /// Connect cannot be reached, is not ready, limits the rate, or refuses the token: says
    /// nothing about the item, whose Secret stays as it is.
    pub fn is_connection_problem(&self) -> bool {
        self.is_unavailable() || self.is_auth_failure() || matches!(self, Self::RateLimited { .. })
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
            Self::NotReady { .. } => "not_ready",
            Self::BadRequest { .. } => "bad_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::UnexpectedStatus { .. } => "unexpected_status",
            Self::Transport { .. } => "transport",
            Self::Decode { .. } => "decode",
            Self::TooLarge { .. } => "too_large",
            Self::Config(_) => "config",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_variants_and_back() {
        for status in [400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 418] {
            let err = ConnectError::from_status("get_item", status, "m".into(), None);
            assert_eq!(err.status(), Some(status), "{err}");
        }
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        let retryable: Vec<u16> = [400, 401, 403, 404, 408, 413, 429, 500, 503, 418]
            .into_iter()
            .filter(|s| ConnectError::from_status("e", *s, String::new(), None).is_retryable())
            .collect();
        assert_eq!(
            retryable,
            vec![408, 429, 500, 503],
            "408: Connect's sync is not ready yet"
        );
    }

    #[test]
    fn decode_errors_say_where_but_never_what() {
        let body = br#"{"id":"x","title":"t","version":1,"fields":[{"id":"f","value":31415926535897}]}"#;
        let error = serde_json::from_slice::<crate::models::FullItem>(body).unwrap_err();
        assert!(error.to_string().contains("31415926535897"), "serde quotes the value");
        let ours = ConnectError::decode("get_item", &error);
        let shown = std::iter::successors(Some(&ours as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        assert!(!shown.contains("31415926535897"), "{shown}");
        assert!(shown.contains("wrong type") && shown.contains("line 1"), "{shown}");
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
