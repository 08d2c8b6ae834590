//! Fetch: the item and its files, through a cache shared by every resource that points at
//! the same item and kept so that a hand-edited Secret is repaired without a Connect call.
//!
//! Concurrent requests for one item are coalesced: they wait on the item's slot while one
//! of them fetches. Entries do not expire by age: the poller invalidates an item whose
//! version moved, and a 404 on a cached id drops it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tracing::debug;

use super::build::{ItemData, MAX_SECRET_BYTES};
use super::error::Error;
use super::resolve::{ItemRef, resolve};
use crate::connect::models::FullItem;
use crate::connect::{ConnectClient, ConnectError};
use crate::controller::connections::Connection;

/// Largest file fetched inline with the file list (Connect's default inline limit).
const INLINE_LIMIT_BYTES: u64 = 100 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ItemKey {
    pub vault_id: String,
    pub item_id: String,
}

/// An item as fetched (what Secrets are built from), with the bytes of its files by file id.
#[derive(Debug)]
pub(crate) struct CachedItem {
    pub item: ItemData,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// An item ready for the build step.
pub(crate) struct Fetched {
    pub(crate) key: ItemKey,
    pub(crate) cached: Arc<CachedItem>,
    /// Other items with the same title, when the path was looked up now; `None` when the ids
    /// in status were reused.
    pub(crate) ambiguous_with: Option<Vec<String>>,
    /// Whether Connect was read just now (so it answers for this vault right now).
    pub(crate) read_now: bool,
}

/// The item `path` names: by `ids` (what status holds for this very path), else resolved.
pub(crate) async fn fetch(conn: &Connection, path: &ItemRef<'_>, ids: Option<ItemKey>) -> Result<Fetched, Error> {
    if let Some(key) = ids {
        match conn.items.get(&conn.connect, &key).await {
            Ok((cached, read_now)) => {
                return Ok(Fetched {
                    key,
                    cached,
                    ambiguous_with: None,
                    read_now,
                });
            }
            // Deleted, or replaced by an item with the same title: look the path up again.
            Err(err) if err.is_not_found() => {
                debug!("cached item id not found; resolving the item path again");
                conn.items.invalidate(&key);
            }
            Err(err) => return Err(err.into()),
        }
    }
    let mut resolved = resolve(conn, path).await?;
    let (cached, read_now) = match conn.items.get(&conn.connect, &resolved.key).await {
        Ok(found) => found,
        // The listing it was resolved from is out of date (the item was deleted, or replaced
        // by one with the same title): list the vault again, once.
        Err(err) if err.is_not_found() => {
            conn.directory.forget_items(&resolved.key.vault_id);
            resolved = resolve(conn, path).await?;
            conn.items
                .get(&conn.connect, &resolved.key)
                .await
                .map_err(|e| path.item_not_found(e))?
        }
        Err(err) => return Err(err.into()),
    };
    Ok(Fetched {
        key: resolved.key,
        cached,
        ambiguous_with: Some(resolved.also_matched),
        read_now,
    })
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<CachedItem>>>>;

#[derive(Debug, Default)]
pub(crate) struct ItemCache {
    slots: Mutex<HashMap<ItemKey, Slot>>,
}

impl ItemCache {
    fn slot(&self, key: &ItemKey) -> Slot {
        self.slots
            .lock()
            .expect("item cache lock")
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// The item, from cache when present, else from Connect; `true` when this call read it
    /// from Connect (proof that Connect answers for its vault right now).
    pub(crate) async fn get(
        &self,
        client: &ConnectClient,
        key: &ItemKey,
    ) -> Result<(Arc<CachedItem>, bool), ConnectError> {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if let Some(item) = cached.as_ref() {
            return Ok((item.clone(), false));
        }
        let fetched = Arc::new(fetch_item(client, key, cached.as_deref()).await?);
        *cached = Some(fetched.clone());
        Ok((fetched, true))
    }

    /// The cached item, whatever its age, without calling Connect.
    pub(crate) fn peek(&self, key: &ItemKey) -> Option<Arc<CachedItem>> {
        let slot = self.slots.lock().expect("item cache lock").get(key)?.clone();
        slot.try_lock().ok()?.clone()
    }

    /// Forgets an item, so that its next use fetches it.
    pub(crate) fn invalidate(&self, key: &ItemKey) {
        self.slots.lock().expect("item cache lock").remove(key);
    }

    /// Keeps only the items `keep` says are still referenced: an item nobody uses is not
    /// held (with its files) for ever.
    pub(crate) fn retain(&self, keep: impl Fn(&ItemKey) -> bool) {
        self.slots.lock().expect("item cache lock").retain(|key, _| keep(key));
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.lock().expect("item cache lock").len()
    }

    /// The keys of the cached items that `select` picks (copied: the cache holds thousands).
    pub(crate) fn keys_where(&self, select: impl Fn(&ItemKey) -> bool) -> HashSet<ItemKey> {
        let slots = self.slots.lock().expect("item cache lock");
        slots.keys().filter(|key| select(key)).cloned().collect()
    }
}

pub(crate) async fn fetch_item(
    client: &ConnectClient,
    key: &ItemKey,
    previous: Option<&CachedItem>,
) -> Result<CachedItem, ConnectError> {
    let full = client.get_item(&key.vault_id, &key.item_id).await?;
    // Files do not change without a new item version: reuse what we have.
    let files = match previous.filter(|p| p.item.version == full.version) {
        Some(previous) => previous.files.clone(),
        None => fetch_files(client, key, &full).await?,
    };
    Ok(CachedItem {
        item: ItemData::from(&full),
        files,
    })
}

/// One inline listing when every file is small; one content call per file otherwise.
async fn fetch_files(
    client: &ConnectClient,
    key: &ItemKey,
    item: &FullItem,
) -> Result<BTreeMap<String, Vec<u8>>, ConnectError> {
    let mut files = BTreeMap::new();
    if item.files.is_empty() {
        return Ok(files);
    }
    // A Secret holds at most 1 MiB: files that cannot fit are never downloaded.
    let listed: u64 = item.files.iter().map(|f| f.size).sum();
    if listed > MAX_SECRET_BYTES as u64 {
        return Err(ConnectError::TooLarge {
            endpoint: "list_files",
            detail: format!(
                "the item's files take {listed} bytes, and a Secret holds at most {MAX_SECRET_BYTES}; they were not downloaded"
            ),
        });
    }
    if item.files.iter().all(|f| f.size <= INLINE_LIMIT_BYTES) {
        match client.list_files(&key.vault_id, &key.item_id, true).await {
            Ok(listed) => {
                for file in listed {
                    if let Some(content) = file.content {
                        files.insert(file.id, content);
                    }
                }
                if files.len() == item.files.len() {
                    return Ok(files);
                }
            }
            // The server's inline limit is lower than Connect's default: fall back.
            Err(ConnectError::PayloadTooLarge { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    for file in &item.files {
        if !files.contains_key(&file.id) {
            let bytes = client.get_file_content(&key.vault_id, &key.item_id, &file.id).await?;
            files.insert(file.id.clone(), bytes.to_vec());
        }
    }
    Ok(files)
}
