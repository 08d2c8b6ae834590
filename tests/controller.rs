//! The OnePasswordItem controller against a real kube-apiserver, with the Connect simulator
//! as Connect. Covers the cases of 1Password's Go operator test suites and ours (drift
//! repair, ownership safety, outages, status, Events, no secret in logs).

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use connect_sim::faults::FaultRule;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use onepassword_operator::annotations::{ALLOW_ADOPTION, ITEM_PATH, ITEM_VERSION, LEGACY_FINALIZER, MANAGED_BY_LABEL};
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::crd::{OnePasswordItem, OnePasswordItemSpec};
use serde_json::json;
use support::harness::{Harness, condition, data, ready, ready_message, value};

const DATA: &str = r#"
vaults:
  - name: Demo
    items:
      - title: Database
        urls:
          - { label: website, href: "https://db.example", primary: true }
          - { label: website, href: "https://other.example" }
          - { href: "https://unlabelled.example" }
        fields:
          - { label: username, value: s3cr3t-user, purpose: USERNAME }
          - { label: password, value: s3cr3t-pass-1, purpose: PASSWORD }
          - { label: first host, value: s3cr3t-db1 }
          - { label: "😄 ice-cream type", value: s3cr3t-vanilla }
          - { label: empty, value: "" }
      - title: Certs
        category: SECURE_NOTE
        files:
          - { name: tls.crt, content: "s3cr3t-certificate" }
          - { name: key.bin, contentBase64: "AAECAwQ=" }
      - title: abcdefghijklmnopqrstuvwxyz
        fields: [{ label: note, value: s3cr3t-idlike }]
      - title: Twin
        fields: [{ label: which, value: s3cr3t-first }]
      - title: Twin
        fields: [{ label: which, value: s3cr3t-second }]
      - title: Collide
        urls: [{ label: host, href: "https://s3cr3t-url.example" }]
        fields: [{ label: host, value: s3cr3t-field-host }]
      - title: Frozen
        tags: ["operator.1password.io:ignore-secret"]
        fields: [{ label: password, value: s3cr3t-frozen-1 }]
      - title: Docker
        fields: [{ label: .dockerconfigjson, value: '{"auths":{"s3cr3t-registry":{}}}' }]
      - title: Big
        files: [{ name: big.bin, contentBase64: "BIG_FILE" }]
      - title: Edges
        urls:
          - { label: docs, href: "https://s3cr3t-first.example", primary: true }
          - { label: docs, href: "https://s3cr3t-last.example", primary: true }
          - { label: blank, href: "" }
        fields:
          - { label: "..", value: s3cr3t-dots }
          - { label: "日本語", value: s3cr3t-jp }
          - { label: ok, value: s3cr3t-ok }
        files:
          - { name: empty.txt, content: "" }
"#;

const BIG: usize = 1_100_000;

async fn harness(prefix: &str, polling_interval: Duration) -> Option<Harness> {
    harness_with(prefix, polling_interval, |_| {}).await
}

async fn harness_with(
    prefix: &str,
    polling_interval: Duration,
    tweak: impl FnOnce(&mut onepassword_operator::controller::Settings),
) -> Option<Harness> {
    let big = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![1u8; BIG]);
    support::harness::harness_with(prefix, &DATA.replace("BIG_FILE", &big), polling_interval, tweak).await
}

macro_rules! harness {
    ($prefix:expr) => {
        harness!($prefix, Duration::from_secs(30))
    };
    ($prefix:expr, $interval:expr) => {
        match harness($prefix, $interval).await {
            Some(h) => h,
            None => return,
        }
    };
}

/// The Secret `db` still holds the item's first password: nothing was lost.
async fn assert_password_kept(h: &Harness) {
    assert_eq!(
        value(&h.secret("db").await, "password").as_deref(),
        Some("s3cr3t-pass-1")
    );
}

// ----- the Go operator's cases -----

#[tokio::test]
async fn secret_from_an_item_by_id() {
    let h = harness!("by-id");
    let item_id = h.item_id("Database").await;
    h.create("db", &format!("vaults/{}/items/{item_id}", h.vault_id)).await;
    let opi = h.ready_reason("db", "Synced").await;
    let secret = h.secret("db").await;
    assert_eq!(value(&secret, "username").as_deref(), Some("s3cr3t-user"));
    assert_eq!(value(&secret, "password").as_deref(), Some("s3cr3t-pass-1"));
    let annotations = secret.annotations();
    assert_eq!(annotations[ITEM_PATH], format!("vaults/{}/items/{item_id}", h.vault_id));
    assert_eq!(annotations[ITEM_VERSION], "1");
    assert_eq!(secret.labels()[MANAGED_BY_LABEL], "onepassword-operator");
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("OnePasswordItem", "db", Some(true))
    );
    assert_eq!(owner.uid, opi.uid().unwrap());
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let status = opi.status.unwrap();
    assert_eq!(
        (status.vault_id.as_deref(), status.item_id.as_deref()),
        (Some(h.vault_id.as_str()), Some(item_id.as_str()))
    );
    assert_eq!(status.item_version, Some(1));
    assert!(status.last_synced_at.is_some());
    assert!(
        opi.metadata.finalizers.is_none(),
        "no finalizer that could block namespace deletion"
    );
}

#[tokio::test]
async fn secret_from_an_item_by_title_and_a_vault_name_in_another_case() {
    let h = harness!("by-title");
    h.create("db", "vaults/demo/items/Database").await;
    let secret = h.secret("db").await;
    assert_eq!(value(&secret, "username").as_deref(), Some("s3cr3t-user"));
    let opi = h.ready_reason("db", "Synced").await;
    assert_eq!(opi.status.unwrap().vault_id, Some(h.vault_id.clone()));
}

#[tokio::test]
async fn secret_from_an_item_with_a_26_character_title() {
    let h = harness!("idlike");
    h.create("idlike", "vaults/Demo/items/abcdefghijklmnopqrstuvwxyz").await;
    let secret = h.secret("idlike").await;
    assert_eq!(value(&secret, "note").as_deref(), Some("s3cr3t-idlike"));
}

#[tokio::test]
async fn urls_labels_and_empty_values_map_like_go() {
    let h = harness!("mapping");
    h.create("db", "vaults/Demo/items/Database").await;
    let secret = h.secret("db").await;
    let data = data(&secret);
    assert_eq!(data["website"], "https://db.example", "the primary URL of a label wins");
    assert_eq!(data["first-host"], "s3cr3t-db1", "invalid characters become -");
    assert_eq!(
        data["ice-cream-type"], "s3cr3t-vanilla",
        "leading invalid characters are dropped"
    );
    assert!(!data.contains_key("empty"), "empty values are skipped");
    assert_eq!(data.len(), 5, "{:?}", data.keys().collect::<Vec<_>>());
}

#[tokio::test]
async fn edge_cases_map_like_go_and_skipped_labels_are_reported() {
    let h = harness!("edges");
    h.create("edges", "vaults/Demo/items/Edges").await;
    let opi = h.ready_reason("edges", "Synced").await;
    let data = data(&h.secret("edges").await);
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["docs", "ok"],
        "an empty href and a 0-byte file are skipped, as in Go"
    );
    assert_eq!(
        data["docs"], "https://s3cr3t-last.example",
        "two primary URLs: the last wins"
    );
    let skipped = condition(&opi, "KeysSkipped").expect("a KeysSkipped condition");
    assert_eq!(skipped.status, "True");
    let message = skipped.message.clone().unwrap();
    assert!(
        message.contains(r#"field "..""#) && message.contains(r#"field "日本語""#),
        "{message}"
    );
    assert!(!message.contains("s3cr3t"), "labels, never values: {message}");
    assert_eq!(ready(&opi).unwrap().status, "True", "the rest of the Secret is useful");
    let event = h.wait_for_event("edges", "KeysSkipped").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.note.as_deref(), Some(message.as_str()));
}

#[tokio::test]
async fn files_become_keys_with_raw_bytes() {
    let h = harness!("files");
    h.create("certs", "vaults/Demo/items/Certs").await;
    let secret = h.secret("certs").await;
    let data = secret.data.clone().unwrap();
    assert_eq!(data["tls.crt"].0, b"s3cr3t-certificate");
    assert_eq!(data["key.bin"].0, vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn no_rewrite_when_the_version_is_unchanged() {
    let h = harness!("no-rewrite", Duration::from_millis(300));
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;
    let before = h.secret("db").await;
    let status_before = h.items().get("db").await.unwrap().status;
    let (polls, reconciles) = (h.ctx.metrics().poll_count(), h.ctx.metrics().reconcile_count("ok"));
    // A reconcile with nothing new (an unrelated annotation) and several polls.
    let nudge = json!({ "metadata": { "annotations": { "example.com/nudge": "1" } } });
    h.items()
        .patch("db", &PatchParams::default(), &Patch::Merge(&nudge))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.ctx.metrics().reconcile_count("ok") > reconciles, "a reconcile ran");
    assert!(h.ctx.metrics().poll_count() >= polls + 3, "the poller looked again");
    let after = h.secret("db").await;
    assert_eq!(
        before.resource_version(),
        after.resource_version(),
        "the Secret was not written again"
    );
    assert_eq!(
        status_before,
        h.items().get("db").await.unwrap().status,
        "nor was the status"
    );
}

#[tokio::test]
async fn custom_secret_type() {
    let h = harness!("type");
    h.create_with("docker", "vaults/Demo/items/Docker", |o| {
        o.secret_type = Some("kubernetes.io/dockerconfigjson".into())
    })
    .await;
    let secret = h.secret("docker").await;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    assert!(value(&secret, ".dockerconfigjson").unwrap().contains("auths"));
}

#[tokio::test]
async fn a_type_change_recreates_the_secret() {
    let h = harness!("retype");
    h.create("db", "vaults/Demo/items/Database").await;
    let first = h.secret("db").await;
    let patch = json!({ "type": "kubernetes.io/basic-auth" });
    h.items()
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let second = h
        .secret_where("db", Duration::from_secs(20), |s| {
            s.type_.as_deref() == Some("kubernetes.io/basic-auth")
        })
        .await;
    assert_ne!(
        first.uid(),
        second.uid(),
        "a new object: the type of a Secret is immutable"
    );
    assert_eq!(value(&second, "username").as_deref(), Some("s3cr3t-user"));
    h.wait_for_event("db", "Recreated").await;
}

#[tokio::test]
async fn a_type_the_apiserver_refuses_keeps_the_old_secret_and_says_why() {
    let h = harness!("retype-refused");
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;
    let first = h.secret("db").await;
    // kubernetes.io/tls requires tls.crt and tls.key, which this item does not have.
    let patch = json!({ "type": "kubernetes.io/tls" });
    h.items()
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let opi = h.ready_reason("db", "SecretRejected").await;
    let message = ready_message(&opi);
    assert!(
        message.contains("kubernetes.io/tls") && message.contains("existing Secret is kept"),
        "{message}"
    );
    assert!(!message.contains("s3cr3t"), "{message}");
    let kept = h.secret("db").await;
    assert_eq!(kept.uid(), first.uid(), "never deleted");
    assert_eq!(kept.data, first.data);
    assert_eq!(kept.type_.as_deref(), Some("Opaque"));
    h.wait_for_event("db", "SecretRejected").await;
}

#[tokio::test]
async fn invalid_resources_are_rejected_at_apply_time() {
    let h = harness!("invalid");
    let bad = OnePasswordItem::new("bad", OnePasswordItemSpec::item("vaults/Demo/Database"));
    let err = h.items().create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(err.to_string().contains("itemPath must look like"), "{err}");
}

#[tokio::test]
async fn the_ignore_tag_freezes_the_data() {
    let h = harness!("frozen", Duration::from_millis(500));
    h.create("frozen", "vaults/Demo/items/Frozen").await;
    let secret = h.secret("frozen").await;
    assert_eq!(
        value(&secret, "password").as_deref(),
        Some("s3cr3t-frozen-1"),
        "a new Secret is created as in Go"
    );
    h.set_field("Frozen", "password", "s3cr3t-frozen-2").await;
    let opi = h.ready_reason("frozen", "Frozen").await;
    assert_eq!(opi.status.unwrap().item_version, Some(1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        value(&h.secret("frozen").await, "password").as_deref(),
        Some("s3cr3t-frozen-1")
    );

    // Removing the tag resumes syncing.
    h.patch_item("Frozen", &[PatchOp::replace("/tags", json!([]))]).await;
    h.secret_where("frozen", Duration::from_secs(10), |s| {
        value(s, "password").as_deref() == Some("s3cr3t-frozen-2")
    })
    .await;
}

#[tokio::test]
async fn an_item_update_propagates() {
    let interval = Duration::from_secs(1);
    let h = harness!("update", interval);
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;
    let changed = Instant::now();
    h.set_field("Database", "password", "s3cr3t-pass-2").await;
    let secret = h
        .secret_where("db", interval + Duration::from_secs(2), |s| {
            value(s, "password").as_deref() == Some("s3cr3t-pass-2")
        })
        .await;
    eprintln!("propagation took {:?}", changed.elapsed());
    assert_eq!(secret.annotations()[ITEM_VERSION], "2");
    h.wait_for_event("db", "Updated").await;
}

// ----- ours -----

#[tokio::test]
async fn a_hand_edit_is_repaired_within_a_second_without_calling_connect() {
    let h = harness!("drift-edit");
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;
    h.admin().reset_stats().await.unwrap();
    let edit = json!({ "data": { "password": "aGFja2Vk", "added-by-hand": "eA==" } });
    let edited_at = Instant::now();
    h.secrets()
        .patch("db", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    let repaired = h
        .secret_where("db", Duration::from_secs(1), |s| {
            value(s, "password").as_deref() == Some("s3cr3t-pass-1") && value(s, "added-by-hand").is_none()
        })
        .await;
    eprintln!("repair took {:?}", edited_at.elapsed());
    assert_eq!(value(&repaired, "username").as_deref(), Some("s3cr3t-user"));
    assert_eq!(
        h.admin().stats().await.unwrap().total,
        0,
        "repaired from cache, no Connect call"
    );
    h.wait_for_event("db", "Repaired").await;
}

#[tokio::test]
async fn a_writer_that_fights_the_operator_gets_slower_repairs_and_few_events() {
    let h = harness!("fight");
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;
    // Another controller rewrites the Secret every 100 ms for 8 s.
    let hacked = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "hacked");
    let edit = json!({ "data": { "password": hacked } });
    let started = Instant::now();
    let mut edits = 0;
    while started.elapsed() < Duration::from_secs(8) {
        h.secrets()
            .patch("db", &PatchParams::default(), &Patch::Merge(&edit))
            .await
            .unwrap();
        edits += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let opi = h.items().get("db").await.unwrap();
    assert_eq!(
        ready(&opi).and_then(|c| c.reason.as_deref()),
        Some("RepairBackoff"),
        "{:?}",
        opi.status
    );
    let repaired: Vec<_> = h
        .events_for("db")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Repaired"))
        .collect();
    assert_eq!(repaired.len(), 1, "{edits} edits, one Event (one per minute at most)");
    // Once the writer stops, the Secret is put back when the backoff ends.
    h.secret_where("db", Duration::from_secs(40), |s| {
        value(s, "password").as_deref() == Some("s3cr3t-pass-1")
    })
    .await;
    h.ready_reason("db", "Synced").await;
}

#[tokio::test]
async fn a_deleted_secret_is_put_back() {
    let h = harness!("drift-delete");
    h.create("db", "vaults/Demo/items/Database").await;
    let first = h.secret("db").await;
    h.secrets().delete("db", &DeleteParams::default()).await.unwrap();
    let back = h
        .secret_where("db", Duration::from_secs(2), |s| s.uid() != first.uid())
        .await;
    assert_eq!(value(&back, "password").as_deref(), Some("s3cr3t-pass-1"));
    h.wait_for_event("db", "Repaired").await;
}

#[tokio::test]
async fn a_foreign_secret_is_never_overwritten_unless_handed_over() {
    let h = harness!("foreign");
    let foreign = Secret {
        metadata: ObjectMeta {
            name: Some("db".into()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([("mine".to_string(), "keep-me".to_string())])),
        ..Secret::default()
    };
    h.secrets().create(&PostParams::default(), &foreign).await.unwrap();
    h.create("db", "vaults/Demo/items/Database").await;
    let opi = h.ready_reason("db", "SecretConflict").await;
    assert_eq!(ready(&opi).unwrap().status, "False");
    assert!(ready_message(&opi).contains(ALLOW_ADOPTION));
    let event = h.wait_for_event("db", "SecretConflict").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        data(&h.secret("db").await),
        BTreeMap::from([("mine".to_string(), "keep-me".to_string())])
    );

    // The Secret's owner hands it over; the next attempt adopts it.
    let handover = json!({ "metadata": { "annotations": { ALLOW_ADOPTION: "true" } } });
    h.secrets()
        .patch("db", &PatchParams::default(), &Patch::Merge(&handover))
        .await
        .unwrap();
    let touch = json!({ "metadata": { "labels": { "nudge": "1" } } });
    h.items()
        .patch("db", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    // The apply and the removal of the keys it does not own are two writes: wait for both.
    let adopted = h
        .secret_where("db", Duration::from_secs(20), |s| {
            value(s, "password").is_some() && value(s, "mine").is_none()
        })
        .await;
    assert_eq!(adopted.owner_references()[0].name, "db");
}

#[tokio::test]
async fn a_connect_outage_keeps_the_secret_and_ready_and_says_why_in_synced() {
    let h = harness!("outage", Duration::from_millis(500));
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;
    let before = h.secret("db").await;
    h.admin().set_outage(true).await.unwrap();
    let opi = h.condition_reason("db", "Synced", "ConnectUnavailable").await;
    let synced = condition(&opi, "Synced").unwrap();
    assert_eq!(synced.status, "False");
    assert!(synced.message.as_deref().unwrap().contains("503"), "{synced:?}");
    let ready = ready(&opi).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", Some("Synced")),
        "the Secret holds the data: Argo CD must not report the app Degraded"
    );
    assert_eq!(
        opi.status.as_ref().unwrap().item_version,
        Some(1),
        "status still says what the Secret holds"
    );
    let event = h.wait_for_event("db", "ConnectUnavailable").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = h.secret("db").await;
    assert_eq!(during.data, before.data, "not blanked");
    assert_eq!(
        during.resource_version(),
        before.resource_version(),
        "not touched at all"
    );

    h.admin().set_outage(false).await.unwrap();
    h.condition_reason("db", "Synced", "Confirmed").await;
}

#[tokio::test]
async fn a_rejected_token_has_its_own_reason() {
    let h = harness!("unauthorized");
    h.admin()
        .add_rule(&FaultRule {
            operation: "list_vaults".into(),
            status: Some(401),
            message: Some("Invalid token signature".into()),
            ..FaultRule::default()
        })
        .await
        .unwrap();
    h.create("db", "vaults/Demo/items/Database").await;
    let opi = h.ready_reason("db", "ConnectUnauthorized").await;
    assert!(ready_message(&opi).contains("Invalid token signature"));
    // Let the reconcile that the status write started finish its few quick tries.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = h
        .admin()
        .stats()
        .await
        .unwrap()
        .requests
        .get("list_vaults")
        .copied()
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = h
        .admin()
        .stats()
        .await
        .unwrap()
        .requests
        .get("list_vaults")
        .copied()
        .unwrap_or(0);
    assert_eq!(calls, later, "no hammering with a rejected token");
}

async fn readyz(h: &Harness) -> (u16, String) {
    let addr = onepassword_operator::server::serve(
        "127.0.0.1:0".parse().unwrap(),
        onepassword_operator::server::probes_router(h.ctx.clone()),
    )
    .await
    .unwrap();
    let response = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_token_written_to_the_token_file_is_used_without_a_restart() {
    let h = harness!("token-file", Duration::from_millis(500));
    // A token that Connect does not know: the first sync is refused, and /readyz says why.
    // The resource is made once the operator has read the new token (at its next poll), not
    // before: with the token it started with, the first sync would succeed.
    let started_with = h.ctx.connect().unwrap().token_generation();
    std::fs::write(&h.token_file, "revoked-token").unwrap();
    support::wait_for(
        "the operator to read the new token",
        Duration::from_secs(10),
        async || (h.ctx.connect().unwrap().token_generation() > started_with).then_some(()),
    )
    .await;
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "ConnectUnauthorized").await;
    let (status, body) = readyz(&h).await;
    assert_eq!(status, 503);
    assert!(body.contains("rejects the token"), "{body}");
    std::fs::write(&h.token_file, "op-token").unwrap();
    h.ready_reason("db", "Synced").await;
    assert_eq!(readyz(&h).await.0, 200);

    // Revoked while synced: change detection pauses, and resumes as soon as a new token
    // is mounted (not after the 5-minute pause).
    h.admin()
        .add_rule(&FaultRule {
            operation: "*".into(),
            status: Some(401),
            message: Some("Invalid token signature".into()),
            ..FaultRule::default()
        })
        .await
        .unwrap();
    h.condition_reason("db", "Synced", "ConnectUnauthorized").await;
    assert_eq!(
        ready(&h.items().get("db").await.unwrap()).unwrap().status,
        "True",
        "the Secret is intact"
    );
    h.admin().clear_faults().await.unwrap();
    std::fs::write(&h.token_file, "writer-token").unwrap();
    h.condition_reason("db", "Synced", "Confirmed").await;
}

#[tokio::test]
async fn when_connect_answers_again_every_resource_catches_up_at_once() {
    let h = harness!("recovery", Duration::from_millis(300));
    h.create("db", "vaults/Demo/items/Database").await;
    h.condition_reason("db", "Synced", "Confirmed").await;
    h.admin().set_outage(true).await.unwrap();
    h.condition_reason("db", "Synced", "ConnectUnavailable").await;
    // Created during the outage: its first syncs fail, and its retries back off (2, 4, 8,
    // 16 s…); it has no vault yet for change detection to watch.
    h.create("certs", "vaults/Demo/items/Certs").await;
    h.ready_reason("certs", "ConnectUnavailable").await;
    tokio::time::sleep(Duration::from_secs(16)).await;
    h.admin().set_outage(false).await.unwrap();
    let recovered = Instant::now();
    h.ready_reason("certs", "Synced").await;
    h.condition_reason("db", "Synced", "Confirmed").await;
    assert!(
        recovered.elapsed() <= Duration::from_secs(5),
        "caught up {:?} after Connect answered again",
        recovered.elapsed()
    );
}

#[tokio::test]
async fn a_deleted_item_keeps_the_secret() {
    let h = harness!("item-gone", Duration::from_millis(500));
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;
    let id = h.item_id("Database").await;
    h.writer.delete_item(&h.vault_id, &id).await.unwrap();
    let opi = h.ready_reason("db", "ItemNotFound").await;
    assert!(ready_message(&opi).contains("Database"));
    assert_password_kept(&h).await;
}

/// A new item of the vault, with one field.
async fn create_item(h: &Harness, title: &str, label: &str, value: &str) {
    use onepassword_operator::connect::models::{Category, Field, FullItem, Item, VaultRef};
    let item = FullItem {
        item: Item {
            title: title.into(),
            category: Some(Category::Login),
            vault: VaultRef { id: h.vault_id.clone() },
            ..Item::default()
        },
        fields: vec![Field {
            label: label.into(),
            value: value.into(),
            ..Field::default()
        }],
        ..FullItem::default()
    };
    h.writer.create_item(&h.vault_id, &item).await.unwrap();
}

#[tokio::test]
async fn titles_resolve_through_listings_that_follow_new_and_replaced_items() {
    // No poll in the test's time: only the lookups themselves keep the listings current.
    let h = harness!("listings", Duration::from_secs(3600));
    create_item(&h, "Spare", "token", "s3cr3t-spare-1").await;
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;

    // A title the listing taken for `db` does not have: the vault is listed again.
    create_item(&h, "Fresh", "token", "s3cr3t-fresh").await;
    h.create("fresh", "vaults/Demo/items/Fresh").await;
    h.ready_reason("fresh", "Synced").await;
    assert_eq!(
        value(&h.secret("fresh").await, "token").as_deref(),
        Some("s3cr3t-fresh")
    );

    // The listing still names a deleted item: its 404 makes the vault listed again.
    let old = h.item_id("Spare").await;
    h.writer.delete_item(&h.vault_id, &old).await.unwrap();
    create_item(&h, "Spare", "token", "s3cr3t-spare-2").await;
    h.create("spare", "vaults/Demo/items/Spare").await;
    let opi = h.ready_reason("spare", "Synced").await;
    assert_ne!(opi.status.unwrap().item_id.as_deref(), Some(old.as_str()));
    assert_eq!(
        value(&h.secret("spare").await, "token").as_deref(),
        Some("s3cr3t-spare-2")
    );
}

#[tokio::test]
async fn unknown_vaults_and_items_say_so() {
    let h = harness!("unknown");
    h.create("novault", "vaults/Nope/items/Database").await;
    h.create("noitem", "vaults/Demo/items/Nope").await;
    h.ready_reason("novault", "VaultNotFound").await;
    h.ready_reason("noitem", "ItemNotFound").await;
    assert!(h.secrets().get_opt("noitem").await.unwrap().is_none());
}

#[tokio::test]
async fn an_oversized_item_is_refused_and_the_old_secret_stays() {
    let h = harness!("too-large");
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;
    let patch = json!({ "spec": { "itemPath": "vaults/Demo/items/Big" } });
    h.items()
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let opi = h.ready_reason("db", "SecretTooLarge").await;
    assert!(
        ready_message(&opi).contains("a Secret holds at most 1048576; they were not downloaded"),
        "{}",
        ready_message(&opi)
    );
    assert_password_kept(&h).await;
}

#[tokio::test]
async fn collisions_and_ambiguous_titles_are_reported() {
    let h = harness!("report");
    h.create("collide", "vaults/Demo/items/Collide").await;
    h.create("twin", "vaults/Demo/items/Twin").await;
    let secret = h.secret("collide").await;
    assert_eq!(
        value(&secret, "host").as_deref(),
        Some("s3cr3t-field-host"),
        "Go's result: the field wins"
    );
    let opi = h.ready_reason("collide", "Synced").await;
    let collision = condition(&opi, "KeyCollision").expect("a KeyCollision condition");
    assert!(
        collision
            .message
            .as_deref()
            .unwrap()
            .contains(r#"key "host" holds field "host" (ignored: URL "host")"#)
    );
    assert!(
        !collision.message.as_deref().unwrap().contains("s3cr3t"),
        "no values in status"
    );
    h.wait_for_event("collide", "KeyCollision").await;

    let twin = h.ready_reason("twin", "Synced").await;
    assert_eq!(
        value(&h.secret("twin").await, "which").as_deref(),
        Some("s3cr3t-first"),
        "the oldest wins, as in Go"
    );
    assert!(condition(&twin, "ItemPathAmbiguous").is_some());
    h.wait_for_event("twin", "AmbiguousItemPath").await;
}

#[tokio::test]
async fn labels_and_auto_restart_are_copied_and_status_is_complete() {
    let h = harness!("status");
    h.create_with("db", "vaults/Demo/items/Database", |o| {
        o.metadata.labels = Some(BTreeMap::from([("team".to_string(), "payments".to_string())]));
        o.metadata.annotations = Some(BTreeMap::from([
            ("operator.1password.io/auto-restart".to_string(), "true".to_string()),
            ("team/on-call".to_string(), "alice".to_string()),
        ]));
    })
    .await;
    let secret = h.secret("db").await;
    assert_eq!(secret.labels()["team"], "payments");
    assert_eq!(secret.annotations()["operator.1password.io/auto-restart"], "true");
    assert!(
        !secret.annotations().contains_key("team/on-call"),
        "other annotations only with --enable-annotations, as in Go"
    );
    let opi = h.ready_reason("db", "Synced").await;
    let ready = ready(&opi).unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(ready.message.as_deref(), Some("Secret db holds item version 1"));
    assert_eq!(ready.observed_generation, opi.metadata.generation);
    assert!(ready.last_transition_time.is_some());
    assert_eq!(
        opi.status.as_ref().unwrap().observed_generation,
        opi.metadata.generation
    );
    let created = h.wait_for_event("db", "Created").await;
    assert_eq!(created.type_.as_deref(), Some("Normal"));
    assert_eq!(created.note.as_deref(), Some("Created Secret db to item version 1"));
    assert_eq!(created.reporting_controller.as_deref(), Some("onepassword-operator"));
}

#[tokio::test]
async fn labels_and_annotations_removed_from_the_resource_leave_its_secret() {
    let h = harness!("unlabel");
    h.create_with("db", "vaults/Demo/items/Database", |o| {
        o.metadata.labels = Some(BTreeMap::from([("team".to_string(), "payments".to_string())]));
        o.metadata.annotations = Some(BTreeMap::from([(
            "operator.1password.io/auto-restart".to_string(),
            "true".to_string(),
        )]));
    })
    .await;
    let labelled = h
        .secret_where("db", Duration::from_secs(10), |s| s.labels().contains_key("team"))
        .await;
    let theirs = json!({ "metadata": { "labels": { "added-by-hand": "yes" } } });
    h.secrets()
        .patch("db", &PatchParams::default(), &Patch::Merge(&theirs))
        .await
        .unwrap();
    let removal = json!({ "metadata": {
        "labels": { "team": null },
        "annotations": { "operator.1password.io/auto-restart": null },
    } });
    h.items()
        .patch("db", &PatchParams::default(), &Patch::Merge(&removal))
        .await
        .unwrap();
    let secret = h
        .secret_where("db", Duration::from_secs(10), |s| {
            !s.labels().contains_key("team") && !s.annotations().contains_key("operator.1password.io/auto-restart")
        })
        .await;
    assert_eq!(data(&secret), data(&labelled));
    assert_eq!(secret.labels()[MANAGED_BY_LABEL], "onepassword-operator", "ours stay");
    assert_eq!(secret.labels()["added-by-hand"], "yes", "somebody else's stay");
    let reasons: Vec<String> = h.events_for("db").await.into_iter().filter_map(|e| e.reason).collect();
    assert!(
        !reasons.iter().any(|r| r == "Repaired"),
        "a change of the resource is no repair: {reasons:?}"
    );
}

#[tokio::test]
async fn deleting_the_resource_leaves_the_secret_to_garbage_collection() {
    let h = harness!("delete", Duration::from_millis(300));
    h.create("db", "vaults/Demo/items/Database").await;
    let secret = h.secret("db").await;
    let opi = h.items().get("db").await.unwrap();
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.uid.as_str(), owner.controller, owner.block_owner_deletion),
        (opi.uid().unwrap().as_str(), Some(true), None),
        "no blockOwnerDeletion, which OpenShift would refuse without update on onepassworditems/finalizers"
    );
    h.items().delete("db", &DeleteParams::default()).await.unwrap();
    // Without a finalizer the object is gone at once; a cluster's garbage collector then
    // deletes the Secret through its ownerReference (there is no GC in this control plane).
    assert!(h.items().get_opt("db").await.unwrap().is_none());
    // And the operator lets go of the item's data.
    support::wait_for("the item leaves the cache", Duration::from_secs(10), async || {
        (h.ctx.cached_items() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_go_operators_finalizer_is_removed() {
    let h = harness!("legacy");
    h.create_with("db", "vaults/Demo/items/Database", |o| {
        o.metadata.finalizers = Some(vec![LEGACY_FINALIZER.into()])
    })
    .await;
    h.ready_reason("db", "Synced").await;
    let opi = h.items().get("db").await.unwrap();
    assert!(opi.finalizers().is_empty(), "{:?}", opi.finalizers());
    h.items().delete("db", &DeleteParams::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.items().get_opt("db").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "deletion blocked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A Secret that carries it (handed over here with allow-adoption) loses it too.
    let with_finalizer = Secret {
        metadata: ObjectMeta {
            name: Some("legacy".into()),
            finalizers: Some(vec![LEGACY_FINALIZER.into()]),
            annotations: Some(BTreeMap::from([(ALLOW_ADOPTION.to_string(), "true".to_string())])),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    h.secrets()
        .create(&PostParams::default(), &with_finalizer)
        .await
        .unwrap();
    h.create("legacy", "vaults/Demo/items/Database").await;
    h.secret_where("legacy", Duration::from_secs(20), |s| {
        value(s, "password").is_some() && s.finalizers().is_empty()
    })
    .await;
}

#[tokio::test]
async fn enable_annotations_copies_the_resources_annotations_as_in_go() {
    let Some(h) = harness_with("copy-annotations", Duration::from_secs(30), |s| {
        s.copy_annotations = true
    })
    .await
    else {
        return;
    };
    h.create_with("db", "vaults/Demo/items/Database", |o| {
        o.metadata.annotations = Some(BTreeMap::from([
            ("team/on-call".to_string(), "alice".to_string()),
            (
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                "{}".to_string(),
            ),
            (ITEM_VERSION.to_string(), "999".to_string()),
        ]));
    })
    .await;
    let secret = h.secret("db").await;
    let annotations = secret.annotations();
    assert_eq!(annotations["team/on-call"], "alice");
    assert!(!annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    assert_eq!(annotations[ITEM_VERSION], "1", "ours cannot be overridden");
}

#[tokio::test]
async fn resources_sharing_an_item_cost_one_fetch() {
    let h = harness!("shared");
    h.admin().reset_stats().await.unwrap();
    for i in 0..5 {
        h.create(&format!("db-{i}"), "vaults/Demo/items/Database").await;
    }
    for i in 0..5 {
        h.ready_reason(&format!("db-{i}"), "Synced").await;
    }
    let stats = h.admin().stats().await.unwrap();
    assert_eq!(stats.requests.get("get_item"), Some(&1), "{stats:?}");
}

// ----- logs -----

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_trace_logs() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .init();
            captured
        })
        .clone()
}

#[tokio::test]
async fn no_secret_value_reaches_a_log_line_at_trace_level() {
    let captured = capture_trace_logs();
    let h = harness!("logs", Duration::from_millis(500));
    h.create("db", "vaults/Demo/items/Database").await;
    h.create("certs", "vaults/Demo/items/Certs").await;
    h.create("collide", "vaults/Demo/items/Collide").await;
    h.ready_reason("db", "Synced").await;
    h.set_field("Database", "password", "s3cr3t-pass-9").await;
    h.secret_where("db", Duration::from_secs(5), |s| {
        value(s, "password").as_deref() == Some("s3cr3t-pass-9")
    })
    .await;
    let edit = json!({ "data": { "password": "aGFja2Vk" } });
    h.secrets()
        .patch("db", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    h.secret_where("db", Duration::from_secs(5), |s| {
        value(s, "password").as_deref() == Some("s3cr3t-pass-9")
    })
    .await;
    h.secret("certs").await;
    h.ready_reason("collide", "Synced").await;

    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        text.lines().count() > 100,
        "trace logging was captured ({} lines)",
        text.lines().count()
    );
    assert!(
        text.contains("Secret written"),
        "the operator's own logs are in the capture"
    );
    let leaks: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("s3cr3t") || l.contains("op-token") || l.contains("writer-token"))
        .collect();
    assert!(
        leaks.is_empty(),
        "{} log lines hold secret values or tokens, e.g.:\n{}",
        leaks.len(),
        leaks.iter().take(5).copied().collect::<Vec<_>>().join("\n")
    );
    std::io::stderr().flush().unwrap();
}
