//! The operator's Prometheus metrics, in one registry.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::connect::ConnectMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `ok`, or the error's metric label (`item_not_found`, `server_error`, …).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PollLabels {
    /// `ok`, or `error` when a vault could not be checked.
    pub result: &'static str,
    /// `operator`, `OnePasswordConnect/<namespace>/<name>` or `ClusterOnePasswordConnect/<name>`.
    pub connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `OnePasswordConnect/<namespace>/<name>` or `ClusterOnePasswordConnect/<name>`.
    pub connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// `in_sync` (Ready=True and Synced not False) or `out_of_sync`.
    pub state: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub connect: ConnectMetrics,
    pub polls: Family<PollLabels, Counter>,
    pub poll_duration: Histogram,
    pub resources: Family<ResourceLabels, Gauge>,
    pub connection_ready: Family<ConnectionLabels, Gauge>,
    pub connection_token_expiry: Family<ConnectionLabels, Gauge>,
    pub last_successful_sync: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub last_successful_poll: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("onepassword_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of OnePasswordItems, by result",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        let connect = ConnectMetrics::default();
        connect.register(&mut registry);
        let polls = Family::<PollLabels, Counter>::default();
        registry.register("polls", "Change-detection polls, by result", polls.clone());
        let poll_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "poll_duration_seconds",
            "Time one change-detection poll took",
            poll_duration.clone(),
        );
        let resources = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "resources",
            "OnePasswordItems by whether their Secret matches the item",
            resources.clone(),
        );
        let connection_ready = Family::<ConnectionLabels, Gauge>::default();
        registry.register(
            "connection_ready",
            "1 while a connection resource's Connect server accepts its token, else 0",
            connection_ready.clone(),
        );
        let connection_token_expiry = Family::<ConnectionLabels, Gauge>::default();
        registry.register(
            "connection_token_expiry_timestamp_seconds",
            "When a connection resource's Connect token expires (Unix time), for tokens that carry an expiry",
            connection_token_expiry.clone(),
        );
        let last_successful_sync = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "last_successful_sync_timestamp_seconds",
            "When a reconcile last succeeded (Unix time)",
            last_successful_sync.clone(),
        );
        let last_successful_poll = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "last_successful_poll_timestamp_seconds",
            "When a change-detection poll last checked every vault (Unix time)",
            last_successful_poll.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            connect,
            polls,
            poll_duration,
            resources,
            connection_ready,
            connection_token_expiry,
            last_successful_sync,
            last_successful_poll,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, result: &'static str, took: Duration) {
        self.reconciles.get_or_create(&ReconcileLabels { result }).inc();
        self.reconcile_duration.observe(took.as_secs_f64());
        if result == "ok" {
            self.last_successful_sync.set(unix_now());
        }
    }

    /// A change-detection poll; `checked_every_vault` is false when a vault could not be read.
    pub fn polled(&self, connection: &str, checked_every_vault: bool, took: Duration) {
        let result = if checked_every_vault { "ok" } else { "error" };
        let connection = connection.to_owned();
        self.polls.get_or_create(&PollLabels { result, connection }).inc();
        self.poll_duration.observe(took.as_secs_f64());
        if checked_every_vault {
            self.last_successful_poll.set(unix_now());
        }
    }

    /// Polls of the operator's own connection.
    pub fn poll_count(&self) -> u64 {
        self.connection_poll_count("operator")
    }

    /// Polls of one connection, by its `connection` label.
    pub fn connection_poll_count(&self, connection: &str) -> u64 {
        // One statement each: a Family guard held across a second `get_or_create` of a new
        // label would deadlock on the family's lock.
        let labels = |result| PollLabels {
            result,
            connection: connection.to_owned(),
        };
        let ok = self.polls.get_or_create(&labels("ok")).get();
        let failed = self.polls.get_or_create(&labels("error")).get();
        ok + failed
    }

    pub fn set_connection_ready(&self, connection: &str, ready: bool) {
        let labels = ConnectionLabels {
            connection: connection.to_owned(),
        };
        self.connection_ready.get_or_create(&labels).set(i64::from(ready));
    }

    pub fn set_token_expiry(&self, connection: &str, unix_seconds: i64) {
        let labels = ConnectionLabels {
            connection: connection.to_owned(),
        };
        self.connection_token_expiry.get_or_create(&labels).set(unix_seconds);
    }

    /// Drops the gauges of a connection resource that is gone.
    pub fn forget_connection(&self, connection: &str) {
        let labels = ConnectionLabels {
            connection: connection.to_owned(),
        };
        self.connection_ready.remove(&labels);
        self.connection_token_expiry.remove(&labels);
    }

    /// Sets how many of the `total` resources are in sync.
    pub fn set_resources(&self, in_sync: usize, total: usize) {
        self.resources
            .get_or_create(&ResourceLabels { state: "in_sync" })
            .set(in_sync as i64);
        self.resources
            .get_or_create(&ResourceLabels { state: "out_of_sync" })
            .set(total.saturating_sub(in_sync) as i64);
    }

    pub fn reconcile_count(&self, result: &'static str) -> u64 {
        self.reconciles.get_or_create(&ReconcileLabels { result }).get()
    }

    /// The text exposition format, for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("metrics encode");
        out
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
