//! Build: the pure mapping from a 1Password item (and its file bytes) to the Secret that
//! holds it, exactly as 1Password's Go operator does it, with the collisions it hides made
//! visible. No client: everything here is covered by small tests.
//!
//! Order of precedence, as in Go:
//! 1. URLs, by label (unlabelled ones skipped); within one label a later URL replaces an
//!    earlier one unless only the earlier one is primary (so with two primaries the last wins).
//! 2. Fields in API order; a later field overwrites an earlier field or URL with the same
//!    key. Sections are ignored. An OTP field gives its `otpauth://` URI (its `value`), not
//!    the current code.
//! 3. Files: only fill a key that is still empty.
//!
//! Empty values (a field's value, a URL's `href`, a 0-byte file) are skipped unless
//! `allow_empty_values`, as Go's `--allow-empty-values` does.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use kube::{Resource, ResourceExt};

use super::select::{SelectError, select};
use super::template::{NamedItem, TemplateError, render};
use crate::annotations::{
    AUTO_RESTART, ITEM_NAME, ITEM_PATH, ITEM_VERSION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, OPERATOR_PREFIX,
};
use crate::connect::models::FullItem;
use crate::crd::{OnePasswordItem, SecretField};

/// Kubernetes' limit on a Secret's data.
pub(crate) const MAX_SECRET_BYTES: usize = 1024 * 1024;
/// Longest Secret data key.
pub(crate) const MAX_KEY_LENGTH: usize = 253;

/// The parts of an item a Secret is built from, and all the controller caches of an item:
/// about a quarter of a decoded item's memory (320 bytes per field slot in `FullItem`, with
/// sections, generator recipes, password details and one-time codes that no Secret uses).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ItemData {
    pub id: Box<str>,
    pub version: u64,
    pub tags: Box<[Box<str>]>,
    pub sections: Box<[SectionData]>,
    pub urls: Box<[UrlData]>,
    pub fields: Box<[FieldData]>,
    pub files: Box<[FileData]>,
}

// Held for every cached item, so kept small: boxed strings and slices, 8 bytes less than
// `String` and `Vec` each (at 10,000 items, about 1 MiB).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UrlData {
    pub label: Box<str>,
    pub href: Box<str>,
    pub primary: bool,
}

/// A section of an item: what `spec.fields[].section` names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SectionData {
    pub id: Box<str>,
    pub label: Box<str>,
}

#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldData {
    pub id: Box<str>,
    pub label: Box<str>,
    /// The id of the field's section, if any.
    pub section: Option<Box<str>>,
    pub value: Box<str>,
}

/// Values are secret: `Debug` shows only whether there is one.
impl std::fmt::Debug for FieldData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.value.is_empty() { "<empty>" } else { "<redacted>" };
        f.debug_struct("FieldData")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("section", &self.section)
            .field("value", &value)
            .finish()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileData {
    pub id: Box<str>,
    pub name: Box<str>,
}

impl ItemData {
    pub(crate) fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| &**t == tag)
    }
}

impl From<&FullItem> for ItemData {
    /// Copies what the mapping reads; every list and string is allocated to its exact size.
    fn from(item: &FullItem) -> Self {
        let text = |s: &String| Box::<str>::from(s.as_str());
        Self {
            id: text(&item.id),
            version: item.version,
            tags: item.tags.iter().map(text).collect(),
            sections: item
                .sections
                .iter()
                .map(|s| SectionData {
                    id: text(&s.id),
                    label: text(&s.label),
                })
                .collect(),
            urls: item
                .urls
                .iter()
                .map(|u| UrlData {
                    label: text(&u.label),
                    href: text(&u.href),
                    primary: u.primary,
                })
                .collect(),
            fields: item
                .fields
                .iter()
                .map(|f| FieldData {
                    id: text(&f.id),
                    label: text(&f.label),
                    section: f.section.as_ref().map(|s| text(&s.id)),
                    value: text(&f.value),
                })
                .collect(),
            files: item
                .files
                .iter()
                .map(|f| FileData {
                    id: text(&f.id),
                    name: text(&f.name),
                })
                .collect(),
        }
    }
}

/// Where a key's value came from; used to describe collisions without showing values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Url { label: String },
    Field { label: String },
    File { name: String },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url { label } => write!(f, "URL {label:?}"),
            Self::Field { label } => write!(f, "field {label:?}"),
            Self::File { name } => write!(f, "file {name:?}"),
        }
    }
}

/// Two or more sources mapped to one key; `winner` is what the Secret holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Collision {
    pub key: String,
    pub winner: Source,
    pub losers: Vec<Source>,
}

impl std::fmt::Display for Collision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let losers: Vec<String> = self.losers.iter().map(ToString::to_string).collect();
        write!(
            f,
            "key {:?} holds {} (ignored: {})",
            self.key,
            self.winner,
            losers.join(", ")
        )
    }
}

/// The Secret data built from an item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SecretData {
    pub data: BTreeMap<String, Vec<u8>>,
    pub collisions: Vec<Collision>,
    /// Labels and file names that sanitize to nothing, so no key was made for them.
    pub skipped: Vec<Source>,
}

impl SecretData {
    pub(crate) fn total_bytes(&self) -> usize {
        self.data.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// Options that change the mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MappingOptions {
    /// Keep fields whose value is empty (Go: `--allow-empty-values`).
    pub allow_empty_values: bool,
}

/// Builds Secret data from an item and the bytes of its files (by file id).
pub(crate) fn build_data(item: &ItemData, files: &BTreeMap<String, Vec<u8>>, options: MappingOptions) -> SecretData {
    let mut out = SecretData::default();
    // key → every source that wrote it, in order; the last is the winner.
    let mut writers: BTreeMap<String, Vec<Source>> = BTreeMap::new();
    let mut url_is_primary: BTreeMap<String, bool> = BTreeMap::new();

    for url in &item.urls {
        if url.label.is_empty() {
            continue;
        }
        let source = Source::Url {
            label: url.label.to_string(),
        };
        let Some(key) = sanitize_key(&url.label) else {
            out.skipped.push(source);
            continue;
        };
        if url.href.is_empty() && !options.allow_empty_values {
            continue;
        }
        // Go's rule: a later URL of the same label replaces the kept one, unless only the
        // kept one is primary.
        let replace = match url_is_primary.get(&key) {
            None => true,
            Some(kept_primary) => url.primary || !kept_primary,
        };
        let entry = writers.entry(key.clone()).or_default();
        if replace {
            out.data.insert(key.clone(), url.href.as_bytes().to_vec());
            url_is_primary.insert(key, url.primary);
            entry.push(source);
        } else {
            entry.insert(entry.len().saturating_sub(1), source);
        }
    }

    for field in &item.fields {
        if field.value.is_empty() && !options.allow_empty_values {
            continue;
        }
        let source = Source::Field {
            label: field.label.to_string(),
        };
        let Some(key) = sanitize_key(&field.label) else {
            out.skipped.push(source);
            continue;
        };
        out.data.insert(key.clone(), field.value.as_bytes().to_vec());
        writers.entry(key).or_default().push(source);
    }

    for file in &item.files {
        let source = Source::File {
            name: file.name.to_string(),
        };
        let Some(key) = sanitize_key(&file.name) else {
            out.skipped.push(source);
            continue;
        };
        let Some(bytes) = files.get(&*file.id) else { continue };
        if bytes.is_empty() && !options.allow_empty_values {
            continue;
        }
        let entry = writers.entry(key.clone()).or_default();
        match out.data.entry(key) {
            // A file only fills a key that is still empty: it loses to what is there.
            std::collections::btree_map::Entry::Occupied(_) => entry.insert(0, source),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(bytes.clone());
                entry.push(source);
            }
        }
    }

    for (key, mut sources) in writers {
        if sources.len() > 1 {
            let winner = sources.pop().expect("non-empty");
            out.collisions.push(Collision {
                key,
                winner,
                losers: sources,
            });
        }
    }
    out
}

/// A valid Secret data key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`,
/// not starting with `..`.
pub(crate) fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LENGTH
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && key != "."
        && !key.starts_with("..")
}

/// Go's key sanitization: a valid key is kept verbatim (case included); otherwise leading
/// and trailing runs of other characters are dropped, inner runs become `-`, and the
/// result is cut to 253. `None` when nothing valid is left.
pub(crate) fn sanitize_key(label: &str) -> Option<String> {
    if is_valid_key(label) {
        return Some(label.to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    let trimmed = label.trim_matches(|c: char| !allowed(c));
    let mut key = String::with_capacity(trimmed.len());
    let mut in_run = false;
    for c in trimmed.chars() {
        if allowed(c) {
            key.push(c);
            in_run = false;
        } else if !in_run {
            key.push('-');
            in_run = true;
        }
    }
    key.truncate(MAX_KEY_LENGTH);
    is_valid_key(&key).then_some(key)
}

/// Where the Secret goes and what it copies from the resource that asks for it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SecretTarget {
    pub name: String,
    pub namespace: String,
    /// Controller reference to the OnePasswordItem (or workload) that owns the Secret.
    pub owner: OwnerReference,
    /// Labels copied onto the Secret.
    pub labels: BTreeMap<String, String>,
    /// Annotations copied onto the Secret (`auto-restart`, `item-name`, and the resource's
    /// own with `--enable-annotations`); the operator's own annotations override them.
    pub annotations: BTreeMap<String, String>,
    /// Secret type; `Opaque` when absent or empty.
    pub secret_type: Option<String>,
    /// `spec.template.data`: keys rendered from templates. With neither these nor `fields`,
    /// the Secret holds every key of the main item.
    pub templates: BTreeMap<String, String>,
}

impl SecretTarget {
    /// The Secret of a OnePasswordItem: same name and namespace, its labels, the annotations
    /// [`secret_annotations`] passes on, owned by it. No blockOwnerDeletion, as in Go:
    /// clusters with the OwnerReferencesPermissionEnforcement admission plugin (OpenShift)
    /// would require `update` on onepassworditems/finalizers for it, and it only makes a
    /// foreground deletion wait for the Secret, which the garbage collector deletes anyway.
    /// `spec.template.metadata` adds labels and annotations over the copied ones.
    pub(crate) fn for_item(opi: &OnePasswordItem, copy_annotations: bool) -> Self {
        let mut labels = opi.labels().clone();
        let mut annotations = secret_annotations(opi.annotations(), copy_annotations);
        let template = opi.spec.template.as_ref();
        if let Some(metadata) = template.and_then(|t| t.metadata.as_ref()) {
            labels.extend(metadata.labels.clone());
            annotations.extend(metadata.annotations.clone());
        }
        Self {
            name: opi.name_any(),
            namespace: opi.namespace().unwrap_or_default(),
            owner: opi.controller_owner_ref(&()).expect("stored objects have a uid"),
            labels,
            annotations,
            secret_type: opi.secret_type.clone(),
            templates: template.map(|t| t.data.clone()).unwrap_or_default(),
        }
    }
}

/// The annotations a OnePasswordItem passes on to its Secret. `auto-restart` and `item-name`
/// always (as 1Password's Go operator does); with `copy_all` (Go's `--enable-annotations`)
/// every other one too, except kubectl's bookkeeping and the operator's own keys.
pub(crate) fn secret_annotations(annotations: &BTreeMap<String, String>, copy_all: bool) -> BTreeMap<String, String> {
    annotations
        .iter()
        .filter(|(key, _)| {
            *key == AUTO_RESTART
                || *key == ITEM_NAME
                || (copy_all
                    && !key.starts_with("kubectl.kubernetes.io/")
                    && !key.starts_with(&format!("{OPERATOR_PREFIX}/")))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Why no Secret could be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("the item's data takes {bytes} bytes, over the {MAX_SECRET_BYTES}-byte limit of a Secret")]
    TooLarge { bytes: usize },
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(
        "key {key:?} is made both by {first} and by {second}; explicit keys never overwrite each other, so the Secret was left as it was"
    )]
    KeyCollision { key: String, first: String, second: String },
}

impl BuildError {
    /// The condition reason: one CamelCase word.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "SecretTooLarge",
            Self::Select(SelectError::NotFound { .. }) => "FieldNotFound",
            Self::Select(SelectError::Ambiguous { .. }) => "FieldAmbiguous",
            Self::Template(_) => "TemplateError",
            Self::KeyCollision { .. } => "KeyCollision",
        }
    }

    /// A stable, low-cardinality label for metrics.
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "secret_too_large",
            Self::Select(SelectError::NotFound { .. }) => "field_not_found",
            Self::Select(SelectError::Ambiguous { .. }) => "field_ambiguous",
            Self::Template(_) => "template_error",
            Self::KeyCollision { .. } => "key_collision",
        }
    }
}

/// A desired Secret and what the mapping had to say about it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BuiltSecret {
    pub secret: Secret,
    pub collisions: Vec<Collision>,
    pub skipped: Vec<Source>,
}

/// `Opaque` for an absent or empty type.
pub(crate) fn effective_type(secret_type: Option<&str>) -> &str {
    secret_type.filter(|t| !t.is_empty()).unwrap_or("Opaque")
}

/// One referenced item as the build reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ItemSource<'a> {
    /// `None` for the main item (`itemPath`), else its name in `items`.
    pub name: Option<&'a str>,
    pub vault_id: &'a str,
    pub item: &'a ItemData,
    pub files: &'a BTreeMap<String, Vec<u8>>,
    /// Its `fields` selection; empty for every key.
    pub fields: &'a [SecretField],
}

impl<'a> ItemSource<'a> {
    /// The main item, every key.
    #[cfg(test)]
    pub(crate) fn main(vault_id: &'a str, item: &'a ItemData, files: &'a BTreeMap<String, Vec<u8>>) -> Self {
        Self {
            name: None,
            vault_id,
            item,
            files,
            fields: &[],
        }
    }

    /// Where its keys come from, for messages.
    fn origin(&self) -> String {
        match (self.name, self.fields.is_empty()) {
            (None, true) => "the item at itemPath".into(),
            (None, false) => "fields".into(),
            (Some(name), true) => format!("items[{name}]"),
            (Some(name), false) => format!("items[{name}].fields"),
        }
    }
}

/// The complete desired Secret from the referenced items, the primary one first: data,
/// type, labels, the Go operator's annotations (of the primary item), owner. The data is
/// the main item's `fields` selection (every key when neither `fields` nor templates are
/// given), plus each entry of `items` (every key, or its own `fields`), plus the rendered
/// `template.data`; a key made twice is an error.
pub(crate) fn build_secret(
    target: &SecretTarget,
    sources: &[ItemSource<'_>],
    options: MappingOptions,
) -> Result<BuiltSecret, BuildError> {
    let primary = sources.first().expect("a resource references at least one item");
    let mut out = SecretData::default();
    // Each source's keys, with where they come from; merged once all are made.
    let mut parts: Vec<(String, BTreeMap<String, Vec<u8>>)> = Vec::with_capacity(sources.len() + 1);
    for source in sources {
        let everything = source.fields.is_empty() && (source.name.is_some() || target.templates.is_empty());
        let part = if everything {
            let mapped = build_data(source.item, source.files, options);
            out.collisions.extend(mapped.collisions);
            out.skipped.extend(mapped.skipped);
            mapped.data
        } else {
            select(source.item, source.files, source.fields).map_err(|e| match source.name {
                Some(name) => e.in_item(name),
                None => e,
            })?
        };
        parts.push((source.origin(), part));
    }
    if !target.templates.is_empty() {
        let main = sources.iter().find(|s| s.name.is_none()).map(|s| (s.item, s.files));
        let named: Vec<NamedItem<'_>> = sources
            .iter()
            .filter_map(|s| Some((s.name?, (s.item, s.files))))
            .collect();
        let rendered = render(&target.templates, main, &named, options)?;
        parts.push(("template.data".into(), rendered));
    }
    out.data = merge(parts)?;
    let bytes = out.total_bytes();
    if bytes > MAX_SECRET_BYTES {
        return Err(BuildError::TooLarge { bytes });
    }
    let mut secret = secret_without_data(target, primary.vault_id, &primary.item.id, primary.item.version);
    secret.data = Some(out.data.into_iter().map(|(k, v)| (k, ByteString(v))).collect());
    Ok(BuiltSecret {
        secret,
        collisions: out.collisions,
        skipped: out.skipped,
    })
}

/// The parts of the data, in order, as one map; a key made by two parts is an error naming
/// both. A single part (a plain resource) is taken as it is, with no per-key work.
fn merge(parts: Vec<(String, BTreeMap<String, Vec<u8>>)>) -> Result<BTreeMap<String, Vec<u8>>, BuildError> {
    for (index, (second, part)) in parts.iter().enumerate().skip(1) {
        for key in part.keys() {
            if let Some((first, _)) = parts[..index].iter().find(|(_, earlier)| earlier.contains_key(key)) {
                return Err(BuildError::KeyCollision {
                    key: key.clone(),
                    first: first.clone(),
                    second: second.clone(),
                });
            }
        }
    }
    let mut parts = parts.into_iter().map(|(_, part)| part);
    let mut data = parts.next().unwrap_or_default();
    for part in parts {
        data.extend(part);
    }
    Ok(data)
}

/// Everything of the desired Secret but its data: what a restarted operator checks before
/// it trusts a Secret whose data its digest vouches for.
pub(crate) fn secret_without_data(target: &SecretTarget, vault_id: &str, item_id: &str, version: u64) -> Secret {
    let mut labels = target.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    let mut annotations = target.annotations.clone();
    annotations.insert(ITEM_PATH.to_owned(), format!("vaults/{vault_id}/items/{item_id}"));
    annotations.insert(ITEM_VERSION.to_owned(), version.to_string());
    Secret {
        metadata: ObjectMeta {
            name: Some(target.name.clone()),
            namespace: Some(target.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![target.owner.clone()]),
            ..ObjectMeta::default()
        },
        type_: Some(effective_type(target.secret_type.as_deref()).to_owned()),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::LAST_APPLIED;
    use crate::connect::models::{Field, FieldPurpose, FieldType, File, Item, ItemUrl, Section, SectionRef};
    use proptest::prelude::*;

    fn field(label: &str, value: &str) -> Field {
        Field {
            id: label.to_lowercase(),
            label: label.into(),
            value: value.into(),
            ..Field::default()
        }
    }

    fn url(label: &str, href: &str, primary: bool) -> ItemUrl {
        ItemUrl {
            label: label.into(),
            href: href.into(),
            primary,
        }
    }

    fn file(id: &str, name: &str) -> File {
        File {
            id: id.into(),
            name: name.into(),
            ..File::default()
        }
    }

    fn item(urls: Vec<ItemUrl>, fields: Vec<Field>, files: Vec<File>) -> FullItem {
        FullItem {
            item: Item {
                urls,
                ..Item::default()
            },
            fields,
            files,
            ..FullItem::default()
        }
    }

    fn text(data: &SecretData) -> BTreeMap<&str, &str> {
        data.data
            .iter()
            .map(|(k, v)| (k.as_str(), std::str::from_utf8(v).unwrap()))
            .collect()
    }

    fn build(item: &FullItem) -> SecretData {
        build_data(&item.into(), &BTreeMap::new(), MappingOptions::default())
    }

    #[test]
    fn fields_map_to_keys_by_label() {
        let data = build(&item(
            vec![],
            vec![field("username", "admin"), field("password", "pw")],
            vec![],
        ));
        assert_eq!(text(&data), BTreeMap::from([("password", "pw"), ("username", "admin")]));
        assert!(data.collisions.is_empty());
    }

    #[test]
    fn labels_are_sanitized_like_go() {
        assert_eq!(sanitize_key("first host").as_deref(), Some("first-host"));
        assert_eq!(sanitize_key("AWS Access Key").as_deref(), Some("AWS-Access-Key"));
        assert_eq!(sanitize_key("😄 ice-cream type").as_deref(), Some("ice-cream-type"));
        assert_eq!(sanitize_key("a  //  b").as_deref(), Some("a-b"));
        assert_eq!(
            sanitize_key("Already.Valid_Key-1").as_deref(),
            Some("Already.Valid_Key-1"),
            "case is kept"
        );
        assert_eq!(sanitize_key("  spaced  ").as_deref(), Some("spaced"));
        assert_eq!(sanitize_key("😄"), None);
        assert_eq!(sanitize_key(""), None);
        assert_eq!(sanitize_key(".."), None);
        assert_eq!(sanitize_key("..hidden"), None);
        assert_eq!(sanitize_key(&"x".repeat(300)).unwrap().len(), 253);
    }

    #[test]
    fn invalid_labels_are_skipped_and_reported() {
        let data = build(&item(vec![], vec![field("🔑", "v"), field("ok", "v")], vec![]));
        assert_eq!(data.data.keys().collect::<Vec<_>>(), ["ok"]);
        assert_eq!(data.skipped, [Source::Field { label: "🔑".into() }]);
    }

    #[test]
    fn empty_values_are_skipped_unless_allowed() {
        let it = item(vec![], vec![field("empty", ""), field("full", "x")], vec![]);
        assert_eq!(build(&it).data.keys().collect::<Vec<_>>(), ["full"]);
        let allowed = build_data(
            &(&it).into(),
            &BTreeMap::new(),
            MappingOptions {
                allow_empty_values: true,
            },
        );
        assert_eq!(text(&allowed), BTreeMap::from([("empty", ""), ("full", "x")]));
    }

    #[test]
    fn urls_by_label_with_primary_winning() {
        let it = item(
            vec![
                url("website", "https://a", false),
                url("website", "https://b", true),
                url("website", "https://c", false),
                url("", "https://unlabelled", true),
            ],
            vec![],
            vec![],
        );
        let data = build(&it);
        assert_eq!(text(&data), BTreeMap::from([("website", "https://b")]));
        assert_eq!(data.collisions.len(), 1);
        assert_eq!(
            data.collisions[0].winner,
            Source::Url {
                label: "website".into()
            }
        );
        assert_eq!(data.collisions[0].losers.len(), 2);
    }

    #[test]
    fn within_one_label_the_last_url_wins_unless_only_an_earlier_one_is_primary() {
        let website = |urls| text(&build(&item(urls, vec![], vec![])))["website"].to_owned();
        assert_eq!(
            website(vec![
                url("website", "https://a", false),
                url("website", "https://b", false)
            ]),
            "https://b",
            "neither primary: the last"
        );
        assert_eq!(
            website(vec![
                url("website", "https://a", true),
                url("website", "https://b", true)
            ]),
            "https://b",
            "both primary: the last, as in Go"
        );
        assert_eq!(
            website(vec![
                url("website", "https://a", true),
                url("website", "https://b", false)
            ]),
            "https://a",
            "a primary is not displaced by a later non-primary"
        );
    }

    #[test]
    fn empty_hrefs_and_empty_files_are_skipped_unless_empty_values_are_allowed() {
        let it = item(
            vec![url("empty-url", "", true), url("site", "https://s", false)],
            vec![],
            vec![file("f1", "empty.txt"), file("f2", "full.txt")],
        );
        let files = BTreeMap::from([("f1".to_string(), Vec::new()), ("f2".to_string(), b"x".to_vec())]);
        let skipped = build_data(&(&it).into(), &files, MappingOptions::default());
        assert_eq!(skipped.data.keys().collect::<Vec<_>>(), ["full.txt", "site"]);
        let kept = build_data(
            &(&it).into(),
            &files,
            MappingOptions {
                allow_empty_values: true,
            },
        );
        assert_eq!(
            kept.data.keys().collect::<Vec<_>>(),
            ["empty-url", "empty.txt", "full.txt", "site"]
        );
    }

    #[test]
    fn a_later_field_overwrites_an_earlier_field_or_url_and_is_reported() {
        let it = item(
            vec![url("host", "https://url-host", true)],
            vec![field("host", "db-1"), field("Host", "x"), field("host", "db-2")],
            vec![],
        );
        let data = build(&it);
        assert_eq!(text(&data)["host"], "db-2");
        assert_eq!(text(&data)["Host"], "x", "keys keep their case, so these differ");
        let collision = &data.collisions[0];
        assert_eq!(collision.key, "host");
        assert_eq!(collision.winner, Source::Field { label: "host".into() });
        assert_eq!(
            collision.losers,
            [
                Source::Url { label: "host".into() },
                Source::Field { label: "host".into() }
            ]
        );
        let printed = collision.to_string();
        assert!(
            !printed.contains("db-1") && !printed.contains("db-2"),
            "no values in messages: {printed}"
        );
    }

    #[test]
    fn files_fill_only_empty_keys() {
        let it = item(
            vec![],
            vec![field("cert.pem", "from-field")],
            vec![file("f1", "cert.pem"), file("f2", "key.pem")],
        );
        let files = BTreeMap::from([
            ("f1".to_string(), b"file-1".to_vec()),
            ("f2".to_string(), vec![0, 159, 146, 150]),
        ]);
        let data = build_data(&(&it).into(), &files, MappingOptions::default());
        assert_eq!(data.data["cert.pem"], b"from-field");
        assert_eq!(data.data["key.pem"], vec![0, 159, 146, 150], "raw bytes, not text");
        assert_eq!(
            data.collisions[0].winner,
            Source::Field {
                label: "cert.pem".into()
            }
        );
        assert_eq!(
            data.collisions[0].losers,
            [Source::File {
                name: "cert.pem".into()
            }]
        );
    }

    #[test]
    fn file_names_are_sanitized_and_missing_bytes_are_skipped() {
        let it = item(vec![], vec![], vec![file("f1", "my key.pem"), file("f2", "absent.txt")]);
        let files = BTreeMap::from([("f1".to_string(), b"k".to_vec())]);
        let data = build_data(&(&it).into(), &files, MappingOptions::default());
        assert_eq!(data.data.keys().collect::<Vec<_>>(), ["my-key.pem"]);
    }

    #[test]
    fn otp_fields_give_the_uri_and_sections_are_ignored() {
        let otp = Field {
            label: "one-time password".into(),
            field_type: Some(FieldType::Otp),
            value: "otpauth://totp/x?secret=ABC".into(),
            totp: Some("123456".into()),
            section: Some(SectionRef { id: "s1".into() }),
            ..Field::default()
        };
        let data = build(&item(vec![], vec![otp], vec![]));
        assert_eq!(text(&data)["one-time-password"], "otpauth://totp/x?secret=ABC");
    }

    #[test]
    fn secure_notes_give_notes_plain() {
        let note = Field {
            id: "notesPlain".into(),
            label: "notesPlain".into(),
            purpose: Some(FieldPurpose::Notes),
            value: "line 1\nline 2".into(),
            ..Field::default()
        };
        assert_eq!(
            text(&build(&item(vec![], vec![note], vec![])))["notesPlain"],
            "line 1\nline 2"
        );
    }

    #[test]
    fn secrets_get_auto_restart_and_item_name_always_and_the_rest_only_when_asked() {
        let on_the_item = BTreeMap::from([
            (AUTO_RESTART.to_string(), "true".to_string()),
            (ITEM_NAME.to_string(), "App Secret".to_string()),
            ("team/on-call".to_string(), "alice".to_string()),
            (LAST_APPLIED.to_string(), "{}".to_string()),
            (ITEM_VERSION.to_string(), "999".to_string()),
        ]);
        let keys = |copy_all| -> Vec<String> { secret_annotations(&on_the_item, copy_all).into_keys().collect() };
        assert_eq!(keys(false), [AUTO_RESTART, ITEM_NAME]);
        assert_eq!(keys(true), [AUTO_RESTART, ITEM_NAME, "team/on-call"]);
    }

    #[test]
    fn total_bytes_counts_keys_and_values() {
        let data = build(&item(vec![], vec![field("ab", "cde")], vec![]));
        assert_eq!(data.total_bytes(), 5);
    }

    fn target() -> SecretTarget {
        SecretTarget {
            name: "db".into(),
            namespace: "apps".into(),
            owner: OwnerReference {
                api_version: "onepassword.com/v1".into(),
                kind: "OnePasswordItem".into(),
                name: "db".into(),
                uid: "uid-1".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            labels: BTreeMap::from([("team".to_string(), "payments".to_string())]),
            annotations: BTreeMap::from([
                (AUTO_RESTART.to_string(), "true".to_string()),
                (ITEM_VERSION.to_string(), "999".to_string()),
            ]),
            secret_type: None,
            templates: BTreeMap::new(),
        }
    }

    #[test]
    fn the_whole_secret_is_built() {
        let mut it = item(vec![], vec![field("password", "pw")], vec![]);
        it.item.id = "itemid".into();
        it.item.version = 12;
        let built = build_one(
            &target(),
            "vaultid",
            &(&it).into(),
            &BTreeMap::new(),
            MappingOptions::default(),
        )
        .unwrap();
        let meta = &built.secret.metadata;
        assert_eq!(
            (meta.name.as_deref(), meta.namespace.as_deref()),
            (Some("db"), Some("apps"))
        );
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "payments");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations[ITEM_PATH], "vaults/vaultid/items/itemid");
        assert_eq!(
            annotations[ITEM_VERSION], "12",
            "copied annotations cannot override ours"
        );
        assert_eq!(annotations[AUTO_RESTART], "true");
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].controller, Some(true));
        assert_eq!(built.secret.type_.as_deref(), Some("Opaque"));
        assert_eq!(built.secret.data.unwrap()["password"].0, b"pw");
    }

    #[test]
    fn custom_types_are_kept_and_empty_means_opaque() {
        let it = item(vec![], vec![field(".dockerconfigjson", "{}")], vec![]);
        let mut custom = target();
        custom.secret_type = Some("kubernetes.io/dockerconfigjson".into());
        let built = build_one(&custom, "v", &(&it).into(), &BTreeMap::new(), MappingOptions::default()).unwrap();
        assert_eq!(built.secret.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
        custom.secret_type = Some(String::new());
        let built = build_one(&custom, "v", &(&it).into(), &BTreeMap::new(), MappingOptions::default()).unwrap();
        assert_eq!(built.secret.type_.as_deref(), Some("Opaque"));
    }

    #[test]
    fn oversized_secrets_are_refused() {
        let it = item(vec![], vec![], vec![file("f", "big.bin")]);
        let files = BTreeMap::from([("f".to_string(), vec![0u8; MAX_SECRET_BYTES])]);
        let err = build_one(&target(), "v", &(&it).into(), &files, MappingOptions::default()).unwrap_err();
        assert!(err.to_string().contains("over the 1048576-byte limit"), "{err}");
    }

    /// The Secret of `target` for one main item.
    fn build_one(
        target: &SecretTarget,
        vault_id: &str,
        item: &ItemData,
        files: &BTreeMap<String, Vec<u8>>,
        options: MappingOptions,
    ) -> Result<BuiltSecret, BuildError> {
        build_secret(target, &[ItemSource::main(vault_id, item, files)], options)
    }

    /// The Secret of `target` for a main item without files, under the default mapping.
    fn build_plain(target: &SecretTarget, item: &FullItem) -> Result<BuiltSecret, BuildError> {
        build_selecting(target, item, &[])
    }

    /// [`build_plain`] with a `fields` selection of the main item.
    fn build_selecting(
        target: &SecretTarget,
        item: &FullItem,
        fields: &[SecretField],
    ) -> Result<BuiltSecret, BuildError> {
        let data = ItemData::from(item);
        let source = ItemSource {
            fields,
            ..ItemSource::main("v", &data, &EMPTY)
        };
        build_secret(target, &[source], MappingOptions::default())
    }

    static EMPTY: BTreeMap<String, Vec<u8>> = BTreeMap::new();

    fn by_field(key: &str, field: &str) -> SecretField {
        SecretField {
            key: key.into(),
            field: Some(field.into()),
            ..SecretField::default()
        }
    }

    #[test]
    fn selected_fields_replace_the_mapping_and_keep_our_metadata() {
        let mut it = item(
            vec![url("website", "https://w", true)],
            vec![field("username", "admin"), field("password", "pw")],
            vec![],
        );
        it.item.id = "itemid".into();
        it.item.version = 4;
        let selecting = target();
        let built = build_selecting(&selecting, &it, &[by_field("DB_PASSWORD", "password")]).unwrap();
        let data = built.secret.data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["DB_PASSWORD"]);
        assert_eq!(data["DB_PASSWORD"].0, b"pw");
        let annotations = built.secret.metadata.annotations.unwrap();
        assert_eq!(annotations[ITEM_VERSION], "4");
        assert_eq!(annotations[ITEM_PATH], "vaults/v/items/itemid");
    }

    #[test]
    fn a_selection_that_matches_nothing_builds_nothing() {
        let it = item(vec![], vec![field("username", "admin")], vec![]);
        let selecting = target();
        let err = build_selecting(&selecting, &it, &[by_field("K", "password")]).unwrap_err();
        assert_eq!(err.reason(), "FieldNotFound");
        assert_eq!(err.metric_label(), "field_not_found");
    }

    #[test]
    fn templates_add_to_the_selection_and_replace_the_mapping() {
        let it = item(vec![], vec![field("username", "bot"), field("password", "pw")], vec![]);
        let mut composed = target();
        composed.secret_type = Some("kubernetes.io/dockerconfigjson".into());
        composed.templates = BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            "{{ dockerconfigjson('ghcr.io', item.username, item.password) }}".to_string(),
        )]);
        let built = build_plain(&composed, &it).unwrap();
        let data = built.secret.data.unwrap();
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            [".dockerconfigjson"],
            "only the template's key"
        );
        let json: serde_json::Value = serde_json::from_slice(&data[".dockerconfigjson"].0).unwrap();
        assert_eq!(json["auths"]["ghcr.io"]["username"], "bot");
        let built = build_selecting(&composed, &it, &[by_field("user", "username")]).unwrap();
        assert_eq!(
            built.secret.data.unwrap().keys().collect::<Vec<_>>(),
            [".dockerconfigjson", "user"]
        );
    }

    #[test]
    fn a_key_made_twice_is_refused() {
        let it = item(vec![], vec![field("password", "pw")], vec![]);
        let mut both = target();
        both.templates = BTreeMap::from([("K".to_string(), "{{ item.password }}".to_string())]);
        let err = build_selecting(&both, &it, &[by_field("K", "password")]).unwrap_err();
        assert_eq!(
            err,
            BuildError::KeyCollision {
                key: "K".into(),
                first: "fields".into(),
                second: "template.data".into()
            }
        );
        assert_eq!(err.reason(), "KeyCollision");
    }

    #[test]
    fn more_items_add_their_keys_and_name_the_entry_in_errors() {
        let mut main = item(vec![], vec![field("password", "pw")], vec![]);
        main.item.id = "main".into();
        main.item.version = 2;
        let api = ItemData::from(&item(
            vec![],
            vec![field("credential", "tok"), field("note", "n")],
            vec![],
        ));
        let db = ItemData::from(&item(vec![], vec![field("password", "db-pw")], vec![]));
        let main = ItemData::from(&main);
        let api_fields = [by_field("API_TOKEN", "credential")];
        let build = |db_fields: &[SecretField]| {
            let sources = [
                ItemSource::main("v", &main, &EMPTY),
                ItemSource {
                    name: Some("api"),
                    fields: &api_fields,
                    ..ItemSource::main("v", &api, &EMPTY)
                },
                ItemSource {
                    name: Some("db"),
                    fields: db_fields,
                    ..ItemSource::main("w", &db, &EMPTY)
                },
            ];
            build_secret(&target(), &sources, MappingOptions::default())
        };
        let err = build(&[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key \"password\" is made both by the item at itemPath and by items[db]; explicit keys never overwrite each other, so the Secret was left as it was"
        );

        let built = build(&[by_field("DB_PASSWORD", "password")]).unwrap();
        let data = built.secret.data.unwrap();
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["API_TOKEN", "DB_PASSWORD", "password"]
        );
        let annotations = built.secret.metadata.annotations.unwrap();
        assert_eq!(annotations[ITEM_PATH], "vaults/v/items/main", "the primary item's");

        let err = build(&[by_field("X", "nope")]).unwrap_err();
        assert!(
            err.to_string().starts_with("items[db]: fields entry key \"X\""),
            "{err}"
        );
    }

    #[test]
    fn templates_see_every_item_by_name() {
        let main = ItemData::from(&item(vec![], vec![field("username", "u")], vec![]));
        let api = ItemData::from(&item(vec![], vec![field("credential", "tok")], vec![]));
        let mut composed = target();
        composed.templates = BTreeMap::from([(
            "K".to_string(),
            "{{ item.username }}:{{ items.api.credential }}".to_string(),
        )]);
        let sources = [
            ItemSource::main("v", &main, &EMPTY),
            ItemSource {
                name: Some("api"),
                fields: &[],
                ..ItemSource::main("v", &api, &EMPTY)
            },
        ];
        let built = build_secret(&composed, &sources, MappingOptions::default()).unwrap();
        let data = built.secret.data.unwrap();
        assert_eq!(data["K"].0, b"u:tok");
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["K", "credential"],
            "the entry adds every key; the main item only its templates"
        );
    }

    #[test]
    fn a_template_error_builds_nothing() {
        let it = item(vec![], vec![field("password", "pw")], vec![]);
        let mut broken = target();
        broken.templates = BTreeMap::from([("K".to_string(), "{{ item.passwrod }}".to_string())]);
        let err = build_plain(&broken, &it).unwrap_err();
        assert_eq!((err.reason(), err.metric_label()), ("TemplateError", "template_error"));
        assert!(
            err.to_string()
                .starts_with("template.data[\"K\"], line 1: undefined value"),
            "{err}"
        );
    }

    fn opi_with_template(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> OnePasswordItem {
        let pairs = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut opi = OnePasswordItem::new(
            "db",
            crate::crd::OnePasswordItemSpec {
                template: Some(Box::new(crate::crd::SecretTemplate {
                    metadata: Some(crate::crd::TemplateMetadata {
                        labels: pairs(labels),
                        annotations: pairs(annotations),
                    }),
                    ..crate::crd::SecretTemplate::default()
                })),
                ..crate::crd::OnePasswordItemSpec::item("vaults/v/items/i")
            },
        );
        opi.metadata.namespace = Some("apps".into());
        opi.metadata.uid = Some("uid-1".into());
        opi.metadata.labels = Some(BTreeMap::from([
            ("team".to_string(), "from-item".to_string()),
            ("tier".to_string(), "db".to_string()),
        ]));
        opi
    }

    #[test]
    fn template_metadata_goes_on_the_secret_over_what_is_copied() {
        let opi = opi_with_template(
            &[("team", "a")],
            &[("reflector.v1.k8s.emberstack.com/reflection-allowed", "true")],
        );
        let target = SecretTarget::for_item(&opi, false);
        assert_eq!(target.labels["team"], "a", "the template wins over the copied label");
        assert_eq!(target.labels["tier"], "db");
        assert_eq!(
            target.annotations["reflector.v1.k8s.emberstack.com/reflection-allowed"],
            "true"
        );
    }

    #[test]
    fn template_metadata_cannot_override_ours() {
        // The CRD refuses these; objects stored before that still cannot take over our keys.
        let opi = opi_with_template(
            &[(MANAGED_BY_LABEL, "someone-else")],
            &[(ITEM_VERSION, "1"), (ITEM_PATH, "vaults/x/items/y")],
        );
        let target = SecretTarget::for_item(&opi, false);
        let it = item(vec![], vec![field("password", "pw")], vec![]);
        let built = build_plain(&target, &it).unwrap();
        let meta = built.secret.metadata;
        assert_eq!(meta.labels.unwrap()[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
        let annotations = meta.annotations.unwrap();
        assert_eq!(annotations[ITEM_VERSION], "0");
        assert_eq!(annotations[ITEM_PATH], "vaults/v/items/");
    }

    #[test]
    fn secret_without_data_is_the_built_secret_less_its_data() {
        let mut it = item(vec![], vec![field("password", "pw")], vec![]);
        it.item.id = "i".into();
        it.item.version = 9;
        let mut built = build_one(
            &target(),
            "v",
            &(&it).into(),
            &BTreeMap::new(),
            MappingOptions::default(),
        )
        .unwrap()
        .secret;
        built.data = None;
        assert_eq!(secret_without_data(&target(), "v", "i", 9), built);
    }

    proptest! {
        #[test]
        fn sanitized_keys_are_always_valid(label in "\\PC{0,300}") {
            if let Some(key) = sanitize_key(&label) {
                prop_assert!(is_valid_key(&key), "{key:?}");
            }
        }

        #[test]
        fn valid_keys_are_kept_verbatim(key in "[-._a-zA-Z0-9]{1,253}") {
            prop_assume!(key != "." && !key.starts_with(".."));
            prop_assert_eq!(sanitize_key(&key), Some(key));
        }

        #[test]
        fn every_key_of_the_data_is_valid(labels in prop::collection::vec("\\PC{0,20}", 0..12)) {
            let fields = labels.iter().map(|l| field(l, "v")).collect();
            let data = build(&item(vec![], fields, vec![]));
            for key in data.data.keys() {
                prop_assert!(is_valid_key(key));
            }
        }
    }

    #[test]
    fn item_data_keeps_what_the_mapping_reads_at_its_exact_size() {
        let mut full = item(
            vec![ItemUrl {
                label: "website".into(),
                href: "https://example.com".into(),
                primary: true,
            }],
            vec![field("username", "u"), field("password", "p")],
            vec![File {
                id: "f1".into(),
                name: "cert.pem".into(),
                size: 3,
                ..File::default()
            }],
        );
        full.item.tags = vec!["prod".into()];
        full.sections = vec![Section {
            id: "s1".into(),
            label: "Production".into(),
        }];
        full.fields[1].section = Some(SectionRef { id: "s1".into() });
        full.fields.reserve(16);
        let data = ItemData::from(&full);
        assert_eq!(*data.id, *full.id);
        assert_eq!(data.version, full.version);
        assert!(data.has_tag("prod") && !data.has_tag("dev"));
        assert_eq!(
            *data.fields,
            [
                FieldData {
                    id: "username".into(),
                    label: "username".into(),
                    section: None,
                    value: "u".into()
                },
                FieldData {
                    id: "password".into(),
                    label: "password".into(),
                    section: Some("s1".into()),
                    value: "p".into()
                }
            ]
        );
        assert_eq!(
            *data.sections,
            [SectionData {
                id: "s1".into(),
                label: "Production".into()
            }]
        );
        assert_eq!(
            *data.urls,
            [UrlData {
                label: "website".into(),
                href: "https://example.com".into(),
                primary: true
            }]
        );
        assert_eq!(
            *data.files,
            [FileData {
                id: "f1".into(),
                name: "cert.pem".into()
            }]
        );
        let shown = format!("{data:?}");
        assert!(
            shown.contains("username") && !shown.contains("\"u\"") && !shown.contains("\"p\""),
            "{shown}"
        );
    }

    /// Every cached item holds these: their size is the operator's memory at 10,000
    /// resources (docs/benchmarks.md).
    #[test]
    fn cached_item_parts_stay_small() {
        use std::mem::size_of;
        assert_eq!(size_of::<FieldData>(), 64);
        assert_eq!(size_of::<UrlData>(), 40);
        assert_eq!(size_of::<ItemData>(), 104);
        // The watch cache holds every OnePasswordItem: the optional template and connectRef
        // stay pointers.
        assert_eq!(size_of::<crate::crd::OnePasswordItemSpec>(), 88);
    }
}
