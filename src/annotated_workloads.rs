//! Annotated workloads, on by default as in 1Password's Go operator (which has no switch for
//! them): a Deployment, StatefulSet or DaemonSet with `operator.1password.io/item-path` and
//! `operator.1password.io/item-name` (on its metadata or its pod template) gets a Secret of
//! that name with the item's data. Like Go, the Secret carries the workload's `item-name`
//! (and `auto-restart`) annotations.
//!
//! Every workload also loses the finalizer that the Go operator put on annotated ones,
//! which nothing else would remove after a migration (the workload could not be deleted).
//!
//! The workload controller does it by managing a OnePasswordItem of the same name, owned by
//! the workload; the OnePasswordItem controller does the rest (status, change detection,
//! drift repair, restarts). The ownership chain workload → OnePasswordItem → Secret lets the
//! garbage collector clean up, and `kubectl get opi` shows why a Secret is missing. Removing
//! the annotations deletes the managed OnePasswordItem, so nothing is stranded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tracing::{debug, info, warn};

use crate::annotations::{
    AUTO_RESTART, CONNECT, FIELD_MANAGER, ITEM_NAME, ITEM_PATH, MANAGED_BY_LABEL, MANAGED_BY_VALUE, managed_selector,
};
use crate::controller::connections::resource::{CLUSTER_KIND, ConnectionReference, NAMESPACED_KIND};
use crate::controller::{Context, Error};
use crate::crd::{OnePasswordItem, OnePasswordItemSpec};
use crate::kubernetes::{remove_legacy_finalizer, scoped_api, watch_backoff};
use crate::names::sanitize_secret_name;
use crate::workload_kind::WorkloadKind;

/// What the annotations ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wanted {
    /// No `item-path`: manage nothing.
    Nothing,
    /// `item-path` without `item-name` (or with one that sanitizes to nothing).
    MissingName { item_path: String },
    Secret {
        item_path: String,
        secret_name: String,
        /// Annotations the Secret carries, as Go copies them: `item-name` as written, and
        /// `auto-restart` when set.
        annotations: BTreeMap<String, String>,
        /// From the `connect` annotation.
        connect_ref: Option<ConnectionReference>,
    },
}

/// `<name>`, `OnePasswordConnect/<name>` or `ClusterOnePasswordConnect/<name>`. Anything else
/// is taken as a name, which then names no connection, as the item's status says.
fn connection_reference(value: &str) -> ConnectionReference {
    let value = value.trim();
    let (kind, name) = match value.split_once('/') {
        Some((CLUSTER_KIND, name)) => (Some(CLUSTER_KIND.to_owned()), name),
        Some((NAMESPACED_KIND, name)) => (None, name),
        _ => (None, value),
    };
    ConnectionReference {
        kind,
        name: name.to_owned(),
    }
}

/// Reads the annotations, from the workload's metadata first, then its pod template (as Go).
fn wanted(metadata: Option<&BTreeMap<String, String>>, template: Option<&BTreeMap<String, String>>) -> Wanted {
    let get = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .or_else(|| template.and_then(|t| t.get(key)))
            .filter(|v| !v.trim().is_empty())
    };
    let Some(item_path) = get(ITEM_PATH) else {
        return Wanted::Nothing;
    };
    let item_path = item_path.trim().to_owned();
    let Some(item_name) = get(ITEM_NAME).map(|n| n.trim().to_owned()) else {
        return Wanted::MissingName { item_path };
    };
    let secret_name = sanitize_secret_name(&item_name);
    if secret_name.is_empty() {
        return Wanted::MissingName { item_path };
    }
    let mut annotations = BTreeMap::from([(ITEM_NAME.to_owned(), item_name)]);
    if let Some(auto_restart) = get(AUTO_RESTART) {
        annotations.insert(AUTO_RESTART.to_owned(), auto_restart.clone());
    }
    Wanted::Secret {
        item_path,
        secret_name,
        annotations,
        connect_ref: get(CONNECT).map(|v| connection_reference(v)),
    }
}

fn owned_by(opi: &OnePasswordItem, uid: &str) -> bool {
    opi.owner_references().iter().any(|r| r.uid == uid)
}

async fn publish<K: WorkloadKind>(ctx: &Context, workload: &K, warning: bool, reason: &str, note: String) {
    ctx.events
        .notify(&workload.object_ref(&()), warning, "ManageItem", reason, note)
        .await;
}

/// What a workload reconcile needs: the operator's context and the watch cache of
/// OnePasswordItems, so that finding a workload's managed items costs no request.
struct WorkloadContext {
    ctx: Arc<Context>,
    items: Store<OnePasswordItem>,
}

/// Brings the managed OnePasswordItems of one workload in line with its annotations.
async fn reconcile<K: WorkloadKind>(workload: Arc<K>, wctx: Arc<WorkloadContext>) -> Result<Action, Error> {
    let ctx = &wctx.ctx;
    let namespace = workload.namespace().unwrap_or_default();
    let uid = workload.uid().unwrap_or_default();
    let workloads: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    remove_legacy_finalizer(&workloads, &*workload)
        .await
        .map_err(Error::kube("remove the Go operator's finalizer"))?;
    let items: Api<OnePasswordItem> = Api::namespaced(ctx.client.clone(), &namespace);
    let template_annotations = workload
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref());
    let wanted = if workload.meta().deletion_timestamp.is_some() {
        Wanted::Nothing
    } else {
        wanted(workload.meta().annotations.as_ref(), template_annotations)
    };
    let keep = match &wanted {
        Wanted::Secret { secret_name, .. } => Some(secret_name.as_str()),
        _ => None,
    };

    // Delete what this workload no longer asks for (annotations removed or renamed).
    let stale: Vec<String> = wctx
        .items
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace.as_str()) && owned_by(o, &uid))
        .map(|o| o.name_any())
        .filter(|name| Some(name.as_str()) != keep)
        .collect();
    for stale in stale {
        items
            .delete(&stale, &DeleteParams::default())
            .await
            .map_err(Error::kube("delete a managed OnePasswordItem"))?;
        info!(%namespace, workload = %workload.name_any(), item = %stale, "stopped managing a Secret for the workload");
        publish(
            ctx,
            &*workload,
            false,
            "Unmanaged",
            format!("Deleted OnePasswordItem {stale} (and so its Secret): the annotations no longer ask for it"),
        )
        .await;
    }

    match wanted {
        Wanted::Nothing => Ok(Action::await_change()),
        Wanted::MissingName { item_path } => {
            publish(
                ctx,
                &*workload,
                true,
                "MissingItemName",
                format!("{ITEM_PATH} is {item_path:?} but {ITEM_NAME} names no valid Secret"),
            )
            .await;
            Ok(Action::await_change())
        }
        Wanted::Secret {
            item_path,
            secret_name,
            annotations,
            connect_ref,
        } => {
            if let Some(existing) = items
                .get_opt(&secret_name)
                .await
                .map_err(Error::kube("read OnePasswordItem"))?
                && !owned_by(&existing, &uid)
            {
                publish(
                    ctx,
                    &*workload,
                    true,
                    "ItemNameConflict",
                    format!(
                        "OnePasswordItem {secret_name} exists and belongs to something else; it was left untouched"
                    ),
                )
                .await;
                return Ok(Action::requeue(Duration::from_secs(300)));
            }
            // No blockOwnerDeletion: with the OwnerReferencesPermissionEnforcement admission
            // plugin it would need `update` on the workload kind's finalizers.
            let owner: OwnerReference = workload.controller_owner_ref(&()).expect("stored objects have a uid");
            let mut opi = OnePasswordItem::new(&secret_name, OnePasswordItemSpec::item(item_path.clone()));
            opi.spec.connect_ref = connect_ref.clone().map(Box::new);
            // Under a label selector the item carries the workload's labels, so that it is
            // selected as its workload was, by this instance only.
            let mut labels = match &ctx.settings.label_selector {
                Some(_) => workload.labels().clone(),
                None => BTreeMap::new(),
            };
            labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
            opi.metadata = ObjectMeta {
                name: Some(secret_name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![owner]),
                ..ObjectMeta::default()
            };
            let params = PatchParams::apply(FIELD_MANAGER).force();
            items
                .patch(&secret_name, &params, &Patch::Apply(&opi))
                .await
                .map_err(Error::kube("apply a managed OnePasswordItem"))?;
            debug!(%namespace, workload = %workload.name_any(), secret = %secret_name, "managed OnePasswordItem applied");
            Ok(Action::await_change())
        }
    }
}

fn error_policy<K: WorkloadKind>(workload: Arc<K>, error: &Error, _ctx: Arc<WorkloadContext>) -> Action {
    warn!(name = %workload.name_any(), error = %error.message(), "cannot manage the workload's Secret");
    Action::requeue(Duration::from_secs(30))
}

/// The controllers of the three workload kinds in one scope (a namespace, or all).
pub(crate) fn controllers(
    namespace: Option<&str>,
    items: Api<OnePasswordItem>,
    store: Store<OnePasswordItem>,
    ctx: Arc<Context>,
) -> [BoxFuture<'static, ()>; 3] {
    let client = ctx.client.clone();
    [
        Box::pin(run(
            scoped_api::<Deployment>(&client, namespace),
            items.clone(),
            store.clone(),
            ctx.clone(),
        )),
        Box::pin(run(
            scoped_api::<StatefulSet>(&client, namespace),
            items.clone(),
            store.clone(),
            ctx.clone(),
        )),
        Box::pin(run(scoped_api::<DaemonSet>(&client, namespace), items, store, ctx)),
    ]
}

/// Runs the controller of one workload kind over `api`, once the OnePasswordItem cache is
/// filled (so that items managed for a workload are known before it is reconciled).
async fn run<K: WorkloadKind>(
    api: Api<K>,
    items: Api<OnePasswordItem>,
    store: Store<OnePasswordItem>,
    ctx: Arc<Context>,
) {
    crate::kubernetes::until_ready(&store).await;
    let ctx = Arc::new(WorkloadContext { ctx, items: store });
    let selected = ctx.ctx.settings.selected();
    Controller::new(api, selected)
        .owns(items, watcher::Config::default().labels(&managed_selector()))
        .trigger_backoff(watch_backoff())
        .shutdown_on_signal()
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                debug!(error = %err, "workload controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn annotations_are_read_from_metadata_then_the_pod_template() {
        let meta = map(&[
            (ITEM_PATH, "vaults/a/items/b"),
            (ITEM_NAME, "My Secret"),
            (AUTO_RESTART, "true"),
        ]);
        assert_eq!(
            wanted(Some(&meta), None),
            Wanted::Secret {
                item_path: "vaults/a/items/b".into(),
                secret_name: "my-secret".into(),
                annotations: map(&[(ITEM_NAME, "My Secret"), (AUTO_RESTART, "true")]),
                connect_ref: None,
            },
            "the Secret carries item-name as written, as in Go"
        );
        let template = map(&[(ITEM_PATH, "vaults/t/items/t"), (ITEM_NAME, "from-template")]);
        assert_eq!(
            wanted(None, Some(&template)),
            Wanted::Secret {
                item_path: "vaults/t/items/t".into(),
                secret_name: "from-template".into(),
                annotations: map(&[(ITEM_NAME, "from-template")]),
                connect_ref: None,
            }
        );
        assert_eq!(
            wanted(Some(&map(&[(ITEM_PATH, "vaults/a/items/b")])), Some(&template)),
            Wanted::Secret {
                item_path: "vaults/a/items/b".into(),
                secret_name: "from-template".into(),
                annotations: map(&[(ITEM_NAME, "from-template")]),
                connect_ref: None,
            },
            "each annotation falls back on its own"
        );
        assert_eq!(wanted(None, None), Wanted::Nothing);
        assert_eq!(wanted(Some(&map(&[(ITEM_NAME, "x")])), None), Wanted::Nothing);
        assert_eq!(
            wanted(Some(&map(&[(ITEM_PATH, "vaults/a/items/b"), (ITEM_NAME, "!!!")])), None),
            Wanted::MissingName {
                item_path: "vaults/a/items/b".into()
            }
        );
    }

    #[test]
    fn the_connect_annotation_names_a_connection_of_the_namespace_or_of_the_cluster() {
        let with = |value: &str| {
            let meta = map(&[(ITEM_PATH, "vaults/a/items/b"), (ITEM_NAME, "s"), (CONNECT, value)]);
            match wanted(Some(&meta), None) {
                Wanted::Secret { connect_ref, .. } => connect_ref.expect("a connectRef"),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            with("team-a"),
            ConnectionReference {
                kind: None,
                name: "team-a".into()
            }
        );
        assert_eq!(
            with("OnePasswordConnect/team-a"),
            ConnectionReference {
                kind: None,
                name: "team-a".into()
            }
        );
        assert_eq!(
            with(" ClusterOnePasswordConnect/shared "),
            ConnectionReference {
                kind: Some(CLUSTER_KIND.into()),
                name: "shared".into()
            }
        );
        // Names no connection that can exist: the item's status says it is not found.
        assert_eq!(with("Other/x").name, "Other/x");
    }
}
