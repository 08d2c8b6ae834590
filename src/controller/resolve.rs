//! Resolve: `itemPath` to the vault and item ids. The ids in status are reused while the path
//! is the same, so that a steady resource costs no lookup; a new path, or ids Connect no
//! longer knows, are looked up by title or id (the oldest of items with the same title, as
//! in 1Password's Go operator).

use super::error::Error;
use super::fetch::ItemKey;
use crate::connect::{ConnectClient, ConnectError, resolve_item, resolve_vault};
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

/// Looks the vault and the item up in Connect.
pub(crate) async fn resolve(connect: &ConnectClient, path: &ItemRef<'_>) -> Result<Resolved, Error> {
    let vault = resolve_vault(connect, path.vault)
        .await
        .map_err(|source| match source {
            source @ ConnectError::NotFound { .. } => Error::VaultNotFound {
                vault: path.vault.into(),
                source,
            },
            other => other.into(),
        })?;
    let item = resolve_item(connect, &vault.id, path.item)
        .await
        .map_err(|e| path.item_not_found(e))?;
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
        let mut opi = OnePasswordItem::new(
            "app",
            OnePasswordItemSpec {
                item_path: "vaults/v/items/i".into(),
            },
        );
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
