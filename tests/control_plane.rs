//! Smoke tests of the local control plane: the CRD, the status subresource, server-side
//! apply with ownerReferences, RBAC and TokenRequest behave as on a real cluster.

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use onepassword_operator::crd::{OnePasswordItem, OnePasswordItemSpec, OnePasswordItemStatus};
use opo_testenv::local_cluster::{Identity, PLAIN_USER};
use serde_json::json;

fn item(name: &str, path: &str) -> OnePasswordItem {
    OnePasswordItem::new(name, OnePasswordItemSpec::item(path))
}

#[tokio::test]
async fn crd_is_served_and_validates_item_paths() {
    let cluster = require_cluster!();
    let client = cluster.admin_client().unwrap();
    let ns = support::namespace(&client, "crd").await;
    let api: Api<OnePasswordItem> = Api::namespaced(client, &ns);

    let mut manifest = item("docker", "vaults/Prod/items/Docker Hub");
    manifest.secret_type = Some("kubernetes.io/dockerconfigjson".into());
    api.create(&PostParams::default(), &manifest).await.unwrap();
    let stored = api.get("docker").await.unwrap();
    assert_eq!(
        stored.secret_type.as_deref(),
        Some("kubernetes.io/dockerconfigjson"),
        "top-level type is kept"
    );
    assert_eq!(stored.spec.item_path, "vaults/Prod/items/Docker Hub");

    for bad in [
        "vaults/Prod",
        "vaults/Prod/items/",
        "secrets/a/items/b",
        "vaults/a/b/items/c",
    ] {
        let err = api.create(&PostParams::default(), &item("bad", bad)).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("itemPath must look like vaults/<vault id or title>/items/<item id or title>"),
            "{bad}: {err}"
        );
    }
}

#[tokio::test]
async fn create_get_and_watch() {
    let cluster = require_cluster!();
    let client = cluster.admin_client().unwrap();
    let ns = support::namespace(&client, "watch").await;
    let api: Api<OnePasswordItem> = Api::namespaced(client, &ns);
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    // The initial list of an empty namespace ends with InitDone.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Event::InitDone => break,
            _ => continue,
        }
    }
    api.create(&PostParams::default(), &item("watched", "vaults/a/items/b"))
        .await
        .unwrap();
    let seen = loop {
        if let Event::Apply(obj) = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            break obj;
        }
    };
    assert_eq!(seen.name_any(), "watched");
    assert_eq!(seen.spec.item_path, "vaults/a/items/b");
}

#[tokio::test]
async fn status_is_a_subresource() {
    let cluster = require_cluster!();
    let client = cluster.admin_client().unwrap();
    let ns = support::namespace(&client, "status").await;
    let api: Api<OnePasswordItem> = Api::namespaced(client, &ns);
    api.create(&PostParams::default(), &item("s", "vaults/a/items/b"))
        .await
        .unwrap();

    let status = json!({"status": {"itemVersion": 7, "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "ok"}]}});
    api.patch_status("s", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let got = api.get("s").await.unwrap();
    let got_status: OnePasswordItemStatus = got.status.clone().unwrap();
    assert_eq!(got_status.item_version, Some(7));
    assert_eq!(got_status.conditions[0].reason.as_deref(), Some("Synced"));

    // A write to the main resource cannot change status.
    let sneaky = json!({"status": {"itemVersion": 99}, "spec": {"itemPath": "vaults/a/items/c"}});
    api.patch("s", &PatchParams::default(), &Patch::Merge(&sneaky))
        .await
        .unwrap();
    let got = api.get("s").await.unwrap();
    assert_eq!(got.spec.item_path, "vaults/a/items/c");
    assert_eq!(got.status.unwrap().item_version, Some(7));
    assert_eq!(got.metadata.generation, Some(2), "spec changes bump the generation");
}

#[tokio::test]
async fn server_side_apply_of_an_owned_secret() {
    let cluster = require_cluster!();
    let client = cluster.admin_client().unwrap();
    let ns = support::namespace(&client, "ssa").await;
    let items: Api<OnePasswordItem> = Api::namespaced(client.clone(), &ns);
    let owner = items
        .create(&PostParams::default(), &item("db", "vaults/a/items/b"))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    let owner_ref = OwnerReference {
        controller: Some(true),
        ..owner.controller_owner_ref(&()).unwrap()
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("db".into()),
            owner_references: Some(vec![owner_ref.clone()]),
            ..ObjectMeta::default()
        },
        string_data: Some([("password".to_string(), "p1".to_string())].into()),
        ..Secret::default()
    };
    let params = PatchParams::apply("onepassword-operator").force();
    secrets.patch("db", &params, &Patch::Apply(&secret)).await.unwrap();
    let stored = secrets.get("db").await.unwrap();
    assert_eq!(stored.owner_references(), &[owner_ref]);
    assert_eq!(stored.data.unwrap()["password"].0, b"p1");
    let managers: Vec<String> = stored
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["onepassword-operator"]);
    assert_eq!(Secret::kind(&()), "Secret");
}

#[tokio::test]
async fn rbac_denies_what_it_does_not_grant() {
    let cluster = require_cluster!();
    let admin = cluster.admin_client().unwrap();
    let ns = support::namespace(&admin, "rbac").await;
    let other = support::namespace(&admin, "rbac-other").await;
    let user = cluster.client(&Identity::PlainUser).unwrap();
    let secrets: Api<Secret> = Api::namespaced(user.clone(), &ns);
    let err = secrets.list(&Default::default()).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 403), "{err}");

    let role = Role {
        metadata: ObjectMeta {
            name: Some("read-secrets".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("read-secrets".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "read-secrets".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: PLAIN_USER.into(),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    // The apiserver's authorizer learns of a new binding through its own watch, a moment
    // after the create returns.
    support::wait_for("granted: list in its namespace", Duration::from_secs(10), async || {
        secrets.list(&Default::default()).await.ok()
    })
    .await;
    let err = secrets.delete("anything", &Default::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "not granted: delete: {err}"
    );
    let err = Api::<Secret>::namespaced(user, &other)
        .list(&Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "not granted: another namespace: {err}"
    );
}

#[tokio::test]
async fn service_account_tokens_from_token_request() {
    let cluster = require_cluster!();
    let admin = cluster.admin_client().unwrap();
    let ns = support::namespace(&admin, "sa").await;
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("operator".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let token = cluster.service_account_token(&admin, &ns, "operator").await.unwrap();
    let as_sa = cluster.client(&Identity::Token(token)).unwrap();
    let review: SelfSubjectReview = Api::all(as_sa.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let username = review.status.unwrap().user_info.unwrap().username.unwrap();
    assert_eq!(username, format!("system:serviceaccount:{ns}:operator"));
    let err = Api::<Secret>::namespaced(as_sa, &ns)
        .list(&Default::default())
        .await
        .unwrap_err();
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 403), "{err}");
}

#[test]
fn figures() {
    // Start-up time and memory, printed for the project's notes (`--nocapture`).
    let Some(cluster) = support::cluster() else { return };
    let (etcd, apiserver) = cluster.rss_kib();
    eprintln!(
        "control plane: started in {:?}; RSS etcd {etcd:?} KiB, kube-apiserver {apiserver:?} KiB",
        cluster.startup
    );
    assert!(etcd.is_some() && apiserver.is_some(), "both processes are running");
}
