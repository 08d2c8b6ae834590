//! A local Kubernetes control plane: `etcd` and `kube-apiserver` run as processes on
//! loopback, as controller-runtime's envtest does. Used by the integration tests, the
//! benchmarks and the demo. There is no controller-manager or scheduler, so nothing
//! garbage-collects through ownerReferences and no pod ever runs.
//!
//! The apiserver runs with RBAC on and knows three identities: an admin
//! (`system:masters`), a user with no grants, and ServiceAccounts through TokenRequest.
//! Every process is started under a watchdog that kills it when this process goes away,
//! whether by drop, panic or kill, so no process is left orphaned.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use secrecy::SecretString;

/// Environment variable naming the directory with `etcd`, `kube-apiserver` and `helm`.
pub const BIN_DIR_ENV: &str = "OPO_CONTROL_PLANE_BIN_DIR";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const ADMIN_USER: &str = "opo-admin";
/// A user that exists but holds no RBAC grant: for least-privilege tests.
pub const PLAIN_USER: &str = "opo-user";

/// Where the control-plane binaries are.
#[derive(Clone, Debug)]
pub struct ControlPlaneBinaries {
    pub dir: PathBuf,
}

impl ControlPlaneBinaries {
    /// From `OPO_CONTROL_PLANE_BIN_DIR`, else from the cache that
    /// `scripts/control-plane-bins` fills (asked with `--print-dir`, which builds nothing).
    pub fn locate(repo_root: &Path) -> Result<Self, String> {
        let dir = match std::env::var_os(BIN_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let script = repo_root.join("scripts/control-plane-bins");
                let output = Command::new(&script)
                    .arg("--print-dir")
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
                PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
            }
        };
        let binaries = Self { dir };
        for name in ["etcd", "kube-apiserver"] {
            let path = binaries.dir.join(name);
            if !path.is_file() {
                return Err(format!(
                    "{} is missing: run scripts/control-plane-bins to build the control plane (or set {BIN_DIR_ENV})",
                    path.display()
                ));
            }
        }
        Ok(binaries)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Which identity a client acts as.
#[derive(Clone, Debug)]
pub enum Identity {
    /// `system:masters`: everything.
    Admin,
    /// An authenticated user with no grant, until a test binds one to [`PLAIN_USER`].
    PlainUser,
    /// Any bearer token, e.g. a ServiceAccount's from TokenRequest.
    Token(String),
}

/// A process under a watchdog: when the write end of the watchdog's stdin closes (drop,
/// or this process exiting for any reason), the watchdog stops the child.
pub(crate) struct Supervised {
    pub(crate) name: &'static str,
    watchdog: Child,
    stdin: Option<ChildStdin>,
    pid_file: PathBuf,
    log: PathBuf,
}

const WATCHDOG: &str = r#"
"$@" </dev/null >>"$OPO_LOG" 2>&1 &
child=$!
echo "$child" >"$OPO_PID_FILE"
while read -r _; do :; done
# Throwaway test processes: a short grace period, then SIGKILL.
kill -TERM "$child" 2>/dev/null
for _ in $(seq 20); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$child" 2>/dev/null
wait "$child" 2>/dev/null
if [ -n "${OPO_CLEANUP_DIR:-}" ]; then rm -rf "$OPO_CLEANUP_DIR"; fi
exit 0
"#;

impl Supervised {
    /// Starts `program`; with `cleanup`, the watchdog also removes that directory once the
    /// process is gone (a `static` cluster is never dropped, and a killed test never cleans).
    pub(crate) fn spawn(
        name: &'static str,
        work: &Path,
        program: &Path,
        args: &[String],
        cleanup: bool,
    ) -> Result<Self, String> {
        let log = work.join(format!("{name}.log"));
        let pid_file = work.join(format!("{name}.pid"));
        let watchdog = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(name)
            .arg(program)
            .args(args)
            .env("OPO_LOG", &log)
            .env("OPO_PID_FILE", &pid_file)
            .env(
                "OPO_CLEANUP_DIR",
                if cleanup {
                    work.as_os_str()
                } else {
                    std::ffi::OsStr::new("")
                },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        let mut supervised = Self {
            name,
            watchdog,
            stdin: None,
            pid_file,
            log,
        };
        supervised.stdin = supervised.watchdog.stdin.take();
        Ok(supervised)
    }

    /// The real process id (not the watchdog's), once it is known.
    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()
    }

    fn is_running(&self) -> bool {
        self.pid()
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    /// Started and gone (not: not started yet).
    pub(crate) fn has_exited(&self) -> bool {
        self.pid().is_some() && !self.is_running()
    }

    /// The error lines of the process's log (klog `E`/`F` lines), else its last lines.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let is_error = |l: &&str| {
            let b = l.as_bytes();
            (b.len() > 5 && matches!(b[0], b'E' | b'F') && b[1..5].iter().all(u8::is_ascii_digit))
                || l.contains("\"level\":\"fatal\"")
        };
        let errors: Vec<&str> = text.lines().filter(is_error).collect();
        let lines: Vec<&str> = if errors.is_empty() {
            text.lines().collect()
        } else {
            errors
        };
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Resident memory in KiB, from `/proc`.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        proc_memory_kib(self.pid()?, "VmRSS")
    }

    /// User and system CPU time in seconds, from `/proc`.
    fn cpu_seconds(&self) -> Option<f64> {
        proc_cpu_seconds(self.pid()?)
    }

    pub(crate) fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.watchdog.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How kube-apiserver is set up.
#[derive(Clone, Debug)]
pub(crate) enum ApiServerSetup {
    /// On 127.0.0.1, for a control plane without nodes: no ServiceAccount admission (no
    /// controller-manager makes the default ServiceAccounts) and no `kubernetes` endpoints.
    Loopback,
    /// On `address` (the host side of the one-node cluster's pod bridge), as a full
    /// cluster's: pods reach it through the `kubernetes` Service, whose endpoint it keeps.
    ForNode { address: std::net::Ipv4Addr },
}

impl ApiServerSetup {
    fn address(&self) -> String {
        match self {
            Self::Loopback => "127.0.0.1".into(),
            Self::ForNode { address } => address.to_string(),
        }
    }
}

/// The first address of the Service range: the `kubernetes` Service's ClusterIP.
pub(crate) const SERVICE_CIDR: &str = "10.96.0.0/24";
pub(crate) const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// A running etcd + kube-apiserver.
pub struct LocalCluster {
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// CA of the apiserver's serving certificate.
    pub ca_pem: String,
    ca_der: Vec<u8>,
    /// How long start-up took, until `/readyz` answered.
    pub startup: Duration,
    admin_token: String,
    user_token: String,
    /// How kube-apiserver was started, to start it again.
    apiserver_command: (PathBuf, Vec<String>),
    // Declared before `work` so that the processes stop before their directory goes.
    apiserver: Supervised,
    etcd: Supervised,
    work: tempfile::TempDir,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("server", &self.server)
            .field("work", &self.work.path())
            .finish()
    }
}

/// `apiserver_request_total` from the apiserver's `/metrics`, summed by verb and resource
/// (`"GET secrets"`, `"PATCH onepassworditems/status"`, …): what tests and benchmarks use to
/// count the requests a run cost.
pub async fn apiserver_request_counts(client: &kube::Client) -> Result<BTreeMap<String, f64>, String> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| format!("cannot read the apiserver's metrics: {e}"))?;
    Ok(parse_request_counts(&text))
}

fn parse_request_counts(metrics: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"'))
                .unwrap_or("")
        };
        let (verb, resource, sub) = (label("verb"), label("resource"), label("subresource"));
        if resource.is_empty() {
            continue;
        }
        let key = if sub.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{sub}")
        };
        *out.entry(key).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

/// A memory figure of a process in KiB from `/proc/<pid>/status`: `VmRSS` (resident now),
/// `VmHWM` (peak resident), …
pub fn proc_memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User and system CPU seconds of a process so far, from `/proc/<pid>/stat` (Linux counts
/// them in ticks of 1/100 s).
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// Creates a namespace (for the demo, tests and benchmarks).
pub async fn create_namespace(client: &kube::Client, name: &str) -> Result<(), String> {
    let namespace = k8s_openapi::api::core::v1::Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::all(client.clone())
        .create(&kube::api::PostParams::default(), &namespace)
        .await
        .map(drop)
        .map_err(|e| format!("cannot create namespace {name}: {e}"))
}

/// A loopback port free right now, for a local server to bind.
pub fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn random_token() -> String {
    connect_sim::generate::random_id()
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    let mut file = std::fs::File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A CA and a serving certificate for 127.0.0.1 and localhost.
struct ServingCertificates {
    ca_pem: String,
    ca_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

fn serving_certificates(extra_names: &[String]) -> Result<ServingCertificates, String> {
    let err = |e: rcgen::Error| format!("cannot create certificates: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "onepassword-operator local CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?).map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    let mut names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    names.extend(extra_names.iter().cloned());
    let mut params = CertificateParams::new(names).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    let cert = params.signed_by(&key, &ca).map_err(err)?;
    Ok(ServingCertificates {
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Waits until kube-apiserver answers `/readyz`; fails early, with its log, when one of
/// `processes` exits, and after [`READY_TIMEOUT`].
async fn wait_until_ready(
    server: &str,
    ca_der: &[u8],
    admin_token: &str,
    processes: &[&Supervised],
) -> Result<(), String> {
    onepassword_operator::connect::client::install_crypto_provider();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(ca_der).map_err(|e| e.to_string())?)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let ready = http
            .get(format!("{server}/readyz"))
            .bearer_auth(admin_token)
            .send()
            .await;
        if matches!(&ready, Ok(r) if r.status().is_success()) {
            return Ok(());
        }
        for process in processes {
            if process.has_exited() {
                return Err(format!("{} exited:\n{}", process.name, process.log_tail()));
            }
        }
        if Instant::now() > deadline {
            let last = match ready {
                Ok(r) => format!("status {}", r.status()),
                Err(e) => onepassword_operator::error_chain(&e),
            };
            let apiserver = processes.iter().find(|p| p.name == "kube-apiserver");
            return Err(format!(
                "kube-apiserver not ready after {}s ({last}); its log ends with:\n{}",
                READY_TIMEOUT.as_secs(),
                apiserver.map(|p| p.log_tail()).unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl LocalCluster {
    /// Starts etcd and kube-apiserver on free loopback ports and waits for `/readyz`.
    pub async fn start(binaries: &ControlPlaneBinaries) -> Result<Self, String> {
        Self::start_with(binaries, &ApiServerSetup::Loopback).await
    }

    /// For benchmarks: a control plane from the repository's binaries with every CRD of
    /// `crds/` installed, and an admin client for it.
    pub async fn start_with_crds(repo_root: &Path) -> Result<(Self, kube::Client), String> {
        let binaries = ControlPlaneBinaries::locate(repo_root)?;
        let cluster = Self::start(&binaries).await?;
        let client = cluster.admin_client()?;
        cluster.install_crds(&client, &repo_root.join("crds")).await?;
        Ok((cluster, client))
    }

    pub(crate) async fn start_with(binaries: &ControlPlaneBinaries, setup: &ApiServerSetup) -> Result<Self, String> {
        // A port found free can be taken (by a test's own server bound to port 0) before
        // etcd or the apiserver binds it: new ports then, a few times.
        let mut attempts = 1;
        loop {
            match Self::start_on_free_ports(binaries, setup).await {
                Err(message) if message.contains("address already in use") && attempts < 4 => attempts += 1,
                started => return started,
            }
        }
    }

    async fn start_on_free_ports(binaries: &ControlPlaneBinaries, setup: &ApiServerSetup) -> Result<Self, String> {
        let started = Instant::now();
        let work = tempfile::Builder::new()
            .prefix("opo-control-plane-")
            .tempdir()
            .map_err(|e| format!("cannot create a work directory: {e}"))?;
        let dir = work.path();

        let extra_names: Vec<String> = match setup {
            ApiServerSetup::Loopback => Vec::new(),
            ApiServerSetup::ForNode { address } => [
                address.to_string().as_str(),
                KUBERNETES_SERVICE_IP,
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ]
            .map(String::from)
            .to_vec(),
        };
        let certs = serving_certificates(&extra_names)?;
        write(&dir.join("ca.crt"), &certs.ca_pem)?;
        write(&dir.join("apiserver.crt"), &certs.cert_pem)?;
        write(&dir.join("apiserver.key"), &certs.key_pem)?;
        let sa_key = KeyPair::generate().map_err(|e| format!("cannot create the service-account key: {e}"))?;
        write(&dir.join("sa.key"), &sa_key.serialize_pem())?;
        write(&dir.join("sa.pub"), &sa_key.public_key_pem())?;
        let (admin_token, user_token) = (random_token(), random_token());
        write(
            &dir.join("tokens.csv"),
            &format!(
                "{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n{user_token},{PLAIN_USER},{PLAIN_USER}\n"
            ),
        )?;

        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_args: Vec<String> = vec![
            "--name=default".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
            // Test data: durability is not worth the fsync latency.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ];
        // etcd is the last user of the work directory: its watchdog removes it.
        let etcd = Supervised::spawn("etcd", dir, &binaries.path("etcd"), &etcd_args, true)?;

        let address = setup.address();
        let mut api_args: Vec<String> = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--bind-address={address}"),
            format!("--advertise-address={address}"),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", dir.join("apiserver.crt").display()),
            format!("--tls-private-key-file={}", dir.join("apiserver.key").display()),
            format!("--cert-dir={}", dir.join("certs").display()),
            format!("--token-auth-file={}", dir.join("tokens.csv").display()),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", dir.join("sa.pub").display()),
            format!("--service-account-signing-key-file={}", dir.join("sa.key").display()),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--allow-privileged=true".into(),
            // OpenShift's default: setting blockOwnerDeletion needs `update` on the owner's
            // finalizers, so tests that run with the chart's RBAC see what OpenShift users see.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            "--enable-priority-and-fairness=false".into(),
        ];
        match setup {
            ApiServerSetup::Loopback => api_args.extend([
                // The `kubernetes` Service endpoints cannot point at loopback; nothing routes here anyway.
                "--endpoint-reconciler-type=none".into(),
                // No controller-manager creates default ServiceAccounts, which this plugin requires.
                "--disable-admission-plugins=ServiceAccount".into(),
            ]),
            ApiServerSetup::ForNode { .. } => api_args.extend([
                // `kubectl logs` and `exec` reach the kubelet by the node's name, `localhost`:
                // the apiserver refuses to proxy to a loopback address.
                "--kubelet-preferred-address-types=Hostname".into(),
            ]),
        }
        let apiserver_command = (binaries.path("kube-apiserver"), api_args);
        let mut apiserver =
            Supervised::spawn("kube-apiserver", dir, &apiserver_command.0, &apiserver_command.1, false)?;

        let server = format!("https://{address}:{api_port}");
        if let Err(message) = wait_until_ready(&server, &certs.ca_der, &admin_token, &[&etcd, &apiserver]).await {
            apiserver.stop();
            return Err(message);
        }
        Ok(Self {
            server,
            ca_pem: certs.ca_pem,
            ca_der: certs.ca_der,
            startup: started.elapsed(),
            admin_token,
            user_token,
            apiserver_command,
            apiserver,
            etcd,
            work,
        })
    }

    /// Stops kube-apiserver, keeps it down for `down`, starts it again on the same port and
    /// waits for `/readyz`; returns when it is ready (for availability tests).
    pub async fn restart_apiserver(&mut self, down: Duration) -> Result<(), String> {
        self.apiserver.stop();
        tokio::time::sleep(down).await;
        let (program, args) = &self.apiserver_command;
        self.apiserver = Supervised::spawn("kube-apiserver", self.work.path(), program, args, false)?;
        wait_until_ready(
            &self.server,
            &self.ca_der,
            &self.admin_token,
            &[&self.etcd, &self.apiserver],
        )
        .await
    }

    /// The directory of the control plane's files (certificates, keys, etcd's data).
    pub(crate) fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Whether etcd and kube-apiserver still run; else which stopped, with its log.
    pub(crate) fn check_running(&self) -> Result<(), String> {
        for process in [&self.etcd, &self.apiserver] {
            if process.has_exited() {
                return Err(format!(
                    "{} stopped; its log ends with:\n{}",
                    process.name,
                    process.log_tail()
                ));
            }
        }
        Ok(())
    }

    fn token(&self, identity: &Identity) -> String {
        match identity {
            Identity::Admin => self.admin_token.clone(),
            Identity::PlainUser => self.user_token.clone(),
            Identity::Token(token) => token.clone(),
        }
    }

    /// A client configuration acting as `identity`.
    pub fn kube_config(&self, identity: &Identity) -> kube::Config {
        let mut config = kube::Config::new(self.server.parse().expect("server URL"));
        config.root_cert = Some(vec![self.ca_der.clone()]);
        config.auth_info.token = Some(SecretString::from(self.token(identity)));
        config
    }

    /// An admin client; create it in the runtime that uses it.
    pub fn admin_client(&self) -> Result<kube::Client, String> {
        self.client(&Identity::Admin)
    }

    pub fn client(&self, identity: &Identity) -> Result<kube::Client, String> {
        onepassword_operator::connect::client::install_crypto_provider();
        kube::Client::try_from(self.kube_config(identity)).map_err(|e| format!("cannot build a kube client: {e}"))
    }

    /// A kubeconfig file for `identity`, for helm and for operator processes.
    pub fn write_kubeconfig(&self, identity: &Identity, path: &Path) -> Result<(), String> {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: user\n  user:\n    token: {}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: user\n    namespace: default\ncurrent-context: local\n",
            self.server,
            self.token(identity)
        );
        write(path, &yaml)
    }

    /// CPU seconds used so far by (etcd, kube-apiserver).
    pub fn cpu_seconds(&self) -> (Option<f64>, Option<f64>) {
        (self.etcd.cpu_seconds(), self.apiserver.cpu_seconds())
    }

    /// Resident memory of (etcd, kube-apiserver) in KiB.
    pub fn rss_kib(&self) -> (Option<u64>, Option<u64>) {
        (self.etcd.rss_kib(), self.apiserver.rss_kib())
    }

    /// Applies a CRD (server-side) and waits until it is established and served.
    pub async fn apply_crd(&self, client: &kube::Client, crd: &CustomResourceDefinition) -> Result<(), String> {
        let name = crd.metadata.name.clone().ok_or("the CRD has no name")?;
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        api.patch(
            &name,
            &PatchParams::apply("onepassword-operator-tests").force(),
            &Patch::Apply(crd),
        )
        .await
        .map_err(|e| format!("cannot apply CRD {name}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let current = api
                .get(&name)
                .await
                .map_err(|e| format!("cannot read CRD {name}: {e}"))?;
            let established = current
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            if established {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("CRD {name} not established after 30s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A fresh token of a ServiceAccount (TokenRequest), to act exactly as a pod of it would.
    pub async fn service_account_token(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<String, String> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let answer: TokenRequest = api
            .create_subresource("token", name, &kube::api::PostParams::default(), &request)
            .await
            .map_err(|e| format!("TokenRequest for {namespace}/{name} failed: {e}"))?;
        answer
            .status
            .map(|s| s.token)
            .ok_or_else(|| "TokenRequest returned no token".into())
    }

    /// Applies every CRD in a directory of YAML files (`crds/`).
    pub async fn install_crds(&self, client: &kube::Client, dir: &Path) -> Result<usize, String> {
        let mut count = 0;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        entries.sort();
        for path in entries {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let crd: CustomResourceDefinition =
                serde_yaml_ng::from_str(&text).map_err(|e| format!("{} is not a CRD: {e}", path.display()))?;
            self.apply_crd(client, &crd).await?;
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counts_sum_codes_and_scopes_by_verb_and_resource() {
        let metrics = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="GET",version="v1"} 3
apiserver_request_total{code="404",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="GET",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="onepassword.com",resource="onepassworditems",scope="resource",subresource="status",verb="PATCH",version="v1"} 4
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="",verb="GET",version=""} 9
apiserver_request_duration_seconds_bucket{verb="GET",resource="secrets",le="0.1"} 5
"#;
        assert_eq!(
            parse_request_counts(metrics),
            BTreeMap::from([
                ("GET secrets".to_string(), 5.0),
                ("PATCH onepassworditems/status".to_string(), 4.0)
            ])
        );
    }

    #[test]
    fn cpu_and_memory_of_a_process_from_proc() {
        let before = proc_cpu_seconds(std::process::id()).expect("our own /proc entry");
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = proc_cpu_seconds(std::process::id()).unwrap();
        assert!(after - before >= 0.1, "{before} -> {after}");
        assert_eq!(proc_cpu_seconds(u32::MAX), None);
        let (rss, peak) = (
            proc_memory_kib(std::process::id(), "VmRSS").unwrap(),
            proc_memory_kib(std::process::id(), "VmHWM").unwrap(),
        );
        assert!(rss > 0 && peak >= rss, "{rss} {peak}");
        assert_eq!(proc_memory_kib(std::process::id(), "VmNoSuchField"), None);
    }
}
