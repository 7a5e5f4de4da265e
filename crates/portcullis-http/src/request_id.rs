//! The id of the request being served (`X-Request-Id`), for the few log
//! lines written while serving one: a failed request's error names the same
//! id as its access-log line.
//!
//! A task-local rather than a `tracing` span: a span per request is
//! created, entered on every poll and closed, for every request, to serve
//! the rare one that logs something; a task-local costs a pointer swap per
//! poll. The request span still exists at `LOG=debug`, for whoever wants
//! every event of a request tied to it.

use std::fmt;
use std::future::Future;

use axum::http::HeaderValue;

tokio::task_local! {
    static REQUEST_ID: HeaderValue;
}

/// Run `future` (the rest of a request) with `id` as its request id.
pub async fn scope<F: Future>(id: HeaderValue, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// The current request's id, for a log field: `request_id = %current()`.
/// Outside a request (or before the front middleware ran) it shows `-`.
#[must_use]
pub fn current() -> Current {
    Current
}

/// What [`current`] returns: displays the id when there is one.
#[derive(Debug, Clone, Copy)]
pub struct Current;

impl fmt::Display for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        REQUEST_ID
            .try_with(|id| f.write_str(id.to_str().unwrap_or("-")))
            .unwrap_or_else(|_| f.write_str("-"))
    }
}
