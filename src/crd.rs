//! The `OnePasswordItem` custom resource (`onepassword.com/v1`): the only source of `crds/`.
//!
//! It matches manifests written for 1Password's Go operator: `spec.itemPath`, and the Secret
//! type as a **top-level** `type` field next to `spec`. Because of that top-level field the
//! type is written by hand instead of with `#[derive(CustomResource)]`, and the CRD is
//! assembled from schemars schemas with the same structural-schema rules kube uses.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::TypeMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const GROUP: &str = "onepassword.com";
pub const VERSION: &str = "v1";
pub const KIND: &str = "OnePasswordItem";
pub const PLURAL: &str = "onepassworditems";
/// `vaults/<vault id or title>/items/<item id or title>`: four non-empty parts.
pub const ITEM_PATH_PATTERN: &str = "^vaults/[^/]+/items/[^/]+$";

/// Condition types of a OnePasswordItem's status.
pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
pub const KEY_COLLISION: &str = "KeyCollision";
pub const KEYS_SKIPPED: &str = "KeysSkipped";
pub const ITEM_PATH_AMBIGUOUS: &str = "ItemPathAmbiguous";

/// Splits `vaults/<vault>/items/<item>` into the vault and the item (titles or ids); `None`
/// for anything else. The one parser of item paths, for resources and `connect-check`.
pub fn parse_item_path(path: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts[..] {
        ["vaults", vault, "items", item] if !vault.is_empty() && !item.is_empty() => Some((vault, item)),
        _ => None,
    }
}

/// What a `OnePasswordItem` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.itemPath) || (has(self.items) && self.items.size() > 0)",
        "message": "itemPath, or at least one entry of items, is required"
    },
    {
        "rule": "has(self.itemPath) || !has(self.fields)",
        "message": "fields select from the item at itemPath; without itemPath, give each entry of items its own fields"
    },
    {
        "rule": "!has(self.fields) || !has(self.template) || !has(self.template.data) || self.fields.all(f, !(f.key in self.template.data))",
        "message": "a key cannot come from both fields and template.data"
    }
]))]
pub struct OnePasswordItemSpec {
    /// The item to sync: `vaults/<vault id or title>/items/<item id or title>`. Optional when
    /// `items` names at least one item.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^vaults/[^/]+/items/[^/]+$')",
        "message": "itemPath must look like vaults/<vault id or title>/items/<item id or title>"
    }]))]
    pub item_path: String,
    /// The keys of the Secret, each from one field, file or URL of the item. Absent (and no
    /// `template.data`): every field, file and URL, mapped as 1Password's Go operator maps them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["key"]))]
    pub fields: Vec<SecretField>,
    /// More items in the same Secret: each adds every key of its item, or its own `fields`
    /// selection, and is `items.<name>` in templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub items: Vec<ItemReference>,
    /// What the Secret carries besides its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Box<SecretTemplate>>,
    /// The Connect server to read the items from: a `OnePasswordConnect` of this namespace,
    /// or a `ClusterOnePasswordConnect` that admits it. Absent: the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ref: Option<Box<ConnectionReference>>,
}

/// Which connection a OnePasswordItem uses: `spec.connectRef`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionReference {
    /// `OnePasswordConnect` (the default: one in the item's namespace) or
    /// `ClusterOnePasswordConnect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["OnePasswordConnect", "ClusterOnePasswordConnect"]))]
    pub kind: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Another item whose keys go into the same Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemReference {
    /// Its name in templates (`items.<name>`) and in status: a lowercase letter, then
    /// lowercase letters, digits and '_'.
    #[schemars(length(min = 1, max = 63))]
    #[schemars(extend("pattern" = "^[a-z][a-z0-9_]*$"))]
    pub name: String,
    /// The item: `vaults/<vault id or title>/items/<item id or title>`.
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^vaults/[^/]+/items/[^/]+$')",
        "message": "itemPath must look like vaults/<vault id or title>/items/<item id or title>"
    }]))]
    pub item_path: String,
    /// The keys this item adds, as in `spec.fields`. Absent: every key of the item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["key"]))]
    pub fields: Vec<SecretField>,
}

impl OnePasswordItemSpec {
    /// Every key of the item at `item_path`, as 1Password's Go operator writes them.
    pub fn item(item_path: impl Into<String>) -> Self {
        Self {
            item_path: item_path.into(),
            ..Self::default()
        }
    }
}

/// Most entries in `spec.fields`.
pub const MAX_FIELDS: usize = 256;

/// One key of the Secret and the one value of the item it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.field), has(self.file), has(self.url)].filter(x, x).size() == 1",
        "message": "each entry of fields takes exactly one of field, file or url"
    },
    {
        "rule": "!has(self.section) || has(self.field)",
        "message": "section narrows a field; it cannot be used with file or url"
    }
]))]
pub struct SecretField {
    /// The Secret key: letters, digits, '-', '_' and '.'; not '.', not starting with '..'.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("pattern" = "^[-._a-zA-Z0-9]+$"))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self != '.' && !self.startsWith('..')",
        "message": "a Secret key cannot be '.' or start with '..'"
    }]))]
    pub key: String,
    /// A field of the item, by id or label (an id wins over a label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub field: Option<String>,
    /// Only fields of this section, by id or label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub section: Option<String>,
    /// A file of the item, by id or name (an id wins over a name); its bytes as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub file: Option<String>,
    /// A URL of the item, by label; its `href`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub url: Option<String>,
}

impl SecretField {
    /// The entry as written in a manifest, for messages: `key <- field "password"`.
    pub fn describe(&self) -> String {
        let source = match (&self.field, &self.file, &self.url) {
            (Some(field), _, _) => match &self.section {
                Some(section) => format!("field {field:?} of section {section:?}"),
                None => format!("field {field:?}"),
            },
            (None, Some(file), _) => format!("file {file:?}"),
            (None, None, Some(url)) => format!("url {url:?}"),
            (None, None, None) => "nothing".to_owned(),
        };
        format!("key {:?} <- {source}", self.key)
    }
}

/// Most keys in `template.data`, and the longest template.
pub const MAX_TEMPLATES: usize = 64;
pub const MAX_TEMPLATE_LENGTH: usize = 16 * 1024;

/// Secret keys made by templates, and the Secret's labels and annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Labels and annotations for the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// Secret key -> a template (Jinja syntax) rendered with the item as the variable
    /// `item`; the rendered text is the value. Added to the `fields` selection (with neither, the
    /// Secret holds only these keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_TEMPLATES))]
    #[schemars(extend("additionalProperties" = {"type": "string", "maxLength": MAX_TEMPLATE_LENGTH}))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(k, k.size() <= 253 && k.matches('^[-._a-zA-Z0-9]+$') && k != '.' && !k.startsWith('..'))",
        "message": "each key of template.data must be a valid Secret key: letters, digits, '-', '_' and '.', at most 253, not '.' or starting with '..'"
    }]))]
    pub data: BTreeMap<String, String>,
}

/// Labels and annotations put on the Secret, over those copied from the OnePasswordItem.
/// The operator's own (the managed-by label, the item-path, item-version and data-digest
/// annotations) cannot be set here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!('app.kubernetes.io/managed-by' in self)",
        "message": "the label app.kubernetes.io/managed-by is the operator's own"
    }]))]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!['operator.1password.io/item-path', 'operator.1password.io/item-version', 'operator.1password.io/data-digest'].exists(k, k in self)",
        "message": "the annotations operator.1password.io/item-path, item-version and data-digest are the operator's own"
    }]))]
    pub annotations: BTreeMap<String, String>,
}

/// One condition, following the Kubernetes API conventions. Every field but `type` and
/// `status` is optional so that objects written by 1Password's Go operator still decode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemCondition {
    /// `Ready` (the Secret holds the item's data as last fetched), `Synced` (the last attempt
    /// to read the item from Connect succeeded), `KeyCollision`, `KeysSkipped` or
    /// `ItemPathAmbiguous`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word for machines (`Synced`, `ItemNotFound`, `ConnectUnavailable`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A sentence for people. Never holds a secret value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// An entry of `spec.items` as last resolved and synced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemStatus {
    /// The entry's `name`.
    pub name: String,
    /// The `itemPath` the ids below were resolved from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_item_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// The item `version` the Secret holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub item_version: Option<u64>,
}

/// What the operator last did for a `OnePasswordItem`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnePasswordItemStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ItemCondition>,
    /// The `itemPath` the ids below were resolved from; a new path is resolved again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_item_path: Option<String>,
    /// Vault id `itemPath` resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_id: Option<String>,
    /// Item id `itemPath` resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// The item `version` the Secret holds.
    // `int64`: the apiserver knows no `uint64` format and warns on every apply of the CRD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int64"))]
    pub item_version: Option<u64>,
    /// Each entry of `spec.items`, by name. (Without `itemPath`, the fields above describe
    /// the first entry.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemStatus>,
    /// When the Secret last matched the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<Time>,
    /// The `metadata.generation` last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl OnePasswordItemStatus {
    pub fn condition(&self, type_: &str) -> Option<&ItemCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// `Ready=True`: the Secret holds the item's data as last fetched.
    pub fn is_ready(&self) -> bool {
        self.condition(READY).is_some_and(|c| c.status == "True")
    }

    /// `Synced=False`: the last attempt to read the item from Connect failed, so the Secret
    /// may be behind.
    pub fn is_unconfirmed(&self) -> bool {
        self.condition(SYNCED).is_some_and(|c| c.status == "False")
    }

    /// Ready, and not known to be behind: the last read from Connect did not fail.
    pub fn is_in_sync(&self) -> bool {
        self.is_ready() && !self.is_unconfirmed()
    }
}

/// A `OnePasswordItem` object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OnePasswordItem {
    /// `apiVersion` and `kind`; absent in some list responses.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub types: Option<TypeMeta>,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: OnePasswordItemSpec,
    /// Type of the Secret to create (`Opaque` when empty), e.g. `kubernetes.io/dockerconfigjson`.
    /// Top-level, as in 1Password's Go operator.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<OnePasswordItemStatus>,
}

impl OnePasswordItem {
    pub fn new(name: &str, spec: OnePasswordItemSpec) -> Self {
        Self {
            types: Some(TypeMeta {
                api_version: format!("{GROUP}/{VERSION}"),
                kind: KIND.into(),
            }),
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec,
            secret_type: None,
            status: None,
        }
    }
}

impl kube::Resource for OnePasswordItem {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A structural OpenAPI v3 schema of `T`, with the transforms `#[derive(CustomResource)]` uses.
fn structural_schema<T: JsonSchema>() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .into_generator();
    let mut schema = serde_json::to_value(generator.into_root_schema_for::<T>()).expect("schema encodes");
    if let Some(object) = schema.as_object_mut() {
        object.remove("title");
    }
    schema
}

fn ready_column(name: &str, json_path: &str, type_: &str, description: &str) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: name.into(),
        json_path: json_path.into(),
        type_: type_.into(),
        description: Some(description.into()),
        ..CustomResourceColumnDefinition::default()
    }
}

/// The CustomResourceDefinition of `OnePasswordItem`.
pub fn crd() -> CustomResourceDefinition {
    let schema = json!({
        "type": "object",
        "description": "Syncs 1Password items, read through 1Password Connect, into a Secret of the same name and namespace: every key of the item at itemPath, or the keys that fields, items and template.data make.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural_schema::<OnePasswordItemSpec>(),
            "type": {
                "type": "string",
                "maxLength": 253,
                "description": "Type of the Secret (Opaque when empty), e.g. kubernetes.io/dockerconfigjson. Top-level, as in 1Password's Go operator."
            },
            "status": structural_schema::<OnePasswordItemStatus>(),
        }
    });
    let schema: JSONSchemaProps = serde_json::from_value(schema).expect("CRD schema is valid");
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{PLURAL}.{GROUP}")),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: GROUP.into(),
            names: CustomResourceDefinitionNames {
                kind: KIND.into(),
                list_kind: Some(format!("{KIND}List")),
                plural: PLURAL.into(),
                singular: Some("onepassworditem".into()),
                short_names: Some(vec!["opi".into()]),
                categories: Some(vec!["onepassword".into()]),
            },
            scope: "Namespaced".into(),
            versions: vec![CustomResourceDefinitionVersion {
                name: VERSION.into(),
                served: true,
                storage: true,
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(schema),
                }),
                // `{}` enables the status subresource; the type's default would encode as `null`.
                subresources: Some(CustomResourceSubresources {
                    status: Some(CustomResourceSubresourceStatus(json!({}))),
                    scale: None,
                }),
                additional_printer_columns: Some(vec![
                    ready_column(
                        "Ready",
                        r#".status.conditions[?(@.type=="Ready")].status"#,
                        "string",
                        "Whether the Secret holds the item's data as last fetched",
                    ),
                    ready_column(
                        "Synced",
                        r#".status.conditions[?(@.type=="Synced")].status"#,
                        "string",
                        "Whether the last attempt to read the item from Connect succeeded",
                    ),
                    ready_column(
                        "Reason",
                        r#".status.conditions[?(@.type=="Ready")].reason"#,
                        "string",
                        "Why, in one word",
                    ),
                    ready_column(
                        "Version",
                        ".status.itemVersion",
                        "integer",
                        "Item version held by the Secret",
                    ),
                    ready_column("Age", ".metadata.creationTimestamp", "date", "Time since creation"),
                ]),
                ..CustomResourceDefinitionVersion::default()
            }],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    }
}

/// The `OnePasswordItem` CRD as YAML, exactly as committed in `crds/`.
pub fn crd_yaml() -> String {
    yaml_of(&crd())
}

/// A CRD as YAML, exactly as committed in `crds/<name>.yaml`.
pub fn yaml_of(crd: &CustomResourceDefinition) -> String {
    let header = "# Generated by `onepassword-operator crd` from src/crd.rs and src/controller/connections/resource.rs. Do not edit.\n";
    format!("{header}{}", serde_yaml_ng::to_string(crd).expect("CRD encodes"))
}

/// The `OnePasswordItem` CRD as a Helm template, exactly as committed in the chart.
pub fn crd_helm_template() -> String {
    helm_template_of(&crd())
}

/// A CRD as a Helm template, exactly as committed in the chart. It lives in `templates/`,
/// not in the chart's `crds/` (which Helm never upgrades), so that `helm upgrade` upgrades
/// it; `helm.sh/resource-policy: keep` keeps it (and every object of it) on uninstall.
pub fn helm_template_of(crd: &CustomResourceDefinition) -> String {
    let plain = serde_yaml_ng::to_string(crd).expect("CRD encodes");
    let name_line = format!("  name: {}\n", crd.metadata.name.as_deref().unwrap_or_default());
    let metadata = format!(
        "{name_line}  annotations:\n    {{{{- if .Values.crds.keep }}}}\n    helm.sh/resource-policy: keep\n    {{{{- end }}}}\n  labels:\n    {{{{- include \"onepassword-operator.labels\" . | nindent 4 }}}}\n"
    );
    let body = plain.replacen(&name_line, &metadata, 1);
    format!(
        "{{{{- /* Generated by `onepassword-operator crd --helm` from the Rust types. Do not edit. */}}}}\n{{{{- if .Values.crds.install }}}}\n{body}{{{{- end }}}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_operator_manifests_decode() {
        let manifest = r#"
apiVersion: onepassword.com/v1
kind: OnePasswordItem
metadata: { name: docker-secret, namespace: apps }
type: kubernetes.io/dockerconfigjson
spec: { itemPath: "vaults/Prod/items/Docker Hub" }
status:
  conditions: [{ type: Ready, status: "True", lastTransitionTime: "2024-01-01T00:00:00Z", message: "" }]
"#;
        let item: OnePasswordItem = serde_yaml_ng::from_str(manifest).unwrap();
        assert_eq!(item.secret_type.as_deref(), Some("kubernetes.io/dockerconfigjson"));
        assert_eq!(item.spec.item_path, "vaults/Prod/items/Docker Hub");
        assert_eq!(
            item.status.unwrap().conditions[0].reason,
            None,
            "Go conditions have no reason"
        );
    }

    #[test]
    fn serializes_api_version_kind_and_top_level_type() {
        let mut item = OnePasswordItem::new("x", OnePasswordItemSpec::item("vaults/a/items/b"));
        item.secret_type = Some("Opaque".into());
        let value = serde_json::to_value(&item).unwrap();
        assert_eq!(value["apiVersion"], "onepassword.com/v1");
        assert_eq!(value["kind"], "OnePasswordItem");
        assert_eq!(value["type"], "Opaque");
        assert_eq!(value["spec"]["itemPath"], "vaults/a/items/b");
    }

    #[test]
    fn crd_schema_validates_item_path_and_has_printer_columns() {
        let crd = serde_json::to_value(crd()).unwrap();
        let version = &crd["spec"]["versions"][0];
        let item_path = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["itemPath"];
        assert_eq!(
            item_path["x-kubernetes-validations"][0]["rule"],
            format!("self.matches('{ITEM_PATH_PATTERN}')")
        );
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["x-kubernetes-validations"][0]["rule"],
            "has(self.itemPath) || (has(self.items) && self.items.size() > 0)",
            "itemPath is required unless items names an item"
        );
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["Ready", "Synced", "Reason", "Version", "Age"]);
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["opi"]));
        assert_eq!(
            version["subresources"]["status"],
            json!({}),
            "the status subresource is on"
        );
    }

    #[test]
    fn crd_uses_only_formats_the_apiserver_knows() {
        let yaml = crd_yaml();
        let formats: Vec<&str> = yaml.lines().filter_map(|l| l.trim().strip_prefix("format: ")).collect();
        assert!(!formats.is_empty());
        for format in formats {
            assert!(
                ["int32", "int64", "date-time", "byte"].contains(&format),
                "kubectl apply warns: unrecognized format {format:?}"
            );
        }
    }

    #[test]
    fn committed_chart_crds_match_the_code() {
        let committed = [
            include_str!("../charts/onepassword-operator/templates/crd.yaml"),
            include_str!("../charts/onepassword-operator/templates/crd-onepasswordconnects.yaml"),
            include_str!("../charts/onepassword-operator/templates/crd-clusteronepasswordconnects.yaml"),
        ];
        for (committed, crd) in committed.into_iter().zip(crate::all_crds()) {
            assert!(
                committed == helm_template_of(&crd),
                "the chart's CRD of {} drifted from the code: run scripts/generate",
                crd.spec.names.kind
            );
        }
    }

    #[test]
    fn committed_crds_match_the_code() {
        let committed = [
            include_str!("../crds/onepassworditems.onepassword.com.yaml"),
            include_str!("../crds/onepasswordconnects.onepassword.com.yaml"),
            include_str!("../crds/clusteronepasswordconnects.onepassword.com.yaml"),
        ];
        for (committed, crd) in committed.into_iter().zip(crate::all_crds()) {
            assert!(
                committed == yaml_of(&crd),
                "crds/ drifted from the code for {}: run scripts/generate",
                crd.spec.names.kind
            );
        }
    }
}
