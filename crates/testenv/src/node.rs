//! A one-node Kubernetes cluster on this machine, for the end-to-end tests and the demo: the
//! local control plane (etcd, kube-apiserver) plus kube-controller-manager, kube-scheduler,
//! a kubelet on containerd + runc, kube-proxy for Services and CoreDNS for their names.
//! Pods run for real: they mount Secrets, roll out, are garbage-collected.
//!
//! Everything binds to loopback or to the pod bridge's host address ([`POD_GATEWAY`]), a
//! private network inside this machine: kube-apiserver listens there so that pods reach it
//! through the `kubernetes` Service, and CoreDNS answers there. `node/host.sh` owns every
//! change to the host (bridge, kernel settings, cgroups, mounts, iptables) and undoes it
//! when this process ends, however it ends. One such node per machine at a time.
//!
//! The walls this machine kind puts up, and how they are passed, are in
//! `../shared/reference/real-node.md`; the comments below name each where it applies.

use std::io::{BufRead as _, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::Api;

use crate::local_cluster::{
    ApiServerSetup, ControlPlaneBinaries, Identity, LocalCluster, SERVICE_CIDR, Supervised, free_port,
};

/// The host's address on the pod bridge: kube-apiserver and CoreDNS listen on it.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
const POD_CIDR: &str = "10.244.0.0/24";
/// The node's name: the kubelet listens on loopback, and the apiserver reaches it by name.
pub const NODE_NAME: &str = "localhost";
/// The images `scripts/image` builds, by reference; pods name them with `imagePullPolicy: Never`.
pub const OPERATOR_IMAGE: &str = "ghcr.io/onepassword-operator/onepassword-operator:dev";
pub const SIMULATOR_IMAGE: &str = "ghcr.io/onepassword-operator/connect-sim:dev";
pub const BUSYBOX_IMAGE: &str = "opo.local/busybox:dev";
const PAUSE_IMAGE: &str = "opo.local/pause:dev";
const IMAGE_NAMES: [&str; 4] = ["operator", "simulator", "busybox", "pause"];
/// Environment variable naming the directory of the image archives (`scripts/image`).
pub const IMAGE_DIR_ENV: &str = "OPO_IMAGE_DIR";
const NODE_BINARIES: [&str; 5] = [
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "coredns",
];
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const HOST_SCRIPT: &str = include_str!("node/host.sh");

/// Where the image archives of `scripts/image` are.
#[derive(Clone, Debug)]
pub struct Images {
    pub dir: PathBuf,
}

impl Images {
    /// From `OPO_IMAGE_DIR`, else the cache `scripts/image` writes to.
    pub fn locate() -> Result<Self, String> {
        let dir = match std::env::var_os(IMAGE_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let cache = std::env::var_os("OPO_CACHE_DIR")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("onepassword-operator"))
                    })
                    .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/onepassword-operator")))
                    .ok_or("neither OPO_IMAGE_DIR nor HOME is set")?;
                cache.join("images")
            }
        };
        for name in IMAGE_NAMES {
            let archive = dir.join(format!("{name}.tar"));
            if !archive.is_file() {
                return Err(format!(
                    "{} is missing: run scripts/image (or set {IMAGE_DIR_ENV})",
                    archive.display()
                ));
            }
        }
        Ok(Self { dir })
    }
}

/// The process that owns the host's changes (`node/host.sh`): when its stdin closes, it
/// tears the node down.
struct HostJanitor {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl HostJanitor {
    fn start(work: &Path, kube_proxy: &Path) -> Result<Self, String> {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(HOST_SCRIPT)
            .arg("host.sh")
            .arg(work)
            .arg(kube_proxy)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the host script: {e}"))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("the host script has no stdout")?;
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the host script: {e}"))?;
        let janitor = Self { child, stdin };
        match line.trim() {
            "ready" => Ok(janitor),
            other => Err(format!("the host is not ready for a node: {other}")),
        }
    }
}

impl Drop for HostJanitor {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// A running one-node cluster.
pub struct OneNodeCluster {
    /// etcd and kube-apiserver; kube clients come from here.
    pub control_plane: LocalCluster,
    /// From nothing to the node Ready, CoreDNS and kube-proxy serving.
    pub startup: Duration,
    work: PathBuf,
    // Stopped by `Drop` before the control plane: the node's processes, newest first, then
    // the janitor, which cleans up what is left.
    components: Vec<Supervised>,
    janitor: Option<HostJanitor>,
}

impl std::fmt::Debug for OneNodeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneNodeCluster")
            .field("server", &self.control_plane.server)
            .field("work", &self.work)
            .finish()
    }
}

impl Drop for OneNodeCluster {
    fn drop(&mut self) {
        // The kubelet and containerd first, so that no pod restarts while the rest stops.
        while let Some(mut component) = self.components.pop() {
            component.stop();
        }
        // The janitor waits for nothing but its stdin: it kills what is left, unmounts and
        // cleans. The control plane stops with this struct afterwards.
        self.janitor.take();
    }
}

impl OneNodeCluster {
    /// Starts the whole cluster and waits until the node is Ready.
    pub async fn start(binaries: &ControlPlaneBinaries, images: &Images) -> Result<Self, String> {
        let started = Instant::now();
        for name in NODE_BINARIES {
            if !binaries.path(name).is_file() {
                return Err(format!(
                    "{} is missing: run scripts/control-plane-bins",
                    binaries.path(name).display()
                ));
            }
        }
        check_host()?;
        let work = tempfile::Builder::new()
            .prefix("opo-node-")
            .tempdir()
            .map_err(|e| format!("cannot create a work directory: {e}"))?
            .keep();
        let janitor = HostJanitor::start(&work, &binaries.path("kube-proxy"))?;
        let control_plane =
            LocalCluster::start_with(binaries, &ApiServerSetup::ForNode { address: POD_GATEWAY }).await?;
        let mut cluster = Self {
            control_plane,
            startup: Duration::ZERO,
            work,
            components: Vec::new(),
            janitor: Some(janitor),
        };
        cluster.start_components(binaries, images).await?;
        cluster.startup = started.elapsed();
        Ok(cluster)
    }

    async fn start_components(&mut self, binaries: &ControlPlaneBinaries, images: &Images) -> Result<(), String> {
        let work = self.work.clone();
        let kubeconfig = work.join("admin.kubeconfig");
        self.control_plane.write_kubeconfig(&Identity::Admin, &kubeconfig)?;
        let kubeconfig_arg = format!("--kubeconfig={}", kubeconfig.display());
        let plane = self.control_plane.work_dir().to_path_buf();

        // containerd, with its state under the work directory.
        let socket = work.join("containerd.sock");
        write(&work.join("containerd.toml"), &containerd_config(&work))?;
        write(&work.join("cni/10-pods.conflist"), &cni_config(&work))?;
        self.spawn(
            "containerd",
            Path::new("containerd"),
            vec![format!("--config={}", work.join("containerd.toml").display())],
        )?;
        self.wait_for("containerd", || socket.exists()).await?;
        for name in IMAGE_NAMES {
            let archive = images.dir.join(format!("{name}.tar"));
            ctr(&socket, &["images", "import", &archive.to_string_lossy()])?;
        }
        let listed = ctr(&socket, &["images", "list", "--quiet"])?;
        for reference in [OPERATOR_IMAGE, SIMULATOR_IMAGE, BUSYBOX_IMAGE, PAUSE_IMAGE] {
            if !listed.lines().any(|l| l.trim() == reference) {
                return Err(format!(
                    "image {reference} is not in {}: run scripts/image",
                    images.dir.display()
                ));
            }
        }

        self.spawn(
            "kube-controller-manager",
            &binaries.path("kube-controller-manager"),
            vec![
                kubeconfig_arg.clone(),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--use-service-account-credentials=false".into(),
                format!("--service-account-private-key-file={}", plane.join("sa.key").display()),
                format!("--root-ca-file={}", plane.join("ca.crt").display()),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--cluster-name=opo".into(),
                // Garbage collection and rollouts promptly, as in a real cluster.
                "--concurrent-gc-syncs=5".into(),
            ],
        )?;
        self.spawn(
            "kube-scheduler",
            &binaries.path("kube-scheduler"),
            vec![
                kubeconfig_arg.clone(),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
            ],
        )?;

        let (kubelet_port, kubelet_healthz) = (free_port()?, free_port()?);
        write(
            &work.join("kubelet.yaml"),
            &kubelet_config(&work, kubelet_port, kubelet_healthz),
        )?;
        self.spawn(
            "kubelet",
            &binaries.path("kubelet"),
            vec![
                format!("--config={}", work.join("kubelet.yaml").display()),
                kubeconfig_arg.clone(),
                format!("--hostname-override={NODE_NAME}"),
                format!("--root-dir={}", work.join("kubelet").display()),
                format!("--cert-dir={}", work.join("kubelet/pki").display()),
            ],
        )?;

        let (proxy_healthz, proxy_metrics) = (free_port()?, free_port()?);
        self.spawn(
            "kube-proxy",
            &binaries.path("kube-proxy"),
            vec![
                kubeconfig_arg.clone(),
                format!("--hostname-override={NODE_NAME}"),
                "--proxy-mode=iptables".into(),
                format!("--cluster-cidr={POD_CIDR}"),
                // Leave the host's conntrack table sizes and timeouts alone.
                "--conntrack-max-per-core=0".into(),
                "--conntrack-tcp-timeout-established=0".into(),
                "--conntrack-tcp-timeout-close-wait=0".into(),
                // No NodePorts on 127.0.0.1 (that would need route_localnet); the others on
                // the node's own address only.
                "--iptables-localhost-nodeports=false".into(),
                "--nodeport-addresses=primary".into(),
                format!("--healthz-bind-address=127.0.0.1:{proxy_healthz}"),
                format!("--metrics-bind-address=127.0.0.1:{proxy_metrics}"),
            ],
        )?;

        let dns_ready = free_port()?;
        write(
            &work.join("Corefile"),
            &format!(
                ".:53 {{\n    bind {POD_GATEWAY}\n    errors\n    ready 127.0.0.1:{dns_ready}\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        kubeconfig {} local\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n    }}\n}}\n",
                kubeconfig.display()
            ),
        )?;
        self.spawn(
            "coredns",
            &binaries.path("coredns"),
            vec!["-conf".into(), work.join("Corefile").display().to_string()],
        )?;

        let client = self.control_plane.admin_client()?;
        let nodes: Api<Node> = Api::all(client.clone());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let node_ready = nodes.get_opt(NODE_NAME).await.ok().flatten().is_some_and(|node| {
                node.status
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
            let ok = async |url: String| http.get(url).send().await.is_ok_and(|r| r.status().is_success());
            let dns = ok(format!("http://127.0.0.1:{dns_ready}/ready")).await;
            let proxy = ok(format!("http://127.0.0.1:{proxy_healthz}/healthz")).await;
            // Pods of the default namespace need its ServiceAccount (the controller-manager's).
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
            let account = accounts.get_opt("default").await.ok().flatten().is_some();
            if node_ready && dns && proxy && account {
                return Ok(());
            }
            self.check_running()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "the node is not ready after {}s (node Ready: {node_ready}, CoreDNS ready: {dns}, kube-proxy healthy: {proxy}, default ServiceAccount: {account}); the kubelet's log ends with:\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.log_tail("kubelet")
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn spawn(&mut self, name: &'static str, program: &Path, args: Vec<String>) -> Result<(), String> {
        let process = Supervised::spawn(name, &self.work, program, &args, false)?;
        self.components.push(process);
        Ok(())
    }

    async fn wait_for(&self, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            self.check_running()?;
            if Instant::now() > deadline {
                return Err(format!("{what} did not start in 30s:\n{}", self.log_tail(what)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Whether every component still runs; else which stopped, with the end of its log. Tests
    /// call it when they time out, so that a broken cluster says so.
    pub fn check_running(&self) -> Result<(), String> {
        self.control_plane.check_running()?;
        for component in &self.components {
            if component.has_exited() {
                return Err(format!(
                    "{} stopped; its log ends with:\n{}",
                    component.name,
                    component.log_tail()
                ));
            }
        }
        Ok(())
    }

    /// The end of one component's log (its error lines, else its last lines).
    pub fn log_tail(&self, name: &str) -> String {
        self.components
            .iter()
            .find(|c| c.name == name)
            .map(Supervised::log_tail)
            .unwrap_or_default()
    }

    /// Gives an imported image a second reference, as a new release of it would be.
    pub fn tag_image(&self, from: &str, to: &str) -> Result<(), String> {
        ctr(
            &self.work.join("containerd.sock"),
            &["images", "tag", "--force", from, to],
        )
        .map(drop)
    }

    /// An admin kubeconfig file (for helm).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.work.join("admin.kubeconfig")
    }

    /// Resident memory of each component in KiB, the control plane's included.
    pub fn rss_kib(&self) -> Vec<(&'static str, Option<u64>)> {
        let (etcd, apiserver) = self.control_plane.rss_kib();
        let mut out = vec![("etcd", etcd), ("kube-apiserver", apiserver)];
        out.extend(self.components.iter().map(|c| (c.name, c.rss_kib())));
        out
    }
}

/// Whether this machine can run the node: root, and the container runtime installed.
pub fn check_host() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next());
    if uid != Some("0") {
        return Err("the one-node cluster needs root (its kubelet, container runtime and bridge)".into());
    }
    for tool in ["containerd", "runc", "ctr", "iptables", "/usr/lib/cni/bridge"] {
        let found = Path::new(tool).is_file() || which(tool).is_some();
        if !found {
            return Err(format!("{tool} is missing: run scripts/node-packages"));
        }
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `ctr` against the node's containerd, in the namespace the kubelet uses.
fn ctr(socket: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ctr: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "ctr {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn containerd_config(work: &Path) -> String {
    let w = work.display();
    format!(
        r#"version = 2
root = "{w}/containerd/root"
state = "{w}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{w}/containerd.sock"

[ttrpc]
  address = "{w}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{w}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE: containerd's OOM score of -998 for sandboxes fails
  # every pod unless scores may only be raised.
  restrict_oom_score_adj = true
  # Sandbox network namespaces under the work directory, so that teardown finds them all.
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # cgroup v1 with the cgroupfs driver, as the kubelet.
        SystemdCgroup = false
        Root = "{w}/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{w}/cni"
"#
    )
}

fn cni_config(work: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "pods",
        "plugins": [{
            "type": "bridge",
            "bridge": "opo0",
            "isGateway": true,
            // Pods only talk to each other and to the host: nothing to masquerade.
            "ipMasq": false,
            // A pod reaching itself through a Service's ClusterIP.
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": POD_CIDR, "gateway": POD_GATEWAY.to_string() }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": work.join("cni-ipam").display().to_string(),
            },
        }],
    })
    .to_string()
}

fn kubelet_config(work: &Path, port: u16, healthz_port: u16) -> String {
    let w = work.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
# Only the apiserver on this machine reaches it (logs, exec), over loopback.
authentication:
  anonymous: {{ enabled: true }}
  webhook: {{ enabled: false }}
authorization:
  mode: AlwaysAllow
# This machine kind has cgroup v1 only: kubelet 1.37 refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://{w}/containerd.sock
clusterDNS: ["{POD_GATEWAY}"]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
hairpinMode: hairpin-veth
# A Secret's new value reaches mounted files at the next pod sync: 1 s instead of 1 min.
syncFrequency: 1s
nodeStatusUpdateFrequency: 2s
# The images come from archives, not a registry: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# A shared test machine: evict nothing for disk or memory pressure.
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
serializeImagePulls: false
rotateCertificates: false
shutdownGracePeriod: 0s
"#
    )
}
