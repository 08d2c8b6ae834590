//! Hostile or oversized items cannot take the operator's memory: the operator runs as a
//! process, as in its pod, and its peak resident memory stays under the chart's 128 MiB limit
//! while items far larger than a Secret can hold each get a clear condition.

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use connect_sim::{self as sim, SimConfig};
use kube::api::{Api, PostParams};
use onepassword_operator::crd::{OnePasswordItem, OnePasswordItemSpec};
use opo_testenv::local_cluster::{self, Identity};

/// The chart's memory limit.
const CHART_LIMIT_KIB: u64 = 128 * 1024;

#[tokio::test]
async fn oversized_items_get_a_condition_and_the_operator_stays_under_its_memory_limit() {
    let Some(cluster) = support::cluster() else { return };
    let kube = cluster.admin_client().unwrap();
    let ns = support::namespace(&kube, "hostile").await;
    let work = tempfile::tempdir().unwrap();
    // A legitimate item with a 150 MB attachment.
    std::fs::write(work.path().join("big.bin"), vec![7u8; 150 * 1024 * 1024]).unwrap();
    let mut data = String::from(
        "vaults:\n  - name: Demo\n    items:\n      - { title: Normal, fields: [{ label: password, value: s3cr3t-normal }] }\n      - { title: Attachment, files: [{ name: big.bin, path: big.bin }] }\n",
    );
    // A 64 MB answer: one field with a 64 MB value.
    let _ = writeln!(
        data,
        "      - {{ title: Value, fields: [{{ label: blob, value: {} }}] }}",
        "x".repeat(64 * 1024 * 1024)
    );
    // 300,000 fields (about 22 MB of JSON).
    data.push_str("      - title: Fields\n        fields:\n");
    for i in 0..300_000 {
        let _ = writeln!(data, "          - {{ label: f{i}, value: v }}");
    }
    let mut config = SimConfig::new(support::harness::sim_data(&data));
    config.base_dir = work.path().to_path_buf();
    let sim = sim::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();

    let kubeconfig = work.path().join("kubeconfig");
    cluster.write_kubeconfig(&Identity::Admin, &kubeconfig).unwrap();
    let operator = support::OperatorProcess::start(
        &kubeconfig,
        sim.url().as_str(),
        "op-token",
        &work.path().join("operator.log"),
        &[("WATCH_NAMESPACE", &ns), ("POLLING_INTERVAL", "1")],
    );
    let items: Api<OnePasswordItem> = Api::namespaced(kube.clone(), &ns);
    for (name, title) in [
        ("normal", "Normal"),
        ("attachment", "Attachment"),
        ("value", "Value"),
        ("fields", "Fields"),
    ] {
        let spec = OnePasswordItemSpec::item(format!("vaults/Demo/items/{title}"));
        items
            .create(&PostParams::default(), &OnePasswordItem::new(name, spec))
            .await
            .unwrap();
    }
    for (name, reason, says) in [
        ("normal", "Synced", "holds item version 1"),
        ("attachment", "SecretTooLarge", "the item's files take 157286400 bytes"),
        ("value", "SecretTooLarge", "over the client's limit"),
        ("fields", "SecretTooLarge", "over the client's limit"),
    ] {
        let (_, message) = support::wait_for(&format!("{name} is {reason}"), Duration::from_secs(60), async || {
            support::harness::ready_reason_and_message(&items.get(name).await.unwrap()).filter(|(r, _)| r == reason)
        })
        .await;
        assert!(message.contains(says), "{name}: {message}\n{}", operator.log_text());
    }
    // Let the poller and the retries run over them a few times.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peak = local_cluster::proc_memory_kib(operator.child.id(), "VmHWM").expect("the operator runs");
    eprintln!("operator peak RSS: {} MiB", peak / 1024);
    assert!(
        peak < CHART_LIMIT_KIB,
        "peak RSS {} MiB is over the chart's 128 MiB limit",
        peak / 1024
    );
}
