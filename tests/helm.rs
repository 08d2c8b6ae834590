//! The Helm chart: lint, templates for several value sets, `deploy/` drift, install and upgrade
//! (the CRD upgrades), and the operator running as the chart's ServiceAccount with exactly the
//! chart's RBAC.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use connect_sim::{self as sim, DataFile, SimConfig};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use onepassword_operator::connections::resource::{
    ClusterOnePasswordConnect, ConnectionReference, OnePasswordConnect, OnePasswordConnectSpec, SecretKeyRef,
};
use onepassword_operator::crd::{OnePasswordItem, OnePasswordItemSpec};
use opo_testenv::local_cluster::{ControlPlaneBinaries, Identity};
use serde::Deserialize;
use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/onepassword-operator");
const KUBE_VERSION: &str = "1.33.0";

fn helm_binary() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match ControlPlaneBinaries::locate(root) {
        Ok(bins) if bins.path("helm").is_file() => Some(bins.path("helm")),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("helm is missing: run scripts/control-plane-bins")
        }
        _ => {
            eprintln!("SKIPPED: helm is missing: run scripts/control-plane-bins");
            None
        }
    }
}

macro_rules! helm {
    () => {
        match helm_binary() {
            Some(helm) => helm,
            None => return,
        }
    };
}

fn run(helm: &Path, args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let mut command = Command::new(helm);
    command.args(args);
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Renders the chart with `--set` values and parses every document.
fn template(helm: &Path, sets: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "template",
        "op",
        CHART,
        "--namespace",
        "ops",
        "--kube-version",
        KUBE_VERSION,
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let output = run(helm, &args, None);
    assert!(output.status.success(), "{}", text(&output));
    let rendered = String::from_utf8(output.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&rendered)
        .filter_map(|doc| Option::<Value>::deserialize(doc).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// The ClusterRole's rule for Deployments, StatefulSets and DaemonSets.
fn apps_rule(docs: &[Value]) -> Value {
    find(docs, "ClusterRole", "op-onepassword-operator").expect("the ClusterRole")["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["apiGroups"] == json!(["apps"]))
        .expect("a rule for apps")
        .clone()
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = docs.iter().map(|d| d["kind"].as_str().unwrap().to_owned()).collect();
    kinds.sort();
    kinds
}

#[test]
fn the_chart_lints_clean() {
    let helm = helm!();
    let output = run(
        &helm,
        &[
            "lint",
            CHART,
            "--strict",
            "--set",
            "connect.token.value=t",
            "--kube-version",
            KUBE_VERSION,
        ],
        None,
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("0 chart(s) failed"));
}

#[test]
fn template_without_kube_version_works_as_with_a_users_helm() {
    // helm built without its release ldflags assumes Kubernetes v1.20 and refuses the
    // chart's kubeVersion (>=1.33): users' helm does not.
    let helm = helm!();
    let output = run(
        &helm,
        &["template", "op", CHART, "--set", "connect.token.value=t"],
        None,
    );
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn default_values_render_a_hardened_least_privilege_operator() {
    let helm = helm!();
    let docs = template(&helm, &["connect.token.value=s3cr3t-token"]);
    let deployment = find(&docs, "Deployment", "op-onepassword-operator").expect("the operator Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for expected in [
        "OP_CONNECT_HOST",
        "OP_CONNECT_TOKEN_FILE",
        "WATCH_NAMESPACE",
        "POLLING_INTERVAL",
        "AUTO_RESTART",
        "ENABLE_ANNOTATIONS",
        "ANNOTATED_WORKLOADS",
        "LEADER_ELECT",
        "POD_NAMESPACE",
        "DIGEST_KEY_SECRET",
    ] {
        assert!(env.contains(&expected), "{expected} in {env:?}");
    }
    let rendered = serde_json::to_string(&docs).unwrap();
    assert!(
        !serde_json::to_string(deployment).unwrap().contains("s3cr3t-token"),
        "the token is not in the pod spec"
    );
    assert!(rendered.contains(&base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "s3cr3t-token"
    )));

    let crd =
        find(&docs, "CustomResourceDefinition", "onepassworditems.onepassword.com").expect("the CRD is a template");
    assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");

    let role = find(&docs, "ClusterRole", "op-onepassword-operator").expect("cluster-wide by default");
    let rules = role["rules"].as_array().unwrap();
    let all_verbs: Vec<&str> = rules
        .iter()
        .flat_map(|r| r["verbs"].as_array().unwrap())
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        !all_verbs.contains(&"*") && !all_verbs.contains(&"update"),
        "{all_verbs:?}"
    );
    let resources: Vec<&str> = rules
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        !resources.contains(&"pods") && !resources.contains(&"configmaps") && !resources.contains(&"services"),
        "{resources:?}"
    );
    assert!(find(&docs, "Role", "op-onepassword-operator-leader-election").is_some());
    let key_role = find(&docs, "Role", "op-onepassword-operator-digest-key").expect("the digest key's Role");
    assert_eq!(
        key_role["rules"][0]["resourceNames"],
        json!(["onepassword-operator-digest-key"]),
        "the key Secret is read by name only"
    );
    assert!(find(&docs, "Service", "op-onepassword-operator-metrics").is_some());
    assert_eq!(
        kinds(&docs)
            .iter()
            .filter(|k| *k == "ServiceMonitor" || *k == "PodDisruptionBudget")
            .count(),
        0
    );
}

#[test]
fn watched_namespaces_get_roles_instead_of_a_cluster_role() {
    let helm = helm!();
    let docs = template(
        &helm,
        &[
            "connect.token.existingSecret=tok",
            "operator.watchNamespaces={apps,payments}",
        ],
    );
    assert!(find(&docs, "ClusterRole", "op-onepassword-operator").is_none());
    for ns in ["apps", "payments"] {
        let role = docs
            .iter()
            .find(|d| d["kind"] == "Role" && d["metadata"]["namespace"] == ns)
            .expect("a Role per namespace");
        assert_eq!(role["metadata"]["name"], "op-onepassword-operator");
        assert!(
            docs.iter()
                .any(|d| d["kind"] == "RoleBinding" && d["metadata"]["namespace"] == ns)
        );
    }
    let deployment = find(&docs, "Deployment", "op-onepassword-operator").unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "WATCH_NAMESPACE" && e["value"] == "apps,payments")
    );
    assert!(
        find(&docs, "Secret", "op-onepassword-operator-connect-token").is_none(),
        "an existing Secret is used"
    );
}

#[test]
fn optional_parts_render_when_asked() {
    let helm = helm!();
    let docs = template(
        &helm,
        &[
            "connect.token.value=t",
            "metrics.serviceMonitor.enabled=true",
            "podDisruptionBudget.enabled=true",
            "connect.caBundle.pem=-----BEGIN CERTIFICATE-----",
            "connect.server.enabled=true",
            "operator.annotatedWorkloads=false",
        ],
    );
    for kind in ["ServiceMonitor", "PodDisruptionBudget", "ConfigMap"] {
        assert!(kinds(&docs).contains(&kind.to_owned()), "{kind}");
    }
    assert!(
        find(&docs, "Deployment", "onepassword-connect").is_some(),
        "the optional Connect server"
    );
    let apps_rule = apps_rule(&docs);
    assert_eq!(
        apps_rule["verbs"],
        json!(["list", "patch"]),
        "without annotated workloads, workloads are not watched"
    );
}

#[test]
fn annotated_workloads_are_on_by_default_and_enable_annotations_means_copying() {
    let helm = helm!();
    let docs = template(&helm, &["connect.token.value=t", "operator.enableAnnotations=true"]);
    let apps_rule = apps_rule(&docs);
    assert_eq!(apps_rule["verbs"], json!(["get", "list", "watch", "patch"]));
    let env = find(&docs, "Deployment", "op-onepassword-operator").unwrap()["spec"]["template"]["spec"]["containers"]
        [0]["env"]
        .clone();
    let value = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(value("ANNOTATED_WORKLOADS"), Some(json!("true")));
    assert_eq!(value("ENABLE_ANNOTATIONS"), Some(json!("true")));
}

#[test]
fn bad_values_are_refused_with_a_reason() {
    let helm = helm!();
    let base = ["template", "op", CHART, "--kube-version", KUBE_VERSION];
    let missing_token = run(&helm, &base, None);
    assert!(!missing_token.status.success());
    assert!(
        text(&missing_token).contains("set connect.token.existingSecret"),
        "{}",
        text(&missing_token)
    );
    let typo = run(
        &helm,
        &[
            &base[..],
            &["--set", "connect.token.value=t", "--set", "operator.pollingIntervall=5"],
        ]
        .concat(),
        None,
    );
    assert!(
        text(&typo).contains("additional properties 'pollingIntervall' not allowed"),
        "{}",
        text(&typo)
    );
    let bad_host = run(
        &helm,
        &[
            &base[..],
            &["--set", "connect.token.value=t", "--set", "connect.host=connect:8080"],
        ]
        .concat(),
        None,
    );
    assert!(text(&bad_host).contains("/connect/host"), "{}", text(&bad_host));
}

#[test]
fn cluster_connections_from_values_are_hooks_that_can_read_their_token() {
    let helm = helm!();
    let shared = [
        "connect.token.value=t",
        "clusterConnections[0].name=shared",
        "clusterConnections[0].host=http://connect.onepassword.svc:8080",
        "clusterConnections[0].tokenSecretRef.name=shared-token",
        "clusterConnections[0].namespaceSelector.matchLabels.tenant=yes",
    ];
    let docs = template(&helm, &shared);
    let connection = find(&docs, "ClusterOnePasswordConnect", "shared").expect("the cluster connection");
    assert_eq!(
        connection["spec"],
        json!({
            "host": "http://connect.onepassword.svc:8080",
            "tokenSecretRef": { "namespace": "ops", "name": "shared-token", "key": "token" },
            "namespaceSelector": { "matchLabels": { "tenant": "yes" } },
        })
    );
    assert_eq!(
        connection["metadata"]["annotations"]["helm.sh/hook"], "post-install,post-upgrade",
        "created once its CRD exists"
    );
    assert!(
        find(&docs, "Role", "op-onepassword-operator-connection-shared").is_none(),
        "cluster-wide, the operator reads Secrets anywhere already"
    );

    // Watching some namespaces only: the token Secret is readable by name, and no more.
    let docs = template(&helm, &[&shared[..], &["operator.watchNamespaces={apps}"]].concat());
    let role = find(&docs, "Role", "op-onepassword-operator-connection-shared").expect("a Role for the token");
    assert_eq!(role["metadata"]["namespace"], "ops");
    assert_eq!(
        role["rules"],
        json!([{ "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["shared-token"], "verbs": ["get"] }])
    );
    let binding = find(&docs, "RoleBinding", "op-onepassword-operator-connection-shared").expect("its binding");
    assert_eq!(binding["subjects"][0]["name"], "op-onepassword-operator");

    assert!(
        !kinds(&template(&helm, &["connect.token.value=t"])).contains(&"ClusterOnePasswordConnect".to_owned()),
        "none by default"
    );
    let no_token = run(
        &helm,
        &[
            "template",
            "op",
            CHART,
            "--kube-version",
            KUBE_VERSION,
            "--set",
            "connect.token.value=t",
            "--set",
            "clusterConnections[0].name=shared",
            "--set",
            "clusterConnections[0].host=http://connect:8080",
        ],
        None,
    );
    assert!(!no_token.status.success());
    assert!(text(&no_token).contains("tokenSecretRef"), "{}", text(&no_token));
}

#[test]
fn deploy_manifests_match_the_chart() {
    let helm = helm!();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let rendered = work.path().join("rendered.yaml");
    let output = Command::new(root.join("scripts/render-deploy"))
        .arg(&rendered)
        .env("HELM", &helm)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let committed = std::fs::read_to_string(root.join("deploy/onepassword-operator.yaml")).unwrap();
    assert!(
        committed == std::fs::read_to_string(&rendered).unwrap(),
        "deploy/ drifted from the chart: run scripts/generate"
    );
}

#[test]
fn a_label_selector_reaches_the_operator_only_when_set() {
    let helm = helm!();
    let env = |docs: &[Value]| {
        find(docs, "Deployment", "op-onepassword-operator").expect("the operator")["spec"]["template"]["spec"]
            ["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "LABEL_SELECTOR")
            .map(|e| e["value"].clone())
    };
    assert_eq!(env(&template(&helm, &["connect.token.value=t"])), None);
    assert_eq!(
        env(&template(
            &helm,
            &["connect.token.value=t", "operator.labelSelector=shard=a"]
        )),
        Some(json!("shard=a"))
    );
}

/// A selector the apiserver refuses stops the start with its reason, before anything runs.
#[tokio::test]
async fn a_label_selector_the_apiserver_refuses_stops_the_start() {
    let Some(cluster) = support::cluster() else { return };
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("admin.kubeconfig");
    cluster.write_kubeconfig(&Identity::Admin, &kubeconfig).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_onepassword-operator"))
        .arg("run")
        .env("KUBECONFIG", &kubeconfig)
        .env("OP_CONNECT_HOST", "http://127.0.0.1:9")
        .env("OP_CONNECT_TOKEN", "t")
        .env("LABEL_SELECTOR", "shard in (a")
        .env("METRICS_BIND_ADDRESS", "127.0.0.1:0")
        .env("HEALTH_PROBE_BIND_ADDRESS", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("the apiserver refuses the label selector \"shard in (a\""),
        "{}",
        text(&output)
    );
}

#[tokio::test]
async fn install_upgrade_and_run_as_the_charts_service_account() {
    let helm = helm!();
    let Some(cluster) = support::cluster() else { return };
    let admin = cluster.admin_client().unwrap();
    let release_ns = support::namespace(&admin, "ops").await;
    let app_ns = support::namespace(&admin, "apps").await;
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("admin.kubeconfig");
    cluster.write_kubeconfig(&Identity::Admin, &kubeconfig).unwrap();

    // The test harness installed crds/ already: hand the item CRD to Helm, as an upgrade from
    // kubectl-applied CRDs would; the connection CRDs are left to the chart, as on a first
    // install, which also creates a cluster connection of that kind.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let adopt = json!({ "metadata": {
        "labels": { "app.kubernetes.io/managed-by": "Helm" },
        "annotations": { "meta.helm.sh/release-name": "op", "meta.helm.sh/release-namespace": release_ns }
    }});
    crds.patch(
        "onepassworditems.onepassword.com",
        &PatchParams::default(),
        &Patch::Merge(&adopt),
    )
    .await
    .unwrap();
    for crd in onepassword_operator::all_crds() {
        let name = crd.metadata.name.unwrap();
        if name != "onepassworditems.onepassword.com" {
            crds.delete(&name, &Default::default()).await.unwrap();
            support::wait_for(&format!("CRD {name} deleted"), Duration::from_secs(30), async || {
                crds.get_opt(&name).await.unwrap().is_none().then_some(())
            })
            .await;
        }
    }
    Api::<Namespace>::all(admin.clone())
        .patch(
            &app_ns,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "tenant": "apps" } } })),
        )
        .await
        .unwrap();

    let sim = sim::start(
        SimConfig::new(DataFile::embedded_example()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let install = run(
        &helm,
        &[
            "install",
            "op",
            CHART,
            "--namespace",
            &release_ns,
            "--set",
            &format!("connect.host={}", sim.url()),
            "--set",
            "connect.token.value=demo-operator-token",
            "--set",
            "clusterConnections[0].name=shared",
            "--set",
            &format!("clusterConnections[0].host={}", sim.url()),
            "--set",
            "clusterConnections[0].tokenSecretRef.name=op-onepassword-operator-connect-token",
            "--set",
            "clusterConnections[0].namespaceSelector.matchLabels.tenant=apps",
        ],
        Some(&kubeconfig),
    );
    assert!(install.status.success(), "{}", text(&install));
    assert!(
        text(&install).contains("It syncs OnePasswordItems in every namespace"),
        "NOTES.txt is shown"
    );

    // Upgrade with a changed CRD: the change is served afterwards.
    let changed = work.path().join("chart");
    copy_dir(Path::new(CHART), &changed);
    let crd_file = changed.join("templates/crd.yaml");
    let crd_text = std::fs::read_to_string(&crd_file).unwrap().replace(
        "description: Why, in one word",
        "description: Why, in one word (upgraded)",
    );
    std::fs::write(&crd_file, crd_text).unwrap();
    let upgrade = run(
        &helm,
        &[
            "upgrade",
            "op",
            changed.to_str().unwrap(),
            "--namespace",
            &release_ns,
            "--reuse-values",
        ],
        Some(&kubeconfig),
    );
    assert!(upgrade.status.success(), "{}", text(&upgrade));
    let served = crds.get("onepassworditems.onepassword.com").await.unwrap();
    let columns = served.spec.versions[0].additional_printer_columns.clone().unwrap();
    assert!(
        columns
            .iter()
            .any(|c| c.description.as_deref() == Some("Why, in one word (upgraded)")),
        "the CRD was upgraded"
    );

    // Run the operator exactly as the chart's ServiceAccount would in its pod.
    let token = cluster
        .service_account_token(&admin, &release_ns, "op-onepassword-operator")
        .await
        .unwrap();
    let sa_kubeconfig = work.path().join("sa.kubeconfig");
    cluster
        .write_kubeconfig(&Identity::Token(token), &sa_kubeconfig)
        .unwrap();
    let operator = support::OperatorProcess::start(
        &sa_kubeconfig,
        sim.url().as_str(),
        "demo-operator-token",
        &work.path().join("operator.log"),
        &[
            ("POLLING_INTERVAL", "1"),
            ("LEADER_ELECT", "true"),
            ("LEADER_ELECTION_LEASE", "op-onepassword-operator"),
            ("POD_NAMESPACE", &release_ns),
            ("POD_NAME", "op-0"),
        ],
    );
    let items: Api<OnePasswordItem> = Api::namespaced(admin.clone(), &app_ns);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &app_ns);
    items
        .create(
            &PostParams::default(),
            &OnePasswordItem::new("db", OnePasswordItemSpec::item("vaults/Demo/items/Database")),
        )
        .await
        .unwrap();
    let synced = support::wait_for(
        "a full sync with the chart's RBAC",
        Duration::from_secs(30),
        async || {
            let opi = items.get("db").await.unwrap();
            support::harness::ready_reason_and_message(&opi).filter(|(reason, _)| reason == "Synced")
        },
    )
    .await;
    let key = Api::<Secret>::namespaced(admin.clone(), &release_ns)
        .get("onepassword-operator-digest-key")
        .await
        .expect("the operator made its digest key Secret under the chart's RBAC");
    assert_eq!(key.data.unwrap()["key"].0.len(), 32);
    let db = secrets.get("db").await.unwrap();
    assert!(
        db.annotations()["operator.1password.io/data-digest"].starts_with("hmac-sha256:"),
        "the synced Secret carries its digest"
    );
    assert!(
        synced.1.contains("Secret db holds item version 1"),
        "{synced:?}\n{}",
        operator.log_text()
    );
    assert!(secrets.get_opt("db").await.unwrap().is_some());
    assert_eq!(
        secrets.get("db").await.unwrap().owner_references()[0].block_owner_deletion,
        None
    );

    // An annotated Deployment, on by default as in Go: its managed OnePasswordItem and Secret
    // pass the OwnerReferencesPermissionEnforcement plugin with the chart's RBAC.
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": {
            "operator.1password.io/item-path": "vaults/Demo/items/Database",
            "operator.1password.io/item-name": "web-db",
        }},
        "spec": {
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "busybox" }] }
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(admin.clone(), &app_ns)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while items
        .get_opt("web-db")
        .await
        .unwrap()
        .and_then(|opi| support::harness::ready_reason_and_message(&opi).filter(|(reason, _)| reason == "Synced"))
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the annotated Deployment's Secret with the chart's RBAC within 30s; operator log:\n{}",
            operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(secrets.get_opt("web-db").await.unwrap().is_some());

    // The chart's cluster connection: checked with the chart's RBAC, used by a selected namespace.
    let connections: Api<ClusterOnePasswordConnect> = Api::all(admin.clone());
    let connected = async |not_uid: Option<String>| {
        support::wait_for(
            "the chart's cluster connection is Connected",
            Duration::from_secs(30),
            async || {
                let connection = connections.get_opt("shared").await.unwrap()?;
                let ready = connection.status.as_ref()?.ready()?.reason == "Connected";
                (ready && connection.metadata.uid != not_uid).then(|| connection.metadata.uid.clone())
            },
        )
        .await
    };
    let first = connected(None).await;
    let mut shared_db = OnePasswordItem::new("shared-db", OnePasswordItemSpec::item("vaults/Demo/items/Database"));
    shared_db.spec.connect_ref = Some(Box::new(ConnectionReference {
        kind: Some("ClusterOnePasswordConnect".into()),
        name: "shared".into(),
    }));
    // Synced through the cluster connection.
    support::harness::create_until_synced(&items, &shared_db, Duration::from_secs(30)).await;

    // An upgrade replaces the hook: the items that use it wait for it, and never say it is gone.
    let reasons = support::harness::ReadyReasons::watch(&items, "shared-db");
    let upgrade = run(
        &helm,
        &["upgrade", "op", CHART, "--namespace", &release_ns, "--reuse-values"],
        Some(&kubeconfig),
    );
    assert!(upgrade.status.success(), "{}", text(&upgrade));
    connected(first).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reasons = reasons.stop();
    assert!(
        !reasons.is_empty() && reasons.iter().all(|r| r == "Synced"),
        "{reasons:?}\n{}",
        operator.log_text()
    );

    // A tenant's own connection in its namespace, with its own token Secret: checked and used
    // with the chart's RBAC.
    Api::<Secret>::namespaced(admin.clone(), &app_ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "team-token" },
                "stringData": { "token": "demo-operator-token" }
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let team = OnePasswordConnect::new(
        "team",
        OnePasswordConnectSpec {
            host: sim.url().to_string(),
            token_secret_ref: SecretKeyRef {
                name: "team-token".into(),
                key: "token".into(),
            },
            ca_bundle_secret_ref: None,
        },
    );
    let team_connections: Api<OnePasswordConnect> = Api::namespaced(admin.clone(), &app_ns);
    team_connections.create(&PostParams::default(), &team).await.unwrap();
    support::wait_for(
        "the namespace's own connection is Connected",
        Duration::from_secs(30),
        async || {
            let connection = team_connections.get("team").await.unwrap();
            (connection.status.as_ref()?.ready()?.reason == "Connected").then_some(())
        },
    )
    .await;
    let mut team_db = OnePasswordItem::new("team-db", OnePasswordItemSpec::item("vaults/Demo/items/Database"));
    team_db.spec.connect_ref = Some(Box::new(ConnectionReference {
        kind: None,
        name: "team".into(),
    }));
    // Synced through the namespace's own connection.
    support::harness::create_until_synced(&items, &team_db, Duration::from_secs(30)).await;
    assert!(secrets.get_opt("team-db").await.unwrap().is_some());

    // Take one permission away: the next Secret fails with a clear reason.
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let mut role = roles.get("op-onepassword-operator").await.unwrap();
    for rule in role.rules.iter_mut().flatten() {
        if rule
            .resources
            .as_ref()
            .is_some_and(|r| r.contains(&"secrets".to_string()))
        {
            rule.verbs.retain(|v| v != "create");
        }
    }
    roles
        .replace("op-onepassword-operator", &PostParams::default(), &role)
        .await
        .unwrap();
    items
        .create(
            &PostParams::default(),
            &OnePasswordItem::new("api", OnePasswordItemSpec::item("vaults/Demo/items/API Token")),
        )
        .await
        .unwrap();
    let failed = support::wait_for(
        "the missing permission is reported",
        Duration::from_secs(30),
        async || {
            support::harness::ready_reason_and_message(&items.get("api").await.unwrap())
                .filter(|(reason, _)| reason == "KubernetesError")
        },
    )
    .await;
    assert!(
        failed.1.contains("forbidden") && failed.1.contains("cannot create resource \"secrets\""),
        "{failed:?}"
    );
    assert!(secrets.get_opt("api").await.unwrap().is_none());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
