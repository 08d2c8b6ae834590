//! Every label, annotation, tag and finalizer name the operator reads or writes, in one
//! place. The `operator.1password.io/*` names are those of 1Password's Go operator.

/// Label on every Secret we manage; the Secret watch selects on it, so memory does not grow
/// with the cluster's other Secrets.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "onepassword-operator";

/// The label selector of what we manage: Secrets, and the OnePasswordItems of annotated
/// workloads.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")
}

/// The prefix of every annotation of 1Password's Go operator, and of ours.
pub const OPERATOR_PREFIX: &str = "operator.1password.io";

/// On a Secret: the resolved `vaults/<vaultId>/items/<itemId>`. On a workload: the item to sync.
pub const ITEM_PATH: &str = "operator.1password.io/item-path";
/// On a workload: the name of the Secret to create from `item-path`.
pub const ITEM_NAME: &str = "operator.1password.io/item-name";
/// On a Secret: the item `version` it holds, as a decimal string.
pub const ITEM_VERSION: &str = "operator.1password.io/item-version";
/// On a Secret: our keyed digest of its data ([`crate::controller::DigestKey`]), so that a
/// restarted operator trusts it without reading the item again.
pub const DATA_DIGEST: &str = "operator.1password.io/data-digest";
/// `"true"`/`"false"` on a OnePasswordItem (copied to its Secret), Secret, workload or Namespace.
pub const AUTO_RESTART: &str = "operator.1password.io/auto-restart";
/// On an annotated workload: the connection its item is read through, `<name>` (a
/// OnePasswordConnect of its namespace) or `ClusterOnePasswordConnect/<name>`.
pub const CONNECT: &str = "operator.1password.io/connect";
/// Written on a restarted workload's pod template.
pub const LAST_RESTARTED: &str = "operator.1password.io/last-restarted";
/// On an existing Secret that no OnePasswordItem owns: `"true"` lets the OnePasswordItem of
/// the same name adopt (and overwrite) it. On the Secret, not the OnePasswordItem, so only
/// someone who may already write that Secret can hand it over.
pub const ALLOW_ADOPTION: &str = "operator.1password.io/allow-adoption";

/// Item tag that freezes the Secret's data while present.
pub const IGNORE_SECRET_TAG: &str = "operator.1password.io:ignore-secret";

/// Finalizer of 1Password's Go operator. We use none (an operator that is down must not
/// block namespace deletion), and remove this one from objects it left behind.
pub const LEGACY_FINALIZER: &str = "onepassword.com/finalizer.secret";

/// Where `kubectl apply` keeps the whole manifest it applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "onepassword-operator";
