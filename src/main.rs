//! Command line of onepassword-operator. Every setting has an environment fallback.

use std::process::ExitCode;

use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use onepassword_operator::cli::ConnectArgs;
use onepassword_operator::connect::ConnectClient;
use onepassword_operator::controller::{Context, MappingOptions, Settings, load_or_create_key};
use onepassword_operator::metrics::Metrics;
use onepassword_operator::telemetry::{self, LogFormat};
use onepassword_operator::{server, wiring};

/// jemalloc fragments less than glibc's allocator (and far less than musl's, in the image)
/// under many small allocations made and freed across threads: at 10,000 resources, peak RSS
/// 85 -> 75 MiB and operator CPU per resource 1.14 -> 0.84 ms (benches/operator.rs).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "onepassword-operator",
    version,
    about = "Keeps Kubernetes Secrets in sync with 1Password items"
)]
struct Cli {
    #[command(flatten)]
    logging: Logging,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Logging {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log level or filter directives (e.g. `info`, `onepassword_operator=debug`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    log_level: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator: sync OnePasswordItems into Secrets.
    Run(RunArgs),
    /// Print a CustomResourceDefinition as YAML: OnePasswordItem's unless another is named.
    Crd {
        /// Print it as the Helm chart's template instead.
        #[arg(long)]
        helm: bool,
        /// The CRD: onepassworditems, onepasswordconnects or clusteronepasswordconnects.
        #[arg(default_value = "onepassworditems")]
        name: String,
    },
    /// Check that a Connect host and token work, and optionally resolve an item path.
    ConnectCheck(ConnectCheckArgs),
    /// Print the Secret each OnePasswordItem of a manifest would get from Connect now (values
    /// masked), or the reason the operator would report instead. Exits 1 if any would fail.
    Render(RenderArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Namespaces to watch, comma-separated; empty watches all.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "", value_delimiter = ',')]
    watch_namespace: Vec<String>,
    /// Seconds between change-detection polls. Each poll costs one Connect call per
    /// referenced vault, whatever the number of items.
    #[arg(long, env = "POLLING_INTERVAL", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    polling_interval: u64,
    /// Restart workloads whose Secret changed, unless an annotation says otherwise.
    #[arg(long, env = "AUTO_RESTART", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    auto_restart: bool,
    /// Copy each OnePasswordItem's annotations onto its Secret (except kubectl.kubernetes.io/*
    /// and operator.1password.io/*), as 1Password's Go operator does with this flag.
    #[arg(long, env = "ENABLE_ANNOTATIONS", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    enable_annotations: bool,
    /// Sync Secrets for Deployments, StatefulSets and DaemonSets annotated with
    /// operator.1password.io/item-path and item-name (always on in the Go operator).
    #[arg(long, env = "ANNOTATED_WORKLOADS", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = true)]
    annotated_workloads: bool,
    /// Keep fields whose value is empty (as empty Secret keys).
    #[arg(long, env = "ALLOW_EMPTY_VALUES", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    allow_empty_values: bool,
    /// Reconciles running at once.
    #[arg(long, env = "OP_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Where `/metrics` is served.
    #[arg(long, env = "METRICS_BIND_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_bind_address: std::net::SocketAddr,
    /// Where `/healthz` and `/readyz` are served.
    #[arg(long, env = "HEALTH_PROBE_BIND_ADDRESS", default_value = "0.0.0.0:8081")]
    health_probe_bind_address: std::net::SocketAddr,
    /// Elect a leader through a Lease, so that only one of several replicas writes.
    #[arg(long, env = "LEADER_ELECT", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    leader_elect: bool,
    /// The operator's own namespace: where the leader Lease and the digest key Secret are.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "LEADER_ELECTION_LEASE", default_value = "onepassword-operator")]
    leader_election_lease: String,
    /// Seconds a leader holds the Lease without renewing it; the longest failover after a crash.
    #[arg(long, env = "LEADER_ELECTION_LEASE_DURATION", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    leader_election_lease_duration: u64,
    /// Secret in the operator's namespace (POD_NAMESPACE) that keeps the key of the digests
    /// written on Secrets, made on the first start. With it, a restart reads from Connect only
    /// the items that changed; empty turns digests off.
    #[arg(long, env = "DIGEST_KEY_SECRET", default_value = "onepassword-operator-digest-key")]
    digest_key_secret: String,
    /// Manage only the OnePasswordItems, and annotated workloads, that match this label
    /// selector (`shard=a`, `team in (a,b)`), so that several installs split a cluster.
    #[arg(long, env = "LABEL_SELECTOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    label_selector: Option<String>,
    /// This replica's identity in the Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
}

#[derive(Args, Debug)]
struct ConnectCheckArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// An item to resolve, as in a OnePasswordItem: vaults/<vault>/items/<item>.
    #[arg(long)]
    item_path: Option<String>,
}

#[derive(Args, Debug)]
struct RenderArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The manifest: a YAML file of one or more documents, or `-` for standard input.
    #[arg(short = 'f', long = "filename")]
    file: std::path::PathBuf,
    /// Print the values (as stringData where they are text) instead of their sizes.
    #[arg(long)]
    show_values: bool,
    /// Namespace of objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// As the operator's flag: keep fields whose value is empty.
    #[arg(long, env = "ALLOW_EMPTY_VALUES", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    allow_empty_values: bool,
    /// As the operator's flag: copy the OnePasswordItem's annotations onto the Secret.
    #[arg(long, env = "ENABLE_ANNOTATIONS", action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    enable_annotations: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = telemetry::init(cli.logging.log_format, &cli.logging.log_level) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::ConnectCheck(args) => connect_check(args).await,
        Command::Render(args) => render(args).await,
        Command::Crd { helm, name } => match onepassword_operator::crd_named(&name) {
            Some(crd) if helm => {
                print!("{}", onepassword_operator::crd::helm_template_of(&crd));
                Ok(())
            }
            Some(crd) => {
                print!("{}", onepassword_operator::crd::yaml_of(&crd));
                Ok(())
            }
            None => Err(format!(
                "no CRD named {name:?}: onepassworditems, onepasswordconnects or clusteronepasswordconnects"
            )),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `connect-check` and `render` need a host: without one, a usage error (exit 2) as clap
/// gives for any missing argument. Only `run` may go without.
fn require_host(connect: &ConnectArgs) {
    if connect.host.is_none() {
        use clap::CommandFactory;
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "the Connect host is required: --connect-host <URL> (or OP_CONNECT_HOST)",
            )
            .exit();
    }
}

async fn connect_check(args: ConnectCheckArgs) -> Result<(), String> {
    require_host(&args.connect);
    let client = ConnectClient::new(args.connect.to_config()?).map_err(|e| onepassword_operator::error_chain(&e))?;
    let report = onepassword_operator::check::connect_check(&client, args.item_path.as_deref()).await?;
    print!("{report}");
    Ok(())
}

async fn render(args: RenderArgs) -> Result<(), String> {
    require_host(&args.connect);
    let manifest = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read standard input: {e}"))?
    } else {
        std::fs::read_to_string(&args.file).map_err(|e| format!("cannot read {}: {e}", args.file.display()))?
    };
    let client = ConnectClient::new(args.connect.to_config()?).map_err(|e| onepassword_operator::error_chain(&e))?;
    let options = onepassword_operator::render::RenderOptions {
        show_values: args.show_values,
        mapping: MappingOptions {
            allow_empty_values: args.allow_empty_values,
        },
        copy_annotations: args.enable_annotations,
        namespace: args.namespace,
    };
    let rendered = onepassword_operator::render::render(&client, &manifest, &options).await?;
    print!("{}", rendered.yaml);
    for warning in &rendered.warnings {
        eprintln!("warning: {warning}");
    }
    match rendered.errors.len() {
        0 => Ok(()),
        _ => Err(rendered.errors.join("\nerror: ")),
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    let metrics = Arc::new(Metrics::default());
    let connect = if args.connect.is_given() {
        let config = args.connect.to_config()?;
        Some(
            ConnectClient::with_metrics(config, metrics.connect.clone())
                .map_err(|e| onepassword_operator::error_chain(&e))?,
        )
    } else {
        tracing::info!("no Connect host of the operator's own: only OnePasswordItems with a connectRef are synced");
        None
    };
    onepassword_operator::connect::client::install_crypto_provider();
    let client = kube::Client::try_default().await.map_err(|e| {
        format!(
            "cannot configure the Kubernetes client (in-cluster or KUBECONFIG): {}",
            onepassword_operator::error_chain(&e)
        )
    })?;
    let namespaces: Vec<String> = args
        .watch_namespace
        .into_iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    if let Some(selector) = &args.label_selector {
        onepassword_operator::check_label_selector(&client, namespaces.first().map(String::as_str), selector).await?;
    }
    let digest_key = if args.digest_key_secret.is_empty() {
        None
    } else {
        match load_or_create_key(&client, &args.leader_election_namespace, &args.digest_key_secret).await {
            Ok(key) => Some(key),
            Err(message) => {
                tracing::warn!(error = %message, "no digest key: after a restart, every item is read from Connect again");
                None
            }
        }
    };
    let settings = Settings {
        namespaces,
        polling_interval: Duration::from_secs(args.polling_interval),
        mapping: MappingOptions {
            allow_empty_values: args.allow_empty_values,
        },
        concurrency: args.concurrency,
        auto_restart: args.auto_restart,
        annotated_workloads: args.annotated_workloads,
        copy_annotations: args.enable_annotations,
        digest_key,
        label_selector: args.label_selector,
        connect_timeout: Duration::from_secs(args.connect.timeout_secs.max(1)),
        ..Settings::default()
    };
    tracing::info!(namespaces = ?settings.namespaces, interval = ?settings.polling_interval, label_selector = ?settings.label_selector, "starting the OnePasswordItem controller");
    let ctx = Arc::new(Context::new(client, connect, settings, metrics));
    let metrics_addr = server::serve(args.metrics_bind_address, server::metrics_router(ctx.clone())).await?;
    let probes_addr = server::serve(args.health_probe_bind_address, server::probes_router(ctx.clone())).await?;
    tracing::info!(%metrics_addr, %probes_addr, "serving /metrics, /healthz and /readyz");
    if !args.leader_elect {
        wiring::run(ctx).await;
        return Ok(());
    }
    let identity = args.pod_name.unwrap_or_else(|| {
        use rand::distr::{Alphanumeric, SampleString};
        format!(
            "onepassword-operator-{}",
            Alphanumeric.sample_string(&mut rand::rng(), 12).to_lowercase()
        )
    });
    let election = onepassword_operator::leader::Election {
        namespace: args.leader_election_namespace,
        lease_name: args.leader_election_lease,
        identity,
        lease_duration: Duration::from_secs(args.leader_election_lease_duration),
    };
    ctx.set_standby(true);
    let on_leader = {
        let ctx = ctx.clone();
        move || ctx.set_standby(false)
    };
    onepassword_operator::leader::run_as_leader(ctx.client().clone(), election, on_leader, wiring::run(ctx.clone()))
        .await
}
