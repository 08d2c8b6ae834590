//! Shared by the integration tests that need Kubernetes: one local control plane per test
//! binary (started on first use, stopped when the binary exits), a fresh namespace per test.
#![allow(dead_code)]

pub mod harness;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use opo_testenv::local_cluster::{ControlPlaneBinaries, LocalCluster};

/// The control plane of this test binary, with `crds/` installed. `None` (with a message)
/// when the binaries are missing outside CI; with `CI=true` that is a failure instead.
pub fn cluster() -> Option<&'static LocalCluster> {
    // The outcome is kept, failure included, so that one failed start is not retried by every test.
    static CLUSTER: OnceLock<Option<Result<LocalCluster, String>>> = OnceLock::new();
    let outcome = CLUSTER.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let binaries = match ControlPlaneBinaries::locate(root) {
            Ok(binaries) => binaries,
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
                let cluster = LocalCluster::start(&binaries).await?;
                let client = cluster.admin_client()?;
                cluster.install_crds(&client, &root.join("crds")).await?;
                Ok::<_, String>(cluster)
            })
        })
        .join()
        .expect("control-plane start-up thread");
        Some(started)
    });
    match outcome {
        None => None,
        Some(Ok(cluster)) => Some(cluster),
        Some(Err(message)) => panic!("the local control plane did not start: {message}"),
    }
}

/// Returns the control plane, or ends the test early where it may be skipped.
#[macro_export]
macro_rules! require_cluster {
    () => {
        match support::cluster() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

/// Creates a namespace of its own for one test.
pub async fn namespace(client: &kube::Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", &connect_sim::generate::random_id()[..6]);
    opo_testenv::local_cluster::create_namespace(client, &name)
        .await
        .expect("namespace created");
    name
}

/// `onepassword-operator run` as a process, as in its pod; killed when dropped.
pub struct OperatorProcess {
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>/metrics`.
    pub metrics: String,
    /// Where its log goes.
    pub log: std::path::PathBuf,
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OperatorProcess {
    /// Starts the operator with this kubeconfig, Connect host and token, and further
    /// settings as environment variables; metrics and probes listen on free loopback ports,
    /// and the log goes to `log`.
    pub fn start(kubeconfig: &Path, connect: &str, token: &str, log: &Path, env: &[(&str, &str)]) -> Self {
        let free = || opo_testenv::local_cluster::free_port().unwrap();
        let (metrics, probes) = (free(), free());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_onepassword-operator"))
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("OP_CONNECT_HOST", connect)
            .env("OP_CONNECT_TOKEN", token)
            .env("METRICS_BIND_ADDRESS", format!("127.0.0.1:{metrics}"))
            .env("HEALTH_PROBE_BIND_ADDRESS", format!("127.0.0.1:{probes}"))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            metrics: format!("http://127.0.0.1:{metrics}/metrics"),
            log: log.to_path_buf(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Polls `check` every 100 ms until it gives a value; fails the test after `timeout`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
