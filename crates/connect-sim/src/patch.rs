//! Connect's PATCH: RFC 6902 `add`/`remove`/`replace` on an item, where fields are
//! addressed by **id** (`/fields/{fieldId}/value`), not by index.
//!
//! Each operation's path is translated to a plain JSON Pointer against the working copy,
//! then applied with `json-patch`. The copy is only returned when every operation
//! succeeded, so a request applies all of its operations or none.

use json_patch::{AddOperation, PatchOperation as JsonOp, RemoveOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

use onepassword_connect::models::{FullItem, PatchOp, PatchOperation};

/// Top-level keys a PATCH may touch; the rest are server-owned.
const EDITABLE: &[&str] = &["title", "favorite", "tags", "urls", "fields", "sections", "category"];
/// Keys kept from the stored item when `/` is replaced as a whole.
const SERVER_OWNED: &[&str] = &[
    "id",
    "vault",
    "version",
    "createdAt",
    "updatedAt",
    "lastEditedBy",
    "files",
    "state",
];

/// Applies `ops` to a copy of `item`. Errors are 400 messages.
pub fn apply(item: &FullItem, ops: &[PatchOp]) -> Result<FullItem, String> {
    let original = serde_json::to_value(item).map_err(|e| e.to_string())?;
    let mut doc = original.clone();
    for (index, op) in ops.iter().enumerate() {
        apply_one(&mut doc, &original, op).map_err(|e| format!("operation {index} ({} {}): {e}", op.op, op.path))?;
    }
    serde_json::from_value(doc).map_err(|e| format!("the patched item is not a valid item: {e}"))
}

fn apply_one(doc: &mut Value, original: &Value, op: &PatchOp) -> Result<(), String> {
    let value = || op.value.clone().ok_or_else(|| "a value is required".to_owned());
    let tokens = split_pointer(&op.path)?;
    if tokens.is_empty() {
        // `/` (or ""): the whole item, like PUT. Server-owned keys survive.
        return match op.op {
            PatchOperation::Add | PatchOperation::Replace => {
                let Value::Object(mut replacement) = value()? else {
                    return Err("the whole item must be replaced by an object".into());
                };
                for key in SERVER_OWNED {
                    match original.get(*key) {
                        Some(kept) => replacement.insert((*key).to_owned(), kept.clone()),
                        None => replacement.remove(*key),
                    };
                }
                *doc = Value::Object(replacement);
                Ok(())
            }
            _ => Err("the item itself cannot be removed; use DELETE".into()),
        };
    }
    if !EDITABLE.contains(&tokens[0].as_str()) {
        return Err(format!("{:?} cannot be patched", tokens[0]));
    }
    let mut translated = tokens.clone();
    if tokens[0] == "fields" && tokens.len() >= 2 && tokens[1] != "-" {
        let fields = doc.get("fields").and_then(Value::as_array);
        let index = fields
            .and_then(|fields| {
                fields
                    .iter()
                    .position(|f| f.get("id").and_then(Value::as_str) == Some(tokens[1].as_str()))
            })
            .ok_or_else(|| format!("field {:?} not found", tokens[1]))?;
        translated[1] = index.to_string();
    }
    if tokens.len() == 1
        && tokens[0] == "fields"
        && op.op == PatchOperation::Add
        && matches!(op.value, Some(Value::Object(_)))
    {
        // `add /fields` with one field object appends it (the server assigns its id).
        translated.push("-".into());
    }
    // Keys are omitted when empty: an absent one is created so that `add …/-` and
    // `replace /tags` work on an item that has none yet.
    if let Some(obj) = doc.as_object_mut()
        && (translated.len() == 1 || translated[1] == "-")
    {
        let empty = if translated.len() == 2 {
            Value::Array(Vec::new())
        } else {
            Value::Null
        };
        obj.entry(tokens[0].clone()).or_insert(empty);
    }
    let path = PointerBuf::from_tokens(translated.iter().map(String::as_str));
    let json_op = match &op.op {
        PatchOperation::Add => JsonOp::Add(AddOperation { path, value: value()? }),
        PatchOperation::Replace => JsonOp::Replace(ReplaceOperation { path, value: value()? }),
        PatchOperation::Remove => JsonOp::Remove(RemoveOperation { path }),
        PatchOperation::Unknown(other) => {
            return Err(format!("unsupported operation {other:?}; only add, remove and replace"));
        }
    };
    json_patch::patch(doc, &[json_op]).map_err(|e| e.to_string())
}

/// Splits an RFC 6901 pointer into unescaped tokens; `""` and `"/"` both mean the item.
fn split_pointer(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() || path == "/" {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err("paths must start with '/'".into());
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use onepassword_connect::models::{Field, Item, VaultRef};
    use proptest::prelude::*;
    use serde_json::json;

    fn field(id: &str, label: &str, value: &str) -> Field {
        Field {
            id: id.into(),
            label: label.into(),
            value: value.into(),
            ..Field::default()
        }
    }

    fn item() -> FullItem {
        FullItem {
            item: Item {
                id: "item".into(),
                title: "DB".into(),
                vault: VaultRef { id: "vault".into() },
                version: 4,
                ..Item::default()
            },
            fields: vec![
                field("username", "username", "admin"),
                field("password", "password", "pw"),
                field("xk2", "host", "db.local"),
            ],
            ..FullItem::default()
        }
    }

    #[test]
    fn fields_are_addressed_by_id() {
        let patched = apply(&item(), &[PatchOp::replace("/fields/password/value", json!("new"))]).unwrap();
        assert_eq!(patched.fields[1].value, "new");
        let patched = apply(&item(), &[PatchOp::remove("/fields/xk2")]).unwrap();
        assert_eq!(
            patched.fields.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
            ["username", "password"]
        );
        let patched = apply(
            &item(),
            &[PatchOp::replace(
                "/fields/xk2",
                json!({"id": "xk2", "label": "host", "value": "h2"}),
            )],
        )
        .unwrap();
        assert_eq!(patched.fields[2].value, "h2");
    }

    #[test]
    fn add_fields_appends_and_scalar_paths_work() {
        let patched = apply(
            &item(),
            &[
                PatchOp::add("/fields", json!({"label": "port", "value": "5432"})),
                PatchOp::replace("/title", json!("Prod DB")),
                PatchOp::add("/tags", json!(["prod"])),
                PatchOp::add("/tags/-", json!("db")),
                PatchOp::replace("/favorite", json!(true)),
                PatchOp::add("/urls/-", json!({"href": "https://db.local", "primary": true})),
            ],
        )
        .unwrap();
        assert_eq!(patched.fields.len(), 4);
        assert_eq!(patched.fields[3].label, "port");
        assert_eq!(patched.title, "Prod DB");
        assert_eq!(patched.tags, ["prod", "db"]);
        assert!(patched.favorite);
        assert_eq!(patched.urls[0].href, "https://db.local");
    }

    #[test]
    fn replacing_the_whole_item_keeps_server_owned_keys() {
        let patched = apply(
            &item(),
            &[PatchOp::replace(
                "/",
                json!({"id": "evil", "version": 99, "title": "New", "fields": []}),
            )],
        )
        .unwrap();
        assert_eq!(patched.id, "item");
        assert_eq!(patched.version, 4);
        assert_eq!(patched.title, "New");
        assert!(patched.fields.is_empty());
    }

    #[test]
    fn invalid_operations_are_refused_with_reasons() {
        let cases = [
            (
                PatchOp {
                    op: PatchOperation::Unknown("move".into()),
                    path: "/title".into(),
                    value: None,
                },
                "only add, remove and replace",
            ),
            (PatchOp::replace("/version", json!(7)), "cannot be patched"),
            (PatchOp::replace("/fields/nope/value", json!("x")), "not found"),
            (PatchOp::remove("/"), "DELETE"),
            (
                PatchOp {
                    op: PatchOperation::Replace,
                    path: "/title".into(),
                    value: None,
                },
                "value is required",
            ),
            (PatchOp::replace("title", json!("x")), "must start with '/'"),
            (PatchOp::replace("/title", json!(42)), "not a valid item"),
        ];
        for (op, reason) in cases {
            let err = apply(&item(), std::slice::from_ref(&op)).unwrap_err();
            assert!(err.contains(reason), "{op:?}: {err}");
        }
    }

    fn arb_label() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 ]{1,12}"
    }

    proptest! {
        #[test]
        fn a_failing_operation_leaves_nothing_applied(title in arb_label(), value in arb_label()) {
            let ops = [
                PatchOp::replace("/title", json!(title)),
                PatchOp::replace("/fields/password/value", json!(value)),
                PatchOp::remove("/fields/missing"),
            ];
            prop_assert!(apply(&item(), &ops).is_err());
        }

        #[test]
        fn add_then_remove_restores_the_fields(label in arb_label(), value in arb_label()) {
            let added = apply(&item(), &[PatchOp::add("/fields", json!({"id": "newfield", "label": label, "value": value}))]).unwrap();
            prop_assert_eq!(added.fields.len(), 4);
            let removed = apply(&added, &[PatchOp::remove("/fields/newfield")]).unwrap();
            prop_assert_eq!(removed.fields, item().fields);
        }

        #[test]
        fn replace_value_touches_only_that_field(value in "\\PC{0,20}", target in 0usize..3) {
            let id = item().fields[target].id.clone();
            let patched = apply(&item(), &[PatchOp::replace(format!("/fields/{id}/value"), json!(value))]).unwrap();
            for (i, (before, after)) in item().fields.iter().zip(&patched.fields).enumerate() {
                if i == target { prop_assert_eq!(&after.value, &value); } else { prop_assert_eq!(before, after); }
            }
        }
    }
}
