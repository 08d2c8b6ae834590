//! The one-node cluster as users live in it: how long the node takes to start, how long a pod
//! takes to start and read a synced Secret, and how long an item change in Connect takes to
//! reach the file a running pod has mounted, with the operator installed by the chart and
//! running as a pod at the chart's default polling interval. Writes
//! `docs/benchmarks-node.md`, which `benches/operator.rs` puts into `docs/benchmarks.md`.
//! Run with `scripts/bench`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{Api, LogParams, PostParams};
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::connect::{ConnectClient, ConnectConfig, Filter};
use onepassword_operator::crd::OnePasswordItem;
use opo_testenv::in_cluster::{Helm, deploy_simulator, from_json, secret_reader_pod};
use opo_testenv::local_cluster::{ControlPlaneBinaries, create_namespace};
use opo_testenv::node::{Images, OneNodeCluster};
use secrecy::SecretString;
use serde_json::json;

/// Node starts measured (each from nothing, torn down after).
const STARTS: usize = 5;
/// Pods started one after another.
const PODS: usize = 10;
/// Item changes, one after another, each waited for inside the pod.
const CHANGES: usize = 8;
/// The chart's default `operator.pollingInterval`.
const CHART_POLLING_INTERVAL: u64 = 10;
const NAMESPACE: &str = "bench";

/// Cores and CPU model, from `/proc/cpuinfo`.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim);
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    format!("{cores} cores ({model})")
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn wait<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn last_line(pods: &Api<Pod>, name: &str) -> Option<String> {
    let params = LogParams {
        tail_lines: Some(1),
        ..LogParams::default()
    };
    pods.logs(name, &params).await.ok()?.lines().last().map(str::to_owned)
}

/// A pod that prints its mounted `password` ten times a second.
fn reader_pod(name: &str) -> Pod {
    secret_reader_pod(
        name,
        "database",
        "while true; do cat /secret/password; echo; sleep 0.1; done",
    )
}

#[tokio::main]
async fn main() {
    let root = opo_testenv::repo_root();
    let binaries = ControlPlaneBinaries::locate(&root).unwrap_or_else(|e| panic!("{e}"));
    let images = Images::locate().unwrap_or_else(|e| panic!("{e}"));

    let mut starts = Vec::new();
    for round in 0..STARTS {
        let node = OneNodeCluster::start(&binaries, &images).await.unwrap();
        eprintln!("node start {round}: Ready in {:.1?}", node.startup);
        starts.push(node.startup.as_secs_f64());
        drop(node);
    }

    let node = OneNodeCluster::start(&binaries, &images).await.unwrap();
    let client = node.control_plane.admin_client().unwrap();
    let sim = deploy_simulator(&client, None).await.unwrap();
    let helm = Helm::new(binaries.path("helm"), &node, &root);
    let installed_at = Instant::now();
    helm.install_operator(&client, &sim.in_cluster_url, "demo-operator-token", &[])
        .await
        .unwrap();
    let install_seconds = installed_at.elapsed().as_secs_f64();

    create_namespace(&client, NAMESPACE).await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    wait("the ServiceAccount", async || {
        accounts.get_opt("default").await.ok().flatten()
    })
    .await;
    let items: Api<OnePasswordItem> = Api::namespaced(client.clone(), NAMESPACE);
    items
        .create(
            &PostParams::default(),
            &from_json(json!({
                "apiVersion": "onepassword.com/v1",
                "kind": "OnePasswordItem",
                "metadata": { "name": "database" },
                "spec": { "itemPath": "vaults/Demo/items/Database" },
            })),
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    wait("the Secret", async || secrets.get_opt("database").await.ok().flatten()).await;

    // Pod start: created until its container has printed the mounted value.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut pod_starts = Vec::new();
    for i in 0..PODS {
        let name = format!("reader-{i}");
        let created = Instant::now();
        pods.create(&PostParams::default(), &reader_pod(&name)).await.unwrap();
        wait("the pod's first line", async || last_line(&pods, &name).await).await;
        pod_starts.push(created.elapsed().as_secs_f64());
    }

    // Propagation into the running pod (reader-0): the item changes in Connect, until the pod
    // prints the new value; and, on the way, until the Secret holds it.
    let writer = ConnectClient::new(ConnectConfig::new(
        sim.url.clone(),
        SecretString::from("demo-admin-token"),
    ))
    .unwrap();
    let vault = writer
        .list_vaults(Some(&Filter::name_eq("Demo")))
        .await
        .unwrap()
        .remove(0);
    let item = writer
        .list_items(&vault.id, Some(&Filter::title_eq("Database")))
        .await
        .unwrap()
        .remove(0);
    let (mut to_secret, mut to_pod) = (Vec::new(), Vec::new());
    for change in 0..CHANGES {
        let value = format!("rotated-{change}");
        let changed = Instant::now();
        let op = PatchOp::replace("/fields/password/value", json!(value));
        writer.patch_item(&vault.id, &item.id, &[op]).await.unwrap();
        let mut secret_seen = None;
        wait("the new value in the pod", async || {
            if secret_seen.is_none() {
                let secret = secrets.get("database").await.ok()?;
                let current = secret.data?.get("password").map(|v| v.0.clone());
                if current.as_deref() == Some(value.as_bytes()) {
                    secret_seen = Some(changed.elapsed().as_secs_f64());
                }
            }
            (last_line(&pods, "reader-0").await.as_deref() == Some(value.as_str())).then_some(())
        })
        .await;
        to_pod.push(changed.elapsed().as_secs_f64());
        to_secret.push(secret_seen.unwrap_or(f64::NAN));
        eprintln!(
            "change {change}: Secret {:.1?} s, pod {:.1?} s",
            to_secret[change], to_pod[change]
        );
        // Each change is seen right after a poll; waiting a different time after each makes
        // the next one fall at a different point of the polling cycle, as changes come in
        // real life (evenly spread over the cycle).
        let cycle_ms = CHART_POLLING_INTERVAL * 1000;
        let pause_ms = (change as u64 * cycle_ms / CHANGES as u64 + cycle_ms - 1_700) % cycle_ms;
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
    let memory: Vec<String> = node
        .rss_kib()
        .into_iter()
        .map(|(name, kib)| format!("{name} {:.0}", kib.unwrap_or(0) as f64 / 1024.0))
        .collect();
    drop(node);

    let mut md = String::new();
    let _ = writeln!(md, "## A real one-node cluster (`benches/node.rs`)\n");
    let _ = writeln!(
        md,
        "The cluster of the end-to-end tests and the demo: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a kubelet on containerd + runc, kube-proxy and CoreDNS, all local processes. The operator runs as a pod installed by the chart, from the image `scripts/image` builds, at the chart's default polling interval ({CHART_POLLING_INTERVAL} s); the simulator runs as a pod behind a Service.\n"
    );
    let _ = writeln!(md, "Machine: {}.\n", machine());
    let _ = writeln!(md, "| what | p50 | p95 / max | samples |\n|---|---|---|---|");
    let row = |md: &mut String, what: &str, values: &[f64]| {
        let _ = writeln!(
            md,
            "| {what} | {:.1} s | {:.1} s | {} |",
            percentile(values, 0.5),
            percentile(values, 0.95),
            values.len()
        );
    };
    row(
        &mut md,
        "start from nothing until the node is Ready (CoreDNS and kube-proxy serving)",
        &starts,
    );
    row(
        &mut md,
        "a pod created until its container prints the Secret it mounts",
        &pod_starts,
    );
    row(
        &mut md,
        "an item changed in Connect until its Secret holds the new value",
        &to_secret,
    );
    row(
        &mut md,
        "an item changed in Connect until the running pod reads the new value from its mounted file",
        &to_pod,
    );
    let _ = writeln!(
        md,
        "\n`helm install --wait` until the operator's pod is Ready: {install_seconds:.1} s (its readiness probe runs every 10 s). Resident memory at the end (MiB): {}. The kubelet refreshes mounted Secrets at each pod sync (`syncFrequency: 1s` here; a kubelet's default is 1 min, which adds up to a minute in a real cluster). Goal: propagation into the pod p95 ≤ polling interval + 3 s = {} s.",
        memory.join(", "),
        CHART_POLLING_INTERVAL + 3
    );
    let docs = root.join("docs");
    std::fs::write(docs.join("benchmarks-node.md"), &md).unwrap();
    println!("{md}");
}
