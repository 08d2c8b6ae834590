//! The operator's HTTP endpoints: `/healthz` (the process serves), `/readyz` (caches synced,
//! Connect accepts the token and answers its heartbeat) and `/metrics` (Prometheus text). As in 1Password's Go
//! operator, metrics and probes listen on separate addresses (`:8080` and `:8081`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::controller::Context;

const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(ctx): State<Arc<Context>>) -> Response {
    if !ctx.caches_synced() && !ctx.is_standby() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the Kubernetes caches have not synced yet",
        )
            .into_response();
    }
    // Connection resources report their own health in their status: one tenant's Connect
    // must not take the operator out of its Service.
    let Some(connect) = ctx.connect() else {
        return "ok".into_response();
    };
    if connect.token_rejected() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: Connect rejects the token; give the operator a valid one (a rotated token file is picked up without a restart)",
        )
            .into_response();
    }
    // One attempt, bounded: a probe must answer quickly and not retry on its own.
    match tokio::time::timeout(HEARTBEAT_TIMEOUT, connect.heartbeat_once()).await {
        Ok(Ok(())) => "ok".into_response(),
        Ok(Err(err)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: Connect does not answer its heartbeat: {}",
                crate::error_chain(&err)
            ),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: Connect heartbeat timed out",
        )
            .into_response(),
    }
}

async fn metrics(State(ctx): State<Arc<Context>>) -> Response {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.encode(),
    )
        .into_response()
}

pub fn probes_router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ctx)
}

pub fn metrics_router(ctx: Arc<Context>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(ctx)
}

/// Binds and serves in the background; returns the bound address (port 0 picks one).
pub async fn serve(addr: SocketAddr, router: Router) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            tracing::error!(error = %err, "HTTP server stopped");
        }
    });
    Ok(bound)
}
