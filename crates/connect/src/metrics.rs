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
}

/// Connect request counters; cheap to clone (shared `Arc`s inside).
#[derive(Clone, Debug, Default)]
pub struct ConnectMetrics {
    pub requests: Family<RequestLabels, Counter>,
}

impl ConnectMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connect_requests",
            "Requests sent to the 1Password Connect server, by endpoint and response status",
            self.requests.clone(),
        );
    }

    pub fn record(&self, endpoint: &'static str, status: Option<u16>) {
        let status = status.map_or_else(|| "transport_error".to_owned(), |s| s.to_string());
        self.requests.get_or_create(&RequestLabels { endpoint, status }).inc();
    }

    /// Requests counted for one endpoint and status; for tests and diagnostics.
    pub fn count(&self, endpoint: &'static str, status: &str) -> u64 {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                status: status.to_owned(),
            })
            .get()
    }
}
