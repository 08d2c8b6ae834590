//! The wiring: builds the watches, the OnePasswordItem controllers (one per watched
//! namespace, or one for all), the annotated-workload controllers, the poller that triggers
//! reconciles and the restarter, and runs them until a termination signal. The only module
//! that knows them all, so that none of them depends on another's start-up.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tracing::{Instrument, debug};

use crate::annotated_workloads;
use crate::annotations::{LAST_APPLIED, managed_selector};
use crate::controller::{self, Context};
use crate::crd::OnePasswordItem;
use crate::kubernetes::{scoped_api, watch_backoff};
use crate::poller::{Poller, Triggers};

/// Runs everything the operator does until a termination signal.
pub async fn run(ctx: Arc<Context>) {
    let selector = managed_selector();
    let scopes: Vec<Option<String>> = if ctx.settings.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.settings.namespaces.iter().cloned().map(Some).collect()
    };
    let mut stores = Vec::new();
    let mut secret_stores = Vec::new();
    let mut senders = BTreeMap::new();
    let mut runs: Vec<BoxFuture<'static, ()>> = Vec::new();
    for namespace in scopes {
        let ns = namespace.as_deref();
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
        // to know their versions; no Secret data is decoded or held for the watch, and the
        // cache keeps names, versions and owners only.
        let (secret_store, secret_writer) = reflector::store();
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
    let poller = Poller::new(ctx.clone(), stores, Triggers::new(senders));
    tokio::select! {
        _ = futures::future::join_all(runs) => {}
        _ = poller.run() => {}
        _ = ctx.restarter.clone().run() => {}
        _ = secrets_listed => {}
    }
}
