//! Our Secrets as the owned-Secret watch shows them: the `resourceVersion` of each, by
//! namespace and name, and nothing else.
//!
//! A reflector store would keep each Secret's whole `ObjectMeta` (about 1 KB with its
//! strings and owner references); at 10,000 Secrets that was 9 MB of a 56 MB heap for one
//! string per Secret. The index follows the watch's events as a store does: a listing
//! (`Init` … `InitDone`) replaces what was known at once, `Apply` and `Delete` change one
//! Secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::PartialObjectMeta;
use kube::runtime::watcher::Event;
use tokio::sync::watch;

/// One watch's Secrets; clones share the index.
#[derive(Clone)]
pub(crate) struct WatchedSecrets {
    versions: Arc<Mutex<Versions>>,
    listed: watch::Sender<bool>,
}

#[derive(Default)]
struct Versions {
    /// `namespace/name` → `resourceVersion` (neither a namespace nor a name holds a `/`).
    current: HashMap<Box<str>, Box<str>>,
    /// A listing being received, which replaces `current` once complete.
    listing: Option<HashMap<Box<str>, Box<str>>>,
}

impl Default for WatchedSecrets {
    fn default() -> Self {
        Self {
            versions: Arc::default(),
            listed: watch::Sender::new(false),
        }
    }
}

/// The key of a Secret in the controller's indexes: `namespace/name`.
pub(crate) fn key(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}/{name}").into_boxed_str()
}

fn entry(secret: &PartialObjectMeta<Secret>) -> (Box<str>, Box<str>) {
    let namespace = secret.metadata.namespace.as_deref().unwrap_or_default();
    let version = secret.metadata.resource_version.as_deref().unwrap_or_default();
    (key(namespace, &secret.name_any()), version.into())
}

impl WatchedSecrets {
    /// Follows one event of the watch.
    pub(crate) fn apply(&self, event: &Event<PartialObjectMeta<Secret>>) {
        let mut versions = self.versions.lock().expect("watched secrets lock");
        match event {
            Event::Init => versions.listing = Some(HashMap::new()),
            Event::InitApply(secret) => {
                let (key, version) = entry(secret);
                versions.listing.get_or_insert_default().insert(key, version);
            }
            Event::InitDone => {
                let mut listed = versions.listing.take().unwrap_or_default();
                listed.shrink_to_fit();
                versions.current = listed;
                drop(versions);
                self.listed.send_replace(true);
            }
            Event::Apply(secret) => {
                let (key, version) = entry(secret);
                versions.current.insert(key, version);
            }
            Event::Delete(secret) => {
                versions.current.remove(&entry(secret).0);
            }
        }
    }

    /// The Secret's `resourceVersion`, when the watch shows it.
    pub(crate) fn version(&self, namespace: &str, name: &str) -> Option<String> {
        let versions = self.versions.lock().expect("watched secrets lock");
        versions.current.get(&key(namespace, name)).map(|v| v.to_string())
    }

    /// Returns once the watch has listed its Secrets once.
    pub(crate) async fn until_listed(&self) {
        let mut listed = self.listed.subscribe();
        // The sender lives in `self`: the wait ends only with the value.
        let _ = listed.wait_for(|listed| *listed).await;
    }
}

/// The Secrets of a watch that has listed `secrets` (name, version), all in namespace `ns`.
#[cfg(test)]
pub(crate) fn listed(secrets: &[(&str, &str)]) -> WatchedSecrets {
    let watched = WatchedSecrets::default();
    tests::relist(&watched, secrets);
    watched
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn secret(name: &str, version: &str) -> PartialObjectMeta<Secret> {
        let mut secret = PartialObjectMeta::<Secret>::default();
        secret.metadata.name = Some(name.into());
        secret.metadata.namespace = Some("ns".into());
        secret.metadata.resource_version = Some(version.into());
        secret
    }

    pub(super) fn relist(watched: &WatchedSecrets, secrets: &[(&str, &str)]) {
        watched.apply(&Event::Init);
        for (name, version) in secrets {
            watched.apply(&Event::InitApply(secret(name, version)));
        }
        watched.apply(&Event::InitDone);
    }

    #[test]
    fn changes_and_deletions_follow_the_watch() {
        let watched = listed(&[("a", "1")]);
        assert_eq!(watched.version("ns", "a").as_deref(), Some("1"));
        assert_eq!(watched.version("other", "a"), None, "by namespace too");
        watched.apply(&Event::Apply(secret("a", "2")));
        watched.apply(&Event::Apply(secret("b", "3")));
        assert_eq!(watched.version("ns", "a").as_deref(), Some("2"));
        assert_eq!(watched.version("ns", "b").as_deref(), Some("3"));
        watched.apply(&Event::Delete(secret("a", "2")));
        assert_eq!(watched.version("ns", "a"), None);
    }

    #[test]
    fn a_listing_replaces_what_was_known_once_complete() {
        let watched = listed(&[("a", "1"), ("b", "1")]);
        watched.apply(&Event::Init);
        watched.apply(&Event::InitApply(secret("a", "4")));
        assert_eq!(
            watched.version("ns", "b").as_deref(),
            Some("1"),
            "until the listing is complete, the last one holds"
        );
        watched.apply(&Event::InitDone);
        assert_eq!(watched.version("ns", "a").as_deref(), Some("4"));
        assert_eq!(watched.version("ns", "b"), None, "deleted while the watch was down");
    }

    #[test]
    fn listed_once_the_first_listing_is_complete() {
        let watched = WatchedSecrets::default();
        assert!(watched.until_listed().now_or_never().is_none());
        watched.apply(&Event::Init);
        watched.apply(&Event::InitApply(secret("a", "1")));
        assert!(watched.until_listed().now_or_never().is_none());
        watched.apply(&Event::InitDone);
        assert!(watched.until_listed().now_or_never().is_some());
        watched.apply(&Event::Init);
        assert!(
            watched.clone().until_listed().now_or_never().is_some(),
            "a relisting watch has listed before"
        );
    }
}
