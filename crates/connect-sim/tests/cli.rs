//! The `connect-sim` command line: a bad data file is an exit code and a message.

use std::process::Command;

#[test]
fn simulator_refuses_bad_data_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.yaml");
    std::fs::write(&data, "vaults:\n  - name: A\n    itemz: []\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_connect-sim"))
        .args(["--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(text.contains("itemz"), "{text}");
}
