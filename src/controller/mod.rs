//! The OnePasswordItem controller, one file per step of the pipeline
//! `resolve → fetch → build → apply → status`:
//!
//! - [`resolve`]: each item path ([`references`]: `itemPath` and the entries of `items`) to
//!   vault and item ids, reused from status while the path is the same.
//! - [`fetch`]: the items and their files through the shared item cache.
//! - [`build`]: the desired Secret, pure; [`select`] picks the keys `spec.fields` asks for,
//!   [`template`] renders `spec.template.data`.
//! - [`apply`]: only when something differs; the Secret is read only when the watch says it
//!   may have changed since our last write ([`known`]).
//! - [`status`]: the next status, written only when it changed, and Events on transitions,
//!   from the [`outcome`] of the steps before; [`written_status`] stands in for a status
//!   just written that the watch cache does not show yet.
//!
//! [`connections`]: which Connect server (client, caches, poller) a resource is read through.
//!
//! The controller owns the Secrets it writes, so a hand edit or deletion triggers a reconcile
//! that repairs it from the cache, without a Connect call. What starts the controllers and
//! their watches lives in [`crate::wiring`].

pub(crate) mod apply;
pub(crate) mod build;
pub mod connections;
mod context;
mod digest;
mod error;
pub(crate) mod fetch;
pub(crate) mod known;
mod managed_fields;
pub(crate) mod outcome;
pub mod preview;
mod references;
mod repairs;
pub(crate) mod resolve;
pub(crate) mod select;
pub(crate) mod status;
mod template;
mod trust;
pub(crate) mod watched_secrets;
mod written_status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use rand::Rng;
use serde_json::json;
use tracing::{info, instrument, warn};

pub use build::MappingOptions;
pub use context::{Context, Settings};
pub use digest::{DigestKey, load_or_create_key};
pub(crate) use error::Error;

use crate::annotations::IGNORE_SECRET_TAG;
use crate::controller::connections::{Connection, Unusable};
use crate::crd::OnePasswordItem;
use crate::kubernetes::remove_legacy_finalizer;
use build::SecretTarget;
use fetch::Fetched;
use outcome::{Synced, Write};
use references::{build_for, references};

#[instrument(skip_all, fields(name = %opi.name_any(), namespace = opi.namespace().unwrap_or_default()))]
pub(crate) async fn reconcile(opi: Arc<OnePasswordItem>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    // Events wait while reconciles run (crate::events::EventLane).
    let _running = ctx.event_lane.running().enter();
    let opi = ctx.written_statuses.freshen(opi, started);
    let namespace = opi.namespace().unwrap_or_default();
    let api: Api<OnePasswordItem> = Api::namespaced(ctx.client.clone(), &namespace);
    remove_legacy_finalizer(&api, &*opi)
        .await
        .map_err(Error::kube("remove the Go operator's finalizer"))?;
    if opi.metadata.deletion_timestamp.is_some() {
        // The Secret goes with its owner through the ownerReference; nothing to do.
        return Ok(Action::await_change());
    }

    let connection = match ctx
        .connections
        .for_resource(&ctx.client, &namespace, opi.spec.connect_ref.as_deref())
        .await
    {
        Ok(connection) => connection,
        // Created with its connection, which is checked in a moment (and then reconciles
        // the resources that name it): no failure to report.
        Err(Unusable::NotReady { checked: false, .. }) => return Ok(Action::requeue(Duration::from_secs(5))),
        // Nothing is read or written but the status, which says why.
        Err(unusable) => return finish(&ctx, &opi, &api, Err(unusable.into()), started).await,
    };
    if trust::trusted(&ctx, &connection, &opi).await {
        // Restarted with the Secret as we left it and the item unchanged: nothing to do.
        ctx.metrics.reconciled("ok", started.elapsed());
        ctx.succeeded(&opi);
        // Back with a change, a poll that finds the item changed, or its resync turn.
        return Ok(Action::await_change());
    }
    let outcome = sync(&opi, &ctx, &connection).await;
    finish(&ctx, &opi, &api, outcome, started).await
}

/// The status step: writes the next status and its Events, and says when to come back.
async fn finish(
    ctx: &Context,
    opi: &OnePasswordItem,
    api: &Api<OnePasswordItem>,
    outcome: Result<Synced, Error>,
    started: Instant,
) -> Result<Action, Error> {
    let name = opi.name_any();
    let now = Time(jiff::Timestamp::now());
    let next = status::next_status(opi.status.as_ref(), opi.metadata.generation, &outcome, &now);
    if opi.status.as_ref() != Some(&next) {
        let patch = json!({ "status": next });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            // As the watch will show it: times to the second.
            Ok(_) => {
                if let Ok(written) = serde_json::from_value(patch["status"].clone()) {
                    ctx.written_statuses
                        .record(opi.metadata.uid.as_deref(), written, Instant::now());
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(Error::kube("update status")(e)),
        }
    }
    for event in status::events(opi.status.as_ref(), &next, &outcome) {
        ctx.publish(opi, event).await;
    }
    let result = match &outcome {
        Ok(synced) => {
            if synced.write.wrote() {
                info!(secret = %synced.secret_name, version = synced.item_version, write = ?synced.write, "Secret written");
            }
            "ok"
        }
        Err(error) => error.metric_label(),
    };
    ctx.metrics.reconciled(result, started.elapsed());
    match outcome {
        Ok(synced) => {
            ctx.succeeded(opi);
            match synced.write {
                // Something keeps changing the Secret: the repair is made when the wait is over.
                Write::RepairDelayed(wait) => Ok(Action::requeue(wait)),
                // Back with a change, a poll that finds the item changed, or its resync turn
                // (crate::resync).
                _ => Ok(Action::await_change()),
            }
        }
        Err(error) => Err(error),
    }
}

/// Backoff per object: exponential with jitter, a server's `Retry-After` respected, and
/// minutes for failures only a person can fix (a rejected token must not burn API quota).
pub(crate) fn error_policy(opi: Arc<OnePasswordItem>, error: &Error, ctx: Arc<Context>) -> Action {
    let attempts = ctx.failed(&opi);
    let delay = retry_delay(attempts, error);
    warn!(name = %opi.name_any(), namespace = opi.namespace().unwrap_or_default(), reason = error.reason(), error = %error.message(), ?delay, "sync failed");
    Action::requeue(delay)
}

fn retry_delay(attempts: u32, error: &Error) -> Duration {
    if error.needs_a_person() {
        return Duration::from_secs(300);
    }
    let base = Duration::from_secs(2)
        .saturating_mul(1 << attempts.saturating_sub(1).min(6))
        .min(Duration::from_secs(120));
    let jitter = base.mul_f64(rand::rng().random_range(0.0..0.2));
    (base + jitter).max(error.retry_after().unwrap_or_default())
}

/// The pipeline up to the status step.
async fn sync(opi: &OnePasswordItem, ctx: &Context, connection: &Connection) -> Result<Synced, Error> {
    let refs = references(opi)?;
    let fetched =
        futures::future::try_join_all(refs.iter().map(|r| fetch::fetch(connection, &r.path, r.ids.clone()))).await?;
    let target = SecretTarget::for_item(opi, ctx.settings.copy_annotations);
    let items: Vec<_> = fetched.iter().map(|f| (&f.key, f.cached.as_ref())).collect();
    let mut built = build_for(&target, &refs, &items, ctx.settings.mapping)?;
    if let Some(key) = &ctx.settings.digest_key {
        digest::seal(&mut built.secret, key, ctx.settings.mapping);
    }
    let primary = &fetched[0];
    let frozen = fetched.iter().any(|f| f.cached.item.has_tag(IGNORE_SECRET_TAG));
    // The Secret's version annotation is the first item's: a change of another shows here.
    let items_moved = refs
        .iter()
        .zip(&fetched)
        .any(|(r, f)| r.held_version.is_some_and(|held| held != f.cached.item.version));
    let (write, item_version) =
        apply::apply(ctx, opi, &built, primary.cached.item.version, frozen, items_moved).await?;
    let repair_event = (write == Write::Repaired)
        .then(|| ctx.repairs.repaired(&target.namespace, &target.name, Instant::now()))
        .flatten();
    // From cache while the poller cannot reach a vault: the Secret matches what we last saw,
    // but whether that is still current is unknown. Read from Connect now: it is.
    let connect_failure = fetched
        .iter()
        .filter(|f| !f.read_now)
        .find_map(|f| connection.vault_failure(&f.key.vault_id));
    // A Secret left as it was still holds what status said of it.
    let kept = matches!(write, Write::Frozen | Write::RepairDelayed(_));
    let items = refs
        .iter()
        .zip(&fetched)
        .filter_map(|(r, f)| {
            let held = match r.held_version {
                Some(held) if kept => held,
                _ => f.cached.item.version,
            };
            r.resolved(&f.key).item_status(Some(held))
        })
        .collect();
    let primary_path = refs[0].path.path.to_owned();
    let Fetched {
        key, ambiguous_with, ..
    } = fetched.into_iter().next().expect("one fetch per reference");
    Ok(Synced {
        item_path: primary_path,
        connect_failure,
        vault_id: key.vault_id,
        item_id: key.item_id,
        item_version,
        items,
        secret_name: target.name,
        write,
        collisions: built.collisions,
        skipped: built.skipped,
        ambiguous_with,
        repair_event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::ConnectError;

    #[test]
    fn retry_delays_grow_and_respect_people_and_servers() {
        let down = Error::from(ConnectError::from_status("get_item", 503, String::new(), None));
        let first = retry_delay(1, &down);
        assert!(
            first >= Duration::from_secs(2) && first < Duration::from_millis(2400),
            "{first:?}"
        );
        assert!(retry_delay(5, &down) >= Duration::from_secs(32));
        assert!(retry_delay(50, &down) <= Duration::from_secs(144), "capped");
        let unauthorized = Error::from(ConnectError::from_status("get_item", 401, String::new(), None));
        assert_eq!(retry_delay(1, &unauthorized), Duration::from_secs(300));
        let limited = Error::from(ConnectError::from_status(
            "get_item",
            429,
            String::new(),
            Some(Duration::from_secs(30)),
        ));
        assert!(retry_delay(1, &limited) >= Duration::from_secs(30));
    }
}
