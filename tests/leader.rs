//! Leader election with two operator processes: exactly one writes; when the leader dies
//! (SIGKILL, no release) the other takes over within the lease duration, and when it shuts
//! down (SIGTERM, a rolling upgrade) within seconds.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use connect_sim::{self as sim, SimConfig};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::connect::{ConnectClient, ConnectConfig, Filter, RetryPolicy};
use onepassword_operator::crd::{OnePasswordItem, OnePasswordItemSpec};
use opo_testenv::local_cluster::Identity;
use secrecy::SecretString;
use serde_json::json;
use support::OperatorProcess;

const DATA: &str = support::harness::ONE_ITEM;
const LEASE_SECONDS: u64 = 4;

/// Two replicas' world: a namespace, a simulator, an admin kubeconfig.
struct World {
    kube: kube::Client,
    ns: String,
    sim: sim::RunningSimulator,
    work: tempfile::TempDir,
}

async fn world(prefix: &str) -> Option<World> {
    let cluster = support::cluster()?;
    let kube = cluster.admin_client().unwrap();
    let ns = support::namespace(&kube, prefix).await;
    let sim = sim::start(
        SimConfig::new(support::harness::sim_data(DATA)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    cluster
        .write_kubeconfig(&Identity::Admin, &work.path().join("kubeconfig"))
        .unwrap();
    Some(World { kube, ns, sim, work })
}

impl World {
    /// A replica named `name` (its identity in the Lease), electing a leader.
    fn operator(&self, name: &str, lease_seconds: u64) -> OperatorProcess {
        let lease = lease_seconds.to_string();
        OperatorProcess::start(
            &self.work.path().join("kubeconfig"),
            self.sim.url().as_str(),
            "op-token",
            &self.work.path().join(format!("{name}.log")),
            &[
                ("WATCH_NAMESPACE", &self.ns),
                ("POLLING_INTERVAL", "1"),
                ("LEADER_ELECT", "true"),
                ("POD_NAMESPACE", &self.ns),
                ("POD_NAME", name),
                ("LEADER_ELECTION_LEASE_DURATION", &lease),
                ("LOG_LEVEL", "info"),
            ],
        )
    }
}

async fn ok_reconciles(op: &OperatorProcess) -> f64 {
    let text = reqwest::get(&op.metrics).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(r#"onepassword_operator_reconciles_total{result="ok"} "#)
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("onepassword-operator")
        .await
        .unwrap()?
        .spec?
        .holder_identity
}

fn password(secret: &Secret) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get("password")
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

#[tokio::test]
async fn exactly_one_replica_writes_and_the_other_takes_over() {
    let Some(w) = world("leader").await else { return };
    let (kube, ns, sim) = (&w.kube, &w.ns, &w.sim);
    let a = w.operator("op-a", LEASE_SECONDS);
    let leases: Api<Lease> = Api::namespaced(kube.clone(), ns);
    support::wait_for("op-a holds the lease", Duration::from_secs(20), async || {
        holder(&leases).await.filter(|h| h == "op-a")
    })
    .await;
    let b = w.operator("op-b", LEASE_SECONDS);

    let items: Api<OnePasswordItem> = Api::namespaced(kube.clone(), ns);
    let opi = OnePasswordItem::new("db", OnePasswordItemSpec::item("vaults/Demo/items/Database"));
    items.create(&PostParams::default(), &opi).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), ns);
    support::wait_for("the leader syncs the Secret", Duration::from_secs(20), async || {
        secrets.get_opt("db").await.unwrap()
    })
    .await;
    support::wait_for("op-b serves metrics", Duration::from_secs(10), async || {
        reqwest::get(&b.metrics).await.ok()
    })
    .await;
    assert!(ok_reconciles(&a).await >= 1.0, "the leader reconciles");
    assert_eq!(ok_reconciles(&b).await, 0.0, "the standby does not");
    assert_eq!(holder(&leases).await.as_deref(), Some("op-a"));

    // The leader dies without releasing the lease.
    let killed_at = Instant::now();
    drop(a);
    let new_holder = support::wait_for(
        "op-b takes the lease",
        Duration::from_secs(LEASE_SECONDS + 10),
        async || holder(&leases).await.filter(|h| h == "op-b"),
    )
    .await;
    let failover = killed_at.elapsed();
    eprintln!("failover to {new_holder} took {failover:?} with a {LEASE_SECONDS}s lease");
    assert!(
        failover <= Duration::from_secs(LEASE_SECONDS + 2),
        "failover took {failover:?}"
    );

    // The new leader does the work: an item change reaches the Secret.
    let writer = {
        let mut config = ConnectConfig::new(sim.url(), SecretString::from("writer-token"));
        config.retry = RetryPolicy::none();
        ConnectClient::new(config).unwrap()
    };
    let vault = writer
        .list_vaults(Some(&Filter::name_eq("Demo")))
        .await
        .unwrap()
        .remove(0);
    let item = writer.list_items(&vault.id, None).await.unwrap().remove(0);
    let field = writer.get_item(&vault.id, &item.id).await.unwrap().fields[0].id.clone();
    writer
        .patch_item(
            &vault.id,
            &item.id,
            &[PatchOp::replace(format!("/fields/{field}/value"), json!("s3cr3t-2"))],
        )
        .await
        .unwrap();
    support::wait_for("the new leader syncs the change", Duration::from_secs(15), async || {
        secrets
            .get_opt("db")
            .await
            .unwrap()
            .filter(|s| password(s).as_deref() == Some("s3cr3t-2"))
    })
    .await;
    assert!(ok_reconciles(&b).await >= 1.0);
}

#[tokio::test]
async fn a_leader_that_shuts_down_hands_over_within_seconds() {
    const LONG_LEASE: u64 = 15;
    let Some(w) = world("handover").await else { return };
    let a = w.operator("op-a", LONG_LEASE);
    let leases: Api<Lease> = Api::namespaced(w.kube.clone(), &w.ns);
    support::wait_for("op-a holds the lease", Duration::from_secs(20), async || {
        holder(&leases).await.filter(|h| h == "op-a")
    })
    .await;
    let b = w.operator("op-b", LONG_LEASE);
    support::wait_for("op-b serves metrics", Duration::from_secs(10), async || {
        reqwest::get(&b.metrics).await.ok()
    })
    .await;
    // Let op-b settle as a standby: it read the lease and sleeps towards its expiry.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A rolling upgrade: the leader gets SIGTERM, releases the lease and exits.
    let terminated_at = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    support::wait_for(
        "op-b takes the lease",
        Duration::from_secs(LONG_LEASE + 5),
        async || holder(&leases).await.filter(|h| h == "op-b"),
    )
    .await;
    let handover = terminated_at.elapsed();
    eprintln!("handover after SIGTERM took {handover:?} with a {LONG_LEASE}s lease");
    assert!(
        handover <= Duration::from_secs(3),
        "handover took {handover:?}; the standby must not wait for the lease to expire"
    );
    drop(a);
}
