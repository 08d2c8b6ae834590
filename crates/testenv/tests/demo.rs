//! The README's main command works: the demo runs end to end on the one-node cluster (the
//! operator as a pod, an app pod reading the Secret) and shows no secret value.

use std::process::Command;

use opo_testenv::local_cluster::ControlPlaneBinaries;

#[test]
fn the_demo_runs_end_to_end_without_showing_values() {
    let root = opo_testenv::repo_root();
    let ready = ControlPlaneBinaries::locate(&root)
        .and_then(|_| opo_testenv::node::Images::locate().map(drop))
        .and_then(|()| opo_testenv::node::check_host());
    if let Err(message) = ready {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "{message}");
        eprintln!("SKIPPED: {message}");
        return;
    }
    let output = Command::new(env!("CARGO_BIN_EXE_onepassword-operator-demo"))
        .args(["--log-level", "warn"])
        .current_dir(&root)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    for step in [
        "node localhost Ready in",
        "pod onepassword/onepassword-operator-",
        "image ghcr.io/onepassword-operator/onepassword-operator:dev",
        "database: Ready (Synced)",
        "Secret tls (type kubernetes.io/tls, item version 1)",
        "item Database is now at version 2",
        "the Secret followed in",
        "app: password: sha256 ",
        "<- the running pod's mounted file",
        "repaired in",
    ] {
        assert!(printed.contains(step), "{step:?} missing from:\n{printed}");
    }
    for value in [
        "fake-db-password-1",
        "rotated-by-the-demo",
        "app_user",
        "fake-api-token-abc123",
        "demo-operator-token",
        "PRIVATE KEY",
    ] {
        assert!(!printed.contains(value), "{value} is shown:\n{printed}");
    }
}
