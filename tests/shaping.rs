//! Shaping the Secret on a real kube-apiserver: `spec.fields` picks and renames keys,
//! `spec.template.metadata` labels and annotates the Secret, and what the CRD refuses.

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use onepassword_operator::annotations::{DATA_DIGEST, MANAGED_BY_LABEL};
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::crd::{ItemReference, OnePasswordItem, SecretField, SecretTemplate};
use serde::Deserialize;
use serde_json::json;
use support::harness::{Harness, condition, data, ready_message};

const INTERVAL: Duration = Duration::from_millis(500);

/// The vaults of examples/connect-data.yaml (the harness adds its own tokens).
fn example_vaults() -> &'static str {
    let data = include_str!("../examples/connect-data.yaml");
    &data[data.find("\nvaults:").expect("the example data has vaults")..]
}

fn example_items() -> Vec<OnePasswordItem> {
    serde_yaml_ng::Deserializer::from_str(include_str!("../examples/shaped-secrets.yaml"))
        .map(|doc| OnePasswordItem::deserialize(doc).unwrap())
        .collect()
}

fn entry(key: &str, field: &str) -> SecretField {
    SecretField {
        key: key.into(),
        field: Some(field.into()),
        ..SecretField::default()
    }
}

async fn harness(prefix: &str) -> Option<Harness> {
    support::harness::harness(prefix, example_vaults(), INTERVAL).await
}

#[tokio::test]
async fn every_example_makes_the_secret_it_describes() {
    let Some(h) = harness("shape-examples").await else {
        return;
    };
    let examples = example_items();
    assert_eq!(examples.len(), 8, "a new example needs its checks here");
    for opi in &examples {
        h.items().create(&PostParams::default(), opi).await.unwrap();
    }

    let env = h.secret("database-env").await;
    assert_eq!(
        data(&env),
        [
            ("DB_CONSOLE_URL", "https://db.demo.example"),
            ("DB_HOST", "db.demo.svc"),
            ("DB_PASSWORD", "fake-db-password-1"),
            ("DB_PORT", "5432"),
            ("DB_USER", "app_user"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        "exactly the selected keys, under their new names"
    );
    let labels = env.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/part-of"], "billing");
    assert_eq!(labels[MANAGED_BY_LABEL], "onepassword-operator");
    assert_eq!(
        env.metadata.annotations.clone().unwrap()["reflector.v1.k8s.emberstack.com/reflection-allowed"],
        "true"
    );

    let tls = h.secret("demo-tls").await;
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    let tls_data = data(&tls);
    assert_eq!(tls_data.keys().collect::<Vec<_>>(), ["tls.crt", "tls.key"]);
    assert!(tls_data["tls.crt"].starts_with("-----BEGIN CERTIFICATE-----"));

    let token = h.secret("api-token-only").await;
    assert_eq!(
        data(&token).into_iter().collect::<Vec<_>>(),
        [("API_TOKEN".to_string(), "fake-api-token-abc123".to_string())]
    );
    let registry = h.secret("registry-credentials").await;
    assert_eq!(registry.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    let config: serde_json::Value = serde_json::from_str(&data(&registry)[".dockerconfigjson"]).unwrap();
    assert_eq!(
        config["auths"]["ghcr.io"],
        json!({
            "username": "demo-bot",
            "password": "fake-registry-token-1",
            "auth": STANDARD.encode("demo-bot:fake-registry-token-1"),
        })
    );
    assert_eq!(data(&registry).len(), 1, "only the template's key");

    let basic = h.secret("registry-basic-auth").await;
    assert_eq!(basic.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(data(&basic)["username"], "demo-bot");
    assert_eq!(data(&basic)["password"], "fake-registry-token-1");

    let url = h.secret("database-url").await;
    assert_eq!(
        data(&url)["DATABASE_URL"],
        "postgres://app_user:fake-db-password-1@db.demo.svc:5432/app"
    );

    let deploy = h.secret("deploy-key").await;
    assert_eq!(deploy.type_.as_deref(), Some("kubernetes.io/ssh-auth"));
    let key = &data(&deploy)["ssh-privatekey"];
    assert!(
        key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
        "{}",
        key.lines().next().unwrap()
    );
    let parsed = ssh_key::PrivateKey::from_openssh(key).expect("ssh can read it");
    assert_eq!(parsed.algorithm(), ssh_key::Algorithm::Ed25519);

    let app = h.secret("app-env").await;
    assert_eq!(
        data(&app),
        [
            ("API_TOKEN", "fake-api-token-abc123"),
            ("DATABASE_URL", "postgres://app_user:fake-db-password-1@db.demo.svc/app"),
            ("DB_PASSWORD", "fake-db-password-1"),
            ("DB_USER", "app_user"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );

    for opi in &examples {
        let name = opi.metadata.name.as_deref().unwrap();
        let ready = h.ready_reason(name, "Synced").await;
        assert!(ready_message(&ready).contains("holds item version"), "{name}");
    }
    let app = h.ready_reason("app-env", "Synced").await;
    assert_eq!(
        ready_message(&app),
        "Secret app-env holds item version 1 (items: db 1, api 1)"
    );
    let status = app.status.unwrap();
    let listed: Vec<(&str, &str, Option<u64>)> = status
        .items
        .iter()
        .map(|i| {
            (
                i.name.as_str(),
                i.resolved_item_path.as_deref().unwrap(),
                i.item_version,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("db", "vaults/Demo/items/Database", Some(1)),
            ("api", "vaults/Demo/items/API Token", Some(1))
        ]
    );
    assert_eq!(
        status.resolved_item_path.as_deref(),
        Some("vaults/Demo/items/Database"),
        "without itemPath, the top-level fields describe the first entry"
    );
}

#[tokio::test]
async fn a_change_of_a_selected_field_reaches_the_secret() {
    let Some(h) = harness("shape-change").await else { return };
    h.create_with("db", "vaults/Demo/items/Database", |opi| {
        opi.spec.fields = vec![entry("DB_PASSWORD", "password")];
    })
    .await;
    h.secret_where("db", Duration::from_secs(20), |s| {
        data(s).get("DB_PASSWORD").map(String::as_str) == Some("fake-db-password-1")
    })
    .await;
    h.set_field("Database", "password", "fake-db-password-2").await;
    let secret = h
        .secret_where("db", Duration::from_secs(20), |s| {
            data(s).get("DB_PASSWORD").map(String::as_str) == Some("fake-db-password-2")
        })
        .await;
    assert_eq!(data(&secret).len(), 1);
}

#[tokio::test]
async fn a_field_that_is_not_there_keeps_the_secret_and_is_retried_when_the_item_changes() {
    let Some(h) = harness("shape-missing").await else {
        return;
    };
    h.create_with("db", "vaults/Demo/items/Database", |opi| {
        opi.spec.fields = vec![entry("DB_PASSWORD", "password")];
    })
    .await;
    let before = h.secret("db").await;
    h.ready_reason("db", "Synced").await;

    // The user asks for a field the item does not have (yet).
    let fields = json!({ "spec": { "fields": [
        { "key": "DB_PASSWORD", "field": "password" },
        { "key": "DB_REPLICA", "field": "replica" }
    ]}});
    h.items()
        .patch("db", &PatchParams::default(), &Patch::Merge(&fields))
        .await
        .unwrap();
    let failed = h.ready_reason("db", "FieldNotFound").await;
    let message = ready_message(&failed);
    assert!(
        message.contains("key \"DB_REPLICA\" <- field \"replica\"") && !message.contains("fake-db-password"),
        "names the entry, never a value: {message}"
    );
    let event = h.wait_for_event("db", "FieldNotFound").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let kept = h.secret("db").await;
    assert_eq!(kept.data, before.data, "the Secret keeps what it held");
    assert_eq!(
        kept.metadata.resource_version, before.metadata.resource_version,
        "and is not written"
    );

    // Somebody adds the field in 1Password: the poller sees the item change and the
    // Secret follows, with no change to the resource.
    h.patch_item(
        "Database",
        &[PatchOp::add(
            "/fields/-",
            json!({ "label": "replica", "value": "db-replica.demo.svc" }),
        )],
    )
    .await;
    let secret = h
        .secret_where("db", Duration::from_secs(20), |s| data(s).contains_key("DB_REPLICA"))
        .await;
    assert_eq!(data(&secret)["DB_REPLICA"], "db-replica.demo.svc");
    h.ready_reason("db", "Synced").await;
}

#[tokio::test]
async fn a_label_used_twice_must_be_narrowed() {
    const TWO_HOSTS: &str = r#"
vaults:
  - name: Demo
    items:
      - title: Cluster
        sections: [{ id: primary, label: Primary }, { id: replica, label: Replica }]
        fields:
          - { id: h1, label: host, value: s3cr3t-primary, section: primary }
          - { id: h2, label: host, value: s3cr3t-replica, section: replica }
"#;
    let Some(h) = support::harness::harness("shape-ambiguous", TWO_HOSTS, INTERVAL).await else {
        return;
    };
    h.create_with("hosts", "vaults/Demo/items/Cluster", |opi| {
        opi.spec.fields = vec![entry("HOST", "host")];
    })
    .await;
    let failed = h.ready_reason("hosts", "FieldAmbiguous").await;
    let message = ready_message(&failed);
    assert!(message.contains("ids h1, h2"), "{message}");
    assert!(!message.contains("s3cr3t"), "{message}");
    assert!(
        h.secrets().get_opt("hosts").await.unwrap().is_none(),
        "nothing half-built"
    );

    let narrowed = json!({ "spec": { "fields": [{ "key": "HOST", "field": "host", "section": "Replica" }] } });
    h.items()
        .patch("hosts", &PatchParams::default(), &Patch::Merge(&narrowed))
        .await
        .unwrap();
    let secret = h.secret("hosts").await;
    assert_eq!(data(&secret)["HOST"], "s3cr3t-replica");
    assert!(
        secret.metadata.annotations.unwrap().contains_key(DATA_DIGEST),
        "sealed like any other Secret, so a restart can trust it"
    );
}

#[tokio::test]
async fn the_crd_refuses_what_can_be_known_at_apply_time() {
    let Some(h) = harness("shape-crd").await else { return };
    let refused = |spec: serde_json::Value| {
        let items = h.items();
        async move {
            let opi: OnePasswordItem = serde_json::from_value(json!({
                "apiVersion": "onepassword.com/v1",
                "kind": "OnePasswordItem",
                "metadata": { "name": "refused" },
                "spec": spec,
            }))
            .unwrap();
            match items.create(&PostParams::default(), &opi).await {
                Err(kube::Error::Api(e)) => {
                    assert_eq!(e.code, 422, "{e:?}");
                    e.message
                }
                other => panic!("accepted: {other:?}"),
            }
        }
    };
    let path = "vaults/Demo/items/Database";
    let cases = [
        (
            json!({ "itemPath": path, "fields": [{ "key": "K", "field": "a", "url": "b" }] }),
            "exactly one of field, file or url",
        ),
        (
            json!({ "itemPath": path, "fields": [{ "key": "K" }] }),
            "exactly one of field, file or url",
        ),
        (
            json!({ "itemPath": path, "fields": [{ "key": "K", "file": "a", "section": "s" }] }),
            "section narrows a field",
        ),
        (
            json!({ "itemPath": path, "fields": [{ "key": "no spaces", "field": "a" }] }),
            "should match",
        ),
        (
            json!({ "itemPath": path, "fields": [{ "key": "..x", "field": "a" }] }),
            "cannot be '.' or start with '..'",
        ),
        (
            json!({ "itemPath": path, "fields": [{ "key": "K", "field": "a" }, { "key": "K", "url": "b" }] }),
            "Duplicate value",
        ),
        (
            json!({ "itemPath": path, "template": { "metadata": { "labels": { "app.kubernetes.io/managed-by": "me" } } } }),
            "is the operator's own",
        ),
        (
            json!({ "itemPath": path, "template": { "metadata": { "annotations": { "operator.1password.io/item-version": "1" } } } }),
            "are the operator's own",
        ),
        (json!({}), "itemPath, or at least one entry of items, is required"),
        (
            json!({ "items": [{ "name": "Api", "itemPath": path }] }),
            "should match '^[a-z][a-z0-9_]*$'",
        ),
        (
            json!({ "items": [{ "name": "a", "itemPath": path }, { "name": "a", "itemPath": path }] }),
            "Duplicate value",
        ),
        (
            json!({ "items": [{ "name": "a", "itemPath": "Demo/Database" }] }),
            "itemPath must look like vaults/<vault id or title>/items/<item id or title>",
        ),
        (
            json!({ "fields": [{ "key": "K", "field": "a" }], "items": [{ "name": "a", "itemPath": path }] }),
            "fields select from the item at itemPath",
        ),
    ];
    for (spec, expected) in cases {
        let message = refused(spec.clone()).await;
        assert!(message.contains(expected), "{spec}: {message}");
    }
    // And what it accepts is synced as usual.
    h.create_with("ok", path, |opi| {
        opi.spec.fields = vec![entry("K", "username")];
    })
    .await;
    let ok = h.ready_reason("ok", "Synced").await;
    assert!(condition(&ok, "Synced").is_some());
}

#[tokio::test]
async fn a_template_error_keeps_the_secret_and_shows_no_value() {
    let Some(h) = harness("shape-template").await else {
        return;
    };
    h.create_with("url", "vaults/Demo/items/Database", |opi| {
        opi.spec.template = Some(Box::new(SecretTemplate {
            data: [("URL".to_string(), "{{ item.username }}@{{ item.host }}".to_string())].into(),
            ..SecretTemplate::default()
        }));
    })
    .await;
    let before = h
        .secret_where("url", Duration::from_secs(20), |s| {
            data(s).get("URL").map(String::as_str) == Some("app_user@db.demo.svc")
        })
        .await;

    // A typo: `item.passwrod` is undefined, which is an error, not an empty password.
    let broken = json!({ "spec": { "template": { "data": {
        "URL": "{{ item.username }}:{{ item.passwrod }}@{{ item.host }}"
    }}}});
    h.items()
        .patch("url", &PatchParams::default(), &Patch::Merge(&broken))
        .await
        .unwrap();
    let failed = h.ready_reason("url", "TemplateError").await;
    let message = ready_message(&failed);
    assert!(
        message.starts_with("template.data[\"URL\"], line 1: undefined value"),
        "{message}"
    );
    for value in ["app_user", "fake-db-password", "db.demo.svc"] {
        assert!(!message.contains(value), "{message}");
    }
    let event = h.wait_for_event("url", "TemplateError").await;
    assert!(!event.note.unwrap_or_default().contains("fake-db-password"));
    let kept = h.secret("url").await;
    assert_eq!(
        kept.metadata.resource_version, before.metadata.resource_version,
        "not written"
    );

    // A key made both by fields and by a template is refused by the CRD.
    let twice = json!({ "spec": { "fields": [{ "key": "URL", "field": "host" }] } });
    let err = h
        .items()
        .patch("url", &PatchParams::default(), &Patch::Merge(&twice))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("a key cannot come from both fields and template.data"),
        "{err}"
    );
}

#[tokio::test]
async fn every_referenced_item_is_watched_also_across_a_restart() {
    let Some(mut h) = harness("shape-items").await else {
        return;
    };
    h.create_with("app", "vaults/Demo/items/Database", |opi| {
        opi.spec.fields = vec![entry("DB_PASSWORD", "password")];
        opi.spec.items = vec![ItemReference {
            name: "api".into(),
            item_path: "vaults/Demo/items/API Token".into(),
            fields: vec![entry("API_TOKEN", "credential")],
        }];
    })
    .await;
    let token = |value: &'static str| move |s: &Secret| data(s).get("API_TOKEN").map(String::as_str) == Some(value);
    h.secret_where("app", Duration::from_secs(20), token("fake-api-token-abc123"))
        .await;

    // The second item changes in 1Password: the Secret follows.
    h.set_field("API Token", "credential", "fake-api-token-2").await;
    let secret = h
        .secret_where("app", Duration::from_secs(20), token("fake-api-token-2"))
        .await;
    assert_eq!(
        data(&secret)["DB_PASSWORD"],
        "fake-db-password-1",
        "the main item's key stays"
    );
    let updated = h.wait_for_event("app", "Updated").await;
    assert_eq!(
        updated.note.as_deref(),
        Some("Updated Secret app to item version 1 (items: api 2)")
    );

    // Changed while the operator is down: the new operator trusts nothing it cannot vouch
    // for, and brings the Secret up to date.
    h.secret_where("app", Duration::from_secs(20), |s| {
        s.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(DATA_DIGEST))
    })
    .await;
    h.ready_reason("app", "Synced").await;
    h.stop_operator().await;
    h.set_field("API Token", "credential", "fake-api-token-3").await;
    h.start_operator();
    h.secret_where("app", Duration::from_secs(20), token("fake-api-token-3"))
        .await;

    // A key both items make is refused, naming both, and the Secret stays.
    let before = h.secret("app").await;
    let clash = json!({ "spec": { "items": [{
        "name": "api",
        "itemPath": "vaults/Demo/items/API Token",
        "fields": [{ "key": "DB_PASSWORD", "field": "credential" }]
    }]}});
    h.items()
        .patch("app", &PatchParams::default(), &Patch::Merge(&clash))
        .await
        .unwrap();
    let failed = h.ready_reason("app", "KeyCollision").await;
    assert_eq!(
        ready_message(&failed),
        "key \"DB_PASSWORD\" is made both by fields and by items[api].fields; explicit keys never overwrite each other, so the Secret was left as it was"
    );
    assert_eq!(h.secret("app").await.data, before.data);
}
