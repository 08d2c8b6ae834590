//! Availability across an apiserver restart: the controller's watches come back within a few
//! seconds of the apiserver being ready again, so a hand edit is repaired at once. This
//! binary has a control plane of its own, since the test stops its apiserver.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_sim::{self as sim, SimConfig};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use onepassword_operator::connect::{ConnectConfig, RetryPolicy};
use onepassword_operator::controller::{Context, Settings};
use onepassword_operator::crd::{OnePasswordItem, OnePasswordItemSpec};
use onepassword_operator::metrics::Metrics;
use onepassword_operator::wiring;
use opo_testenv::local_cluster::{ControlPlaneBinaries, LocalCluster};
use secrecy::SecretString;
use serde_json::json;

const DATA: &str = support::harness::ONE_ITEM;

fn password(secret: &Secret) -> Option<String> {
    let value = secret.data.as_ref()?.get("password")?;
    Some(String::from_utf8_lossy(&value.0).into_owned())
}

#[tokio::test]
async fn drift_repair_resumes_within_seconds_after_an_apiserver_restart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binaries = match ControlPlaneBinaries::locate(root) {
        Ok(binaries) => binaries,
        Err(message) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{message}"),
        Err(message) => return eprintln!("SKIPPED: {message}"),
    };
    let mut cluster = LocalCluster::start(&binaries).await.unwrap();
    let kube = cluster.admin_client().unwrap();
    cluster.install_crds(&kube, &root.join("crds")).await.unwrap();
    let ns = support::namespace(&kube, "restart").await;
    let sim = sim::start(
        SimConfig::new(support::harness::sim_data(DATA)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let mut connect = ConnectConfig::new(sim.url(), SecretString::from("op-token"));
    connect.retry = RetryPolicy::none();
    let metrics = Arc::new(Metrics::default());
    let connect = onepassword_operator::connect::ConnectClient::with_metrics(connect, metrics.connect.clone()).unwrap();
    let settings = Settings {
        namespaces: vec![ns.clone()],
        ..Settings::default()
    };
    let ctx = Arc::new(Context::new(kube.clone(), Some(connect), settings, metrics));
    let operator = tokio::spawn(wiring::run(ctx));

    let items: Api<OnePasswordItem> = Api::namespaced(kube.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &ns);
    let spec = OnePasswordItemSpec::item("vaults/Demo/items/Database");
    items
        .create(&PostParams::default(), &OnePasswordItem::new("db", spec))
        .await
        .unwrap();
    support::wait_for("the Secret", Duration::from_secs(20), async || {
        secrets.get_opt("db").await.ok()?.filter(|s| password(s).is_some())
    })
    .await;

    // Down long enough for kube's default watch backoff to grow to many seconds.
    cluster.restart_apiserver(Duration::from_secs(20)).await.unwrap();
    let ready_again = Instant::now();
    let hacked = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "hacked");
    support::wait_for(
        "a hand edit once the apiserver is back",
        Duration::from_secs(10),
        async || {
            let edit = json!({ "data": { "password": hacked } });
            secrets
                .patch("db", &PatchParams::default(), &Patch::Merge(&edit))
                .await
                .ok()
        },
    )
    .await;
    support::wait_for("the repair", Duration::from_secs(60), async || {
        secrets
            .get_opt("db")
            .await
            .ok()?
            .filter(|s| password(s).as_deref() == Some("s3cr3t-1"))
    })
    .await;
    let blind = ready_again.elapsed();
    eprintln!("repaired {blind:?} after the apiserver was ready again");
    assert!(
        blind <= Duration::from_secs(5),
        "drift repair was blind for {blind:?} after the restart"
    );
    operator.abort();
}
