//! Apply: ownership checks, drift detection and the write itself.
//!
//! The Secret is read only when the watch says it may have changed since our last write
//! ([`super::known`]); one the watch does not know is created with a plain create, and read
//! only if that finds it there. A Secret is written only when it differs from the desired
//! one, so a steady state costs no write. Labels and annotations that the resource no longer
//! asks for are taken away, but only those we set ([`super::managed_fields`]). Server-side
//! apply (one field manager, forced) sets what we own; keys somebody added by hand belong to
//! their manager and survive an apply, so they are removed with a second patch. A Secret's type cannot change in place: it is deleted (with uid and
//! resourceVersion preconditions) and created again, but only after a server-side dry run
//! has shown that the apiserver accepts the new Secret, and the old one is put back if the
//! create fails all the same: a type change never leaves the workload without its Secret.

use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Map, Value};

use super::Context;
use super::build::{BuiltSecret, effective_type};
use super::error::Error;
use super::known::{self, Freshness};
use super::managed_fields::{dropped_metadata, folded_into_apply};
use super::outcome::Write;
use crate::annotations::{
    ALLOW_ADOPTION, DATA_DIGEST, FIELD_MANAGER, ITEM_VERSION, LEGACY_FINALIZER, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::crd::{KIND, OnePasswordItem};
use crate::kubernetes::remove_legacy_finalizer;
use crate::restart::ChangedSecret;

/// The apply step: reads the Secret only when it may have changed, then writes it unless it
/// belongs to somebody else or an item is frozen. `version` is the primary item's, `frozen`
/// whether any referenced item has the ignore tag, `items_moved` whether any has another
/// version than the Secret was last written with. Returns what was done and the primary
/// item version the Secret holds.
pub(crate) async fn apply(
    ctx: &Context,
    opi: &OnePasswordItem,
    built: &BuiltSecret,
    version: u64,
    frozen: bool,
    items_moved: bool,
) -> Result<(Write, u64), Error> {
    let (namespace, name) = (opi.namespace().unwrap_or_default(), opi.name_any());
    let desired = known::Desired::of(&built.secret);
    // A frozen Secret is judged by what it holds now, so it is always read.
    let mut freshness = if frozen {
        Freshness::Latest
    } else {
        ctx.known.freshness(&namespace, &name, &desired)
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Freshness::ValuesChanged {
        resource_version,
        item_moved,
    } = freshness
    {
        if item_moved || items_moved {
            // New item data for a Secret as we left it (a rotation): only the values of our
            // own keys change, so there is nothing to read, compare or remove first.
            let written = server_side_apply(&secrets, &built.secret, "update Secret").await?;
            ctx.known
                .record(&namespace, &name, written.metadata.resource_version, desired);
            item_data_changed(ctx, &namespace, name, built, version);
            return Ok((Write::Updated, version));
        }
        freshness = Freshness::NotOlderThan(resource_version);
    }
    // A Secret deleted by hand after a sync is put back: a repair, not a creation.
    let synced_before = opi.status.as_ref().is_some_and(|s| s.item_version == Some(version));
    // Something keeps changing the Secret: the repair waits.
    let delayed_repair = |repair: bool| {
        let wait = repair.then(|| ctx.repairs.wait_before_repair(&namespace, &name, Instant::now()))??;
        ctx.known.forget(&namespace, &name);
        Some((Write::RepairDelayed(wait), version))
    };
    if freshness == Freshness::NotOurs {
        // None of ours by that name: most likely no Secret at all, so it is created without
        // a read first. Only one that exists after all (somebody else's, or ours created so
        // recently that the watch has not seen it) is read, and judged as below.
        if let Some(delayed) = delayed_repair(synced_before) {
            return Ok(delayed);
        }
        if let Some(created) = create_secret(&secrets, &built.secret).await? {
            ctx.known
                .record(&namespace, &name, created.metadata.resource_version, desired);
            let write = if synced_before { Write::Repaired } else { Write::Created };
            return Ok((write, version));
        }
        freshness = Freshness::Latest;
    }
    let Some(read) = freshness.get_params() else {
        return Ok((Write::Unchanged, version));
    };
    let existing = match secrets.get_with(&name, &read).await {
        Ok(secret) => Some(secret),
        Err(kube::Error::Api(e)) if e.code == 404 => None,
        Err(e) => return Err(Error::kube("read Secret")(e)),
    };
    match &existing {
        Some(secret) if ownership(secret, opi, &name) == Ownership::Foreign => {
            ctx.known.forget(&namespace, &name);
            return Err(Error::SecretConflict { name });
        }
        Some(secret) if frozen => {
            ctx.known.forget(&namespace, &name);
            let held = secret
                .annotations()
                .get(ITEM_VERSION)
                .and_then(|v| v.parse().ok())
                .unwrap_or(version);
            return Ok((Write::Frozen, held));
        }
        _ => {}
    }
    let current = existing.as_ref().map(|s| {
        let difference = match difference(s, &built.secret) {
            // An item other than the first changed: its version is in status, not on the Secret.
            Difference::Drift if items_moved => Difference::Item,
            // What we want changed since our last write (the resource's labels, say): not
            // somebody else's change to undo.
            Difference::Drift if ctx.known.desired_changed(&namespace, &name, &desired) => Difference::Spec,
            difference => difference,
        };
        (s, difference)
    });
    let item_changed = current.is_some_and(|(_, d)| d == Difference::Item);
    let repair = match current {
        Some((_, difference)) => difference == Difference::Drift,
        None => synced_before,
    };
    if let Some(delayed) = delayed_repair(repair) {
        return Ok(delayed);
    }
    let applied = apply_secret(&secrets, current, &built.secret).await?;
    if let Some(existing) = &existing
        && existing.finalizers().iter().any(|f| f == LEGACY_FINALIZER)
    {
        // The apply moved its resourceVersion: patch the object as it is now.
        let mut current = existing.clone();
        current.metadata.resource_version = applied.resource_version.clone();
        remove_legacy_finalizer(&secrets, &current)
            .await
            .map_err(Error::kube("remove the Go operator's finalizer from the Secret"))?;
        ctx.known.forget(&namespace, &name);
    }
    ctx.known.record(&namespace, &name, applied.resource_version, desired);
    if applied.write == Write::Updated && item_changed {
        item_data_changed(ctx, &namespace, name, built, version);
    }
    let write = if applied.write == Write::Created && synced_before {
        Write::Repaired
    } else {
        applied.write
    };
    Ok((write, version))
}

/// New item data: workloads that use the Secret may need a restart.
fn item_data_changed(ctx: &Context, namespace: &str, name: String, built: &BuiltSecret, version: u64) {
    let annotations = built.secret.metadata.annotations.as_ref();
    ctx.restarter
        .secret_changed(namespace, ChangedSecret::new(name, annotations, version));
}

/// Who an existing Secret belongs to, seen from one OnePasswordItem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// Owned by this OnePasswordItem (by uid). Secrets made by 1Password's Go operator for
    /// this object qualify too.
    Ours,
    /// Made by us for an earlier OnePasswordItem of the same name, or handed over with the
    /// `allow-adoption` annotation.
    Adoptable,
    /// Anybody else's: never overwritten.
    Foreign,
}

pub(crate) fn ownership(existing: &Secret, owner: &OnePasswordItem, owner_name: &str) -> Ownership {
    let refs = existing.metadata.owner_references.as_deref().unwrap_or_default();
    let owner_uid = owner.metadata.uid.as_deref().unwrap_or_default();
    if refs.iter().any(|r| r.uid == owner_uid) {
        return Ownership::Ours;
    }
    // A Secret that 1Password's Go operator made for an annotated workload is owned by that
    // workload, which now owns the OnePasswordItem managing it.
    let grandparents: Vec<&str> = owner
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|r| r.uid.as_str())
        .collect();
    if refs.iter().any(|r| grandparents.contains(&r.uid.as_str())) {
        return Ownership::Adoptable;
    }
    let labels = existing.metadata.labels.as_ref();
    let ours_before = labels
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
        && refs.iter().any(|r| r.kind == KIND && r.name == owner_name);
    let handed_over = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ALLOW_ADOPTION))
        .is_some_and(|v| v == "true");
    if ours_before || handed_over {
        Ownership::Adoptable
    } else {
        Ownership::Foreign
    }
}

fn type_of(secret: &Secret) -> &str {
    effective_type(secret.type_.as_deref())
}

/// Data keys the existing Secret has and the desired one lacks.
pub(crate) fn extra_keys(existing: &Secret, desired: &Secret) -> Vec<String> {
    let desired_keys = desired.data.as_ref();
    existing
        .data
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| !desired_keys.is_some_and(|d| d.contains_key(*k)))
        .cloned()
        .collect()
}

/// Whether the existing Secret differs from the desired one in anything we set.
pub(crate) fn needs_write(existing: &Secret, desired: &Secret) -> bool {
    let empty = Default::default();
    let data_differs = existing.data.as_ref().unwrap_or(&empty) != desired.data.as_ref().unwrap_or(&empty);
    let subset = |want: &Option<std::collections::BTreeMap<String, String>>,
                  have: &Option<std::collections::BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let owner_missing = desired.metadata.owner_references.iter().flatten().any(|want| {
        !existing
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|have| have.uid == want.uid && have.controller == want.controller)
    });
    data_differs
        || type_of(existing) != type_of(desired)
        || !subset(&desired.metadata.labels, &existing.metadata.labels)
        || !subset(&desired.metadata.annotations, &existing.metadata.annotations)
        || owner_missing
        || !dropped_metadata(existing, desired).is_empty()
}

/// How an existing Secret differs from the desired one; computed once per apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Difference {
    /// Nothing we set differs: no write.
    None,
    /// Another type, which Kubernetes only changes by deleting and creating.
    Type,
    /// Another item version: the item changed.
    Item,
    /// Same item version, and what we want changed since our last write (the resource's
    /// labels or annotations).
    Spec,
    /// Only the digest differs: one written before digests, or with another key.
    Seal,
    /// Same item version and type, yet different: a change made outside the operator, which
    /// writing `desired` would undo (a repair).
    Drift,
}

pub(crate) fn difference(existing: &Secret, desired: &Secret) -> Difference {
    let version = |s: &Secret| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ITEM_VERSION))
            .cloned()
    };
    if type_of(existing) != type_of(desired) {
        Difference::Type
    } else if !needs_write(existing, desired) {
        Difference::None
    } else if version(existing) == version(desired) {
        if !needs_write(existing, &with_digest_of(desired, existing)) {
            Difference::Seal
        } else {
            Difference::Drift
        }
    } else {
        Difference::Item
    }
}

/// `desired` with the digest `existing` has, or none if it has none.
pub(crate) fn with_digest_of(desired: &Secret, existing: &Secret) -> Secret {
    let mut secret = desired.clone();
    let annotations = secret.metadata.annotations.get_or_insert_default();
    match existing.annotations().get(DATA_DIGEST) {
        Some(digest) => annotations.insert(DATA_DIGEST.to_owned(), digest.clone()),
        None => annotations.remove(DATA_DIGEST),
    };
    secret
}

/// What an apply did, and the `resourceVersion` the Secret has afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    pub write: Write,
    pub resource_version: Option<String>,
}

impl Applied {
    fn new(write: Write, secret: &Secret) -> Self {
        Self {
            write,
            resource_version: secret.metadata.resource_version.clone(),
        }
    }
}

/// Brings the Secret to the desired state; `existing` is what the API server has now and
/// how it differs.
async fn apply_secret(
    api: &Api<Secret>,
    existing: Option<(&Secret, Difference)>,
    desired: &Secret,
) -> Result<Applied, Error> {
    let name = desired.metadata.name.as_deref().expect("desired Secrets have a name");
    let Some((existing, difference)) = existing else {
        let created = server_side_apply(api, desired, "create Secret").await?;
        return Ok(Applied::new(Write::Created, &created));
    };
    match difference {
        Difference::Type => return recreate(api, existing, desired).await,
        Difference::None => return Ok(Applied::new(Write::Unchanged, existing)),
        Difference::Item | Difference::Spec | Difference::Drift | Difference::Seal => {}
    }
    if !dropped_metadata(existing, desired).is_empty()
        && let Some(fields) = folded_into_apply(existing)
    {
        // Our create's entry owns labels the apply must remove: make them the apply's.
        let patch = serde_json::json!({ "metadata": {
            "resourceVersion": existing.metadata.resource_version,
            "managedFields": fields,
        } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("take over the Secret's fields from its create"))?;
    }
    let mut written = server_side_apply(api, desired, "update Secret").await?;
    let extra = extra_keys(existing, desired);
    if !extra.is_empty() {
        let removals: Map<String, Value> = extra.into_iter().map(|k| (k, Value::Null)).collect();
        let patch = serde_json::json!({ "data": removals });
        written = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("remove extra keys from Secret"))?;
    }
    let write = match difference {
        Difference::Drift => Write::Repaired,
        Difference::Seal => Write::Sealed,
        _ => Write::Updated,
    };
    Ok(Applied::new(write, &written))
}

/// Sets what we own of the Secret to `desired` (one field manager, forced).
async fn server_side_apply(api: &Api<Secret>, desired: &Secret, action: &'static str) -> Result<Secret, Error> {
    let name = desired.metadata.name.as_deref().expect("desired Secrets have a name");
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(desired))
        .await
        .map_err(write_error(action, desired))
}

/// Creates the Secret with a plain create, which fails on an existing one: `None` then.
async fn create_secret(api: &Api<Secret>, desired: &Secret) -> Result<Option<Secret>, Error> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.create(&params, desired).await {
        Ok(created) => Ok(Some(created)),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(write_error("create Secret", desired)(e)),
    }
}

/// A 422 means the apiserver refuses this Secret (say `kubernetes.io/tls` without
/// `tls.crt`): a problem of the resource, reported as such. Anything else is a failed call.
fn write_error(action: &'static str, desired: &Secret) -> impl FnOnce(kube::Error) -> Error {
    let secret_type = type_of(desired).to_owned();
    move |source| match source {
        kube::Error::Api(e) if e.code == 422 => Error::SecretRejected {
            secret_type,
            message: e.message,
        },
        source => Error::Kube { action, source },
    }
}

/// Changes a Secret's type, which Kubernetes only allows by deleting and creating it.
async fn recreate(api: &Api<Secret>, existing: &Secret, desired: &Secret) -> Result<Applied, Error> {
    let name = desired.metadata.name.as_deref().expect("desired Secrets have a name");
    // Would the apiserver take the new Secret? Asked without touching the old one: a dry-run
    // create under a generated name, so that the existing name cannot conflict.
    let mut probe = desired.clone();
    probe.metadata.name = None;
    probe.metadata.generate_name = Some(format!("{}-", &name[..name.len().min(200)]));
    api.create(
        &PostParams {
            dry_run: true,
            ..PostParams::default()
        },
        &probe,
    )
    .await
    .map_err(write_error("check the Secret with its new type", desired))?;

    let preconditions = Preconditions {
        uid: existing.metadata.uid.clone(),
        resource_version: existing.metadata.resource_version.clone(),
    };
    let params_delete = DeleteParams {
        preconditions: Some(preconditions),
        ..DeleteParams::default()
    };
    api.delete(name, &params_delete)
        .await
        .map_err(Error::kube("delete Secret to change its type"))?;
    match server_side_apply(api, desired, "create Secret with its new type").await {
        Ok(created) => Ok(Applied::new(Write::Recreated, &created)),
        Err(failure) => {
            // Put the old Secret back, as it was, before reporting the failure.
            let mut old = existing.clone();
            let meta = &mut old.metadata;
            (
                meta.uid,
                meta.resource_version,
                meta.creation_timestamp,
                meta.managed_fields,
            ) = (None, None, None, None);
            if let Err(restore) = api.create(&PostParams::default(), &old).await {
                tracing::error!(secret = %name, error = %restore, "cannot restore the Secret after a failed type change");
            }
            Err(failure)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use std::collections::BTreeMap;

    fn owner(uid: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: "onepassword.com/v1".into(),
            kind: KIND.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn secret(data: &[(&str, &str)], owners: Vec<OwnerReference>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                owner_references: Some(owners),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY_LABEL.to_string(),
                    MANAGED_BY_VALUE.to_string(),
                )])),
                annotations: Some(BTreeMap::from([(ITEM_VERSION.to_string(), "1".to_string())])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn item(uid: &str, owners: Vec<OwnerReference>) -> OnePasswordItem {
        let mut opi = OnePasswordItem::default();
        opi.metadata.uid = Some(uid.into());
        opi.metadata.owner_references = Some(owners);
        opi
    }

    #[test]
    fn a_secret_the_go_operator_made_for_the_same_workload_is_adoptable() {
        let deployment = OwnerReference {
            kind: "Deployment".into(),
            name: "app".into(),
            ..owner("dep-1", "app")
        };
        let mut made_by_go = secret(&[], vec![deployment.clone()]);
        made_by_go.metadata.labels = None;
        assert_eq!(
            ownership(&made_by_go, &item("uid-3", vec![deployment]), "db"),
            Ownership::Adoptable
        );
        assert_eq!(ownership(&made_by_go, &item("uid-3", vec![]), "db"), Ownership::Foreign);
    }

    #[test]
    fn ownership_by_uid_previous_incarnation_or_hand_over() {
        let ours = secret(&[], vec![owner("uid-1", "db")]);
        assert_eq!(ownership(&ours, &item("uid-1", vec![]), "db"), Ownership::Ours);
        assert_eq!(
            ownership(&ours, &item("uid-2", vec![]), "db"),
            Ownership::Adoptable,
            "a recreated OnePasswordItem of the same name"
        );
        assert_eq!(ownership(&ours, &item("uid-2", vec![]), "other"), Ownership::Foreign);

        let mut foreign = secret(&[], vec![]);
        foreign.metadata.labels = None;
        assert_eq!(ownership(&foreign, &item("uid-1", vec![]), "db"), Ownership::Foreign);
        let mut labelled_only = secret(&[], vec![]);
        labelled_only.metadata.owner_references = None;
        assert_eq!(
            ownership(&labelled_only, &item("uid-1", vec![]), "db"),
            Ownership::Foreign,
            "our label alone proves nothing"
        );
        foreign.metadata.annotations = Some(BTreeMap::from([(ALLOW_ADOPTION.to_string(), "true".to_string())]));
        assert_eq!(ownership(&foreign, &item("uid-1", vec![]), "db"), Ownership::Adoptable);
    }

    #[test]
    fn identical_secrets_need_no_write() {
        let desired = secret(&[("password", "pw")], vec![owner("u", "db")]);
        let mut existing = desired.clone();
        existing.metadata.resource_version = Some("42".into());
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("added-by-someone".into(), "x".into());
        assert!(!needs_write(&existing, &desired), "other metadata is not ours to judge");
    }

    #[test]
    fn drift_is_detected() {
        let desired = secret(&[("password", "pw")], vec![owner("u", "db")]);
        let edited = secret(&[("password", "hacked")], vec![owner("u", "db")]);
        assert!(needs_write(&edited, &desired));
        let extra = secret(&[("password", "pw"), ("extra", "x")], vec![owner("u", "db")]);
        assert!(needs_write(&extra, &desired));
        assert_eq!(extra_keys(&extra, &desired), ["extra"]);
        let mut retyped = desired.clone();
        retyped.type_ = Some("kubernetes.io/basic-auth".into());
        assert!(needs_write(&retyped, &desired));
        let mut unowned = desired.clone();
        unowned.metadata.owner_references = Some(vec![]);
        assert!(needs_write(&unowned, &desired));
        let mut unannotated = desired.clone();
        unannotated.metadata.annotations = None;
        assert!(needs_write(&unannotated, &desired));
        let mut empty_type = desired.clone();
        empty_type.type_ = None;
        assert!(!needs_write(&empty_type, &desired), "no type means Opaque");
    }

    #[test]
    fn a_missing_or_foreign_digest_alone_is_a_seal_not_drift() {
        let with_digest = |secret: &mut Secret, digest: &str| {
            secret
                .metadata
                .annotations
                .get_or_insert_default()
                .insert(DATA_DIGEST.into(), digest.into());
        };
        let mut desired = secret(&[("password", "pw")], vec![owner("u", "db")]);
        with_digest(&mut desired, "hmac-sha256:new");
        let before_digests = secret(&[("password", "pw")], vec![owner("u", "db")]);
        assert_eq!(difference(&before_digests, &desired), Difference::Seal);
        let mut other_key = before_digests.clone();
        with_digest(&mut other_key, "hmac-sha256:old");
        assert_eq!(difference(&other_key, &desired), Difference::Seal);
        let mut edited = secret(&[("password", "hacked")], vec![owner("u", "db")]);
        with_digest(&mut edited, "hmac-sha256:old");
        assert_eq!(difference(&edited, &desired), Difference::Drift);
        assert_eq!(difference(&desired.clone(), &desired), Difference::None);
    }

    #[test]
    fn a_difference_is_drift_only_at_the_same_item_version_and_type() {
        let desired = secret(&[("password", "pw")], vec![owner("u", "db")]);
        assert_eq!(difference(&desired.clone(), &desired), Difference::None);
        let edited = secret(&[("password", "hacked")], vec![owner("u", "db")]);
        assert_eq!(difference(&edited, &desired), Difference::Drift);
        let mut older = secret(&[("password", "old")], vec![owner("u", "db")]);
        older.metadata.annotations = Some(BTreeMap::from([(ITEM_VERSION.to_string(), "0".to_string())]));
        assert_eq!(difference(&older, &desired), Difference::Item);
        let mut retyped = desired.clone();
        retyped.type_ = Some("kubernetes.io/basic-auth".into());
        assert_eq!(difference(&retyped, &desired), Difference::Type);
    }
}
