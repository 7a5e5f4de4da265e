//! The server's own settings, checked: TLS, the listeners, the limits
//! on clients, and the access log. The binary's configuration builds one
//! [`ServerSettings`]; nothing here reads a file or the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How requests are logged (`ACCESS_LOG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
