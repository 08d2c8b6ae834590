//! Leader election through a `coordination.k8s.io` Lease (kube-lease-manager): with several
//! replicas, only the holder runs the controllers, the poller and the restarter, so exactly
//! one process writes. A holder that loses the lease stops at once (the process exits and is
//! restarted as a standby); a holder that shuts down releases it, so failover is immediate;
//! one that dies is replaced within the lease duration.

use std::future::Future;
use std::time::Duration;

use kube_lease_manager::LeaseManagerBuilder;
use tracing::{info, warn};

/// Where and how long the lease is held.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
}

/// Waits for the lease, then runs `work` while holding it. `on_standby` runs once while
/// waiting, `on_leader` once the lease is held.
pub async fn run_as_leader<W: Future<Output = ()>>(
    client: kube::Client,
    election: Election,
    on_leader: impl FnOnce(),
    work: W,
) -> Result<(), String> {
    let seconds = election.lease_duration.as_secs().max(2);
    // Renew well before expiry; at least one second of grace.
    let grace = (seconds / 3).max(1);
    let manager = LeaseManagerBuilder::new(client, &election.lease_name)
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
        })?;
    let (mut leader, lease_task) = manager.watch().await;
    info!(lease = %election.lease_name, identity = %election.identity, "waiting to become the leader");
    while !*leader.borrow_and_update() {
        if leader.changed().await.is_err() {
            return Err("leader election stopped before this replica became the leader".into());
        }
    }
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
