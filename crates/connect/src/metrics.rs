//! Counters of Connect requests, by endpoint and outcome, for the operator's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Operation name (`get_item`, `list_items`, …), never a path: bounded cardinality.
    pub endpoint: &'static str,
    /// HTTP status code, or `transport_error`.
    pub status: String,
    /// Which of the caller's Connect servers and tokens sent it (`operator` unless named).
    pub connection: String,
}

/// The `connection` label of a client whose counters were not given a name.
pub const DEFAULT_CONNECTION: &str = "operator";

/// Connect request counters; cheap to clone (shared `Arc`s inside).
#[derive(Clone, Debug)]
pub struct ConnectMetrics {
    pub requests: Family<RequestLabels, Counter>,
    connection: String,
}

impl Default for ConnectMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            connection: DEFAULT_CONNECTION.to_owned(),
        }
    }
}

impl ConnectMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connect_requests",
            "Requests sent to the 1Password Connect server, by endpoint and response status",
            self.requests.clone(),
        );
    }

    /// The same counters, with requests labelled `connection` (one client per connection).
    pub fn for_connection(&self, connection: impl Into<String>) -> Self {
        Self {
            requests: self.requests.clone(),
            connection: connection.into(),
        }
    }

    pub fn record(&self, endpoint: &'static str, status: Option<u16>) {
        let status = status.map_or_else(|| "transport_error".to_owned(), |s| s.to_string());
        self.requests.get_or_create(&self.labels(endpoint, status)).inc();
    }

    fn labels(&self, endpoint: &'static str, status: String) -> RequestLabels {
        RequestLabels {
            endpoint,
            status,
            connection: self.connection.clone(),
        }
    }

    /// Requests of this connection counted for one endpoint and status; for tests and
    /// diagnostics.
    pub fn count(&self, endpoint: &'static str, status: &str) -> u64 {
        self.requests
            .get_or_create(&self.labels(endpoint, status.to_owned()))
            .get()
    }
}
