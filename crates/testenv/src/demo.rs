//! `onepassword-operator-demo`: the whole product on one machine, with no 1Password account
//! and no cluster. It starts the Connect simulator (example data), a local control plane
//! (etcd + kube-apiserver), and the operator; applies the example OnePasswordItems; prints
//! the synced Secrets with their values masked; changes an item through the Connect API and
//! shows the Secret follow; and repairs a hand-edited Secret.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use secrecy::SecretString;
use serde_json::json;

use crate::local_cluster::{ControlPlaneBinaries, LocalCluster};
use connect_sim::{self as sim, DataFile, SimConfig};
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::connect::{ConnectClient, ConnectConfig, Filter};
use onepassword_operator::controller::{Context, Settings};
use onepassword_operator::crd::{self, OnePasswordItem};
use onepassword_operator::metrics::Metrics;
use onepassword_operator::wiring;

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
    let deadline = Instant::now() + Duration::from_secs(60);
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

pub async fn run(repo_root: &Path) -> Result<(), String> {
    let started = Instant::now();
    step("starting the Connect simulator with examples/connect-data.yaml");
    let sim = sim::start(
        SimConfig::new(DataFile::embedded_example()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await?;
    println!("  Connect API at {}", sim.url());

    step("starting a local Kubernetes control plane (etcd + kube-apiserver)");
    let cluster = LocalCluster::start(&ControlPlaneBinaries::locate(repo_root)?).await?;
    let client = cluster.admin_client()?;
    cluster.apply_crd(&client, &crd::crd()).await?;
    crate::local_cluster::create_namespace(&client, NAMESPACE).await?;
    println!(
        "  kube-apiserver at {} (ready in {:.1?}); CRD onepassworditems.onepassword.com installed",
        cluster.server, cluster.startup
    );

    step("starting the operator (polling every 2 s)");
    let metrics = Arc::new(Metrics::default());
    let connect = ConnectClient::with_metrics(
        ConnectConfig::new(sim.url(), SecretString::from("demo-operator-token")),
        metrics.connect.clone(),
    )
    .map_err(|e| e.to_string())?;
    let settings = Settings {
        namespaces: vec![NAMESPACE.into()],
        polling_interval: Duration::from_secs(2),
        ..Settings::default()
    };
    let ctx = Arc::new(Context::new(client.clone(), connect, settings, metrics));
    let operator = tokio::spawn(wiring::run(ctx.clone()));

    step("applying examples/onepassworditems.yaml");
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

    step("changing the Database password in 1Password (a PATCH through the Connect API)");
    let admin = ConnectClient::new(ConnectConfig::new(sim.url(), SecretString::from("demo-admin-token")))
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

    let stats = sim.admin().stats().await?;
    let calls: BTreeMap<String, u64> = stats.requests;
    step("what it cost");
    println!("  Connect calls counted by the simulator over the whole demo: {calls:?}");
    println!("  demo finished in {:.1?}", started.elapsed());
    operator.abort();
    drop(cluster);
    Ok(())
}
