//! A keyed digest of what we wrote into a Secret, kept in an annotation on it, so that a
//! restarted operator can trust a Secret without reading its item from Connect again.
//!
//! HMAC-SHA256 with a key of this installation, not a plain hash: whoever may edit the
//! Secret cannot make a digest that matches an edit, so a Secret changed while the operator
//! was down fails the check and is repaired from Connect. The digest covers the item path
//! and version annotations, the type and every key and value, and the mapping options, so a
//! Secret copied from another item or made under other options fails too.

use std::fmt;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use ring::hmac;

use super::build::{MappingOptions, effective_type};
use crate::annotations::{DATA_DIGEST, ITEM_PATH, ITEM_VERSION};

/// Changed whenever the same item and options would map to other data, so that Secrets
/// written by an older mapping are not trusted.
const MAPPING_REVISION: u8 = 1;
const PREFIX: &str = "hmac-sha256:";

/// The installation's digest key. Never printed.
#[derive(Clone)]
pub struct DigestKey(hmac::Key);

impl DigestKey {
    /// A key from the bytes kept in the operator's key Secret (at least 32).
    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 32 {
            return Err(format!("the digest key has {} bytes, fewer than 32", bytes.len()));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// 32 random bytes for a new key.
    pub fn generate_bytes() -> Vec<u8> {
        use rand::RngCore;
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        bytes
    }
}

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKey(<redacted>)")
    }
}

/// What the digest covers, each part length-prefixed so that no two different Secrets give
/// the same bytes.
fn message(secret: &Secret, options: MappingOptions) -> Vec<u8> {
    let mut message = Vec::new();
    let mut put = |bytes: &[u8]| {
        message.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        message.extend_from_slice(bytes);
    };
    put(&[MAPPING_REVISION, u8::from(options.allow_empty_values)]);
    let annotations = secret.metadata.annotations.as_ref();
    for name in [ITEM_PATH, ITEM_VERSION] {
        put(annotations.and_then(|a| a.get(name)).map_or(&[][..], |v| v.as_bytes()));
    }
    put(effective_type(secret.type_.as_deref()).as_bytes());
    for (data_key, value) in secret.data.iter().flatten() {
        put(data_key.as_bytes());
        put(&value.0);
    }
    message
}

/// Writes the digest of `secret` into its annotations.
pub(crate) fn seal(secret: &mut Secret, key: &DigestKey, options: MappingOptions) {
    let digest = hmac::sign(&key.0, &message(secret, options));
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    secret
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(DATA_DIGEST.to_owned(), format!("{PREFIX}{hex}"));
}

/// Whether the Secret as it is carries the digest we would have written for it.
pub(crate) fn verify(secret: &Secret, key: &DigestKey, options: MappingOptions) -> bool {
    let Some(written) = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DATA_DIGEST))
        .and_then(|d| d.strip_prefix(PREFIX))
    else {
        return false;
    };
    let Some(bytes) = decode_hex(written) else {
        return false;
    };
    hmac::verify(&key.0, &message(secret, options), &bytes).is_ok()
}

/// Field of the key Secret that holds the key.
const KEY_FIELD: &str = "key";

/// The digest key kept in the Secret `name` of `namespace`; made there on the first start
/// (by whichever replica comes first).
pub async fn load_or_create_key(client: &kube::Client, namespace: &str, name: &str) -> Result<DigestKey, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let what = format!("the digest key Secret {namespace}/{name}");
    for _ in 0..2 {
        if let Some(secret) = api
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read {what}: {}", crate::error_chain(&e)))?
        {
            let bytes = secret.data.as_ref().and_then(|d| d.get(KEY_FIELD));
            return DigestKey::new(bytes.map_or(&[][..], |b| &b.0)).map_err(|e| format!("{what}: {e}"));
        }
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                annotations: Some(BTreeMap::from([(
                    "description".to_owned(),
                    "Key of the digests onepassword-operator writes on its Secrets. Deleting it makes the next start read every item again.".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                KEY_FIELD.to_owned(),
                ByteString(DigestKey::generate_bytes()),
            )])),
            ..Secret::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => continue,
            // Another replica made it first: read it.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(format!("cannot create {what}: {}", crate::error_chain(&e))),
        }
    }
    Err(format!("{what} keeps disappearing"))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> DigestKey {
        DigestKey::new(&[byte; 32]).unwrap()
    }

    fn secret() -> Secret {
        let mut secret = Secret::default();
        secret.metadata.annotations = Some(BTreeMap::from([
            (ITEM_PATH.to_string(), "vaults/v/items/i".to_string()),
            (ITEM_VERSION.to_string(), "3".to_string()),
        ]));
        secret.data = Some(BTreeMap::from([
            ("password".to_string(), ByteString(b"s3cr3t".to_vec())),
            ("username".to_string(), ByteString(b"app".to_vec())),
        ]));
        secret
    }

    fn sealed() -> Secret {
        let mut secret = secret();
        seal(&mut secret, &key(1), MappingOptions::default());
        secret
    }

    #[test]
    fn a_sealed_secret_verifies_and_shows_no_value() {
        let secret = sealed();
        assert!(verify(&secret, &key(1), MappingOptions::default()));
        let digest = &secret.metadata.annotations.as_ref().unwrap()[DATA_DIGEST];
        assert!(
            digest.starts_with(PREFIX) && digest.len() == PREFIX.len() + 64,
            "{digest}"
        );
        assert!(!digest.contains("s3cr3t"));
    }

    #[test]
    fn any_change_fails_the_check() {
        let options = MappingOptions::default();
        type Edit = fn(&mut Secret);
        let edits: [(&str, Edit); 6] = [
            ("a value", |s| {
                s.data
                    .as_mut()
                    .unwrap()
                    .insert("password".into(), ByteString(b"hacked".to_vec()));
            }),
            ("a key added", |s| {
                s.data.as_mut().unwrap().insert("extra".into(), ByteString(vec![]));
            }),
            ("a key removed", |s| {
                s.data.as_mut().unwrap().remove("username");
            }),
            ("the version", |s| {
                s.metadata
                    .annotations
                    .as_mut()
                    .unwrap()
                    .insert(ITEM_VERSION.into(), "4".into());
            }),
            ("the item", |s| {
                s.metadata
                    .annotations
                    .as_mut()
                    .unwrap()
                    .insert(ITEM_PATH.into(), "vaults/v/items/j".into());
            }),
            ("the type", |s| s.type_ = Some("kubernetes.io/basic-auth".into())),
        ];
        for (what, edit) in edits {
            let mut edited = sealed();
            edit(&mut edited);
            assert!(!verify(&edited, &key(1), options), "{what}");
        }
        // Moving a byte from one value to the next key keeps the concatenation, not the digest.
        let mut shifted = sealed();
        let data = shifted.data.as_mut().unwrap();
        data.insert("password".into(), ByteString(b"s3cr3tu".to_vec()));
        data.remove("username");
        data.insert("sername".into(), ByteString(b"app".to_vec()));
        assert!(!verify(&shifted, &key(1), options));
    }

    #[test]
    fn another_key_or_options_or_no_digest_fail_the_check() {
        let secret = sealed();
        assert!(!verify(&secret, &key(2), MappingOptions::default()));
        let options = MappingOptions {
            allow_empty_values: true,
        };
        assert!(!verify(&secret, &key(1), options));
        assert!(!verify(&self::secret(), &key(1), MappingOptions::default()));
        let mut garbled = sealed();
        garbled
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(DATA_DIGEST.into(), format!("{PREFIX}zz"));
        assert!(!verify(&garbled, &key(1), MappingOptions::default()));
    }

    #[test]
    fn keys_are_long_and_never_printed() {
        assert!(DigestKey::new(&[0; 16]).is_err());
        assert_eq!(format!("{:?}", key(7)), "DigestKey(<redacted>)");
        assert_eq!(DigestKey::generate_bytes().len(), 32);
        assert_ne!(DigestKey::generate_bytes(), DigestKey::generate_bytes());
    }
}
