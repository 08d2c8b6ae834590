//! Serde types for every schema of the Connect API (OpenAPI 1.8.1).
//!
//! Decoding is lenient: unknown enum values land in an `Unknown` variant and unknown
//! keys are ignored, because a newer Connect server must never break the operator.
//! Encoding omits empty values, as the real server does (Go `omitempty`).
//! `Debug` never prints field values or file contents.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Declares a string enum with an `Unknown(String)` catch-all that round-trips.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this version does not know; kept verbatim.
            Unknown(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Unknown(other) => other,
                }
            }

            /// Parses case-sensitively, as the server does; anything else is `Unknown`.
            pub fn parse(value: &str) -> Self {
                match value {
                    $($wire $(| $alias)* => Self::$variant,)+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Ok(Self::parse(&value))
            }
        }
    };
}

string_enum!(
    /// Kind of vault.
    VaultType {
        UserCreated => "USER_CREATED",
        Personal => "PERSONAL",
        Everyone => "EVERYONE",
        Transfer => "TRANSFER",
    }
);

string_enum!(
    /// Item category. `Custom` and `Document` items cannot be created through Connect.
    Category {
        Login => "LOGIN",
        Password => "PASSWORD",
        ApiCredential => "API_CREDENTIAL",
        Server => "SERVER",
        Database => "DATABASE",
        CreditCard => "CREDIT_CARD",
        Membership => "MEMBERSHIP",
        Passport => "PASSPORT",
        SoftwareLicense => "SOFTWARE_LICENSE",
        OutdoorLicense => "OUTDOOR_LICENSE",
        SecureNote => "SECURE_NOTE",
        WirelessRouter => "WIRELESS_ROUTER",
        BankAccount => "BANK_ACCOUNT",
        DriverLicense => "DRIVER_LICENSE",
        Identity => "IDENTITY",
        RewardProgram => "REWARD_PROGRAM",
        Document => "DOCUMENT",
        EmailAccount => "EMAIL_ACCOUNT",
        SocialSecurityNumber => "SOCIAL_SECURITY_NUMBER",
        MedicalRecord => "MEDICAL_RECORD",
        SshKey => "SSH_KEY",
        Custom => "CUSTOM",
    }
);

string_enum!(
    /// Field type. The server emits `OTP`; the OpenAPI text says `TOTP`: both decode to `Otp`.
    FieldType {
        String => "STRING",
        Email => "EMAIL",
        Concealed => "CONCEALED",
        Url => "URL",
        Otp => "OTP" | "TOTP",
        Date => "DATE",
        MonthYear => "MONTH_YEAR",
        Menu => "MENU",
    }
);

string_enum!(
    /// Role of a built-in field.
    FieldPurpose {
        Username => "USERNAME",
        Password => "PASSWORD",
        Notes => "NOTES",
    }
);

string_enum!(
    /// Character set for generated values.
    CharacterSet {
        Letters => "LETTERS",
        Digits => "DIGITS",
        Symbols => "SYMBOLS",
    }
);

string_enum!(
    /// Lifecycle state of an item; absent for active items.
    ItemState {
        Archived => "ARCHIVED",
        Deleted => "DELETED",
    }
);

string_enum!(
    /// JSON Patch operation; Connect supports only these three.
    PatchOperation {
        Add => "add",
        Remove => "remove",
        Replace => "replace",
    }
);

string_enum!(
    /// What an API request did.
    ApiAction {
        Read => "READ",
        Create => "CREATE",
        Update => "UPDATE",
        Delete => "DELETE",
    }
);

string_enum!(
    /// Whether an API request was allowed.
    ApiResult {
        Success => "SUCCESS",
        Deny => "DENY",
    }
);

string_enum!(
    /// Kind of resource an API request touched.
    ResourceType {
        Item => "ITEM",
        Vault => "VAULT",
    }
);

string_enum!(
    /// Health of one server dependency.
    DependencyStatus {
        Active => "ACTIVE",
        Inactive => "INACTIVE",
        Error => "ERROR",
    }
);

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Decodes `""` and `null` as `None`: the server sends `"purpose": ""` for plain fields.
fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let value = Option::<Value>::deserialize(deserializer)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(other) => T::deserialize(other).map(Some).map_err(serde::de::Error::custom),
    }
}

/// A vault the token can see.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vault {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Grows when the vault's own name or description changes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attribute_version: u64,
    /// Grows on every item create, update or delete in the vault: the cheap change signal.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub content_version: u64,
    /// Number of active items.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub items: u64,
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub vault_type: Option<VaultType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

/// `{"id": …}` reference to a vault.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultRef {
    #[serde(default)]
    pub id: String,
}

/// `{"id": …}` reference to a section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionRef {
    #[serde(default)]
    pub id: String,
}

/// A URL of an item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemUrl {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub primary: bool,
    #[serde(default)]
    pub href: String,
}

/// An item as listed: metadata only, no fields, sections or files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(default)]
    pub vault: VaultRef,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "empty_as_none")]
    pub category: Option<Category>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<ItemUrl>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub favorite: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Grows by one on every saved change: the per-item change signal.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "empty_as_none")]
    pub state: Option<ItemState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_edited_by: String,
}

impl Item {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// What change detection and title resolution need of a listed item. A listing decoded
/// into these takes a fraction of the memory of full [`Item`]s (no URLs, tags or vault).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemSummary {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub version: u64,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub state: Option<ItemState>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
}

/// An item with its sections, fields and file metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FullItem {
    #[serde(flatten)]
    pub item: Item,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<Section>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
}

impl std::ops::Deref for FullItem {
    type Target = Item;
    fn deref(&self) -> &Item {
        &self.item
    }
}

impl std::ops::DerefMut for FullItem {
    fn deref_mut(&mut self) -> &mut Item {
        &mut self.item
    }
}

/// A group of fields inside an item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
}

/// How the server should generate a value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorRecipe {
    /// 1..=64; 32 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub character_sets: Vec<CharacterSet>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exclude_characters: String,
}

/// Strength details of a password field.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PasswordDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub generated: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub strength: String,
    /// Previous passwords: secret, never printed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<String>,
}

impl fmt::Debug for PasswordDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordDetails")
            .field("entropy", &self.entropy)
            .field("generated", &self.generated)
            .field("strength", &self.strength)
            .field("history", &format_args!("[{} redacted]", self.history.len()))
            .finish()
    }
}

/// One field of an item. `value` and `totp` are secret and never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Field {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<SectionRef>,
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub field_type: Option<FieldType>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "empty_as_none")]
    pub purpose: Option<FieldPurpose>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Input only: ask the server to generate `value`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub generate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<GeneratorRecipe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
    /// Current one-time code of an OTP field (`value` holds the `otpauth://` URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_details: Option<PasswordDetails>,
}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Field")
            .field("id", &self.id)
            .field("section", &self.section)
            .field("field_type", &self.field_type)
            .field("purpose", &self.purpose)
            .field("label", &self.label)
            .field("value", &Redacted(self.value.is_empty()))
            .field("generate", &self.generate)
            .field("recipe", &self.recipe)
            .field("totp", &self.totp.as_ref().map(|_| Redacted(false)))
            .field("password_details", &self.password_details)
            .finish()
    }
}

/// A file attached to an item (or the document of a DOCUMENT item).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct File {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub size: u64,
    /// `/v1/vaults/{vault}/items/{item}/files/{file}/content`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<SectionRef>,
    /// Present only when inlined (`inline_files=true`); standard padded base64 on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "base64_bytes")]
    pub content: Option<Vec<u8>>,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("size", &self.size)
            .field("content_path", &self.content_path)
            .field("section", &self.section)
            .field(
                "content",
                &self.content.as_ref().map(|c| format!("<{} bytes redacted>", c.len())),
            )
            .finish()
    }
}

struct Redacted(bool);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "\"\"" } else { "<redacted>" })
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_str(&STANDARD.encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
        let encoded = Option::<String>::deserialize(deserializer)?;
        encoded
            .map(|s| STANDARD.decode(s.as_bytes()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// One operation of a JSON Patch (RFC 6902) request body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchOp {
    pub op: PatchOperation,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl PatchOp {
    pub fn add(path: impl Into<String>, value: Value) -> Self {
        Self {
            op: PatchOperation::Add,
            path: path.into(),
            value: Some(value),
        }
    }

    pub fn replace(path: impl Into<String>, value: Value) -> Self {
        Self {
            op: PatchOperation::Replace,
            path: path.into(),
            value: Some(value),
        }
    }

    pub fn remove(path: impl Into<String>) -> Self {
        Self {
            op: PatchOperation::Remove,
            path: path.into(),
            value: None,
        }
    }
}

/// Who made an API request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiActor {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_ip: String,
}

/// `{"id": …}` reference to an item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRef {
    #[serde(default)]
    pub id: String,
}

/// What an API request touched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResource {
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub resource_type: Option<ResourceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemRef>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub item_version: u64,
}

/// One entry of the activity log (`GET /v1/activity`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiRequest {
    #[serde(default)]
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "empty_as_none")]
    pub action: Option<ApiAction>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "empty_as_none")]
    pub result: Option<ApiResult>,
    #[serde(default)]
    pub actor: ApiActor,
    #[serde(default)]
    pub resource: ApiResource,
}

/// Health of one service the Connect server depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDependency {
    #[serde(default)]
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "empty_as_none")]
    pub status: Option<DependencyStatus>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHealth {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub dependencies: Vec<ServiceDependency>,
}

/// The JSON body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub status: u16,
    #[serde(default)]
    pub message: String,
}

/// One page of the activity log and the total from `Content-Range`.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityPage {
    pub requests: Vec<ApiRequest>,
    /// Total number of recorded requests, when the server said it.
    pub total: Option<u64>,
}

/// `^[a-z0-9]{26}$`: the shape of vault, item and file ids. SDKs use it to tell ids
/// from titles.
pub fn is_valid_id(value: &str) -> bool {
    value.len() == 26 && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listed_item_decodes_as_a_summary_with_what_resolution_needs() {
        let listed = json!({
            "id": "aaaaaaaaaaaaaaaaaaaaaaaaaa", "title": "DB", "version": 7, "state": "ARCHIVED",
            "createdAt": "2024-01-01T00:00:00Z", "vault": { "id": "v" }, "category": "LOGIN",
            "urls": [{ "href": "https://example.com" }], "tags": ["a"], "favorite": true
        });
        let summary: ItemSummary = serde_json::from_value(listed).unwrap();
        assert_eq!(
            (
                summary.id.as_str(),
                summary.title.as_str(),
                summary.version,
                summary.state
            ),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaa", "DB", 7, Some(ItemState::Archived))
        );
        assert_eq!(summary.created_at, Some("2024-01-01T00:00:00Z".parse().unwrap()));
        let active: ItemSummary = serde_json::from_value(json!({ "id": "x", "state": "" })).unwrap();
        assert_eq!(active.state, None);
    }

    #[test]
    fn unknown_enum_values_decode_and_round_trip() {
        let field: Field = serde_json::from_value(json!({
            "id": "x", "type": "SSHKEY", "purpose": "", "label": "key", "value": "v"
        }))
        .unwrap();
        assert_eq!(field.field_type, Some(FieldType::Unknown("SSHKEY".into())));
        assert_eq!(field.purpose, None);
        assert_eq!(serde_json::to_value(&field).unwrap()["type"], "SSHKEY");

        let item: FullItem = serde_json::from_value(json!({
            "id": "a", "title": "t", "vault": {"id": "v"}, "category": "CRYPTO_WALLET",
            "state": "SOMETHING_NEW", "brandNewKey": {"nested": true}
        }))
        .unwrap();
        assert_eq!(item.category, Some(Category::Unknown("CRYPTO_WALLET".into())));
        assert_eq!(item.state, Some(ItemState::Unknown("SOMETHING_NEW".into())));
    }

    #[test]
    fn totp_and_otp_both_decode_to_otp_and_otp_is_emitted() {
        for wire in ["TOTP", "OTP"] {
            let field: Field = serde_json::from_value(json!({"type": wire})).unwrap();
            assert_eq!(field.field_type, Some(FieldType::Otp));
            assert_eq!(serde_json::to_value(&field).unwrap()["type"], "OTP");
        }
    }

    #[test]
    fn empty_values_are_omitted_when_encoding() {
        let item = FullItem {
            item: Item {
                id: "i".into(),
                vault: VaultRef { id: "v".into() },
                ..Item::default()
            },
            ..FullItem::default()
        };
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"id": "i", "vault": {"id": "v"}})
        );
        let field = Field {
            id: "f".into(),
            ..Field::default()
        };
        assert_eq!(serde_json::to_value(&field).unwrap(), json!({"id": "f"}));
    }

    #[test]
    fn full_item_decodes_a_real_server_response() {
        let body = json!({
            "id": "2fcbqwe9ndg175zg2dzwftvkpa", "title": "Secrets Automation Item",
            "tags": ["connect", "\u{1F510}"], "vault": {"id": "ftz4pm2xxwmwrsd7rjqn7grzfz"},
            "category": "LOGIN", "sections": [{"id": "95cdbc3b-7742-47ec-9056-44d6af82d562", "label": "Security Questions"}],
            "fields": [
                {"id": "username", "type": "STRING", "purpose": "USERNAME", "label": "username", "value": "wendy"},
                {"id": "password", "type": "CONCEALED", "purpose": "PASSWORD", "label": "password", "value": "hLDegPkuMQqyQiyDZqRdWGoojiN5KYQtXuA0wBDe9z3Caj6FQGHpbGu", "entropy": 189.78359985351562,
                 "passwordDetails": {"entropy": 190, "generated": true, "strength": "FANTASTIC"}},
                {"id": "a6cvmeqakbxoflkgmor4haji7y", "section": {"id": "95cdbc3b-7742-47ec-9056-44d6af82d562"}, "type": "STRING", "label": "Recovery Key", "value": "s=^J@GhHP"}
            ],
            "files": [{"id": "6r65pjq33banznomn7q22sj44e", "name": "testfile.txt", "size": 35,
                       "content_path": "/v1/vaults/ftz4pm2xxwmwrsd7rjqn7grzfz/items/2fcbqwe9ndg175zg2dzwftvkpa/files/6r65pjq33banznomn7q22sj44e/content",
                       "content": "VGhlIGZ1dHVyZSBiZWxvbmdzIHRvIHRoZSBjdXJpb3VzLgo="}],
            "createdAt": "2021-04-10T17:20:05.98944527Z", "updatedAt": "2021-04-13T17:20:05.989445411Z",
            "lastEditedBy": "LLE2WGYMQZFDJFUTHNFDBQAAFE", "version": 3
        });
        let item: FullItem = serde_json::from_value(body).unwrap();
        assert_eq!(item.version, 3);
        assert_eq!(item.fields[1].purpose, Some(FieldPurpose::Password));
        assert_eq!(
            item.files[0].content.as_deref(),
            Some(&b"The future belongs to the curious.\n"[..])
        );
        assert!(item.created_at.unwrap() < item.updated_at.unwrap());
    }

    #[test]
    fn debug_output_never_shows_values() {
        let field = Field {
            label: "password".into(),
            value: "hunter2-very-secret".into(),
            totp: Some("123456".into()),
            ..Field::default()
        };
        let file = File {
            name: "key.pem".into(),
            content: Some(b"PRIVATE KEY".to_vec()),
            ..File::default()
        };
        let printed = format!("{field:?} {file:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("123456"), "{printed}");
        assert!(!printed.contains("PRIVATE"), "{printed}");
        assert!(printed.contains("password") && printed.contains("key.pem"));
    }

    #[test]
    fn id_shape() {
        assert!(is_valid_id("ftz4pm2xxwmwrsd7rjqn7grzfz"));
        assert!(!is_valid_id("ftz4pm2xxwmwrsd7rjqn7grzf"));
        assert!(!is_valid_id("FTZ4PM2XXWMWRSD7RJQN7GRZFZ"));
        assert!(!is_valid_id("ftz4pm2xxwmwrsd7rjqn7grz-z"));
    }
}
