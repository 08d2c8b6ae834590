//! The operator's test environment, never shipped: a local Kubernetes control plane (etcd and
//! kube-apiserver as supervised processes) for integration tests and benchmarks, and the
//! local demo. The operator reaches it only as a dev-dependency.

pub mod demo;
pub mod in_cluster;
pub mod load;
pub mod local_cluster;
pub mod node;

/// The repository's root (where `scripts/`, `crds/` and `docs/` are), for tests and
/// benchmarks of this crate.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
