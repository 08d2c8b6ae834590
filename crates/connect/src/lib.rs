//! A client for the 1Password Connect REST API: models, an HTTP client with retries, rate
//! limits and bounded answers, SCIM filters, and title/id resolution with the rules of
//! 1Password's Go operator. Nothing here knows Kubernetes.

pub mod client;
pub mod error;
pub mod filter;
pub mod metrics;
pub mod models;
pub mod resolve;

pub use client::{ConnectClient, ConnectConfig, RetryPolicy};
pub use error::ConnectError;
pub use filter::Filter;
pub use metrics::ConnectMetrics;
pub use resolve::{Resolved, TitleIndex, resolve_item, resolve_vault};

/// The API version this client and the simulator speak.
pub const API_VERSION: &str = "1.8.1";
/// Header the server sets on every response; the Go SDK refuses file calls without it.
pub const VERSION_HEADER: &str = "1Password-Connect-Version";
