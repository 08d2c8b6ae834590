//! HTTP client for every endpoint of the Connect API.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, RwLock};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::ConnectError;
use crate::filter::Filter;
use crate::metrics::ConnectMetrics;
use crate::models::{ActivityPage, ErrorBody, File, FullItem, Item, ItemSummary, PatchOp, ServerHealth, Vault};

/// How failed calls are retried: exponential backoff with full jitter, for transport
/// errors, 5xx, 408 and 429. A `Retry-After` from the server replaces the computed delay.
/// 401 and 403 are retried [`AUTH_RETRIES`] times too: real servers answer them spuriously
/// (a fresh server's first request; intermittent "token does not have access to vault").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }
}

/// Quick retries of a 401 or 403 before it is taken as the server's answer.
pub const AUTH_RETRIES: usize = 2;
/// Largest answer read from Connect, listings excepted: far above any item a Secret can
/// hold (1 MiB of data), far below what would take an operator with a 128 MiB limit down.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Largest listing read (a vault's item summaries: about 400 bytes per item).
pub const MAX_LISTING_BYTES: usize = 32 * 1024 * 1024;

/// Everything needed to talk to one Connect server.
#[derive(Clone)]
pub struct ConnectConfig {
    /// Server root, e.g. `http://onepassword-connect:8080`.
    pub host: Url,
    pub token: SecretString,
    /// Where the token came from: read again by [`ConnectClient::reload_token`] and after a
    /// 401, so that a rotated token (kubelet updates a mounted Secret in place) is used
    /// without a restart.
    pub token_file: Option<PathBuf>,
    /// Whole-request timeout; the Go operator has none, which hangs reconciles.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// PEM bundle of extra CAs trusted for an HTTPS Connect host.
    pub ca_bundle_pem: Option<Vec<u8>>,
    pub retry: RetryPolicy,
    pub user_agent: String,
}

impl ConnectConfig {
    pub fn new(host: Url, token: SecretString) -> Self {
        Self {
            host,
            token,
            token_file: None,
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            ca_bundle_pem: None,
            retry: RetryPolicy::default(),
            user_agent: concat!("onepassword-operator/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("host", &self.host.as_str())
            .field("token", &"<redacted>")
            .field("token_file", &self.token_file)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("ca_bundle_pem", &self.ca_bundle_pem.as_ref().map(|b| b.len()))
            .field("retry", &self.retry)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// A Connect API client. Cheap to clone; clones share connections and metrics.
#[derive(Clone)]
pub struct ConnectClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    authorization: RwLock<HeaderValue>,
    token_file: Option<PathBuf>,
    retry: RetryPolicy,
    metrics: ConnectMetrics,
    /// No request leaves before this instant: a 429's `Retry-After` holds for the whole
    /// client (every clone), not only for the request that got it.
    not_before: Mutex<Option<tokio::time::Instant>>,
    /// The last authenticated answer was a 401.
    token_rejected: AtomicBool,
    /// Counts token changes, so that whoever must react to a new token (the poller) sees
    /// it, whichever request happened to read the file first.
    token_generation: AtomicU64,
}

impl fmt::Debug for ConnectClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectClient")
            .field("base", &self.inner.base.as_str())
            .field("token", &"<redacted>")
            .field("retry", &self.inner.retry)
            .finish()
    }
}

/// rustls needs one process-wide crypto provider; ring is also what kube uses.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one first; that is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// One request, described before it is sent (and re-sent on retry).
struct Call<'a> {
    endpoint: &'static str,
    method: Method,
    segments: &'a [&'a str],
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

impl<'a> Call<'a> {
    fn new(endpoint: &'static str, method: Method, segments: &'a [&'a str]) -> Self {
        Self {
            endpoint,
            method,
            segments,
            query: Vec::new(),
            body: None,
        }
    }

    fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    fn filter(self, filter: Option<&Filter>) -> Self {
        match filter {
            Some(f) => self.query("filter", f.as_str()),
            None => self,
        }
    }

    fn json<T: Serialize>(mut self, body: &T) -> Result<Self, ConnectError> {
        let encoded =
            serde_json::to_vec(body).map_err(|e| ConnectError::Config(format!("cannot encode request body: {e}")))?;
        self.body = Some(encoded);
        Ok(self)
    }

    /// POST and PATCH are not idempotent: retried only when the server surely did not act.
    fn idempotent(&self) -> bool {
        !matches!(self.method, Method::POST | Method::PATCH)
    }
}

/// A successful response: headers and the whole body.
struct Answer {
    headers: HeaderMap,
    body: Bytes,
}

impl ConnectClient {
    pub fn new(config: ConnectConfig) -> Result<Self, ConnectError> {
        Self::with_metrics(config, ConnectMetrics::default())
    }

    /// A client that counts its requests into `metrics`.
    pub fn with_metrics(config: ConnectConfig, metrics: ConnectMetrics) -> Result<Self, ConnectError> {
        install_crypto_provider();
        if config.host.cannot_be_a_base() || !matches!(config.host.scheme(), "http" | "https") {
            return Err(ConnectError::Config(format!(
                "Connect host must be an http(s) URL, got {:?}",
                config.host.as_str()
            )));
        }
        let authorization = authorization(&config.token)?;
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone())
            .pool_idle_timeout(Duration::from_secs(60));
        let mut extra_roots = Vec::new();
        if let Some(pem) = &config.ca_bundle_pem {
            extra_roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ConnectError::Config(format!("cannot read the CA bundle: {e}")))?;
            if extra_roots.is_empty() {
                return Err(ConnectError::Config("the CA bundle holds no certificate".into()));
            }
        }
        builder = if config.host.scheme() == "http" {
            // Plain HTTP verifies no certificate: the system's roots are not needed, and a
            // minimal image (distroless, or none at all) may have none.
            builder.tls_certs_only(extra_roots)
        } else {
            builder.tls_certs_merge(extra_roots)
        };
        let http = builder.build().map_err(|e| {
            // reqwest's own message is only "builder error"; the reason is in its source.
            let mut message = format!("cannot build the HTTP client: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            ConnectError::Config(message)
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: config.host,
                authorization: RwLock::new(authorization),
                token_file: config.token_file,
                retry: config.retry,
                metrics,
                not_before: Mutex::new(None),
                token_rejected: AtomicBool::new(false),
                token_generation: AtomicU64::new(0),
            }),
        })
    }

    pub fn metrics(&self) -> &ConnectMetrics {
        &self.inner.metrics
    }

    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// Whether Connect's last answer to an authenticated request was 401.
    pub fn token_rejected(&self) -> bool {
        self.inner.token_rejected.load(Ordering::Relaxed)
    }

    /// How many times the token changed since the client was built.
    pub fn token_generation(&self) -> u64 {
        self.inner.token_generation.load(Ordering::Relaxed)
    }

    /// Reads the token file again (when the token came from one); true when the token
    /// changed. An unreadable or empty file keeps the current token.
    pub fn reload_token(&self) -> bool {
        let Some(path) = &self.inner.token_file else {
            return false;
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        let token = text.trim();
        if token.is_empty() {
            return false;
        }
        if !self.set_token(&SecretString::from(token.to_owned())).unwrap_or(false) {
            return false;
        }
        tracing::info!(file = %path.display(), "the Connect token changed; using the new one");
        true
    }

    /// Uses `token` from now on (read from a Kubernetes Secret, say); true when it differs
    /// from the current one. An error when it cannot be sent as a header.
    pub fn set_token(&self, token: &SecretString) -> Result<bool, ConnectError> {
        let new = authorization(token)?;
        let mut current = self.inner.authorization.write().expect("token lock");
        if current.as_bytes() == new.as_bytes() {
            return Ok(false);
        }
        *current = new;
        self.inner.token_generation.fetch_add(1, Ordering::Relaxed);
        self.inner.token_rejected.store(false, Ordering::Relaxed);
        Ok(true)
    }

    // ----- vaults -----

    /// `GET /v1/vaults`, optionally filtered (`name eq "…"`).
    pub async fn list_vaults(&self, filter: Option<&Filter>) -> Result<Vec<Vault>, ConnectError> {
        self.json(Call::new("list_vaults", Method::GET, &["v1", "vaults"]).filter(filter))
            .await
    }

    /// `GET /v1/vaults/{vault}`: includes `contentVersion`.
    pub async fn get_vault(&self, vault_id: &str) -> Result<Vault, ConnectError> {
        self.json(Call::new("get_vault", Method::GET, &["v1", "vaults", vault_id]))
            .await
    }

    // ----- items -----

    /// `GET /v1/vaults/{vault}/items`: summaries with every item's `version`.
    pub async fn list_items(&self, vault_id: &str, filter: Option<&Filter>) -> Result<Vec<Item>, ConnectError> {
        self.json(Call::new("list_items", Method::GET, &["v1", "vaults", vault_id, "items"]).filter(filter))
            .await
    }

    /// `GET /v1/vaults/{vault}/items`, optionally filtered, decoded as [`ItemSummary`]: for
    /// callers that need versions and titles only, of vaults that may be large.
    pub async fn list_item_summaries(
        &self,
        vault_id: &str,
        filter: Option<&Filter>,
    ) -> Result<Vec<ItemSummary>, ConnectError> {
        self.json(Call::new("list_items", Method::GET, &["v1", "vaults", vault_id, "items"]).filter(filter))
            .await
    }

    /// `GET /v1/vaults/{vault}/items/{item}`.
    pub async fn get_item(&self, vault_id: &str, item_id: &str) -> Result<FullItem, ConnectError> {
        self.json(Call::new(
            "get_item",
            Method::GET,
            &["v1", "vaults", vault_id, "items", item_id],
        ))
        .await
    }

    /// `POST /v1/vaults/{vault}/items`.
    pub async fn create_item(&self, vault_id: &str, item: &FullItem) -> Result<FullItem, ConnectError> {
        self.json(Call::new("create_item", Method::POST, &["v1", "vaults", vault_id, "items"]).json(item)?)
            .await
    }

    /// `PUT /v1/vaults/{vault}/items/{item}`: replaces the whole item.
    pub async fn replace_item(&self, vault_id: &str, item_id: &str, item: &FullItem) -> Result<FullItem, ConnectError> {
        self.json(
            Call::new(
                "replace_item",
                Method::PUT,
                &["v1", "vaults", vault_id, "items", item_id],
            )
            .json(item)?,
        )
        .await
    }

    /// `PATCH /v1/vaults/{vault}/items/{item}`: `add`/`remove`/`replace`, all or nothing.
    pub async fn patch_item(&self, vault_id: &str, item_id: &str, ops: &[PatchOp]) -> Result<FullItem, ConnectError> {
        self.json(
            Call::new(
                "patch_item",
                Method::PATCH,
                &["v1", "vaults", vault_id, "items", item_id],
            )
            .json(&ops)?,
        )
        .await
    }

    /// `DELETE /v1/vaults/{vault}/items/{item}`.
    pub async fn delete_item(&self, vault_id: &str, item_id: &str) -> Result<(), ConnectError> {
        self.execute(Call::new(
            "delete_item",
            Method::DELETE,
            &["v1", "vaults", vault_id, "items", item_id],
        ))
        .await
        .map(drop)
    }

    // ----- files -----

    /// `GET …/items/{item}/files`; `inline` asks for base64 content (≤ the server's inline limit).
    pub async fn list_files(&self, vault_id: &str, item_id: &str, inline: bool) -> Result<Vec<File>, ConnectError> {
        let segments = ["v1", "vaults", vault_id, "items", item_id, "files"];
        self.json(inline_flag(Call::new("list_files", Method::GET, &segments), inline))
            .await
    }

    /// `GET …/files/{file}`.
    pub async fn get_file(
        &self,
        vault_id: &str,
        item_id: &str,
        file_id: &str,
        inline: bool,
    ) -> Result<File, ConnectError> {
        let segments = ["v1", "vaults", vault_id, "items", item_id, "files", file_id];
        self.json(inline_flag(Call::new("get_file", Method::GET, &segments), inline))
            .await
    }

    /// `GET …/files/{file}/content`: the raw bytes.
    pub async fn get_file_content(&self, vault_id: &str, item_id: &str, file_id: &str) -> Result<Bytes, ConnectError> {
        let segments = ["v1", "vaults", vault_id, "items", item_id, "files", file_id, "content"];
        Ok(self
            .execute(Call::new("get_file_content", Method::GET, &segments))
            .await?
            .body)
    }

    // ----- activity, health, metrics -----

    /// `GET /v1/activity?limit=&offset=`, with the total from `Content-Range`.
    pub async fn list_activity(&self, limit: Option<u32>, offset: Option<u32>) -> Result<ActivityPage, ConnectError> {
        let mut call = Call::new("list_activity", Method::GET, &["v1", "activity"]);
        if let Some(limit) = limit {
            call = call.query("limit", limit.to_string());
        }
        if let Some(offset) = offset {
            call = call.query("offset", offset.to_string());
        }
        let answer = self.execute(call).await?;
        let total = answer
            .headers
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|v| v.trim().parse().ok());
        let requests = decode("list_activity", &answer.body)?;
        Ok(ActivityPage { requests, total })
    }

    /// `GET /heartbeat`: succeeds when the server answers.
    pub async fn heartbeat(&self) -> Result<(), ConnectError> {
        self.execute(Call::new("heartbeat", Method::GET, &["heartbeat"]))
            .await
            .map(drop)
    }

    /// `GET /heartbeat` once, without retries: for readiness probes.
    pub async fn heartbeat_once(&self) -> Result<(), ConnectError> {
        let call = Call::new("heartbeat", Method::GET, &["heartbeat"]);
        let url = self.url(&call);
        self.attempt(&call, url).await.map(drop)
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<ServerHealth, ConnectError> {
        self.json(Call::new("health", Method::GET, &["health"])).await
    }

    /// `GET /metrics`: the server's Prometheus text.
    pub async fn server_metrics(&self) -> Result<String, ConnectError> {
        let answer = self.execute(Call::new("metrics", Method::GET, &["metrics"])).await?;
        Ok(String::from_utf8_lossy(&answer.body).into_owned())
    }

    // ----- plumbing -----

    async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, ConnectError> {
        let endpoint = call.endpoint;
        let answer = self.execute(call).await?;
        decode(endpoint, &answer.body)
    }

    fn url(&self, call: &Call<'_>) -> Url {
        let mut url = self.inner.base.clone();
        {
            // `cannot_be_a_base` was rejected in `new`, so segments are available.
            let mut segments = url.path_segments_mut().expect("base URL");
            segments.pop_if_empty();
            segments.extend(call.segments);
        }
        if !call.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in &call.query {
                pairs.append_pair(key, value);
            }
        }
        url
    }

    async fn execute(&self, call: Call<'_>) -> Result<Answer, ConnectError> {
        let retry = &self.inner.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(retry.min_delay)
            .with_max_delay(retry.max_delay)
            .with_max_times(retry.max_retries)
            .with_jitter();
        let idempotent = call.idempotent();
        let url = self.url(&call);
        let auth_retries = AtomicUsize::new(0);
        (|| async {
            self.respect_retry_after().await;
            self.attempt(&call, url.clone()).await
        })
        .retry(backoff)
        .when(|err: &ConnectError| {
            retryable(err, idempotent)
                || (err.is_auth_failure() && auth_retries.fetch_add(1, Ordering::Relaxed) < AUTH_RETRIES)
        })
        .adjust(|err: &ConnectError, delay| delay.map(|d| err.retry_after().unwrap_or(d)))
        .notify(|err: &ConnectError, delay| {
            tracing::debug!(endpoint = call.endpoint, error = %err, ?delay, "retrying Connect request");
        })
        .await
    }

    /// Waits out a `Retry-After` that any request of this client received.
    async fn respect_retry_after(&self) {
        loop {
            let until = *self.inner.not_before.lock().expect("gate lock");
            match until {
                Some(until) if until > tokio::time::Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    fn hold_off(&self, delay: Duration) {
        let until = tokio::time::Instant::now() + delay;
        let mut gate = self.inner.not_before.lock().expect("gate lock");
        if gate.is_none_or(|current| current < until) {
            *gate = Some(until);
        }
    }

    /// One request. Readiness probes call this directly, so that a rate limit does not
    /// read as an unreachable server.
    async fn attempt(&self, call: &Call<'_>, url: Url) -> Result<Answer, ConnectError> {
        let endpoint = call.endpoint;
        let authorization = self.inner.authorization.read().expect("token lock").clone();
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), url)
            .header(AUTHORIZATION, authorization);
        if let Some(body) = &call.body {
            request = request.header(CONTENT_TYPE, "application/json").body(body.clone());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(source) => {
                self.inner.metrics.record(endpoint, None);
                return Err(ConnectError::Transport { endpoint, source });
            }
        };
        let status = response.status();
        self.inner.metrics.record(endpoint, Some(status.as_u16()));
        let headers = response.headers().clone();
        let body = read_body(endpoint, response).await?;
        let authenticated = !matches!(endpoint, "heartbeat" | "health" | "metrics");
        if status.is_success() {
            if authenticated {
                self.inner.token_rejected.store(false, Ordering::Relaxed);
            }
            return Ok(Answer { headers, body });
        }
        let error = error_from_response(endpoint, status, &headers, &body);
        match &error {
            ConnectError::RateLimited {
                retry_after: Some(delay),
                ..
            } => self.hold_off(*delay),
            ConnectError::Unauthorized { .. } if authenticated => {
                self.inner.token_rejected.store(true, Ordering::Relaxed);
                // The token may have been rotated since it was read: the retry uses the new one.
                self.reload_token();
            }
            _ => {}
        }
        Err(error)
    }
}

/// The whole body, read in chunks and given up on as soon as it passes the endpoint's limit,
/// so that a hostile or broken answer cannot take the memory of the process.
async fn read_body(endpoint: &'static str, mut response: reqwest::Response) -> Result<Bytes, ConnectError> {
    let limit = if matches!(endpoint, "list_items" | "list_vaults" | "list_activity") {
        MAX_LISTING_BYTES
    } else {
        MAX_ANSWER_BYTES
    };
    let too_large = |bytes: String| ConnectError::TooLarge {
        endpoint,
        detail: format!("{bytes} bytes, over the client's limit of {limit}"),
    };
    if let Some(announced) = response.content_length()
        && announced > limit as u64
    {
        return Err(too_large(announced.to_string()));
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| ConnectError::Transport { endpoint, source })?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large(format!("more than {}", body.len() + chunk.len())));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn inline_flag(call: Call<'_>, inline: bool) -> Call<'_> {
    if inline {
        call.query("inline_files", "true")
    } else {
        call
    }
}

fn retryable(err: &ConnectError, idempotent: bool) -> bool {
    if idempotent {
        return err.is_retryable();
    }
    // A 429 means the request was refused before anything happened; a failed connect
    // means it never left. Anything else may have created or changed the item already.
    match err {
        ConnectError::RateLimited { .. } => true,
        ConnectError::Transport { source, .. } => source.is_connect(),
        _ => false,
    }
}

/// The `Authorization` header for a token, marked sensitive so that no debug output shows it.
fn authorization(token: &SecretString) -> Result<HeaderValue, ConnectError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret().trim()))
        .map_err(|_| ConnectError::Config("the Connect token contains characters not allowed in a header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

fn decode<T: DeserializeOwned>(endpoint: &'static str, body: &[u8]) -> Result<T, ConnectError> {
    serde_json::from_slice(body).map_err(|error| ConnectError::decode(endpoint, &error))
}

fn error_from_response(endpoint: &'static str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ConnectError {
    // Connect's JSON error message is its documented error channel. Any other body (a
    // proxy's HTML page, say) is described, never quoted: it could echo anything.
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.message.chars().take(300).collect())
        .unwrap_or_else(|_| {
            let reason = status.canonical_reason().unwrap_or("no message");
            if body.is_empty() {
                reason.to_owned()
            } else {
                format!("{reason} (a non-JSON body of {} bytes)", body.len())
            }
        });
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    ConnectError::from_status(endpoint, status.as_u16(), message, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(host: &str) -> ConnectClient {
        ConnectClient::new(ConnectConfig::new(host.parse().unwrap(), SecretString::from("tok-123"))).unwrap()
    }

    #[test]
    fn debug_output_redacts_the_token() {
        let config = ConnectConfig::new(
            "http://connect:8080".parse().unwrap(),
            SecretString::from("super-secret-token"),
        );
        let printed = format!("{config:?} {:?}", ConnectClient::new(config.clone()).unwrap());
        assert!(!printed.contains("super-secret-token"), "{printed}");
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn urls_encode_segments_and_filters() {
        let c = client("http://connect:8080/prefix/");
        let filter = Filter::title_eq("a&b #1+\"x\"");
        let call = Call::new("list_items", Method::GET, &["v1", "vaults", "va ult", "items"]).filter(Some(&filter));
        assert_eq!(
            c.url(&call).as_str(),
            "http://connect:8080/prefix/v1/vaults/va%20ult/items?filter=title+eq+%22a%26b+%231%2B%5C%22x%5C%22%22"
        );
    }

    #[test]
    fn rejects_non_http_hosts_and_bad_tokens() {
        let err =
            ConnectClient::new(ConnectConfig::new("ftp://x".parse().unwrap(), SecretString::from("t"))).unwrap_err();
        assert!(err.to_string().contains("http(s) URL"), "{err}");
        let err = ConnectClient::new(ConnectConfig::new(
            "http://x".parse().unwrap(),
            SecretString::from("a\nb"),
        ))
        .unwrap_err();
        assert!(!err.to_string().contains("a\nb"));
    }

    #[test]
    fn error_bodies_are_parsed_or_excerpted() {
        let headers = HeaderMap::new();
        let err = error_from_response(
            "get_item",
            StatusCode::NOT_FOUND,
            &headers,
            br#"{"status":404,"message":"item x not found"}"#,
        );
        assert!(matches!(&err, ConnectError::NotFound { message, .. } if message == "item x not found"));
        let err = error_from_response(
            "get_item",
            StatusCode::BAD_GATEWAY,
            &headers,
            b"<html>s3cr3t echoed by a proxy</html>",
        );
        assert!(
            matches!(&err, ConnectError::Server { status: 502, message, .. } if message == "Bad Gateway (a non-JSON body of 37 bytes)"),
            "{err}"
        );
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        let err = error_from_response("get_item", StatusCode::TOO_MANY_REQUESTS, &headers, b"");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn non_idempotent_calls_retry_only_when_the_server_did_not_act() {
        let server_error = ConnectError::from_status("create_item", 500, String::new(), None);
        let limited = ConnectError::from_status("create_item", 429, String::new(), None);
        assert!(retryable(&server_error, true));
        assert!(!retryable(&server_error, false));
        assert!(retryable(&limited, false));
    }
}
