//! Title-or-id resolution with the Go operator's rules, made explicit about ambiguity.
//!
//! Vault: by title first (case-insensitive), then as an id if it looks like one.
//! Item: as an id first if it looks like one, then by title. Several matches: the oldest
//! `createdAt` wins (Go's choice), and the others are reported so the caller can warn
//! instead of silently flapping.
//!
//! [`resolve_vault`] and [`resolve_item`] ask Connect for each reference. A caller that
//! resolves many references builds a [`TitleIndex`] from one listing instead (the vaults the
//! token sees, or the items of one vault) and resolves them all with the same rules.

use std::collections::HashMap;

use crate::client::ConnectClient;
use crate::error::ConnectError;
use crate::filter::Filter;
use crate::models::{ItemSummary, Vault, is_valid_id};

/// The outcome of resolving a title or id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub id: String,
    /// Title (vault name) of the chosen object.
    pub title: String,
    /// Ids of other objects with the same title, oldest first; empty when unambiguous.
    pub also_matched: Vec<String>,
}

impl Resolved {
    pub fn is_ambiguous(&self) -> bool {
        !self.also_matched.is_empty()
    }
}

/// Resolves a vault title or id to a vault id.
pub async fn resolve_vault(client: &ConnectClient, reference: &str) -> Result<Resolved, ConnectError> {
    let listed = client.list_vaults(Some(&Filter::name_eq(reference))).await?;
    if let Some(resolved) = TitleIndex::of_vaults(&listed).vault(reference) {
        return Ok(resolved);
    }
    if is_valid_id(reference) {
        let vault = client.get_vault(reference).await?;
        return Ok(Resolved {
            id: vault.id,
            title: vault.name,
            also_matched: Vec::new(),
        });
    }
    Err(ConnectError::NotFound {
        endpoint: "resolve_vault",
        message: format!("no vault named {reference:?} is visible to the token"),
    })
}

/// Resolves an item title or id inside a vault to an item id.
pub async fn resolve_item(client: &ConnectClient, vault_id: &str, reference: &str) -> Result<Resolved, ConnectError> {
    if is_valid_id(reference) {
        match client.get_item(vault_id, reference).await {
            Ok(item) => {
                return Ok(Resolved {
                    id: item.item.id,
                    title: item.item.title,
                    also_matched: Vec::new(),
                });
            }
            // A 26-character title looks like an id: fall back to a title lookup.
            Err(err) if err.is_not_found() || matches!(err, ConnectError::BadRequest { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    let listed = client
        .list_item_summaries(vault_id, Some(&Filter::title_eq(reference)))
        .await?;
    TitleIndex::of_items(&listed)
        .item(reference)
        .ok_or_else(|| ConnectError::NotFound {
            endpoint: "resolve_item",
            message: format!("no item titled {reference:?} in vault {vault_id}"),
        })
}

/// An object of a listing, as resolution needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    id: Box<str>,
    title: Box<str>,
    created_at: Option<jiff::Timestamp>,
}

/// The titles and ids of one listing, to resolve references without further calls. Kept
/// small: it may hold every item of a large vault.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TitleIndex {
    entries: Vec<Entry>,
    /// Lower-cased title → the entries with that title.
    by_title: HashMap<Box<str>, Vec<u32>>,
    /// Id → its entry.
    by_id: HashMap<Box<str>, u32>,
}

impl TitleIndex {
    fn new(objects: impl Iterator<Item = (Entry, bool)>) -> Self {
        let mut index = Self::default();
        for (entry, by_title) in objects {
            let position = u32::try_from(index.entries.len()).expect("fewer than 2^32 objects");
            index.by_id.insert(entry.id.clone(), position);
            if by_title {
                index
                    .by_title
                    .entry(entry.title.to_lowercase().into())
                    .or_default()
                    .push(position);
            }
            index.entries.push(entry);
        }
        index.entries.shrink_to_fit();
        index
    }

    /// The vaults a token sees (`GET /v1/vaults`).
    pub fn of_vaults(vaults: &[Vault]) -> Self {
        Self::new(vaults.iter().map(|v| {
            let entry = Entry {
                id: v.id.as_str().into(),
                title: v.name.as_str().into(),
                created_at: v.created_at,
            };
            (entry, true)
        }))
    }

    /// The items of a vault (`GET /v1/vaults/{id}/items`); only active items count by title,
    /// as with [`resolve_item`].
    pub fn of_items(items: &[ItemSummary]) -> Self {
        Self::new(items.iter().map(|i| {
            let entry = Entry {
                id: i.id.as_str().into(),
                title: i.title.as_str().into(),
                created_at: i.created_at,
            };
            (entry, i.state.is_none())
        }))
    }

    fn by_title(&self, reference: &str) -> Option<Resolved> {
        let positions = self.by_title.get(reference.to_lowercase().as_str())?;
        oldest(
            positions
                .iter()
                .map(|p| &self.entries[*p as usize])
                .map(|e| (&*e.id, &*e.title, e.created_at))
                .collect(),
        )
    }

    fn by_id(&self, reference: &str) -> Option<Resolved> {
        if !is_valid_id(reference) {
            return None;
        }
        let entry = &self.entries[*self.by_id.get(reference)? as usize];
        Some(Resolved {
            id: entry.id.to_string(),
            title: entry.title.to_string(),
            also_matched: Vec::new(),
        })
    }

    /// A vault reference, with [`resolve_vault`]'s rules: by title first, then as an id.
    pub fn vault(&self, reference: &str) -> Option<Resolved> {
        self.by_title(reference).or_else(|| self.by_id(reference))
    }

    /// An item reference, with [`resolve_item`]'s rules: as an id first, then by title.
    pub fn item(&self, reference: &str) -> Option<Resolved> {
        self.by_id(reference).or_else(|| self.by_title(reference))
    }

    /// How many objects the listing had.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Oldest first; ties broken by id so the choice never depends on list order.
fn oldest(mut matches: Vec<(&str, &str, Option<jiff::Timestamp>)>) -> Option<Resolved> {
    matches.sort_by(|a, b| (a.2.is_none(), a.2, a.0).cmp(&(b.2.is_none(), b.2, b.0)));
    let mut iter = matches.into_iter();
    let (id, title, _) = iter.next()?;
    Some(Resolved {
        id: id.to_owned(),
        title: title.to_owned(),
        also_matched: iter.map(|m| m.0.to_owned()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Option<jiff::Timestamp> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn oldest_wins_and_others_are_reported() {
        let resolved = oldest(vec![
            ("b", "DB", ts("2024-01-02T00:00:00Z")),
            ("c", "db", None),
            ("a", "Db", ts("2024-01-01T00:00:00Z")),
        ])
        .unwrap();
        assert_eq!(resolved.id, "a");
        assert_eq!(resolved.also_matched, vec!["b", "c"]);
        assert!(resolved.is_ambiguous());
    }

    fn vault(id: &str, name: &str, created: &str) -> Vault {
        Vault {
            id: id.into(),
            name: name.into(),
            created_at: ts(created),
            ..Vault::default()
        }
    }

    fn item(id: &str, title: &str, created: &str) -> ItemSummary {
        ItemSummary {
            id: id.into(),
            title: title.into(),
            created_at: ts(created),
            ..ItemSummary::default()
        }
    }

    const ID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaa";
    const ID_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn an_index_resolves_vaults_by_title_first_and_items_by_id_first() {
        // A vault titled like another vault's id: the title wins, as with resolve_vault.
        let vaults = TitleIndex::of_vaults(&[
            vault(ID_A, "Prod", "2024-01-01T00:00:00Z"),
            vault(ID_B, ID_A, "2024-01-02T00:00:00Z"),
        ]);
        assert_eq!(vaults.vault(ID_A).unwrap().id, ID_B);
        assert_eq!(vaults.vault("prod").unwrap().id, ID_A, "titles are case-insensitive");
        assert_eq!(vaults.vault(ID_B).unwrap().title, ID_A, "an id that is no title");
        assert_eq!(vaults.vault("Staging"), None);

        // An item titled like another item's id: the id wins, as with resolve_item.
        let items = TitleIndex::of_items(&[
            item(ID_A, "DB", "2024-01-01T00:00:00Z"),
            item(ID_B, ID_A, "2024-01-02T00:00:00Z"),
        ]);
        assert_eq!(items.item(ID_A).unwrap().id, ID_A);
        assert_eq!(items.item("db").unwrap().id, ID_A);
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn an_index_reports_duplicate_titles_and_ignores_archived_items_by_title() {
        let mut archived = item("cccccccccccccccccccccccccc", "DB", "2023-01-01T00:00:00Z");
        archived.state = Some(crate::models::ItemState::Archived);
        let items = TitleIndex::of_items(&[
            item(ID_B, "DB", "2024-01-02T00:00:00Z"),
            item(ID_A, "db", "2024-01-01T00:00:00Z"),
            archived,
        ]);
        let resolved = items.item("DB").unwrap();
        assert_eq!(
            (resolved.id.as_str(), resolved.also_matched.clone()),
            (ID_A, vec![ID_B.to_string()])
        );
    }

    #[test]
    fn equal_timestamps_break_ties_by_id() {
        let t = ts("2024-01-01T00:00:00Z");
        let resolved = oldest(vec![("z", "x", t), ("m", "x", t)]).unwrap();
        assert_eq!(resolved.id, "m");
        assert_eq!(oldest(vec![]), None);
    }
}
