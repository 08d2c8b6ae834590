//! Resolve: `itemPath` to the vault and item ids. The ids in status are reused while the path
//! is the same, so that a steady resource costs no lookup; a new path, or ids Connect no
//! longer knows, are looked up by title or id (the oldest of items with the same title, as
//! in 1Password's Go operator).
//!
//! Lookups go through a [`Directory`]: one listing of the vaults and one listing of the items
//! of each vault, shared by every resource, so that N resources in V vaults cost 1 + V
//! listings to resolve, whatever their naming, and then one item read each. A listing is
//! taken again when a reference is missing from one taken before the lookup began, when the
//! poller lists the vault anyway, and when a resolved id turns out to be gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::Error;
use super::fetch::ItemKey;
use crate::connect::models::ItemSummary;
use crate::connect::{ConnectClient, ConnectError, TitleIndex};
use crate::controller::connections::Connection;
use crate::crd::{OnePasswordItem, parse_item_path};

/// A resource's `itemPath`, split into its vault and item references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ItemRef<'a> {
    pub(crate) path: &'a str,
    pub(crate) vault: &'a str,
    pub(crate) item: &'a str,
}

impl<'a> ItemRef<'a> {
    pub(crate) fn parse(path: &'a str) -> Result<Self, Error> {
        let (vault, item) = parse_item_path(path).ok_or_else(|| Error::InvalidItemPath { path: path.to_owned() })?;
        Ok(Self { path, vault, item })
    }

    /// The ids status holds for this very path, if any.
    pub(crate) fn ids_in_status(&self, opi: &OnePasswordItem) -> Option<ItemKey> {
        let status = opi
            .status
            .as_ref()
            .filter(|s| s.resolved_item_path.as_deref() == Some(self.path))?;
        Some(ItemKey {
            vault_id: status.vault_id.clone()?,
            item_id: status.item_id.clone()?,
        })
    }

    /// A NotFound from Connect as the resource's error: the item is missing.
    pub(crate) fn item_not_found(&self, source: ConnectError) -> Error {
        match source {
            source @ ConnectError::NotFound { .. } => Error::ItemNotFound {
                vault: self.vault.into(),
                item: self.item.into(),
                source,
            },
            other => other.into(),
        }
    }
}

/// The ids a path resolved to, and the other items with the same title.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) key: ItemKey,
    pub(crate) also_matched: Vec<String>,
}

/// A listing and when it was asked for: a reference missing from a listing asked for after
/// the lookup began is missing indeed.
struct Listing {
    asked: Instant,
    index: TitleIndex,
}

type Slot = Arc<tokio::sync::Mutex<Option<Listing>>>;

/// Vault and item listings shared by every resolution; concurrent lookups wait for one call.
/// It also keeps the item versions of the poller's last listing of each referenced vault,
/// which a restarted operator checks its Secrets against ([`super::trust`]).
pub(crate) struct Directory {
    vaults: Slot,
    /// Vault id → the listing of its items.
    items: Mutex<HashMap<String, Slot>>,
    /// Vault id → item id → version, as the poller last listed them.
    versions: Mutex<HashMap<String, Arc<HashMap<String, u64>>>>,
    /// True once the poller's first round is over.
    polled: tokio::sync::watch::Sender<bool>,
}

impl Default for Directory {
    fn default() -> Self {
        Self {
            vaults: Slot::default(),
            items: Mutex::default(),
            versions: Mutex::default(),
            polled: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl Directory {
    fn items_slot(&self, vault_id: &str) -> Slot {
        self.items
            .lock()
            .expect("directory lock")
            .entry(vault_id.to_owned())
            .or_default()
            .clone()
    }

    /// Resolves with the listing in `slot`, listing (again) when it lacks the reference and
    /// was asked for before `since`. `Ok(None)`: not there.
    async fn lookup<F, L>(
        slot: &Slot,
        since: Instant,
        find: F,
        list: L,
    ) -> Result<Option<crate::connect::Resolved>, ConnectError>
    where
        F: Fn(&TitleIndex) -> Option<crate::connect::Resolved>,
        L: AsyncFnOnce() -> Result<TitleIndex, ConnectError>,
    {
        let mut listing = slot.lock().await;
        if let Some(current) = listing.as_ref() {
            if let Some(found) = find(&current.index) {
                return Ok(Some(found));
            }
            if current.asked >= since {
                return Ok(None);
            }
        }
        let asked = Instant::now();
        let index = list().await?;
        let found = find(&index);
        *listing = Some(Listing { asked, index });
        Ok(found)
    }

    async fn vault(
        &self,
        connect: &ConnectClient,
        reference: &str,
        since: Instant,
    ) -> Result<Option<crate::connect::Resolved>, ConnectError> {
        let list = async || Ok(TitleIndex::of_vaults(&connect.list_vaults(None).await?));
        Self::lookup(&self.vaults, since, |index| index.vault(reference), list).await
    }

    async fn item(
        &self,
        connect: &ConnectClient,
        vault_id: &str,
        reference: &str,
        since: Instant,
    ) -> Result<Option<crate::connect::Resolved>, ConnectError> {
        let list = async || {
            Ok(TitleIndex::of_items(
                &connect.list_item_summaries(vault_id, None).await?,
            ))
        };
        Self::lookup(&self.items_slot(vault_id), since, |index| index.item(reference), list).await
    }

    /// Forgets a vault that is gone: the vaults and its items are listed again when asked.
    async fn forget_vault(&self, vault_id: &str) {
        self.forget_items(vault_id);
        *self.vaults.lock().await = None;
    }

    /// Forgets the listing of a vault's items: an id from it was not found.
    pub(crate) fn forget_items(&self, vault_id: &str) {
        self.items.lock().expect("directory lock").remove(vault_id);
    }

    /// Takes a listing the poller made anyway: its versions, and its titles for a vault
    /// whose titles are in use. Returns the versions, item id → version.
    pub(crate) async fn listed_items(
        &self,
        vault_id: &str,
        items: &[ItemSummary],
        asked: Instant,
    ) -> Arc<HashMap<String, u64>> {
        let versions: Arc<HashMap<String, u64>> = Arc::new(items.iter().map(|i| (i.id.clone(), i.version)).collect());
        self.versions
            .lock()
            .expect("directory lock")
            .insert(vault_id.to_owned(), versions.clone());
        let slot = self.items.lock().expect("directory lock").get(vault_id).cloned();
        if let Some(slot) = slot {
            *slot.lock().await = Some(Listing {
                asked,
                index: TitleIndex::of_items(items),
            });
        }
        versions
    }

    /// Keeps the item listings of the vaults `keep` says are still referenced, and those in
    /// use since `since`: a listing being taken, or taken after `since`, serves resources
    /// whose status does not name the vault yet.
    pub(crate) fn retain_vaults(&self, keep: impl Fn(&str) -> bool, since: Instant) {
        let in_use = |slot: &Slot| {
            slot.try_lock()
                .map_or(true, |listing| listing.as_ref().is_some_and(|l| l.asked >= since))
        };
        self.items
            .lock()
            .expect("directory lock")
            .retain(|vault, slot| keep(vault) || in_use(slot));
        self.versions
            .lock()
            .expect("directory lock")
            .retain(|vault, _| keep(vault));
    }

    /// Called by the poller after each round.
    pub(crate) fn polled(&self) {
        self.polled.send_if_modified(|done| !std::mem::replace(done, true));
    }

    /// The item's version in the poller's last listing of its vault, waiting up to `wait`
    /// for the poller's first round. `None`: not listed (yet), or not in the vault.
    pub(crate) async fn listed_version(&self, vault_id: &str, item_id: &str, wait: Duration) -> Option<u64> {
        let mut polled = self.polled.subscribe();
        let _ = tokio::time::timeout(wait, polled.wait_for(|done| *done)).await;
        let versions = self.versions.lock().expect("directory lock");
        versions.get(vault_id)?.get(item_id).copied()
    }
}

/// Looks the vault and the item up through the directory.
pub(crate) async fn resolve(conn: &Connection, path: &ItemRef<'_>) -> Result<Resolved, Error> {
    resolve_in(&conn.directory, &conn.connect, path).await
}

/// [`resolve`] through any directory: the controller's shared one, or a fresh one for a
/// preview.
pub(crate) async fn resolve_in(
    directory: &Directory,
    connect: &ConnectClient,
    path: &ItemRef<'_>,
) -> Result<Resolved, Error> {
    let since = Instant::now();
    let vault_not_found = |message: String| Error::VaultNotFound {
        vault: path.vault.into(),
        source: ConnectError::NotFound {
            endpoint: "resolve_vault",
            message,
        },
    };
    let vault = directory
        .vault(connect, path.vault, since)
        .await?
        .ok_or_else(|| vault_not_found(format!("no vault named {:?} is visible to the token", path.vault)))?;
    let item = match directory.item(connect, &vault.id, path.item, since).await {
        Ok(Some(item)) => item,
        Ok(None) => {
            return Err(path.item_not_found(ConnectError::NotFound {
                endpoint: "resolve_item",
                message: format!("no item titled {:?} in vault {}", path.item, vault.id),
            }));
        }
        // The vault is gone since the vaults were listed.
        Err(err) if err.is_not_found() => {
            directory.forget_vault(&vault.id).await;
            return Err(vault_not_found(format!(
                "vault {:?} is no longer visible to the token",
                path.vault
            )));
        }
        Err(err) => return Err(err.into()),
    };
    Ok(Resolved {
        key: ItemKey {
            vault_id: vault.id,
            item_id: item.id,
        },
        also_matched: item.also_matched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{OnePasswordItemSpec, OnePasswordItemStatus};

    fn listed(directory: &Directory, vault_id: &str) -> bool {
        directory.items.lock().unwrap().contains_key(vault_id)
    }

    async fn list_items_of(directory: &Directory, vault_id: &str) {
        let since = Instant::now();
        let list = async || Ok(TitleIndex::of_items(&[]));
        Directory::lookup(&directory.items_slot(vault_id), since, |index| index.item("x"), list)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_listing_taken_since_the_last_poll_outlives_a_poll_that_finds_its_vault_unreferenced() {
        let directory = Directory::default();
        let last_poll = Instant::now();
        list_items_of(&directory, "new").await;
        // Resources resolved through it have no status naming the vault yet.
        directory.retain_vaults(|_| false, last_poll);
        assert!(listed(&directory, "new"), "taken since the last poll: kept");
        directory.retain_vaults(|_| false, Instant::now());
        assert!(!listed(&directory, "new"), "unreferenced and not taken since: let go");
    }

    #[tokio::test]
    async fn a_listing_being_taken_is_kept_and_referenced_vaults_always() {
        let directory = Directory::default();
        list_items_of(&directory, "referenced").await;
        let slot = directory.items_slot("being-listed");
        let _listing = slot.lock().await;
        directory.retain_vaults(|vault| vault == "referenced", Instant::now());
        assert!(listed(&directory, "referenced"));
        assert!(listed(&directory, "being-listed"));
    }

    #[test]
    fn item_paths_are_parsed_strictly() {
        let parsed = ItemRef::parse("vaults/Prod/items/DB").unwrap();
        assert_eq!((parsed.vault, parsed.item), ("Prod", "DB"));
        let parsed = ItemRef::parse("vaults/a b/items/c d").unwrap();
        assert_eq!((parsed.vault, parsed.item), ("a b", "c d"));
        for bad in [
            "vaults/Prod",
            "vaults//items/x",
            "vaults/a/items/",
            "secrets/a/items/b",
            "vaults/a/items/b/c",
            "",
        ] {
            assert!(
                matches!(ItemRef::parse(bad), Err(Error::InvalidItemPath { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_in_status_are_reused_only_for_the_same_path() {
        let mut opi = OnePasswordItem::new("app", OnePasswordItemSpec::item("vaults/v/items/i"));
        opi.status = Some(OnePasswordItemStatus {
            resolved_item_path: Some("vaults/v/items/i".into()),
            vault_id: Some("vid".into()),
            item_id: Some("iid".into()),
            ..OnePasswordItemStatus::default()
        });
        let same = ItemRef::parse("vaults/v/items/i").unwrap();
        assert_eq!(
            same.ids_in_status(&opi),
            Some(ItemKey {
                vault_id: "vid".into(),
                item_id: "iid".into()
            })
        );
        let other = ItemRef::parse("vaults/v/items/other").unwrap();
        assert_eq!(other.ids_in_status(&opi), None);
    }
}
