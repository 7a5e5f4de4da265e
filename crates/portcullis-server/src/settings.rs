//! The server's own settings, checked: TLS, the listeners, the limits
//! on clients, and the access log; and the `[[static]]` and `[[upstream]]`
//! tables as written. The binary's configuration builds one
//! [`ServerSettings`]; nothing here reads a file or the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::AuthMode;

/// How requests are logged (`ACCESS_LOG`: `off`, `text` or `json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// No access lines.
    Off,
    /// One `key=value` line per request.
    Text,
    /// The whole log as JSON lines, one per request among them.
    Json,
}

/// The checked settings of the server: TLS, listeners, limits and logging.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The PEM certificate chain and key files, when TLS is on.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `Strict-Transport-Security` max-age in seconds (sent with TLS only).
    pub hsts_max_age: u64,
    /// The plain-HTTP listener that redirects to HTTPS.
    pub redirect_bind: Option<SocketAddr>,
    /// The admin listener for `/metrics`.
    pub metrics_bind: Option<SocketAddr>,
    /// The access log.
    pub access_log: AccessLog,
    /// Request line plus headers, in bytes.
    pub max_header_bytes: usize,
    /// Request body, in bytes.
    pub max_body_bytes: usize,
    /// Time to answer one request.
    pub request_timeout: Duration,
    /// Time to send the request headers (and the TLS handshake).
    pub header_read_timeout: Duration,
    /// Idle time before a connection is closed.
    pub keep_alive_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Bound on the drain after SIGTERM.
    pub shutdown_timeout: Duration,
}

/// One `[[static]]` table: a directory served at a URL prefix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticEntry {
    /// Starts and ends with `/`, such as `/static/`.
    pub prefix: String,
    /// The directory; relative paths are from the working directory.
    pub dir: PathBuf,
    /// The `Cache-Control` value of every response, such as
    /// `public, max-age=31536000, immutable` for fingerprinted assets.
    #[serde(default)]
    pub cache_control: Option<String>,
}

/// One `[[upstream]]` table: an application requests are forwarded to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamEntry {
    /// Starts and ends with `/`, such as `/app/` (or `/` for everything
    /// the API and the other mounts do not take).
    pub prefix: String,
    /// `http://host:port`, optionally with a path put before the request's.
    pub url: String,
    /// Who may pass; `required` unless set.
    #[serde(default = "required")]
    pub auth: AuthMode,
    /// Forward `/app/x` as `/x` instead of unchanged.
    #[serde(default)]
    pub strip_prefix: bool,
}

fn required() -> AuthMode {
    AuthMode::Required
}
