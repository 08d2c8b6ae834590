//! The wiring: builds the watches, the OnePasswordItem controllers (one per watched
//! namespace, or one for all), the annotated-workload controllers, the poller that triggers
//! reconciles and the restarter, and runs them until a termination signal. The only module
//! that knows them all, so that none of them depends on another's start-up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tracing::{Instrument, debug};

use crate::annotated_workloads;
use crate::annotations::{LAST_APPLIED, managed_selector};
use crate::controller::connections::resource::{ClusterOnePasswordConnect, OnePasswordConnect};
use crate::controller::connections::{ConnectionEvent, ConnectionStores, status as connection_status};
use crate::controller::watched_secrets::WatchedSecrets;
use crate::controller::{self, Context};
use crate::crd::OnePasswordItem;
use crate::kubernetes::{scoped_api, watch_backoff};
use crate::poller::{self, Poller, Triggers};
use crate::resync;

/// Runs everything the operator does until a termination signal.
pub async fn run(ctx: Arc<Context>) {
    let selector = managed_selector();
    let scopes: Vec<Option<String>> = if ctx.settings.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.settings.namespaces.iter().cloned().map(Some).collect()
    };
    let mut stores = Vec::new();
    let mut secret_watches = Vec::new();
    let mut senders = BTreeMap::new();
    let mut runs: Vec<BoxFuture<'static, ()>> = Vec::new();
    let mut connection_stores = Vec::new();
    for namespace in scopes {
        let ns = namespace.as_deref();
        let (store, run) = connection_controller::<OnePasswordConnect>(&ctx, scoped_api(&ctx.client, ns));
        connection_stores.push(store);
        runs.push(run);
        let items: Api<OnePasswordItem> = scoped_api(&ctx.client, ns);
        let secrets: Api<PartialObjectMeta<Secret>> = scoped_api(&ctx.client, ns);
        let (trigger, triggered) = futures::channel::mpsc::unbounded();
        senders.insert(namespace.clone(), trigger);
        let span = tracing::info_span!("controller", namespace = ns.unwrap_or("*"));
        // The cache holds every OnePasswordItem: without managedFields and kubectl's copy of
        // the last applied manifest, which are large and unused.
        let (store, writer) = reflector::store();
        let items_stream = watcher::watcher(items.clone(), ctx.settings.selected())
            .backoff(watch_backoff())
            .modify(|o: &mut OnePasswordItem| {
                o.managed_fields_mut().clear();
                o.annotations_mut().remove(LAST_APPLIED);
            })
            .reflect(writer)
            .applied_objects();
        // Our Secrets only, and only their metadata: enough to map them to their owners and
        // to know their versions; no Secret data is decoded or held for the watch, and only
        // each Secret's version is kept.
        let watched_secrets = WatchedSecrets::default();
        let secrets_stream = watcher::watcher(secrets, watcher::Config::default().labels(&selector))
            .backoff(watch_backoff())
            .inspect_ok({
                let (ctx, watched_secrets) = (ctx.clone(), watched_secrets.clone());
                move |event| {
                    // A deleted Secret is no longer known as written.
                    if let watcher::Event::Delete(secret) = event {
                        ctx.known
                            .forget(&secret.namespace().unwrap_or_default(), &secret.name_any());
                    }
                    watched_secrets.apply(event);
                }
            })
            .touched_objects();
        secret_watches.push(watched_secrets);
        let controller = Controller::for_stream(items_stream, store.clone())
            .owns_stream(secrets_stream)
            .reconcile_on(triggered)
            // The Controller backs off its trigger streams once more, by default up to 30 s.
            .trigger_backoff(watch_backoff())
            .with_config(ControllerConfig::default().concurrency(ctx.settings.concurrency))
            .shutdown_on_signal();
        let run = controller
            .run(controller::reconcile, controller::error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(err) = result {
                    debug!(error = %err, "controller event");
                }
            })
            .instrument(span);
        runs.push(Box::pin(run));
        if ctx.settings.annotated_workloads {
            runs.extend(annotated_workloads::controllers(ns, items, store.clone(), ctx.clone()));
        }
        stores.push(store);
    }
    // Ready (`/readyz`) once the OnePasswordItems and our Secrets are both listed.
    let caches_synced = {
        let (ctx, stores) = (ctx.clone(), stores.clone());
        async move {
            for watched in &secret_watches {
                watched.until_listed().await;
            }
            ctx.known.watch_ready(secret_watches);
            for store in &stores {
                crate::kubernetes::until_ready(store).await;
            }
            ctx.set_caches_synced();
            futures::future::pending::<()>().await
        }
    };
    let (cluster_store, run) = connection_controller::<ClusterOnePasswordConnect>(&ctx, Api::all(ctx.client.clone()));
    runs.push(run);
    ctx.connections.set_stores(ConnectionStores {
        namespaced: connection_stores,
        cluster: cluster_store,
    });
    let triggers = Triggers::new(senders);
    // These never end on their own: the controllers, which stop on a termination signal,
    // end the whole run (so that a leader releases its lease).
    let mut pollers: Vec<BoxFuture<'static, ()>> = Vec::new();
    if let Some(operator) = ctx.connections.operator() {
        let poller = Poller::new(ctx.clone(), operator.clone(), stores.clone(), triggers.clone());
        pollers.push(Box::pin(poller.run()));
    }
    pollers.push(Box::pin(follow_connections(
        ctx.clone(),
        stores.clone(),
        triggers.clone(),
    )));
    pollers.push(Box::pin(resync::resync(
        stores.clone(),
        triggers,
        ctx.settings.resync_interval,
        resync::TICK,
    )));
    tokio::select! {
        _ = futures::future::join_all(runs) => {}
        _ = futures::future::join_all(pollers) => {}
        _ = poller::keep_house(ctx.clone(), stores) => {}
        _ = ctx.restarter.clone().run() => {}
        _ = ctx.event_lane.run() => {}
        _ = caches_synced => {}
    }
    // Events of the last reconciles, not left behind.
    ctx.event_lane.flush(Duration::from_secs(5)).await;
}

/// The watch and the status controller of one kind of connection resource.
fn connection_controller<K>(ctx: &Arc<Context>, api: Api<K>) -> (reflector::Store<K>, BoxFuture<'static, ()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Send
        + Sync
        + 'static,
    K: ConnectionResource,
{
    let (store, writer) = reflector::store();
    let stream = watcher::watcher(api, watcher::Config::default())
        .backoff(watch_backoff())
        .reflect(writer)
        .applied_objects();
    let run = Controller::for_stream(stream, store.clone())
        .shutdown_on_signal()
        .run(K::reconcile, connection_status::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(err) = result {
                debug!(error = %err, "connection controller event");
            }
        });
    (store, Box::pin(run))
}

/// The two kinds of connection resource, to the wiring.
trait ConnectionResource: Sized {
    fn reconcile(
        object: Arc<Self>,
        ctx: Arc<Context>,
    ) -> BoxFuture<'static, Result<kube::runtime::controller::Action, kube::Error>>;
}

impl ConnectionResource for OnePasswordConnect {
    fn reconcile(
        object: Arc<Self>,
        ctx: Arc<Context>,
    ) -> BoxFuture<'static, Result<kube::runtime::controller::Action, kube::Error>> {
        Box::pin(connection_status::reconcile_namespaced(object, ctx))
    }
}

impl ConnectionResource for ClusterOnePasswordConnect {
    fn reconcile(
        object: Arc<Self>,
        ctx: Arc<Context>,
    ) -> BoxFuture<'static, Result<kube::runtime::controller::Action, kube::Error>> {
        Box::pin(connection_status::reconcile_cluster(object, ctx))
    }
}

/// Starts a poller for each connection put in use, reconciles the resources that name a
/// connection when it changes, and lets go of connections whose resource is deleted.
async fn follow_connections(ctx: Arc<Context>, stores: Vec<reflector::Store<OnePasswordItem>>, mut triggers: Triggers) {
    let Some(mut events) = ctx.connections.take_events() else {
        return;
    };
    let mut sweep = tokio::time::interval(ctx.settings.polling_interval);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(ConnectionEvent::Started(connection)) => {
                    debug!(connection = %connection.key, "starting its poller");
                    let poller = Poller::new(ctx.clone(), connection, stores.clone(), triggers.clone());
                    tokio::spawn(poller.run());
                }
                Some(ConnectionEvent::Changed(key)) => {
                    for object in stores.iter().flat_map(|s| s.state()) {
                        let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
                        if key.is_named_by(namespace, object.spec.connect_ref.as_deref()) {
                            triggers.send(kube::runtime::reflector::ObjectRef::from_obj(object.as_ref()));
                        }
                    }
                }
                None => return,
            },
            _ = sweep.tick() => ctx.connections.retire_deleted(&ctx.metrics),
        }
    }
}
