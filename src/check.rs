//! `connect-check`: verifies a Connect host and token the way the operator will use them,
//! and says what is wrong in words. Prints names, counts and versions; never a value.

use std::fmt::Write as _;

use crate::connect::{ConnectClient, ConnectError, resolve_item, resolve_vault};
use crate::error_chain;

/// Runs the checks; the report on success, the first failure otherwise.
pub async fn connect_check(client: &ConnectClient, item_path: Option<&str>) -> Result<String, String> {
    let mut report = String::new();
    let host = client.base_url().as_str().trim_end_matches('/').to_owned();
    client
        .heartbeat()
        .await
        .map_err(|e| format!("Connect at {host} does not answer its heartbeat: {}", error_chain(&e)))?;
    let health = client
        .health()
        .await
        .map_err(|e| format!("Connect at {host} has no health report: {}", error_chain(&e)))?;
    let dependencies: Vec<String> = health
        .dependencies
        .iter()
        .map(|d| format!("{}: {}", d.service, d.status.as_ref().map_or("unknown", |s| s.as_str())))
        .collect();
    let _ = writeln!(
        report,
        "Connect  {host}  {} {} ({})",
        health.name,
        health.version,
        dependencies.join(", ")
    );

    let vaults = client.list_vaults(None).await.map_err(|e| match &e {
        ConnectError::Unauthorized { .. } => format!("the token was rejected: {e}"),
        _ => format!("cannot list vaults: {}", error_chain(&e)),
    })?;
    let listed: Vec<String> = vaults
        .iter()
        .map(|v| format!("{} ({} items)", v.name, v.items))
        .collect();
    let _ = writeln!(report, "Token    sees {} vault(s): {}", vaults.len(), listed.join(", "));

    if let Some(path) = item_path {
        let Some((vault_ref, item_ref)) = crate::crd::parse_item_path(path) else {
            return Err(format!("item path {path:?} must look like vaults/<vault>/items/<item>"));
        };
        let vault = resolve_vault(client, vault_ref)
            .await
            .map_err(|e| format!("vault {vault_ref:?}: {}", error_chain(&e)))?;
        let item = resolve_item(client, &vault.id, item_ref)
            .await
            .map_err(|e| format!("item {item_ref:?}: {}", error_chain(&e)))?;
        let full = client
            .get_item(&vault.id, &item.id)
            .await
            .map_err(|e| format!("item {item_ref:?}: {}", error_chain(&e)))?;
        let labels: Vec<&str> = full
            .fields
            .iter()
            .filter(|f| !f.label.is_empty())
            .map(|f| f.label.as_str())
            .collect();
        let files: Vec<&str> = full.files.iter().map(|f| f.name.as_str()).collect();
        let _ = writeln!(
            report,
            "Item     {path} -> vaults/{}/items/{} version {}; fields: {}; files: {}",
            vault.id,
            item.id,
            full.version,
            if labels.is_empty() {
                "none".into()
            } else {
                labels.join(", ")
            },
            if files.is_empty() {
                "none".into()
            } else {
                files.join(", ")
            },
        );
        if item.is_ambiguous() {
            let _ = writeln!(
                report,
                "Warning  {} other item(s) share this title; the oldest was chosen: {}",
                item.also_matched.len(),
                item.also_matched.join(", ")
            );
        }
    }
    Ok(report)
}
