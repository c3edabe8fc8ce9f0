//! The scrape endpoint: `GET /metrics` on a listener of its own (`MCP_BRIDGE_METRICS_LISTEN`),
//! apart from the MCP endpoint so it needs no token and can be reached only where the
//! operator points it (a pod's port, a loopback address).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::{CONTENT_TYPE, Metrics, SessionGauges};

/// Path of the scrape endpoint.
pub const ENDPOINT: &str = "/metrics";

/// Why the metrics endpoint could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Binding the listening socket failed.
    #[error("listening for metrics on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("serving metrics")]
    Serve(#[source] std::io::Error),
}

/// What a scrape reads besides the counters: the session gauges (a blocking read of the
/// session table and the checkpoint store).
type ReadGauges = Arc<dyn Fn() -> SessionGauges + Send + Sync>;

#[derive(Clone)]
struct Scrape {
    metrics: Metrics,
    gauges: ReadGauges,
}

/// Bind the metrics listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serve [`ENDPOINT`] on `listener` until `shutdown` resolves; each scrape calls `gauges`
/// (on a blocking thread) and renders `metrics`. Logs `metrics on http://ADDR/metrics`
/// once bound.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    gauges: impl Fn() -> SessionGauges + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError> {
    let bound = listener.local_addr().map_err(MetricsError::Serve)?;
    if !bound.ip().is_loopback() {
        info!(
            "metrics are served without a token on {bound}: expose the port only to your \
             Prometheus"
        );
    }
    info!("metrics on http://{bound}{ENDPOINT}");
    let app = router(metrics, Arc::new(gauges));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(MetricsError::Serve)
}

fn router(metrics: Metrics, gauges: ReadGauges) -> Router {
    Router::new()
        .route(ENDPOINT, axum::routing::get(scrape))
        .with_state(Scrape { metrics, gauges })
}

/// `GET /metrics`: the OpenMetrics text.
async fn scrape(State(scrape): State<Scrape>) -> Response {
    let rendered = tokio::task::spawn_blocking(move || {
        let gauges = (scrape.gauges)();
        scrape.metrics.render(&gauges)
    })
    .await;
    match rendered {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            warn!("a metrics scrape failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the scrape failed\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{BridgeFacts, RunEnd};
    use sandbox_core::RunKind;

    #[tokio::test]
    async fn a_scrape_answers_openmetrics_with_the_gauges_read_then() {
        let metrics = Metrics::new(
            BridgeFacts {
                backend: "wasi",
                transport: "http",
            },
            ["team-a"],
        );
        metrics.run_finished(
            "team-a",
            RunEnd::Ran(RunKind::Completed),
            std::time::Duration::from_millis(3),
        );
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let url = format!("http://{}{ENDPOINT}", listener.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let server = tokio::spawn(serve(
            listener,
            metrics,
            || SessionGauges {
                live: [("team-a".to_string(), 2)].into(),
                suspended: std::collections::BTreeMap::new(),
                warm: 1,
            },
            async move { stopped.cancelled().await },
        ));
        let answer = reqwest::get(&url).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["content-type"], CONTENT_TYPE);
        let text = answer.text().await.unwrap();
        assert!(
            text.contains("mcp_bridge_sessions_live{tenant=\"team-a\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("mcp_bridge_pool_warm_sessions 1\n"), "{text}");
        assert!(
            text.contains("mcp_bridge_runs_total{tenant=\"team-a\",status=\"completed\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
