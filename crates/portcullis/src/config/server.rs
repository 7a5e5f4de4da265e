//! The server's settings: the listeners, TLS, the limits on clients, and
//! the logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use portcullis_server::{AccessLog, ServerSettings};
use serde::Deserialize;

use super::values::Seconds;
use super::{ConfigError, Origins};

/// The server's settings, as written.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct ServerSection {
    /// `BIND`: the address to listen on.
    bind: String,
    /// `LOG`: a tracing filter such as `info` or `portcullis=debug`.
    log: String,
    /// `ACCESS_LOG`: `off`, `text` (one `key=value` line per request) or
    /// `json` (every log line, access lines included, as JSON).
    access_log: AccessLog,
    /// `TLS_CERT_FILE`: a PEM certificate chain; with `TLS_KEY_FILE`, BIND
    /// speaks HTTPS (HTTP/2 and HTTP/1.1). Reloaded on SIGHUP.
    tls_cert_file: Option<PathBuf>,
    /// `TLS_KEY_FILE`: the PEM private key of `TLS_CERT_FILE`.
    tls_key_file: Option<PathBuf>,
    /// `HSTS_MAX_AGE`: `Strict-Transport-Security: max-age` sent with TLS;
    /// 0 sends `max-age=0`, which tells browsers to forget the policy.
    hsts_max_age: Seconds,
    /// `HTTP_REDIRECT_BIND`: a plain-HTTP address answering every request
    /// with a 308 to the same path over HTTPS (needs TLS).
    http_redirect_bind: Option<String>,
    /// `METRICS_BIND`: serve `GET /metrics` only on this (admin) address;
    /// unset: on BIND.
    metrics_bind: Option<String>,
    /// `MAX_HEADER_BYTES`: the request line and headers together (HTTP/1.1)
    /// or the header list (HTTP/2); larger gets 431. At least 8192.
    max_header_bytes: usize,
    /// `REQUEST_TIMEOUT`: a request not answered within this gets 408.
    request_timeout: Seconds,
    /// `HEADER_READ_TIMEOUT`: a client must send its request headers (and
    /// finish the TLS handshake) within this, else the connection closes.
    header_read_timeout: Seconds,
    /// `KEEP_ALIVE_TIMEOUT`: an idle connection is closed after this.
    keep_alive_timeout: Seconds,
    /// `MAX_CONNECTIONS`: connections beyond this wait in the listen
    /// backlog until one closes.
    max_connections: usize,
    /// `SHUTDOWN_TIMEOUT`: after SIGTERM, how long in-flight requests may
    /// take before their connections are cut.
    shutdown_timeout: Seconds,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8000".to_owned(),
            // sqlx reports PostgreSQL notices (such as "relation already
            // exists, skipping" on every migration check) at info.
            log: "info,sqlx=warn".to_owned(),
            access_log: AccessLog::Text,
            tls_cert_file: None,
            tls_key_file: None,
            hsts_max_age: Seconds(365 * 86_400),
            http_redirect_bind: None,
            metrics_bind: None,
            max_header_bytes: 32 * 1024,
            request_timeout: Seconds(30),
            header_read_timeout: Seconds(10),
            keep_alive_timeout: Seconds(60),
            max_connections: 4096,
            shutdown_timeout: Seconds(30),
        }
    }
}

/// The server's settings, checked.
pub(super) struct Server {
    /// `BIND`.
    pub(super) bind: SocketAddr,
    /// `LOG`.
    pub(super) log: String,
    /// The rest.
    pub(super) settings: ServerSettings,
}

impl ServerSection {
    /// The server's settings, checked; `max_body_bytes` is the API's
    /// `MAX_BODY_BYTES`.
    pub(super) fn parse(
        self,
        origins: &Origins,
        max_body_bytes: usize,
    ) -> Result<Server, ConfigError> {
        let bind = address(origins, "bind", &self.bind)?;
        let tls = match (self.tls_cert_file, self.tls_key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError(format!(
                    "{} and {} go together: set both (PEM files) for HTTPS, or neither for plain HTTP",
                    origins.origin("tls_cert_file"),
                    origins.origin("tls_key_file")
                )));
            }
        };
        let redirect_bind = optional_address(
            origins,
            "http_redirect_bind",
            self.http_redirect_bind.as_deref(),
        )?;
        if redirect_bind.is_some() && tls.is_none() {
            return Err(ConfigError(format!(
                "{} redirects to HTTPS, which needs TLS_CERT_FILE and TLS_KEY_FILE; set them or unset it",
                origins.origin("http_redirect_bind")
            )));
        }
        // hyper refuses a smaller read buffer (and panics on one).
        if self.max_header_bytes < 8192 {
            return Err(ConfigError(format!(
                "{}: {} is too small; use at least 8192 (bytes)",
                origins.origin("max_header_bytes"),
                self.max_header_bytes
            )));
        }
        if self.max_connections == 0 {
            return Err(ConfigError(format!(
                "{} must be at least 1",
                origins.origin("max_connections")
            )));
        }
        let positive = |key: &str, value: Seconds| {
            if value.0 == 0 {
                Err(ConfigError(format!(
                    "{} must be at least 1 second",
                    origins.origin(key)
                )))
            } else {
                Ok(value.duration())
            }
        };
        let settings = ServerSettings {
            tls,
            hsts_max_age: self.hsts_max_age.0.unsigned_abs(),
            redirect_bind,
            metrics_bind: optional_address(origins, "metrics_bind", self.metrics_bind.as_deref())?,
            access_log: self.access_log,
            max_header_bytes: self.max_header_bytes,
            max_body_bytes,
            request_timeout: positive("request_timeout", self.request_timeout)?,
            header_read_timeout: positive("header_read_timeout", self.header_read_timeout)?,
            keep_alive_timeout: positive("keep_alive_timeout", self.keep_alive_timeout)?,
            max_connections: self.max_connections,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout.0.unsigned_abs()),
        };
        Ok(Server {
            bind,
            log: self.log,
            settings,
        })
    }
}

/// A `HOST:PORT` setting, parsed.
fn address(origins: &Origins, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError(format!(
            "{}: {value:?} is not an address; use HOST:PORT such as 127.0.0.1:8000 or 0.0.0.0:8000",
            origins.origin(key),
        ))
    })
}

/// An optional `HOST:PORT` setting; empty counts as unset.
fn optional_address(
    origins: &Origins,
    key: &str,
    value: Option<&str>,
) -> Result<Option<SocketAddr>, ConfigError> {
    value
        .filter(|v| !v.trim().is_empty())
        .map(|v| address(origins, key, v.trim()))
        .transpose()
}
