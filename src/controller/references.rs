//! The items a OnePasswordItem references: the one at `itemPath` (the main item) and each
//! entry of `items`, with the ids and version its status keeps for each. The first
//! reference is the primary one: the Secret's `item-path` and `item-version` annotations and
//! the top-level status fields describe it (the main item, or else the first entry).

use super::build::{BuiltSecret, ItemSource, MappingOptions, SecretTarget, build_secret};
use super::error::Error;
use super::fetch::{CachedItem, ItemKey};
use super::resolve::ItemRef;
use crate::crd::{ItemStatus, OnePasswordItem, SecretField};

/// One referenced item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reference<'a> {
    /// The entry's name in `items`; `None` for the main item.
    pub name: Option<&'a str>,
    pub path: ItemRef<'a>,
    /// The keys to select from it; empty for every key (the main item's templates aside).
    pub fields: &'a [SecretField],
    /// The ids status holds for this very path.
    pub ids: Option<ItemKey>,
    /// The item version the Secret holds, as status says.
    pub held_version: Option<u64>,
}

/// A reference as resolved: which item its path named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedRef {
    pub name: Option<String>,
    pub path: String,
    pub key: ItemKey,
}

impl Reference<'_> {
    pub(crate) fn resolved(&self, key: &ItemKey) -> ResolvedRef {
        ResolvedRef {
            name: self.name.map(str::to_owned),
            path: self.path.path.to_owned(),
            key: key.clone(),
        }
    }
}

impl ResolvedRef {
    /// Its entry in `status.items`, holding `item_version`; `None` for the main item, which
    /// the top-level status fields describe.
    pub(crate) fn item_status(&self, item_version: Option<u64>) -> Option<ItemStatus> {
        Some(ItemStatus {
            name: self.name.clone()?,
            resolved_item_path: Some(self.path.clone()),
            vault_id: Some(self.key.vault_id.clone()),
            item_id: Some(self.key.item_id.clone()),
            item_version,
        })
    }
}

/// The Secret of the referenced items, fetched in the same order with the ids each
/// resolved to; a build error carries those ids, for status.
pub(crate) fn build_for(
    target: &SecretTarget,
    references: &[Reference<'_>],
    fetched: &[(&ItemKey, &CachedItem)],
    mapping: MappingOptions,
) -> Result<BuiltSecret, Error> {
    let sources: Vec<ItemSource<'_>> = references
        .iter()
        .zip(fetched)
        .map(|(r, (key, cached))| ItemSource {
            name: r.name,
            vault_id: &key.vault_id,
            item: &cached.item,
            files: &cached.files,
            fields: r.fields,
        })
        .collect();
    build_secret(target, &sources, mapping).map_err(|source| Error::Build {
        resolved: references
            .iter()
            .zip(fetched)
            .map(|(r, (key, _))| r.resolved(key))
            .collect(),
        source,
    })
}

/// Every item `opi` references, the primary one first.
pub(crate) fn references(opi: &OnePasswordItem) -> Result<Vec<Reference<'_>>, Error> {
    let mut references = Vec::with_capacity(1 + opi.spec.items.len());
    if !opi.spec.item_path.is_empty() || opi.spec.items.is_empty() {
        let path = ItemRef::parse(&opi.spec.item_path)?;
        let ids = path.ids_in_status(opi);
        let held_version = ids
            .as_ref()
            .and_then(|_| opi.status.as_ref().and_then(|s| s.item_version));
        references.push(Reference {
            name: None,
            path,
            fields: &opi.spec.fields,
            ids,
            held_version,
        });
    }
    for entry in &opi.spec.items {
        let path = ItemRef::parse(&entry.item_path)?;
        let held = item_status(opi, &entry.name).filter(|s| s.resolved_item_path.as_deref() == Some(path.path));
        let ids = held.and_then(|s| {
            Some(ItemKey {
                vault_id: s.vault_id.clone()?,
                item_id: s.item_id.clone()?,
            })
        });
        references.push(Reference {
            name: Some(&entry.name),
            path,
            fields: &entry.fields,
            held_version: ids.as_ref().and_then(|_| held.and_then(|s| s.item_version)),
            ids,
        });
    }
    Ok(references)
}

/// The status of the entry of `items` with this name.
pub(crate) fn item_status<'a>(opi: &'a OnePasswordItem, name: &str) -> Option<&'a ItemStatus> {
    opi.status.as_ref()?.items.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ItemReference, OnePasswordItemSpec, OnePasswordItemStatus};

    fn opi(item_path: &str, items: &[(&str, &str)]) -> OnePasswordItem {
        OnePasswordItem::new(
            "app",
            OnePasswordItemSpec {
                items: items
                    .iter()
                    .map(|(name, path)| ItemReference {
                        name: (*name).into(),
                        item_path: (*path).into(),
                        fields: Vec::new(),
                    })
                    .collect(),
                ..OnePasswordItemSpec::item(item_path)
            },
        )
    }

    fn key(vault: &str, item: &str) -> ItemKey {
        ItemKey {
            vault_id: vault.into(),
            item_id: item.into(),
        }
    }

    #[test]
    fn the_main_item_comes_first_then_the_entries_in_order() {
        let o = opi(
            "vaults/v/items/main",
            &[("api", "vaults/v/items/a"), ("db", "vaults/w/items/d")],
        );
        let refs = references(&o).unwrap();
        let names: Vec<_> = refs.iter().map(|r| (r.name, r.path.path)).collect();
        assert_eq!(
            names,
            [
                (None, "vaults/v/items/main"),
                (Some("api"), "vaults/v/items/a"),
                (Some("db"), "vaults/w/items/d")
            ]
        );
        let only_items = opi("", &[("api", "vaults/v/items/a")]);
        assert_eq!(
            references(&only_items).unwrap()[0].name,
            Some("api"),
            "the first entry is primary"
        );
        assert!(references(&opi("", &[])).is_err(), "nothing referenced");
        assert!(references(&opi("vaults/v/items/main", &[("bad", "not/a/path")])).is_err());
    }

    #[test]
    fn ids_and_versions_come_from_status_for_the_same_path_only() {
        let mut o = opi(
            "vaults/v/items/main",
            &[("api", "vaults/v/items/a"), ("db", "vaults/w/items/d")],
        );
        o.status = Some(OnePasswordItemStatus {
            resolved_item_path: Some("vaults/v/items/main".into()),
            vault_id: Some("V".into()),
            item_id: Some("M".into()),
            item_version: Some(3),
            items: vec![
                ItemStatus {
                    name: "api".into(),
                    resolved_item_path: Some("vaults/v/items/a".into()),
                    vault_id: Some("V".into()),
                    item_id: Some("A".into()),
                    item_version: Some(7),
                },
                ItemStatus {
                    name: "db".into(),
                    resolved_item_path: Some("vaults/w/items/OLD".into()),
                    vault_id: Some("W".into()),
                    item_id: Some("D".into()),
                    item_version: Some(1),
                },
            ],
            ..OnePasswordItemStatus::default()
        });
        let refs = references(&o).unwrap();
        assert_eq!(
            (refs[0].ids.clone(), refs[0].held_version),
            (Some(key("V", "M")), Some(3))
        );
        assert_eq!(
            (refs[1].ids.clone(), refs[1].held_version),
            (Some(key("V", "A")), Some(7))
        );
        assert_eq!(
            (refs[2].ids.clone(), refs[2].held_version),
            (None, None),
            "its path changed: resolved again"
        );
    }
}
