//! Preview: the Secret a OnePasswordItem would get, without a cluster, for `render -f`. The
//! controller's own resolve, fetch and build steps, through a directory of its own, so that
//! a preview says exactly what the controller would write, or the reason it would report.

use k8s_openapi::api::core::v1::Secret;

use super::build::{MappingOptions, SecretTarget};
use super::error::Error;
use super::fetch::fetch_item;
use super::references::{build_for, references};
use super::resolve::{Directory, resolve_in};
use super::status::{collision_message, skipped_message};
use crate::connect::ConnectClient;
use crate::crd::OnePasswordItem;

/// The Secret as the controller would write it (without the ownerReference, which needs the
/// object's uid), and what its status would add besides `Ready`.
#[derive(Debug)]
pub struct Preview {
    pub secret: Secret,
    pub item_version: u64,
    pub warnings: Vec<String>,
}

/// Why no Secret would be written: the reason and message of `Ready=False`.
#[derive(Debug, PartialEq, Eq)]
pub struct PreviewError {
    pub reason: &'static str,
    pub message: String,
}

impl From<Error> for PreviewError {
    fn from(error: Error) -> Self {
        Self {
            reason: error.reason(),
            message: error.message(),
        }
    }
}

/// The Secret `opi` would get from the items Connect holds now.
pub async fn preview(
    connect: &ConnectClient,
    opi: &OnePasswordItem,
    mapping: MappingOptions,
    copy_annotations: bool,
) -> Result<Preview, PreviewError> {
    let refs = references(opi)?;
    let directory = Directory::default();
    let mut fetched = Vec::with_capacity(refs.len());
    for reference in &refs {
        let resolved = resolve_in(&directory, connect, &reference.path).await?;
        let cached = fetch_item(connect, &resolved.key, None)
            .await
            .map_err(|e| reference.path.item_not_found(e))?;
        fetched.push((resolved, cached));
    }
    // The owner reference needs a uid, which only a stored object has; it is dropped below.
    let mut stored = opi.clone();
    stored.metadata.uid.get_or_insert_with(|| "preview".into());
    let target = SecretTarget::for_item(&stored, copy_annotations);
    let items: Vec<_> = fetched
        .iter()
        .map(|(resolved, cached)| (&resolved.key, cached))
        .collect();
    let mut built = build_for(&target, &refs, &items, mapping)?;
    built.secret.metadata.owner_references = None;
    let mut warnings = Vec::new();
    if !built.collisions.is_empty() {
        warnings.push(format!("KeyCollision: {}", collision_message(&built.collisions)));
    }
    if !built.skipped.is_empty() {
        warnings.push(format!("KeysSkipped: {}", skipped_message(&built.skipped)));
    }
    for (reference, (resolved, _)) in refs.iter().zip(&fetched) {
        if !resolved.also_matched.is_empty() {
            warnings.push(format!(
                "ItemPathAmbiguous: {} other item(s) have the same title as {} ({}); the oldest was chosen",
                resolved.also_matched.len(),
                reference.path.path,
                resolved.also_matched.join(", ")
            ));
        }
    }
    Ok(Preview {
        secret: built.secret,
        item_version: fetched[0].1.item.version,
        warnings,
    })
}
