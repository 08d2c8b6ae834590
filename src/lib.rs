#![warn(unreachable_pub)]
//! onepassword-operator: keeps Kubernetes Secrets in sync with 1Password items read
//! through a 1Password Connect server. Where each concern lives:
//!
//! - [`connect`]: the Connect API client (models, errors, filters, resolution); the
//!   `onepassword-connect` crate, which knows nothing of Kubernetes.
//! - [`crd`]: the `OnePasswordItem` custom resource, its CRD and its condition types.
//! - [`controller`]: the OnePasswordItem controller, one file per step
//!   (resolve → fetch → build → apply → status) and its [`controller::Context`].
//! - [`wiring`]: builds the watches, controllers, poller and restarter and runs them.
//! - `poller`: O(vaults) change detection that triggers the controller, one per connection;
//!   `resync`: every resource reconciled once per resync interval anyway, spread over it.
//! - [`connections`] (in the controller): several Connect servers and tokens: the `OnePasswordConnect` and
//!   `ClusterOnePasswordConnect` resources, and the connection each resource uses.
//! - `annotated_workloads`: Secrets for workloads annotated with `item-path` and `item-name`.
//! - `restart`: restarts of workloads whose Secret data changed; `workload_kind`: the one
//!   trait for Deployments, StatefulSets and DaemonSets.
//! - `events`, [`metrics`], [`server`] (`/healthz`, `/readyz`, `/metrics`), [`leader`]
//!   (leader election through a Lease), `kubernetes` (small API helpers).
//! - [`annotations`]: every label, annotation and finalizer name; `names`: Secret names.
//! - [`cli`], [`check`], [`render`], [`telemetry`]: command-line settings, `connect-check`,
//!   `render -f` (the Secret a manifest would make), logging.

mod annotated_workloads;
pub mod annotations;
pub mod check;
pub mod cli;
/// The Connect API client, its own crate (`crates/connect`).
pub use onepassword_connect as connect;
pub mod controller;
/// The connection resources and the connection each OnePasswordItem uses; part of the
/// controller.
pub use controller::connections;
pub mod crd;
mod events;
mod kubernetes;
pub mod leader;
pub mod metrics;
mod names;
mod poller;
pub mod render;
mod restart;
mod resync;
pub mod server;
pub mod telemetry;
pub mod wiring;

/// Changes to Secrets closer together than this cause one restart of their workloads.
pub use kubernetes::check_label_selector;
pub use restart::DEBOUNCE as RESTART_DEBOUNCE;
mod workload_kind;

/// An error and its sources, joined with `: ` — what a person needs to see the cause
/// (`cannot reach Connect: … : Connection refused`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some libraries repeat their source's text in their own; keep each part once.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `text` cut to at most `max_bytes`, on a character boundary, ending in `…` when it was cut.
pub fn truncate_utf8(mut text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// Every CRD of the operator: `OnePasswordItem`, `OnePasswordConnect` and
/// `ClusterOnePasswordConnect` (the source of `crds/` and of the chart's CRD templates).
pub fn all_crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![
        crd::crd(),
        connections::resource::OnePasswordConnect::crd(),
        connections::resource::ClusterOnePasswordConnect::crd(),
    ]
}

/// The CRD named `name` (`onepassworditems.onepassword.com`, or its plural alone).
pub fn crd_named(
    name: &str,
) -> Option<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    all_crds().into_iter().find(|c| {
        let full = c.metadata.name.as_deref().unwrap_or_default();
        full == name || c.spec.names.plural == name
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncation_keeps_short_text_and_cuts_long_text_within_the_limit() {
        assert_eq!(super::truncate_utf8("abc".into(), 3), "abc");
        assert_eq!(super::truncate_utf8("abcdef".into(), 5), "ab…");
        let cut = super::truncate_utf8("é".repeat(10), 9);
        assert!(cut.len() <= 9 && cut.ends_with('…'), "{cut}");
    }
}
