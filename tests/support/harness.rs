//! One test's world for operator tests: a simulator with its data, a namespace, and the
//! controller (with its poller) watching only that namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_sim::{self as sim, DataFile, RunningSimulator, SimAdmin, SimConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::WatchStreamExt;
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::connect::{ConnectClient, ConnectConfig, Filter, RetryPolicy};
use onepassword_operator::controller::{Context, DigestKey, Settings};
use onepassword_operator::crd::{ItemCondition, OnePasswordItem, OnePasswordItemSpec};
use onepassword_operator::metrics::Metrics;
use onepassword_operator::wiring;
use secrecy::SecretString;
use serde_json::json;

/// One test's world: a simulator, a namespace, and a controller watching only that namespace.
pub struct Harness {
    pub sim: RunningSimulator,
    pub kube: kube::Client,
    pub ns: String,
    pub writer: ConnectClient,
    pub ctx: Arc<Context>,
    /// The first vault of the data.
    pub vault_id: String,
    /// The file the operator reads its Connect token from (`op-token`), as in a pod.
    pub token_file: std::path::PathBuf,
    settings: Settings,
    connect_config: ConnectConfig,
    task: tokio::task::JoinHandle<()>,
    _token_dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn connect_client(sim: &RunningSimulator, token: &str, retry: RetryPolicy) -> ConnectClient {
    let mut config = ConnectConfig::new(sim.url(), SecretString::from(token.to_owned()));
    config.retry = retry;
    ConnectClient::new(config).unwrap()
}

/// The simulator's tokens in every test: the operator's reads, the test's writes.
const TOKENS: &str = r#"tokens:
  - { name: operator, token: op-token, vaults: { "*": read } }
  - { name: writer, token: writer-token, vaults: { "*": read-write } }
"#;

/// One vault, `Demo`, with one item, `Database`, whose `password` is `s3cr3t-1`: the data of
/// tests that need just one item.
pub const ONE_ITEM: &str = r#"
vaults:
  - name: Demo
    items:
      - { title: Database, fields: [{ label: password, value: s3cr3t-1 }] }
"#;

/// Simulator data from the YAML of its vaults, with the tokens tests use.
pub fn sim_data(vaults: &str) -> DataFile {
    DataFile::parse(&format!("{TOKENS}{vaults}")).unwrap()
}

/// Starts a simulator serving `data` (the YAML of its vaults) and a controller for a fresh
/// namespace; `None` when the control plane is unavailable outside CI.
pub async fn harness(prefix: &str, data: &str, polling_interval: Duration) -> Option<Harness> {
    harness_with(prefix, data, polling_interval, |_| {}).await
}

/// [`harness`] with changed controller settings.
pub async fn harness_with(
    prefix: &str,
    data: &str,
    polling_interval: Duration,
    tweak: impl FnOnce(&mut Settings),
) -> Option<Harness> {
    let cluster = super::cluster()?;
    let mut config = SimConfig::new(sim_data(data));
    config.max_inline_file_size_kb = 2048;
    let sim = sim::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let kube = cluster.admin_client().unwrap();
    let ns = super::namespace(&kube, prefix).await;
    let retry = RetryPolicy {
        max_retries: 1,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    };
    let metrics = Arc::new(Metrics::default());
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, "op-token\n").unwrap();
    let mut op_config = ConnectConfig::new(sim.url(), SecretString::from("op-token"));
    op_config.token_file = Some(token_file.clone());
    op_config.retry = retry;
    let mut settings = Settings {
        namespaces: vec![ns.clone()],
        polling_interval,
        digest_key: Some(DigestKey::new(&DigestKey::generate_bytes()).unwrap()),
        ..Settings::default()
    };
    tweak(&mut settings);
    let connect_config = op_config.clone();
    let connect = ConnectClient::with_metrics(op_config, metrics.connect.clone()).unwrap();
    let ctx = Arc::new(Context::new(kube.clone(), Some(connect), settings.clone(), metrics));
    let task = tokio::spawn(wiring::run(ctx.clone()));
    // Started as a pod is when it turns Ready, with its first poll behind it: what a test
    // counts from here on is the work its own resources cause.
    let started = ctx.clone();
    super::wait_for(
        "the operator's caches and first poll",
        Duration::from_secs(30),
        async || {
            let polled = started.connect().is_none() || started.metrics().poll_count() > 0;
            (started.caches_synced() && polled).then_some(())
        },
    )
    .await;
    let writer = connect_client(&sim, "writer-token", RetryPolicy::none());
    // The first vault of the data: where `item_id` and `set_field` look.
    let vault_id = writer.list_vaults(None).await.unwrap()[0].id.clone();
    Some(Harness {
        sim,
        kube,
        ns,
        writer,
        ctx,
        vault_id,
        token_file,
        settings,
        connect_config,
        task,
        _token_dir: token_dir,
    })
}

impl Harness {
    /// Stops the operator, as when its pod goes away.
    pub async fn stop_operator(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Starts a new operator with the same settings and digest key and nothing in memory,
    /// as a new pod would.
    pub fn start_operator(&mut self) {
        let metrics = Arc::new(Metrics::default());
        let connect = ConnectClient::with_metrics(self.connect_config.clone(), metrics.connect.clone()).unwrap();
        self.ctx = Arc::new(Context::new(
            self.kube.clone(),
            Some(connect),
            self.settings.clone(),
            metrics,
        ));
        self.task = tokio::spawn(wiring::run(self.ctx.clone()));
    }

    pub fn items(&self) -> Api<OnePasswordItem> {
        Api::namespaced(self.kube.clone(), &self.ns)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.kube.clone(), &self.ns)
    }

    pub fn admin(&self) -> SimAdmin {
        self.sim.admin()
    }

    pub async fn create(&self, name: &str, path: &str) -> OnePasswordItem {
        self.create_with(name, path, |_| {}).await
    }

    pub async fn create_with(
        &self,
        name: &str,
        path: &str,
        edit: impl FnOnce(&mut OnePasswordItem),
    ) -> OnePasswordItem {
        let mut opi = OnePasswordItem::new(name, OnePasswordItemSpec::item(path));
        edit(&mut opi);
        self.items().create(&PostParams::default(), &opi).await.unwrap()
    }

    pub async fn item_id(&self, title: &str) -> String {
        self.writer
            .list_items(&self.vault_id, Some(&Filter::title_eq(title)))
            .await
            .unwrap()[0]
            .id
            .clone()
    }

    /// Sets the value of the item's field with this label, as a 1Password user would.
    pub async fn set_field(&self, title: &str, label: &str, new_value: &str) {
        let id = self.item_id(title).await;
        let item = self.writer.get_item(&self.vault_id, &id).await.unwrap();
        let field = item.fields.iter().find(|f| f.label == label).unwrap();
        let op = PatchOp::replace(format!("/fields/{}/value", field.id), json!(new_value));
        self.writer.patch_item(&self.vault_id, &id, &[op]).await.unwrap();
    }

    pub async fn patch_item(&self, title: &str, ops: &[PatchOp]) {
        let id = self.item_id(title).await;
        self.writer.patch_item(&self.vault_id, &id, ops).await.unwrap();
    }

    /// Waits until the Secret exists and satisfies `check`.
    pub async fn secret_where(&self, name: &str, timeout: Duration, check: impl Fn(&Secret) -> bool) -> Secret {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(secret) = self.secrets().get_opt(name).await.unwrap()
                && check(&secret)
            {
                return secret;
            }
            assert!(
                Instant::now() < deadline,
                "Secret {name} did not reach the expected state in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn secret(&self, name: &str) -> Secret {
        self.secret_where(name, Duration::from_secs(20), |_| true).await
    }

    /// Waits until the Ready condition has this reason, and returns the object.
    pub async fn ready_reason(&self, name: &str, reason: &str) -> OnePasswordItem {
        self.condition_reason(name, "Ready", reason).await
    }

    /// Waits until the condition `type_` has this reason, and returns the object.
    pub async fn condition_reason(&self, name: &str, type_: &str, reason: &str) -> OnePasswordItem {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let opi = self.items().get(name).await.unwrap();
            if condition(&opi, type_).and_then(|c| c.reason.as_deref()) == Some(reason) {
                return opi;
            }
            assert!(
                Instant::now() < deadline,
                "{name}'s {type_} never became {reason}: {:?}",
                opi.status
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn events_for(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.kube.clone(), &self.ns);
        let all = events.list(&ListParams::default()).await.unwrap().items;
        all.into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    pub async fn wait_for_event(&self, name: &str, reason: &str) -> Event {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(event) = self
                .events_for(name)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
            {
                return event;
            }
            assert!(Instant::now() < deadline, "no {reason} Event for {name}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every Ready reason one OnePasswordItem shows from now on, as a watch sees them.
pub struct ReadyReasons {
    reasons: Arc<std::sync::Mutex<Vec<String>>>,
    watch: tokio::task::JoinHandle<()>,
}

impl ReadyReasons {
    pub fn watch(items: &Api<OnePasswordItem>, name: &str) -> Self {
        let reasons = Arc::new(std::sync::Mutex::new(Vec::new()));
        let watch = {
            let (items, reasons) = (items.clone(), reasons.clone());
            let config = kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}"));
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(kube::runtime::watcher(items, config).applied_objects());
                while let Some(Ok(opi)) = stream.next().await {
                    if let Some((reason, _)) = ready_reason_and_message(&opi) {
                        reasons.lock().unwrap().push(reason);
                    }
                }
            })
        };
        Self { reasons, watch }
    }

    /// Stops watching: the reasons seen, in order.
    pub fn stop(self) -> Vec<String> {
        self.watch.abort();
        self.reasons.lock().unwrap().clone()
    }
}

/// Creates the OnePasswordItem and waits until its Ready reason is `Synced`.
pub async fn create_until_synced(items: &Api<OnePasswordItem>, opi: &OnePasswordItem, timeout: Duration) {
    let name = opi.metadata.name.clone().unwrap_or_default();
    items.create(&PostParams::default(), opi).await.unwrap();
    super::wait_for(&format!("{name} synced"), timeout, async || {
        ready_reason_and_message(&items.get(&name).await.unwrap()).filter(|(reason, _)| reason == "Synced")
    })
    .await;
}

pub fn ready(opi: &OnePasswordItem) -> Option<&ItemCondition> {
    condition(opi, "Ready")
}

/// The Ready condition's reason and message, once it has a reason.
pub fn ready_reason_and_message(opi: &OnePasswordItem) -> Option<(String, String)> {
    let ready = ready(opi)?;
    Some((ready.reason.clone()?, ready.message.clone().unwrap_or_default()))
}

pub fn ready_message(opi: &OnePasswordItem) -> &str {
    ready(opi).and_then(|c| c.message.as_deref()).unwrap_or_default()
}

pub fn condition<'a>(opi: &'a OnePasswordItem, type_: &str) -> Option<&'a ItemCondition> {
    opi.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

pub fn data(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

pub fn value(secret: &Secret, key: &str) -> Option<String> {
    data(secret).get(key).cloned()
}
