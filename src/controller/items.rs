//! Items and their file bytes, shared by every resource that points at the same item and
//! kept so that a hand-edited Secret is repaired without a Connect call.
//!
//! Concurrent requests for one item are coalesced: they wait on the item's slot while one
//! of them fetches. Entries do not expire by age: the poller invalidates an item whose
//! version moved, and a 404 on a cached id drops it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::connect::models::FullItem;
use crate::connect::{ConnectClient, ConnectError};

/// Largest file fetched inline with the file list (Connect's default inline limit).
const INLINE_LIMIT_BYTES: u64 = 100 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub vault_id: String,
    pub item_id: String,
}

/// An item as fetched, with the bytes of its files by file id.
#[derive(Debug)]
pub struct CachedItem {
    pub item: FullItem,
    pub files: BTreeMap<String, Vec<u8>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<CachedItem>>>>;

#[derive(Debug, Default)]
pub struct ItemCache {
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

    /// The item, from cache when present, else from Connect.
    pub async fn get(&self, client: &ConnectClient, key: &ItemKey) -> Result<Arc<CachedItem>, ConnectError> {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if let Some(item) = cached.as_ref() {
            return Ok(item.clone());
        }
        let fetched = Arc::new(fetch(client, key, cached.as_deref()).await?);
        *cached = Some(fetched.clone());
        Ok(fetched)
    }

    /// The cached item, whatever its age, without calling Connect.
    pub fn peek(&self, key: &ItemKey) -> Option<Arc<CachedItem>> {
        let slot = self.slots.lock().expect("item cache lock").get(key)?.clone();
        slot.try_lock().ok()?.clone()
    }

    /// Forgets an item, so that its next use fetches it.
    pub fn invalidate(&self, key: &ItemKey) {
        self.slots.lock().expect("item cache lock").remove(key);
    }
}

async fn fetch(
    client: &ConnectClient,
    key: &ItemKey,
    previous: Option<&CachedItem>,
) -> Result<CachedItem, ConnectError> {
    let item = compact(client.get_item(&key.vault_id, &key.item_id).await?);
    // Files do not change without a new item version: reuse what we have.
    let files = match previous.filter(|p| p.item.version == item.version) {
        Some(previous) => previous.files.clone(),
        None => fetch_files(client, key, &item).await?,
    };
    Ok(CachedItem { item, files })
}

/// Keeps what Secrets are built from (labels and values of fields, URLs, files, tags and the
/// item's own facts) and drops the rest: sections, generator recipes, password details and
/// one-time codes. Lists lose their spare capacity, which a decoded list keeps and which is
/// 320 bytes per unused field slot (at 10,000 cached items, 6 MB).
fn compact(mut item: FullItem) -> FullItem {
    item.sections = Vec::new();
    for field in &mut item.fields {
        field.section = None;
        field.recipe = None;
        field.password_details = None;
        field.totp = None;
        field.entropy = None;
    }
    item.fields.shrink_to_fit();
    item.files.shrink_to_fit();
    item.item.urls.shrink_to_fit();
    item.item.tags.shrink_to_fit();
    item
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::models::{Field, GeneratorRecipe, Section};

    #[test]
    fn the_cache_keeps_what_secrets_are_built_from() {
        let mut item = FullItem::default();
        item.item.version = 7;
        item.item.tags = vec!["prod".into()];
        item.sections = vec![Section {
            id: "s".into(),
            label: "Extra".into(),
        }];
        item.fields = Vec::with_capacity(16);
        for (label, value) in [("username", "u"), ("password", "p")] {
            item.fields.push(Field {
                id: label.into(),
                label: label.into(),
                value: value.into(),
                recipe: Some(GeneratorRecipe::default()),
                totp: Some("123456".into()),
                entropy: Some(80.0),
                ..Field::default()
            });
        }
        let compacted = compact(item.clone());
        assert_eq!(compacted.item.version, 7);
        assert_eq!(compacted.item.tags, ["prod"]);
        assert!(compacted.sections.is_empty());
        assert_eq!(compacted.fields.capacity(), 2, "no spare slots");
        let kept: Vec<(&str, &str)> = compacted
            .fields
            .iter()
            .map(|f| (f.label.as_str(), f.value.as_str()))
            .collect();
        assert_eq!(kept, [("username", "u"), ("password", "p")]);
        assert!(
            compacted
                .fields
                .iter()
                .all(|f| f.recipe.is_none() && f.totp.is_none() && f.entropy.is_none())
        );
        let options = crate::secret::MappingOptions::default();
        let target = |item: &FullItem| crate::secret::build_data(item, &BTreeMap::new(), options);
        assert_eq!(target(&compacted), target(&item), "the same Secret data either way");
    }
}
