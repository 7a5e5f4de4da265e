//! Prometheus metrics: one recorder per process, rendered by `GET /metrics`.
//!
//! The `metrics` facade is global, so the recorder is installed once (the
//! first [`handle`] call) and every server in the process reports into it.
//! Labels are bounded: routes are axum's matched patterns (`/api/users/{id}/`)
//! or [`UNMATCHED`], never the raw path; methods outside the standard set
//! count as `other`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics::{Counter, Histogram, Label};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `method`, `route` and `status`.
pub const REQUESTS_TOTAL: &str = "portcullis_http_requests_total";
/// Seconds until the response headers, by `method`, `route` and `status`.
pub const REQUEST_SECONDS: &str = "portcullis_http_request_duration_seconds";
/// Connections open now, by `listener` (`main`, `redirect`, `metrics`).
pub const OPEN_CONNECTIONS: &str = "portcullis_open_connections";
/// Of those, idle HTTP/1.1 connections parked: waiting for their next
/// request with no HTTP state held, by `listener`.
pub const PARKED_CONNECTIONS: &str = "portcullis_parked_connections";
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
    metrics::describe_gauge!(
        PARKED_CONNECTIONS,
        "idle HTTP/1.1 connections waiting for their next request without HTTP state, by listener"
    );
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

/// How often [`upkeep_task`] drains histogram samples.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Drain histogram samples into their buckets every `UPKEEP_INTERVAL` (5 s).
/// The exporter buffers every sample until upkeep runs, and only its own
/// HTTP listener (which we do not use) schedules upkeep: without this task
/// a server that nobody scrapes kept every request's latency sample, about
/// 8 bytes a request, for good.
pub async fn upkeep_task() {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle().run_upkeep();
    }
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

/// Count one answered request and record its latency.
///
/// The two handles are looked up in the recorder once per route, method,
/// status and thread, then kept in a thread-local map: building the labels
/// and finding them in the recorder's registry on every request cost more
/// than the rest of the middleware (docs/architecture.md, "Fast paths"). The map is
/// bounded as the labels are (matched route patterns, not raw paths).
pub(crate) fn record_request(method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
    /// Per route: (method, status, requests counter, latency histogram).
    type Handles = HashMap<String, Vec<(&'static str, u16, Counter, Histogram)>>;
    thread_local! {
        static HANDLES: RefCell<Handles> = RefCell::new(HashMap::new());
    }
    let method = method_label(method);
    HANDLES.with_borrow_mut(|handles| {
        let by_route = match handles.get_mut(route) {
            Some(by_route) => by_route,
            None => handles.entry(route.to_owned()).or_default(),
        };
        let found = by_route
            .iter()
            .position(|(m, s, _, _)| *m == method && *s == status.as_u16());
        let index = found.unwrap_or_else(|| {
            let labels = vec![
                Label::from_static_parts("method", method),
                Label::new(
                    "route",
                    metrics::SharedString::from(Arc::<str>::from(route)),
                ),
                Label::new("status", status_label(status)),
            ];
            by_route.push((
                method,
                status.as_u16(),
                metrics::counter!(REQUESTS_TOTAL, labels.clone()),
                metrics::histogram!(REQUEST_SECONDS, labels),
            ));
            by_route.len() - 1
        });
        if let Some((_, _, requests, seconds)) = by_route.get(index) {
            requests.increment(1);
            seconds.record(elapsed.as_secs_f64());
        }
    });
}

/// The `status` label without formatting for the statuses this server
/// answers with; any other is formatted.
fn status_label(status: StatusCode) -> metrics::SharedString {
    let known = match status.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        other => return metrics::SharedString::from_owned(other.to_string()),
    };
    metrics::SharedString::const_str(known)
}
