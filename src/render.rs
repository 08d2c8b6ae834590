//! `render -f`: for people writing manifests, the Secret each OnePasswordItem of a manifest
//! would get from Connect as it is now, or the reason the controller would report instead.
//! Values are masked unless asked for.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use crate::connect::ConnectClient;
use crate::controller::MappingOptions;
use crate::controller::preview::preview;
use crate::crd::{KIND, OnePasswordItem};

/// How to render.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Print the values (as `stringData` when they are text) instead of their sizes.
    pub show_values: bool,
    pub mapping: MappingOptions,
    /// As the operator's `--enable-annotations`.
    pub copy_annotations: bool,
    /// The namespace of objects that name none.
    pub namespace: String,
}

/// What a manifest renders to: the Secrets as YAML documents, what their status would warn
/// about, and the resources that would get no Secret, with the reason.
#[derive(Debug, Default)]
pub struct Rendered {
    pub yaml: String,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

/// Renders every OnePasswordItem of `manifest` (YAML, one or more documents); other kinds
/// are left out. Errors of the manifest itself (not YAML, no OnePasswordItem) are `Err`.
pub async fn render(connect: &ConnectClient, manifest: &str, options: &RenderOptions) -> Result<Rendered, String> {
    let mut items = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(manifest).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(document)
            .map_err(|e| format!("document {} is not YAML: {e}", index + 1))?;
        if value.is_null() || value.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
            continue;
        }
        let mut opi: OnePasswordItem = serde_yaml_ng::from_value(value)
            .map_err(|e| format!("document {} is not a valid {KIND}: {e}", index + 1))?;
        if opi.metadata.name.as_deref().is_none_or(str::is_empty) {
            return Err(format!("document {}: a {KIND} needs metadata.name", index + 1));
        }
        opi.metadata.namespace.get_or_insert_with(|| options.namespace.clone());
        items.push(opi);
    }
    if items.is_empty() {
        return Err(format!("the manifest holds no {KIND}"));
    }
    let mut rendered = Rendered::default();
    for opi in &items {
        let who = format!(
            "{KIND} {}/{}",
            opi.metadata.namespace.as_deref().unwrap_or_default(),
            opi.metadata.name.as_deref().unwrap_or_default()
        );
        match preview(connect, opi, options.mapping, options.copy_annotations).await {
            Ok(preview) => {
                rendered
                    .warnings
                    .extend(preview.warnings.iter().map(|w| format!("{who}: {w}")));
                let note = if options.show_values {
                    "values shown"
                } else {
                    "values masked; --show-values prints them"
                };
                rendered.yaml.push_str(&format!(
                    "---\n# The Secret {who} would get (item version {}); {note}\n{}",
                    preview.item_version,
                    secret_yaml(preview.secret, options.show_values)
                ));
            }
            Err(error) => rendered.errors.push(format!(
                "{who}: Ready=False, reason {}: {}",
                error.reason, error.message
            )),
        }
    }
    Ok(rendered)
}

/// The Secret as YAML, in the usual order; values masked to their sizes, or shown as
/// `stringData` when they are text (`data`, base64, otherwise).
fn secret_yaml(secret: Secret, show_values: bool) -> String {
    use serde_yaml_ng::{Mapping, Value, to_value};
    let mut out = Mapping::new();
    out.insert("apiVersion".into(), "v1".into());
    out.insert("kind".into(), "Secret".into());
    out.insert("metadata".into(), to_value(&secret.metadata).expect("metadata encodes"));
    out.insert("type".into(), Value::from(secret.type_.unwrap_or_default()));
    let data = secret.data.unwrap_or_default();
    if show_values {
        let (text, binary): (BTreeMap<_, _>, BTreeMap<_, _>) = data
            .into_iter()
            .partition(|(_, bytes)| std::str::from_utf8(&bytes.0).is_ok());
        if !text.is_empty() {
            let text: BTreeMap<String, String> = text
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8(v.0).expect("partitioned as text")))
                .collect();
            out.insert("stringData".into(), to_value(text).expect("strings encode"));
        }
        if !binary.is_empty() {
            out.insert("data".into(), to_value(binary).expect("bytes encode"));
        }
    } else {
        let masked: BTreeMap<String, String> = data
            .into_iter()
            .map(|(k, v)| (k, format!("<masked, {} bytes>", v.0.len())))
            .collect();
        out.insert("data".into(), to_value(masked).expect("strings encode"));
    }
    serde_yaml_ng::to_string(&out).expect("YAML encodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret() -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("db".into()),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([
                ("password".to_string(), ByteString(b"s3cr3t".to_vec())),
                ("key.bin".to_string(), ByteString(vec![0, 159])),
            ])),
            ..Secret::default()
        }
    }

    #[test]
    fn values_are_masked_to_their_sizes() {
        let yaml = secret_yaml(secret(), false);
        assert!(yaml.contains("password: <masked, 6 bytes>"), "{yaml}");
        assert!(yaml.contains("key.bin: <masked, 2 bytes>"), "{yaml}");
        assert!(!yaml.contains("s3cr3t"), "{yaml}");
        assert!(yaml.starts_with("apiVersion: v1\nkind: Secret\n"), "{yaml}");
    }

    #[test]
    fn shown_values_are_text_where_they_can_be() {
        let yaml = secret_yaml(secret(), true);
        let value: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(value["stringData"]["password"], "s3cr3t");
        assert_eq!(value["data"]["key.bin"], "AJ8=");
    }
}
