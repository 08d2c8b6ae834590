//! Why a reconcile failed. Each variant maps to a stable condition `reason` and metric
//! label. Messages name objects and Connect's own words, never a secret value.

use super::build::BuildError;
use super::references::ResolvedRef;
use crate::connect::ConnectError;
use crate::controller::connections::Unusable;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("itemPath {path:?} must look like vaults/<vault id or title>/items/<item id or title>")]
    InvalidItemPath { path: String },

    #[error("vault {vault:?} is not visible to the Connect token: {source}")]
    VaultNotFound { vault: String, source: ConnectError },

    #[error("item {item:?} was not found in vault {vault:?}: {source}")]
    ItemNotFound {
        vault: String,
        item: String,
        source: ConnectError,
    },

    #[error("{source}")]
    Connect {
        #[source]
        source: ConnectError,
    },

    #[error(
        "Secret {name:?} already exists and is not managed by this OnePasswordItem; it was left untouched (annotate the Secret with operator.1password.io/allow-adoption=\"true\" to let the operator take it over)"
    )]
    SecretConflict { name: String },

    #[error(
        "the Kubernetes API refuses the Secret with type {secret_type}; the existing Secret is kept as it is: {message}"
    )]
    SecretRejected { secret_type: String, message: String },

    /// The items were read, and no Secret can be made of them as the resource asks.
    /// `resolved` (each reference and the ids it resolved to) goes into status, so that a
    /// change of any of the items triggers a new attempt.
    #[error("{source}")]
    Build {
        resolved: Vec<ResolvedRef>,
        #[source]
        source: BuildError,
    },

    /// The connection the resource names cannot be used: nothing is read from Connect.
    #[error(transparent)]
    Connection(#[from] Unusable),

    #[error("Kubernetes API call failed ({action}): {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    pub(crate) fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Self {
        move |source| Self::Kube { action, source }
    }

    /// The condition reason: one CamelCase word.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::InvalidItemPath { .. } => "InvalidItemPath",
            Self::VaultNotFound { .. } => "VaultNotFound",
            Self::ItemNotFound { .. } => "ItemNotFound",
            Self::Connect { source } => match source {
                ConnectError::Unauthorized { .. } => "ConnectUnauthorized",
                ConnectError::Forbidden { .. } => "ConnectForbidden",
                ConnectError::RateLimited { .. } => "ConnectRateLimited",
                source if source.is_unavailable() => "ConnectUnavailable",
                ConnectError::TooLarge { .. } => "SecretTooLarge",
                _ => "ConnectError",
            },
            Self::SecretConflict { .. } => "SecretConflict",
            Self::SecretRejected { .. } => "SecretRejected",
            Self::Build { source, .. } => source.reason(),
            Self::Connection(unusable) => unusable.reason(),
            Self::Kube { .. } => "KubernetesError",
        }
    }

    /// A stable, low-cardinality label for metrics.
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidItemPath { .. } => "invalid_item_path",
            Self::VaultNotFound { .. } => "vault_not_found",
            Self::ItemNotFound { .. } => "item_not_found",
            Self::Connect { source } => source.metric_label(),
            Self::SecretConflict { .. } => "secret_conflict",
            Self::SecretRejected { .. } => "secret_rejected",
            Self::Build { source, .. } => source.metric_label(),
            Self::Connection(unusable) => unusable.metric_label(),
            Self::Kube { .. } => "kubernetes",
        }
    }

    /// Failures that only a person can fix: retrying soon would only burn API quota.
    pub(crate) fn needs_a_person(&self) -> bool {
        match self {
            Self::Connect { source } => source.is_auth_failure() || matches!(source, ConnectError::TooLarge { .. }),
            // A connection that appears, changes or turns ready reconciles its resources.
            Self::InvalidItemPath { .. } | Self::Build { .. } | Self::SecretRejected { .. } | Self::Connection(_) => {
                true
            }
            _ => false,
        }
    }

    /// Connect could not be reached or refused the request: nothing is known about the item,
    /// and the Secret keeps what it holds.
    pub(crate) fn is_connect_failure(&self) -> bool {
        matches!(self, Self::Connect { source } if source.is_connection_problem())
    }

    /// Connect answered, and the path names no vault or item the token can see.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::VaultNotFound { .. } | Self::ItemNotFound { .. })
    }

    /// The references (the primary first) of items that were read but make no Secret.
    pub(crate) fn resolved(&self) -> &[ResolvedRef] {
        match self {
            Self::Build { resolved, .. } => resolved,
            _ => &[],
        }
    }

    /// The server's `Retry-After`, when Connect sent one.
    pub(crate) fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Connect { source } => source.retry_after(),
            _ => None,
        }
    }

    /// The message for status and Events: this error and its causes.
    pub(crate) fn message(&self) -> String {
        crate::error_chain(self)
    }
}

impl From<ConnectError> for Error {
    fn from(source: ConnectError) -> Self {
        Self::Connect { source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(status: u16) -> Error {
        Error::from(ConnectError::from_status("get_item", status, "m".into(), None))
    }

    #[test]
    fn connect_failures_have_their_own_reasons() {
        assert_eq!(connect(401).reason(), "ConnectUnauthorized");
        assert_eq!(connect(403).reason(), "ConnectForbidden");
        assert_eq!(connect(429).reason(), "ConnectRateLimited");
        assert_eq!(connect(503).reason(), "ConnectUnavailable");
        assert_eq!(connect(400).reason(), "ConnectError");
        assert!(connect(401).needs_a_person() && connect(403).needs_a_person());
        assert!(!connect(503).needs_a_person());
        assert_eq!(connect(503).metric_label(), "server_error");
    }

    #[test]
    fn conflict_message_says_how_to_resolve_it() {
        let message = Error::SecretConflict { name: "db".into() }.message();
        assert!(message.contains("operator.1password.io/allow-adoption"), "{message}");
    }
}
