//! Title-or-id resolution with the Go operator's rules, made explicit about ambiguity.
//!
//! Vault: by title first (case-insensitive), then as an id if it looks like one.
//! Item: as an id first if it looks like one, then by title. Several matches: the oldest
//! `createdAt` wins (Go's choice), and the others are reported so the caller can warn
//! instead of silently flapping.

use crate::client::ConnectClient;
use crate::error::ConnectError;
use crate::filter::Filter;
use crate::models::{Item, Vault, is_valid_id};

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
    let matches: Vec<(&str, &str, Option<jiff::Timestamp>)> = listed
        .iter()
        .filter(|v: &&Vault| v.name.to_lowercase() == reference.to_lowercase())
        .map(|v| (v.id.as_str(), v.name.as_str(), v.created_at))
        .collect();
    if let Some(resolved) = oldest(matches) {
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
    let listed = client.list_items(vault_id, Some(&Filter::title_eq(reference))).await?;
    let matches = listed
        .iter()
        .filter(|i: &&Item| i.state.is_none() && i.title.to_lowercase() == reference.to_lowercase())
        .map(|i| (i.id.as_str(), i.title.as_str(), i.created_at))
        .collect();
    oldest(matches).ok_or_else(|| ConnectError::NotFound {
        endpoint: "resolve_item",
        message: format!("no item titled {reference:?} in vault {vault_id}"),
    })
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

    #[test]
    fn equal_timestamps_break_ties_by_id() {
        let t = ts("2024-01-01T00:00:00Z");
        let resolved = oldest(vec![("z", "x", t), ("m", "x", t)]).unwrap();
        assert_eq!(resolved.id, "m");
        assert_eq!(oldest(vec![]), None);
    }
}
