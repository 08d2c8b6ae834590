//! The connection resources (`onepassword.com/v1alpha1`): `OnePasswordConnect`, usable from
//! its own namespace, and `ClusterOnePasswordConnect`, usable from the namespaces its
//! `namespaceSelector` admits. Each names a Connect server and the Secret holding its token.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::crd::ConnectionReference;

pub const VERSION: &str = "v1alpha1";
pub const NAMESPACED_KIND: &str = "OnePasswordConnect";
pub const CLUSTER_KIND: &str = "ClusterOnePasswordConnect";

/// Reasons of a connection's `Ready` condition.
pub const CONNECTED: &str = "Connected";
pub const UNAUTHORIZED: &str = "Unauthorized";
pub const UNREACHABLE: &str = "Unreachable";
pub const INVALID_SPEC: &str = "InvalidSpec";

/// A Connect server for the OnePasswordItems of this namespace that name it in `connectRef`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "onepassword.com",
    version = "v1alpha1",
    kind = "OnePasswordConnect",
    namespaced,
    status = "ConnectionStatus",
    shortname = "opconnect",
    category = "onepassword",
    doc = "A 1Password Connect server and its token, for the OnePasswordItems of its own namespace that name it in spec.connectRef.",
    printcolumn = r#"{"name": "Host", "type": "string", "jsonPath": ".spec.host", "description": "The Connect server"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "description": "Whether Connect accepts the token"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason", "description": "Why, in one word"}"#,
    printcolumn = r#"{"name": "Vaults", "type": "integer", "jsonPath": ".status.vaults", "description": "Vaults the token can read"}"#,
    printcolumn = r#"{"name": "Token Expires", "type": "date", "jsonPath": ".status.tokenExpiresAt", "description": "When the token expires, if it says"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": "Time since creation"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct OnePasswordConnectSpec {
    /// The Connect server's URL, e.g. http://onepassword-connect:8080.
    #[schemars(length(min = 1, max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.startsWith('http://') || self.startsWith('https://')",
        "message": "host must be an http:// or https:// URL"
    }]))]
    pub host: String,
    /// The key of a Secret in this namespace that holds the Connect token.
    pub token_secret_ref: SecretKeyRef,
    /// The key of a Secret in this namespace that holds a PEM bundle of CAs to trust for an
    /// https host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_secret_ref: Option<SecretKeyRef>,
}

/// A Connect server for OnePasswordItems of the namespaces `namespaceSelector` admits.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "onepassword.com",
    version = "v1alpha1",
    kind = "ClusterOnePasswordConnect",
    status = "ConnectionStatus",
    shortname = "clusteropconnect",
    category = "onepassword",
    doc = "A 1Password Connect server and its token, for the OnePasswordItems that name it in spec.connectRef, in the namespaces its namespaceSelector admits.",
    printcolumn = r#"{"name": "Host", "type": "string", "jsonPath": ".spec.host", "description": "The Connect server"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "description": "Whether Connect accepts the token"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason", "description": "Why, in one word"}"#,
    printcolumn = r#"{"name": "Vaults", "type": "integer", "jsonPath": ".status.vaults", "description": "Vaults the token can read"}"#,
    printcolumn = r#"{"name": "Token Expires", "type": "date", "jsonPath": ".status.tokenExpiresAt", "description": "When the token expires, if it says"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": "Time since creation"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterOnePasswordConnectSpec {
    /// The Connect server's URL, e.g. http://onepassword-connect.onepassword.svc:8080.
    #[schemars(length(min = 1, max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.startsWith('http://') || self.startsWith('https://')",
        "message": "host must be an http:// or https:// URL"
    }]))]
    pub host: String,
    /// The key of a Secret that holds the Connect token.
    pub token_secret_ref: NamespacedSecretKeyRef,
    /// The key of a Secret that holds a PEM bundle of CAs to trust for an https host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_secret_ref: Option<NamespacedSecretKeyRef>,
    /// The namespaces whose OnePasswordItems may use this connection. Absent: none; `{}`:
    /// every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// A key of a Secret in the connection's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A key of a Secret in a given namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamespacedSecretKeyRef {
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// What the operator last found out about a connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// `Ready`: whether Connect answers and accepts the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The Connect server's version, as its `/health` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// How many vaults the token can read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vaults: Option<u32>,
    /// When the token expires, when it carries an expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl ConnectionStatus {
    pub fn ready(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == "Ready")
    }
}
