//! The Connect client against the simulator over real HTTP on 127.0.0.1: every endpoint,
//! every error row of the API reference, seen from both sides (client error type, and the
//! simulator's status and body).

use std::time::{Duration, Instant};

use connect_sim::faults::{FaultRule, Faults};
use connect_sim::{self as sim, DataFile, RunningSimulator, SimConfig};
use onepassword_operator::connect::models::{
    ApiAction, ApiResult, Category, Field, FieldPurpose, FieldType, FullItem, Item, PatchOp, VaultRef,
};
use onepassword_operator::connect::{
    ConnectClient, ConnectConfig, ConnectError, Filter, RetryPolicy, resolve_item, resolve_vault,
};
use secrecy::SecretString;
use serde_json::json;

const DATA: &str = r#"
tokens:
  - { name: writer, token: writer-token, vaults: { "*": read-write } }
  - { name: reader, token: reader-token, vaults: { Alpha: read } }
vaults:
  - name: Alpha
    items:
      - title: Login One
        tags: [prod, db]
        urls: [{ href: "https://one.example", label: site, primary: true }]
        fields:
          - { label: username, value: alice, purpose: USERNAME }
          - { label: password, value: pw-1, purpose: PASSWORD }
      - title: Docs
        category: SECURE_NOTE
        files:
          - { name: small.txt, content: "hello file" }
          - { name: big.bin, contentBase64: "BIG_FILE_BASE64" }
      - { title: Twin, fields: [{ label: which, value: first }] }
      - { title: Twin, fields: [{ label: which, value: second }] }
      - { title: abcdefghijklmnopqrstuvwxyz, fields: [{ label: note, value: id-like title }] }
  - name: Beta
    items:
      - { title: Hidden, fields: [{ label: x, value: y }] }
"#;

struct Env {
    sim: RunningSimulator,
    writer: ConnectClient,
    reader: ConnectClient,
    alpha: String,
    beta: String,
}

fn client_for(sim: &RunningSimulator, token: &str, retry: RetryPolicy) -> ConnectClient {
    let mut config = ConnectConfig::new(sim.url(), SecretString::from(token.to_owned()));
    config.retry = retry;
    ConnectClient::new(config).unwrap()
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    }
}

async fn env() -> Env {
    // 2 KiB: over the 1 KiB inline limit configured below.
    let big = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![7u8; 2048]);
    let mut config = SimConfig::new(DataFile::parse(&DATA.replace("BIG_FILE_BASE64", &big)).unwrap());
    config.max_inline_file_size_kb = 1;
    let sim = sim::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let writer = client_for(&sim, "writer-token", RetryPolicy::none());
    let reader = client_for(&sim, "reader-token", RetryPolicy::none());
    let vaults = writer.list_vaults(None).await.unwrap();
    let id = |name: &str| vaults.iter().find(|v| v.name == name).unwrap().id.clone();
    let (alpha, beta) = (id("Alpha"), id("Beta"));
    Env {
        sim,
        writer,
        reader,
        alpha,
        beta,
    }
}

async fn item_id(env: &Env, title: &str) -> String {
    env.writer
        .list_items(&env.alpha, Some(&Filter::title_eq(title)))
        .await
        .unwrap()[0]
        .id
        .clone()
}

/// Asserts the simulator's raw answer to a request: status, JSON error body, version header.
async fn raw_error(env: &Env, method: reqwest::Method, path: &str, token: Option<&str>, status: u16, message: &str) {
    let mut request = reqwest::Client::new().request(method, env.sim.url().join(path).unwrap());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), status, "{path}");
    assert_eq!(response.headers()["content-type"], "application/json", "{path}");
    assert_eq!(response.headers()["1password-connect-version"], "1.8.1", "{path}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], status, "{path}: {body}");
    assert!(body["message"].as_str().unwrap().contains(message), "{path}: {body}");
}

#[tokio::test]
async fn vaults_are_listed_within_the_token_scope_and_filtered_by_name() {
    let env = env().await;
    let names = |vaults: Vec<onepassword_operator::connect::models::Vault>| {
        vaults.into_iter().map(|v| v.name).collect::<Vec<_>>()
    };
    assert_eq!(names(env.writer.list_vaults(None).await.unwrap()), ["Alpha", "Beta"]);
    assert_eq!(names(env.reader.list_vaults(None).await.unwrap()), ["Alpha"]);
    assert_eq!(
        names(env.writer.list_vaults(Some(&Filter::name_eq("BETA"))).await.unwrap()),
        ["Beta"]
    );
    // The Go and JS SDKs send `title eq`.
    let go_style = Filter::compare("title", "eq", "alpha");
    assert_eq!(names(env.writer.list_vaults(Some(&go_style)).await.unwrap()), ["Alpha"]);

    let vault = env.writer.get_vault(&env.alpha).await.unwrap();
    assert_eq!(
        (vault.name.as_str(), vault.items, vault.content_version),
        ("Alpha", 5, 1)
    );
    assert!(vault.created_at.is_some());
}

#[tokio::test]
async fn vault_errors_match_the_real_server() {
    let env = env().await;
    let err = env.writer.get_vault("not-an-id").await.unwrap_err();
    assert!(matches!(err, ConnectError::BadRequest { .. }), "{err:?}");
    let err = env.writer.get_vault(&"z".repeat(26)).await.unwrap_err();
    assert!(
        matches!(&err, ConnectError::Forbidden { message, .. } if message.starts_with("Authorization: token does not have access to vault")),
        "{err:?}"
    );
    let err = env.reader.get_vault(&env.beta).await.unwrap_err();
    assert!(matches!(err, ConnectError::Forbidden { .. }), "{err:?}");
    let err = env.reader.list_items(&env.beta, None).await.unwrap_err();
    assert!(matches!(err, ConnectError::Forbidden { .. }), "{err:?}");

    raw_error(
        &env,
        reqwest::Method::GET,
        "/v1/vaults/not-an-id",
        Some("writer-token"),
        400,
        "Invalid Vault UUID",
    )
    .await;
    raw_error(
        &env,
        reqwest::Method::GET,
        &format!("/v1/vaults/{}", env.beta),
        Some("reader-token"),
        403,
        "does not have access",
    )
    .await;
}

#[tokio::test]
async fn tokens_are_checked() {
    let env = env().await;
    let stranger = client_for(&env.sim, "made-up-token", RetryPolicy::none());
    let err = stranger.list_vaults(None).await.unwrap_err();
    assert!(
        matches!(&err, ConnectError::Unauthorized { message, .. } if message == "Invalid token signature"),
        "{err:?}"
    );
    assert!(err.is_auth_failure() && !err.is_retryable());
    raw_error(
        &env,
        reqwest::Method::GET,
        "/v1/vaults",
        None,
        401,
        "Invalid bearer token",
    )
    .await;
    raw_error(
        &env,
        reqwest::Method::GET,
        "/v1/vaults",
        Some("made-up-token"),
        401,
        "Invalid token signature",
    )
    .await;
}

#[tokio::test]
async fn items_are_listed_with_versions_and_filtered() {
    let env = env().await;
    let items = env.writer.list_items(&env.alpha, None).await.unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|i| i.version == 1 && i.vault.id == env.alpha));
    let titles = |items: Vec<Item>| items.into_iter().map(|i| i.title).collect::<Vec<_>>();
    assert_eq!(
        titles(
            env.writer
                .list_items(&env.alpha, Some(&Filter::title_eq("login one")))
                .await
                .unwrap()
        ),
        ["Login One"]
    );
    assert_eq!(
        titles(
            env.writer
                .list_items(&env.alpha, Some(&Filter::tag_eq("db")))
                .await
                .unwrap()
        ),
        ["Login One"]
    );
    assert_eq!(
        titles(
            env.writer
                .list_items(&env.alpha, Some(&Filter::title_contains("twi")))
                .await
                .unwrap()
        ),
        ["Twin", "Twin"]
    );
    let either = Filter::title_eq("Docs").or(Filter::tag_eq("prod"));
    assert_eq!(
        titles(env.writer.list_items(&env.alpha, Some(&either)).await.unwrap()),
        ["Login One", "Docs"]
    );

    let err = env
        .writer
        .list_items(
            &env.alpha,
            Some(&Filter::compare("title", "eq", "x").and(Filter::compare("colour", "eq", "red"))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectError::BadRequest { message, .. } if message.contains("colour")),
        "{err:?}"
    );
    raw_error(
        &env,
        reqwest::Method::GET,
        &format!("/v1/vaults/{}/items?filter=title+eq+%27x%27", env.alpha),
        Some("writer-token"),
        400,
        "double quotes",
    )
    .await;
}

#[tokio::test]
async fn item_details_and_not_found() {
    let env = env().await;
    let id = item_id(&env, "Login One").await;
    let item = env.reader.get_item(&env.alpha, &id).await.unwrap();
    assert_eq!(item.title, "Login One");
    assert_eq!(item.urls[0].href, "https://one.example");
    let username = item
        .fields
        .iter()
        .find(|f| f.purpose == Some(FieldPurpose::Username))
        .unwrap();
    assert_eq!((username.id.as_str(), username.value.as_str()), ("username", "alice"));

    let missing = "q".repeat(26);
    let err = env.reader.get_item(&env.alpha, &missing).await.unwrap_err();
    assert!(
        matches!(&err, ConnectError::NotFound { message, .. } if *message == format!("item {missing} not found")),
        "{err:?}"
    );
    let err = env.reader.get_item(&env.alpha, "Login One").await.unwrap_err();
    assert!(matches!(err, ConnectError::BadRequest { .. }), "{err:?}");
    raw_error(
        &env,
        reqwest::Method::GET,
        &format!("/v1/vaults/{}/items/{missing}", env.alpha),
        Some("reader-token"),
        404,
        "not found",
    )
    .await;
}

#[tokio::test]
async fn create_replace_patch_delete_with_versions() {
    let env = env().await;
    let vault_version = |v: onepassword_operator::connect::models::Vault| v.content_version;
    let new_item = FullItem {
        item: Item {
            title: "Created".into(),
            category: Some(Category::Login),
            vault: VaultRef { id: env.alpha.clone() },
            tags: vec!["new".into()],
            ..Item::default()
        },
        fields: vec![
            Field {
                purpose: Some(FieldPurpose::Username),
                value: "bob".into(),
                ..Field::default()
            },
            Field {
                purpose: Some(FieldPurpose::Password),
                generate: true,
                ..Field::default()
            },
        ],
        ..FullItem::default()
    };
    let created = env.writer.create_item(&env.alpha, &new_item).await.unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.fields.len(), 3, "LOGIN adds notesPlain");
    assert_eq!(created.fields[1].value.chars().count(), 32);
    assert_eq!(created.fields[1].field_type, Some(FieldType::Concealed));
    assert_eq!(vault_version(env.writer.get_vault(&env.alpha).await.unwrap()), 2);

    let mut replacement = created.clone();
    replacement.title = "Replaced".into();
    replacement.fields.push(Field {
        label: "extra".into(),
        value: "x".into(),
        ..Field::default()
    });
    let replaced = env
        .writer
        .replace_item(&env.alpha, &created.id, &replacement)
        .await
        .unwrap();
    assert_eq!(
        (replaced.version, replaced.title.as_str(), replaced.fields.len()),
        (2, "Replaced", 4)
    );
    assert_eq!(replaced.created_at, created.created_at);

    let patched = env
        .writer
        .patch_item(
            &env.alpha,
            &created.id,
            &[
                PatchOp::replace("/fields/username/value", json!("carol")),
                PatchOp::add("/tags/-", json!("patched")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(patched.version, 3);
    assert_eq!(patched.fields[0].value, "carol");
    assert_eq!(patched.tags, ["new", "patched"]);
    let fetched = env.reader.get_item(&env.alpha, &created.id).await.unwrap();
    assert_eq!(fetched, patched, "a read returns what the write answered");
    assert_eq!(vault_version(env.writer.get_vault(&env.alpha).await.unwrap()), 4);

    let err = env
        .writer
        .patch_item(&env.alpha, &created.id, &[PatchOp::remove("/fields/nope")])
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::BadRequest { .. }), "{err:?}");
    assert_eq!(
        env.reader.get_item(&env.alpha, &created.id).await.unwrap().version,
        3,
        "failed patch saved nothing"
    );

    env.writer.delete_item(&env.alpha, &created.id).await.unwrap();
    let err = env.writer.get_item(&env.alpha, &created.id).await.unwrap_err();
    assert!(err.is_not_found());
    let err = env.writer.delete_item(&env.alpha, &created.id).await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(vault_version(env.writer.get_vault(&env.alpha).await.unwrap()), 5);
}

#[tokio::test]
async fn writes_are_refused_to_read_only_tokens_and_bad_bodies() {
    let env = env().await;
    let id = item_id(&env, "Login One").await;
    let err = env
        .reader
        .patch_item(&env.alpha, &id, &[PatchOp::replace("/title", json!("x"))])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Unauthorized { message, .. } if message.contains("does not have write access")),
        "{err:?}"
    );
    let err = env.reader.delete_item(&env.alpha, &id).await.unwrap_err();
    assert!(matches!(err, ConnectError::Unauthorized { .. }));

    let document = FullItem {
        item: Item {
            title: "Doc".into(),
            category: Some(Category::Document),
            ..Item::default()
        },
        ..FullItem::default()
    };
    let err = env.writer.create_item(&env.alpha, &document).await.unwrap_err();
    assert!(
        matches!(&err, ConnectError::BadRequest { message, .. } if message.contains("DOCUMENT")),
        "{err:?}"
    );
    let path = format!("/v1/vaults/{}/items", env.alpha);
    let response = reqwest::Client::new()
        .post(env.sim.url().join(&path).unwrap())
        .bearer_auth("writer-token")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["status"], 400);
    assert_eq!(
        env.writer.get_vault(&env.alpha).await.unwrap().content_version,
        1,
        "nothing was written"
    );
}

#[tokio::test]
async fn files_inline_content_and_limits() {
    let env = env().await;
    let id = item_id(&env, "Docs").await;
    let files = env.reader.list_files(&env.alpha, &id, false).await.unwrap();
    assert_eq!(
        files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["small.txt", "big.bin"]
    );
    assert!(files.iter().all(|f| f.content.is_none()));
    let small = &files[0];
    assert_eq!(small.size, 10);
    assert_eq!(
        small.content_path,
        format!("/v1/vaults/{}/items/{id}/files/{}/content", env.alpha, small.id)
    );

    let inline = env.reader.get_file(&env.alpha, &id, &small.id, true).await.unwrap();
    assert_eq!(inline.content.as_deref(), Some(&b"hello file"[..]));
    let bytes = env
        .reader
        .get_file_content(&env.alpha, &id, &files[1].id)
        .await
        .unwrap();
    assert_eq!(bytes.len() as u64, files[1].size);
    assert!(files[1].size > 1024);

    let err = env.reader.list_files(&env.alpha, &id, true).await.unwrap_err();
    assert!(
        matches!(&err, ConnectError::PayloadTooLarge { message, .. } if message.contains("too large to inline")),
        "{err:?}"
    );
    let err = env
        .reader
        .get_file(&env.alpha, &id, &files[1].id, true)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::PayloadTooLarge { .. }));
    let missing = "f".repeat(26);
    let err = env.reader.get_file(&env.alpha, &id, &missing, false).await.unwrap_err();
    assert!(
        matches!(&err, ConnectError::NotFound { message, .. } if *message == format!("file {missing} not found")),
        "{err:?}"
    );

    // The docs' flag name works too, and the content endpoint names the file.
    let base = format!("/v1/vaults/{}/items/{id}/files/{}", env.alpha, small.id);
    let http = reqwest::Client::new();
    let answer: serde_json::Value = http
        .get(env.sim.url().join(&format!("{base}?inline_content=true")).unwrap())
        .bearer_auth("reader-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["content"], "aGVsbG8gZmlsZQ==");
    let response = http
        .get(env.sim.url().join(&format!("{base}/content")).unwrap())
        .bearer_auth("reader-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"small.txt\""
    );
    raw_error(
        &env,
        reqwest::Method::GET,
        &format!("/v1/vaults/{}/items/{id}/files?inline_files=true", env.alpha),
        Some("reader-token"),
        413,
        "too large",
    )
    .await;
}

#[tokio::test]
async fn activity_log_pages_and_records_denials() {
    let env = env().await;
    let id = item_id(&env, "Login One").await;
    env.reader.get_item(&env.alpha, &id).await.unwrap();
    let _ = env.reader.get_vault(&env.beta).await.unwrap_err();
    let page = env.writer.list_activity(Some(2), None).await.unwrap();
    assert_eq!(page.requests.len(), 2);
    let (denied, read) = (&page.requests[0], &page.requests[1]);
    assert_eq!(
        (denied.result.clone(), denied.actor.account.as_str()),
        (Some(ApiResult::Deny), "reader")
    );
    assert_eq!(read.action, Some(ApiAction::Read));
    assert_eq!(read.resource.item.as_ref().unwrap().id, id);
    assert_eq!(read.resource.item_version, 1);
    let total = page.total.unwrap();
    assert_eq!(
        total, 3,
        "list_items, get_item and the denied get_vault are vault activity"
    );
    let rest = env.writer.list_activity(Some(50), Some(1)).await.unwrap();
    assert_eq!(rest.requests.len() as u64, total - 1);
}

#[tokio::test]
async fn health_heartbeat_and_metrics_need_no_token() {
    let env = env().await;
    let anonymous = client_for(&env.sim, "unused", RetryPolicy::none());
    anonymous.heartbeat().await.unwrap();
    let health = anonymous.health().await.unwrap();
    assert_eq!(health.version, "1.8.1");
    assert!(!health.dependencies.is_empty());
    env.reader.list_vaults(None).await.unwrap();
    let metrics = anonymous.server_metrics().await.unwrap();
    assert!(
        metrics.contains(r#"connect_sim_requests_total{operation="list_vaults",status="200"}"#),
        "{metrics}"
    );
    let body = reqwest::get(env.sim.url().join("/heartbeat").unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, ".");
}

#[tokio::test]
async fn unknown_routes_methods_and_trailing_slashes() {
    let env = env().await;
    raw_error(
        &env,
        reqwest::Method::GET,
        "/v1/nothing-here",
        Some("writer-token"),
        404,
        "Route not found",
    )
    .await;
    raw_error(
        &env,
        reqwest::Method::DELETE,
        "/v1/vaults",
        Some("writer-token"),
        405,
        "Method not allowed",
    )
    .await;
    let response = reqwest::Client::new()
        .get(env.sim.url().join("/v1/vaults/").unwrap())
        .bearer_auth("writer-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Vec<serde_json::Value>>().await.unwrap().len(), 2);
}

#[tokio::test]
async fn transient_errors_are_retried_with_backoff() {
    let env = env().await;
    let admin = env.sim.admin();
    admin
        .add_rule(&FaultRule {
            operation: "list_vaults".into(),
            status: Some(500),
            remaining: Some(2),
            ..FaultRule::default()
        })
        .await
        .unwrap();
    let client = client_for(&env.sim, "writer-token", fast_retries());
    assert_eq!(client.list_vaults(None).await.unwrap().len(), 2);
    assert_eq!(client.metrics().count("list_vaults", "500"), 2);
    assert_eq!(client.metrics().count("list_vaults", "200"), 1);

    // 429 with Retry-After: the server's delay wins over the (much shorter) backoff.
    admin
        .add_rule(&FaultRule {
            operation: "get_vault".into(),
            status: Some(429),
            retry_after_secs: Some(1),
            remaining: Some(1),
            ..FaultRule::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    client.get_vault(&env.alpha).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());

    // Without retries the typed error carries Retry-After.
    admin
        .add_rule(&FaultRule {
            operation: "get_vault".into(),
            status: Some(429),
            retry_after_secs: Some(9),
            remaining: Some(1),
            ..FaultRule::default()
        })
        .await
        .unwrap();
    let err = env.writer.get_vault(&env.alpha).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(9)));
}

#[tokio::test]
async fn a_retry_after_holds_for_every_request_of_the_client() {
    let env = env().await;
    let admin = env.sim.admin();
    admin
        .add_rule(&FaultRule {
            operation: "get_vault".into(),
            status: Some(429),
            retry_after_secs: Some(2),
            remaining: Some(1),
            ..FaultRule::default()
        })
        .await
        .unwrap();
    let client = client_for(&env.sim, "writer-token", RetryPolicy::none());
    let started = Instant::now();
    assert!(matches!(
        client.get_vault(&env.alpha).await,
        Err(ConnectError::RateLimited { .. })
    ));
    admin.reset_stats().await.unwrap();
    // Another request of the same client (a clone, as every reconcile holds), to another
    // endpoint: it waits for the time the server named.
    client.clone().list_vaults(None).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "sent {:?} after the 429",
        started.elapsed()
    );
    assert_eq!(admin.stats().await.unwrap().requests.get("list_vaults"), Some(&1));
}

#[tokio::test]
async fn not_ready_and_spurious_auth_answers_are_retried_quickly() {
    let env = env().await;
    let admin = env.sim.admin();
    let client = client_for(&env.sim, "writer-token", fast_retries());
    for (operation, status) in [("get_vault", 408), ("list_vaults", 401), ("list_items", 403)] {
        admin
            .add_rule(&FaultRule {
                operation: operation.into(),
                status: Some(status),
                remaining: Some(1),
                ..FaultRule::default()
            })
            .await
            .unwrap();
    }
    client.get_vault(&env.alpha).await.unwrap();
    client.list_vaults(None).await.unwrap();
    client.list_items(&env.alpha, None).await.unwrap();
    assert!(!client.token_rejected(), "the last answer accepted the token");
    assert_eq!(client.metrics().count("get_vault", "408"), 1);

    // A token that stays rejected is given up on after a few quick tries.
    admin.reset_stats().await.unwrap();
    let bad = client_for(&env.sim, "wrong-token", fast_retries());
    assert!(matches!(
        bad.list_vaults(None).await,
        Err(ConnectError::Unauthorized { .. })
    ));
    assert_eq!(admin.stats().await.unwrap().requests.get("list_vaults"), Some(&3));
    assert!(bad.token_rejected());
}

#[tokio::test]
async fn a_rotated_token_file_is_used_without_a_restart() {
    let env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "revoked-token\n").unwrap();
    let mut config = ConnectConfig::new(env.sim.url(), SecretString::from("revoked-token"));
    config.token_file = Some(file.clone());
    config.retry = fast_retries();
    let client = ConnectClient::new(config).unwrap();
    assert!(matches!(
        client.list_vaults(None).await,
        Err(ConnectError::Unauthorized { .. })
    ));
    assert!(client.token_rejected());
    assert!(!client.reload_token(), "the file did not change");

    // kubelet replaces the mounted file; the next rejected answer reads it again.
    std::fs::write(&file, "writer-token\n").unwrap();
    assert_eq!(client.list_vaults(None).await.unwrap().len(), 2);
    assert!(!client.token_rejected());
    std::fs::write(&file, "reader-token").unwrap();
    assert!(client.reload_token(), "a poll reads the file too");
    assert_eq!(client.list_vaults(None).await.unwrap().len(), 1, "the reader's scope");
}

#[tokio::test]
async fn client_errors_and_unsafe_writes_are_not_retried() {
    let env = env().await;
    let admin = env.sim.admin();
    let client = client_for(&env.sim, "writer-token", fast_retries());
    admin.reset_stats().await.unwrap();
    let _ = client.get_item(&env.alpha, &"q".repeat(26)).await.unwrap_err();
    admin
        .add_rule(&FaultRule {
            operation: "create_item".into(),
            status: Some(500),
            remaining: Some(1),
            ..FaultRule::default()
        })
        .await
        .unwrap();
    let item = FullItem {
        item: Item {
            title: "Once".into(),
            category: Some(Category::Password),
            ..Item::default()
        },
        ..FullItem::default()
    };
    let err = client.create_item(&env.alpha, &item).await.unwrap_err();
    assert!(matches!(err, ConnectError::Server { status: 500, .. }), "{err:?}");
    let stats = admin.stats().await.unwrap();
    assert_eq!(stats.requests.get("get_item"), Some(&1), "404 is final");
    assert_eq!(
        stats.requests.get("create_item"),
        Some(&1),
        "a POST that reached the server is not repeated"
    );
}

#[tokio::test]
async fn outage_latency_and_unreachable_servers() {
    let env = env().await;
    let admin = env.sim.admin();
    admin.set_outage(true).await.unwrap();
    let err = env.writer.heartbeat().await.unwrap_err();
    assert!(matches!(err, ConnectError::Server { status: 503, .. }), "{err:?}");
    assert!(err.is_retryable());
    admin
        .set_faults(&Faults {
            outage: false,
            rules: vec![FaultRule {
                operation: "*".into(),
                latency_ms: Some(300),
                ..FaultRule::default()
            }],
        })
        .await
        .unwrap();
    let started = Instant::now();
    env.writer.heartbeat().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A client timeout shorter than the injected latency is a transport error.
    let mut config = ConnectConfig::new(env.sim.url(), SecretString::from("writer-token"));
    config.timeout = Duration::from_millis(100);
    config.retry = RetryPolicy::none();
    let err = ConnectClient::new(config).unwrap().heartbeat().await.unwrap_err();
    assert!(matches!(err, ConnectError::Transport { .. }), "{err:?}");
    admin.clear_faults().await.unwrap();
    assert_eq!(admin.faults().await.unwrap(), Faults::default());

    let url = env.sim.url();
    env.sim.stop().await;
    let mut config = ConnectConfig::new(url, SecretString::from("writer-token"));
    config.retry = RetryPolicy::none();
    let err = ConnectClient::new(config).unwrap().list_vaults(None).await.unwrap_err();
    assert!(matches!(err, ConnectError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn admin_api_needs_its_token() {
    let env = env().await;
    let stranger = connect_sim::SimAdmin::new(env.sim.url(), "writer-token");
    let err = stranger.stats().await.unwrap_err();
    assert!(err.contains("401"), "{err}");
    let err = env
        .sim
        .admin()
        .add_rule(&FaultRule {
            operation: "get_itme".into(),
            ..FaultRule::default()
        })
        .await
        .unwrap_err();
    assert!(err.contains("unknown operation"), "{err}");
}

#[tokio::test]
async fn titles_and_ids_resolve_with_the_go_rules() {
    let env = env().await;
    let by_name = resolve_vault(&env.reader, "alpha").await.unwrap();
    assert_eq!(by_name.id, env.alpha);
    let by_id = resolve_vault(&env.reader, &env.alpha).await.unwrap();
    assert_eq!((by_id.id.as_str(), by_id.title.as_str()), (env.alpha.as_str(), "Alpha"));
    let err = resolve_vault(&env.reader, "Beta").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    let login = resolve_item(&env.reader, &env.alpha, "LOGIN ONE").await.unwrap();
    assert!(!login.is_ambiguous());
    assert_eq!(
        resolve_item(&env.reader, &env.alpha, &login.id).await.unwrap().id,
        login.id
    );
    // A 26-character title looks like an id: the id lookup fails, the title lookup wins.
    let id_like = resolve_item(&env.reader, &env.alpha, "abcdefghijklmnopqrstuvwxyz")
        .await
        .unwrap();
    assert_eq!(id_like.title, "abcdefghijklmnopqrstuvwxyz");
    let twin = resolve_item(&env.reader, &env.alpha, "Twin").await.unwrap();
    assert_eq!(twin.also_matched.len(), 1, "ambiguity is reported");
    let err = resolve_item(&env.reader, &env.alpha, "Nothing").await.unwrap_err();
    assert!(err.is_not_found());
}
