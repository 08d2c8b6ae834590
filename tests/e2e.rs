//! End to end, the way users run it: a real one-node cluster (a kubelet on containerd), the
//! chart installed with Helm and the operator running as a pod from its image, the Connect
//! simulator deployed in the cluster as the Connect server (a Deployment and a Service), and
//! app pods that mount the synced Secrets.
//!
//! One cluster and one release for the whole binary. Tests that change the release itself
//! (upgrade, uninstall, killing the operator's pod) hold [`RELEASE`] for writing; the others
//! hold it for reading, each in a namespace of its own.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::connect::{ConnectClient, ConnectConfig};
use onepassword_operator::crd::OnePasswordItem;
use opo_testenv::in_cluster::{
    Helm, OPERATOR_NAMESPACE, OPERATOR_SELECTOR, RELEASE_NAME, SimulatorInCluster, deploy_simulator, from_json,
};
use opo_testenv::local_cluster::ControlPlaneBinaries;
use opo_testenv::node::{BUSYBOX_IMAGE, Images, OPERATOR_IMAGE, OneNodeCluster};
use secrecy::SecretString;
use serde_json::{Value, json};

const VAULT: &str = "E2E";
/// Items of the simulator, one or more per test, each with `password` = `<title>-v1`.
const ITEMS: [&str; 7] = [
    "mounted",
    "rolled",
    "annotated",
    "collected",
    "killed",
    "upgraded",
    "kept",
];
const POLL_SECONDS: u64 = 2;
const TIMEOUT: Duration = Duration::from_secs(90);

/// Held for reading by tests that use the release, for writing by those that change it.
static RELEASE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

struct World {
    node: OneNodeCluster,
    helm: Helm,
    sim: SimulatorInCluster,
}

/// The cluster with the simulator and the release installed; `None` where it may be skipped.
fn world() -> Option<&'static World> {
    static WORLD: OnceLock<Option<Result<World, String>>> = OnceLock::new();
    let outcome = WORLD.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let located = ControlPlaneBinaries::locate(root)
            .and_then(|b| Ok((b, Images::locate()?)))
            .and_then(|found| opo_testenv::node::check_host().map(|()| found));
        let (binaries, images) = match located {
            Ok(found) => found,
            Err(message) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{message}"),
            Err(message) => {
                eprintln!("SKIPPED: {message}");
                return None;
            }
        };
        // Its own thread and runtime: the processes outlive every test's runtime.
        let started = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let node = OneNodeCluster::start(&binaries, &images).await?;
                eprintln!("one-node cluster ready in {:.1}s", node.startup.as_secs_f64());
                let client = node.control_plane.admin_client()?;
                let sim = match deploy_simulator(&client, Some(&simulator_data())).await {
                    Ok(sim) => sim,
                    Err(message) => {
                        return Err(format!(
                            "{message}\nkube-proxy's log ends with:\n{}",
                            node.log_tail("kube-proxy")
                        ));
                    }
                };
                let world = World {
                    helm: Helm::new(binaries.path("helm"), &node, root),
                    node,
                    sim,
                };
                world.helm_install().await?;
                Ok::<_, String>(world)
            })
        })
        .join()
        .expect("cluster start-up thread");
        Some(started)
    });
    match outcome {
        None => None,
        Some(Ok(world)) => Some(world),
        Some(Err(message)) => panic!("the one-node cluster did not start: {message}"),
    }
}

macro_rules! require_world {
    () => {
        match world() {
            Some(world) => world,
            None => return,
        }
    };
}

/// The simulator's data: a reader token for the operator, a writer token for the tests.
fn simulator_data() -> String {
    let mut yaml = String::from(
        "tokens:\n  - { name: operator, token: op-token, vaults: { \"*\": read } }\n  - { name: writer, token: writer-token, vaults: { \"*\": read-write } }\nvaults:\n",
    );
    yaml.push_str(&format!("  - name: {VAULT}\n    items:\n"));
    for title in ITEMS {
        yaml.push_str(&format!(
            "      - {{ title: {title}, fields: [{{ label: password, value: {title}-v1 }}] }}\n"
        ));
    }
    yaml
}

impl World {
    fn client(&self) -> kube::Client {
        self.node.control_plane.admin_client().unwrap()
    }

    fn writer(&self) -> ConnectClient {
        let config = ConnectConfig::new(self.sim.url.clone(), SecretString::from("writer-token"));
        ConnectClient::new(config).unwrap()
    }

    /// Sets an item's `password` in the simulator.
    async fn set_password(&self, title: &str, value: &str) {
        let writer = self.writer();
        let vault = writer
            .list_vaults(None)
            .await
            .unwrap()
            .into_iter()
            .find(|v| v.name == VAULT)
            .unwrap();
        let items = writer.list_items(&vault.id, None).await.unwrap();
        let item = items.into_iter().find(|i| i.title == title).unwrap();
        let full = writer.get_item(&vault.id, &item.id).await.unwrap();
        let field = full.fields.iter().find(|f| f.label == "password").unwrap();
        let op = PatchOp::replace(format!("/fields/{}/value", field.id), json!(value));
        writer.patch_item(&vault.id, &item.id, &[op]).await.unwrap();
    }

    /// `helm install` of the chart, as every test but the uninstalling one expects it.
    async fn helm_install(&self) -> Result<String, String> {
        let extra = [format!("operator.pollingInterval={POLL_SECONDS}")];
        let installed = self
            .helm
            .install_operator(&self.client(), &self.sim.in_cluster_url, "op-token", &extra)
            .await;
        if installed.is_err() {
            self.node.check_running()?;
        }
        installed
    }

    /// Waits for `check`; on time-out the test fails, saying what the cluster's components
    /// say when one of them stopped.
    async fn eventually<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() > deadline {
                let health = self
                    .node
                    .check_running()
                    .err()
                    .unwrap_or_else(|| "every component runs".into());
                panic!("{what}: not within {TIMEOUT:?} ({health})");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A namespace of its own for one test, with its default ServiceAccount (pods need it).
    async fn namespace(&self, prefix: &str) -> String {
        let client = self.client();
        let ns = support::namespace(&client, prefix).await;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, &ns);
        self.eventually("the namespace's default ServiceAccount", async || {
            accounts.get_opt("default").await.unwrap()
        })
        .await;
        ns
    }

    async fn create_item(&self, ns: &str, name: &str, title: &str, annotations: Value) -> OnePasswordItem {
        let api: Api<OnePasswordItem> = Api::namespaced(self.client(), ns);
        api.create(
            &PostParams::default(),
            &from_json(json!({
                "apiVersion": "onepassword.com/v1",
                "kind": "OnePasswordItem",
                "metadata": { "name": name, "annotations": annotations },
                "spec": { "itemPath": format!("vaults/{VAULT}/items/{title}") },
            })),
        )
        .await
        .unwrap()
    }

    async fn secret_value(&self, ns: &str, name: &str) -> Option<String> {
        let api: Api<Secret> = Api::namespaced(self.client(), ns);
        let secret = api.get_opt(name).await.unwrap()?;
        let bytes = secret.data?.get("password")?.0.clone();
        Some(String::from_utf8(bytes).unwrap())
    }

    /// The last line a container logged, if it runs.
    async fn last_log_line(&self, ns: &str, pod: &str) -> Option<String> {
        let api: Api<Pod> = Api::namespaced(self.client(), ns);
        let params = LogParams {
            tail_lines: Some(1),
            ..LogParams::default()
        };
        let text = api.logs(pod, &params).await.ok()?;
        text.lines().last().map(str::to_owned)
    }

    /// Running pods of a namespace that match a label selector, newest first.
    async fn running_pods(&self, ns: &str, selector: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client(), ns);
        let mut pods: Vec<Pod> = api
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect();
        pods.sort_by_key(|p| std::cmp::Reverse(p.creation_timestamp()));
        pods
    }

    /// Waits until the only running pod of `selector` logs `line`; returns its uid (a
    /// StatefulSet's new pod has the old one's name).
    async fn pod_logging(&self, ns: &str, selector: &str, line: &str) -> String {
        self.eventually(&format!("a pod of {selector} in {ns} logging {line:?}"), async || {
            let pods = self.running_pods(ns, selector).await;
            let [pod] = pods.as_slice() else { return None };
            let logged = self.last_log_line(ns, &pod.name_any()).await;
            (logged.as_deref() == Some(line)).then(|| pod.uid().unwrap_or_default())
        })
        .await
    }
}

/// A container that prints, every half second, the Secret's `password` as mounted and as
/// the environment gave it at start.
fn app_container(secret: &str) -> Value {
    json!({
        "name": "app",
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", "while true; do echo \"file=$(cat /secret/password) env=$PASSWORD\"; sleep 0.5; done"],
        "env": [{ "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": secret, "key": "password" } } }],
        "volumeMounts": [{ "name": "secret", "mountPath": "/secret", "readOnly": true }],
    })
}

fn app_pod_spec(secret: &str) -> Value {
    json!({
        "terminationGracePeriodSeconds": 0,
        "containers": [app_container(secret)],
        "volumes": [{ "name": "secret", "secret": { "secretName": secret } }],
    })
}

fn labels(app: &str) -> Value {
    json!({ "app": app })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synced_secret_reaches_a_pod_as_file_and_env_and_a_change_reaches_the_running_pod() {
    let world = require_world!();
    let _release = RELEASE.read().await;
    let ns = world.namespace("e2e-mount").await;
    world.create_item(&ns, "db", "mounted", json!({})).await;
    world
        .eventually("the Secret", async || {
            (world.secret_value(&ns, "db").await.as_deref() == Some("mounted-v1")).then_some(())
        })
        .await;

    let pods: Api<Pod> = Api::namespaced(world.client(), &ns);
    let mut pod: Pod =
        from_json(json!({ "metadata": { "name": "app", "labels": labels("app") }, "spec": app_pod_spec("db") }));
    let created = Instant::now();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    world
        .pod_logging(&ns, "app=app", "file=mounted-v1 env=mounted-v1")
        .await;
    eprintln!(
        "pod started and read the Secret in {:.1}s",
        created.elapsed().as_secs_f64()
    );

    let changed = Instant::now();
    world.set_password("mounted", "mounted-v2").await;
    // The mounted file follows in the running pod; the environment keeps its start value.
    world
        .pod_logging(&ns, "app=app", "file=mounted-v2 env=mounted-v1")
        .await;
    eprintln!(
        "item change -> new value inside the running pod in {:.1}s",
        changed.elapsed().as_secs_f64()
    );
    pod = pods.get("app").await.unwrap();
    assert_eq!(pod.status.unwrap().container_statuses.unwrap()[0].restart_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_restart_a_change_rolls_deployments_statefulsets_and_daemonsets() {
    let world = require_world!();
    let _release = RELEASE.read().await;
    let ns = world.namespace("e2e-restart").await;
    world.create_item(&ns, "creds", "rolled", json!({})).await;
    world
        .eventually("the Secret", async || world.secret_value(&ns, "creds").await)
        .await;
    let client = world.client();
    let restart = json!({ "operator.1password.io/auto-restart": "true" });
    let template = |app: &str| json!({ "metadata": { "labels": labels(app) }, "spec": app_pod_spec("creds") });
    let post = PostParams::default();
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(
            &post,
            &from_json(json!({
                "metadata": { "name": "web", "annotations": restart },
                "spec": { "selector": { "matchLabels": labels("web") }, "template": template("web") },
            })),
        )
        .await
        .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .create(
            &post,
            &from_json(json!({
                "metadata": { "name": "db", "annotations": restart },
                "spec": { "serviceName": "db", "selector": { "matchLabels": labels("db") }, "template": template("db") },
            })),
        )
        .await
        .unwrap();
    Api::<DaemonSet>::namespaced(client.clone(), &ns)
        .create(
            &post,
            &from_json(json!({
                "metadata": { "name": "agent", "annotations": restart },
                "spec": { "selector": { "matchLabels": labels("agent") }, "template": template("agent") },
            })),
        )
        .await
        .unwrap();
    let mut first = BTreeMap::new();
    for app in ["web", "db", "agent"] {
        let pod = world
            .pod_logging(&ns, &format!("app={app}"), "file=rolled-v1 env=rolled-v1")
            .await;
        first.insert(app, pod);
    }

    world.set_password("rolled", "rolled-v2").await;
    // A new pod of each, whose environment has the new value.
    for app in ["web", "db", "agent"] {
        let pod = world
            .pod_logging(&ns, &format!("app={app}"), "file=rolled-v2 env=rolled-v2")
            .await;
        assert_ne!(pod, first[app], "{app} rolled a new pod (a new uid)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotated_deployment_gets_its_secret_and_its_pod_starts_with_it() {
    let world = require_world!();
    let _release = RELEASE.read().await;
    let ns = world.namespace("e2e-annotated").await;
    Api::<Deployment>::namespaced(world.client(), &ns)
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": {
                    "name": "api",
                    "annotations": {
                        "operator.1password.io/item-path": format!("vaults/{VAULT}/items/annotated"),
                        "operator.1password.io/item-name": "api-secret",
                    },
                },
                "spec": {
                    "selector": { "matchLabels": labels("api") },
                    "template": { "metadata": { "labels": labels("api") }, "spec": app_pod_spec("api-secret") },
                },
            })),
        )
        .await
        .unwrap();
    // The pod cannot start before the Secret exists; the kubelet retries until it does.
    world
        .pod_logging(&ns, "app=api", "file=annotated-v1 env=annotated-v1")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_item_collects_its_secret_and_deleting_the_namespace_completes() {
    let world = require_world!();
    let _release = RELEASE.read().await;
    let ns = world.namespace("e2e-gc").await;
    world.create_item(&ns, "gone", "collected", json!({})).await;
    world
        .eventually("the Secret", async || world.secret_value(&ns, "gone").await)
        .await;
    let items: Api<OnePasswordItem> = Api::namespaced(world.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(world.client(), &ns);
    let secret = secrets.get("gone").await.unwrap();
    let owner = &secret.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("OnePasswordItem", "gone"));

    items.delete("gone", &DeleteParams::default()).await.unwrap();
    // The garbage collector of the controller-manager deletes it, not the operator.
    world
        .eventually("the Secret deleted by garbage collection", async || {
            secrets.get_opt("gone").await.unwrap().is_none().then_some(())
        })
        .await;

    world.create_item(&ns, "again", "collected", json!({})).await;
    world
        .eventually("the second Secret", async || world.secret_value(&ns, "again").await)
        .await;
    let namespaces: Api<Namespace> = Api::all(world.client());
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
    world
        .eventually("the namespace deleted", async || {
            namespaces.get_opt(&ns).await.unwrap().is_none().then_some(())
        })
        .await;
}

/// The operator's running pod.
async fn operator_pod(world: &World) -> String {
    world
        .eventually("a running operator pod", async || {
            let pods = world.running_pods(OPERATOR_NAMESPACE, OPERATOR_SELECTOR).await;
            let ready = pods.into_iter().find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })?;
            Some(ready.name_any())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_pod_killed_mid_sync_is_replaced_and_every_item_converges() {
    let world = require_world!();
    let _release = RELEASE.write().await;
    let ns = world.namespace("e2e-killed").await;
    let before = operator_pod(world).await;
    let count = 40;
    for i in 0..count {
        world.create_item(&ns, &format!("item-{i}"), "killed", json!({})).await;
    }
    let pods: Api<Pod> = Api::namespaced(world.client(), OPERATOR_NAMESPACE);
    pods.delete(&before, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let after = operator_pod(world).await;
    assert_ne!(after, before, "the Deployment replaced the killed pod");
    let secrets: Api<Secret> = Api::namespaced(world.client(), &ns);
    world
        .eventually(&format!("{count} Secrets"), async || {
            let listed = secrets.list(&ListParams::default()).await.unwrap();
            (listed
                .items
                .iter()
                .filter(|s| s.name_any().starts_with("item-"))
                .count()
                == count)
                .then_some(())
        })
        .await;
    let items: Api<OnePasswordItem> = Api::namespaced(world.client(), &ns);
    world
        .eventually("every item Ready", async || {
            let listed = items.list(&ListParams::default()).await.unwrap();
            listed
                .items
                .iter()
                .all(|item| {
                    item.status
                        .as_ref()
                        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_upgrade_to_a_new_image_and_uninstall_keeps_the_crd_and_the_secrets() {
    let world = require_world!();
    let _release = RELEASE.write().await;
    let ns = world.namespace("e2e-helm").await;
    world.create_item(&ns, "kept", "kept", json!({})).await;
    world
        .eventually("the Secret", async || world.secret_value(&ns, "kept").await)
        .await;

    // A new image: the same build under a new tag, as a release would bring.
    let (repository, _) = OPERATOR_IMAGE.rsplit_once(':').unwrap();
    let upgraded = format!("{repository}:dev-next");
    world.node.tag_image(OPERATOR_IMAGE, &upgraded).unwrap();
    let chart = world.helm.chart.to_string_lossy().into_owned();
    world
        .helm
        .run(&[
            "upgrade",
            RELEASE_NAME,
            &chart,
            "--namespace",
            OPERATOR_NAMESPACE,
            "--reuse-values",
            "--set",
            "image.tag=dev-next",
            "--wait",
            "--timeout",
            "90s",
        ])
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(world.client(), OPERATOR_NAMESPACE);
    let pod = operator_pod(world).await;
    let pods: Api<Pod> = Api::namespaced(world.client(), OPERATOR_NAMESPACE);
    let running = pods.get(&pod).await.unwrap();
    assert_eq!(
        running.spec.unwrap().containers[0].image.as_deref(),
        Some(upgraded.as_str())
    );
    // The upgraded operator syncs: a change reaches the Secret.
    world.set_password("upgraded", "upgraded-v2").await;
    world.create_item(&ns, "after-upgrade", "upgraded", json!({})).await;
    world
        .eventually("a Secret from the upgraded operator", async || {
            (world.secret_value(&ns, "after-upgrade").await.as_deref() == Some("upgraded-v2")).then_some(())
        })
        .await;

    world
        .helm
        .run(&["uninstall", RELEASE_NAME, "--namespace", OPERATOR_NAMESPACE, "--wait"])
        .unwrap();
    assert!(
        deployments.get_opt(RELEASE_NAME).await.unwrap().is_none(),
        "the operator is gone"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(world.client());
    assert!(
        crds.get_opt("onepassworditems.onepassword.com")
            .await
            .unwrap()
            .is_some(),
        "the CRD is kept"
    );
    assert_eq!(
        world.secret_value(&ns, "kept").await.as_deref(),
        Some("kept-v1"),
        "the Secret is kept"
    );
    let items: Api<OnePasswordItem> = Api::namespaced(world.client(), &ns);
    assert!(
        items.get_opt("kept").await.unwrap().is_some(),
        "the OnePasswordItem is kept"
    );

    // Installed again (as the other tests expect it), it takes the items over.
    world.helm_install().await.unwrap();
    world.set_password("kept", "kept-v2").await;
    world
        .eventually("the kept Secret updated by the new install", async || {
            (world.secret_value(&ns, "kept").await.as_deref() == Some("kept-v2")).then_some(())
        })
        .await;
}
