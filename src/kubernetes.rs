//! Small helpers over the Kubernetes API shared by the controllers, the leader election and
//! the wiring.

use std::fmt::Debug;
use std::time::Duration;

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use crate::annotations::LEGACY_FINALIZER;

/// How a watch that lost the apiserver tries again: after 0.1 s at first, then at most every
/// 1 s (2 s with jitter). kube's default (client-go's) grows to 30 s, which left drift repair
/// blind for up to 46 s after an apiserver restart; the few watches of one operator cost a
/// recovering apiserver little.
/// Waits until the watch behind `store` has listed its objects once. kube's
/// `Store::wait_until_ready` wakes only the last of several tasks waiting at once (they share
/// one oneshot receiver, which keeps one waker), so every waiter here checks on its own.
pub(crate) async fn until_ready<K>(store: &kube::runtime::reflector::Store<K>)
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    use futures::FutureExt;
    while store.wait_until_ready().now_or_never().is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn watch_backoff() -> impl kube::runtime::utils::Backoff {
    let retries = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter()
        .without_max_times();
    kube::runtime::utils::ResetTimerBackoff::new(
        kube::runtime::watcher::ExponentialBackoff::from(retries),
        Duration::from_secs(60),
    )
}

/// An `Api` over one namespace, or over all of them.
pub(crate) fn scoped_api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Removes the finalizer of 1Password's Go operator, which nothing would remove after a
/// migration, so that the object can be deleted. Used for OnePasswordItems, their Secrets
/// and annotated workloads.
pub(crate) async fn remove_legacy_finalizer<K>(api: &Api<K>, obj: &K) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + serde::de::DeserializeOwned,
{
    let finalizers = obj.finalizers();
    if !finalizers.iter().any(|f| f == LEGACY_FINALIZER) {
        return Ok(());
    }
    let remaining: Vec<&String> = finalizers.iter().filter(|f| *f != LEGACY_FINALIZER).collect();
    // resourceVersion makes the patch fail instead of dropping a finalizer added meanwhile.
    let patch = json!({ "metadata": { "finalizers": remaining, "resourceVersion": obj.resource_version() } });
    match api
        .patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            info!(kind = %K::kind(&()), name = %obj.name_any(), "removed the finalizer of 1Password's Go operator");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Asks the apiserver whether it takes `selector` as a label selector of OnePasswordItems
/// (one list of at most one object), so that a mistyped `--label-selector` stops the start
/// with the apiserver's reason instead of failing every watch. Other failures (the apiserver
/// not reachable yet) are left to the watches, which retry.
pub async fn check_label_selector(
    client: &kube::Client,
    namespace: Option<&str>,
    selector: &str,
) -> Result<(), String> {
    let items: Api<crate::crd::OnePasswordItem> = scoped_api(client, namespace);
    match items
        .list_metadata(&ListParams::default().labels(selector).limit(1))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 400 => Err(format!(
            "the apiserver refuses the label selector {selector:?}: {}",
            e.message
        )),
        _ => Ok(()),
    }
}
