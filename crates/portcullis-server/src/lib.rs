//! The portcullis HTTP server: what lets an API deployment drop the nginx
//! in front of its application server.
//!
//! - [`serve`]: the accept loop — HTTP/1.1 and HTTP/2 over plain TCP or
//!   rustls ([`Tls`]), the limits on slow or greedy clients, a bounded
//!   graceful shutdown — for each [`Listener`].
//! - the middleware: what every request passes through (request id
//!   ([`REQUEST_ID`]), body limit, request timeout, HSTS, [`metrics`], the
//!   access log).
//! - [`Mounts`]: what answers a request no API route takes — [`StaticMount`]
//!   (`[[static]]` directories) and [`Upstream`] (`[[upstream]]`
//!   applications behind the authenticating reverse proxy) and, with the
//!   `wsgi` feature, `WsgiMount` (`[[wsgi]]` Python apps portcullis runs
//!   itself), one [`Mount`] each.
//! - [`ServerSettings`]: the checked settings all of it runs with.
//!
//! The API itself (routes, extractors, error bodies) is `portcullis-http`'s;
//! this crate serves it and what sits behind it.

mod access_log;
pub mod metrics;
mod middleware;
mod mounts;
mod proxy;
mod representation;
mod serve;
mod settings;
mod static_cache;
mod static_files;
mod tls;
#[cfg(feature = "wsgi")]
mod wsgi;

pub use middleware::REQUEST_ID;
pub use mounts::{Mount, Mounts};
pub use proxy::{AuthMode, ForwardedProto, ProxyTimeouts, Upstream, UpstreamUrlError};
pub use serve::{Listener, flush_access_log, main_router, metrics_router, redirect_router, serve};
pub use settings::{AccessLog, ServerSettings, StaticEntry, UpstreamEntry};
pub use static_files::StaticMount;
pub use tls::{Tls, TlsError};
#[cfg(feature = "wsgi")]
pub use wsgi::{LocalPort, WsgiMount};
