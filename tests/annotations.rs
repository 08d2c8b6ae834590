//! Annotated workloads, on by default as in 1Password's Go operator: a workload with
//! `item-path` and `item-name` gets a Secret; removing the annotations strands nothing; the
//! Go operator's finalizer on a workload is removed.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use onepassword_operator::annotations::{ITEM_NAME, ITEM_PATH, LAST_RESTARTED, LEGACY_FINALIZER};
use onepassword_operator::crd::{OnePasswordItem, OnePasswordItemSpec};
use serde_json::json;
use support::harness::{Harness, harness_with, value};

const DATA: &str = support::harness::ONE_ITEM;

async fn start(prefix: &str) -> Option<Harness> {
    // Only auto-restart is switched on: annotated workloads need no setting.
    harness_with(prefix, DATA, Duration::from_millis(300), |s| s.auto_restart = true).await
}

macro_rules! start {
    ($prefix:expr) => {
        match start($prefix).await {
            Some(h) => h,
            None => return,
        }
    };
}

fn annotations(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn pod_template(name: &str, template_annotations: &[(&str, &str)]) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            annotations: annotations(template_annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("busybox".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

fn selector(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
        ..LabelSelector::default()
    }
}

fn deployment_object(name: &str, meta_annotations: &[(&str, &str)]) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: annotations(meta_annotations),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            selector: selector(name),
            template: pod_template(name, &[]),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

async fn deployment(h: &Harness, name: &str, meta_annotations: &[(&str, &str)]) -> Deployment {
    Api::<Deployment>::namespaced(h.kube.clone(), &h.ns)
        .create(&PostParams::default(), &deployment_object(name, meta_annotations))
        .await
        .unwrap()
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_annotated_deployment_gets_its_secret_and_restarts_on_change() {
    let h = start!("annotated");
    let dep = deployment(
        &h,
        "app",
        &[
            (ITEM_PATH, "vaults/Demo/items/Database"),
            (ITEM_NAME, "App Credentials"),
        ],
    )
    .await;
    let secret = h
        .secret_where("app-credentials", Duration::from_secs(20), |_| true)
        .await;
    assert_eq!(
        value(&secret, "password").as_deref(),
        Some("s3cr3t-1"),
        "the item-name is sanitized like Go"
    );
    assert_eq!(
        secret.annotations().get(ITEM_NAME).map(String::as_str),
        Some("App Credentials"),
        "the Secret carries the workload's item-name, as in Go"
    );
    let opi = h.items().get("app-credentials").await.unwrap();
    let owner = &opi.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Deployment", dep.uid().unwrap().as_str(), Some(true))
    );
    assert_eq!(
        secret.owner_references()[0].uid,
        opi.uid().unwrap(),
        "workload -> OnePasswordItem -> Secret"
    );
    h.ready_reason("app-credentials", "Synced").await;

    // The workload names the Secret in item-name, so it is restarted when the item changes.
    h.set_field("Database", "password", "s3cr3t-2").await;
    h.secret_where("app-credentials", Duration::from_secs(10), |s| {
        value(s, "password").as_deref() == Some("s3cr3t-2")
    })
    .await;
    let deployments = Api::<Deployment>::namespaced(h.kube.clone(), &h.ns);
    eventually("the annotated Deployment is restarted", async || {
        deployments
            .get("app")
            .await
            .unwrap()
            .spec?
            .template
            .metadata?
            .annotations?
            .get(LAST_RESTARTED)
            .cloned()
    })
    .await;
}

#[tokio::test]
async fn pod_template_annotations_work_for_statefulsets_and_removal_strands_nothing() {
    let h = start!("annotated-sts");
    let sts = StatefulSet {
        metadata: ObjectMeta {
            name: Some("db".into()),
            ..ObjectMeta::default()
        },
        spec: Some(StatefulSetSpec {
            selector: selector("db"),
            template: pod_template(
                "db",
                &[(ITEM_PATH, "vaults/Demo/items/Database"), (ITEM_NAME, "db-secret")],
            ),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };
    let statefulsets = Api::<StatefulSet>::namespaced(h.kube.clone(), &h.ns);
    statefulsets.create(&PostParams::default(), &sts).await.unwrap();
    let secret = h.secret_where("db-secret", Duration::from_secs(20), |_| true).await;
    assert_eq!(value(&secret, "password").as_deref(), Some("s3cr3t-1"));

    let remove =
        json!({ "spec": { "template": { "metadata": { "annotations": { ITEM_PATH: null, ITEM_NAME: null } } } } });
    statefulsets
        .patch("db", &PatchParams::default(), &Patch::Merge(&remove))
        .await
        .unwrap();
    eventually("the managed OnePasswordItem is deleted", async || {
        h.items().get_opt("db-secret").await.unwrap().is_none().then_some(())
    })
    .await;
    // Its Secret is owned by that OnePasswordItem only: a cluster's garbage collector deletes it.
    let secret = h.secrets().get("db-secret").await.unwrap();
    assert_eq!(secret.owner_references().len(), 1);
    assert_eq!(secret.owner_references()[0].kind, "OnePasswordItem");
}

#[tokio::test]
async fn a_secret_made_by_the_go_operator_for_the_workload_is_adopted() {
    let h = start!("annotated-migrate");
    let dep = deployment(&h, "legacy", &[]).await;
    let go_made = Secret {
        metadata: ObjectMeta {
            name: Some("legacy-secret".into()),
            owner_references: Some(vec![OwnerReference {
                controller: None,
                ..dep.controller_owner_ref(&()).unwrap()
            }]),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([("password".to_string(), "old".to_string())])),
        ..Secret::default()
    };
    h.secrets().create(&PostParams::default(), &go_made).await.unwrap();
    let annotate = json!({ "metadata": { "annotations": { ITEM_PATH: "vaults/Demo/items/Database", ITEM_NAME: "legacy-secret" } } });
    Api::<Deployment>::namespaced(h.kube.clone(), &h.ns)
        .patch("legacy", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .unwrap();
    let adopted = h
        .secret_where("legacy-secret", Duration::from_secs(20), |s| {
            value(s, "password").as_deref() == Some("s3cr3t-1")
        })
        .await;
    assert!(
        adopted
            .owner_references()
            .iter()
            .any(|r| r.kind == "OnePasswordItem" && r.controller == Some(true))
    );
}

#[tokio::test]
async fn an_existing_onepassworditem_of_that_name_is_left_alone() {
    let h = start!("annotated-conflict");
    let theirs = OnePasswordItem::new("taken", OnePasswordItemSpec::item("vaults/Demo/items/Database"));
    h.items().create(&PostParams::default(), &theirs).await.unwrap();
    deployment(
        &h,
        "app",
        &[(ITEM_PATH, "vaults/Demo/items/Other"), (ITEM_NAME, "taken")],
    )
    .await;
    let events: Api<Event> = Api::namespaced(h.kube.clone(), &h.ns);
    eventually("an ItemNameConflict Event on the Deployment", async || {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ItemNameConflict"))
    })
    .await;
    let opi = h.items().get("taken").await.unwrap();
    assert_eq!(opi.spec.item_path, "vaults/Demo/items/Database", "untouched");
    assert!(opi.owner_references().is_empty());
}

#[tokio::test]
async fn the_go_operators_finalizer_is_removed_from_workloads_so_they_can_be_deleted() {
    let h = start!("annotated-finalizer");
    let deployments = Api::<Deployment>::namespaced(h.kube.clone(), &h.ns);
    // As the Go operator leaves them: an annotated Deployment, and one whose annotations
    // were removed after the Go operator had put its finalizer there.
    for (name, meta_annotations) in [
        (
            "annotated",
            vec![
                (ITEM_PATH, "vaults/Demo/items/Database"),
                (ITEM_NAME, "annotated-secret"),
            ],
        ),
        ("plain", vec![]),
    ] {
        let mut d = deployment_object(name, &meta_annotations);
        d.metadata.finalizers = Some(vec![LEGACY_FINALIZER.into(), "example.com/keep".into()]);
        deployments.create(&PostParams::default(), &d).await.unwrap();
    }
    h.secret_where("annotated-secret", Duration::from_secs(20), |_| true)
        .await;
    for name in ["annotated", "plain"] {
        let finalizers = eventually("the Go operator's finalizer is removed", async || {
            let finalizers = deployments.get(name).await.unwrap().finalizers().to_vec();
            (!finalizers.iter().any(|f| f == LEGACY_FINALIZER)).then_some(finalizers)
        })
        .await;
        assert_eq!(
            finalizers,
            ["example.com/keep"],
            "other finalizers are not ours to touch"
        );
        // Let the deletion complete: only the test's own finalizer is left to drop.
        deployments.delete(name, &DeleteParams::default()).await.unwrap();
        let none: Vec<String> = Vec::new();
        deployments
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "finalizers": none } })),
            )
            .await
            .unwrap();
        eventually("the Deployment is deleted", async || {
            deployments.get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn under_a_label_selector_only_selected_items_and_workloads_are_managed() {
    let Some(h) = harness_with("shard", DATA, Duration::from_millis(300), |s| {
        s.label_selector = Some("shard in (a)".into())
    })
    .await
    else {
        return;
    };
    let shard = |name: &str| Some(BTreeMap::from([("shard".to_string(), name.to_string())]));
    h.create_with("mine", "vaults/Demo/items/Database", |opi| {
        opi.metadata.labels = shard("a")
    })
    .await;
    h.create_with("theirs", "vaults/Demo/items/Database", |opi| {
        opi.metadata.labels = shard("b")
    })
    .await;
    let deployments = Api::<Deployment>::namespaced(h.kube.clone(), &h.ns);
    for (name, label) in [("app-a", "a"), ("app-b", "b")] {
        let mut workload = deployment_object(
            name,
            &[
                (ITEM_PATH, "vaults/Demo/items/Database"),
                (ITEM_NAME, &format!("{name}-db")),
            ],
        );
        workload.metadata.labels = shard(label);
        deployments.create(&PostParams::default(), &workload).await.unwrap();
    }

    h.ready_reason("mine", "Synced").await;
    let secret = h.secret_where("app-a-db", Duration::from_secs(20), |_| true).await;
    assert_eq!(value(&secret, "password").as_deref(), Some("s3cr3t-1"));
    let managed = h.items().get("app-a-db").await.unwrap();
    assert_eq!(
        managed.labels().get("shard").map(String::as_str),
        Some("a"),
        "the item made for a selected workload is selected too"
    );
    h.ready_reason("app-a-db", "Synced").await;

    // Several polls later, what another instance selects is untouched.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let theirs = h.items().get("theirs").await.unwrap();
    assert_eq!(theirs.status, None, "not ours: no status");
    for name in ["theirs", "app-b-db"] {
        assert!(h.secrets().get_opt(name).await.unwrap().is_none(), "no Secret {name}");
    }
    assert!(
        h.items().get_opt("app-b-db").await.unwrap().is_none(),
        "no item for a workload another instance selects"
    );
}
