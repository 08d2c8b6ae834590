//! Leader election through a `coordination.k8s.io` Lease (kube-lease-manager): with several
//! replicas, only the holder runs the controllers, the poller and the restarter, so exactly
//! one process writes. A holder that loses the lease stops at once (the process exits and is
//! restarted as a standby). A holder that shuts down releases the lease, and a standby,
//! which watches the Lease, takes it within a second or two; one that dies is replaced
//! within the lease duration.
//!
//! kube-lease-manager's standby sleeps until the lease's expiry, so it would notice a release
//! only then: on a release, the standby builds a new manager, which takes the free lease.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tracing::{debug, info, warn};

/// Where and how long the lease is held.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
}

/// Waits for the lease, then runs `work` while holding it; `on_leader` runs once the lease
/// is held, before `work` starts.
pub async fn run_as_leader<W: Future<Output = ()>>(
    client: kube::Client,
    election: Election,
    on_leader: impl FnOnce(),
    work: W,
) -> Result<(), String> {
    let seconds = election.lease_duration.as_secs().max(2);
    // Renew well before expiry; at least one second of grace.
    let grace = (seconds / 3).max(1);
    let manager = async || -> Result<LeaseManager, String> {
        LeaseManagerBuilder::new(client.clone(), &election.lease_name)
            .with_namespace(&election.namespace)
            .with_identity(&election.identity)
            .with_duration(seconds)
            .with_grace(grace)
            .with_field_manager(crate::annotations::FIELD_MANAGER)
            .build()
            .await
            .map_err(|e| {
                format!(
                    "cannot set up leader election on Lease {}/{}: {e}",
                    election.namespace, election.lease_name
                )
            })
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), &election.namespace);
    info!(lease = %election.lease_name, identity = %election.identity, "waiting to become the leader");
    let (mut leader, lease_task) = loop {
        let (mut leader, lease_task) = manager().await?.watch().await;
        tokio::select! {
            became = async {
                while !*leader.borrow_and_update() {
                    if leader.changed().await.is_err() {
                        return false;
                    }
                }
                true
            } => {
                if !became {
                    return Err("leader election stopped before this replica became the leader".into());
                }
                break (leader, lease_task);
            }
            () = released(leases.clone(), &election.lease_name) => {
                debug!(lease = %election.lease_name, "the holder released the lease; asking for it now");
                drop(leader);
                let _ = lease_task.await;
            }
        }
    };
    info!(identity = %election.identity, "became the leader");
    on_leader();
    let outcome = tokio::select! {
        _ = work => Ok(()),
        _ = async {
            loop {
                if leader.changed().await.is_err() || !*leader.borrow() {
                    break;
                }
            }
        } => Err("lost the leader lease; stopping so that only one replica writes".to_owned()),
    };
    // Closing the channel makes the lease task release the lease.
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => info!("released the leader lease"),
        other => warn!(?other, "could not confirm the release of the leader lease"),
    }
    outcome
}

/// Returns once the Lease, having had a holder, has none: its holder released it.
async fn released(leases: Api<Lease>, name: &str) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(
        watcher::watcher(leases, config)
            .backoff(crate::kubernetes::watch_backoff())
            .applied_objects()
    );
    let mut held = false;
    while let Some(event) = events.next().await {
        let Ok(lease) = event else { continue };
        let holder = lease.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty());
        match holder {
            Some(_) => held = true,
            None if held => return,
            None => {}
        }
    }
    futures::future::pending().await
}
