//! What the controller costs the apiserver, counted by the apiserver itself. Its own test
//! binary, so that its control plane serves nobody else while the requests are counted.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use opo_testenv::local_cluster::apiserver_request_counts;
use serde_json::json;
use support::harness::{Harness, harness, value};

const RESOURCES: usize = 6;

/// The apiserver counts every client's requests: one test counts at a time.
static COUNTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn data() -> String {
    let mut yaml = String::from("vaults:\n  - name: Demo\n    items:\n");
    for i in 0..RESOURCES {
        yaml.push_str(&format!(
            "      - {{ title: item-{i}, fields: [{{ label: password, value: pw-{i} }}] }}\n"
        ));
    }
    yaml
}

/// Requests on single Secrets between two snapshots, by verb (the controller's list and
/// watch are left out: they start on their own schedule).
fn secret_requests(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter(|(key, _)| key.ends_with(" secrets") && !key.starts_with("LIST ") && !key.starts_with("WATCH "))
        .map(|(key, value)| (key.clone(), value - before.get(key).copied().unwrap_or(0.0)))
        .filter(|(_, delta)| *delta > 0.0)
        .collect()
}

/// Waits until `count` more reconciles have ended than `since`, and then for quiet.
async fn reconciled(h: &Harness, since: u64, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.ctx.metrics().reconcile_count("ok") < since + count {
        assert!(Instant::now() < deadline, "the reconciles did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Creates the resources and waits until each is synced and the reconciles that our own
/// writes trigger have run.
async fn create_synced(h: &Harness) {
    for i in 0..RESOURCES {
        h.create(&format!("item-{i}"), &format!("vaults/Demo/items/item-{i}"))
            .await;
    }
    for i in 0..RESOURCES {
        h.ready_reason(&format!("item-{i}"), "Synced").await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn secrets_are_created_without_a_read_and_then_read_only_when_they_change() {
    let _counting = COUNTING.lock().await;
    // A long interval: no poll runs while requests are counted.
    let Some(h) = harness("requests", &data(), Duration::from_secs(300)).await else {
        return;
    };
    let counts = || apiserver_request_counts(&h.kube);

    let before = counts().await.unwrap();
    create_synced(&h).await;
    let synced = counts().await.unwrap();
    let n = RESOURCES as f64;
    let mut requests = secret_requests(&before, &synced);
    // One create per Secret, without a read first; and no second create when the reconcile
    // that the status write triggers runs before the Secret watch has seen the new Secret.
    let creates = requests.remove("POST secrets").unwrap_or(0.0);
    assert_eq!(creates, n, "{creates} creates for {n} Secrets");
    assert_eq!(requests, BTreeMap::new(), "nothing but creates");
    let status_writes =
        synced["PATCH onepassworditems/status"] - before.get("PATCH onepassworditems/status").unwrap_or(&0.0);
    assert_eq!(status_writes, n, "one status write per resource");

    // Reconciles with nothing new (an unrelated annotation on every resource): no request.
    let reconciles = h.ctx.metrics().reconcile_count("ok");
    let nudge = json!({ "metadata": { "annotations": { "example.com/nudge": "1" } } });
    for i in 0..RESOURCES {
        h.items()
            .patch(&format!("item-{i}"), &PatchParams::default(), &Patch::Merge(&nudge))
            .await
            .unwrap();
    }
    reconciled(&h, reconciles, RESOURCES as u64).await;
    let nudged = counts().await.unwrap();
    assert_eq!(
        secret_requests(&synced, &nudged),
        BTreeMap::new(),
        "unchanged Secrets are not read"
    );

    // A hand edit: the test's patch, then one read and one write to repair it.
    let reconciles = h.ctx.metrics().reconcile_count("ok");
    let edit = json!({ "data": { "password": "aGFuZC1lZGl0" } });
    h.secrets()
        .patch("item-0", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    reconciled(&h, reconciles, 1).await;
    let repaired = counts().await.unwrap();
    assert_eq!(
        secret_requests(&nudged, &repaired),
        BTreeMap::from([
            ("APPLY secrets".to_string(), 1.0),
            ("GET secrets".to_string(), 1.0),
            ("PATCH secrets".to_string(), 1.0)
        ]),
        "the test's edit, then one read of the edited Secret and one apply to repair it"
    );
    assert_eq!(value(&h.secret("item-0").await, "password").as_deref(), Some("pw-0"));
}

#[tokio::test]
async fn a_rotated_item_costs_one_apply_of_its_secret_and_no_read() {
    let _counting = COUNTING.lock().await;
    let Some(h) = harness("rotation", &data(), Duration::from_millis(300)).await else {
        return;
    };
    create_synced(&h).await;
    let before = apiserver_request_counts(&h.kube).await.unwrap();
    let reconciles = h.ctx.metrics().reconcile_count("ok");
    h.set_field("item-1", "password", "rotated").await;
    reconciled(&h, reconciles, 1).await;
    let after = apiserver_request_counts(&h.kube).await.unwrap();
    assert_eq!(
        secret_requests(&before, &after),
        BTreeMap::from([("APPLY secrets".to_string(), 1.0)]),
        "the Secret is as the operator left it, so the new values are applied without a read"
    );
    assert_eq!(value(&h.secret("item-1").await, "password").as_deref(), Some("rotated"));
}
