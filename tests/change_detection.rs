//! O(vaults) change detection, measured by the simulator (not by the operator), plus the
//! operator's `/metrics`, `/healthz` and `/readyz`.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use onepassword_operator::connect::Filter;
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::server;
use serde_json::json;
use support::harness::{Harness, ready, value};

/// `vaults` vaults named V0…, with `items` items spread over them round-robin, plus one
/// vault that no resource points at.
fn data(vaults: usize, items: usize) -> String {
    let mut yaml = String::from("vaults:\n");
    for v in 0..vaults {
        let _ = writeln!(yaml, "  - name: V{v}\n    items:");
        for i in (v..items).step_by(vaults) {
            let _ = writeln!(
                yaml,
                "      - {{ title: item-{i}, fields: [{{ label: password, value: s3cr3t-{i}-v1 }}] }}"
            );
        }
    }
    yaml.push_str("  - name: Unused\n    items:\n      - { title: lonely, fields: [{ label: x, value: y }] }\n");
    yaml
}

async fn start(prefix: &str, vaults: usize, items: usize, interval: Duration) -> Option<Harness> {
    let h = support::harness::harness(prefix, &data(vaults, items), interval).await?;
    for i in 0..items {
        h.create(&format!("item-{i}"), &format!("vaults/V{}/items/item-{i}", i % vaults))
            .await;
    }
    wait_all_ready(&h, items).await;
    Some(h)
}

async fn wait_all_ready(h: &Harness, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = h.items().list(&ListParams::default()).await.unwrap().items;
        let ready_count = list
            .iter()
            .filter(|o| ready(o).is_some_and(|c| c.status == "True"))
            .count();
        if ready_count == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {ready_count} of {n} resources became Ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the poller has finished `polls` more polls, starting at a poll boundary.
async fn after_polls(h: &Harness, polls: u64) {
    let target = h.ctx.metrics().poll_count() + polls;
    while h.ctx.metrics().poll_count() < target {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

macro_rules! start {
    ($prefix:expr, $vaults:expr, $items:expr, $interval:expr) => {
        match start($prefix, $vaults, $items, $interval).await {
            Some(h) => h,
            None => return,
        }
    };
}

#[tokio::test]
async fn an_idle_poll_costs_exactly_one_call_per_referenced_vault() {
    let h = start!("idle", 3, 50, Duration::from_millis(300));
    after_polls(&h, 1).await;
    h.admin().reset_stats().await.unwrap();
    after_polls(&h, 5).await;
    let stats = h.admin().stats().await.unwrap();
    assert_eq!(
        stats.requests.into_iter().collect::<Vec<_>>(),
        [("get_vault".to_string(), 15)],
        "5 idle polls over 50 resources in 3 vaults: 3 calls each, nothing else (the 4th vault is not referenced)"
    );
}

#[tokio::test]
async fn a_change_costs_one_listing_and_one_fetch() {
    let h = start!("one-change", 3, 12, Duration::from_millis(300));
    after_polls(&h, 1).await;
    h.admin().reset_stats().await.unwrap();
    let vault = h
        .writer
        .list_vaults(Some(&Filter::name_eq("V1")))
        .await
        .unwrap()
        .remove(0);
    let item = h
        .writer
        .list_items(&vault.id, Some(&Filter::title_eq("item-4")))
        .await
        .unwrap()
        .remove(0);
    let full = h.writer.get_item(&vault.id, &item.id).await.unwrap();
    let op = PatchOp::replace(format!("/fields/{}/value", full.fields[0].id), json!("s3cr3t-4-v2"));
    h.writer.patch_item(&vault.id, &item.id, &[op]).await.unwrap();
    h.admin().reset_stats().await.unwrap();
    h.secret_where("item-4", Duration::from_secs(5), |s| {
        value(s, "password").as_deref() == Some("s3cr3t-4-v2")
    })
    .await;
    after_polls(&h, 1).await;
    let stats = h.admin().stats().await.unwrap();
    assert_eq!(
        stats.requests.get("list_items"),
        Some(&1),
        "only the changed vault is listed: {stats:?}"
    );
    assert_eq!(
        stats.requests.get("get_item"),
        Some(&1),
        "only the changed item is fetched: {stats:?}"
    );
    assert_eq!(stats.total, stats.requests["get_vault"] + 2, "{stats:?}");
    assert_eq!(
        value(&h.secret("item-5").await, "password").as_deref(),
        Some("s3cr3t-5-v1"),
        "others untouched"
    );
}

#[tokio::test]
async fn changes_propagate_within_one_interval_plus_two_seconds() {
    let interval = Duration::from_secs(2);
    let h = start!("propagation", 1, 1, interval);
    let vault = h
        .writer
        .list_vaults(Some(&Filter::name_eq("V0")))
        .await
        .unwrap()
        .remove(0);
    let item = h.writer.list_items(&vault.id, None).await.unwrap().remove(0);
    let field = h.writer.get_item(&vault.id, &item.id).await.unwrap().fields[0]
        .id
        .clone();
    let mut took = Vec::new();
    for round in 2..=6 {
        let wanted = format!("s3cr3t-0-v{round}");
        let op = PatchOp::replace(format!("/fields/{field}/value"), json!(wanted));
        let changed = Instant::now();
        h.writer.patch_item(&vault.id, &item.id, &[op]).await.unwrap();
        h.secret_where("item-0", interval + Duration::from_secs(2), |s| {
            value(s, "password").as_deref() == Some(wanted.as_str())
        })
        .await;
        took.push(changed.elapsed());
    }
    eprintln!("propagation with a {interval:?} interval: {took:?}");
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|rest| rest.trim().split(' ').next()?.parse().ok())
        })
        .unwrap_or_else(|| panic!("no {name_and_labels} in:\n{text}"))
}

#[tokio::test]
async fn metrics_and_probes_tell_the_truth() {
    let h = start!("metrics", 2, 6, Duration::from_millis(300));
    let metrics_addr = server::serve("127.0.0.1:0".parse().unwrap(), server::metrics_router(h.ctx.clone()))
        .await
        .unwrap();
    let probes_addr = server::serve("127.0.0.1:0".parse().unwrap(), server::probes_router(h.ctx.clone()))
        .await
        .unwrap();
    after_polls(&h, 2).await;

    let (status, text) = get(&format!("http://{metrics_addr}/metrics")).await;
    assert_eq!(status, 200);
    assert!(metric(&text, r#"onepassword_operator_reconciles_total{result="ok"}"#) >= 6.0);
    assert_eq!(metric(&text, r#"onepassword_operator_resources{state="in_sync"}"#), 6.0);
    assert_eq!(
        metric(&text, r#"onepassword_operator_resources{state="out_of_sync"}"#),
        0.0
    );
    assert!(
        metric(
            &text,
            r#"onepassword_operator_connect_requests_total{endpoint="get_vault",status="200",connection="operator"}"#
        ) >= 4.0
    );
    assert_eq!(
        metric(
            &text,
            r#"onepassword_operator_connect_requests_total{endpoint="get_item",status="200",connection="operator"}"#
        ),
        6.0
    );
    assert!(
        metric(
            &text,
            r#"onepassword_operator_polls_total{result="ok",connection="operator"}"#
        ) >= 2.0
    );
    assert!(metric(&text, "onepassword_operator_reconcile_duration_seconds_count") >= 6.0);
    assert!(metric(&text, "onepassword_operator_poll_duration_seconds_count") >= 2.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last_poll = metric(&text, "onepassword_operator_last_successful_poll_timestamp_seconds");
    assert!((now - last_poll).abs() < 30.0, "{last_poll} vs {now}");
    assert!(metric(&text, "onepassword_operator_last_successful_sync_timestamp_seconds") > now - 60.0);
    assert!(!text.contains("s3cr3t") && !text.contains("op-token"));

    assert_eq!(get(&format!("http://{probes_addr}/healthz")).await, (200, "ok".into()));
    assert_eq!(get(&format!("http://{probes_addr}/readyz")).await, (200, "ok".into()));

    // Connect down: not ready, and every resource out of sync after the next polls.
    h.admin().set_outage(true).await.unwrap();
    let (status, body) = get(&format!("http://{probes_addr}/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("Connect does not answer its heartbeat"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        after_polls(&h, 1).await;
        let (_, text) = get(&format!("http://{metrics_addr}/metrics")).await;
        if metric(&text, r#"onepassword_operator_resources{state="out_of_sync"}"#) == 6.0 {
            assert!(
                metric(
                    &text,
                    r#"onepassword_operator_polls_total{result="error",connection="operator"}"#
                ) >= 1.0
            );
            assert!(
                metric(
                    &text,
                    r#"onepassword_operator_connect_requests_total{endpoint="get_vault",status="503",connection="operator"}"#
                ) >= 1.0
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "resources never showed as out of sync:\n{text}"
        );
    }
    h.admin().set_outage(false).await.unwrap();
    assert_eq!(get(&format!("http://{probes_addr}/readyz")).await.0, 200);
}

/// A vault-wide password rotation: every item of a vault changes within seconds. The
/// poller's requests to the controller once went through a bounded queue that dropped the
/// overflow (246 of 6,000 Secrets stayed behind until the 5-minute safety listing).
#[tokio::test]
async fn a_vault_wide_rotation_reaches_every_secret() {
    use futures::StreamExt;
    const N: usize = 5_000;
    let Some(h) = support::harness::harness("rotation", &data(1, N), Duration::from_secs(1)).await else {
        return;
    };
    futures::stream::iter(0..N)
        .map(|i| {
            let h = &h;
            async move {
                h.create(&format!("item-{i}"), &format!("vaults/V0/items/item-{i}"))
                    .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let at_version = async |version: &str| {
        let secrets = h.secrets().list(&ListParams::default()).await.unwrap().items;
        secrets
            .iter()
            .filter(|s| {
                s.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("operator.1password.io/item-version"))
                    == Some(&version.to_owned())
            })
            .count()
    };
    support::wait_for("every Secret at version 1", Duration::from_secs(240), async || {
        (at_version("1").await == N).then_some(())
    })
    .await;

    // Rotate every item, as fast as the writer can.
    let items = h.writer.list_items(&h.vault_id, None).await.unwrap();
    assert_eq!(items.len(), N);
    futures::stream::iter(items)
        .map(|item| {
            let h = &h;
            async move {
                let full = h.writer.get_item(&h.vault_id, &item.id).await.unwrap();
                let field = &full.fields[0].id;
                let op = PatchOp::replace(format!("/fields/{field}/value"), json!(format!("rotated-{}", item.id)));
                h.writer.patch_item(&h.vault_id, &item.id, &[op]).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    loop {
        let done = at_version("2").await;
        if done == N {
            eprintln!(
                "{N} Secrets followed a rotation in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {N} Secrets followed the rotation within 180 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The initial sync of `n` resources spread over `vaults` vaults, named by title or by id:
/// the Connect calls it cost, as the simulator counts them, with no poll in between.
async fn initial_sync_calls(prefix: &str, vaults: usize, n: usize, by_id: bool) -> Option<Vec<(String, u64)>> {
    let h = support::harness::harness(prefix, &data(vaults, n), Duration::from_secs(3600)).await?;
    let mut paths = Vec::new();
    for i in 0..n {
        let (vault, item) = (format!("V{}", i % vaults), format!("item-{i}"));
        if by_id {
            let vault = h
                .writer
                .list_vaults(Some(&Filter::name_eq(&vault)))
                .await
                .unwrap()
                .remove(0);
            let item = h
                .writer
                .list_items(&vault.id, Some(&Filter::title_eq(&item)))
                .await
                .unwrap()
                .remove(0);
            paths.push(format!("vaults/{}/items/{}", vault.id, item.id));
        } else {
            paths.push(format!("vaults/{vault}/items/{item}"));
        }
    }
    h.admin().reset_stats().await.unwrap();
    for (i, path) in paths.iter().enumerate() {
        h.create(&format!("item-{i}"), path).await;
    }
    wait_all_ready(&h, n).await;
    Some(h.admin().stats().await.unwrap().requests.into_iter().collect())
}

#[tokio::test]
async fn the_initial_sync_costs_one_call_per_item_and_one_listing_per_vault_by_title_or_by_id() {
    let (vaults, n) = (3, 30);
    let expected: Vec<(String, u64)> = vec![
        ("get_item".into(), n as u64),
        ("list_items".into(), vaults as u64),
        ("list_vaults".into(), 1),
    ];
    for by_id in [false, true] {
        let prefix = if by_id { "cost-by-id" } else { "cost-by-title" };
        let Some(calls) = initial_sync_calls(prefix, vaults, n, by_id).await else {
            return;
        };
        assert_eq!(
            calls, expected,
            "{n} resources in {vaults} vaults (by id: {by_id}): one read per item, one listing per vault, one of the vaults"
        );
    }
}

/// Each Secret's and each resource's `resourceVersion`, by name.
async fn versions(h: &Harness) -> BTreeMap<String, (String, String)> {
    let secrets = h.secrets().list(&ListParams::default()).await.unwrap().items;
    let items = h.items().list(&ListParams::default()).await.unwrap().items;
    items
        .iter()
        .map(|o| {
            let name = o.name_any();
            let secret = secrets.iter().find(|s| s.name_any() == name).unwrap();
            (
                name,
                (secret.resource_version().unwrap(), o.resource_version().unwrap()),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_restart_reads_only_the_changed_items_and_writes_only_what_changed() {
    let (vaults, n) = (2, 20);
    // No poll but the first one of each operator.
    let Some(mut h) = start("restart", vaults, n, Duration::from_secs(3600)).await else {
        return;
    };
    let before = versions(&h).await;
    h.stop_operator().await;

    // While the operator is down, an item changes and a Secret is edited by hand.
    h.set_field("item-2", "password", "s3cr3t-2-v2").await;
    let edit = json!({ "data": { "password": "aGFuZC1lZGl0" } });
    h.secrets()
        .patch("item-4", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    h.admin().reset_stats().await.unwrap();
    h.start_operator();

    h.secret_where("item-2", Duration::from_secs(20), |s| {
        value(s, "password").as_deref() == Some("s3cr3t-2-v2")
    })
    .await;
    h.secret_where("item-4", Duration::from_secs(20), |s| {
        value(s, "password").as_deref() == Some("s3cr3t-4-v1")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.ctx.metrics().reconcile_count("ok") < n as u64 {
        assert!(Instant::now() < deadline, "not every resource was reconciled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let calls: BTreeMap<String, u64> = h.admin().stats().await.unwrap().requests.into_iter().collect();
    assert_eq!(
        calls,
        BTreeMap::from([
            ("get_item".to_string(), 2),
            ("get_vault".to_string(), vaults as u64),
            ("list_items".to_string(), vaults as u64),
        ]),
        "the first poll, then the changed item and the edited Secret's item only"
    );
    let after = versions(&h).await;
    for (name, (secret, resource)) in &before {
        if name == "item-2" || name == "item-4" {
            assert_ne!(&after[name].0, secret, "{name} was written");
            continue;
        }
        assert_eq!(&after[name].0, secret, "the Secret {name} was not written");
        assert_eq!(&after[name].1, resource, "the status of {name} was not written");
    }
}
