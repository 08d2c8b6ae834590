//! Trust: a restarted operator (an upgrade, a failover, a drained node) finds its Secrets as
//! it left them, and must not read every item from Connect again to know that.
//!
//! A resource is trusted, and its reconcile ends without a Connect call or a write, when
//! its status says it is in sync at its generation, the poller's listings show every item
//! it references still at the version status names, and the Secret as it is now carries our
//! keyed digest of its data at that version ([`super::digest`]) with everything else we set
//! on it in place. Anything else (an item that changed, a Secret edited while we were down,
//! a resource changed, no digest key) takes the whole pipeline, so it is repaired or updated
//! from Connect, once. Only resources whose items are not cached are judged here: for those
//! whose items are, the pipeline costs no Connect call anyway.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::Context;
use super::apply::{Ownership, needs_write, ownership, with_digest_of};
use super::build::{SecretTarget, secret_without_data};
use super::digest;
use super::known::{self, Freshness};
use super::references::references;
use crate::controller::connections::Connection;
use crate::crd::OnePasswordItem;

/// How long a reconcile waits for the poller's first round, which lists every vault.
const FIRST_POLL_WAIT: Duration = Duration::from_secs(30);

/// Whether the resource's Secret can be trusted as it is; see the module documentation.
pub(crate) async fn trusted(ctx: &Context, conn: &Connection, opi: &OnePasswordItem) -> bool {
    let Some(key) = &ctx.settings.digest_key else {
        return false;
    };
    let Some(status) = opi.status.as_ref() else {
        return false;
    };
    if !status.is_in_sync() || status.observed_generation != opi.metadata.generation {
        return false;
    }
    let Ok(references) = references(opi) else {
        return false;
    };
    // Every referenced item: resolved for its path, not cached, listed at the version held.
    let Some(held) = references
        .iter()
        .map(|r| r.ids.as_ref().zip(r.held_version))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    for &(item, version) in &held {
        if conn.items.peek(item).is_some() || conn.vault_failure(&item.vault_id).is_some() {
            return false;
        }
        let listed = conn
            .directory
            .listed_version(&item.vault_id, &item.item_id, FIRST_POLL_WAIT)
            .await;
        if listed != Some(version) {
            return false;
        }
    }
    let (item, version) = held[0];
    // Everything we set but the data, which the digest vouches for.
    let target = SecretTarget::for_item(opi, ctx.settings.copy_annotations);
    let desired = secret_without_data(&target, &item.vault_id, &item.item_id, version);
    let summary = known::Desired::of(&desired);
    let params = match ctx.known.freshness(&target.namespace, &target.name, &summary) {
        Freshness::Current => return true,
        // The watch has no Secret of ours by that name.
        Freshness::NotOurs => return false,
        // Right after the start the watch may not have listed yet: read it all the same.
        read => read.get_params().unwrap_or_default(),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &target.namespace);
    let Ok(existing) = secrets.get_with(&target.name, &params).await else {
        return false;
    };
    let mut expected = with_digest_of(&desired, &existing);
    expected.data = existing.data.clone();
    let holds = ownership(&existing, opi, &target.name) == Ownership::Ours
        && !needs_write(&existing, &expected)
        && digest::verify(&existing, key, ctx.settings.mapping);
    if holds {
        ctx.known.record(
            &target.namespace,
            &target.name,
            existing.metadata.resource_version.clone(),
            summary,
        );
    }
    holds
}
