//! The simulator's YAML data file: vaults, items and tokens to start with.
//!
//! ```yaml
//! tokens:
//!   - name: operator                 # shown as the actor in the activity log
//!     token: demo-operator-token     # the bearer token clients send
//!     vaults: { Demo: read, Staging: read-write }   # or { "*": read-write } for all
//! vaults:
//!   - name: Demo
//!     id: 4u6ldzfyq2aiyqhvxxelmkbmnq # optional: derived from the name when absent
//!     description: Example vault
//!     items:
//!       - title: Database
//!         category: LOGIN            # default LOGIN
//!         tags: [db]
//!         urls: [{ href: "https://db.example", label: website, primary: true }]
//!         sections: [{ id: conn, label: Connection }]
//!         fields:
//!           - { label: username, value: admin, purpose: USERNAME }
//!           - { label: password, value: s3cr3t, purpose: PASSWORD }
//!           - { label: host, value: db.internal, section: conn }
//!         files:
//!           - { name: ca.pem, content: "-----BEGIN CERTIFICATE-----..." }  # text
//!           - { name: key.bin, contentBase64: "AAEC" }                     # bytes
//!           - { name: big.bin, path: files/big.bin }   # relative to the data file
//! ```
//! Ids left out are derived from names (stable across restarts); every key but `name`
//! and `title` is optional.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use onepassword_connect::models::{Category, FieldPurpose, FieldType, ItemUrl, Section, VaultType};

/// The example data embedded in the binary: what the simulator serves without `--data`.
pub const EMBEDDED_EXAMPLE: &str = include_str!("../../../examples/connect-data.yaml");

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DataFile {
    #[serde(default)]
    pub tokens: Vec<TokenSpec>,
    #[serde(default)]
    pub vaults: Vec<VaultSpec>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    ReadWrite,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    pub name: String,
    pub token: String,
    /// Vault name or id → access; the key `*` grants every vault.
    pub vaults: BTreeMap<String, Access>,
}

impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("vaults", &self.vaults)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VaultSpec {
    pub name: String,
    pub id: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub vault_type: Option<VaultType>,
    #[serde(default)]
    pub items: Vec<ItemSpec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ItemSpec {
    pub title: String,
    pub id: Option<String>,
    pub category: Option<Category>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub favorite: bool,
    #[serde(default)]
    pub urls: Vec<ItemUrl>,
    #[serde(default)]
    pub sections: Vec<Section>,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FieldSpec {
    pub id: Option<String>,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub value: String,
    #[serde(rename = "type")]
    pub field_type: Option<FieldType>,
    pub purpose: Option<FieldPurpose>,
    /// Section id.
    pub section: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileSpec {
    pub name: String,
    pub id: Option<String>,
    pub section: Option<String>,
    pub content: Option<String>,
    pub content_base64: Option<String>,
    pub path: Option<PathBuf>,
}

impl FileSpec {
    /// The file's bytes; `path` is relative to `base_dir`.
    pub fn bytes(&self, base_dir: &Path) -> Result<Vec<u8>, String> {
        match (&self.content, &self.content_base64, &self.path) {
            (Some(text), None, None) => Ok(text.clone().into_bytes()),
            (None, Some(encoded), None) => base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| format!("file {:?}: contentBase64 is not valid base64: {e}", self.name)),
            (None, None, Some(path)) => {
                let full = base_dir.join(path);
                std::fs::read(&full).map_err(|e| format!("file {:?}: cannot read {}: {e}", self.name, full.display()))
            }
            _ => Err(format!(
                "file {:?}: give exactly one of content, contentBase64 or path",
                self.name
            )),
        }
    }
}

impl DataFile {
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_yaml_ng::from_str(text).map_err(|e| format!("invalid simulator data: {e}"))
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn embedded_example() -> Self {
        Self::parse(EMBEDDED_EXAMPLE).expect("the embedded example data is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_example_parses() {
        let data = DataFile::embedded_example();
        assert!(!data.vaults.is_empty());
        assert!(!data.tokens.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let err = DataFile::parse("vaults:\n  - name: x\n    itemz: []\n").unwrap_err();
        assert!(err.contains("itemz"), "{err}");
    }

    #[test]
    fn file_content_sources_are_exclusive() {
        let spec = FileSpec {
            name: "f".into(),
            id: None,
            section: None,
            content: Some("a".into()),
            content_base64: Some("YQ==".into()),
            path: None,
        };
        assert!(spec.bytes(Path::new(".")).unwrap_err().contains("exactly one"));
        let spec = FileSpec { content: None, ..spec };
        assert_eq!(spec.bytes(Path::new(".")).unwrap(), b"a");
    }

    #[test]
    fn token_debug_is_redacted() {
        let spec = TokenSpec {
            name: "op".into(),
            token: "very-secret".into(),
            vaults: BTreeMap::new(),
        };
        assert!(!format!("{spec:?}").contains("very-secret"));
    }
}
