//! Change detection in O(vaults) Connect calls per poll, not O(items).
//!
//! Each poll reads the `contentVersion` of every vault that some OnePasswordItem points at
//! (`GET /v1/vaults/{id}`). Only a vault whose contentVersion moved is listed
//! (`GET /v1/vaults/{id}/items`, one call with every item's version), and only the resources
//! whose Secret holds another version than the listed one are reconciled. An idle cluster
//! costs exactly one call per referenced vault per poll, whatever the number of items.
//! As a safety net against a contentVersion that lags behind its items, every vault is
//! listed anyway at least every [`SAFETY_LISTING`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc;
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::{debug, info, warn};

use crate::connect::ConnectError;
use crate::controller::connections::Connection;
use crate::controller::fetch::ItemKey;
use crate::controller::outcome::ConnectFailure;
use crate::controller::{Context, Error};
use crate::crd::OnePasswordItem;

/// Longest time a referenced vault goes without its items being listed.
pub(crate) const SAFETY_LISTING: Duration = Duration::from_secs(300);
/// How long to stop polling after Connect rejected the token, unless the token changes.
const AUTH_PAUSE: Duration = Duration::from_secs(300);
/// How often the token file is looked at during that pause.
const TOKEN_CHECK: Duration = Duration::from_secs(2);
/// Longest wait between polls while Connect fails every vault check.
const MAX_OUTAGE_BACKOFF: Duration = Duration::from_secs(60);
/// Vaults read at once.
const VAULT_CONCURRENCY: usize = 8;

/// What the poller knows of a vault.
#[derive(Clone, Copy, Debug)]
struct VaultSeen {
    content_version: u64,
    listed_at: Instant,
}

/// Where a resource stands, as its status says; borrowed from the watch cache, so that a
/// poll over many resources copies nothing but the few it triggers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tracked<'a> {
    pub object: &'a OnePasswordItem,
    pub vault_id: &'a str,
    pub item_id: &'a str,
    /// The item version its Secret holds.
    pub held_version: Option<u64>,
    pub ready: bool,
    /// `Synced` is False: its status still reports a failure to read Connect.
    pub unconfirmed: bool,
}

impl Tracked<'_> {
    pub(crate) fn key(&self) -> ItemKey {
        ItemKey {
            vault_id: self.vault_id.to_owned(),
            item_id: self.item_id.to_owned(),
        }
    }
}

/// The resources the poller watches over, once per item they reference that has been
/// resolved: the primary item, and each entry of `items`.
pub(crate) fn tracked(objects: &[Arc<OnePasswordItem>]) -> Vec<Tracked<'_>> {
    objects
        .iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .flat_map(|o| {
            let status = o.status.as_ref();
            let (ready, unconfirmed) = status.map_or((false, false), |s| (s.is_ready(), s.is_unconfirmed()));
            let primary = status.map(|s| (s.vault_id.as_deref(), s.item_id.as_deref(), s.item_version));
            let entries = status
                .into_iter()
                .flat_map(|s| &s.items)
                .map(|i| (i.vault_id.as_deref(), i.item_id.as_deref(), i.item_version));
            primary
                .into_iter()
                .chain(entries)
                .filter_map(move |(vault_id, item_id, held_version)| {
                    Some(Tracked {
                        object: o.as_ref(),
                        vault_id: vault_id?,
                        item_id: item_id?,
                        held_version,
                        ready,
                        unconfirmed,
                    })
                })
        })
        .collect()
}

/// Resources of `vault_id` whose Secret is behind the listed versions, or whose item is gone.
pub(crate) fn stale<'a>(tracked: &[Tracked<'a>], vault_id: &str, listed: &HashMap<String, u64>) -> Vec<Tracked<'a>> {
    tracked
        .iter()
        .filter(|t| t.vault_id == vault_id)
        .filter(|t| match listed.get(t.item_id) {
            Some(version) => t.held_version != Some(*version),
            // Deleted in 1Password: let the controller say so (the Secret is kept).
            None => t.ready,
        })
        .copied()
        .collect()
}

/// Resources of a vault that answered whose status still says Connect could not be read:
/// each poll that reaches the vault sets them right, whenever their failure was written.
pub(crate) fn unconfirmed<'t, 'a>(
    tracked: &'t [Tracked<'a>],
    vault_id: &'t str,
) -> impl Iterator<Item = &'t Tracked<'a>> {
    tracked.iter().filter(move |t| t.vault_id == vault_id && t.unconfirmed)
}

/// Sends reconcile requests to the controller that watches the object's namespace. The
/// queues are unbounded so that no request is ever lost (a vault-wide rotation changes
/// thousands of items at once); the controller's scheduler merges requests for one object,
/// and a poll sends at most one per resource.
#[derive(Clone, Debug)]
pub(crate) struct Triggers {
    /// Namespace → sender; the key `None` is the controller that watches every namespace.
    senders: BTreeMap<Option<String>, mpsc::UnboundedSender<ObjectRef<OnePasswordItem>>>,
}

impl Triggers {
    pub(crate) fn new(senders: BTreeMap<Option<String>, mpsc::UnboundedSender<ObjectRef<OnePasswordItem>>>) -> Self {
        Self { senders }
    }

    pub(crate) fn send(&mut self, object: ObjectRef<OnePasswordItem>) {
        let sender = match self.senders.get(&object.namespace) {
            Some(sender) => Some(sender),
            None => self.senders.get(&None),
        };
        if let Some(sender) = sender
            && let Err(err) = sender.unbounded_send(object)
        {
            // Only when the controller has stopped, at shutdown.
            debug!(error = %err, "reconcile request not delivered");
        }
    }
}

/// The change detection of one connection: it checks the vaults of the resources that name
/// it, and ends when the connection is no longer in use.
pub(crate) struct Poller {
    ctx: Arc<Context>,
    connection: Arc<Connection>,
    stores: Vec<Store<OnePasswordItem>>,
    triggers: Triggers,
    seen: HashMap<String, VaultSeen>,
    /// The Connect token generation the last poll used.
    token_generation: u64,
    /// Cached items that no resource referenced at the last poll.
    unreferenced_items: HashSet<ItemKey>,
    /// The vaults resources referenced at the last poll.
    referenced_vaults: BTreeSet<String>,
    /// When the last poll began (at first, when the poller was made).
    last_poll: Instant,
}

/// What one poll found, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PollReport {
    pub vaults: usize,
    pub listed: usize,
    pub triggered: usize,
    pub failed: usize,
    pub unauthorized: bool,
}

impl Poller {
    pub(crate) fn new(
        ctx: Arc<Context>,
        connection: Arc<Connection>,
        stores: Vec<Store<OnePasswordItem>>,
        triggers: Triggers,
    ) -> Self {
        Self {
            ctx,
            connection,
            stores,
            triggers,
            seen: HashMap::new(),
            token_generation: 0,
            unreferenced_items: HashSet::new(),
            referenced_vaults: BTreeSet::new(),
            last_poll: Instant::now(),
        }
    }

    /// Polls every `polling_interval` until the connection is no longer in use.
    pub(crate) async fn run(mut self) {
        for store in &self.stores {
            crate::kubernetes::until_ready(store).await;
        }
        let interval = self.ctx.settings.polling_interval;
        let connection = self.connection.key.to_string();
        info!(?interval, %connection, "change detection started");
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failed_polls: u32 = 0;
        loop {
            ticker.tick().await;
            if !self.ctx.connections.is_current(&self.connection) {
                info!(%connection, "change detection ended: the connection is no longer in use");
                return;
            }
            self.after_a_token_change();
            let started = Instant::now();
            let report = self.poll_once().await;
            self.connection.directory.polled();
            self.ctx
                .metrics
                .polled(&connection, report.failed == 0, started.elapsed());
            if report.triggered > 0 || report.failed > 0 {
                debug!(?report, "poll");
            }
            if report.unauthorized {
                warn!(pause = ?AUTH_PAUSE, %connection, "Connect rejected the token; change detection pauses until the token changes");
                self.pause_until_the_token_changes().await;
                continue;
            }
            // Connect answers no vault: poll less often, up to MAX_OUTAGE_BACKOFF.
            failed_polls = if report.vaults > 0 && report.failed == report.vaults {
                failed_polls + 1
            } else {
                0
            };
            let backoff = outage_backoff(interval, failed_polls);
            if !backoff.is_zero() {
                debug!(?backoff, "Connect answers no vault; polling less often");
                if self.connection.wait_unless_woken(backoff).await {
                    debug!(%connection, "Connect answers again, or the token changed: polling now");
                }
            }
        }
    }

    /// Waits [`AUTH_PAUSE`], or until the token file holds a new token; then every resource
    /// that is not in sync is reconciled at once.
    async fn pause_until_the_token_changes(&mut self) {
        let deadline = Instant::now() + AUTH_PAUSE;
        while Instant::now() < deadline {
            // Woken when the connection's token Secret changes; the token file is looked at
            // every few seconds too (the operator's own connection).
            self.connection
                .wait_unless_woken(TOKEN_CHECK.min(deadline - Instant::now()))
                .await;
            if self.after_a_token_change() {
                return;
            }
        }
        self.trigger_unsynced();
    }

    /// Reads the token file; when the token changed since the last poll (read here, or by
    /// a request that Connect refused), reconciles whatever is not in sync. True if it did.
    fn after_a_token_change(&mut self) -> bool {
        self.connection.connect.reload_token();
        let generation = self.connection.connect.token_generation();
        if generation == self.token_generation {
            return false;
        }
        self.token_generation = generation;
        self.trigger_unsynced();
        true
    }

    /// The resources that name this connection.
    fn objects(&self) -> Vec<Arc<OnePasswordItem>> {
        let key = &self.connection.key;
        self.stores
            .iter()
            .flat_map(|s| s.state())
            .filter(|o| {
                key.is_named_by(
                    o.metadata.namespace.as_deref().unwrap_or_default(),
                    o.spec.connect_ref.as_deref(),
                )
            })
            .collect()
    }

    /// Reconciles every resource that is not in sync, resolved or not.
    fn trigger_unsynced(&mut self) {
        let objects = self.objects();
        for object in objects
            .iter()
            .filter(|o| !o.status.as_ref().is_some_and(|s| s.is_in_sync()))
        {
            self.triggers.send(ObjectRef::from_obj(object.as_ref()));
        }
    }

    /// One round over the referenced vaults.
    pub(crate) async fn poll_once(&mut self) -> PollReport {
        let objects = self.objects();
        let tracked = tracked(&objects);
        // Items no resource points at any more (deleted, or moved to another item) are let
        // go at the second poll that finds them so: a resource synced a moment ago may not
        // show its ids in the watch cache yet.
        let referenced: HashSet<(&str, &str)> = tracked.iter().map(|t| (t.vault_id, t.item_id)).collect();
        let unreferenced = self
            .connection
            .items
            .keys_where(|k| !referenced.contains(&(k.vault_id.as_str(), k.item_id.as_str())));
        let before = std::mem::replace(&mut self.unreferenced_items, unreferenced);
        if !before.is_empty() {
            self.connection
                .items
                .retain(|key| !(before.contains(key) && self.unreferenced_items.contains(key)));
        }
        let vaults: BTreeSet<String> = tracked.iter().map(|t| t.vault_id.to_owned()).collect();
        self.seen.retain(|vault, _| vaults.contains(vault));
        // Title listings of vaults that no resource pointed at in two polls are let go too,
        // unless taken since the last poll began: the resources being resolved with them
        // may not show their vault in the watch cache yet.
        let previous = std::mem::replace(&mut self.referenced_vaults, vaults.clone());
        let last_poll = std::mem::replace(&mut self.last_poll, Instant::now());
        self.connection
            .directory
            .retain_vaults(|vault| vaults.contains(vault) || previous.contains(vault), last_poll);
        let mut report = PollReport {
            vaults: vaults.len(),
            ..PollReport::default()
        };

        let (connection, seen) = (&self.connection, &self.seen);
        let checks = futures::stream::iter(vaults)
            .map(|vault_id| {
                let connect = &connection.connect;
                let previous = seen.get(&vault_id).copied();
                async move {
                    let vault = match connect.get_vault(&vault_id).await {
                        Ok(vault) => vault,
                        Err(err) => return Err((vault_id, err)),
                    };
                    let must_list = previous.is_none_or(|p| {
                        p.content_version != vault.content_version || p.listed_at.elapsed() >= SAFETY_LISTING
                    });
                    let listed = if must_list {
                        let asked = Instant::now();
                        match connect.list_item_summaries(&vault_id, None).await {
                            Ok(items) => {
                                // The titles new resources are resolved with stay current.
                                Some(connection.directory.listed_items(&vault_id, &items, asked).await)
                            }
                            Err(err) => return Err((vault_id, err)),
                        }
                    } else {
                        None
                    };
                    Ok((vault_id, vault.content_version, listed))
                }
            })
            .buffer_unordered(VAULT_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;

        let mut recovered = false;
        for check in checks {
            match check {
                Ok((vault_id, content_version, listed)) => {
                    recovered |= self.connection.vault_recovered(&vault_id);
                    let stale = listed
                        .as_ref()
                        .map(|l| stale(&tracked, &vault_id, l))
                        .unwrap_or_default();
                    // The vault answers: resources still reporting a failure say so no more.
                    for resource in unconfirmed(&tracked, &vault_id) {
                        if !stale.iter().any(|s| std::ptr::eq(s.object, resource.object)) {
                            self.triggers.send(ObjectRef::from_obj(resource.object));
                            report.triggered += 1;
                        }
                    }
                    let Some(listed) = listed else { continue };
                    report.listed += 1;
                    for resource in stale {
                        // Drop the cached item only if it is not the listed version already
                        // (a frozen item stays behind on purpose).
                        let key = resource.key();
                        let cached = self.connection.items.peek(&key).map(|c| c.item.version);
                        if cached != listed.get(resource.item_id).copied() {
                            self.connection.items.invalidate(&key);
                        }
                        self.triggers.send(ObjectRef::from_obj(resource.object));
                        report.triggered += 1;
                    }
                    self.seen.insert(
                        vault_id,
                        VaultSeen {
                            content_version,
                            listed_at: Instant::now(),
                        },
                    );
                }
                Err((vault_id, err)) => {
                    report.failed += 1;
                    report.unauthorized |= matches!(err, ConnectError::Unauthorized { .. });
                    warn!(vault = %vault_id, connection = %self.connection.key, error = %crate::error_chain(&err), "cannot check a vault for changes");
                    let failure = ConnectFailure::from(&Error::from(err));
                    if self.connection.vault_failed(&vault_id, failure) {
                        // Newly unreachable: the resources of this vault must say so.
                        self.trigger_vault(&tracked, &vault_id, &mut report);
                    }
                }
            }
        }
        if recovered {
            // Connect answers again: whatever is out of sync, including resources whose
            // first sync failed (they have no vault yet) and wait in their error backoff,
            // is reconciled now.
            self.trigger_unsynced();
        }
        report
    }

    fn trigger_vault(&mut self, tracked: &[Tracked], vault_id: &str, report: &mut PollReport) {
        for resource in tracked.iter().filter(|t| t.vault_id == vault_id) {
            self.triggers.send(ObjectRef::from_obj(resource.object));
            report.triggered += 1;
        }
    }
}

/// What is not any one connection's: the resource gauges, and forgetting the Secrets of
/// deleted resources. Every `polling_interval` until the process ends.
pub(crate) async fn keep_house(ctx: Arc<Context>, stores: Vec<Store<OnePasswordItem>>) {
    for store in &stores {
        crate::kubernetes::until_ready(store).await;
    }
    let mut ticker = tokio::time::interval(ctx.settings.polling_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let objects: Vec<Arc<OnePasswordItem>> = stores.iter().flat_map(|s| s.state()).collect();
        let in_sync = objects
            .iter()
            .filter(|o| o.status.as_ref().is_some_and(|s| s.is_in_sync()))
            .count();
        ctx.metrics.set_resources(in_sync, objects.len());
        // A Secret goes with its deleted owner: forget what we knew of it. Every entry has an
        // owner of the same name, so only more entries than owners means some are stale.
        if ctx.known.len() > objects.len() {
            let owners: HashSet<(&str, &str)> = objects
                .iter()
                .map(|o| {
                    (
                        o.metadata.namespace.as_deref().unwrap_or_default(),
                        o.metadata.name.as_deref().unwrap_or_default(),
                    )
                })
                .collect();
            ctx.known.retain(|namespace, name| owners.contains(&(namespace, name)));
        }
    }
}

/// Extra wait after `failed_polls` polls in a row that reached no vault: the interval
/// doubles each time, up to [`MAX_OUTAGE_BACKOFF`] between polls.
pub(crate) fn outage_backoff(interval: Duration, failed_polls: u32) -> Duration {
    if failed_polls == 0 {
        return Duration::ZERO;
    }
    let wait = interval
        .saturating_mul(1 << failed_polls.min(16))
        .min(MAX_OUTAGE_BACKOFF.max(interval));
    wait.saturating_sub(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ItemCondition, OnePasswordItemSpec, OnePasswordItemStatus};
    use kube::ResourceExt;

    fn opi(name: &str, vault: &str, item: &str, version: u64, ready: bool) -> Arc<OnePasswordItem> {
        let mut o = OnePasswordItem::new(name, OnePasswordItemSpec::item("vaults/a/items/b"));
        o.metadata.namespace = Some("ns".into());
        o.status = Some(OnePasswordItemStatus {
            vault_id: Some(vault.into()),
            item_id: Some(item.into()),
            item_version: Some(version),
            conditions: vec![ItemCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..ItemCondition::default()
            }],
            ..OnePasswordItemStatus::default()
        });
        Arc::new(o)
    }

    fn names(list: Vec<Tracked>) -> Vec<String> {
        list.into_iter().map(|t| t.object.name_any()).collect()
    }

    #[test]
    fn unresolved_and_deleted_objects_are_not_tracked() {
        let mut unresolved = OnePasswordItem::new("u", OnePasswordItemSpec::item("vaults/a/items/b"));
        unresolved.metadata.namespace = Some("ns".into());
        let mut deleting = (*opi("d", "v1", "i1", 1, true)).clone();
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        ));
        let all = vec![Arc::new(unresolved), Arc::new(deleting), opi("ok", "v1", "i1", 1, true)];
        assert_eq!(names(tracked(&all)), ["ok"]);
    }

    #[test]
    fn only_resources_behind_the_listed_version_are_stale() {
        let objects = [
            opi("current", "v1", "i1", 3, true),
            opi("behind", "v1", "i2", 1, true),
            opi("other-vault", "v2", "i9", 1, true),
            opi("gone", "v1", "i3", 1, true),
            opi("gone-and-failing", "v1", "i4", 1, false),
        ];
        let all = tracked(&objects);
        let listed = HashMap::from([("i1".to_string(), 3), ("i2".to_string(), 2)]);
        assert_eq!(names(stale(&all, "v1", &listed)), ["behind", "gone"]);
    }

    #[test]
    fn triggers_route_by_namespace_or_to_the_cluster_wide_controller() {
        let (tx_a, mut rx_a) = mpsc::unbounded();
        let (tx_all, mut rx_all) = mpsc::unbounded();
        let mut only_a = Triggers::new(BTreeMap::from([(Some("a".to_string()), tx_a)]));
        only_a.send(ObjectRef::new("x").within("a"));
        only_a.send(ObjectRef::new("y").within("b"));
        assert_eq!(rx_a.try_recv().unwrap().name, "x");
        assert!(rx_a.try_recv().is_err(), "nothing for namespaces nobody watches");
        let mut all = Triggers::new(BTreeMap::from([(None, tx_all)]));
        all.send(ObjectRef::new("z").within("b"));
        assert_eq!(rx_all.try_recv().unwrap().name, "z");
    }

    #[test]
    fn no_trigger_is_lost_in_a_vault_wide_rotation() {
        let (tx, mut rx) = mpsc::unbounded();
        let mut triggers = Triggers::new(BTreeMap::from([(None, tx)]));
        for i in 0..10_000 {
            triggers.send(ObjectRef::new(&format!("item-{i}")).within("ns"));
        }
        let mut received = 0;
        while rx.try_recv().is_ok() {
            received += 1;
        }
        assert_eq!(received, 10_000, "a bounded queue dropped 246 of 6,000 in a real run");
    }

    #[test]
    fn resources_whose_status_still_reports_a_failure_are_set_right_when_their_vault_answers() {
        let mut failing = (*opi("failing", "v1", "i1", 3, true)).clone();
        failing.status.as_mut().unwrap().conditions.push(ItemCondition {
            type_: "Synced".into(),
            status: "False".into(),
            reason: Some("ConnectRateLimited".into()),
            ..ItemCondition::default()
        });
        let objects = [
            Arc::new(failing),
            opi("fine", "v1", "i2", 1, true),
            opi("elsewhere", "v2", "i3", 1, true),
        ];
        let all = tracked(&objects);
        let names: Vec<String> = unconfirmed(&all, "v1").map(|t| t.object.name_any()).collect();
        assert_eq!(names, ["failing"]);
        assert_eq!(unconfirmed(&all, "v2").count(), 0);
    }

    #[test]
    fn polls_slow_down_while_connect_answers_nothing() {
        let interval = Duration::from_secs(2);
        assert_eq!(outage_backoff(interval, 0), Duration::ZERO);
        assert_eq!(outage_backoff(interval, 1), Duration::from_secs(2), "every 4 s");
        assert_eq!(outage_backoff(interval, 2), Duration::from_secs(6), "every 8 s");
        assert_eq!(
            outage_backoff(interval, 40),
            Duration::from_secs(58),
            "every 60 s at most"
        );
        assert_eq!(
            outage_backoff(Duration::from_secs(120), 3),
            Duration::ZERO,
            "never slower than the interval asks"
        );
    }
}
