//! The controller's HTTP endpoints, on `--metrics-addr`: `/healthz` (alive),
//! `/readyz` (the watch of GuardDutyPolicies has synced) and `/metrics` (Prometheus).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::controller::metrics::{CONTENT_TYPE, Metrics};

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    /// Set once the controller's store has synced.
    pub ready: Arc<AtomicBool>,
}

/// The routes: `GET /healthz`, `GET /readyz`, `GET /metrics`.
pub fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(endpoints)
}

/// Serves `router` on `listener` until the task is dropped or aborted.
pub async fn serve(listener: tokio::net::TcpListener, endpoints: Endpoints) -> std::io::Result<()> {
    axum::serve(listener, router(endpoints)).await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(endpoints): State<Endpoints>) -> (StatusCode, &'static str) {
    if endpoints.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the watch has not synced yet",
        )
    }
}

async fn metrics(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        endpoints.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    fn endpoints() -> Endpoints {
        Endpoints {
            metrics: Arc::new(Metrics::default()),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    async fn get(endpoints: &Endpoints, path: &str) -> (StatusCode, Option<String>, String) {
        let response = router(endpoints.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn healthz_is_ok_while_the_process_runs() {
        let (status, _, body) = get(&endpoints(), "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }

    #[tokio::test]
    async fn readyz_is_unavailable_until_the_watch_has_synced() {
        let endpoints = endpoints();
        let (status, _, _) = get(&endpoints, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        endpoints.ready.store(true, Ordering::Release);
        let (status, _, _) = get(&endpoints, "/readyz").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let endpoints = endpoints();
        endpoints.metrics.reconciled(Duration::from_millis(10));
        endpoints.metrics.failed("patch-status");
        let (status, content_type, body) = get(&endpoints, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            content_type.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(content_type.as_deref(), Some(CONTENT_TYPE));
        assert!(
            body.contains(
                "\nguardduty_operator_reconcile_duration_seconds_bucket{le=\"0.05\"} 1\n"
            ),
            "{body}"
        );
        assert!(
            body.contains("\nguardduty_operator_reconciles_total 1\n"),
            "{body}"
        );
        assert!(
            body.contains(
                "\nguardduty_operator_reconcile_failures_total{category=\"patch-status\"} 1\n"
            ),
            "{body}"
        );
    }

    #[tokio::test]
    async fn serves_on_a_socket() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, endpoints()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(
            response.starts_with("HTTP/1.") && response.contains(" 200 "),
            "{response}"
        );
        assert!(response.ends_with("ok"), "{response}");
        server.abort();
    }
}
