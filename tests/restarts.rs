//! Workload restarts when an item's data changes: each workload kind, each way of using a
//! Secret, the Go precedence of annotations, never on creation, one restart per burst.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, EnvVarSource, Namespace, PodSpec, PodTemplateSpec, SecretEnvSource,
    SecretKeySelector, SecretVolumeSource, Volume,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use onepassword_operator::RESTART_DEBOUNCE as DEBOUNCE;
use onepassword_operator::annotations::{AUTO_RESTART, LAST_RESTARTED};
use onepassword_operator::crd::ItemReference;
use serde_json::json;
use support::harness::{Harness, harness_with, value};

const DATA: &str = support::harness::ONE_ITEM;

async fn start(prefix: &str, auto_restart: bool) -> Option<Harness> {
    harness_with(prefix, DATA, Duration::from_millis(300), |s| {
        s.auto_restart = auto_restart
    })
    .await
}

macro_rules! start {
    ($prefix:expr, $auto:expr) => {
        match start($prefix, $auto).await {
            Some(h) => h,
            None => return,
        }
    };
}

fn meta(name: &str, annotations: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        annotations: Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ObjectMeta::default()
    }
}

fn template(name: &str, spec: PodSpec) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}

fn selector(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
        ..LabelSelector::default()
    }
}

fn env_using(secret: &str) -> PodSpec {
    let env = EnvVar {
        name: "PASSWORD".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: "password".into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    PodSpec {
        containers: vec![Container {
            name: "app".into(),
            image: Some("busybox".into()),
            env: Some(vec![env]),
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

fn env_from(secret: &str) -> PodSpec {
    let from = EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: secret.into(),
            optional: None,
        }),
        ..EnvFromSource::default()
    };
    PodSpec {
        containers: vec![Container {
            name: "app".into(),
            image: Some("busybox".into()),
            env_from: Some(vec![from]),
            ..Container::default()
        }],
        ..PodSpec::default()
    }
}

fn volume(secret: &str) -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "app".into(),
            image: Some("busybox".into()),
            ..Container::default()
        }],
        volumes: Some(vec![Volume {
            name: "secret".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.into()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    }
}

async fn deployment(h: &Harness, name: &str, annotations: &[(&str, &str)], spec: PodSpec) {
    let d = Deployment {
        metadata: meta(name, annotations),
        spec: Some(DeploymentSpec {
            selector: selector(name),
            template: template(name, spec),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    Api::<Deployment>::namespaced(h.kube.clone(), &h.ns)
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
}

async fn restarted_deployment(h: &Harness, name: &str) -> Option<String> {
    let d = Api::<Deployment>::namespaced(h.kube.clone(), &h.ns)
        .get(name)
        .await
        .unwrap();
    d.spec?.template.metadata?.annotations?.get(LAST_RESTARTED).cloned()
}

async fn generation(h: &Harness, name: &str) -> i64 {
    Api::<Deployment>::namespaced(h.kube.clone(), &h.ns)
        .get(name)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap()
}

/// Changes the item and waits until its Secret has the new data.
async fn change_item(h: &Harness, new_value: &str) {
    h.set_field("Database", "password", new_value).await;
    h.secret_where("db", Duration::from_secs(10), |s| {
        value(s, "password").as_deref() == Some(new_value)
    })
    .await;
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Long enough for any pending restart to have happened.
async fn settle() {
    tokio::time::sleep(DEBOUNCE + Duration::from_secs(2)).await;
}

#[tokio::test]
async fn every_workload_kind_using_the_secret_is_restarted_but_not_on_creation() {
    let h = start!("restart-kinds", true);
    deployment(&h, "by-env", &[], env_using("db")).await;
    deployment(&h, "unrelated", &[], env_using("other")).await;
    let sts = StatefulSet {
        metadata: meta("by-volume", &[]),
        spec: Some(StatefulSetSpec {
            selector: selector("by-volume"),
            template: template("by-volume", volume("db")),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };
    Api::<StatefulSet>::namespaced(h.kube.clone(), &h.ns)
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
    let ds = DaemonSet {
        metadata: meta("by-env-from", &[]),
        spec: Some(DaemonSetSpec {
            selector: selector("by-env-from"),
            template: template("by-env-from", env_from("db")),
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    };
    Api::<DaemonSet>::namespaced(h.kube.clone(), &h.ns)
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();

    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;
    settle().await;
    assert_eq!(
        restarted_deployment(&h, "by-env").await,
        None,
        "no restart when the Secret is first created"
    );

    change_item(&h, "s3cr3t-2").await;
    eventually("the Deployment was restarted", async || {
        restarted_deployment(&h, "by-env").await.is_some()
    })
    .await;
    eventually("the StatefulSet was restarted", async || {
        let s = Api::<StatefulSet>::namespaced(h.kube.clone(), &h.ns)
            .get("by-volume")
            .await
            .unwrap();
        s.spec
            .unwrap()
            .template
            .metadata
            .and_then(|m| m.annotations)
            .is_some_and(|a| a.contains_key(LAST_RESTARTED))
    })
    .await;
    eventually("the DaemonSet was restarted", async || {
        let d = Api::<DaemonSet>::namespaced(h.kube.clone(), &h.ns)
            .get("by-env-from")
            .await
            .unwrap();
        d.spec
            .unwrap()
            .template
            .metadata
            .and_then(|m| m.annotations)
            .is_some_and(|a| a.contains_key(LAST_RESTARTED))
    })
    .await;
    let stamp = restarted_deployment(&h, "by-env").await.unwrap();
    assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "RFC 3339: {stamp}");
    assert_eq!(restarted_deployment(&h, "unrelated").await, None);

    let events: Api<Event> = Api::namespaced(h.kube.clone(), &h.ns);
    eventually("a Restarted Event on the Deployment", async || {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("Restarted")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("by-env")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("Secret db (item version 2)"))
            })
    })
    .await;
}

#[tokio::test]
async fn annotations_decide_with_the_go_precedence() {
    let h = start!("restart-precedence", false);
    let ns = json!({ "metadata": { "annotations": { AUTO_RESTART: "true" } } });
    Api::<Namespace>::all(h.kube.clone())
        .patch(&h.ns, &PatchParams::default(), &Patch::Merge(&ns))
        .await
        .unwrap();
    deployment(&h, "follows-namespace", &[], env_using("db")).await;
    deployment(&h, "opts-out", &[(AUTO_RESTART, "false")], env_using("db")).await;
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;

    change_item(&h, "s3cr3t-2").await;
    eventually("the namespace annotation beats AUTO_RESTART=false", async || {
        restarted_deployment(&h, "follows-namespace").await.is_some()
    })
    .await;
    settle().await;
    assert_eq!(
        restarted_deployment(&h, "opts-out").await,
        None,
        "the workload annotation beats the namespace's"
    );

    // The Secret's annotation (copied from the OnePasswordItem) beats everything.
    let before = generation(&h, "follows-namespace").await;
    let opi = json!({ "metadata": { "annotations": { AUTO_RESTART: "false" } } });
    h.items()
        .patch("db", &PatchParams::default(), &Patch::Merge(&opi))
        .await
        .unwrap();
    h.secret_where("db", Duration::from_secs(10), |s| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(AUTO_RESTART))
            .is_some_and(|v| v == "false")
    })
    .await;
    change_item(&h, "s3cr3t-3").await;
    settle().await;
    assert_eq!(
        generation(&h, "follows-namespace").await,
        before,
        "auto-restart=false on the Secret wins"
    );
}

#[tokio::test]
async fn a_burst_of_changes_restarts_once() {
    let h = start!("restart-burst", true);
    deployment(&h, "app", &[], env_using("db")).await;
    h.create("db", "vaults/Demo/items/Database").await;
    h.ready_reason("db", "Synced").await;
    let before = generation(&h, "app").await;
    change_item(&h, "s3cr3t-2").await;
    change_item(&h, "s3cr3t-3").await;
    change_item(&h, "s3cr3t-4").await;
    settle().await;
    assert_eq!(
        generation(&h, "app").await,
        before + 1,
        "three changes within the debounce window, one restart"
    );
}

#[tokio::test]
async fn a_change_of_any_item_in_a_secret_restarts_its_workloads() {
    let data = r#"
vaults:
  - name: Demo
    items:
      - { title: Database, fields: [{ label: password, value: s3cr3t-1 }] }
      - { title: API, fields: [{ label: token, value: t0ken-1 }] }
"#;
    let Some(h) = harness_with("restart-items", data, Duration::from_millis(300), |s| {
        s.auto_restart = true
    })
    .await
    else {
        return;
    };
    deployment(&h, "app", &[], env_from("db")).await;
    h.create_with("db", "vaults/Demo/items/Database", |opi| {
        opi.spec.items = vec![ItemReference {
            name: "api".into(),
            item_path: "vaults/Demo/items/API".into(),
            fields: Vec::new(),
        }];
    })
    .await;
    h.ready_reason("db", "Synced").await;
    settle().await;
    let before = generation(&h, "app").await;
    // Only the second item changes: the Secret's item-version annotation (the first
    // item's) stays as it was.
    h.set_field("API", "token", "t0ken-2").await;
    h.secret_where("db", Duration::from_secs(10), |s| {
        value(s, "token").as_deref() == Some("t0ken-2")
    })
    .await;
    eventually("the Deployment is restarted", async || {
        generation(&h, "app").await == before + 1
    })
    .await;
    assert!(restarted_deployment(&h, "app").await.is_some());
}
