//! The one-node cluster leaves nothing behind on the host, even when the process that
//! started it is killed: the demo is started, killed with SIGKILL once its node is Ready and
//! pods run, and the host is checked.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the node changes on the host, as it is now.
#[derive(Debug, PartialEq)]
struct HostState {
    bridge: bool,
    kubepods_cgroups: bool,
    kube_chains: usize,
    settings: Vec<String>,
}

fn host_state() -> HostState {
    let iptables = Command::new("iptables-save")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let settings = [
        "net.ipv4.ip_forward",
        "vm.overcommit_memory",
        "kernel.panic",
        "kernel.panic_on_oops",
        "net.bridge.bridge-nf-call-iptables",
    ]
    .iter()
    .map(|key| {
        let out = Command::new("sysctl").args(["-n", key]).output().unwrap();
        format!("{key}={}", String::from_utf8_lossy(&out.stdout).trim())
    })
    .collect();
    HostState {
        bridge: std::path::Path::new("/sys/class/net/opo0").exists(),
        kubepods_cgroups: std::path::Path::new("/sys/fs/cgroup/memory/kubepods").exists(),
        kube_chains: String::from_utf8_lossy(&iptables).matches("KUBE-").count(),
        settings,
    }
}

fn mounts_under(dir: &str) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(dir)))
        .count()
}

#[test]
fn a_killed_demo_leaves_the_host_as_it_was() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let ready = opo_testenv::local_cluster::ControlPlaneBinaries::locate(&opo_testenv::repo_root())
        .and_then(|_| opo_testenv::node::Images::locate().map(drop))
        .and_then(|()| opo_testenv::node::check_host());
    if let Err(message) = ready {
        assert!(!ci, "{message}");
        eprintln!("SKIPPED: {message}");
        return;
    }
    let before = host_state();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_onepassword-operator-demo"))
        .current_dir(opo_testenv::repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Killed once the app pod runs: containers, mounts, kube-proxy's rules all exist then.
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let mut during = None;
    while let Some(Ok(line)) = lines.next() {
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("  app: ") {
            during = Some(host_state());
            break;
        }
    }
    let during = during.unwrap_or_else(|| panic!("the demo ended before its app pod ran:\n{printed}"));
    assert!(
        during.bridge && during.kubepods_cgroups && during.kube_chains > 0,
        "{during:?}"
    );
    let work = std::fs::read_to_string("/run/opo-one-node.current").unwrap();
    let work = work.lines().next().unwrap().to_owned();
    assert!(mounts_under(&work) > 0, "pod volumes are mounted under {work}");
    demo.kill().unwrap();
    demo.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while std::path::Path::new("/run/opo-one-node.current").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(host_state(), before, "the host after the node's teardown");
    assert_eq!(mounts_under(&work), 0, "no mount left under {work}");
    assert!(!std::path::Path::new(&work).exists(), "{work} removed");
    let left = Command::new("pgrep").args(["-f", &work]).output().unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
