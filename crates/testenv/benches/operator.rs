//! The operator against the local control plane and the simulator, at several sizes, next to
//! the physical limit measured in the same run. Writes `docs/benchmarks.json` and
//! `docs/benchmarks.md`. Run with `scripts/bench` (which also draws the plot).
//!
//! Sizes: `OPO_BENCH_SIZES` (default `100,1000,10000`), spread over 5 vaults.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connect_sim::{self as sim, DataFile, SimConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::connect::{ConnectClient, ConnectConfig, Filter, RetryPolicy};
use onepassword_operator::crd::{OnePasswordItem, OnePasswordItemSpec};
use opo_testenv::load::timed_writes;
use opo_testenv::local_cluster::{self, Identity, LocalCluster};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::json;

const VAULTS: usize = 5;
const CONCURRENCY: usize = 16;
const POLLING_INTERVAL: Duration = Duration::from_secs(2);
const CHANGES: usize = 100;
/// Items changed at once in the mass rotation, run at every N at least this large.
const ROTATION: usize = 6_000;

#[derive(Debug, Serialize, serde::Deserialize)]
struct Sample {
    resources: usize,
    limit_seconds: f64,
    sync_seconds: f64,
    ratio_to_limit: f64,
    idle_calls_per_poll: f64,
    idle_cpu_ms_per_poll: f64,
    propagation_p50_ms: f64,
    propagation_p95_ms: f64,
    drift_p50_ms: f64,
    drift_p95_ms: f64,
    peak_rss_mib: f64,
    /// Apiserver requests per resource during the initial sync, by verb and resource: the
    /// operator's run (creating the OnePasswordItems included) and the limit's.
    sync_requests_per_resource: BTreeMap<String, f64>,
    limit_requests_per_resource: BTreeMap<String, f64>,
    /// How long the benchmark took to create the N OnePasswordItems, within `sync_seconds`.
    #[serde(default)]
    create_seconds: f64,
    /// CPU milliseconds per resource by process (etcd, kube-apiserver, operator) during the
    /// operator's sync and during the limit.
    #[serde(default)]
    sync_cpu_ms_per_resource: BTreeMap<String, f64>,
    #[serde(default)]
    limit_cpu_ms_per_resource: BTreeMap<String, f64>,
    /// Creating the N OnePasswordItems with no operator running: the floor of any sync.
    #[serde(default)]
    create_only_seconds: f64,
    #[serde(default)]
    create_only_cpu_ms_per_resource: BTreeMap<String, f64>,
    /// Connect calls per resource during the initial sync (resources name vault and item by
    /// title), counted by the simulator; the polls in that time included.
    #[serde(default)]
    sync_connect_calls_per_resource: f64,
    /// A plain client doing only the essential writes (create, Secret, status) for N.
    #[serde(default)]
    essential_seconds: f64,
    /// A new operator process after the first one stopped, with nothing changed: until it
    /// has reconciled every resource once.
    #[serde(default)]
    restart_seconds: f64,
    #[serde(default)]
    restart_connect_calls: f64,
    /// Writes to Secrets and to OnePasswordItems (status) in that time.
    #[serde(default)]
    restart_secret_writes: f64,
    #[serde(default)]
    restart_item_writes: f64,
    /// The initial sync again, in a new namespace with a new operator, for resources that
    /// name their vault and item by id.
    #[serde(default)]
    sync_by_id_seconds: f64,
    #[serde(default)]
    sync_by_id_connect_calls_per_resource: f64,
    /// `ROTATION` items changed at once in Connect: until every one of their Secrets holds
    /// the new value, the operator's Connect calls in that time, and a plain client
    /// server-side-applying the same Secrets with the new values.
    #[serde(default)]
    rotation_items: usize,
    #[serde(default)]
    rotation_seconds: f64,
    #[serde(default)]
    rotation_connect_calls: f64,
    #[serde(default)]
    rotation_plain_seconds: f64,
}

/// Writes (create, apply, patch, update, delete) to one resource kind between two snapshots.
fn writes(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, resource: &str) -> f64 {
    after
        .iter()
        .filter(|(key, _)| {
            key.split_once(' ')
                .is_some_and(|(verb, r)| r == resource && ["POST", "APPLY", "PATCH", "PUT", "DELETE"].contains(&verb))
        })
        .map(|(key, value)| value - before.get(key).copied().unwrap_or(0.0))
        .sum()
}

/// `apiserver_request_total` by verb and resource.
async fn apiserver_requests(client: &Client) -> BTreeMap<String, f64> {
    local_cluster::apiserver_request_counts(client).await.unwrap()
}

/// Requests per resource between two snapshots, leaving out what is under 0.05.
fn per_resource(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, n: usize) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), (v - before.get(k).copied().unwrap_or(0.0)) / n as f64))
        .filter(|(_, v)| *v >= 0.05)
        .collect()
}

fn data(n: usize) -> String {
    let mut yaml = String::from(
        "tokens:\n  - { name: operator, token: op-token, vaults: { \"*\": read } }\n  - { name: writer, token: writer-token, vaults: { \"*\": read-write } }\nvaults:\n",
    );
    for v in 0..VAULTS {
        let _ = writeln!(yaml, "  - name: V{v}\n    items:");
        for i in (v..n).step_by(VAULTS) {
            let _ = writeln!(
                yaml,
                "      - {{ title: item-{i}, fields: [{{ label: username, value: user-{i} }}, {{ id: password, label: password, value: initial-{i} }}] }}"
            );
        }
    }
    yaml
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if values.is_empty() {
        return f64::NAN;
    }
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

async fn namespace(client: &Client, name: &str) {
    local_cluster::create_namespace(client, name).await.unwrap();
}

/// The first write of a custom resource after the API server starts waits about 2 s (seen
/// with kube-apiserver v1.37); one throwaway OnePasswordItem, before any clock starts, keeps
/// that one-time cost out of the figures.
async fn warm_up(client: &Client, ns: &str) {
    let items: Api<OnePasswordItem> = Api::namespaced(client.clone(), ns);
    let opi = OnePasswordItem::new("warm-up", OnePasswordItemSpec::item("vaults/V0/items/item-0"));
    items.create(&PostParams::default(), &opi).await.unwrap();
    items.delete("warm-up", &Default::default()).await.unwrap();
}

/// CPU seconds so far of etcd, kube-apiserver and the operator.
fn cpu_by_process(cluster: &LocalCluster, operator: Option<&Operator>) -> [f64; 3] {
    let (etcd, apiserver) = cluster.cpu_seconds();
    [
        etcd.unwrap_or(0.0),
        apiserver.unwrap_or(0.0),
        operator.map(|o| o.cpu_seconds()).unwrap_or(0.0),
    ]
}

/// CPU milliseconds per resource between two readings, by process.
fn cpu_ms_per_resource(before: [f64; 3], after: [f64; 3], n: usize) -> BTreeMap<String, f64> {
    ["etcd", "kube-apiserver", "operator"]
        .iter()
        .zip(before.iter().zip(after))
        .map(|(name, (b, a))| (name.to_string(), (a - b) * 1000.0 / n as f64))
        .collect()
}

/// The item path of resource `i`, by vault name and item title.
fn path_by_title(i: usize) -> String {
    format!("vaults/V{}/items/item-{i}", i % VAULTS)
}

/// The item path of every resource by vault and item id, read from the simulator's store.
fn paths_by_id(sim: &sim::RunningSimulator, n: usize) -> Vec<String> {
    let store = sim.state.store.read().unwrap();
    (0..n)
        .map(|i| {
            let (vault_id, item_id) = ids(&store, i);
            format!("vaults/{vault_id}/items/{item_id}")
        })
        .collect()
}

/// The vault id and item id of item `i` in the simulator's store.
fn ids(store: &sim::store::Store, i: usize) -> (String, String) {
    let vault_id = store.vault_id_of(&format!("V{}", i % VAULTS)).unwrap();
    let title = format!("item-{i}");
    let item_id = store.vaults[&vault_id]
        .items
        .values()
        .find(|stored| stored.item.title == title)
        .map(|stored| stored.item.id.clone())
        .unwrap();
    (vault_id, item_id)
}

/// Creates N OnePasswordItems, `CONCURRENCY` at a time, as a user's tooling would.
async fn create_items(items: &Api<OnePasswordItem>, n: usize, path: impl Fn(usize) -> String) {
    timed_writes(n, CONCURRENCY, |i| {
        let items = items.clone();
        let path = path(i);
        async move {
            let opi = OnePasswordItem::new(&format!("item-{i}"), OnePasswordItemSpec::item(path));
            items.create(&PostParams::default(), &opi).await.unwrap();
        }
    })
    .await;
}

/// The Secret a plain client writes for resource `i`.
fn plain_secret(
    i: usize,
    password: String,
    owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("item-{i}")),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([
            ("username".to_string(), format!("user-{i}")),
            ("password".to_string(), password),
        ])),
        ..Secret::default()
    }
}

/// The physical limit: a plain client server-side-applying N Secrets as fast as it can.
async fn limit(client: &Client, n: usize) -> Duration {
    let ns = format!("limit-{n}");
    namespace(client, &ns).await;
    apply_plain_secrets(client, &ns, n, |i| format!("initial-{i}")).await
}

/// A plain client server-side-applying Secrets `item-0` to `item-{n-1}` in `ns`, timed.
async fn apply_plain_secrets(client: &Client, ns: &str, n: usize, password: impl Fn(usize) -> String) -> Duration {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    timed_writes(n, CONCURRENCY, |i| {
        let api = api.clone();
        let secret = plain_secret(i, password(i), None);
        async move {
            let params = PatchParams::apply("bench").force();
            api.patch(&format!("item-{i}"), &params, &Patch::Apply(&secret))
                .await
                .unwrap();
        }
    })
    .await
}

/// The essential writes of the operator's workload, by a plain client with the same
/// concurrency: per resource, the user's create of the OnePasswordItem, the apply of its
/// Secret and the status patch that says Ready. No operator can do with less.
async fn essential_writes(client: &Client, n: usize) -> Duration {
    let ns = format!("essential-{n}");
    namespace(client, &ns).await;
    warm_up(client, &ns).await;
    let items: Api<OnePasswordItem> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    timed_writes(n, CONCURRENCY, |i| {
        let (items, secrets) = (items.clone(), secrets.clone());
        async move {
            let name = format!("item-{i}");
            let opi = OnePasswordItem::new(&name, OnePasswordItemSpec::item(path_by_title(i)));
            let created = items.create(&PostParams::default(), &opi).await.unwrap();
            let secret = plain_secret(i, format!("initial-{i}"), created.controller_owner_ref(&()));
            secrets
                .patch(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&secret))
                .await
                .unwrap();
            let status = serde_json::json!({ "status": {
                "conditions": [{ "type": "Ready", "status": "True", "reason": "Synced" }],
                "itemVersion": 1,
            } });
            items
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
        }
    })
    .await
}

struct Operator {
    child: Child,
    metrics: String,
}

impl Drop for Operator {
    /// SIGTERM to the operator's process group (a profiler wrapper and the operator under it),
    /// so that both end and a profiler writes its data; SIGKILL after 10 s.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Operator {
    /// Peak resident memory so far, in KiB.
    fn peak_rss_kib(&self) -> f64 {
        local_cluster::proc_memory_kib(self.child.id(), "VmHWM").unwrap_or(0) as f64
    }

    /// User + system CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        local_cluster::proc_cpu_seconds(self.child.id()).unwrap_or(0.0)
    }

    /// The sum of a counter of `/metrics`, over its labels.
    async fn counter(&self, name: &str) -> f64 {
        let Ok(response) = reqwest::get(&self.metrics).await else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn polls(&self) -> f64 {
        self.counter("onepassword_operator_polls_total").await
    }

    async fn reconciles(&self) -> f64 {
        self.counter("onepassword_operator_reconciles_total").await
    }

    async fn wait_polls(&self, more: f64) {
        let target = self.polls().await + more;
        while self.polls().await < target {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The operator binary, or `$OPO_BENCH_OPERATOR_WRAPPER` (a profiler such as
/// `heaptrack -o /tmp/operator`) with the binary as its argument. A wrapped run measures the
/// wrapper's memory and CPU too: for profiles, not for figures.
fn operator_command() -> Command {
    // The release binary, built by scripts/bench before this runs.
    let binary = std::env::var("OPO_OPERATOR_BIN").unwrap_or_else(|_| {
        opo_testenv::repo_root()
            .join("target/release/onepassword-operator")
            .display()
            .to_string()
    });
    match std::env::var("OPO_BENCH_OPERATOR_WRAPPER") {
        Ok(wrapper) if !wrapper.trim().is_empty() => {
            let mut words = wrapper.split_whitespace();
            let mut command = Command::new(words.next().unwrap());
            command.args(words).arg(binary);
            command
        }
        _ => Command::new(binary),
    }
}

/// The operator's log goes to `$OPO_BENCH_OPERATOR_LOG_DIR/operator-N.log` when that is set
/// (with `OPO_BENCH_OPERATOR_LOG_LEVEL` for more than warnings), else to the bench's stderr.
fn operator_log(n: usize) -> Stdio {
    match std::env::var_os("OPO_BENCH_OPERATOR_LOG_DIR") {
        Some(dir) => std::fs::File::create(Path::new(&dir).join(format!("operator-{n}.log")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::inherit()),
        None => Stdio::inherit(),
    }
}

/// Secret name → the password it should get, and since when.
type Pending = HashMap<String, (String, Instant)>;

/// Records, per Secret, when its `password` becomes the expected value (latencies in ms).
#[derive(Clone, Default)]
struct Expectations(Arc<Mutex<(Pending, Vec<f64>)>>);

impl Expectations {
    fn expect(&self, secret: &str, password: &str) {
        self.0
            .lock()
            .unwrap()
            .0
            .insert(secret.to_owned(), (password.to_owned(), Instant::now()));
    }

    fn seen(&self, secret: &Secret) {
        let password = secret
            .data
            .as_ref()
            .and_then(|d| d.get("password"))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned());
        let mut guard = self.0.lock().unwrap();
        let (pending, latencies) = &mut *guard;
        if let Some((want, since)) = pending.get(&secret.name_any())
            && password.as_deref() == Some(want.as_str())
        {
            latencies.push(since.elapsed().as_secs_f64() * 1000.0);
            pending.remove(&secret.name_any());
        }
    }

    /// The latencies once `count` are in, or whatever is in after `timeout`.
    async fn latencies(&self, count: usize, timeout: Duration) -> Vec<f64> {
        let deadline = Instant::now() + timeout;
        while self.0.lock().unwrap().1.len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::mem::take(&mut self.0.lock().unwrap().1)
    }
}

/// Starts the operator on namespace `ns` and waits until it is up, as it would be in a cluster.
async fn spawn_operator(kubeconfig: &Path, sim: &sim::RunningSimulator, ns: &str, n: usize) -> Operator {
    let (metrics_port, probes_port) = (local_cluster::free_port().unwrap(), local_cluster::free_port().unwrap());
    let operator = Operator {
        child: operator_command()
            .process_group(0)
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("OP_CONNECT_HOST", sim.url().as_str())
            .env("OP_CONNECT_TOKEN", "op-token")
            .env("WATCH_NAMESPACE", ns)
            .env("POLLING_INTERVAL", POLLING_INTERVAL.as_secs().to_string())
            .env("OP_CONCURRENCY", CONCURRENCY.to_string())
            .env(
                "LOG_LEVEL",
                std::env::var("OPO_BENCH_OPERATOR_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
            )
            .env("METRICS_BIND_ADDRESS", format!("127.0.0.1:{metrics_port}"))
            .env("HEALTH_PROBE_BIND_ADDRESS", format!("127.0.0.1:{probes_port}"))
            .stdout(Stdio::null())
            .stderr(operator_log(n))
            .spawn()
            .unwrap(),
        metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
    };
    let readyz = format!("http://127.0.0.1:{probes_port}/readyz");
    while !reqwest::get(&readyz).await.is_ok_and(|r| r.status().is_success()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    operator
}

/// Creates N OnePasswordItems and waits until every one is Ready, counted with a watch as a
/// user's tooling would: the time the creates took, and the time until all were Ready.
async fn create_until_ready(
    items: &Api<OnePasswordItem>,
    n: usize,
    path: impl Fn(usize) -> String,
) -> (Duration, Duration) {
    let ready = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let watch_ready = {
        let (items, ready) = (items.clone(), ready.clone());
        tokio::spawn(async move {
            let mut stream = watcher::watcher(items, watcher::Config::default()).boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                if let Event::Apply(o) | Event::InitApply(o) = event {
                    let is_ready = o
                        .status
                        .as_ref()
                        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                    if is_ready {
                        ready.lock().unwrap().insert(o.name_any());
                    }
                }
            }
        })
    };
    let started = Instant::now();
    create_items(items, n, path).await;
    let created = started.elapsed();
    while ready.lock().unwrap().len() < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sync = started.elapsed();
    watch_ready.abort();
    (created, sync)
}

/// `ROTATION` items changed at once in the simulator's store (one write lock), then the time
/// until every one of their Secrets holds the new value, and the Connect calls meanwhile.
async fn mass_rotation(sim: &sim::RunningSimulator, expectations: &Expectations) -> (Duration, f64) {
    sim.admin().reset_stats().await.unwrap();
    let rotated = |i: usize| format!("rotated-{i}");
    let targets: Vec<(String, String)> = {
        let store = sim.state.store.read().unwrap();
        (0..ROTATION).map(|i| ids(&store, i)).collect()
    };
    for i in 0..ROTATION {
        expectations.expect(&format!("item-{i}"), &rotated(i));
    }
    {
        let mut store = sim.state.store.write().unwrap();
        for (i, (vault_id, item_id)) in targets.iter().enumerate() {
            let op = PatchOp::replace("/fields/password/value", json!(rotated(i)));
            store.patch_item(vault_id, item_id, &[op], "bench").unwrap();
        }
    }
    let latencies = expectations.latencies(ROTATION, Duration::from_secs(600)).await;
    assert_eq!(
        latencies.len(),
        ROTATION,
        "every rotated Secret follows within 10 minutes"
    );
    let slowest = latencies.iter().copied().fold(0.0, f64::max);
    let calls = sim.admin().stats().await.unwrap().total as f64;
    (Duration::from_secs_f64(slowest / 1000.0), calls)
}

/// The apiserver's request counts once the operator has sent the `Created` Event of each of
/// the N resources: Events wait for a burst to end (src/events.rs), after the clock stopped,
/// but they are part of what the sync costs. 30 s at most.
async fn events_sent(client: &Client, before: &BTreeMap<String, f64>, n: usize) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = apiserver_requests(client).await;
        let events =
            counts.get("POST events").copied().unwrap_or(0.0) - before.get("POST events").copied().unwrap_or(0.0);
        if events >= n as f64 || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_size(cluster: &LocalCluster, kubeconfig: &Path, n: usize) -> Sample {
    let client = cluster.admin_client().unwrap();
    let sim = sim::start(
        SimConfig::new(DataFile::parse(&data(n)).unwrap()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let before_limit = apiserver_requests(&client).await;
    let cpu_before_limit = cpu_by_process(cluster, None);
    let limit = limit(&client, n).await;
    let limit_cpu = cpu_ms_per_resource(cpu_before_limit, cpu_by_process(cluster, None), n);
    let limit_requests = per_resource(&before_limit, &apiserver_requests(&client).await, n);
    eprintln!("  N={n}: raw server-side apply of {n} Secrets took {limit:.1?}");

    // The floor of any operator's run: creating the N OnePasswordItems, with nobody watching.
    let ns_floor = format!("create-only-{n}");
    namespace(&client, &ns_floor).await;
    warm_up(&client, &ns_floor).await;
    let cpu_before_floor = cpu_by_process(cluster, None);
    let floor_started = Instant::now();
    create_items(&Api::namespaced(client.clone(), &ns_floor), n, path_by_title).await;
    let create_only = floor_started.elapsed();
    let create_only_cpu = cpu_ms_per_resource(cpu_before_floor, cpu_by_process(cluster, None), n);
    eprintln!("  N={n}: creating {n} OnePasswordItems alone took {create_only:.1?}");
    let essential = essential_writes(&client, n).await;
    eprintln!("  N={n}: the essential writes (create, Secret, status) of {n} resources took {essential:.1?}");

    let ns = format!("bench-{n}");
    namespace(&client, &ns).await;
    warm_up(&client, &ns).await;
    let operator = spawn_operator(kubeconfig, &sim, &ns, n).await;

    let items: Api<OnePasswordItem> = Api::namespaced(client.clone(), &ns);
    let before_sync = apiserver_requests(&client).await;
    sim.admin().reset_stats().await.unwrap();
    let cpu_before_sync = cpu_by_process(cluster, Some(&operator));
    let (created, sync) = create_until_ready(&items, n, path_by_title).await;
    let sync_cpu = cpu_ms_per_resource(cpu_before_sync, cpu_by_process(cluster, Some(&operator)), n);
    let sync_requests = per_resource(&before_sync, &events_sent(&client, &before_sync, n).await, n);
    let sync_connect_calls = sim.admin().stats().await.unwrap().total as f64 / n as f64;
    eprintln!("  N={n}: operator synced {n} resources in {sync:.1?}");

    // Idle polls: Connect calls counted by the simulator, CPU from /proc.
    // Scraping /metrics costs the operator CPU too: sleep through the polls, count them after.
    operator.wait_polls(1.0).await;
    sim.admin().reset_stats().await.unwrap();
    let (cpu_before, polls_before) = (operator.cpu_seconds(), operator.polls().await);
    tokio::time::sleep(POLLING_INTERVAL * 10 + POLLING_INTERVAL / 2).await;
    let calls = sim.admin().stats().await.unwrap().total as f64;
    let cpu = operator.cpu_seconds() - cpu_before;
    let polls = operator.polls().await - polls_before;
    let idle_calls = calls / polls;
    let idle_cpu = cpu * 1000.0 / polls;

    // Propagation and drift repair, timed by a watch on the Secrets.
    let expectations = Expectations::default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let watch_secrets = {
        let (secrets, expectations) = (secrets.clone(), expectations.clone());
        tokio::spawn(async move {
            let mut stream = watcher::watcher(secrets, watcher::Config::default()).boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                if let Event::Apply(s) = event {
                    expectations.seen(&s);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut writer_config = ConnectConfig::new(sim.url(), SecretString::from("writer-token"));
    writer_config.retry = RetryPolicy::none();
    let writer = ConnectClient::new(writer_config).unwrap();
    let mut vault_ids = Vec::new();
    for v in 0..VAULTS {
        vault_ids.push(
            writer
                .list_vaults(Some(&Filter::name_eq(&format!("V{v}"))))
                .await
                .unwrap()
                .remove(0)
                .id,
        );
    }
    let step = (n / CHANGES).max(1);
    for c in 0..CHANGES {
        let i = (c * step) % n;
        let vault = &vault_ids[i % VAULTS];
        let item = writer
            .list_items(vault, Some(&Filter::title_eq(&format!("item-{i}"))))
            .await
            .unwrap()
            .remove(0);
        let value = format!("changed-{c}-{i}");
        expectations.expect(&format!("item-{i}"), &value);
        writer
            .patch_item(
                vault,
                &item.id,
                &[PatchOp::replace("/fields/password/value", json!(value))],
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut propagation = expectations.latencies(CHANGES, Duration::from_secs(120)).await;

    for c in 0..CHANGES {
        let i = (c * step + step / 2) % n;
        let name = format!("item-{i}");
        let current = secrets.get(&name).await.unwrap();
        let password = String::from_utf8_lossy(&current.data.as_ref().unwrap()["password"].0).into_owned();
        expectations.expect(&name, &password);
        let edit = json!({ "data": { "password": "aGFuZC1lZGl0" } });
        secrets
            .patch(&name, &PatchParams::default(), &Patch::Merge(&edit))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut drift = expectations.latencies(CHANGES, Duration::from_secs(120)).await;

    let (mut rotation, mut rotation_connect_calls, mut rotation_plain) = (Duration::ZERO, 0.0, Duration::ZERO);
    if n >= ROTATION {
        (rotation, rotation_connect_calls) = mass_rotation(&sim, &expectations).await;
        rotation_plain =
            apply_plain_secrets(&client, &format!("limit-{n}"), ROTATION, |i| format!("rotated-{i}")).await;
        eprintln!(
            "  N={n}: {ROTATION} items changed at once reached their Secrets in {rotation:.1?}; a plain client applies them in {rotation_plain:.1?}"
        );
    }
    watch_secrets.abort();
    let peak_rss_mib = operator.peak_rss_kib() / 1024.0;

    // A restart with nothing changed, as in a rolling upgrade: the first process ends, a new
    // one starts, and the clock runs until it has reconciled every resource once.
    drop(operator);
    let before_restart = apiserver_requests(&client).await;
    sim.admin().reset_stats().await.unwrap();
    let restart_started = Instant::now();
    let restarted = spawn_operator(kubeconfig, &sim, &ns, n).await;
    while restarted.reconciles().await < n as f64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restart = restart_started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_restart = apiserver_requests(&client).await;
    let restart_connect_calls = sim.admin().stats().await.unwrap().total as f64;
    drop(restarted);
    eprintln!(
        "  N={n}: a restart reconciled {n} resources in {restart:.1?} with {restart_connect_calls} Connect calls"
    );

    // The initial sync once more, for resources that name their vault and item by id.
    let ns_by_id = format!("by-id-{n}");
    namespace(&client, &ns_by_id).await;
    warm_up(&client, &ns_by_id).await;
    let operator = spawn_operator(kubeconfig, &sim, &ns_by_id, n).await;
    let paths = paths_by_id(&sim, n);
    sim.admin().reset_stats().await.unwrap();
    let (_, sync_by_id) =
        create_until_ready(&Api::namespaced(client.clone(), &ns_by_id), n, |i| paths[i].clone()).await;
    let sync_by_id_connect_calls = sim.admin().stats().await.unwrap().total as f64 / n as f64;
    drop(operator);
    eprintln!("  N={n}: {n} resources named by id synced in {sync_by_id:.1?}");

    let sample = Sample {
        resources: n,
        limit_seconds: limit.as_secs_f64(),
        sync_seconds: sync.as_secs_f64(),
        ratio_to_limit: limit.as_secs_f64() / sync.as_secs_f64(),
        idle_calls_per_poll: idle_calls,
        idle_cpu_ms_per_poll: idle_cpu,
        propagation_p50_ms: percentile(&mut propagation, 0.5),
        propagation_p95_ms: percentile(&mut propagation, 0.95),
        drift_p50_ms: percentile(&mut drift, 0.5),
        drift_p95_ms: percentile(&mut drift, 0.95),
        peak_rss_mib,
        create_seconds: created.as_secs_f64(),
        create_only_seconds: create_only.as_secs_f64(),
        create_only_cpu_ms_per_resource: create_only_cpu,
        sync_connect_calls_per_resource: sync_connect_calls,
        essential_seconds: essential.as_secs_f64(),
        restart_seconds: restart.as_secs_f64(),
        restart_connect_calls,
        restart_secret_writes: writes(&before_restart, &after_restart, "secrets"),
        restart_item_writes: writes(&before_restart, &after_restart, "onepassworditems"),
        sync_by_id_seconds: sync_by_id.as_secs_f64(),
        sync_by_id_connect_calls_per_resource: sync_by_id_connect_calls,
        rotation_items: if n >= ROTATION { ROTATION } else { 0 },
        rotation_seconds: rotation.as_secs_f64(),
        rotation_connect_calls,
        rotation_plain_seconds: rotation_plain.as_secs_f64(),
        sync_cpu_ms_per_resource: sync_cpu,
        limit_cpu_ms_per_resource: limit_cpu,
        sync_requests_per_resource: sync_requests,
        limit_requests_per_resource: limit_requests,
    };
    eprintln!("  N={n}: {sample:?}");
    sample
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = mem
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    format!("{cores} cores ({model}), {:.0} GiB memory", total / 1024.0 / 1024.0)
}

/// `machine` is where `samples` were measured.
fn markdown(samples: &[Sample], machine: &str) -> String {
    let mut md =
        String::from("# Benchmarks\n\nGenerated by `scripts/bench` (benches/operator.rs); do not edit by hand.\n\n");
    let _ = writeln!(md, "- Machine: {machine}");
    let _ = writeln!(
        md,
        "- Control plane: kube-apiserver v1.37.2 and etcd v3.7.3 as local processes (`scripts/control-plane-bins`); Connect: the project's simulator, in the benchmark process."
    );
    let _ = writeln!(
        md,
        "- Operator: release build, its own process, `OP_CONCURRENCY={CONCURRENCY}`, `POLLING_INTERVAL={}`; resources spread over {VAULTS} vaults, one item each.",
        POLLING_INTERVAL.as_secs()
    );
    let _ = writeln!(
        md,
        "- Physical limit: a plain kube client server-side-applying N Secrets with the same concurrency, in the same run."
    );
    md.push_str("\n| N | limit: apply N Secrets (s) | operator: N resources Ready (s) | ratio to limit | essential writes (s) | ratio to essential writes | Connect calls / resource, initial sync | idle Connect calls / poll | idle CPU / poll (ms) | propagation p50 / p95 (ms) | drift repair p50 / p95 (ms) | peak RSS (MiB) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in samples {
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.0} / {:.0} | {:.0} / {:.0} | {:.1} |",
            s.resources,
            s.limit_seconds,
            s.sync_seconds,
            s.ratio_to_limit,
            s.essential_seconds,
            s.essential_seconds / s.sync_seconds,
            s.sync_connect_calls_per_resource,
            s.idle_calls_per_poll,
            s.idle_cpu_ms_per_poll,
            s.propagation_p50_ms,
            s.propagation_p95_ms,
            s.drift_p50_ms,
            s.drift_p95_ms,
            s.peak_rss_mib
        );
    }
    let _ = writeln!(
        md,
        "\nA restart with nothing changed (a rolling upgrade): a new operator process, until it has reconciled every resource once; Connect calls counted by the simulator, writes by the apiserver. Goal: one listing per vault (plus one vault read each, the first poll), no write.\n\n| N | restart: every resource reconciled (s) | Connect calls | Secret writes | OnePasswordItem writes |\n|---|---|---|---|---|"
    );
    for s in samples {
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.0} | {:.0} | {:.0} |",
            s.resources, s.restart_seconds, s.restart_connect_calls, s.restart_secret_writes, s.restart_item_writes
        );
    }
    md.push_str(
        "\nThe initial sync's costs: Connect calls per resource counted by the simulator, once for resources that name vault and item by title and once, in a new namespace with a new operator, by id (the polls in that time included); apiserver requests per resource counted by the apiserver, the benchmark's creates included, until the operator has sent the Events of the sync (which wait for the burst to end, after every resource is Ready).\n\n| N | Connect calls / resource, by title | Connect calls / resource, by id | apiserver requests / resource | of which the operator's |\n|---|---|---|---|---|\n",
    );
    for s in samples {
        let requests: f64 = s.sync_requests_per_resource.values().sum();
        let creates = s
            .sync_requests_per_resource
            .get("POST onepassworditems")
            .copied()
            .unwrap_or(0.0);
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            s.resources,
            s.sync_connect_calls_per_resource,
            s.sync_by_id_connect_calls_per_resource,
            requests,
            requests - creates
        );
    }
    if samples.iter().any(|s| s.rotation_items > 0) {
        md.push_str(
            "\nMass rotation: that many items changed at once in Connect, until every one of their Secrets holds the new value (the wait for the next poll included), next to a plain client server-side-applying the same Secrets with the new values, in the same run.\n\n| N | items changed | operator: every Secret updated (s) | Connect calls | plain client: apply the same Secrets (s) | ratio to the plain client's rate |\n|---|---|---|---|---|---|\n",
        );
        for s in samples.iter().filter(|s| s.rotation_items > 0) {
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} | {:.0} | {:.2} | {:.2} |",
                s.resources,
                s.rotation_items,
                s.rotation_seconds,
                s.rotation_connect_calls,
                s.rotation_plain_seconds,
                s.rotation_plain_seconds / s.rotation_seconds
            );
        }
    }
    md.push_str("\n![initial sync time and peak memory against N](benchmarks.png)\n");
    if let Some(largest) = samples.last() {
        profile(&mut md, largest);
    }
    let _ = writeln!(
        md,
        "\nGoals: initial sync at ≥ 0.5× the raw apiserver rate, and at ≥ 0.8× the rate of a plain client doing only the essential writes (create, Secret, status); about N + 2V Connect calls on the initial sync whatever the naming; idle poll = {VAULTS} calls whatever N; propagation p95 ≤ interval + 2 s = {} ms; drift repair p95 ≤ 1000 ms; a restart with nothing changed makes no write; mass rotation at ≥ 0.7× the plain client's rate; peak RSS ≤ 64 MiB at 10,000 resources.",
        (POLLING_INTERVAL.as_secs() + 2) * 1000
    );
    // The figures of benches/writes.rs, benches/tenants.rs and benches/node.rs, when those have run.
    for page in [
        "docs/benchmarks-writes.md",
        "docs/benchmarks-tenants.md",
        "docs/benchmarks-node.md",
    ] {
        if let Ok(text) = std::fs::read_to_string(opo_testenv::repo_root().join(page)) {
            md.push('\n');
            md.push_str(&text);
        }
    }
    md
}

/// The initial sync of the largest N taken apart: time, CPU by process and apiserver
/// requests, for the limit, for creating the resources alone, and for the operator's run.
fn profile(md: &mut String, s: &Sample) {
    let n = s.resources;
    let _ = writeln!(md, "\n## Profile of the initial sync (N = {n})\n");
    md.push_str(
        "Three phases against the same apiserver, one after the other:\n\n\
         - **limit**: a plain client server-side-applies N Secrets;\n\
         - **create only**: the benchmark creates the N OnePasswordItems with no operator running: the floor of any operator's run, whose clock starts with the first create;\n\
         - **operator run**: the benchmark creates the N OnePasswordItems while the operator syncs them.\n\n\
         | | limit | create only | operator run |\n|---|---|---|---|\n",
    );
    let _ = writeln!(
        md,
        "| wall time (s) | {:.2} | {:.2} | {:.2} |",
        s.limit_seconds, s.create_only_seconds, s.sync_seconds
    );
    let _ = writeln!(
        md,
        "| ratio to the limit | 1.00 | {:.2} | {:.2} |",
        s.limit_seconds / s.create_only_seconds,
        s.ratio_to_limit
    );
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    for process in ["kube-apiserver", "etcd", "operator"] {
        let _ = writeln!(
            md,
            "| {process} CPU per resource (ms) | {:.2} | {:.2} | {:.2} |",
            get(&s.limit_cpu_ms_per_resource, process),
            get(&s.create_only_cpu_ms_per_resource, process),
            get(&s.sync_cpu_ms_per_resource, process)
        );
    }
    md.push_str(
        "\nApiserver requests per resource, counted by the apiserver itself (`apiserver_request_total`) between the start and the end of each phase; the operator's column includes the benchmark creating the OnePasswordItems, and the Events the operator sends once every resource is Ready (the CPU above is until then).\n\n| request | operator run | limit |\n|---|---|---|\n",
    );
    let keys: std::collections::BTreeSet<&String> = s
        .sync_requests_per_resource
        .keys()
        .chain(s.limit_requests_per_resource.keys())
        .collect();
    for key in keys {
        let _ = writeln!(
            md,
            "| {key} | {:.2} | {:.2} |",
            get(&s.sync_requests_per_resource, key),
            get(&s.limit_requests_per_resource, key)
        );
    }
    let total = |m: &BTreeMap<String, f64>| m.values().sum::<f64>();
    let (ours, limit) = (
        total(&s.sync_requests_per_resource),
        total(&s.limit_requests_per_resource),
    );
    let _ = writeln!(md, "| **total** | **{ours:.2}** | **{limit:.2}** |");
    let apiserver = |m: &BTreeMap<String, f64>| get(m, "kube-apiserver");
    // What the operator's run asked beyond the three essential writes, by request.
    let essential = [
        ("POST onepassworditems", 1.0),
        ("POST secrets", 1.0),
        ("APPLY secrets", 1.0),
        ("PATCH onepassworditems/status", 1.0),
    ];
    let mut secret_write: f64 = 0.0;
    let beyond: Vec<String> = s
        .sync_requests_per_resource
        .iter()
        .filter_map(|(key, count)| {
            let mut allowed = essential.iter().find(|(k, _)| k == key).map_or(0.0, |(_, n)| *n);
            if key.ends_with(" secrets") && (key.starts_with("POST") || key.starts_with("APPLY")) {
                // One Secret write per resource is essential, whether create or apply.
                allowed = (1.0 - secret_write).max(0.0);
                secret_write += count.min(allowed);
            }
            let extra = count - allowed;
            (extra >= 0.05).then(|| format!("{key} ({extra:.2})"))
        })
        .collect();
    let _ = writeln!(
        md,
        "\nThe apiserver's CPU is the bottleneck (it shares the 2 cores with etcd, the operator and the benchmark). \
         Creating a OnePasswordItem costs it {:.2} ms of CPU, about what applying a Secret costs ({:.2} ms). \
         Under this definition every operator needs at least three writes per resource: the benchmark's create, the Secret, and the status write that says Ready. \
         So none can pass about a third of the limit's rate here, and the 0.5 goal cannot be met as defined wherever those writes cost alike. \
         Beyond those three, this run made, per resource: {}. \
         The whole run costs the apiserver {:.1}× the limit's CPU per resource, and reaches {:.2} of the limit's rate. \
         Beyond the requests, the apiserver also encodes watch events, which the request count leaves out: \
         each OnePasswordItem changes twice (created, then its status), and each change goes to the operator's watch and to the benchmark's.",
        apiserver(&s.create_only_cpu_ms_per_resource),
        apiserver(&s.limit_cpu_ms_per_resource),
        if beyond.is_empty() {
            "nothing".to_owned()
        } else {
            beyond.join(", ")
        },
        apiserver(&s.sync_cpu_ms_per_resource) / apiserver(&s.limit_cpu_ms_per_resource),
        s.ratio_to_limit
    );
}

#[tokio::main]
async fn main() {
    let root = &opo_testenv::repo_root();
    let docs = root.join("docs");
    if std::env::var("OPO_BENCH_RENDER_ONLY").is_ok_and(|v| v == "1") {
        // Rewrite the page from the last figures, without measuring again.
        let samples: Vec<Sample> =
            serde_json::from_str(&std::fs::read_to_string(docs.join("benchmarks.json")).unwrap()).unwrap();
        // The figures were measured where the page says, not necessarily here.
        let page = std::fs::read_to_string(docs.join("benchmarks.md")).unwrap_or_default();
        let measured_on = page
            .lines()
            .find_map(|l| l.strip_prefix("- Machine: "))
            .map_or_else(machine, str::to_owned);
        std::fs::write(docs.join("benchmarks.md"), markdown(&samples, &measured_on)).unwrap();
        return;
    }
    let sizes: Vec<usize> = std::env::var("OPO_BENCH_SIZES")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("OPO_BENCH_SIZES is a comma-separated list of numbers")
        })
        .collect();
    let (cluster, _) = LocalCluster::start_with_crds(root)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    cluster.write_kubeconfig(&Identity::Admin, &kubeconfig).unwrap();
    let mut samples = Vec::new();
    for n in sizes {
        eprintln!("benchmarking N={n}");
        samples.push(run_size(&cluster, &kubeconfig, n).await);
    }
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("benchmarks.json"),
        serde_json::to_string_pretty(&samples).unwrap() + "\n",
    )
    .unwrap();
    let page = markdown(&samples, &machine());
    std::fs::write(docs.join("benchmarks.md"), &page).unwrap();
    println!("{page}");
}
