//! A Connect-compatible simulator: the whole Connect API over HTTP, backed by an in-memory
//! store loaded from a YAML data file, with runtime fault injection. It serves the
//! project's tests, benchmarks and demo; no 1Password account needed.

pub mod activity;
pub mod admin;
pub mod auth;
pub mod data;
pub mod error;
pub mod faults;
pub mod filter;
pub mod generate;
pub mod patch;
pub mod routes;
pub mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::ServiceExt;
use axum::serve::ListenerExt as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::Layer as _;
use tower_http::normalize_path::NormalizePathLayer;

pub use admin::SimAdmin;
pub use data::DataFile;

use activity::ActivityLog;
use auth::Tokens;
use faults::Faults;
use routes::OPERATIONS;
use store::Store;

/// Default admin token of the `/__sim` API.
pub const DEFAULT_ADMIN_TOKEN: &str = "sim-admin-token";

/// How to build a simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub data: DataFile,
    /// Directory that relative file paths of the data are read from.
    pub base_dir: PathBuf,
    pub admin_token: String,
    /// Largest file served inline (`OP_MAX_INLINE_FILE_SIZE_KB` on a real server).
    pub max_inline_file_size_kb: u64,
}

impl SimConfig {
    pub fn new(data: DataFile) -> Self {
        Self {
            data,
            base_dir: PathBuf::from("."),
            admin_token: DEFAULT_ADMIN_TOKEN.into(),
            max_inline_file_size_kb: 100,
        }
    }
}

/// Requests per operation, as counted by the simulator: the ground truth for cost tests.
#[derive(Debug, Default)]
pub struct Stats {
    counts: [AtomicU64; OPERATIONS.len()],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    pub total: u64,
    pub requests: BTreeMap<String, u64>,
}

impl Stats {
    pub fn count(&self, operation: &str) {
        if let Some(i) = OPERATIONS.iter().position(|o| *o == operation) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let requests: BTreeMap<String, u64> = OPERATIONS
            .iter()
            .zip(&self.counts)
            .map(|(op, c)| ((*op).to_owned(), c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        StatsSnapshot {
            total: requests.values().sum(),
            requests,
        }
    }

    pub fn reset(&self) {
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    status: u16,
}

/// The simulator's own `/metrics`.
#[derive(Debug)]
pub struct SimMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
}

impl Default for SimMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "connect_sim_requests",
            "API requests served, by operation and status",
            requests.clone(),
        );
        Self { registry, requests }
    }
}

impl SimMetrics {
    pub fn record(&self, operation: &'static str, status: u16) {
        self.requests.get_or_create(&RequestLabels { operation, status }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("metrics encode");
        out
    }
}

/// Shared state of a running simulator.
#[derive(Debug)]
pub struct SimState {
    pub store: RwLock<Store>,
    pub tokens: Tokens,
    pub admin_token: String,
    pub faults: Mutex<Faults>,
    pub activity: Mutex<ActivityLog>,
    pub stats: Stats,
    pub metrics: SimMetrics,
    pub inline_limit_bytes: u64,
}

impl SimState {
    pub fn new(config: &SimConfig) -> Result<Self, String> {
        let store = Store::from_data(&config.data, &config.base_dir)?;
        let tokens = Tokens::from_specs(&config.data.tokens, |name| store.vault_id_of(name))?;
        if config.admin_token.trim().is_empty() {
            return Err("the admin token must not be empty".into());
        }
        Ok(Self {
            store: RwLock::new(store),
            tokens,
            admin_token: config.admin_token.clone(),
            faults: Mutex::new(Faults::default()),
            activity: Mutex::new(ActivityLog::default()),
            stats: Stats::default(),
            metrics: SimMetrics::default(),
            inline_limit_bytes: config.max_inline_file_size_kb * 1024,
        })
    }
}

/// A simulator serving in the background; stopped on `stop` or drop.
pub struct RunningSimulator {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSimulator {
    /// `http://{addr}`, the value for `OP_CONNECT_HOST`.
    pub fn url(&self) -> url::Url {
        format!("http://{}", self.addr).parse().expect("socket address URL")
    }

    /// A client for this simulator's admin API.
    pub fn admin(&self) -> SimAdmin {
        SimAdmin::new(self.url(), self.state.admin_token.clone())
    }

    /// Stops accepting connections and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Runs until the process is interrupted (Ctrl-C or SIGTERM).
    pub async fn serve_until_signal(mut self) -> std::io::Result<()> {
        shutdown_signal().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Binds `listen` (port 0 picks a free port) and serves in a background task.
pub async fn start(config: SimConfig, listen: SocketAddr) -> Result<RunningSimulator, String> {
    let state = Arc::new(SimState::new(&config)?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Small responses on kept-alive connections: Nagle would add 40 ms stalls.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // Clients send trailing slashes (`/v1/vaults/`); route them like the bare paths.
    let app = NormalizePathLayer::trim_trailing_slash().layer(routes::router(state.clone()));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, ServiceExt::<axum::extract::Request>::into_make_service(app))
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    Ok(RunningSimulator {
        addr,
        state,
        shutdown: Some(tx),
        task: Some(task),
    })
}
