//! The OnePasswordItem controller: `resolve → fetch → build → apply → status`.
//!
//! - resolve: `itemPath` to vault and item ids, reused from status while the path is the same.
//! - fetch: the item and its files through the shared [`items::ItemCache`].
//! - build: [`crate::secret::build_secret`], pure.
//! - apply: [`apply::apply_secret`], only when something differs; the Secret is read only when
//!   the watch says it may have changed since our last write ([`known`]).
//! - status: [`status::next_status`], written only when it changed; Events on transitions.
//!
//! The controller owns the Secrets it writes, so a hand edit or deletion triggers a reconcile
//! that repairs it from the cache, without a Connect call.

pub mod apply;
pub mod error;
pub mod items;
pub mod known;
pub mod repairs;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use rand::Rng;
use serde_json::json;
use tracing::{Instrument, debug, info, instrument, warn};

use crate::annotations::{
    AUTO_RESTART, IGNORE_SECRET_TAG, ITEM_NAME, ITEM_VERSION, LEGACY_FINALIZER, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    OPERATOR_PREFIX,
};
use crate::connect::{ConnectClient, ConnectError, resolve_item, resolve_vault};
use crate::crd::OnePasswordItem;
use crate::events::{Event, EventPublisher, EventType};
use crate::metrics::Metrics;
use crate::secret::{BuiltSecret, ItemData, MappingOptions, SecretTarget, build_secret};
pub use error::Error;
use items::{CachedItem, ItemCache, ItemKey};
use known::{Freshness, KnownSecrets};
use status::{Synced, Write};

/// How the controller behaves; from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// How often the poller checks the referenced vaults for changes.
    pub polling_interval: Duration,
    /// How often a synced resource is reconciled anyway (from cache: no Connect call).
    pub resync_interval: Duration,
    pub mapping: MappingOptions,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Restart consumers of a changed Secret unless an annotation says otherwise.
    pub auto_restart: bool,
    /// Manage Secrets for workloads annotated with `item-path` and `item-name` (always on in
    /// 1Password's Go operator; on by default here).
    pub annotated_workloads: bool,
    /// Copy each OnePasswordItem's own annotations onto its Secret: what Go's
    /// `--enable-annotations` means.
    pub copy_annotations: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            polling_interval: Duration::from_secs(10),
            resync_interval: Duration::from_secs(600),
            mapping: MappingOptions::default(),
            concurrency: 16,
            auto_restart: false,
            annotated_workloads: true,
            copy_annotations: false,
        }
    }
}

/// Everything a reconcile needs: the seam between the controller and the outside world.
pub struct Context {
    pub client: kube::Client,
    pub connect: ConnectClient,
    pub items: ItemCache,
    /// Which Secrets are untouched since we wrote them: those need no read.
    pub known: KnownSecrets,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub restarter: Arc<crate::restart::Restarter>,
    events: EventPublisher,
    /// Repairs of Secrets that something keeps changing: backed off, Events aggregated.
    repairs: repairs::RepairThrottle,
    failures: Mutex<HashMap<ObjectRef<OnePasswordItem>, u32>>,
    /// Vaults the poller could not check last time, and why.
    vault_failures: Mutex<HashMap<String, status::ConnectFailure>>,
    caches_synced: std::sync::atomic::AtomicBool,
    standby: std::sync::atomic::AtomicBool,
}

impl Context {
    pub fn new(client: kube::Client, connect: ConnectClient, settings: Settings, metrics: Arc<Metrics>) -> Self {
        let events = EventPublisher::new(client.clone(), "onepassword-operator", std::env::var("POD_NAME").ok());
        Self {
            restarter: crate::restart::Restarter::new(client.clone(), events.clone(), settings.auto_restart),
            events,
            repairs: repairs::RepairThrottle::default(),
            client,
            connect,
            items: ItemCache::default(),
            known: KnownSecrets::default(),
            settings,
            metrics,
            failures: Mutex::default(),
            vault_failures: Mutex::default(),
            caches_synced: std::sync::atomic::AtomicBool::new(false),
            standby: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn events(&self) -> &EventPublisher {
        &self.events
    }

    /// A replica waiting for the leader lease runs nothing, so it has no caches to sync.
    pub fn is_standby(&self) -> bool {
        self.standby.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether every watch has listed its objects once.
    pub fn caches_synced(&self) -> bool {
        self.caches_synced.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_caches_synced(&self) {
        self.caches_synced.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records that a vault cannot be checked; true when it was fine before.
    pub fn vault_failed(&self, vault_id: &str, failure: status::ConnectFailure) -> bool {
        self.vault_failures
            .lock()
            .expect("vault failures lock")
            .insert(vault_id.to_owned(), failure)
            .is_none()
    }

    /// Records that a vault was checked; true when it was failing before.
    pub fn vault_recovered(&self, vault_id: &str) -> bool {
        self.vault_failures
            .lock()
            .expect("vault failures lock")
            .remove(vault_id)
            .is_some()
    }

    pub fn vault_failure(&self, vault_id: &str) -> Option<status::ConnectFailure> {
        self.vault_failures
            .lock()
            .expect("vault failures lock")
            .get(vault_id)
            .cloned()
    }

    fn failed(&self, obj: &OnePasswordItem) -> u32 {
        let mut failures = self.failures.lock().expect("failures lock");
        let count = failures.entry(ObjectRef::from_obj(obj)).or_default();
        *count += 1;
        *count
    }

    fn succeeded(&self, obj: &OnePasswordItem) {
        self.failures
            .lock()
            .expect("failures lock")
            .remove(&ObjectRef::from_obj(obj));
    }

    async fn publish(&self, obj: &OnePasswordItem, spec: status::EventSpec) {
        let event = Event {
            type_: if spec.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: spec.reason,
            note: Some(spec.note),
            action: "Sync".into(),
            secondary: None,
        };
        if let Err(err) = self.events.publish(&event, &obj.object_ref(&())).await {
            warn!(error = %err, "cannot publish an Event");
        }
    }
}

/// Where `kubectl apply` keeps the whole manifest it applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The annotations a OnePasswordItem passes on to its Secret. `auto-restart` and `item-name`
/// always (as 1Password's Go operator does); with `copy_all` (Go's `--enable-annotations`)
/// every other one too, except kubectl's bookkeeping and the operator's own keys.
pub fn secret_annotations(annotations: &BTreeMap<String, String>, copy_all: bool) -> BTreeMap<String, String> {
    annotations
        .iter()
        .filter(|(key, _)| {
            *key == AUTO_RESTART
                || *key == ITEM_NAME
                || (copy_all
                    && !key.starts_with("kubectl.kubernetes.io/")
                    && !key.starts_with(&format!("{OPERATOR_PREFIX}/")))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Splits `vaults/<vault>/items/<item>`.
pub fn parse_item_path(path: &str) -> Result<(&str, &str), Error> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts[..] {
        ["vaults", vault, "items", item] if !vault.is_empty() && !item.is_empty() => Ok((vault, item)),
        _ => Err(Error::InvalidItemPath { path: path.to_owned() }),
    }
}

#[instrument(skip_all, fields(name = %opi.name_any(), namespace = opi.namespace().unwrap_or_default()))]
pub async fn reconcile(opi: Arc<OnePasswordItem>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = opi.namespace().unwrap_or_default();
    let name = opi.name_any();
    let api: Api<OnePasswordItem> = Api::namespaced(ctx.client.clone(), &namespace);
    remove_legacy_finalizer(&api, &*opi)
        .await
        .map_err(Error::kube("remove the Go operator's finalizer"))?;
    if opi.metadata.deletion_timestamp.is_some() {
        // The Secret goes with its owner through the ownerReference; nothing to do.
        return Ok(Action::await_change());
    }

    let outcome = sync(&opi, &namespace, &ctx).await;
    let now = Time(jiff::Timestamp::now());
    let next = status::next_status(opi.status.as_ref(), opi.metadata.generation, &outcome, &now);
    if opi.status.as_ref() != Some(&next) {
        let patch = json!({ "status": next });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(Error::kube("update status")(e)),
        }
    }
    for event in status::events(opi.status.as_ref(), &next, &outcome) {
        ctx.publish(&opi, event).await;
    }
    let result = match &outcome {
        Ok(synced) => {
            if synced.write.wrote() {
                info!(secret = %synced.secret_name, version = synced.item_version, write = ?synced.write, "Secret written");
            }
            "ok"
        }
        Err(error) => error.metric_label(),
    };
    ctx.metrics.reconciled(result, started.elapsed());
    match outcome {
        Ok(synced) => {
            ctx.succeeded(&opi);
            match synced.write {
                // Something keeps changing the Secret: the repair is made when the wait is over.
                Write::RepairDelayed(wait) => Ok(Action::requeue(wait)),
                _ => Ok(Action::requeue(ctx.settings.resync_interval)),
            }
        }
        Err(error) => Err(error),
    }
}

/// Backoff per object: exponential with jitter, a server's `Retry-After` respected, and
/// minutes for failures only a person can fix (a rejected token must not burn API quota).
pub fn error_policy(opi: Arc<OnePasswordItem>, error: &Error, ctx: Arc<Context>) -> Action {
    let attempts = ctx.failed(&opi);
    let delay = retry_delay(attempts, error);
    warn!(name = %opi.name_any(), namespace = opi.namespace().unwrap_or_default(), reason = error.reason(), error = %error.message(), ?delay, "sync failed");
    Action::requeue(delay)
}

pub fn retry_delay(attempts: u32, error: &Error) -> Duration {
    if error.needs_a_person() {
        return Duration::from_secs(300);
    }
    let base = Duration::from_secs(2)
        .saturating_mul(1 << attempts.saturating_sub(1).min(6))
        .min(Duration::from_secs(120));
    let jitter = base.mul_f64(rand::rng().random_range(0.0..0.2));
    (base + jitter).max(error.retry_after().unwrap_or_default())
}

/// Removes the finalizer of 1Password's Go operator, which nothing would remove after a
/// migration, so that the object can be deleted. Used for OnePasswordItems, their Secrets
/// and annotated workloads.
pub async fn remove_legacy_finalizer<K>(api: &Api<K>, obj: &K) -> Result<(), kube::Error>
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

/// Resolves `itemPath` afresh and fetches the item.
async fn resolve_and_fetch(
    ctx: &Context,
    vault_ref: &str,
    item_ref: &str,
) -> Result<(ItemKey, Option<Vec<String>>, Arc<CachedItem>, bool), Error> {
    let vault = resolve_vault(&ctx.connect, vault_ref)
        .await
        .map_err(|source| match source {
            source @ ConnectError::NotFound { .. } => Error::VaultNotFound {
                vault: vault_ref.into(),
                source,
            },
            other => other.into(),
        })?;
    let not_found = |source: ConnectError| match source {
        source @ ConnectError::NotFound { .. } => Error::ItemNotFound {
            vault: vault_ref.into(),
            item: item_ref.into(),
            source,
        },
        other => other.into(),
    };
    let item = resolve_item(&ctx.connect, &vault.id, item_ref)
        .await
        .map_err(not_found)?;
    let key = ItemKey {
        vault_id: vault.id,
        item_id: item.id,
    };
    let (cached, _) = ctx.items.get(&ctx.connect, &key).await.map_err(not_found)?;
    // Resolving the path read Connect just now.
    Ok((key, Some(item.also_matched), cached, true))
}

async fn sync(opi: &OnePasswordItem, namespace: &str, ctx: &Context) -> Result<Synced, Error> {
    let name = opi.name_any();
    let item_path = opi.spec.item_path.clone();
    let (vault_ref, item_ref) = parse_item_path(&item_path)?;

    // Resolve: reuse the ids in status while the path is unchanged.
    let reusable = opi
        .status
        .as_ref()
        .filter(|s| s.resolved_item_path.as_deref() == Some(item_path.as_str()))
        .and_then(|s| {
            Some(ItemKey {
                vault_id: s.vault_id.clone()?,
                item_id: s.item_id.clone()?,
            })
        });
    let (key, ambiguous_with, cached, read_now) = match reusable {
        Some(key) => match ctx.items.get(&ctx.connect, &key).await {
            Ok((cached, fetched)) => (key, None, cached, fetched),
            // Deleted, or replaced by an item with the same title: look the path up again.
            Err(err) if err.is_not_found() => {
                debug!("cached item id not found; resolving the item path again");
                ctx.items.invalidate(&key);
                resolve_and_fetch(ctx, vault_ref, item_ref).await?
            }
            Err(err) => return Err(err.into()),
        },
        None => resolve_and_fetch(ctx, vault_ref, item_ref).await?,
    };

    // Build. No blockOwnerDeletion, as in Go: clusters with the
    // OwnerReferencesPermissionEnforcement admission plugin (OpenShift) would require
    // `update` on onepassworditems/finalizers for it, and it only makes a foreground deletion
    // wait for the Secret, which the garbage collector deletes anyway.
    let target = SecretTarget {
        name: name.clone(),
        namespace: namespace.to_owned(),
        owner: opi.controller_owner_ref(&()).expect("stored objects have a uid"),
        labels: opi.labels().clone(),
        annotations: secret_annotations(opi.annotations(), ctx.settings.copy_annotations),
        secret_type: opi.secret_type.clone(),
    };
    let built = build_secret(
        &target,
        &key.vault_id,
        &cached.item,
        &cached.files,
        ctx.settings.mapping,
    )
    .map_err(|source| Error::SecretTooLarge { source })?;

    let (write, item_version) = apply_step(ctx, opi, namespace, &built, &cached.item).await?;
    let repair_event = (write == Write::Repaired)
        .then(|| ctx.repairs.repaired(namespace, &name, Instant::now()))
        .flatten();
    // From cache while the poller cannot reach the vault: the Secret matches what we last
    // saw, but whether that is still current is unknown. Read from Connect now: it is.
    let connect_failure = if read_now {
        None
    } else {
        ctx.vault_failure(&key.vault_id)
    };
    Ok(Synced {
        item_path,
        connect_failure,
        vault_id: key.vault_id,
        item_id: key.item_id,
        item_version,
        secret_name: name,
        write,
        collisions: built.collisions,
        skipped: built.skipped,
        ambiguous_with,
        repair_event,
    })
}

/// The apply step: reads the Secret only when it may have changed, then writes it unless it
/// belongs to somebody else or the item is frozen. Returns what was done and the item version
/// the Secret holds.
async fn apply_step(
    ctx: &Context,
    opi: &OnePasswordItem,
    namespace: &str,
    built: &BuiltSecret,
    item: &ItemData,
) -> Result<(Write, u64), Error> {
    let name = opi.name_any();
    let frozen = item.has_tag(IGNORE_SECRET_TAG);
    let fingerprint = known::fingerprint(&built.secret);
    // A frozen Secret is judged by what it holds now, so it is always read.
    let freshness = if frozen {
        Freshness::Latest
    } else {
        ctx.known.freshness(namespace, &name, fingerprint)
    };
    let Some(read) = freshness.get_params() else {
        return Ok((Write::Unchanged, item.version));
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = match secrets.get_with(&name, &read).await {
        Ok(secret) => Some(secret),
        Err(kube::Error::Api(e)) if e.code == 404 => None,
        Err(e) => return Err(Error::kube("read Secret")(e)),
    };
    match &existing {
        Some(secret) if apply::ownership(secret, opi, &name) == apply::Ownership::Foreign => {
            ctx.known.forget(namespace, &name);
            return Err(Error::SecretConflict { name });
        }
        Some(secret) if frozen => {
            ctx.known.forget(namespace, &name);
            let held = secret
                .annotations()
                .get(ITEM_VERSION)
                .and_then(|v| v.parse().ok())
                .unwrap_or(item.version);
            return Ok((Write::Frozen, held));
        }
        _ => {}
    }
    // A Secret deleted by hand after a sync is put back: a repair, not a creation.
    let synced_before = opi
        .status
        .as_ref()
        .is_some_and(|s| s.item_version == Some(item.version));
    let repair = match &existing {
        Some(secret) => apply::is_repair(secret, &built.secret),
        None => synced_before,
    };
    if repair && let Some(wait) = ctx.repairs.wait_before_repair(namespace, &name, Instant::now()) {
        ctx.known.forget(namespace, &name);
        return Ok((Write::RepairDelayed(wait), item.version));
    }
    let applied = apply::apply_secret(&secrets, existing.as_ref(), &built.secret).await?;
    if let Some(existing) = &existing
        && existing.finalizers().iter().any(|f| f == LEGACY_FINALIZER)
    {
        // The apply moved its resourceVersion: patch the object as it is now.
        let mut current = existing.clone();
        current.metadata.resource_version = applied.resource_version.clone();
        remove_legacy_finalizer(&secrets, &current)
            .await
            .map_err(Error::kube("remove the Go operator's finalizer from the Secret"))?;
        ctx.known.forget(namespace, &name);
    }
    ctx.known
        .record(namespace, &name, applied.resource_version, fingerprint);
    if applied.write == Write::Updated {
        // New item data: workloads that use the Secret may need a restart.
        ctx.restarter.secret_changed(crate::restart::ChangedSecret {
            namespace: namespace.to_owned(),
            name: name.clone(),
            annotations: built.secret.metadata.annotations.clone().unwrap_or_default(),
            item_version: item.version,
        });
    }
    let write = if applied.write == Write::Created && synced_before {
        Write::Repaired
    } else {
        applied.write
    };
    Ok((write, item.version))
}

/// How a watch that lost the apiserver tries again: after 0.1 s at first, then at most every
/// 1 s (2 s with jitter). kube's default (client-go's) grows to 30 s, which left drift repair
/// blind for up to 46 s after an apiserver restart; the few watches of one operator cost a
/// recovering apiserver little.
pub fn watch_backoff() -> impl kube::runtime::utils::Backoff {
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
fn scoped_api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controllers (one watch per namespace, or one for all), the workload controllers
/// (unless `annotated_workloads` is off), and the poller that triggers them, until a termination signal.
pub async fn run(ctx: Arc<Context>) {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};

    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    let scopes: Vec<Option<String>> = if ctx.settings.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.settings.namespaces.iter().cloned().map(Some).collect()
    };
    let mut stores = Vec::new();
    let mut secret_stores = Vec::new();
    let mut senders = std::collections::BTreeMap::new();
    let mut runs: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    for namespace in scopes {
        let ns = namespace.as_deref();
        let items: Api<OnePasswordItem> = scoped_api(&ctx.client, ns);
        let secrets: Api<PartialObjectMeta<Secret>> = scoped_api(&ctx.client, ns);
        let (trigger, triggered) = futures::channel::mpsc::unbounded();
        senders.insert(namespace.clone(), trigger);
        let span = tracing::info_span!("controller", namespace = ns.unwrap_or("*"));
        // The cache holds every OnePasswordItem: without managedFields and kubectl's copy of
        // the last applied manifest, which are large and unused.
        let (store, writer) = kube::runtime::reflector::store();
        let items_stream = watcher::watcher(items.clone(), watcher::Config::default())
            .backoff(watch_backoff())
            .modify(|o: &mut OnePasswordItem| {
                o.managed_fields_mut().clear();
                o.annotations_mut().remove(LAST_APPLIED);
            })
            .reflect(writer)
            .applied_objects();
        // Our Secrets only, and only their metadata: enough to map them to their owners and
        // to know their versions; no Secret data is decoded or held for the watch, and the
        // cache keeps names, versions and owners only.
        let (secret_store, secret_writer) = kube::runtime::reflector::store();
        let secrets_stream = watcher::watcher(secrets, watcher::Config::default().labels(&selector))
            .backoff(watch_backoff())
            .modify(|secret: &mut PartialObjectMeta<Secret>| {
                let meta = &mut secret.metadata;
                (meta.managed_fields, meta.annotations, meta.labels) = (None, None, None);
            })
            .reflect(secret_writer)
            .touched_objects();
        secret_stores.push(secret_store);
        let controller = Controller::for_stream(items_stream, store.clone())
            .owns_stream(secrets_stream)
            .reconcile_on(triggered)
            // The Controller backs off its trigger streams once more, by default up to 30 s.
            .trigger_backoff(watch_backoff())
            .with_config(ControllerConfig::default().concurrency(ctx.settings.concurrency))
            .shutdown_on_signal();
        let run = controller
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(err) = result {
                    debug!(error = %err, "controller event");
                }
            })
            .instrument(span);
        runs.push(Box::pin(run));
        if ctx.settings.annotated_workloads {
            let (deployments, statefulsets, daemonsets) = (
                scoped_api::<Deployment>(&ctx.client, ns),
                scoped_api::<StatefulSet>(&ctx.client, ns),
                scoped_api::<DaemonSet>(&ctx.client, ns),
            );
            use crate::workloads::run as workloads;
            runs.push(Box::pin(workloads(
                deployments,
                items.clone(),
                store.clone(),
                ctx.clone(),
            )));
            runs.push(Box::pin(workloads(
                statefulsets,
                items.clone(),
                store.clone(),
                ctx.clone(),
            )));
            runs.push(Box::pin(workloads(daemonsets, items, store.clone(), ctx.clone())));
        }
        stores.push(store);
    }
    let secrets_listed = {
        let ctx = ctx.clone();
        async move {
            for store in &secret_stores {
                let _ = store.wait_until_ready().await;
            }
            ctx.known.watch_ready(secret_stores);
            futures::future::pending::<()>().await
        }
    };
    let poller = crate::poller::Poller::new(ctx.clone(), stores, crate::poller::Triggers::new(senders));
    tokio::select! {
        _ = futures::future::join_all(runs) => {}
        _ = poller.run() => {}
        _ = ctx.restarter.clone().run() => {}
        _ = secrets_listed => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_paths_are_parsed_strictly() {
        assert_eq!(parse_item_path("vaults/Prod/items/DB").unwrap(), ("Prod", "DB"));
        assert_eq!(parse_item_path("vaults/a b/items/c d").unwrap(), ("a b", "c d"));
        for bad in [
            "vaults/Prod",
            "vaults//items/x",
            "vaults/a/items/",
            "secrets/a/items/b",
            "vaults/a/items/b/c",
            "",
        ] {
            assert!(
                matches!(parse_item_path(bad), Err(Error::InvalidItemPath { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_get_auto_restart_and_item_name_always_and_the_rest_only_when_asked() {
        let on_the_item = BTreeMap::from([
            (AUTO_RESTART.to_string(), "true".to_string()),
            (ITEM_NAME.to_string(), "App Secret".to_string()),
            ("team/on-call".to_string(), "alice".to_string()),
            (LAST_APPLIED.to_string(), "{}".to_string()),
            (ITEM_VERSION.to_string(), "999".to_string()),
        ]);
        let keys = |copy_all| -> Vec<String> { secret_annotations(&on_the_item, copy_all).into_keys().collect() };
        assert_eq!(keys(false), [AUTO_RESTART, ITEM_NAME]);
        assert_eq!(keys(true), [AUTO_RESTART, ITEM_NAME, "team/on-call"]);
    }

    #[test]
    fn retry_delays_grow_and_respect_people_and_servers() {
        let down = Error::from(ConnectError::from_status("get_item", 503, String::new(), None));
        let first = retry_delay(1, &down);
        assert!(
            first >= Duration::from_secs(2) && first < Duration::from_millis(2400),
            "{first:?}"
        );
        assert!(retry_delay(5, &down) >= Duration::from_secs(32));
        assert!(retry_delay(50, &down) <= Duration::from_secs(144), "capped");
        let unauthorized = Error::from(ConnectError::from_status("get_item", 401, String::new(), None));
        assert_eq!(retry_delay(1, &unauthorized), Duration::from_secs(300));
        let limited = Error::from(ConnectError::from_status(
            "get_item",
            429,
            String::new(),
            Some(Duration::from_secs(30)),
        ));
        assert!(retry_delay(1, &limited) >= Duration::from_secs(30));
    }
}
