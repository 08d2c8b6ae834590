//! The product installed in a [`OneNodeCluster`] the way users install it, for the end-to-end
//! tests and the demo: the Connect simulator as the cluster's Connect server (a Deployment
//! and a Service, from its image), and the operator from the chart (`helm install`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams, PostParams};
use serde_json::{Value, json};

use crate::node::{BUSYBOX_IMAGE, OPERATOR_IMAGE, OneNodeCluster, SIMULATOR_IMAGE};

/// The namespace of the operator's release and of the simulator.
pub const OPERATOR_NAMESPACE: &str = "onepassword";
pub const RELEASE_NAME: &str = "onepassword-operator";
/// The chart's pod label, to find the operator's pods.
pub const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=onepassword-operator";
const SIMULATOR: &str = "connect-sim";
const TIMEOUT: Duration = Duration::from_secs(90);

/// A typed object from JSON (tests and the demo build their manifests with `json!`).
pub fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// A busybox pod that mounts `secret` at `/secret` and runs `script` (`sh -c`).
pub fn secret_reader_pod(name: &str, secret: &str, script: &str) -> Pod {
    from_json(json!({
        "metadata": { "name": name },
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "app",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "volumeMounts": [{ "name": "secret", "mountPath": "/secret", "readOnly": true }],
            }],
            "volumes": [{ "name": "secret", "secret": { "secretName": secret } }],
        },
    }))
}

/// The simulator running in the cluster.
#[derive(Clone, Debug)]
pub struct SimulatorInCluster {
    /// As the test process (on the host) reaches it: its Service's ClusterIP.
    pub url: reqwest::Url,
    /// As pods reach it: its Service's DNS name.
    pub in_cluster_url: String,
}

/// Deploys the simulator into [`OPERATOR_NAMESPACE`] (created here) with `data` (the YAML of
/// its tokens and vaults; its embedded example when `None`) and waits until the host reaches
/// it through its Service.
pub async fn deploy_simulator(client: &kube::Client, data: Option<&str>) -> Result<SimulatorInCluster, String> {
    crate::local_cluster::create_namespace(client, OPERATOR_NAMESPACE).await?;
    let ns = OPERATOR_NAMESPACE;
    let post = PostParams::default();
    let err = |e: kube::Error| format!("cannot deploy the simulator: {e}");
    let mut container = json!({
        "name": "connect",
        "image": SIMULATOR_IMAGE,
        "imagePullPolicy": "Never",
        "ports": [{ "containerPort": 8080 }],
        "readinessProbe": { "httpGet": { "path": "/heartbeat", "port": 8080 }, "periodSeconds": 1 },
    });
    let mut volumes = json!([]);
    if let Some(data) = data {
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .create(
                &post,
                &from_json(json!({
                    "metadata": { "name": "connect-sim-data" },
                    "data": { "data.yaml": data },
                })),
            )
            .await
            .map_err(err)?;
        container["args"] = json!(["--data", "/data/data.yaml"]);
        container["volumeMounts"] = json!([{ "name": "data", "mountPath": "/data" }]);
        volumes = json!([{ "name": "data", "configMap": { "name": "connect-sim-data" } }]);
    }
    let labels = json!({ "app": SIMULATOR });
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(
            &post,
            &from_json(json!({
                "metadata": { "name": SIMULATOR },
                "spec": {
                    "selector": { "matchLabels": labels },
                    "template": {
                        "metadata": { "labels": labels },
                        "spec": { "containers": [container], "volumes": volumes },
                    },
                },
            })),
        )
        .await
        .map_err(err)?;
    let service: Service = Api::namespaced(client.clone(), ns)
        .create(
            &post,
            &from_json(json!({
                "metadata": { "name": SIMULATOR },
                "spec": { "selector": labels, "ports": [{ "port": 8080, "targetPort": 8080 }] },
            })),
        )
        .await
        .map_err(err)?;
    let ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .ok_or("the simulator's Service has no ClusterIP")?;
    let url: reqwest::Url = format!("http://{ip}:8080").parse().map_err(|e| format!("{e}"))?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let answer = http
            .get(url.join("heartbeat").map_err(|e| e.to_string())?)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let last = match answer {
            Ok(answer) if answer.status().is_success() => break,
            Ok(answer) => format!("status {}", answer.status()),
            Err(e) => onepassword_operator::error_chain(&e),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "the simulator is not reachable at {url} after {TIMEOUT:?} ({last})\n{}",
                pods_diagnosis(client, ns, &format!("app={SIMULATOR}")).await
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(SimulatorInCluster {
        url,
        in_cluster_url: format!("http://{SIMULATOR}.{ns}.svc:8080"),
    })
}

/// What pods say, for a failure: their status and their containers' logs.
pub async fn pods_diagnosis(client: &kube::Client, ns: &str, selector: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let Ok(pods) = api.list(&ListParams::default().labels(selector)).await else {
        return format!("cannot list the pods of {selector} in {ns}");
    };
    let mut out = String::new();
    for pod in pods {
        let name = pod.name_any();
        let state = serde_json::to_string(&pod.status).unwrap_or_default();
        out.push_str(&format!("pod {name}: {state}\n"));
        for previous in [true, false] {
            let params = LogParams {
                previous,
                tail_lines: Some(20),
                ..LogParams::default()
            };
            if let Ok(log) = api.logs(&name, &params).await {
                out.push_str(&format!("log (previous: {previous}):\n{log}\n"));
            }
        }
    }
    out
}

/// `helm` against the cluster, with the repository's chart.
#[derive(Clone, Debug)]
pub struct Helm {
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
    pub chart: PathBuf,
}

impl Helm {
    pub fn new(binary: PathBuf, cluster: &OneNodeCluster, repo_root: &Path) -> Self {
        Self {
            binary,
            kubeconfig: cluster.admin_kubeconfig(),
            chart: repo_root.join("charts/onepassword-operator"),
        }
    }

    /// Runs helm; its output, or an error with it.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = std::process::Command::new(&self.binary)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .map_err(|e| format!("cannot run helm: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() {
            Ok(text)
        } else {
            Err(format!("helm {} failed: {text}", args.join(" ")))
        }
    }

    /// `helm install` of the chart as a user would, with the image `scripts/image` built,
    /// the Connect host and token, and `extra` values; waits until the operator is Ready.
    /// On failure, the error says what the operator's pods say.
    pub async fn install_operator(
        &self,
        client: &kube::Client,
        connect_host: &str,
        token: &str,
        extra: &[String],
    ) -> Result<String, String> {
        let (repository, tag) = OPERATOR_IMAGE
            .rsplit_once(':')
            .ok_or("an image reference without a tag")?;
        let mut values = vec![
            format!("image.repository={repository}"),
            format!("image.tag={tag}"),
            "image.pullPolicy=Never".into(),
            format!("connect.host={connect_host}"),
            format!("connect.token.value={token}"),
        ];
        values.extend(extra.iter().cloned());
        let chart = self.chart.to_string_lossy().into_owned();
        let mut args = vec![
            "install",
            RELEASE_NAME,
            chart.as_str(),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--wait",
            "--timeout",
            "90s",
        ];
        for value in &values {
            args.extend(["--set", value]);
        }
        match self.run(&args) {
            Ok(text) => Ok(text),
            Err(message) => Err(format!(
                "{message}\n{}",
                pods_diagnosis(client, OPERATOR_NAMESPACE, OPERATOR_SELECTOR).await
            )),
        }
    }
}
