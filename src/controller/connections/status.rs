//! Keeps each connection resource's client and status current: reads its token (and CA)
//! Secret every few seconds, so that a rotated token is used without a restart; asks the
//! Connect server for its version and the vaults the token can read; reports `Ready` with
//! `Connected`, `Unauthorized`, `Unreachable` or `InvalidSpec`; warns with an Event when the
//! token expires within a week. The token itself is never logged or written anywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use secrecy::SecretString;
use serde_json::json;
use tracing::{info, instrument, warn};

use super::resource::{
    CONNECTED, ClusterOnePasswordConnect, ConnectionStatus, INVALID_SPEC, OnePasswordConnect, UNAUTHORIZED, UNREACHABLE,
};
use super::{ConnectionKey, token};
use crate::connect::ConnectError;
use crate::controller::Context;

/// How often the token Secret is read: a rotated token is in use within this.
pub(crate) const TOKEN_RECHECK: Duration = Duration::from_secs(5);
/// How often Connect is asked for its version and vaults while nothing changes.
const CONNECT_RECHECK: Duration = Duration::from_secs(60);
/// A token expiring within this gets a warning Event.
pub(crate) const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a connection resource says, whichever its kind.
struct Declared {
    key: ConnectionKey,
    reference: ObjectReference,
    generation: Option<i64>,
    host: String,
    /// (namespace, name, key) of the token and the CA bundle.
    token: (String, String, String),
    ca_bundle: Option<(String, String, String)>,
    status: Option<ConnectionStatus>,
}

/// When each connection was last checked against Connect, and with which token.
#[derive(Default)]
pub(crate) struct Checks {
    last: Mutex<HashMap<ConnectionKey, Check>>,
}

#[derive(Clone, Copy)]
struct Check {
    at: Instant,
    generation: Option<i64>,
    token_generation: u64,
    /// The expiry warned about, so that one token gets one Event per operator run.
    warned_expiry: Option<i64>,
}

/// The Connect server's answer, or why there is none: one `Ready` condition's worth.
struct Verdict {
    reason: &'static str,
    message: String,
    server_version: Option<String>,
    vaults: Option<u32>,
}

impl Verdict {
    fn invalid(message: String) -> Self {
        Self {
            reason: INVALID_SPEC,
            message,
            server_version: None,
            vaults: None,
        }
    }
}

#[instrument(skip_all, fields(name = %object.name_any(), namespace = object.namespace().unwrap_or_default()))]
pub(crate) async fn reconcile_namespaced(
    object: Arc<OnePasswordConnect>,
    ctx: Arc<Context>,
) -> Result<Action, kube::Error> {
    let namespace = object.namespace().unwrap_or_default();
    let declared = Declared {
        key: ConnectionKey::Namespaced {
            namespace: namespace.clone(),
            name: object.name_any(),
        },
        reference: object.object_ref(&()),
        generation: object.metadata.generation,
        host: object.spec.host.clone(),
        token: (
            namespace.clone(),
            object.spec.token_secret_ref.name.clone(),
            object.spec.token_secret_ref.key.clone(),
        ),
        ca_bundle: object
            .spec
            .ca_bundle_secret_ref
            .as_ref()
            .map(|r| (namespace.clone(), r.name.clone(), r.key.clone())),
        status: object.status.clone(),
    };
    let api: Api<OnePasswordConnect> = Api::namespaced(ctx.client.clone(), &namespace);
    check(&ctx, declared, &api, &object.name_any()).await
}

#[instrument(skip_all, fields(name = %object.name_any()))]
pub(crate) async fn reconcile_cluster(
    object: Arc<ClusterOnePasswordConnect>,
    ctx: Arc<Context>,
) -> Result<Action, kube::Error> {
    let spec = &object.spec;
    let declared = Declared {
        key: ConnectionKey::Cluster {
            name: object.name_any(),
        },
        reference: object.object_ref(&()),
        generation: object.metadata.generation,
        host: spec.host.clone(),
        token: (
            spec.token_secret_ref.namespace.clone(),
            spec.token_secret_ref.name.clone(),
            spec.token_secret_ref.key.clone(),
        ),
        ca_bundle: spec
            .ca_bundle_secret_ref
            .as_ref()
            .map(|r| (r.namespace.clone(), r.name.clone(), r.key.clone())),
        status: object.status.clone(),
    };
    let api: Api<ClusterOnePasswordConnect> = Api::all(ctx.client.clone());
    check(&ctx, declared, &api, &object.name_any()).await
}

pub(crate) fn error_policy<K>(_object: Arc<K>, error: &kube::Error, _ctx: Arc<Context>) -> Action {
    warn!(error = %error, "cannot check a connection");
    Action::requeue(TOKEN_RECHECK)
}

async fn check<K>(ctx: &Context, declared: Declared, api: &Api<K>, name: &str) -> Result<Action, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let connections = &ctx.connections;
    let (verdict, expires_at) = match usable(ctx, &declared).await {
        Err(message) => {
            connections.retire(&declared.key);
            (Verdict::invalid(message), None)
        }
        Ok((host, token, ca_bundle)) => {
            let expires_at = token::expiry(secrecy::ExposeSecret::expose_secret(&token));
            match connections.install(&declared.key, &host, &token, ca_bundle, ctx.settings.connect_timeout) {
                Err(err) => {
                    connections.retire(&declared.key);
                    (Verdict::invalid(crate::error_chain(&err)), None)
                }
                Ok(connection) => {
                    let previous = ctx
                        .connection_checks
                        .last
                        .lock()
                        .expect("checks lock")
                        .get(&declared.key)
                        .copied();
                    let token_generation = connection.connect.token_generation();
                    let reported = declared
                        .status
                        .as_ref()
                        .and_then(|s| s.ready())
                        .map(|c| c.reason.as_str());
                    // What the poller and the reconciles see between checks: the status
                    // follows an outage or a rejected token within seconds.
                    let seen = if connection.connect.token_rejected() {
                        Some(UNAUTHORIZED)
                    } else if connection.failing() {
                        Some(UNREACHABLE)
                    } else {
                        Some(CONNECTED)
                    };
                    let due = previous.is_none_or(|p| {
                        p.at.elapsed() >= CONNECT_RECHECK
                            || p.generation != declared.generation
                            || p.token_generation != token_generation
                    }) || reported.is_none()
                        || (reported != seen && reported != Some(INVALID_SPEC));
                    if !due {
                        return Ok(Action::requeue(TOKEN_RECHECK));
                    }
                    let verdict = ask_connect(&connection.connect).await;
                    if verdict.reason == CONNECTED && seen != Some(CONNECTED) {
                        // The poller may be in its outage backoff: it need not wait any more.
                        connection.wake_poller();
                    }
                    let mut warned_expiry = previous
                        .filter(|p| p.token_generation == token_generation)
                        .and_then(|p| p.warned_expiry);
                    if let Some(expiry) = expires_at
                        && warned_expiry != Some(expiry.as_second())
                        && expires_within(expiry, EXPIRY_WARNING)
                    {
                        let note = format!(
                            "the Connect token of {} expires at {expiry} (within 7 days): issue a new token and put it into Secret {}/{}",
                            declared.key, declared.token.0, declared.token.1
                        );
                        ctx.events
                            .notify(&declared.reference, true, "Check", "TokenExpiringSoon", note)
                            .await;
                        warned_expiry = Some(expiry.as_second());
                    }
                    ctx.connection_checks.last.lock().expect("checks lock").insert(
                        declared.key.clone(),
                        Check {
                            at: Instant::now(),
                            generation: declared.generation,
                            token_generation,
                            warned_expiry,
                        },
                    );
                    (verdict, expires_at)
                }
            }
        }
    };
    if let Some(expiry) = expires_at {
        ctx.metrics
            .set_token_expiry(&declared.key.to_string(), expiry.as_second());
    }
    ctx.metrics
        .set_connection_ready(&declared.key.to_string(), verdict.reason == CONNECTED);
    let next = next_status(&declared, &verdict, expires_at);
    if declared.status.as_ref() != Some(&next) {
        let was_ready = declared
            .status
            .as_ref()
            .and_then(|s| s.ready())
            .map(|c| c.reason.clone());
        if was_ready.as_deref() != Some(verdict.reason) {
            info!(connection = %declared.key, reason = verdict.reason, message = %verdict.message, "connection checked");
        }
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({ "status": next })))
            .await?;
        // Resources naming it may now sync, or must say why not.
        connections.changed(&declared.key);
    }
    Ok(Action::requeue(TOKEN_RECHECK))
}

fn expires_within(expiry: jiff::Timestamp, within: Duration) -> bool {
    let left = expiry.as_second() - jiff::Timestamp::now().as_second();
    left < within.as_secs() as i64
}

/// The host, token and CA bundle the resource names, or why they cannot be used.
async fn usable(ctx: &Context, declared: &Declared) -> Result<(url::Url, SecretString, Option<Vec<u8>>), String> {
    let host = url::Url::parse(&declared.host).map_err(|e| format!("host {:?} is not a URL: {e}", declared.host))?;
    let token = secret_key(ctx, &declared.token, "token").await?;
    let token = String::from_utf8(token).map_err(|_| {
        format!(
            "the token in Secret {}/{} is not text",
            declared.token.0, declared.token.1
        )
    })?;
    if token.trim().is_empty() {
        return Err(format!(
            "key {:?} of Secret {}/{} is empty",
            declared.token.2, declared.token.0, declared.token.1
        ));
    }
    let ca_bundle = match &declared.ca_bundle {
        Some(reference) => Some(secret_key(ctx, reference, "CA bundle").await?),
        None => None,
    };
    Ok((host, SecretString::from(token.trim().to_owned()), ca_bundle))
}

/// One key of a Secret; the message names the Secret and the key, never a value.
async fn secret_key(
    ctx: &Context,
    (namespace, name, key): &(String, String, String),
    what: &str,
) -> Result<Vec<u8>, String> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = match api.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Err(format!("the {what} Secret {namespace}/{name} does not exist")),
        Err(err) => return Err(format!("cannot read the {what} Secret {namespace}/{name}: {err}")),
    };
    let value = secret.data.and_then(|mut data| data.remove(key));
    value
        .map(|v| v.0)
        .ok_or_else(|| format!("the {what} Secret {namespace}/{name} has no key {key:?}"))
}

/// What Connect says of itself and of the token.
async fn ask_connect(connect: &crate::connect::ConnectClient) -> Verdict {
    let failed = |err: ConnectError| Verdict {
        reason: if err.is_auth_failure() {
            UNAUTHORIZED
        } else {
            UNREACHABLE
        },
        message: crate::error_chain(&err),
        server_version: None,
        vaults: None,
    };
    // `/health` needs no token: it says whether the server is up, and its version.
    let health = match connect.health().await {
        Ok(health) => health,
        Err(err) => return failed(err),
    };
    let vaults = match connect.list_vaults(None).await {
        Ok(vaults) => vaults,
        Err(err) => {
            return Verdict {
                server_version: Some(health.version),
                ..failed(err)
            };
        }
    };
    let count = u32::try_from(vaults.len()).unwrap_or(u32::MAX);
    Verdict {
        reason: CONNECTED,
        message: format!(
            "Connect {} answers; the token reads {count} vault{}",
            health.version,
            if count == 1 { "" } else { "s" }
        ),
        server_version: Some(health.version),
        vaults: Some(count),
    }
}

fn next_status(declared: &Declared, verdict: &Verdict, expires_at: Option<jiff::Timestamp>) -> ConnectionStatus {
    let status = if verdict.reason == CONNECTED { "True" } else { "False" };
    let previous = declared.status.as_ref().and_then(|s| s.ready());
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(jiff::Timestamp::now()),
    };
    ConnectionStatus {
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: verdict.reason.into(),
            message: verdict.message.clone(),
            last_transition_time,
            observed_generation: declared.generation,
        }],
        server_version: verdict.server_version.clone(),
        vaults: verdict.vaults,
        token_expires_at: expires_at.map(Time),
        observed_generation: declared.generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_within_the_window_is_soon() {
        let now = jiff::Timestamp::now();
        let in_a_day = jiff::Timestamp::from_second(now.as_second() + 86_400).unwrap();
        let in_a_month = jiff::Timestamp::from_second(now.as_second() + 30 * 86_400).unwrap();
        assert!(expires_within(in_a_day, EXPIRY_WARNING));
        assert!(!expires_within(in_a_month, EXPIRY_WARNING));
        let past = jiff::Timestamp::from_second(now.as_second() - 10).unwrap();
        assert!(
            expires_within(past, EXPIRY_WARNING),
            "an expired token is warned about too"
        );
    }
}
