//! `/metrics`, `/healthz` and `/readyz`. Ready once the first reconcile observed the swarm,
//! unready again on shutdown; healthy while the loop keeps turning.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What the probes report, shared with the control loop.
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
    /// Unix seconds of the loop's last turn.
    last_turn: AtomicU64,
    /// Longest the loop may go without a turn before it counts as stuck.
    stuck_after: Duration,
}

impl Health {
    /// Not ready yet; stuck after `stuck_after` without a turn.
    pub fn new(stuck_after: Duration) -> Self {
        Self {
            ready: AtomicBool::new(false),
            last_turn: AtomicU64::new(now()),
            stuck_after,
        }
    }

    /// The loop turned (a reconcile ran or was attempted).
    pub fn turned(&self) {
        self.last_turn.store(now(), Ordering::Relaxed);
    }

    /// Ready (or, on shutdown, not any more).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Whether the loop turned recently enough.
    pub fn is_alive(&self) -> bool {
        now().saturating_sub(self.last_turn.load(Ordering::Relaxed)) <= self.stuck_after.as_secs()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The router, for tests and the server.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "control loop stuck\n")
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Serves until `cancel`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "Serving /metrics, /healthz, /readyz");
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

/// `swarm-warden healthcheck`: a probe for images without curl. Exit 0 when `url`
/// answers 200.
pub async fn probe(url: &str) -> Result<(), String> {
    let response = crate::observe::http_client_builder("")
        .map_err(|e| e.to_string())?
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url}: HTTP {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probes_say_ready_only_after_the_first_reconcile_and_metrics_are_served() {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(Duration::from_secs(60)));
        let cancel = CancellationToken::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let server = tokio::spawn(serve(addr, metrics.clone(), health.clone(), cancel.clone()));
        let base = format!("http://{addr}");
        let mut ok = false;
        for _ in 0..50 {
            if probe(&format!("{base}/healthz")).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ok, "healthz answers");
        assert!(
            probe(&format!("{base}/readyz")).await.is_err(),
            "not ready before a reconcile"
        );
        health.set_ready(true);
        assert!(probe(&format!("{base}/readyz")).await.is_ok());
        let text = crate::observe::http_client_builder("")
            .unwrap()
            .build()
            .unwrap()
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("swarm_warden_fault_tolerance"), "{text}");
        cancel.cancel();
        server.await.unwrap().unwrap();
    }
}
