//! Several Connect servers in one cluster: tenants name their own connection
//! (`OnePasswordConnect`) or a shared one (`ClusterOnePasswordConnect`) in `spec.connectRef`.
//! Two simulators hold different vaults; one operator, without a connection of its own,
//! serves both tenants.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_sim::{self as sim, RunningSimulator, SimConfig};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use onepassword_operator::connect::RetryPolicy;
use onepassword_operator::connect::models::PatchOp;
use onepassword_operator::connections::resource::{
    ClusterOnePasswordConnect, ClusterOnePasswordConnectSpec, ConnectionReference, NamespacedSecretKeyRef,
    OnePasswordConnect, OnePasswordConnectSpec, SecretKeyRef,
};
use onepassword_operator::controller::{Context, Settings};
use onepassword_operator::crd::{OnePasswordItem, OnePasswordItemSpec};
use onepassword_operator::metrics::Metrics;
use onepassword_operator::wiring;
use serde_json::json;
use support::harness::{ReadyReasons, condition, connect_client, sim_data, value};
use support::wait_for;

const POLL: Duration = Duration::from_secs(1);

fn vault(name: &str, password: &str) -> String {
    format!(
        r#"
vaults:
  - name: {name}
    items:
      - {{ title: Database, fields: [{{ label: password, value: {password} }}] }}
"#
    )
}

/// Two simulators (`Alpha` holds vault Alpha, `Beta` vault Beta), two tenant namespaces, and
/// an operator watching both without a Connect server of its own.
struct Tenants {
    alpha: RunningSimulator,
    beta: RunningSimulator,
    kube: kube::Client,
    a: String,
    b: String,
    ctx: Arc<Context>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tenants {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tenants(prefix: &str) -> Option<Tenants> {
    // OPO_TEST_LOG=onepassword_operator=debug shows the operator's log.
    if let Ok(filter) = std::env::var("OPO_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let cluster = support::cluster()?;
    let kube = cluster.admin_client().unwrap();
    let alpha = sim::start(
        SimConfig::new(sim_data(&vault("Alpha", "alpha-1"))),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let beta = sim::start(
        SimConfig::new(sim_data(&vault("Beta", "beta-1"))),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let a = support::namespace(&kube, &format!("{prefix}-a")).await;
    let b = support::namespace(&kube, &format!("{prefix}-b")).await;
    let settings = Settings {
        namespaces: vec![a.clone(), b.clone()],
        polling_interval: POLL,
        ..Settings::default()
    };
    let ctx = Arc::new(Context::new(kube.clone(), None, settings, Arc::new(Metrics::default())));
    let task = tokio::spawn(wiring::run(ctx.clone()));
    Some(Tenants {
        alpha,
        beta,
        kube,
        a,
        b,
        ctx,
        task,
    })
}

impl Tenants {
    async fn token_secret(&self, namespace: &str, name: &str, token: &str) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "token".to_owned(),
                ByteString(token.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        };
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        api.patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(
                &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": secret.data}),
            ),
        )
        .await
        .unwrap();
    }

    /// A OnePasswordConnect `name` in `namespace` for `sim`, its token in Secret `<name>-token`.
    async fn connection(&self, namespace: &str, name: &str, sim: &RunningSimulator, token: &str) {
        self.token_secret(namespace, &format!("{name}-token"), token).await;
        let connection = OnePasswordConnect::new(
            name,
            OnePasswordConnectSpec {
                host: sim.url().to_string(),
                token_secret_ref: SecretKeyRef {
                    name: format!("{name}-token"),
                    key: "token".into(),
                },
                ca_bundle_secret_ref: None,
            },
        );
        let api: Api<OnePasswordConnect> = Api::namespaced(self.kube.clone(), namespace);
        api.create(&PostParams::default(), &connection).await.unwrap();
    }

    async fn item(&self, namespace: &str, name: &str, path: &str, connect_ref: Option<ConnectionReference>) {
        let mut opi = OnePasswordItem::new(name, OnePasswordItemSpec::item(path));
        opi.spec.connect_ref = connect_ref.map(Box::new);
        let api: Api<OnePasswordItem> = Api::namespaced(self.kube.clone(), namespace);
        api.create(&PostParams::default(), &opi).await.unwrap();
    }

    async fn password(&self, namespace: &str, name: &str) -> Option<String> {
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        api.get_opt(name).await.unwrap().and_then(|s| value(&s, "password"))
    }

    async fn wait_password(&self, namespace: &str, name: &str, expected: &str, timeout: Duration) {
        wait_for(&format!("{namespace}/{name} holds {expected}"), timeout, async || {
            (self.password(namespace, name).await.as_deref() == Some(expected)).then_some(())
        })
        .await
    }

    /// Waits until the item's Ready condition has `reason`; returns its message.
    async fn ready_reason(&self, namespace: &str, name: &str, reason: &str) -> String {
        let api: Api<OnePasswordItem> = Api::namespaced(self.kube.clone(), namespace);
        wait_for(
            &format!("{namespace}/{name} Ready reason {reason}"),
            Duration::from_secs(20),
            async || {
                let opi = api.get(name).await.unwrap();
                let ready = condition(&opi, "Ready")?;
                (ready.reason.as_deref() == Some(reason)).then(|| ready.message.clone().unwrap_or_default())
            },
        )
        .await
    }

    async fn connection_ready(&self, namespace: &str, name: &str, reason: &str) -> OnePasswordConnect {
        let api: Api<OnePasswordConnect> = Api::namespaced(self.kube.clone(), namespace);
        wait_for(
            &format!("OnePasswordConnect {namespace}/{name} {reason}"),
            Duration::from_secs(20),
            async || {
                let connection = api.get(name).await.unwrap();
                let matches = connection.status.as_ref()?.ready()?.reason == reason;
                matches.then_some(connection)
            },
        )
        .await
    }
}

async fn set_password(sim: &RunningSimulator, vault: &str, password: &str) {
    let writer = connect_client(sim, "writer-token", RetryPolicy::none());
    let vault_id = writer
        .list_vaults(None)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.name == vault)
        .unwrap()
        .id;
    let item = &writer.list_items(&vault_id, None).await.unwrap()[0];
    let full = writer.get_item(&vault_id, &item.id).await.unwrap();
    let field = full.fields.iter().find(|f| f.label == "password").unwrap();
    let op = PatchOp::replace(format!("/fields/{}/value", field.id), json!(password));
    writer.patch_item(&vault_id, &item.id, &[op]).await.unwrap();
}

fn named(name: &str) -> Option<ConnectionReference> {
    Some(ConnectionReference {
        kind: None,
        name: name.into(),
    })
}

fn cluster_named(name: &str) -> Option<ConnectionReference> {
    Some(ConnectionReference {
        kind: Some("ClusterOnePasswordConnect".into()),
        name: name.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_sync_from_their_own_connect_servers_and_report_them() {
    let Some(t) = tenants("tenants").await else { return };
    t.connection(&t.a, "team", &t.alpha, "op-token").await;
    t.connection(&t.b, "team", &t.beta, "op-token").await;
    t.item(&t.a, "db", "vaults/Alpha/items/Database", named("team")).await;
    t.item(&t.b, "db", "vaults/Beta/items/Database", named("team")).await;
    t.wait_password(&t.a, "db", "alpha-1", Duration::from_secs(20)).await;
    t.wait_password(&t.b, "db", "beta-1", Duration::from_secs(20)).await;

    // Each connection reports its server and what its token reads.
    let a = t.connection_ready(&t.a, "team", "Connected").await;
    let status = a.status.unwrap();
    assert_eq!(status.vaults, Some(1));
    assert!(status.server_version.is_some_and(|v| !v.is_empty()));
    assert_eq!(status.token_expires_at, None, "the simulator's tokens carry no expiry");

    // A change in Alpha reaches tenant A only, through A's own poller.
    set_password(&t.alpha, "Alpha", "alpha-2").await;
    t.wait_password(&t.a, "db", "alpha-2", POLL * 2 + Duration::from_secs(5))
        .await;
    assert_eq!(t.password(&t.b, "db").await.as_deref(), Some("beta-1"));
    assert!(
        t.ctx
            .metrics()
            .connection_poll_count(&format!("OnePasswordConnect/{}/team", t.a))
            > 0
    );
    // Each connection's Connect requests are counted under its own name.
    let metrics = t.ctx.metrics().encode();
    for namespace in [&t.a, &t.b] {
        let series = format!(
            r#"onepassword_operator_connect_requests_total{{endpoint="get_item",status="200",connection="OnePasswordConnect/{namespace}/team"}}"#
        );
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaced_connection_serves_only_its_own_namespace() {
    let Some(t) = tenants("own-ns").await else { return };
    t.connection(&t.a, "team-a", &t.alpha, "op-token").await;
    t.item(&t.a, "db", "vaults/Alpha/items/Database", named("team-a")).await;
    t.wait_password(&t.a, "db", "alpha-1", Duration::from_secs(20)).await;
    // B names A's connection: it is not B's, so it does not exist for B.
    t.item(&t.b, "stolen", "vaults/Alpha/items/Database", named("team-a"))
        .await;
    let message = t.ready_reason(&t.b, "stolen", "ConnectionNotFound").await;
    assert!(
        message.contains(&format!("OnePasswordConnect/{}/team-a does not exist", t.b)),
        "{message}"
    );
    assert_eq!(t.password(&t.b, "stolen").await, None, "no Secret is made");
    let events: Api<Event> = Api::namespaced(t.kube.clone(), &t.b);
    wait_for(
        "a ConnectionNotFound Warning Event",
        Duration::from_secs(10),
        async || {
            let all = events.list(&Default::default()).await.unwrap().items;
            all.into_iter()
                .find(|e| e.reason.as_deref() == Some("ConnectionNotFound") && e.type_.as_deref() == Some("Warning"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_connection_of_its_own_an_item_without_connect_ref_says_so() {
    let Some(t) = tenants("no-own").await else { return };
    t.item(&t.a, "db", "vaults/Alpha/items/Database", None).await;
    let message = t.ready_reason(&t.a, "db", "NoConnection").await;
    assert!(message.contains("connectRef"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_connection_admits_only_the_namespaces_it_selects() {
    let Some(t) = tenants("shared").await else { return };
    let label = format!("tenant-{}", &t.a[t.a.len() - 6..]);
    let namespaces: Api<Namespace> = Api::all(t.kube.clone());
    namespaces
        .patch(
            &t.a,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {label.clone(): "true"}}})),
        )
        .await
        .unwrap();
    t.token_secret(&t.a, "shared-token", "op-token").await;
    let name = format!("shared-{}", &t.a[t.a.len() - 6..]);
    let shared = ClusterOnePasswordConnect::new(
        &name,
        ClusterOnePasswordConnectSpec {
            host: t.beta.url().to_string(),
            token_secret_ref: NamespacedSecretKeyRef {
                namespace: t.a.clone(),
                name: "shared-token".into(),
                key: "token".into(),
            },
            ca_bundle_secret_ref: None,
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(label.clone(), "true".to_owned())])),
                ..LabelSelector::default()
            }),
        },
    );
    let api: Api<ClusterOnePasswordConnect> = Api::all(t.kube.clone());
    api.create(&PostParams::default(), &shared).await.unwrap();
    t.item(&t.a, "db", "vaults/Beta/items/Database", cluster_named(&name))
        .await;
    t.item(&t.b, "db", "vaults/Beta/items/Database", cluster_named(&name))
        .await;
    t.wait_password(&t.a, "db", "beta-1", Duration::from_secs(20)).await;
    let message = t.ready_reason(&t.b, "db", "ConnectionNotAllowed").await;
    assert!(message.contains("does not select it"), "{message}");
    assert_eq!(t.password(&t.b, "db").await, None);

    // Widening the selector lets B in at once: the resources naming it are reconciled.
    let every_namespace = json!({"spec": {"namespaceSelector": {"matchLabels": null}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&every_namespace))
        .await
        .unwrap();
    t.wait_password(&t.b, "db", "beta-1", Duration::from_secs(20)).await;
    // No selector at all admits no namespace.
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"namespaceSelector": null}})),
    )
    .await
    .unwrap();
    let message = t.ready_reason(&t.b, "db", "ConnectionNotAllowed").await;
    assert!(message.contains("absent"), "{message}");
    assert_eq!(
        t.password(&t.b, "db").await.as_deref(),
        Some("beta-1"),
        "the Secret is kept"
    );
    api.delete(&name, &Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rotated_in_its_secret_is_used_without_a_restart() {
    let Some(t) = tenants("rotate").await else { return };
    t.connection(&t.a, "team", &t.alpha, "wrong-token").await;
    let connection = t.connection_ready(&t.a, "team", "Unauthorized").await;
    let message = connection.status.unwrap().ready().unwrap().message.clone();
    assert!(!message.contains("wrong-token"), "the token is never shown: {message}");
    t.item(&t.a, "db", "vaults/Alpha/items/Database", named("team")).await;
    t.ready_reason(&t.a, "db", "ConnectUnauthorized").await;

    let rotated = Instant::now();
    t.token_secret(&t.a, "team-token", "op-token").await;
    t.wait_password(&t.a, "db", "alpha-1", Duration::from_secs(15)).await;
    eprintln!("rotated token in use after {:?}", rotated.elapsed());
    t.connection_ready(&t.a, "team", "Connected").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_outage_does_not_delay_another() {
    let Some(t) = tenants("outage").await else { return };
    t.connection(&t.a, "team", &t.alpha, "op-token").await;
    t.connection(&t.b, "team", &t.beta, "op-token").await;
    t.item(&t.a, "db", "vaults/Alpha/items/Database", named("team")).await;
    t.item(&t.b, "db", "vaults/Beta/items/Database", named("team")).await;
    t.wait_password(&t.a, "db", "alpha-1", Duration::from_secs(20)).await;
    t.wait_password(&t.b, "db", "beta-1", Duration::from_secs(20)).await;

    let propagation = async |value: &str| {
        let changed = Instant::now();
        set_password(&t.alpha, "Alpha", value).await;
        t.wait_password(&t.a, "db", value, Duration::from_secs(30)).await;
        changed.elapsed()
    };
    let healthy = propagation("alpha-2").await;
    t.beta.admin().set_outage(true).await.unwrap();
    t.connection_ready(&t.b, "team", "Unreachable").await;
    let during_outage = propagation("alpha-3").await;
    eprintln!("A's propagation: {healthy:?} with B healthy, {during_outage:?} with B down");
    // Each poller waits only on its own server: A's change takes at most a poll and a sync.
    assert!(during_outage <= POLL * 2 + Duration::from_secs(2), "{during_outage:?}");
    assert_eq!(
        t.password(&t.b, "db").await.as_deref(),
        Some("beta-1"),
        "B's Secret is kept"
    );
    t.beta.admin().set_outage(false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_connection_is_waited_for_and_a_deleted_one_reported() {
    let Some(t) = tenants("replace").await else { return };
    t.connection(&t.a, "team", &t.alpha, "op-token").await;
    t.item(&t.a, "db", "vaults/Alpha/items/Database", named("team")).await;
    t.wait_password(&t.a, "db", "alpha-1", Duration::from_secs(20)).await;
    let items: Api<OnePasswordItem> = Api::namespaced(t.kube.clone(), &t.a);
    let reasons = ReadyReasons::watch(&items, "db");

    // Deleted and created again (as Helm replaces a hook): the item is reconciled in between
    // (its Secret deleted by hand) and waits for the connection instead of saying it is gone.
    let connections: Api<OnePasswordConnect> = Api::namespaced(t.kube.clone(), &t.a);
    connections.delete("team", &Default::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    Api::<Secret>::namespaced(t.kube.clone(), &t.a)
        .delete("db", &Default::default())
        .await
        .unwrap();
    tokio::time::sleep(POLL + Duration::from_millis(500)).await;
    t.connection(&t.a, "team", &t.alpha, "op-token").await;
    t.wait_password(&t.a, "db", "alpha-1", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = reasons.stop();
    assert!(
        !seen.iter().any(|r| r == "ConnectionNotFound"),
        "a replaced connection is not reported gone: {seen:?}"
    );

    // Deleted for good: reported once the grace for a replacement is over; the Secret is kept.
    let deleted = Instant::now();
    connections.delete("team", &Default::default()).await.unwrap();
    wait_for("ConnectionNotFound", Duration::from_secs(30), async || {
        let ready = condition(&items.get("db").await.unwrap(), "Ready")?.clone();
        (ready.reason.as_deref() == Some("ConnectionNotFound")).then_some(())
    })
    .await;
    eprintln!("a deleted connection reported after {:?}", deleted.elapsed());
    assert_eq!(t.password(&t.a, "db").await.as_deref(), Some("alpha-1"));
}
