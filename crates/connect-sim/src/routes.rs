//! HTTP routes of the simulator: the Connect API, and an admin API under `/__sim`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, USER_AGENT};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tower_http::set_header::SetResponseHeaderLayer;

use super::SimState;
use super::activity::Entry;
use super::auth::Grant;
use super::error::ApiError;
use super::faults::{FaultRule, Faults};
use super::filter::{self, Expr, Filterable};
use super::store::{Store, StoredItem};
use onepassword_connect::models::{
    ApiAction, DependencyStatus, FullItem, Item, PatchOp, ServerHealth, ServiceDependency, Vault, is_valid_id,
};
use onepassword_connect::{API_VERSION, VERSION_HEADER};

/// Every operation of the API, as named in fault rules, stats and metrics.
pub const OPERATIONS: &[&str] = &[
    "list_vaults",
    "get_vault",
    "list_items",
    "create_item",
    "get_item",
    "replace_item",
    "patch_item",
    "delete_item",
    "list_files",
    "get_file",
    "get_file_content",
    "list_activity",
    "heartbeat",
    "health",
    "metrics",
];

const VAULT_ATTRIBUTES: &[&str] = &["name", "title"];
const ITEM_ATTRIBUTES: &[&str] = &["title", "tag", "tags"];

/// The operation a matched route and method stand for.
pub fn operation(method: &Method, route: &str) -> Option<&'static str> {
    Some(match (method.as_str(), route) {
        ("GET", "/v1/vaults") => "list_vaults",
        ("GET", "/v1/vaults/{vault}") => "get_vault",
        ("GET", "/v1/vaults/{vault}/items") => "list_items",
        ("POST", "/v1/vaults/{vault}/items") => "create_item",
        ("GET", "/v1/vaults/{vault}/items/{item}") => "get_item",
        ("PUT", "/v1/vaults/{vault}/items/{item}") => "replace_item",
        ("PATCH", "/v1/vaults/{vault}/items/{item}") => "patch_item",
        ("DELETE", "/v1/vaults/{vault}/items/{item}") => "delete_item",
        ("GET", "/v1/vaults/{vault}/items/{item}/files") => "list_files",
        ("GET", "/v1/vaults/{vault}/items/{item}/files/{file}") => "get_file",
        ("GET", "/v1/vaults/{vault}/items/{item}/files/{file}/content") => "get_file_content",
        ("GET", "/v1/activity") => "list_activity",
        ("GET", "/heartbeat") => "heartbeat",
        ("GET", "/health") => "health",
        ("GET", "/metrics") => "metrics",
        _ => return None,
    })
}

pub fn router(state: Arc<SimState>) -> Router {
    let api = Router::new()
        .route("/v1/vaults", get(list_vaults))
        .route("/v1/vaults/{vault}", get(get_vault))
        .route("/v1/vaults/{vault}/items", get(list_items).post(create_item))
        .route(
            "/v1/vaults/{vault}/items/{item}",
            get(get_item).put(replace_item).patch(patch_item).delete(delete_item),
        )
        .route("/v1/vaults/{vault}/items/{item}/files", get(list_files))
        .route("/v1/vaults/{vault}/items/{item}/files/{file}", get(get_file))
        .route(
            "/v1/vaults/{vault}/items/{item}/files/{file}/content",
            get(get_file_content),
        )
        .route("/v1/activity", get(list_activity))
        .route("/heartbeat", get(heartbeat))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), observe));
    let admin = Router::new()
        .route("/__sim/faults", get(get_faults).put(put_faults).delete(clear_faults))
        .route("/__sim/faults/rules", post(add_fault_rule))
        .route("/__sim/stats", get(get_stats).delete(reset_stats));
    api.merge(admin)
        .fallback(|| async { ApiError::new(404, "Route not found") })
        .method_not_allowed_fallback(|| async { ApiError::new(405, "Method not allowed") })
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_bytes(VERSION_HEADER.as_bytes()).expect("valid header name"),
            HeaderValue::from_static(API_VERSION),
        ))
        .with_state(state)
}

/// Counts every request, applies injected faults, and records the answer's status.
async fn observe(State(state): State<Arc<SimState>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let Some(op) = route.and_then(|r| operation(request.method(), &r)) else {
        return next.run(request).await;
    };
    state.stats.count(op);
    let verdict = state.faults.lock().expect("faults lock").judge(op);
    if verdict.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(verdict.delay_ms)).await;
    }
    let response = match verdict.error {
        Some(error) => error.into_response(),
        None => next.run(request).await,
    };
    state.metrics.record(op, response.status().as_u16());
    response
}

// ----- helpers -----

fn json<T: Serialize + ?Sized>(value: &T) -> Response {
    json_bytes(Bytes::from(serde_json::to_vec(value).expect("responses encode")))
}

fn json_bytes(body: Bytes) -> Response {
    ([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// Reads the body as JSON, with a JSON 400 on failure (axum's own rejection is plain text).
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

#[derive(Default)]
struct Query {
    filter: Option<String>,
    inline: bool,
    limit: Option<usize>,
    offset: Option<usize>,
}

impl Query {
    fn parse(raw: Option<String>) -> Result<Self, ApiError> {
        let mut query = Query::default();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "filter" => query.filter = Some(value.into_owned()),
                // The spec says inline_files, the docs inline_content: both work on real servers.
                "inline_files" | "inline_content" => query.inline |= parse_bool(&key, &value)?,
                "limit" => query.limit = Some(parse_number(&key, &value)?),
                "offset" => query.offset = Some(parse_number(&key, &value)?),
                _ => {}
            }
        }
        Ok(query)
    }

    fn filter(&self, attributes: &[&str]) -> Result<Option<Expr>, ApiError> {
        self.filter
            .as_deref()
            .map(|f| filter::parse(f, attributes).map_err(|e| ApiError::bad_request(e.to_string())))
            .transpose()
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ApiError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(ApiError::bad_request(format!("{key} must be true or false"))),
    }
}

fn parse_number(key: &str, value: &str) -> Result<usize, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{key} must be a non-negative integer")))
}

impl Filterable for Vault {
    fn values(&self, attr: &str) -> Vec<&str> {
        match attr {
            "name" | "title" => vec![self.name.as_str()],
            _ => Vec::new(),
        }
    }
}

impl Filterable for Item {
    fn values(&self, attr: &str) -> Vec<&str> {
        match attr {
            "title" => vec![self.title.as_str()],
            "tag" | "tags" => self.tags.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

/// The caller of an API request: who, and with which client.
struct Caller {
    grant: Arc<Grant>,
    user_agent: String,
}

impl SimState {
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let grant = self.tokens.authenticate(headers)?;
        let user_agent = headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Caller { grant, user_agent })
    }

    fn record(&self, caller: &Caller, action: ApiAction, allowed: bool, vault_id: &str, item: Option<(&str, u64)>) {
        self.activity.lock().expect("activity lock").record(Entry {
            action,
            allowed,
            actor_id: &caller.grant.actor_id,
            actor_name: &caller.grant.name,
            user_agent: &caller.user_agent,
            vault_id,
            item_id: item.map(|i| i.0),
            item_version: item.map_or(0, |i| i.1),
        });
    }

    /// 400 for a malformed id, 403 outside the token's scope (an unknown well-formed id
    /// included, as on the real server), 401 for a write with a read-only token.
    fn check_vault(&self, store: &Store, caller: &Caller, vault_id: &str, action: &ApiAction) -> Result<(), ApiError> {
        if !is_valid_id(vault_id) {
            return Err(ApiError::bad_request(format!("Invalid Vault UUID {vault_id:?}")));
        }
        let denied = if !caller.grant.can_read(vault_id) || store.vault(vault_id).is_none() {
            Some(ApiError::vault_forbidden(vault_id))
        } else if *action != ApiAction::Read && !caller.grant.can_write(vault_id) {
            Some(ApiError::read_only())
        } else {
            None
        };
        match denied {
            Some(error) => {
                self.record(caller, action.clone(), false, vault_id, None);
                Err(error)
            }
            None => Ok(()),
        }
    }

    /// [`Self::check_vault`], then a well-formed item id (400 otherwise).
    fn check_item(
        &self,
        store: &Store,
        caller: &Caller,
        vault_id: &str,
        item_id: &str,
        action: &ApiAction,
    ) -> Result<(), ApiError> {
        self.check_vault(store, caller, vault_id, action)?;
        check_item_id(item_id)
    }

    fn check_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let expected = format!("Bearer {}", self.admin_token);
        match headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            Some(value) if value == expected => Ok(()),
            _ => Err(ApiError::new(401, "the simulator admin API needs the admin token")),
        }
    }
}

fn check_item_id(item_id: &str) -> Result<(), ApiError> {
    if is_valid_id(item_id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("Invalid Item UUID {item_id:?}")))
    }
}

// ----- vaults -----

async fn list_vaults(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let filter = Query::parse(raw)?.filter(VAULT_ATTRIBUTES)?;
    let store = state.store.read().expect("store lock");
    let vaults: Vec<&Vault> = store
        .vaults
        .values()
        .map(|v| &v.vault)
        .filter(|v| caller.grant.can_read(&v.id))
        .filter(|v| filter.as_ref().is_none_or(|f| f.matches(*v)))
        .collect();
    Ok(json(&vaults))
}

async fn get_vault(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(vault_id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let store = state.store.read().expect("store lock");
    state.check_vault(&store, &caller, &vault_id, &ApiAction::Read)?;
    state.record(&caller, ApiAction::Read, true, &vault_id, None);
    Ok(json(&store.vaults[&vault_id].vault))
}

// ----- items -----

async fn list_items(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(vault_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let filter = Query::parse(raw)?.filter(ITEM_ATTRIBUTES)?;
    let store = state.store.read().expect("store lock");
    state.check_vault(&store, &caller, &vault_id, &ApiAction::Read)?;
    let items: Vec<&Item> = store.vaults[&vault_id]
        .items
        .values()
        .map(|s| &s.item.item)
        .filter(|i| filter.as_ref().is_none_or(|f| f.matches(*i)))
        .collect();
    state.record(&caller, ApiAction::Read, true, &vault_id, None);
    Ok(json(&items))
}

async fn get_item(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((vault_id, item_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let store = state.store.read().expect("store lock");
    state.check_item(&store, &caller, &vault_id, &item_id, &ApiAction::Read)?;
    let stored = store.item(&vault_id, &item_id)?;
    state.record(
        &caller,
        ApiAction::Read,
        true,
        &vault_id,
        Some((&item_id, stored.item.version)),
    );
    Ok(json_bytes(stored.response()))
}

async fn create_item(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(vault_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let mut store = state.store.write().expect("store lock");
    state.check_vault(&store, &caller, &vault_id, &ApiAction::Create)?;
    let item: FullItem = parse_body(&body)?;
    let created = store.create_item(&vault_id, item, &caller.grant.actor_id)?;
    state.record(
        &caller,
        ApiAction::Create,
        true,
        &vault_id,
        Some((&created.id, created.version)),
    );
    Ok(json(&super::store::with_current_totp(created)))
}

async fn replace_item(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((vault_id, item_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let mut store = state.store.write().expect("store lock");
    state.check_item(&store, &caller, &vault_id, &item_id, &ApiAction::Update)?;
    store.item(&vault_id, &item_id)?;
    let item: FullItem = parse_body(&body)?;
    let replaced = store.replace_item(&vault_id, &item_id, item, &caller.grant.actor_id)?;
    state.record(
        &caller,
        ApiAction::Update,
        true,
        &vault_id,
        Some((&item_id, replaced.version)),
    );
    Ok(json(&super::store::with_current_totp(replaced)))
}

async fn patch_item(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((vault_id, item_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let mut store = state.store.write().expect("store lock");
    state.check_item(&store, &caller, &vault_id, &item_id, &ApiAction::Update)?;
    store.item(&vault_id, &item_id)?;
    let ops: Vec<PatchOp> = parse_body(&body)?;
    let patched = store.patch_item(&vault_id, &item_id, &ops, &caller.grant.actor_id)?;
    state.record(
        &caller,
        ApiAction::Update,
        true,
        &vault_id,
        Some((&item_id, patched.version)),
    );
    Ok(json(&super::store::with_current_totp(patched)))
}

async fn delete_item(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((vault_id, item_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let mut store = state.store.write().expect("store lock");
    state.check_item(&store, &caller, &vault_id, &item_id, &ApiAction::Delete)?;
    let version = store.item(&vault_id, &item_id)?.item.version;
    store.delete_item(&vault_id, &item_id)?;
    state.record(&caller, ApiAction::Delete, true, &vault_id, Some((&item_id, version)));
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

// ----- files -----

/// A file's metadata, with its content inlined when asked and small enough.
fn file_view(
    state: &SimState,
    stored: &StoredItem,
    file_id: &str,
    inline: bool,
) -> Result<onepassword_connect::models::File, ApiError> {
    let file = stored
        .item
        .files
        .iter()
        .find(|f| f.id == file_id)
        .ok_or_else(|| ApiError::file_not_found(file_id))?;
    let mut view = file.clone();
    if inline {
        if file.size > state.inline_limit_bytes {
            return Err(ApiError::new(
                413,
                format!(
                    "File is too large to inline in request. Use the {} endpoint instead.",
                    file.content_path
                ),
            ));
        }
        view.content = stored.contents.get(file_id).map(|b| b.to_vec());
    }
    Ok(view)
}

async fn list_files(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((vault_id, item_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let query = Query::parse(raw)?;
    let store = state.store.read().expect("store lock");
    state.check_item(&store, &caller, &vault_id, &item_id, &ApiAction::Read)?;
    let stored = store.item(&vault_id, &item_id)?;
    let files = stored
        .item
        .files
        .iter()
        .map(|f| file_view(&state, stored, &f.id, query.inline))
        .collect::<Result<Vec<_>, _>>()?;
    state.record(
        &caller,
        ApiAction::Read,
        true,
        &vault_id,
        Some((&item_id, stored.item.version)),
    );
    Ok(json(&files))
}

async fn get_file(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((vault_id, item_id, file_id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let query = Query::parse(raw)?;
    let store = state.store.read().expect("store lock");
    state.check_item(&store, &caller, &vault_id, &item_id, &ApiAction::Read)?;
    let stored = store.item(&vault_id, &item_id)?;
    let file = file_view(&state, stored, &file_id, query.inline)?;
    state.record(
        &caller,
        ApiAction::Read,
        true,
        &vault_id,
        Some((&item_id, stored.item.version)),
    );
    Ok(json(&file))
}

async fn get_file_content(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((vault_id, item_id, file_id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers)?;
    let store = state.store.read().expect("store lock");
    state.check_item(&store, &caller, &vault_id, &item_id, &ApiAction::Read)?;
    let stored = store.item(&vault_id, &item_id)?;
    let file = stored
        .item
        .files
        .iter()
        .find(|f| f.id == file_id)
        .ok_or_else(|| ApiError::file_not_found(&file_id))?;
    let bytes = stored.contents.get(&file_id).cloned().unwrap_or_default();
    state.record(
        &caller,
        ApiAction::Read,
        true,
        &vault_id,
        Some((&item_id, stored.item.version)),
    );
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file.name.replace(['"', '\\', '\r', '\n'], "_")
    );
    let disposition = HeaderValue::from_str(&disposition).unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

// ----- activity, health, metrics -----

async fn list_activity(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    state.caller(&headers)?;
    let query = Query::parse(raw)?;
    let (page, range) = state
        .activity
        .lock()
        .expect("activity lock")
        .page(query.limit.unwrap_or(50), query.offset.unwrap_or(0));
    let mut response = json(&page);
    response
        .headers_mut()
        .insert("content-range", HeaderValue::from_str(&range).expect("ascii range"));
    Ok(response)
}

async fn heartbeat() -> Response {
    ([(CONTENT_TYPE, HeaderValue::from_static("text/plain"))], ".").into_response()
}

async fn health() -> Response {
    json(&ServerHealth {
        name: "1Password Connect API".into(),
        version: API_VERSION.into(),
        dependencies: vec![
            ServiceDependency {
                service: "sync".into(),
                status: Some(DependencyStatus::Active),
                message: String::new(),
            },
            ServiceDependency {
                service: "sqlite".into(),
                status: Some(DependencyStatus::Active),
                message: "Connected to the simulator's in-memory store".into(),
            },
        ],
    })
}

async fn metrics(State(state): State<Arc<SimState>>) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.encode(),
    )
        .into_response()
}

// ----- admin API -----

async fn get_faults(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.check_admin(&headers)?;
    Ok(json(&*state.faults.lock().expect("faults lock")))
}

async fn put_faults(State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    state.check_admin(&headers)?;
    let faults: Faults = parse_body(&body)?;
    faults.validate().map_err(ApiError::bad_request)?;
    *state.faults.lock().expect("faults lock") = faults.clone();
    Ok(json(&faults))
}

async fn add_fault_rule(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.check_admin(&headers)?;
    let rule: FaultRule = parse_body(&body)?;
    let mut faults = state.faults.lock().expect("faults lock");
    let mut next = faults.clone();
    next.rules.push(rule);
    next.validate().map_err(ApiError::bad_request)?;
    *faults = next;
    Ok(json(&*faults))
}

async fn clear_faults(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.check_admin(&headers)?;
    *state.faults.lock().expect("faults lock") = Faults::default();
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

async fn get_stats(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.check_admin(&headers)?;
    Ok(json(&state.stats.snapshot()))
}

async fn reset_stats(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    state.check_admin(&headers)?;
    state.stats.reset();
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}
