//! The command line as users run it: exit codes, messages, and no secret in the output.

use std::process::{Command, Output};

use connect_sim::{self as sim, DataFile, SimConfig};

const BIN: &str = env!("CARGO_BIN_EXE_onepassword-operator");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("OP_CONNECT_HOST")
        .env_remove("OP_CONNECT_TOKEN");
    for (k, v) in env {
        command.env(k, v);
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

async fn example_sim() -> sim::RunningSimulator {
    sim::start(
        SimConfig::new(DataFile::embedded_example()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn connect_check_reports_names_and_versions_but_no_values() {
    let sim = example_sim().await;
    let host = sim.url().to_string();
    let output = tokio::task::spawn_blocking(move || {
        run(
            &["connect-check", "--item-path", "vaults/Demo/items/Database"],
            &[("OP_CONNECT_HOST", &host), ("OP_CONNECT_TOKEN", "demo-operator-token")],
        )
    })
    .await
    .unwrap();
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("sees 2 vault(s): Demo (3 items), Staging (1 items)"),
        "{printed}"
    );
    assert!(
        printed.contains("version 1; fields: username, password, host, port"),
        "{printed}"
    );
    for secret in ["fake-db-password-1", "app_user", "demo-operator-token"] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
}

#[tokio::test]
async fn connect_check_fails_with_the_reason() {
    let sim = example_sim().await;
    let host = sim.url().to_string();
    let bad_token = {
        let host = host.clone();
        tokio::task::spawn_blocking(move || {
            run(
                &["connect-check"],
                &[("OP_CONNECT_HOST", &host), ("OP_CONNECT_TOKEN", "nope")],
            )
        })
        .await
        .unwrap()
    };
    assert_eq!(bad_token.status.code(), Some(1));
    assert!(
        text(&bad_token).contains("the token was rejected"),
        "{}",
        text(&bad_token)
    );

    let bad_path = tokio::task::spawn_blocking(move || {
        run(
            &["connect-check", "--item-path", "vaults/Demo/Database"],
            &[("OP_CONNECT_HOST", &host), ("OP_CONNECT_TOKEN", "demo-operator-token")],
        )
    })
    .await
    .unwrap();
    assert_eq!(bad_path.status.code(), Some(1));
    assert!(
        text(&bad_path).contains("must look like vaults/<vault>/items/<item>"),
        "{}",
        text(&bad_path)
    );
}

#[test]
fn unreachable_connect_and_missing_settings() {
    // Port 9 on loopback: nothing listens there.
    let output = run(
        &["connect-check", "--connect-timeout", "2"],
        &[("OP_CONNECT_HOST", "http://127.0.0.1:9"), ("OP_CONNECT_TOKEN", "t")],
    );
    assert_eq!(output.status.code(), Some(1));
    let printed = text(&output);
    assert!(
        printed.contains("does not answer its heartbeat") && printed.to_lowercase().contains("refused"),
        "{printed}"
    );

    let output = run(&["connect-check"], &[("OP_CONNECT_HOST", "http://127.0.0.1:9")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("no Connect token"), "{}", text(&output));

    let output = run(&["connect-check"], &[]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "clap reports a missing host as a usage error"
    );
    assert!(text(&output).contains("OP_CONNECT_HOST") || text(&output).contains("--connect-host"));
}
