//! The controller's settings and [`Context`]: the seam between the reconcile and the outside
//! world (clients, caches, metrics).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;

use super::build::MappingOptions;
use super::digest::DigestKey;
use super::known::KnownSecrets;
use super::repairs::RepairThrottle;
use super::status::EventSpec;
use super::written_status::WrittenStatuses;
use crate::connect::ConnectClient;
use crate::controller::connections::Connections;
use crate::crd::OnePasswordItem;
use crate::events::{EventLane, EventPublisher};
use crate::metrics::Metrics;
use crate::restart::Restarter;

/// How the controller behaves; from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// How often the poller checks the referenced vaults for changes.
    pub polling_interval: Duration,
    /// How often a synced resource is reconciled anyway (from cache: no Connect call); see
    /// `crate::resync`.
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
    /// Key of the digests written on Secrets; without one, a restarted operator reads every
    /// item from Connect again.
    pub digest_key: Option<DigestKey>,
    /// Only OnePasswordItems (and annotated workloads) with these labels are managed, so
    /// that several installs can split a cluster.
    pub label_selector: Option<String>,
    /// Timeout of one request to the Connect servers of connection resources.
    pub connect_timeout: Duration,
}

impl Settings {
    /// The watch of the objects this instance manages: those `label_selector` selects.
    pub(crate) fn selected(&self) -> kube::runtime::watcher::Config {
        let config = kube::runtime::watcher::Config::default();
        match &self.label_selector {
            Some(selector) => config.labels(selector),
            None => config,
        }
    }
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
            digest_key: None,
            label_selector: None,
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// Everything a reconcile needs, shared by the controllers, the poller and the HTTP server.
pub struct Context {
    pub(crate) client: kube::Client,
    /// The operator's own connection and those of connection resources, each with its own
    /// client and caches.
    pub(crate) connections: Connections,
    pub(crate) connection_checks: crate::controller::connections::status::Checks,
    /// Which Secrets are untouched since we wrote them: those need no read.
    pub(crate) known: KnownSecrets,
    pub(crate) settings: Settings,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) restarter: Arc<Restarter>,
    pub(crate) events: EventPublisher,
    /// The reconciles' Events, sent at low priority.
    pub(crate) event_lane: EventLane,
    /// Repairs of Secrets that something keeps changing: backed off, Events aggregated.
    pub(crate) repairs: RepairThrottle,
    /// Statuses written that the watch cache may not show yet.
    pub(crate) written_statuses: WrittenStatuses,
    failures: Mutex<HashMap<ObjectRef<OnePasswordItem>, u32>>,
    caches_synced: AtomicBool,
    standby: AtomicBool,
}

impl Context {
    /// `connect`: the operator's own Connect client, for resources without `connectRef`.
    pub fn new(
        client: kube::Client,
        connect: Option<ConnectClient>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let events = EventPublisher::new(client.clone(), "onepassword-operator", std::env::var("POD_NAME").ok());
        Self {
            restarter: Restarter::new(client.clone(), events.clone(), settings.auto_restart),
            event_lane: EventLane::new(events.clone()),
            events,
            repairs: RepairThrottle::default(),
            written_statuses: WrittenStatuses::default(),
            client,
            connections: Connections::new(connect, metrics.connect.clone()),
            connection_checks: Default::default(),
            known: KnownSecrets::default(),
            settings,
            metrics,
            failures: Mutex::default(),
            caches_synced: AtomicBool::new(false),
            standby: AtomicBool::new(false),
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The operator's own Connect client, for resources without `connectRef`.
    pub fn connect(&self) -> Option<&ConnectClient> {
        self.connections.operator().map(|c| c.connect())
    }

    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// How many items (with their files) the caches of every connection hold.
    pub fn cached_items(&self) -> usize {
        self.connections.all().iter().map(|c| c.items.len()).sum()
    }

    /// A replica waiting for the leader lease runs nothing, so it has no caches to sync.
    pub fn is_standby(&self) -> bool {
        self.standby.load(Ordering::Relaxed)
    }

    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::Relaxed);
    }

    /// Whether the OnePasswordItem and Secret watches have listed their objects once.
    pub fn caches_synced(&self) -> bool {
        self.caches_synced.load(Ordering::Relaxed)
    }

    pub(crate) fn set_caches_synced(&self) {
        self.caches_synced.store(true, Ordering::Relaxed);
    }

    /// Counts a failed reconcile of `obj`; returns the failures in a row.
    pub(crate) fn failed(&self, obj: &OnePasswordItem) -> u32 {
        let mut failures = self.failures.lock().expect("failures lock");
        let count = failures.entry(ObjectRef::from_obj(obj)).or_default();
        *count += 1;
        *count
    }

    pub(crate) fn succeeded(&self, obj: &OnePasswordItem) {
        self.failures
            .lock()
            .expect("failures lock")
            .remove(&ObjectRef::from_obj(obj));
    }

    pub(crate) async fn publish(&self, obj: &OnePasswordItem, spec: EventSpec) {
        self.event_lane
            .notify(obj, spec.warning, &spec.reason, &spec.note)
            .await;
    }
}
