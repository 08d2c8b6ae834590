//! What the controller knows of the Secrets it manages, so that a reconcile reads a Secret
//! only when it may have changed.
//!
//! Two sources meet here. The owned-Secret watch (metadata only) says which of our Secrets
//! exist and at which `resourceVersion`. Our own writes say which desired Secret (by
//! fingerprint) a `resourceVersion` holds. When the watch shows a Secret still at the
//! version we left it and the desired Secret has the same fingerprint, the Secret is
//! current: no read, no write. Anything else (a hand edit, a deletion, a new item version,
//! a restart of the operator) falls back to reading the Secret.
//!
//! A Secret we have just written may not be in the watch yet (the OnePasswordItem's watch can
//! deliver our status write first, and its reconcile runs at once): for [`WATCH_LAG`] our own
//! write stands in for it, unless the watch has shown it deleted since.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::GetParams;

use super::watched_secrets::{WatchedSecrets, key};
use crate::annotations::{DATA_DIGEST, ITEM_VERSION};

/// How fresh a read of a Secret needs to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Untouched since we wrote or read it, and it matched this desired Secret then.
    Current,
    /// Untouched since we wrote it at `resource_version`, and the desired Secret differs only
    /// in values and our version annotations (same type, keys, labels, other annotations,
    /// owner): what it holds is known without a read. `item_moved`: the item version
    /// annotation differs.
    ValuesChanged { resource_version: String, item_moved: bool },
    /// The watch saw our Secret at this version: a read at least that new (served from the
    /// API server's cache) is enough.
    NotOlderThan(String),
    /// The watch has none of our Secrets by that name: any Secret there is somebody else's
    /// or was just deleted, so the API server's cache is enough.
    NotOurs,
    /// The watch has not listed yet: read from etcd.
    Latest,
}

impl Freshness {
    /// The read for this freshness; `None` when no read is needed.
    pub(crate) fn get_params(&self) -> Option<GetParams> {
        match self {
            Self::Current => None,
            Self::ValuesChanged { resource_version, .. } => Some(GetParams::at(resource_version)),
            Self::NotOlderThan(version) => Some(GetParams::at(version)),
            Self::NotOurs => Some(GetParams::any()),
            Self::Latest => Some(GetParams::default()),
        }
    }
}

/// What is known of a desired Secret: digests only compared within one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Desired {
    /// Everything we set.
    pub fingerprint: u64,
    /// Everything we set but the values and the annotations that change with them.
    shape: u64,
    /// The item version annotation.
    item_version: Option<u64>,
}

impl Desired {
    pub(crate) fn of(desired: &Secret) -> Self {
        let mut everything = DefaultHasher::new();
        let mut shape = DefaultHasher::new();
        for hasher in [&mut everything, &mut shape] {
            desired.type_.hash(hasher);
            desired.metadata.labels.hash(hasher);
            for owner in desired.metadata.owner_references.iter().flatten() {
                owner.uid.hash(hasher);
                owner.controller.hash(hasher);
            }
        }
        for (key, value) in desired.data.iter().flatten() {
            key.hash(&mut everything);
            value.0.hash(&mut everything);
            key.hash(&mut shape);
        }
        desired.metadata.annotations.hash(&mut everything);
        let annotations = desired.metadata.annotations.iter().flatten();
        for annotation in annotations.filter(|(k, _)| *k != ITEM_VERSION && *k != DATA_DIGEST) {
            annotation.hash(&mut shape);
        }
        Self {
            fingerprint: everything.finish(),
            shape: shape.finish(),
            item_version: desired.annotations().get(ITEM_VERSION).and_then(|v| v.parse().ok()),
        }
    }
}

/// How long our own write stands in for a Secret the watch does not show yet.
const WATCH_LAG: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Written {
    resource_version: Box<str>,
    desired: Desired,
    at: Instant,
}

#[derive(Default)]
pub(crate) struct KnownSecrets {
    /// The owned-Secret watches, one per watched scope; set once all have listed.
    watched: OnceLock<Vec<WatchedSecrets>>,
    /// By `namespace/name`.
    written: Mutex<HashMap<Box<str>, Written>>,
}

impl KnownSecrets {
    /// Hands over the watches once every one of them has listed.
    pub(crate) fn watch_ready(&self, watches: Vec<WatchedSecrets>) {
        let _ = self.watched.set(watches);
    }

    fn watched_version(&self, namespace: &str, name: &str) -> Option<Option<String>> {
        let watches = self.watched.get()?;
        Some(watches.iter().find_map(|watched| watched.version(namespace, name)))
    }

    /// How fresh a read of the Secret must be before it is compared with `desired`.
    pub(crate) fn freshness(&self, namespace: &str, name: &str, desired: &Desired) -> Freshness {
        let Some(watched) = self.watched_version(namespace, name) else {
            return Freshness::Latest;
        };
        let written = self.written.lock().expect("known secrets lock");
        let ours = written.get(&key(namespace, name));
        let Some(version) = watched.or_else(|| {
            // Written by us a moment ago; the watch will show it.
            ours.filter(|w| w.at.elapsed() < WATCH_LAG)
                .map(|w| w.resource_version.to_string())
        }) else {
            return Freshness::NotOurs;
        };
        match ours {
            Some(w) if *w.resource_version == *version && w.desired.fingerprint == desired.fingerprint => {
                Freshness::Current
            }
            Some(w) if *w.resource_version == *version && w.desired.shape == desired.shape => {
                Freshness::ValuesChanged {
                    resource_version: version,
                    item_moved: w.desired.item_version != desired.item_version,
                }
            }
            _ => Freshness::NotOlderThan(version),
        }
    }

    /// Records that the Secret at `resource_version` holds `desired`.
    pub(crate) fn record(&self, namespace: &str, name: &str, resource_version: Option<String>, desired: Desired) {
        self.record_at(namespace, name, resource_version, desired, Instant::now());
    }

    fn record_at(&self, namespace: &str, name: &str, resource_version: Option<String>, desired: Desired, at: Instant) {
        let Some(resource_version) = resource_version else {
            return self.forget(namespace, name);
        };
        self.written.lock().expect("known secrets lock").insert(
            key(namespace, name),
            Written {
                resource_version: resource_version.into_boxed_str(),
                desired,
                at,
            },
        );
    }

    /// Whether our last write of the Secret was of another desired Secret.
    pub(crate) fn desired_changed(&self, namespace: &str, name: &str, desired: &Desired) -> bool {
        let written = self.written.lock().expect("known secrets lock");
        written
            .get(&key(namespace, name))
            .is_some_and(|w| w.desired.fingerprint != desired.fingerprint)
    }

    pub(crate) fn forget(&self, namespace: &str, name: &str) {
        self.written
            .lock()
            .expect("known secrets lock")
            .remove(&key(namespace, name));
    }

    /// How many Secrets are known.
    pub(crate) fn len(&self) -> usize {
        self.written.lock().expect("known secrets lock").len()
    }

    /// Drops what is known of Secrets whose owner no longer exists.
    pub(crate) fn retain(&self, exists: impl Fn(&str, &str) -> bool) {
        self.written.lock().expect("known secrets lock").retain(|key, _| {
            let (namespace, name) = key.split_once('/').unwrap_or_default();
            exists(namespace, name)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::watched_secrets;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(password: &str) -> Secret {
        Secret {
            data: Some(BTreeMap::from([(
                "password".to_string(),
                ByteString(password.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    fn versioned(password: &str, version: &str) -> Secret {
        let mut secret = secret(password);
        secret.metadata.annotations = Some(BTreeMap::from([(ITEM_VERSION.to_string(), version.to_string())]));
        secret
    }

    /// Known Secrets once the watch has listed `secrets` (name, version) in `ns`.
    fn watching(secrets: &[(&str, &str)]) -> KnownSecrets {
        let known = KnownSecrets::default();
        known.watch_ready(vec![watched_secrets::listed(secrets)]);
        known
    }

    fn pw() -> Desired {
        Desired::of(&secret("pw"))
    }

    #[test]
    fn before_the_watch_lists_reads_are_from_etcd() {
        let known = KnownSecrets::default();
        known.record("ns", "db", Some("5".into()), pw());
        assert_eq!(known.freshness("ns", "db", &pw()), Freshness::Latest);
        assert_eq!(Freshness::Latest.get_params().unwrap().resource_version, None);
    }

    #[test]
    fn a_secret_just_written_needs_no_read_before_the_watch_shows_it() {
        let known = watching(&[]);
        known.record("ns", "db", Some("5".into()), pw());
        assert_eq!(known.freshness("ns", "db", &pw()), Freshness::Current);
        assert_eq!(
            known.freshness("ns", "db", &Desired::of(&secret("other"))),
            Freshness::ValuesChanged {
                resource_version: "5".into(),
                item_moved: false
            }
        );
    }

    #[test]
    fn a_secret_the_watch_showed_deleted_or_long_missing_is_not_ours() {
        let known = watching(&[]);
        known.record("ns", "db", Some("5".into()), pw());
        known.forget("ns", "db");
        assert_eq!(known.freshness("ns", "db", &pw()), Freshness::NotOurs, "deleted");
        let long_ago = Instant::now() - WATCH_LAG - Duration::from_secs(1);
        known.record_at("ns", "db", Some("5".into()), pw(), long_ago);
        assert_eq!(known.freshness("ns", "db", &pw()), Freshness::NotOurs, "missing");
    }

    #[test]
    fn a_secret_untouched_since_our_write_needs_no_read() {
        let known = watching(&[("db", "5")]);
        known.record("ns", "db", Some("5".into()), pw());
        assert_eq!(known.freshness("ns", "db", &pw()), Freshness::Current);
        assert_eq!(Freshness::Current.get_params(), None);
    }

    #[test]
    fn new_values_for_a_secret_untouched_since_our_write_need_no_read() {
        let known = watching(&[("db", "5")]);
        known.record("ns", "db", Some("5".into()), Desired::of(&versioned("pw", "1")));
        assert_eq!(
            known.freshness("ns", "db", &Desired::of(&versioned("rotated", "2"))),
            Freshness::ValuesChanged {
                resource_version: "5".into(),
                item_moved: true
            }
        );
        assert_eq!(
            known.freshness("ns", "db", &Desired::of(&versioned("rendered", "1"))),
            Freshness::ValuesChanged {
                resource_version: "5".into(),
                item_moved: false
            },
            "values changed by the resource (a template), not by the item"
        );
        let mut new_key = versioned("pw", "2");
        new_key
            .data
            .as_mut()
            .unwrap()
            .insert("token".into(), ByteString(b"t".to_vec()));
        assert_eq!(
            known.freshness("ns", "db", &Desired::of(&new_key)),
            Freshness::NotOlderThan("5".into()),
            "another key: what to remove is only known from a read"
        );
        let mut labelled = versioned("pw", "2");
        labelled.metadata.labels = Some(BTreeMap::from([("a".to_string(), "b".to_string())]));
        assert_eq!(
            known.freshness("ns", "db", &Desired::of(&labelled)),
            Freshness::NotOlderThan("5".into())
        );
    }

    #[test]
    fn a_hand_edit_or_new_item_data_means_a_read() {
        let known = watching(&[("db", "6")]);
        known.record("ns", "db", Some("5".into()), pw());
        assert_eq!(
            known.freshness("ns", "db", &pw()),
            Freshness::NotOlderThan("6".into()),
            "somebody wrote version 6"
        );
        assert_eq!(
            known.freshness("ns", "db", &Desired::of(&secret("new"))),
            Freshness::NotOlderThan("6".into()),
            "somebody wrote version 6, so new values are no shortcut"
        );
        assert_eq!(
            Freshness::NotOlderThan("6".into())
                .get_params()
                .unwrap()
                .resource_version
                .as_deref(),
            Some("6")
        );
    }

    #[test]
    fn a_secret_missing_from_the_watch_is_read_from_the_cache() {
        let known = watching(&[]);
        known.record("ns", "db", Some("5".into()), pw());
        // Deleted by hand: the watch's Delete event forgets our write.
        known.forget("ns", "db");
        assert_eq!(
            known.freshness("ns", "db", &pw()),
            Freshness::NotOurs,
            "deleted by hand"
        );
        assert_eq!(known.freshness("ns", "other", &pw()), Freshness::NotOurs);
        assert_eq!(
            Freshness::NotOurs.get_params().unwrap().resource_version.as_deref(),
            Some("0")
        );
    }

    #[test]
    fn forgetting_and_pruning() {
        let known = watching(&[("a", "1"), ("b", "1")]);
        known.record("ns", "a", Some("1".into()), pw());
        known.record("ns", "b", Some("1".into()), pw());
        assert_eq!(known.len(), 2);
        known.retain(|_, name| name == "a");
        assert_eq!(known.len(), 1);
        assert_eq!(known.freshness("ns", "a", &pw()), Freshness::Current);
        assert_eq!(known.freshness("ns", "b", &pw()), Freshness::NotOlderThan("1".into()));
        known.forget("ns", "a");
        assert_eq!(known.freshness("ns", "a", &pw()), Freshness::NotOlderThan("1".into()));
        known.record("ns", "a", Some("1".into()), pw());
        known.record("ns", "a", None, pw());
        assert_eq!(known.freshness("ns", "a", &pw()), Freshness::NotOlderThan("1".into()));
    }

    #[test]
    fn fingerprints_cover_what_we_set() {
        let base = secret("pw");
        let mut typed = base.clone();
        typed.type_ = Some("kubernetes.io/tls".into());
        let mut labelled = base.clone();
        labelled.metadata.labels = Some(BTreeMap::from([("a".to_string(), "b".to_string())]));
        let mut annotated = base.clone();
        annotated.metadata.annotations = Some(BTreeMap::from([("a".to_string(), "b".to_string())]));
        let mut other_status = base.clone();
        other_status.metadata.resource_version = Some("9".into());
        let all = [&typed, &labelled, &annotated, &secret("other")].map(|s| Desired::of(s).fingerprint);
        for f in all {
            assert_ne!(f, pw().fingerprint);
        }
        assert_eq!(Desired::of(&other_status), pw(), "not ours to set");
    }
}
