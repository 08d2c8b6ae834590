//! Connections: which Connect server, with which token, a OnePasswordItem is synced from.
//!
//! The operator's own `--connect-host` and token serve every resource without
//! `spec.connectRef`; [`resource`] defines the `OnePasswordConnect` and
//! `ClusterOnePasswordConnect` resources that tenants name instead. Each connection in use
//! is a [`Connection`]: its own Connect client (so its own `Retry-After` gate and
//! token-rejection pause), item cache, title directory, vault failures and poller, so that one
//! tenant's outage or bad token never delays another. [`status`] keeps the connection
//! resources' clients and statuses current; [`Connections`] finds the one a resource may use.

pub mod resource;
pub(crate) mod status;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use secrecy::SecretString;

use crate::connect::{ConnectClient, ConnectConfig, ConnectError, ConnectMetrics};
use crate::controller::fetch::ItemCache;
use crate::controller::outcome::ConnectFailure;
use crate::controller::resolve::Directory;
use resource::{CLUSTER_KIND, ClusterOnePasswordConnect, ConnectionReference, NAMESPACED_KIND, OnePasswordConnect};

/// How long a namespace's labels are trusted for `namespaceSelector` before being read again.
const NAMESPACE_LABELS_TTL: Duration = Duration::from_secs(10);
/// How long a reconcile waits for the connection watches' first listing.
const STORES_WAIT: Duration = Duration::from_secs(30);
/// How long the resources naming a connection wait for it to come back after its resource
/// was deleted before they say it does not exist: Helm replaces a hook (the chart's cluster
/// connections) and `kubectl replace --force` deletes and creates, and neither is an outage.
const REPLACEMENT_GRACE: Duration = Duration::from_secs(10);

type Labels = BTreeMap<String, String>;

/// A connection, as resources name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnectionKey {
    /// The operator's own `--connect-host` and token.
    Operator,
    /// A `OnePasswordConnect`.
    Namespaced { namespace: String, name: String },
    /// A `ClusterOnePasswordConnect`.
    Cluster { name: String },
}

impl ConnectionKey {
    /// The connection a resource in `namespace` names with `reference`.
    pub fn of(namespace: &str, reference: Option<&ConnectionReference>) -> Self {
        match reference {
            None => Self::Operator,
            Some(r) if r.kind.as_deref() == Some(CLUSTER_KIND) => Self::Cluster { name: r.name.clone() },
            Some(r) => Self::Namespaced {
                namespace: namespace.to_owned(),
                name: r.name.clone(),
            },
        }
    }

    /// Whether a resource in `namespace` that names `reference` uses this connection; no
    /// allocation, for the poller's pass over every resource.
    pub(crate) fn is_named_by(&self, namespace: &str, reference: Option<&ConnectionReference>) -> bool {
        match (self, reference) {
            (Self::Operator, None) => true,
            (Self::Cluster { name }, Some(r)) => r.kind.as_deref() == Some(CLUSTER_KIND) && r.name == *name,
            (Self::Namespaced { namespace: ns, name }, Some(r)) => {
                r.kind.as_deref() != Some(CLUSTER_KIND) && r.name == *name && ns == namespace
            }
            _ => false,
        }
    }
}

/// `operator`, `OnePasswordConnect/<namespace>/<name>` or `ClusterOnePasswordConnect/<name>`:
/// in logs and as the `connection` label of metrics.
impl fmt::Display for ConnectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Operator => f.write_str("operator"),
            Self::Namespaced { namespace, name } => write!(f, "{NAMESPACED_KIND}/{namespace}/{name}"),
            Self::Cluster { name } => write!(f, "{CLUSTER_KIND}/{name}"),
        }
    }
}

/// One Connect server and token in use, with everything that must not be shared between
/// tenants.
pub struct Connection {
    pub key: ConnectionKey,
    pub(crate) connect: ConnectClient,
    pub(crate) items: ItemCache,
    /// Vault and item listings that titles are resolved with.
    pub(crate) directory: Directory,
    /// Vaults the poller could not check last time, and why.
    vault_failures: Mutex<HashMap<String, ConnectFailure>>,
    /// What the client was built from: another host or CA bundle needs another client.
    built_from: (String, Option<Vec<u8>>),
    /// Ends the poller's wait (its outage backoff, or its pause after a rejected token).
    wake: tokio::sync::Notify,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("key", &self.key)
            .field("connect", &self.connect)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub fn new(key: ConnectionKey, connect: ConnectClient) -> Self {
        let built_from = (connect.base_url().to_string(), None);
        Self {
            key,
            connect,
            items: ItemCache::default(),
            directory: Directory::default(),
            vault_failures: Mutex::default(),
            built_from,
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Asks the poller to poll now rather than finish its wait: Connect answers again, or
    /// the token changed.
    pub(crate) fn wake_poller(&self) {
        self.wake.notify_one();
    }

    /// Waits `wait`, or less when the poller is woken; true when woken.
    pub(crate) async fn wait_unless_woken(&self, wait: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = self.wake.notified() => true,
        }
    }

    /// The Connect client of this connection.
    pub fn connect(&self) -> &ConnectClient {
        &self.connect
    }

    /// Records that a vault cannot be checked; true when it was fine before.
    pub(crate) fn vault_failed(&self, vault_id: &str, failure: ConnectFailure) -> bool {
        self.vault_failures
            .lock()
            .expect("vault failures lock")
            .insert(vault_id.to_owned(), failure)
            .is_none()
    }

    /// Records that a vault was checked; true when it was failing before.
    pub(crate) fn vault_recovered(&self, vault_id: &str) -> bool {
        self.vault_failures
            .lock()
            .expect("vault failures lock")
            .remove(vault_id)
            .is_some()
    }

    /// Whether the poller could not check some vault last time.
    pub(crate) fn failing(&self) -> bool {
        !self.vault_failures.lock().expect("vault failures lock").is_empty()
    }

    pub(crate) fn vault_failure(&self, vault_id: &str) -> Option<ConnectFailure> {
        self.vault_failures
            .lock()
            .expect("vault failures lock")
            .get(vault_id)
            .cloned()
    }
}

/// Why a resource cannot be synced through the connection it names; nothing is read from
/// Connect and nothing is written but its status.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error(
        "no connectRef, and the operator has no Connect host and token of its own (--connect-host, OP_CONNECT_TOKEN): name a OnePasswordConnect or ClusterOnePasswordConnect in spec.connectRef"
    )]
    NoConnection,
    #[error("{key} does not exist")]
    NotFound { key: ConnectionKey },
    #[error(
        "{key} does not admit namespace {namespace:?}: its namespaceSelector {}",
        if *.selector_absent { "is absent, which admits no namespace" } else { "does not select it" }
    )]
    NotAllowed {
        key: ConnectionKey,
        namespace: String,
        selector_absent: bool,
    },
    /// Its resource exists, but no client is made of it: its status says why, or it was
    /// not checked yet (`checked` false; the check reconciles the resources that name it).
    #[error("{key} is not ready: {message}")]
    NotReady {
        key: ConnectionKey,
        message: String,
        checked: bool,
    },
}

impl Unusable {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::NoConnection => "NoConnection",
            Self::NotFound { .. } => "ConnectionNotFound",
            Self::NotAllowed { .. } => "ConnectionNotAllowed",
            Self::NotReady { .. } => "ConnectionNotReady",
        }
    }

    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Self::NoConnection => "no_connection",
            Self::NotFound { .. } => "connection_not_found",
            Self::NotAllowed { .. } => "connection_not_allowed",
            Self::NotReady { .. } => "connection_not_ready",
        }
    }
}

/// What the wiring acts on.
pub(crate) enum ConnectionEvent {
    /// A new connection: its poller starts.
    Started(Arc<Connection>),
    /// The resources that name it are reconciled.
    Changed(ConnectionKey),
}

/// The watch caches of the connection resources, set once the watches are built.
pub(crate) struct ConnectionStores {
    /// One per watched namespace scope, as for OnePasswordItems.
    pub namespaced: Vec<Store<OnePasswordConnect>>,
    pub cluster: Store<ClusterOnePasswordConnect>,
}

/// Every connection in use, and which one a resource may use.
pub struct Connections {
    operator: Option<Arc<Connection>>,
    resources: RwLock<HashMap<ConnectionKey, Arc<Connection>>>,
    stores: OnceLock<ConnectionStores>,
    /// For the wiring: start pollers, reconcile the resources that name a connection.
    events: mpsc::UnboundedSender<ConnectionEvent>,
    events_receiver: Mutex<Option<mpsc::UnboundedReceiver<ConnectionEvent>>>,
    /// Namespace → when its labels were read, and the labels.
    namespace_labels: Mutex<HashMap<String, (Instant, Labels)>>,
    /// Where each connection's client counts its requests, under its own `connection` label.
    connect_metrics: ConnectMetrics,
    /// Connections let go of, and when: see [`REPLACEMENT_GRACE`].
    retired: Mutex<HashMap<ConnectionKey, Instant>>,
}

impl Connections {
    /// `connect_metrics`: the counters the connections' clients record their requests into.
    pub fn new(operator: Option<ConnectClient>, connect_metrics: ConnectMetrics) -> Self {
        let (events, receiver) = mpsc::unbounded();
        Self {
            operator: operator.map(|c| Arc::new(Connection::new(ConnectionKey::Operator, c))),
            resources: RwLock::default(),
            stores: OnceLock::new(),
            events,
            events_receiver: Mutex::new(Some(receiver)),
            namespace_labels: Mutex::default(),
            connect_metrics,
            retired: Mutex::default(),
        }
    }

    /// The operator's own connection, if it has one.
    pub fn operator(&self) -> Option<&Arc<Connection>> {
        self.operator.as_ref()
    }

    /// Every connection in use.
    pub fn all(&self) -> Vec<Arc<Connection>> {
        let resources = self.resources.read().expect("connections lock");
        self.operator
            .iter()
            .cloned()
            .chain(resources.values().cloned())
            .collect()
    }

    pub fn get(&self, key: &ConnectionKey) -> Option<Arc<Connection>> {
        match key {
            ConnectionKey::Operator => self.operator.clone(),
            key => self.resources.read().expect("connections lock").get(key).cloned(),
        }
    }

    /// Whether `connection` is still the one in use for its key (a poller ends when not).
    pub(crate) fn is_current(&self, connection: &Arc<Connection>) -> bool {
        self.get(&connection.key).is_some_and(|c| Arc::ptr_eq(&c, connection))
    }

    /// Makes `key` use `host`, `token` and `ca_bundle`: the connection in use keeps its
    /// client and caches when only the token changed (a rotation); a new host or CA bundle
    /// builds a new one.
    pub(crate) fn install(
        &self,
        key: &ConnectionKey,
        host: &url::Url,
        token: &SecretString,
        ca_bundle: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Arc<Connection>, ConnectError> {
        let built_from = (host.to_string(), ca_bundle);
        if let Some(current) = self.get(key)
            && current.built_from == built_from
        {
            if current.connect.set_token(token)? {
                tracing::info!(connection = %key, "the Connect token changed; using the new one");
                current.wake_poller();
            }
            return Ok(current);
        }
        let mut config = ConnectConfig::new(host.clone(), token.clone());
        config.ca_bundle_pem = built_from.1.clone();
        config.timeout = timeout;
        let client = ConnectClient::with_metrics(config, self.connect_metrics.for_connection(key.to_string()))?;
        let mut connection = Connection::new(key.clone(), client);
        connection.built_from = built_from;
        let connection = Arc::new(connection);
        self.resources
            .write()
            .expect("connections lock")
            .insert(key.clone(), connection.clone());
        self.retired.lock().expect("retired lock").remove(key);
        tracing::info!(connection = %key, host = %host, "connection in use");
        let _ = self.events.unbounded_send(ConnectionEvent::Started(connection.clone()));
        self.changed(key);
        Ok(connection)
    }

    /// Stops using `key` (its resource is gone, or its spec no longer makes a client).
    pub(crate) fn retire(&self, key: &ConnectionKey) {
        if self.resources.write().expect("connections lock").remove(key).is_some() {
            tracing::info!(connection = %key, "connection no longer in use");
            let mut retired = self.retired.lock().expect("retired lock");
            retired.retain(|_, at| at.elapsed() < REPLACEMENT_GRACE);
            retired.insert(key.clone(), Instant::now());
            self.changed(key);
        }
    }

    /// Lets go of the connections whose resource is deleted.
    pub(crate) fn retire_deleted(&self, metrics: &crate::metrics::Metrics) {
        use futures::FutureExt;
        let Some(stores) = self.stores.get() else { return };
        let ready = |ready: Option<Result<(), _>>| ready.is_some_and(|r| r.is_ok());
        let keys: Vec<ConnectionKey> = self
            .resources
            .read()
            .expect("connections lock")
            .keys()
            .cloned()
            .collect();
        for key in keys {
            let exists = match &key {
                ConnectionKey::Namespaced { namespace, name } => {
                    let reference = ObjectRef::new(name).within(namespace);
                    stores
                        .namespaced
                        .iter()
                        .any(|s| !ready(s.wait_until_ready().now_or_never()) || s.get(&reference).is_some())
                }
                ConnectionKey::Cluster { name } => {
                    !ready(stores.cluster.wait_until_ready().now_or_never())
                        || stores.cluster.get(&ObjectRef::new(name)).is_some()
                }
                ConnectionKey::Operator => true,
            };
            if !exists {
                self.retire(&key);
                metrics.forget_connection(&key.to_string());
            }
        }
    }

    /// The resources that name `key` must be reconciled: it appeared, went, or its status
    /// or namespace selector changed.
    pub(crate) fn changed(&self, key: &ConnectionKey) {
        let _ = self.events.unbounded_send(ConnectionEvent::Changed(key.clone()));
    }

    /// What happens to connections from now on; taken once, by the wiring.
    pub(crate) fn take_events(&self) -> Option<mpsc::UnboundedReceiver<ConnectionEvent>> {
        self.events_receiver.lock().expect("events lock").take()
    }

    pub(crate) fn set_stores(&self, stores: ConnectionStores) {
        let _ = self.stores.set(stores);
    }

    /// The connection a resource in `namespace` naming `reference` may use.
    pub(crate) async fn for_resource(
        &self,
        client: &kube::Client,
        namespace: &str,
        reference: Option<&ConnectionReference>,
    ) -> Result<Arc<Connection>, Unusable> {
        let key = ConnectionKey::of(namespace, reference);
        if key == ConnectionKey::Operator {
            return self.operator.clone().ok_or(Unusable::NoConnection);
        }
        let Some(stores) = self.stores.get() else {
            return Err(Unusable::NotReady {
                key,
                message: "the operator has not started watching connections yet".into(),
                checked: false,
            });
        };
        let status = match &key {
            ConnectionKey::Namespaced { namespace, name } => {
                let reference = ObjectRef::new(name).within(namespace);
                let mut found = None;
                for store in &stores.namespaced {
                    let _ = tokio::time::timeout(STORES_WAIT, crate::kubernetes::until_ready(store)).await;
                    if let Some(object) = store.get(&reference) {
                        found = Some(object.status.clone());
                        break;
                    }
                }
                found.ok_or_else(|| self.missing(&key))?
            }
            ConnectionKey::Cluster { name } => {
                let _ = tokio::time::timeout(STORES_WAIT, crate::kubernetes::until_ready(&stores.cluster)).await;
                let object = stores
                    .cluster
                    .get(&ObjectRef::new(name))
                    .ok_or_else(|| self.missing(&key))?;
                let not_allowed = |selector_absent| Unusable::NotAllowed {
                    key: key.clone(),
                    namespace: namespace.to_owned(),
                    selector_absent,
                };
                let Some(selector) = object.spec.namespace_selector.clone() else {
                    return Err(not_allowed(true));
                };
                let selector = Selector::try_from(selector).map_err(|_| not_allowed(false))?;
                if !selector.selects_all() {
                    let labels = self.namespace_labels(client, namespace).await;
                    if !labels.is_some_and(|l| selector.matches(&l)) {
                        return Err(not_allowed(false));
                    }
                }
                object.status.clone()
            }
            ConnectionKey::Operator => unreachable!("handled above"),
        };
        let ready = status.as_ref().and_then(|s| s.ready());
        self.get(&key).ok_or_else(|| Unusable::NotReady {
            message: ready.map_or_else(|| "not checked yet".to_owned(), |c| c.message.clone()),
            checked: ready.is_some(),
            key,
        })
    }

    /// Why `key`'s resource cannot be found: gone, or being replaced (deleted moments ago, or
    /// not let go of yet); then the resources naming it wait quietly, as for a connection not
    /// checked yet.
    fn missing(&self, key: &ConnectionKey) -> Unusable {
        let retired = self.retired.lock().expect("retired lock").get(key).copied();
        let in_use = self.get(key).is_some();
        match retired {
            _ if in_use => Unusable::NotReady {
                key: key.clone(),
                message: "its resource was deleted moments ago; waiting for it to come back".into(),
                checked: false,
            },
            Some(at) if at.elapsed() < REPLACEMENT_GRACE => Unusable::NotReady {
                key: key.clone(),
                message: "its resource was deleted moments ago; waiting for it to come back".into(),
                checked: false,
            },
            _ => Unusable::NotFound { key: key.clone() },
        }
    }

    /// A namespace's labels, read at most every [`NAMESPACE_LABELS_TTL`]; `None` when it
    /// cannot be read.
    async fn namespace_labels(&self, client: &kube::Client, namespace: &str) -> Option<BTreeMap<String, String>> {
        if let Some((read, labels)) = self.namespace_labels.lock().expect("labels lock").get(namespace)
            && read.elapsed() < NAMESPACE_LABELS_TTL
        {
            return Some(labels.clone());
        }
        let api: Api<Namespace> = Api::all(client.clone());
        let labels = api.get(namespace).await.ok()?.metadata.labels.unwrap_or_default();
        self.namespace_labels
            .lock()
            .expect("labels lock")
            .insert(namespace.to_owned(), (Instant::now(), labels.clone()));
        Some(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(kind: Option<&str>, name: &str) -> ConnectionReference {
        ConnectionReference {
            kind: kind.map(str::to_owned),
            name: name.into(),
        }
    }

    #[test]
    fn a_reference_names_a_connection_of_its_own_namespace_unless_it_says_cluster() {
        assert_eq!(ConnectionKey::of("a", None), ConnectionKey::Operator);
        let team = reference(None, "team");
        assert_eq!(
            ConnectionKey::of("a", Some(&team)),
            ConnectionKey::Namespaced {
                namespace: "a".into(),
                name: "team".into()
            }
        );
        let explicit = reference(Some(NAMESPACED_KIND), "team");
        assert_eq!(
            ConnectionKey::of("a", Some(&explicit)),
            ConnectionKey::of("a", Some(&team))
        );
        let shared = reference(Some(CLUSTER_KIND), "shared");
        assert_eq!(
            ConnectionKey::of("a", Some(&shared)),
            ConnectionKey::Cluster { name: "shared".into() }
        );
    }

    #[test]
    fn a_namespaced_connection_is_named_only_from_its_own_namespace() {
        let team = reference(None, "team");
        let key = ConnectionKey::of("a", Some(&team));
        assert!(key.is_named_by("a", Some(&team)));
        assert!(
            !key.is_named_by("b", Some(&team)),
            "another namespace's `team` is another connection"
        );
        assert!(!key.is_named_by("a", None));
        assert!(!key.is_named_by("a", Some(&reference(Some(CLUSTER_KIND), "team"))));
        let cluster = ConnectionKey::Cluster { name: "team".into() };
        assert!(cluster.is_named_by("b", Some(&reference(Some(CLUSTER_KIND), "team"))));
        assert!(!cluster.is_named_by("b", Some(&team)));
        assert!(ConnectionKey::Operator.is_named_by("b", None));
    }

    #[tokio::test]
    async fn a_connection_deleted_moments_ago_is_waited_for_then_reported_gone() {
        let connections = Connections::new(None, ConnectMetrics::default());
        let key = ConnectionKey::Cluster { name: "shared".into() };
        assert!(matches!(connections.missing(&key), Unusable::NotFound { .. }));

        let host = url::Url::parse("http://127.0.0.1:9").unwrap();
        let token = SecretString::from("token");
        connections
            .install(&key, &host, &token, None, Duration::from_secs(1))
            .unwrap();
        assert!(
            matches!(connections.missing(&key), Unusable::NotReady { checked: false, .. }),
            "deleted, not let go of yet"
        );
        connections.retire(&key);
        assert!(
            matches!(connections.missing(&key), Unusable::NotReady { checked: false, .. }),
            "a replaced resource is waited for"
        );
        connections
            .install(&key, &host, &token, None, Duration::from_secs(1))
            .unwrap();
        connections.retire(&key);
        connections
            .retired
            .lock()
            .unwrap()
            .insert(key.clone(), Instant::now() - REPLACEMENT_GRACE);
        assert!(
            matches!(connections.missing(&key), Unusable::NotFound { .. }),
            "past the grace, it is gone"
        );
    }

    #[tokio::test]
    async fn a_woken_poller_stops_waiting() {
        let host = url::Url::parse("http://127.0.0.1:9").unwrap();
        let client = ConnectClient::new(ConnectConfig::new(host, SecretString::from("token"))).unwrap();
        let connection = Arc::new(Connection::new(ConnectionKey::Operator, client));
        assert!(!connection.wait_unless_woken(Duration::from_millis(10)).await);
        let waker = connection.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            waker.wake_poller();
        });
        let started = Instant::now();
        assert!(connection.wait_unless_woken(Duration::from_secs(60)).await);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn keys_read_as_kind_and_name() {
        assert_eq!(ConnectionKey::Operator.to_string(), "operator");
        let key = ConnectionKey::Namespaced {
            namespace: "a".into(),
            name: "team".into(),
        };
        assert_eq!(key.to_string(), "OnePasswordConnect/a/team");
        assert_eq!(
            ConnectionKey::Cluster { name: "shared".into() }.to_string(),
            "ClusterOnePasswordConnect/shared"
        );
    }
}
