//! `onepassword-operator-demo`: the whole product on one machine, with no 1Password account
//! and no cluster of your own. It starts a one-node Kubernetes cluster (a kubelet on
//! containerd; `node.rs`), deploys the Connect simulator into it (example data), installs the
//! operator with the chart so that it runs as a pod, applies the example OnePasswordItems,
//! prints the synced Secrets with their values masked, starts an app pod that reads a
//! mounted Secret, changes an item through the Connect API and shows the change reach the
//! Secret and the running app, and repairs a hand-edited Secret.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, LogParams, Patch, PatchParams, PostParams};
use secrecy::SecretString;
use serde_json::json;

use crate::in_cluster::{Helm, OPERATOR_NAMESPACE, OPERATOR_SELECTOR, deploy_simulator, secret_reader_pod};
use crate::local_cluster::ControlPlaneBinaries;
use crate::node::{Images, NODE_NAME, OneNodeCluster};
use connect_sim::SimAdmin;
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::connect::{ConnectClient, ConnectConfig, Filter};
use onepassword_operator::crd::OnePasswordItem;

const NAMESPACE: &str = "demo";
const EXAMPLES: &str = include_str!("../../../examples/onepassworditems.yaml");

fn step(text: &str) {
    println!("\n== {text}");
}

/// `key = ******** (N bytes, sha256 ab12cd34)`: enough to see a change, nothing to read.
fn masked(secret: &Secret) -> Vec<String> {
    use sha2::{Digest, Sha256};
    secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| {
            let digest = Sha256::digest(&value.0);
            let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
            format!("    {key} = ******** ({} bytes, sha256 {short})", value.0.len())
        })
        .collect()
}

async fn wait<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn show_secrets(secrets: &Api<Secret>, items: &[OnePasswordItem]) -> Result<(), String> {
    for item in items {
        let secret = secrets.get(&item.name_any()).await.map_err(|e| e.to_string())?;
        let version = secret
            .annotations()
            .get(onepassword_operator::annotations::ITEM_VERSION)
            .cloned()
            .unwrap_or_default();
        println!(
            "  Secret {} (type {}, item version {version}):",
            item.name_any(),
            secret.type_.clone().unwrap_or_default()
        );
        for line in masked(&secret) {
            println!("{line}");
        }
    }
    Ok(())
}

/// What the app pod prints: a short hash and the size of the mounted password, never the value.
const APP_SCRIPT: &str = "while true; do echo \"password: sha256 $(sha256sum /secret/password | cut -c1-8) ($(wc -c < /secret/password) bytes)\"; sleep 1; done";

async fn app_says(pods: &Api<Pod>) -> Option<String> {
    let params = LogParams {
        tail_lines: Some(1),
        ..LogParams::default()
    };
    let log = pods.logs("app", &params).await.ok()?;
    log.lines().last().map(str::to_owned)
}

pub async fn run(repo_root: &Path) -> Result<(), String> {
    let started = Instant::now();
    step(
        "starting a one-node Kubernetes cluster: etcd, kube-apiserver, controller-manager, scheduler, kubelet on containerd, kube-proxy, CoreDNS",
    );
    let binaries = ControlPlaneBinaries::locate(repo_root)?;
    let node = OneNodeCluster::start(&binaries, &Images::locate()?).await?;
    let client = node.control_plane.admin_client()?;
    println!(
        "  node {NODE_NAME} Ready in {:.1?}; kube-apiserver at {}",
        node.startup, node.control_plane.server
    );

    step("deploying the Connect simulator in the cluster (a Deployment and a Service; examples/connect-data.yaml)");
    let sim = deploy_simulator(&client, None).await?;
    println!("  Connect API at {} ({} from the host)", sim.in_cluster_url, sim.url);

    step("installing the operator with Helm (charts/onepassword-operator), polling every 2 s");
    let helm = Helm::new(binaries.path("helm"), &node, repo_root);
    let installed_at = Instant::now();
    helm.install_operator(
        &client,
        &sim.in_cluster_url,
        "demo-operator-token",
        &["operator.pollingInterval=2".into()],
    )
    .await?;
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let operator = operator_pods
        .list(&kube::api::ListParams::default().labels(OPERATOR_SELECTOR))
        .await
        .map_err(|e| e.to_string())?;
    for pod in operator.items {
        let image = pod
            .spec
            .as_ref()
            .map(|s| s.containers[0].image.clone().unwrap_or_default());
        println!(
            "  pod {}/{} Ready in {:.1?}, image {}",
            OPERATOR_NAMESPACE,
            pod.name_any(),
            installed_at.elapsed(),
            image.unwrap_or_default()
        );
    }

    step("applying examples/onepassworditems.yaml");
    crate::local_cluster::create_namespace(&client, NAMESPACE).await?;
    let items_api: Api<OnePasswordItem> = Api::namespaced(client.clone(), NAMESPACE);
    let mut items = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(EXAMPLES) {
        let item: OnePasswordItem = serde::Deserialize::deserialize(doc).map_err(|e| format!("examples: {e}"))?;
        println!("  OnePasswordItem {} -> {}", item.name_any(), item.spec.item_path);
        items_api
            .create(&PostParams::default(), &item)
            .await
            .map_err(|e| e.to_string())?;
        items.push(item);
    }
    for item in &items {
        let name = item.name_any();
        let ready = wait(&format!("{name} to sync"), async || {
            let opi = items_api.get(&name).await.ok()?;
            let status = opi.status.as_ref()?;
            status.is_ready().then(|| status.condition("Ready").cloned())?
        })
        .await?;
        println!(
            "  {name}: Ready ({}) {}",
            ready.reason.unwrap_or_default(),
            ready.message.unwrap_or_default()
        );
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    show_secrets(&secrets, &items).await?;

    step("starting an app pod that mounts the database Secret and prints what it reads (masked)");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    wait("the namespace's ServiceAccount", async || {
        accounts.get_opt("default").await.ok().flatten()
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod = secret_reader_pod("app", "database", APP_SCRIPT);
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| e.to_string())?;
    let first = wait("the app to print", async || app_says(&pods).await).await?;
    println!("  app: {first}");

    step("changing the Database password in 1Password (a PATCH through the Connect API)");
    let admin = ConnectClient::new(ConnectConfig::new(
        sim.url.clone(),
        SecretString::from("demo-admin-token"),
    ))
    .map_err(|e| e.to_string())?;
    let vault = admin
        .list_vaults(Some(&Filter::name_eq("Demo")))
        .await
        .map_err(|e| e.to_string())?
        .remove(0);
    let item = admin
        .list_items(&vault.id, Some(&Filter::title_eq("Database")))
        .await
        .map_err(|e| e.to_string())?
        .remove(0);
    let before = secrets.get("database").await.map_err(|e| e.to_string())?;
    let changed_at = Instant::now();
    let patched = admin
        .patch_item(
            &vault.id,
            &item.id,
            &[PatchOp::replace("/fields/password/value", json!("rotated-by-the-demo"))],
        )
        .await
        .map_err(|e| e.to_string())?;
    println!("  item Database is now at version {}", patched.version);
    let after = wait("the Secret to follow", async || {
        secrets.get("database").await.ok().filter(|s| s.data != before.data)
    })
    .await?;
    println!("  the Secret followed in {:.1?}:", changed_at.elapsed());
    for line in masked(&after) {
        println!("{line}");
    }
    let seen = wait("the app to see the new value", async || {
        app_says(&pods).await.filter(|line| *line != first)
    })
    .await?;
    println!(
        "  app: {seen}   <- the running pod's mounted file, {:.1?} after the change in 1Password",
        changed_at.elapsed()
    );

    step("editing the Secret by hand (as a mistaken kubectl edit would)");
    let edited_at = Instant::now();
    let edit = json!({ "data": { "password": "aGFuZC1lZGl0ZWQ=" } });
    secrets
        .patch("database", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .map_err(|e| e.to_string())?;
    wait("the repair", async || {
        secrets.get("database").await.ok().filter(|s| s.data == after.data)
    })
    .await?;
    println!(
        "  repaired in {:.0?}, from the operator's cache, without a Connect call",
        edited_at.elapsed()
    );

    let stats = SimAdmin::new(sim.url.clone(), connect_sim::DEFAULT_ADMIN_TOKEN)
        .stats()
        .await?;
    let calls: BTreeMap<String, u64> = stats.requests;
    step("what it cost");
    println!("  Connect calls counted by the simulator over the whole demo: {calls:?}");
    println!(
        "  demo finished in {:.1?}; stopping the cluster and cleaning up",
        started.elapsed()
    );
    drop(node);
    Ok(())
}
