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
        printed.contains("sees 2 vault(s): Demo (5 items), Staging (1 items)"),
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

/// A minimal image (distroless, or the e2e tests' own) may have no system CA certificates:
/// that must not stop a plain-HTTP Connect host, nor an HTTPS one with its own CA bundle.
#[tokio::test]
async fn without_system_ca_certificates_a_plain_http_connect_host_still_works() {
    let sim = example_sim().await;
    let host = sim.url().to_string();
    let output = tokio::task::spawn_blocking(move || {
        run(
            &["connect-check"],
            &[
                ("OP_CONNECT_HOST", &host),
                ("OP_CONNECT_TOKEN", "demo-operator-token"),
                // Where rustls looks for the system's roots: nothing there.
                ("SSL_CERT_FILE", "/nonexistent/ca-certificates.crt"),
                ("SSL_CERT_DIR", "/nonexistent"),
            ],
        )
    })
    .await
    .unwrap();
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("sees 2 vault(s)"), "{printed}");
    assert!(
        !printed.contains("CA root certificate"),
        "no warning about roots it does not need: {printed}"
    );
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

/// Runs `render` against a simulator serving the example data, with a manifest file.
async fn render(manifest: &str, extra: &[&str]) -> Output {
    let sim = example_sim().await;
    let host = sim.url().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, manifest).unwrap();
    let mut args = vec!["render".to_string(), "-f".into(), file.to_str().unwrap().into()];
    args.extend(extra.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(
            &args,
            &[("OP_CONNECT_HOST", &host), ("OP_CONNECT_TOKEN", "demo-operator-token")],
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn render_previews_every_example_with_values_masked() {
    let manifest = include_str!("../examples/shaped-secrets.yaml");
    let output = render(manifest, &[]).await;
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let secrets: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&stdout)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect();
    let names: Vec<&str> = secrets
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "database-env",
            "demo-tls",
            "api-token-only",
            "registry-credentials",
            "registry-basic-auth",
            "database-url",
            "deploy-key",
            "app-env"
        ]
    );
    assert_eq!(secrets[0]["metadata"]["namespace"], "default");
    assert_eq!(secrets[0]["data"]["DB_PASSWORD"], "<masked, 18 bytes>");
    assert_eq!(secrets[1]["type"], "kubernetes.io/tls");
    for secret in ["fake-db-password-1", "app_user", "fake-registry-token-1", "BEGIN"] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
}

#[tokio::test]
async fn render_shows_values_when_asked() {
    let manifest = r#"
apiVersion: onepassword.com/v1
kind: OnePasswordItem
metadata: { name: url, namespace: apps }
spec:
  itemPath: vaults/Demo/items/Database
  template:
    data:
      DATABASE_URL: 'postgres://{{ item.username }}:{{ item.password | urlencode }}@{{ item.host }}/app'
"#;
    let output = render(manifest, &["--show-values"]).await;
    assert!(output.status.success(), "{}", text(&output));
    let secret: serde_json::Value = serde_yaml_ng::from_slice(&output.stdout).unwrap();
    assert_eq!(secret["metadata"]["namespace"], "apps");
    assert_eq!(
        secret["stringData"]["DATABASE_URL"],
        "postgres://app_user:fake-db-password-1@db.demo.svc/app"
    );
    assert!(secret["metadata"]["ownerReferences"].is_null());
}

#[tokio::test]
async fn render_reports_what_the_controller_would() {
    let manifest = r#"
apiVersion: onepassword.com/v1
kind: OnePasswordItem
metadata: { name: ok }
spec: { itemPath: vaults/Demo/items/API Token }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: ignored }
---
apiVersion: onepassword.com/v1
kind: OnePasswordItem
metadata: { name: missing-field }
spec:
  itemPath: vaults/Demo/items/Database
  fields: [{ key: K, field: nope }]
---
apiVersion: onepassword.com/v1
kind: OnePasswordItem
metadata: { name: typo }
spec:
  itemPath: vaults/Demo/items/Database
  template: { data: { K: "{{ item.passwrod }}" } }
---
apiVersion: onepassword.com/v1
kind: OnePasswordItem
metadata: { name: no-such-item }
spec: { itemPath: vaults/Demo/items/Nope }
"#;
    let output = render(manifest, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OnePasswordItem default/missing-field: Ready=False, reason FieldNotFound: fields entry key \"K\" <- field \"nope\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("OnePasswordItem default/typo: Ready=False, reason TemplateError: template.data[\"K\"], line 1: undefined value"),
        "{stderr}"
    );
    assert!(
        stderr.contains("default/no-such-item: Ready=False, reason ItemNotFound"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("name: ok"), "the good one is still printed: {stdout}");
    assert!(!stdout.contains("ignored"), "{stdout}");
    assert!(!text(&output).contains("fake-db-password"), "{}", text(&output));

    let nothing = render("apiVersion: v1\nkind: ConfigMap\nmetadata: { name: x }\n", &[]).await;
    assert_eq!(nothing.status.code(), Some(1));
    assert!(
        text(&nothing).contains("the manifest holds no OnePasswordItem"),
        "{}",
        text(&nothing)
    );
}
