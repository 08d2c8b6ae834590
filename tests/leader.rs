//! Leader election with two operator processes: exactly one writes; when the leader dies
//! (SIGKILL, no release) the other takes over within the lease duration, and when it shuts
//! down (SIGTERM, a rolling upgrade) within seconds.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::connect::{ConnectClient, ConnectConfig, Filter, RetryPolicy};
use onepassword_operator::crd::{OnePasswordItem, OnePasswordItemSpec};
use onepassword_operator::local_cluster::{self, Identity};
use onepassword_operator::sim::{self, SimConfig};
use secrecy::SecretString;
use serde_json::json;

const DATA: &str = r#"
vaults:
  - name: Demo
    items:
      - { title: Database, fields: [{ label: password, value: s3cr3t-1 }] }
"#;
const LEASE_SECONDS: u64 = 4;

/// An operator process, killed when dropped.
struct Operator {
    name: &'static str,
    child: Child,
    metrics: String,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn operator(
    name: &'static str,
    kubeconfig: &std::path::Path,
    connect: &str,
    ns: &str,
    logs: &std::path::Path,
) -> Operator {
    operator_with_lease(name, kubeconfig, connect, ns, logs, LEASE_SECONDS)
}

fn operator_with_lease(
    name: &'static str,
    kubeconfig: &std::path::Path,
    connect: &str,
    ns: &str,
    logs: &std::path::Path,
    lease_seconds: u64,
) -> Operator {
    let (metrics, probes) = (local_cluster::free_port().unwrap(), local_cluster::free_port().unwrap());
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_onepassword-operator"))
        .arg("run")
        .env("KUBECONFIG", kubeconfig)
        .env("OP_CONNECT_HOST", connect)
        .env("OP_CONNECT_TOKEN", "op-token")
        .env("WATCH_NAMESPACE", ns)
        .env("POLLING_INTERVAL", "1")
        .env("LEADER_ELECT", "true")
        .env("POD_NAMESPACE", ns)
        .env("POD_NAME", name)
        .env("LEADER_ELECTION_LEASE_DURATION", lease_seconds.to_string())
        .env("METRICS_BIND_ADDRESS", format!("127.0.0.1:{metrics}"))
        .env("HEALTH_PROBE_BIND_ADDRESS", format!("127.0.0.1:{probes}"))
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Operator {
        name,
        child,
        metrics: format!("http://127.0.0.1:{metrics}/metrics"),
    }
}

async fn ok_reconciles(op: &Operator) -> f64 {
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
    let Some(cluster) = support::cluster() else { return };
    let kube = cluster.admin_client().unwrap();
    let ns = support::namespace(&kube, "leader").await;
    let sim = sim::start(
        SimConfig::new(support::harness::sim_data(DATA)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    cluster.write_kubeconfig(&Identity::Admin, &kubeconfig).unwrap();
    let connect = sim.url().to_string();

    let a = operator("op-a", &kubeconfig, &connect, &ns, work.path());
    let leases: Api<Lease> = Api::namespaced(kube.clone(), &ns);
    support::wait_for("op-a holds the lease", Duration::from_secs(20), async || {
        holder(&leases).await.filter(|h| h == "op-a")
    })
    .await;
    let b = operator("op-b", &kubeconfig, &connect, &ns, work.path());

    let items: Api<OnePasswordItem> = Api::namespaced(kube.clone(), &ns);
    let opi = OnePasswordItem::new(
        "db",
        OnePasswordItemSpec {
            item_path: "vaults/Demo/items/Database".into(),
        },
    );
    items.create(&PostParams::default(), &opi).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &ns);
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
    let _ = b.name;
}

#[tokio::test]
async fn a_leader_that_shuts_down_hands_over_within_seconds() {
    const LONG_LEASE: u64 = 15;
    let Some(cluster) = support::cluster() else { return };
    let kube = cluster.admin_client().unwrap();
    let ns = support::namespace(&kube, "handover").await;
    let sim = sim::start(
        SimConfig::new(support::harness::sim_data(DATA)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    cluster.write_kubeconfig(&Identity::Admin, &kubeconfig).unwrap();
    let connect = sim.url().to_string();
    let a = operator_with_lease("op-a", &kubeconfig, &connect, &ns, work.path(), LONG_LEASE);
    let leases: Api<Lease> = Api::namespaced(kube.clone(), &ns);
    support::wait_for("op-a holds the lease", Duration::from_secs(20), async || {
        holder(&leases).await.filter(|h| h == "op-a")
    })
    .await;
    let b = operator_with_lease("op-b", &kubeconfig, &connect, &ns, work.path(), LONG_LEASE);
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
