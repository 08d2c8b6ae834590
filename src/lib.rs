//! onepassword-operator: keeps Kubernetes Secrets in sync with 1Password items read
//! through a 1Password Connect server.
//!
//! - [`connect`]: the Connect API client (models, errors, filters, resolution).
//! - [`sim`]: a Connect-compatible simulator for tests, benchmarks and the demo.
//! - [`telemetry`]: logging setup shared by every subcommand.

pub mod connect;
pub mod sim;
pub mod telemetry;
