//! Prometheus metrics: one recorder per process, rendered by `GET /metrics`.
//!
//! The `metrics` facade is global, so the recorder is installed once (the
//! first [`handle`] call) and every server in the process reports into it.
//! Labels are bounded: routes are axum's matched patterns (`/api/users/{id}/`)
//! or [`UNMATCHED`], never the raw path; methods outside the standard set
//! count as `other`.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `method`, `route` and `status`.
pub const REQUESTS_TOTAL: &str = "portcullis_http_requests_total";
/// Seconds until the response headers, by `method`, `route` and `status`.
pub const REQUEST_SECONDS: &str = "portcullis_http_request_duration_seconds";
/// Connections open now, by `listener` (`main`, `redirect`, `metrics`).
pub const OPEN_CONNECTIONS: &str = "portcullis_open_connections";
/// The `route` label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Latency buckets from 1 ms to 10 s: token verification sits at the low
/// end, Argon2 logins around 50–500 ms, a saturated hasher above.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let recorder = match builder.set_buckets(BUCKETS) {
            Ok(builder) => builder.build_recorder(),
            // Unreachable with a non-empty constant; summaries are the fallback.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will stay empty");
        }
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "HTTP requests answered, by route and status"
    );
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "time until the response headers, by route and status"
    );
    metrics::describe_gauge!(OPEN_CONNECTIONS, "connections open now, by listener");
    metrics::describe_counter!(
        portcullis_core::LOGINS_TOTAL,
        "logins by result: success, bad_credentials, inactive, error"
    );
    metrics::describe_histogram!(
        portcullis_core::HASH_QUEUE_SECONDS,
        metrics::Unit::Seconds,
        "time a password hash waited for a hashing slot"
    );
}

/// `GET /metrics` in the Prometheus text format.
pub fn router() -> Router {
    Router::new().route("/metrics", get(render))
}

async fn render() -> impl IntoResponse {
    let handle = handle();
    // Drains histogram samples into their buckets; cheap, and scraping is
    // the natural rhythm for it.
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
}

/// A bounded `method` label.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
