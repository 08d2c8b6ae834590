//! Annotated workloads (`--enable-annotations`), compatible with 1Password's Go operator:
//! a Deployment, StatefulSet or DaemonSet with `operator.1password.io/item-path` and
//! `operator.1password.io/item-name` (on its metadata or its pod template) gets a Secret of
//! that name with the item's data.
//!
//! The workload controller does it by managing a OnePasswordItem of the same name, owned by
//! the workload; the OnePasswordItem controller does the rest (status, change detection,
//! drift repair, restarts). The ownership chain workload → OnePasswordItem → Secret lets the
//! garbage collector clean up, and `kubectl get opi` shows why a Secret is missing. Removing
//! the annotations deletes the managed OnePasswordItem, so nothing is stranded.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use crate::events::{Event, EventType};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::{NamespaceResourceScope, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::annotations::{FIELD_MANAGER, ITEM_NAME, ITEM_PATH, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::controller::{Context, Error};
use crate::crd::{OnePasswordItem, OnePasswordItemSpec};
use crate::secret::sanitize_secret_name;

/// A workload kind whose pod template may carry the annotations.
pub trait Workload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    fn template(&self) -> Option<&PodTemplateSpec>;
}

impl Workload for Deployment {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl Workload for StatefulSet {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl Workload for DaemonSet {
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

/// What the annotations ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No `item-path`: manage nothing.
    Nothing,
    /// `item-path` without `item-name` (or with one that sanitizes to nothing).
    MissingName {
        item_path: String,
    },
    Secret {
        item_path: String,
        secret_name: String,
    },
}

/// Reads the annotations, from the workload's metadata first, then its pod template (as Go).
pub fn wanted(metadata: Option<&BTreeMap<String, String>>, template: Option<&BTreeMap<String, String>>) -> Wanted {
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
    match get(ITEM_NAME)
        .map(|n| sanitize_secret_name(n.trim()))
        .filter(|n| !n.is_empty())
    {
        Some(secret_name) => Wanted::Secret { item_path, secret_name },
        None => Wanted::MissingName { item_path },
    }
}

fn owned_by(opi: &OnePasswordItem, uid: &str) -> bool {
    opi.owner_references().iter().any(|r| r.uid == uid)
}

async fn publish<K: Workload>(ctx: &Context, workload: &K, warning: bool, reason: &str, note: String) {
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note),
        action: "ManageItem".into(),
        secondary: None,
    };
    if let Err(err) = ctx.events().publish(&event, &workload.object_ref(&())).await {
        warn!(error = %err, "cannot publish an Event");
    }
}

/// Brings the managed OnePasswordItems of one workload in line with its annotations.
pub async fn reconcile<K: Workload>(workload: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = workload.namespace().unwrap_or_default();
    let uid = workload.uid().unwrap_or_default();
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
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    let managed = items
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube("list managed OnePasswordItems"))?;
    for stale in managed
        .items
        .iter()
        .filter(|o| owned_by(o, &uid) && Some(o.name_any().as_str()) != keep)
    {
        items
            .delete(&stale.name_any(), &DeleteParams::default())
            .await
            .map_err(Error::kube("delete a managed OnePasswordItem"))?;
        info!(%namespace, workload = %workload.name_any(), item = %stale.name_any(), "stopped managing a Secret for the workload");
        publish(
            &ctx,
            &*workload,
            false,
            "Unmanaged",
            format!(
                "Deleted OnePasswordItem {} (and so its Secret): the annotations no longer ask for it",
                stale.name_any()
            ),
        )
        .await;
    }

    match wanted {
        Wanted::Nothing => Ok(Action::await_change()),
        Wanted::MissingName { item_path } => {
            publish(
                &ctx,
                &*workload,
                true,
                "MissingItemName",
                format!("{ITEM_PATH} is {item_path:?} but {ITEM_NAME} names no valid Secret"),
            )
            .await;
            Ok(Action::await_change())
        }
        Wanted::Secret { item_path, secret_name } => {
            if let Some(existing) = items
                .get_opt(&secret_name)
                .await
                .map_err(Error::kube("read OnePasswordItem"))?
                && !owned_by(&existing, &uid)
            {
                publish(
                    &ctx,
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
            let mut owner: OwnerReference = workload.controller_owner_ref(&()).expect("stored objects have a uid");
            owner.block_owner_deletion = Some(true);
            let mut opi = OnePasswordItem::new(
                &secret_name,
                OnePasswordItemSpec {
                    item_path: item_path.clone(),
                },
            );
            opi.metadata = ObjectMeta {
                name: Some(secret_name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY_LABEL.to_owned(),
                    MANAGED_BY_VALUE.to_owned(),
                )])),
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

pub fn error_policy<K: Workload>(workload: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(name = %workload.name_any(), error = %error.message(), "cannot manage the workload's Secret");
    Action::requeue(Duration::from_secs(30))
}

/// Runs the controller of one workload kind over `api`.
pub async fn run<K: Workload>(api: Api<K>, items: Api<OnePasswordItem>, ctx: Arc<Context>) {
    Controller::new(api, watcher::Config::default())
        .owns(
            items,
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
        )
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
        let meta = map(&[(ITEM_PATH, "vaults/a/items/b"), (ITEM_NAME, "My Secret")]);
        assert_eq!(
            wanted(Some(&meta), None),
            Wanted::Secret {
                item_path: "vaults/a/items/b".into(),
                secret_name: "my-secret".into()
            }
        );
        let template = map(&[(ITEM_PATH, "vaults/t/items/t"), (ITEM_NAME, "from-template")]);
        assert_eq!(
            wanted(None, Some(&template)),
            Wanted::Secret {
                item_path: "vaults/t/items/t".into(),
                secret_name: "from-template".into()
            }
        );
        assert_eq!(
            wanted(Some(&map(&[(ITEM_PATH, "vaults/a/items/b")])), Some(&template)),
            Wanted::Secret {
                item_path: "vaults/a/items/b".into(),
                secret_name: "from-template".into()
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
}
