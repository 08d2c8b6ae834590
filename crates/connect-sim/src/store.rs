//! The simulator's vaults and items, with the real server's versioning rules: an item's
//! `version` grows by one on every saved change, and its vault's `contentVersion` grows on
//! every create, update or delete in it.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use bytes::Bytes;
use indexmap::IndexMap;
use jiff::Timestamp;

use super::data::DataFile;
use super::error::ApiError;
use super::generate::{generate, random_id, stable_id};
use super::patch;
use onepassword_connect::models::{
    Category, Field, FieldPurpose, FieldType, File, FullItem, Item, PasswordDetails, PatchOp, SectionRef, Vault,
    VaultRef, VaultType, is_valid_id,
};

/// One item and what is served for it.
#[derive(Debug)]
pub struct StoredItem {
    pub item: FullItem,
    /// File id → bytes.
    pub contents: HashMap<String, Bytes>,
    /// The encoded item, kept so that reads cost no encoding.
    pub json: Bytes,
}

impl StoredItem {
    fn new(item: FullItem, contents: HashMap<String, Bytes>) -> Self {
        let json = Bytes::from(serde_json::to_vec(&item).expect("items encode"));
        Self { item, contents, json }
    }

    /// The item as served now: the kept encoding, or, for an item with one-time-password
    /// fields, a fresh one with their current codes.
    pub fn response(&self) -> Bytes {
        if !self.item.fields.iter().any(is_otp) {
            return self.json.clone();
        }
        Bytes::from(serde_json::to_vec(&with_current_totp(self.item.clone())).expect("items encode"))
    }
}

fn is_otp(field: &Field) -> bool {
    field.field_type == Some(FieldType::Otp)
}

/// Fills `totp` of every OTP field with the code its `otpauth://` URI gives now (RFC 6238),
/// as the real server does; both official SDKs read it. A URI that is not a valid TOTP
/// URI gives no code.
pub fn with_current_totp(mut item: FullItem) -> FullItem {
    for field in item.fields.iter_mut().filter(|f| is_otp(f)) {
        field.totp = totp_rs::Totp::from_url_unchecked(&field.value)
            .ok()
            .map(|totp| totp.generate_current().to_string());
    }
    item
}

#[derive(Debug)]
pub struct StoredVault {
    pub vault: Vault,
    pub items: IndexMap<String, StoredItem>,
}

#[derive(Debug, Default)]
pub struct Store {
    pub vaults: IndexMap<String, StoredVault>,
}

impl Store {
    /// Builds the store from a data file; relative file paths are read from `base_dir`.
    pub fn from_data(data: &DataFile, base_dir: &Path) -> Result<Self, String> {
        let now = Timestamp::now();
        let mut store = Store::default();
        let mut vault_names = HashSet::new();
        for spec in &data.vaults {
            let id = spec.id.clone().unwrap_or_else(|| stable_id(&["vault", &spec.name]));
            if !is_valid_id(&id) {
                return Err(format!(
                    "vault {:?}: id {id:?} must be 26 characters of a-z and 0-9",
                    spec.name
                ));
            }
            if !vault_names.insert(spec.name.to_lowercase()) || store.vaults.contains_key(&id) {
                return Err(format!("vault {:?} is defined twice", spec.name));
            }
            let mut vault = StoredVault {
                vault: Vault {
                    id: id.clone(),
                    name: spec.name.clone(),
                    description: spec.description.clone(),
                    attribute_version: 1,
                    content_version: 1,
                    items: 0,
                    vault_type: Some(spec.vault_type.clone().unwrap_or(VaultType::UserCreated)),
                    created_at: Some(now),
                    updated_at: Some(now),
                },
                items: IndexMap::new(),
            };
            let mut titles_seen: HashMap<&str, usize> = HashMap::new();
            for (index, item_spec) in spec.items.iter().enumerate() {
                // Items count as created in file order, a millisecond apart, so that "the
                // oldest of several items with one title" is the first one in the file.
                let created = now
                    .checked_add(jiff::SignedDuration::from_millis(
                        index as i64 - spec.items.len() as i64,
                    ))
                    .unwrap_or(now);
                let context = |e: String| format!("vault {:?}, item {:?}: {e}", spec.name, item_spec.title);
                // Items may share a title (that is how ambiguity is tested): number the repeats.
                let nth = titles_seen.entry(&item_spec.title).or_default();
                let mut id_parts = vec!["item", id.as_str(), item_spec.title.as_str()];
                let nth_text = nth.to_string();
                if *nth > 0 {
                    id_parts.push(&nth_text);
                }
                *nth += 1;
                let item_id = item_spec.id.clone().unwrap_or_else(|| stable_id(&id_parts));
                if !is_valid_id(&item_id) || vault.items.contains_key(&item_id) {
                    return Err(context(format!("id {item_id:?} is malformed or used twice")));
                }
                let fields = item_spec
                    .fields
                    .iter()
                    .map(|f| Field {
                        id: f.id.clone().unwrap_or_default(),
                        section: f.section.clone().map(|id| SectionRef { id }),
                        field_type: f.field_type.clone(),
                        purpose: f.purpose.clone(),
                        label: f.label.clone(),
                        value: f.value.clone(),
                        ..Field::default()
                    })
                    .collect();
                let mut item = FullItem {
                    item: Item {
                        id: item_id.clone(),
                        title: item_spec.title.clone(),
                        vault: VaultRef { id: id.clone() },
                        category: Some(item_spec.category.clone().unwrap_or(Category::Login)),
                        urls: item_spec.urls.clone(),
                        favorite: item_spec.favorite,
                        tags: item_spec.tags.clone(),
                        version: 1,
                        created_at: Some(created),
                        updated_at: Some(created),
                        ..Item::default()
                    },
                    sections: item_spec.sections.clone(),
                    fields,
                    files: Vec::new(),
                };
                prepare_fields(&mut item).map_err(|e| context(e.message))?;
                let mut contents = HashMap::new();
                for file_spec in &item_spec.files {
                    let bytes = file_spec.bytes(base_dir).map_err(context)?;
                    let file_id = file_spec
                        .id
                        .clone()
                        .unwrap_or_else(|| stable_id(&["file", &item_id, &file_spec.name]));
                    if !is_valid_id(&file_id) || contents.contains_key(&file_id) {
                        return Err(context(format!("file id {file_id:?} is malformed or used twice")));
                    }
                    item.files.push(File {
                        id: file_id.clone(),
                        name: file_spec.name.clone(),
                        size: bytes.len() as u64,
                        content_path: content_path(&id, &item_id, &file_id),
                        section: file_spec.section.clone().map(|id| SectionRef { id }),
                        content: None,
                    });
                    contents.insert(file_id, Bytes::from(bytes));
                }
                vault.items.insert(item_id, StoredItem::new(item, contents));
            }
            vault.vault.items = vault.items.len() as u64;
            store.vaults.insert(id, vault);
        }
        Ok(store)
    }

    /// The id of a vault given by name (case-insensitive) or id.
    pub fn vault_id_of(&self, name_or_id: &str) -> Option<String> {
        if self.vaults.contains_key(name_or_id) {
            return Some(name_or_id.to_owned());
        }
        self.vaults
            .values()
            .find(|v| v.vault.name.eq_ignore_ascii_case(name_or_id))
            .map(|v| v.vault.id.clone())
    }

    pub fn vault(&self, vault_id: &str) -> Option<&StoredVault> {
        self.vaults.get(vault_id)
    }

    pub fn item(&self, vault_id: &str, item_id: &str) -> Result<&StoredItem, ApiError> {
        self.vaults
            .get(vault_id)
            .and_then(|v| v.items.get(item_id))
            .ok_or_else(|| ApiError::item_not_found(item_id))
    }

    fn vault_mut(&mut self, vault_id: &str) -> Result<&mut StoredVault, ApiError> {
        // Callers check access first, and access implies the vault exists.
        self.vaults
            .get_mut(vault_id)
            .ok_or_else(|| ApiError::vault_forbidden(vault_id))
    }

    /// `POST …/items`: a new item at version 1.
    pub fn create_item(&mut self, vault_id: &str, body: FullItem, actor: &str) -> Result<FullItem, ApiError> {
        if !body.vault.id.is_empty() && body.vault.id != vault_id {
            return Err(ApiError::bad_request(format!(
                "vault id {:?} in the body does not match the vault {vault_id} in the path",
                body.vault.id
            )));
        }
        match &body.category {
            None => return Err(ApiError::bad_request("the item category is required")),
            Some(Category::Custom | Category::Document) => {
                return Err(ApiError::bad_request(
                    "items of category CUSTOM or DOCUMENT cannot be created",
                ));
            }
            Some(Category::Unknown(other)) => {
                return Err(ApiError::bad_request(format!("unknown item category {other:?}")));
            }
            Some(_) => {}
        }
        let now = Timestamp::now();
        let mut item = FullItem {
            item: Item {
                id: random_id(),
                vault: VaultRef {
                    id: vault_id.to_owned(),
                },
                version: 1,
                state: None,
                created_at: Some(now),
                updated_at: Some(now),
                last_edited_by: actor.to_owned(),
                ..body.item
            },
            sections: body.sections,
            fields: body.fields,
            files: Vec::new(),
        };
        if item.category == Some(Category::Login) && !item.fields.iter().any(|f| f.purpose == Some(FieldPurpose::Notes))
        {
            // The LOGIN template always has a notes field.
            item.fields.push(Field {
                id: "notesPlain".into(),
                purpose: Some(FieldPurpose::Notes),
                label: "notesPlain".into(),
                ..Field::default()
            });
        }
        prepare_fields(&mut item)?;
        let vault = self.vault_mut(vault_id)?;
        let created = item.clone();
        vault
            .items
            .insert(item.id.clone(), StoredItem::new(item, HashMap::new()));
        vault.vault.items = vault.items.len() as u64;
        bump_vault(&mut vault.vault, now);
        Ok(created)
    }

    /// `PUT …/items/{item}`: replaces content; id, vault, files and createdAt are kept.
    pub fn replace_item(
        &mut self,
        vault_id: &str,
        item_id: &str,
        body: FullItem,
        actor: &str,
    ) -> Result<FullItem, ApiError> {
        if !body.id.is_empty() && body.id != item_id {
            return Err(ApiError::bad_request(format!(
                "item id {:?} in the body does not match the path",
                body.id
            )));
        }
        if !body.vault.id.is_empty() && body.vault.id != vault_id {
            return Err(ApiError::bad_request(format!(
                "vault id {:?} in the body does not match the path",
                body.vault.id
            )));
        }
        self.update(vault_id, item_id, actor, |current| {
            let category = body.category.clone().or_else(|| current.category.clone());
            Ok(FullItem {
                item: Item {
                    category,
                    ..body.item.clone()
                },
                sections: body.sections.clone(),
                fields: body.fields.clone(),
                files: Vec::new(),
            })
        })
    }

    /// `PATCH …/items/{item}`: all operations or none; no operation, no new version.
    pub fn patch_item(
        &mut self,
        vault_id: &str,
        item_id: &str,
        ops: &[PatchOp],
        actor: &str,
    ) -> Result<FullItem, ApiError> {
        if ops.is_empty() {
            return Ok(self.item(vault_id, item_id)?.item.clone());
        }
        self.update(vault_id, item_id, actor, |current| {
            patch::apply(current, ops).map_err(ApiError::bad_request)
        })
    }

    /// `DELETE …/items/{item}`.
    pub fn delete_item(&mut self, vault_id: &str, item_id: &str) -> Result<(), ApiError> {
        let vault = self.vault_mut(vault_id)?;
        vault
            .items
            .shift_remove(item_id)
            .ok_or_else(|| ApiError::item_not_found(item_id))?;
        vault.vault.items = vault.items.len() as u64;
        bump_vault(&mut vault.vault, Timestamp::now());
        Ok(())
    }

    /// Builds the next state of an item with `change`, then stamps it with the server-owned
    /// keys and a new version. Nothing is stored when `change` or validation fails.
    fn update(
        &mut self,
        vault_id: &str,
        item_id: &str,
        actor: &str,
        change: impl FnOnce(&FullItem) -> Result<FullItem, ApiError>,
    ) -> Result<FullItem, ApiError> {
        let vault = self.vault_mut(vault_id)?;
        let stored = vault
            .items
            .get_mut(item_id)
            .ok_or_else(|| ApiError::item_not_found(item_id))?;
        let current = &stored.item;
        let mut next = change(current)?;
        // As PUT does: an item keeps its category when the new body names none.
        if next.item.category.is_none() {
            next.item.category = current.item.category.clone();
        }
        let now = Timestamp::now();
        next.item.id = current.id.clone();
        next.item.vault = current.vault.clone();
        next.item.version = current.version + 1;
        next.item.state = current.state.clone();
        next.item.created_at = current.created_at;
        next.item.updated_at = Some(now);
        next.item.last_edited_by = actor.to_owned();
        next.files = current.files.clone();
        prepare_fields(&mut next)?;
        let contents = std::mem::take(&mut stored.contents);
        *stored = StoredItem::new(next.clone(), contents);
        bump_vault(&mut vault.vault, now);
        Ok(next)
    }
}

fn bump_vault(vault: &mut Vault, now: Timestamp) {
    vault.content_version += 1;
    vault.updated_at = Some(now);
}

pub fn content_path(vault_id: &str, item_id: &str, file_id: &str) -> String {
    format!("/v1/vaults/{vault_id}/items/{item_id}/files/{file_id}/content")
}

/// What the server does to submitted sections and fields: ids for those without one
/// (words for built-in purposes), default types and labels, generated values, and checks.
pub fn prepare_fields(item: &mut FullItem) -> Result<(), ApiError> {
    for section in &mut item.sections {
        if section.id.is_empty() {
            section.id = random_id();
        }
    }
    let section_ids: HashSet<String> = item.sections.iter().map(|s| s.id.clone()).collect();
    let mut used: HashSet<String> = item
        .fields
        .iter()
        .filter(|f| !f.id.is_empty())
        .map(|f| f.id.clone())
        .collect();
    let mut seen = HashSet::new();
    for field in &mut item.fields {
        if field.id.is_empty() {
            let word = match field.purpose {
                Some(FieldPurpose::Username) => Some("username"),
                Some(FieldPurpose::Password) => Some("password"),
                Some(FieldPurpose::Notes) => Some("notesPlain"),
                _ => None,
            };
            field.id = match word {
                Some(word) if !used.contains(word) => word.to_owned(),
                _ => random_id(),
            };
            used.insert(field.id.clone());
        }
        if !seen.insert(field.id.clone()) {
            return Err(ApiError::bad_request(format!("field id {:?} is used twice", field.id)));
        }
        if let Some(section) = &field.section
            && !section.id.is_empty()
            && !section_ids.contains(&section.id)
        {
            return Err(ApiError::bad_request(format!(
                "field {:?} refers to unknown section {:?}",
                field.id, section.id
            )));
        }
        if field.field_type.is_none() {
            field.field_type = Some(if field.purpose == Some(FieldPurpose::Password) {
                FieldType::Concealed
            } else {
                FieldType::String
            });
        }
        if field.label.is_empty() {
            field.label = match field.purpose {
                Some(FieldPurpose::Username) => "username".into(),
                Some(FieldPurpose::Password) => "password".into(),
                Some(FieldPurpose::Notes) => "notesPlain".into(),
                _ => String::new(),
            };
        }
        if field.generate {
            let generated = generate(field.recipe.as_ref()).map_err(ApiError::bad_request)?;
            field.value = generated.value;
            field.entropy = Some(generated.entropy);
            field.password_details = Some(PasswordDetails {
                entropy: Some(generated.entropy.floor()),
                generated: true,
                strength: strength(generated.entropy).into(),
                history: Vec::new(),
            });
            field.generate = false;
        }
        // Input only: never stored or echoed.
        field.recipe = None;
        // Computed when served, never stored.
        field.totp = None;
    }
    Ok(())
}

fn strength(entropy: f64) -> &'static str {
    match entropy {
        e if e < 33.0 => "TERRIBLE",
        e if e < 45.0 => "WEAK",
        e if e < 60.0 => "FAIR",
        e if e < 75.0 => "GOOD",
        e if e < 100.0 => "VERY_GOOD",
        e if e < 130.0 => "EXCELLENT",
        _ => "FANTASTIC",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onepassword_connect::models::GeneratorRecipe;
    use serde_json::json;

    const DATA: &str = r#"
tokens: []
vaults:
  - name: Demo
    items:
      - title: DB
        fields:
          - { label: username, value: admin, purpose: USERNAME }
          - { label: password, value: pw, purpose: PASSWORD }
        files:
          - { name: a.txt, content: hello }
"#;

    fn store() -> (Store, String, String) {
        let store = Store::from_data(&DataFile::parse(DATA).unwrap(), Path::new(".")).unwrap();
        let vault_id = store.vault_id_of("demo").unwrap();
        let item_id = store.vaults[&vault_id].items.keys().next().unwrap().clone();
        (store, vault_id, item_id)
    }

    fn new_login(fields: Vec<Field>) -> FullItem {
        FullItem {
            item: Item {
                title: "New".into(),
                category: Some(Category::Login),
                ..Item::default()
            },
            fields,
            ..FullItem::default()
        }
    }

    #[test]
    fn loaded_data_has_ids_versions_and_files() {
        let (store, vault_id, item_id) = store();
        let stored = store.item(&vault_id, &item_id).unwrap();
        assert_eq!(stored.item.version, 1);
        assert_eq!(stored.item.fields[0].id, "username");
        assert_eq!(stored.item.fields[1].field_type, Some(FieldType::Concealed));
        let file = &stored.item.files[0];
        assert_eq!(file.size, 5);
        assert_eq!(
            file.content_path,
            format!("/v1/vaults/{vault_id}/items/{item_id}/files/{}/content", file.id)
        );
        assert_eq!(stored.contents[&file.id].as_ref(), b"hello");
        assert_eq!(store.vaults[&vault_id].vault.items, 1);
    }

    #[test]
    fn create_starts_at_version_one_and_bumps_the_vault() {
        let (mut store, vault_id, _) = store();
        let before = store.vaults[&vault_id].vault.content_version;
        let generated = Field {
            purpose: Some(FieldPurpose::Password),
            generate: true,
            recipe: Some(GeneratorRecipe {
                length: Some(20),
                ..GeneratorRecipe::default()
            }),
            ..Field::default()
        };
        let username = Field {
            purpose: Some(FieldPurpose::Username),
            value: "me".into(),
            ..Field::default()
        };
        let created = store
            .create_item(&vault_id, new_login(vec![username, generated]), "ACTOR")
            .unwrap();
        assert_eq!(created.version, 1);
        assert_eq!(created.last_edited_by, "ACTOR");
        let ids: Vec<_> = created.fields.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            ["username", "password", "notesPlain"],
            "LOGIN template adds notesPlain"
        );
        assert_eq!(created.fields[1].value.len(), 20);
        assert!(!created.fields[1].generate);
        assert_eq!(store.vaults[&vault_id].vault.content_version, before + 1);
        assert_eq!(store.vaults[&vault_id].vault.items, 2);
    }

    #[test]
    fn create_refuses_bad_bodies() {
        let (mut store, vault_id, _) = store();
        let mut doc = new_login(vec![]);
        doc.category = Some(Category::Document);
        assert_eq!(store.create_item(&vault_id, doc, "a").unwrap_err().status, 400);
        let mut other_vault = new_login(vec![]);
        other_vault.vault.id = "x".repeat(26);
        assert_eq!(store.create_item(&vault_id, other_vault, "a").unwrap_err().status, 400);
        let bad_section = Field {
            section: Some(SectionRef { id: "nope".into() }),
            ..Field::default()
        };
        assert_eq!(
            store
                .create_item(&vault_id, new_login(vec![bad_section]), "a")
                .unwrap_err()
                .status,
            400
        );
        let bad_recipe = Field {
            generate: true,
            recipe: Some(GeneratorRecipe {
                length: Some(99),
                ..GeneratorRecipe::default()
            }),
            ..Field::default()
        };
        assert_eq!(
            store
                .create_item(&vault_id, new_login(vec![bad_recipe]), "a")
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn replace_and_patch_bump_versions_and_keep_server_owned_keys() {
        let (mut store, vault_id, item_id) = store();
        let original = store.item(&vault_id, &item_id).unwrap().item.clone();
        let mut body = original.clone();
        body.title = "Renamed".into();
        body.version = 77;
        body.files.clear();
        let replaced = store.replace_item(&vault_id, &item_id, body, "B").unwrap();
        assert_eq!((replaced.version, replaced.title.as_str()), (2, "Renamed"));
        assert_eq!(replaced.files, original.files, "files survive a PUT");
        assert_eq!(replaced.created_at, original.created_at);

        let patched = store
            .patch_item(
                &vault_id,
                &item_id,
                &[PatchOp::replace("/fields/password/value", json!("new"))],
                "C",
            )
            .unwrap();
        assert_eq!(patched.version, 3);
        assert_eq!(store.item(&vault_id, &item_id).unwrap().item.fields[1].value, "new");
        assert_eq!(store.vaults[&vault_id].vault.content_version, 3);

        let unchanged = store.patch_item(&vault_id, &item_id, &[], "C").unwrap();
        assert_eq!(unchanged.version, 3, "an empty patch saves nothing");
    }

    #[test]
    fn replacing_the_whole_item_keeps_its_category_and_recipes_are_never_stored() {
        let (mut store, vault_id, item_id) = store();
        let mut without_category = serde_json::to_value(&store.item(&vault_id, &item_id).unwrap().item).unwrap();
        without_category.as_object_mut().unwrap().remove("category");
        let patched = store
            .patch_item(&vault_id, &item_id, &[PatchOp::replace("/", without_category)], "C")
            .unwrap();
        assert_eq!(patched.category, Some(Category::Login), "as PUT does");

        let with_recipe = Field {
            label: "pin".into(),
            value: "1234".into(),
            recipe: Some(GeneratorRecipe {
                length: Some(8),
                ..GeneratorRecipe::default()
            }),
            ..Field::default()
        };
        let created = store.create_item(&vault_id, new_login(vec![with_recipe]), "a").unwrap();
        assert_eq!(created.fields[0].value, "1234", "no generate: the value is kept");
        assert!(
            created.fields.iter().all(|f| f.recipe.is_none()),
            "the recipe is input only"
        );
        let stored = &store.item(&vault_id, &created.id).unwrap().json;
        assert!(!String::from_utf8_lossy(stored).contains("recipe"));
    }

    #[test]
    fn otp_fields_are_served_with_their_current_code_which_is_never_stored() {
        let (mut store, vault_id, _) = store();
        let otp = Field {
            label: "one-time password".into(),
            field_type: Some(FieldType::Otp),
            value: "otpauth://totp/Example:alice?secret=JBSWY3DPEHPK3PXP&issuer=Example".into(),
            totp: Some("999999".into()),
            ..Field::default()
        };
        let created = store.create_item(&vault_id, new_login(vec![otp]), "a").unwrap();
        let stored = store.item(&vault_id, &created.id).unwrap();
        assert_eq!(stored.item.fields[0].totp, None);
        let served: FullItem = serde_json::from_slice(&stored.response()).unwrap();
        let code = served.fields[0].totp.clone().expect("a current code");
        assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "{code}");
        assert_eq!(
            with_current_totp(stored.item.clone()).fields[0]
                .totp
                .as_deref()
                .map(str::len),
            Some(6)
        );
    }

    #[test]
    fn a_failed_patch_changes_nothing() {
        let (mut store, vault_id, item_id) = store();
        let ops = [
            PatchOp::replace("/title", json!("x")),
            PatchOp::remove("/fields/missing"),
        ];
        assert_eq!(
            store.patch_item(&vault_id, &item_id, &ops, "C").unwrap_err().status,
            400
        );
        let stored = store.item(&vault_id, &item_id).unwrap();
        assert_eq!((stored.item.version, stored.item.title.as_str()), (1, "DB"));
        assert_eq!(store.vaults[&vault_id].vault.content_version, 1);
    }

    #[test]
    fn delete_removes_and_bumps() {
        let (mut store, vault_id, item_id) = store();
        store.delete_item(&vault_id, &item_id).unwrap();
        assert_eq!(store.item(&vault_id, &item_id).unwrap_err().status, 404);
        assert_eq!(store.delete_item(&vault_id, &item_id).unwrap_err().status, 404);
        assert_eq!(store.vaults[&vault_id].vault.content_version, 2);
        assert_eq!(store.vaults[&vault_id].vault.items, 0);
    }
}
