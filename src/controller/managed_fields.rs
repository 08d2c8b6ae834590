//! Which labels and annotations of a Secret are ours, read from its `managedFields`.
//!
//! Labels and annotations come from the OnePasswordItem, so they can be taken away; the
//! Secret keeps other people's, and loses only those our field manager set. A Secret we
//! created with a plain create is owned by an `Update` entry of our manager, and
//! server-side apply never removes what an `Update` entry owns: before an apply that drops
//! one of ours, that entry is folded into our `Apply` entry (as client-go's csaupgrade does
//! for kubectl).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use serde_json::{Map, Value};

use crate::annotations::FIELD_MANAGER;

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";

fn is_ours(entry: &ManagedFieldsEntry, operation: &str) -> bool {
    entry.manager.as_deref() == Some(FIELD_MANAGER)
        && entry.operation.as_deref() == Some(operation)
        && entry.subresource.as_deref().unwrap_or_default().is_empty()
}

/// The keys of `metadata.<field>` (`labels` or `annotations`) that one entry owns.
fn owned_keys<'a>(entry: &'a ManagedFieldsEntry, field: &str) -> impl Iterator<Item = &'a str> {
    entry
        .fields_v1
        .as_ref()
        .and_then(|f| f.0.get("f:metadata"))
        .and_then(|m| m.get(format!("f:{field}")))
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|keys| keys.keys())
        .filter_map(|key| key.strip_prefix("f:"))
}

/// Labels and annotations that our field manager set on `existing`, that it still has, and
/// that `desired` no longer has: the write must take them away.
pub(crate) fn dropped_metadata(existing: &Secret, desired: &Secret) -> Vec<String> {
    type Keys<'a> = Option<&'a BTreeMap<String, String>>;
    let (has, wants) = (&existing.metadata, &desired.metadata);
    let fields: [(&str, Keys, Keys); 2] = [
        ("labels", has.labels.as_ref(), wants.labels.as_ref()),
        ("annotations", has.annotations.as_ref(), wants.annotations.as_ref()),
    ];
    let mut dropped = Vec::new();
    for entry in existing.metadata.managed_fields.iter().flatten() {
        if !is_ours(entry, APPLY) && !is_ours(entry, UPDATE) {
            continue;
        }
        for (field, has, wants) in fields {
            for key in owned_keys(entry, field) {
                let present = has.is_some_and(|h| h.contains_key(key));
                let wanted = wants.is_some_and(|w| w.contains_key(key));
                if present && !wanted {
                    // Named only when dropped: this runs on every comparison.
                    let named = format!("{field}/{key}");
                    if !dropped.contains(&named) {
                        dropped.push(named);
                    }
                }
            }
        }
    }
    dropped
}

/// `existing`'s managed fields with our `Update` entry folded into our `Apply` entry, so that
/// an apply can remove what the create set; `None` when there is no such entry.
pub(crate) fn folded_into_apply(existing: &Secret) -> Option<Vec<ManagedFieldsEntry>> {
    let mut entries = existing.metadata.managed_fields.clone()?;
    let update = entries.iter().position(|e| is_ours(e, UPDATE))?;
    let mut created = entries.remove(update);
    match entries.iter_mut().find(|e| is_ours(e, APPLY)) {
        Some(applied) => {
            let owned = applied
                .fields_v1
                .get_or_insert_with(|| FieldsV1(Value::Object(Map::new())));
            if let Some(more) = &created.fields_v1 {
                union(&mut owned.0, &more.0);
            }
        }
        None => {
            created.operation = Some(APPLY.to_owned());
            entries.insert(update, created);
        }
    }
    Some(entries)
}

/// Adds the field set `more` to `into` (both in the `FieldsV1` trie format).
fn union(into: &mut Value, more: &Value) {
    let (Some(into), Some(more)) = (into.as_object_mut(), more.as_object()) else {
        return;
    };
    for (key, value) in more {
        match into.get_mut(key) {
            Some(existing) => union(existing, value),
            None => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            api_version: Some("v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            ..ManagedFieldsEntry::default()
        }
    }

    fn secret(labels: &[&str], annotations: &[&str], entries: Vec<ManagedFieldsEntry>) -> Secret {
        let map = |keys: &[&str]| Some(keys.iter().map(|k| (k.to_string(), "v".to_string())).collect());
        let mut secret = Secret::default();
        secret.metadata.labels = map(labels);
        secret.metadata.annotations = map(annotations);
        secret.metadata.managed_fields = Some(entries);
        secret
    }

    fn labels_owned(keys: &[&str]) -> Value {
        let keys: Map<String, Value> = keys.iter().map(|k| (format!("f:{k}"), json!({}))).collect();
        json!({ "f:metadata": { "f:labels": keys }, "f:data": { "f:password": {} } })
    }

    #[test]
    fn only_our_labels_and_annotations_are_dropped() {
        let existing = secret(
            &["team", "theirs", "managed"],
            &["operator.1password.io/auto-restart"],
            vec![
                entry(FIELD_MANAGER, UPDATE, labels_owned(&["team", "managed"])),
                entry(
                    FIELD_MANAGER,
                    APPLY,
                    json!({ "f:metadata": { "f:annotations": {
                    "f:operator.1password.io/auto-restart": {} } } }),
                ),
                entry("kubectl-edit", UPDATE, labels_owned(&["theirs"])),
            ],
        );
        let desired = secret(&["managed"], &[], vec![]);
        assert_eq!(
            dropped_metadata(&existing, &desired),
            ["labels/team", "annotations/operator.1password.io/auto-restart"]
        );
        let same = secret(&["team", "managed"], &["operator.1password.io/auto-restart"], vec![]);
        assert!(dropped_metadata(&existing, &same).is_empty());
        let status_only = secret(
            &["team"],
            &[],
            vec![ManagedFieldsEntry {
                subresource: Some("status".into()),
                ..entry(FIELD_MANAGER, UPDATE, labels_owned(&["team"]))
            }],
        );
        assert!(dropped_metadata(&status_only, &desired).is_empty());
    }

    #[test]
    fn a_label_already_gone_is_not_dropped_again() {
        let existing = secret(&[], &[], vec![entry(FIELD_MANAGER, APPLY, labels_owned(&["team"]))]);
        assert!(dropped_metadata(&existing, &secret(&[], &[], vec![])).is_empty());
    }

    #[test]
    fn the_create_entry_becomes_our_apply_entry() {
        let kubectl = entry("kubectl-edit", UPDATE, labels_owned(&["theirs"]));
        let existing = secret(
            &[],
            &[],
            vec![entry(FIELD_MANAGER, UPDATE, labels_owned(&["team"])), kubectl.clone()],
        );
        assert_eq!(
            folded_into_apply(&existing).unwrap(),
            [entry(FIELD_MANAGER, APPLY, labels_owned(&["team"])), kubectl]
        );
        let applied_only = secret(&[], &[], vec![entry(FIELD_MANAGER, APPLY, labels_owned(&["team"]))]);
        assert_eq!(folded_into_apply(&applied_only), None);
    }

    #[test]
    fn a_create_entry_next_to_an_apply_entry_is_merged_into_it() {
        let existing = secret(
            &[],
            &[],
            vec![
                entry(FIELD_MANAGER, APPLY, labels_owned(&["team"])),
                entry(FIELD_MANAGER, UPDATE, labels_owned(&["old"])),
            ],
        );
        let folded = folded_into_apply(&existing).unwrap();
        assert_eq!(folded.len(), 1);
        assert_eq!(folded[0].operation.as_deref(), Some(APPLY));
        assert_eq!(folded[0].fields_v1.as_ref().unwrap().0, labels_owned(&["old", "team"]));
    }
}
