//! The mounts: `[[static]]` directories and `[[upstream]]` applications
//! (tables the server crate defines), `[[wsgi]]` apps, and the proxy's
//! timeouts. Each error names the entry (`[[static]] #2, prefix
//! "/media/"`) and how to fix it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderValue;
use portcullis_server::{
    AuthMode, Mount, ProxyTimeouts, StaticEntry, StaticMount, Upstream, UpstreamEntry,
};
use serde::Deserialize;

use super::values::Seconds;
use super::{ConfigError, Origins};

/// The mounts, as written.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub(super) struct MountSection {
    /// `[[static]]` mounts (TOML only).
    #[serde(rename = "static")]
    statics: Vec<StaticEntry>,
    /// `[[upstream]]` routes (TOML only).
    #[serde(rename = "upstream")]
    upstreams: Vec<UpstreamEntry>,
    /// `[[wsgi]]` apps run by portcullis itself (TOML only, or
    /// `serve --wsgi`).
    wsgi: Vec<WsgiEntry>,
    /// `UPSTREAM_CONNECT_TIMEOUT`: opening a connection to an upstream;
    /// past it, 504.
    upstream_connect_timeout: Seconds,
    /// `UPSTREAM_READ_TIMEOUT`: waiting for an upstream's response head
    /// (past it, 504) and then between two reads of its body.
    upstream_read_timeout: Seconds,
}

impl Default for MountSection {
    fn default() -> Self {
        Self {
            statics: Vec::new(),
            upstreams: Vec::new(),
            wsgi: Vec::new(),
            upstream_connect_timeout: Seconds(5),
            upstream_read_timeout: Seconds(60),
        }
    }
}

/// One `[[wsgi]]` table: a Python WSGI app portcullis runs in its own
/// worker processes (gunicorn's job; see portcullis-wsgi).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsgiEntry {
    /// Starts and ends with `/`; `SCRIPT_NAME` is it without the last `/`.
    #[serde(default = "default_wsgi_prefix")]
    pub prefix: String,
    /// `module:callable`, as gunicorn takes it: `mysite.wsgi:application`.
    pub app: String,
    /// Directories put first on `sys.path` (default: the config file's
    /// directory; for `serve --wsgi`, the working directory).
    #[serde(default)]
    pub path: Vec<PathBuf>,
    /// The app's virtualenv (default: `$VIRTUAL_ENV`).
    #[serde(default)]
    pub virtualenv: Option<PathBuf>,
    /// Worker processes (default: the number of cores).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Threads per worker (default 1).
    #[serde(default = "one")]
    pub threads: usize,
    /// Seconds a request may run before its worker is replaced (504).
    #[serde(default = "thirty")]
    pub timeout: u64,
    /// Recycle a worker after this many requests (0: never).
    #[serde(default)]
    pub max_requests: u64,
    /// Up to this many more per worker, drawn at random (default: a tenth
    /// of `max_requests`), so the workers do not all recycle at once.
    #[serde(default)]
    pub max_requests_jitter: Option<u64>,
    /// Who may pass, as for `[[upstream]]`; `optional` unless set.
    #[serde(default = "optional")]
    pub auth: AuthMode,
    /// Extra environment variables of the workers (`DJANGO_SETTINGS_MODULE`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl WsgiEntry {
    /// `serve --wsgi APP`: one mount at `/`, `dir` on `sys.path`.
    #[must_use]
    pub fn shortcut(app: String, dir: PathBuf) -> Self {
        Self {
            prefix: default_wsgi_prefix(),
            app,
            path: vec![dir],
            virtualenv: None,
            workers: None,
            threads: 1,
            timeout: thirty(),
            max_requests: 0,
            max_requests_jitter: None,
            auth: optional(),
            env: BTreeMap::new(),
        }
    }
}

fn default_wsgi_prefix() -> String {
    "/".to_owned()
}

fn optional() -> AuthMode {
    AuthMode::Optional
}

fn one() -> usize {
    1
}

fn thirty() -> u64 {
    30
}

/// A `[[wsgi]]` entry, checked: everything its worker pool needs.
#[derive(Debug, Clone)]
pub struct WsgiMountSpec {
    /// `[[wsgi]] #1 (prefix "/", from …)`, for later errors.
    pub entry: String,
    /// The mount prefix.
    pub prefix: String,
    /// Who may pass.
    pub auth: AuthMode,
    /// `module:callable`.
    pub app: String,
    /// `sys.path` additions.
    pub paths: Vec<PathBuf>,
    /// The virtualenv.
    pub virtualenv: Option<PathBuf>,
    /// Worker processes (`None`: one per core).
    pub workers: Option<usize>,
    /// Threads per worker.
    pub threads: usize,
    /// The request timeout.
    pub timeout: Duration,
    /// `max_requests` and its jitter.
    pub max_requests: (u64, u64),
    /// Extra environment of the workers.
    pub env: Vec<(String, String)>,
}

/// A `[[static]]` entry, checked; its directory is opened by
/// [`MountSettings::open`].
#[derive(Debug, Clone)]
struct StaticSpec {
    /// `[[static]] #1 (prefix …, from …)`.
    entry: String,
    prefix: String,
    dir: PathBuf,
    cache_control: Option<HeaderValue>,
}

/// Every mount, checked.
#[derive(Clone)]
pub struct MountSettings {
    /// As written, for `serve --wsgi` to add to.
    section: MountSection,
    /// The config file's directory.
    config_dir: Option<PathBuf>,
    statics: Vec<StaticSpec>,
    /// `[[upstream]]`, ready to serve.
    upstreams: Vec<Upstream>,
    /// `[[wsgi]]`, whose workers the server starts.
    pub wsgi: Vec<WsgiMountSpec>,
}

impl std::fmt::Debug for MountSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountSettings")
            .field("statics", &self.statics)
            .field("upstreams", &self.upstreams)
            .field("wsgi", &self.wsgi)
            .finish_non_exhaustive()
    }
}

impl MountSettings {
    /// The `[[static]]` directories opened, and the `[[upstream]]` routes:
    /// what the server answers behind the API.
    pub fn open(&self) -> Result<Vec<Mount>, ConfigError> {
        let mut mounts = Vec::with_capacity(self.statics.len() + self.upstreams.len());
        for s in &self.statics {
            let mount = StaticMount::new(s.prefix.clone(), &s.dir, s.cache_control.clone())
                .map_err(|e| {
                    ConfigError(format!(
                        "{}: dir {} cannot be served ({e}); set dir to an existing directory (relative paths are from the working directory)",
                        s.entry,
                        s.dir.display()
                    ))
                })?;
            mounts.push(Mount::Static(mount));
        }
        mounts.extend(self.upstreams.iter().cloned().map(Mount::Upstream));
        Ok(mounts)
    }

    /// These mounts and `entry` (`serve --wsgi`), checked again together.
    pub(super) fn with_wsgi(
        &self,
        entry: WsgiEntry,
        origins: &Origins,
        console: bool,
    ) -> Result<Self, ConfigError> {
        let mut section = self.section.clone();
        section.wsgi.push(entry);
        section.parse(origins, console, self.config_dir.as_deref())
    }
}

impl MountSection {
    /// The mounts, checked; `console`: the staff console is on (its prefix
    /// is taken); `config_dir`: the config file's directory, `[[wsgi]]`'s
    /// default `path`.
    pub(super) fn parse(
        self,
        origins: &Origins,
        console: bool,
        config_dir: Option<&std::path::Path>,
    ) -> Result<MountSettings, ConfigError> {
        let timeouts = self.proxy_timeouts(origins)?;
        let mut seen: Vec<&str> = Vec::new();
        let source = origins.source("static");
        let mut statics = Vec::with_capacity(self.statics.len());
        for (i, s) in self.statics.iter().enumerate() {
            let entry = checked_entry("static", i, &source, &s.prefix, &seen, console)?;
            seen.push(&s.prefix);
            let cache_control = match s.cache_control.as_deref() {
                None => None,
                Some(value) => Some(HeaderValue::from_str(value).map_err(|_| {
                    ConfigError(format!(
                        "{entry}: cache_control {value:?} is not a header value; use text such as \"public, max-age=31536000, immutable\" or \"no-cache\""
                    ))
                })?),
            };
            statics.push(StaticSpec {
                entry,
                prefix: s.prefix.clone(),
                dir: s.dir.clone(),
                cache_control,
            });
        }
        let source = origins.source("upstream");
        let mut upstreams = Vec::with_capacity(self.upstreams.len());
        for (i, u) in self.upstreams.iter().enumerate() {
            let entry = checked_entry("upstream", i, &source, &u.prefix, &seen, console)?;
            seen.push(&u.prefix);
            let upstream = Upstream::new(
                u.prefix.clone(),
                u.url.trim(),
                u.auth,
                u.strip_prefix,
                timeouts,
            )
            .map_err(|e| {
                ConfigError(format!(
                    "{entry}: url {e}; use the application's address, such as \"http://127.0.0.1:8001\""
                ))
            })?;
            upstreams.push(upstream);
        }
        let source = origins.source("wsgi");
        let mut wsgi = Vec::with_capacity(self.wsgi.len());
        for (i, w) in self.wsgi.iter().enumerate() {
            let entry = checked_entry("wsgi", i, &source, &w.prefix, &seen, console)?;
            seen.push(&w.prefix);
            wsgi.push(wsgi_spec(entry, w, config_dir)?);
        }
        drop(seen);
        Ok(MountSettings {
            config_dir: config_dir.map(std::path::Path::to_path_buf),
            section: self,
            statics,
            upstreams,
            wsgi,
        })
    }

    /// `UPSTREAM_CONNECT_TIMEOUT` and `UPSTREAM_READ_TIMEOUT`, checked.
    fn proxy_timeouts(&self, origins: &Origins) -> Result<ProxyTimeouts, ConfigError> {
        let seconds = |key: &str, value: Seconds| {
            u64::try_from(value.0)
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "{} must be at least 1 second, such as 5s or 1m",
                        origins.origin(key)
                    ))
                })
        };
        Ok(ProxyTimeouts {
            connect: seconds("upstream_connect_timeout", self.upstream_connect_timeout)?,
            read: seconds("upstream_read_timeout", self.upstream_read_timeout)?,
        })
    }
}

/// `[[static]] #1 (prefix "/s/", from …)`, the label of entry `i` of
/// `table` in messages, once its prefix is checked: a plain path, not one
/// the API, the console (when `console`) or another entry (`seen`) takes.
fn checked_entry(
    table: &str,
    i: usize,
    source: &str,
    prefix: &str,
    seen: &[&str],
    console: bool,
) -> Result<String, ConfigError> {
    let entry = format!("[[{table}]] #{} (prefix {prefix:?}, from {source})", i + 1);
    if !prefix.starts_with('/') || !prefix.ends_with('/') {
        return Err(ConfigError(format!(
            "{entry}: prefix must start and end with `/`, such as \"/static/\""
        )));
    }
    if prefix.contains(['?', '#', '%', '\\'])
        || prefix.contains("//")
        || prefix.contains("/../")
        || prefix.contains("/./")
    {
        return Err(ConfigError(format!(
            "{entry}: prefix must be a plain path such as \"/static/\" (no `?`, `#`, `%`, `\\`, `//`, `.` or `..` segments)"
        )));
    }
    if let Some(api) = portcullis_http::API_PATHS
        .iter()
        .find(|api| api.trim_end_matches('/') == prefix.trim_end_matches('/'))
    {
        return Err(ConfigError(format!(
            "{entry}: the API itself answers {api}, which comes before every mount; choose another prefix"
        )));
    }
    if console && prefix.starts_with(portcullis_console::CONSOLE_PREFIX) {
        return Err(ConfigError(format!(
            "{entry}: the staff console answers {}, which comes before every mount; choose another prefix or set ADMIN_CONSOLE=false",
            portcullis_console::CONSOLE_PREFIX
        )));
    }
    if seen.contains(&prefix) {
        return Err(ConfigError(format!(
            "{entry}: another [[static]], [[upstream]] or [[wsgi]] entry has the same prefix; give each its own"
        )));
    }
    Ok(entry)
}

fn wsgi_spec(
    entry: String,
    w: &WsgiEntry,
    config_dir: Option<&std::path::Path>,
) -> Result<WsgiMountSpec, ConfigError> {
    let app = w.app.trim();
    let valid_app = app
        .split_once(':')
        .map_or(!app.is_empty(), |(m, a)| !m.is_empty() && !a.is_empty());
    if !valid_app {
        return Err(ConfigError(format!(
            "{entry}: app {:?} is not module:callable; write it as gunicorn takes it, such as \"mysite.wsgi:application\"",
            w.app
        )));
    }
    if w.threads == 0 || w.workers == Some(0) {
        return Err(ConfigError(format!(
            "{entry}: workers and threads must be at least 1"
        )));
    }
    if w.timeout == 0 {
        return Err(ConfigError(format!(
            "{entry}: timeout must be at least 1 second (it is how long a request may run before its worker is replaced)"
        )));
    }
    let paths = if w.path.is_empty() {
        vec![config_dir.map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)]
    } else {
        w.path.clone()
    };
    let paths = paths
        .into_iter()
        .map(|p| std::path::absolute(&p).unwrap_or(p))
        .collect();
    let virtualenv = w
        .virtualenv
        .clone()
        .or_else(|| std::env::var_os("VIRTUAL_ENV").map(PathBuf::from))
        .map(|v| std::path::absolute(&v).unwrap_or(v));
    Ok(WsgiMountSpec {
        entry,
        prefix: w.prefix.clone(),
        auth: w.auth,
        app: app.to_owned(),
        paths,
        virtualenv,
        workers: w.workers,
        threads: w.threads,
        timeout: Duration::from_secs(w.timeout),
        max_requests: (
            w.max_requests,
            w.max_requests_jitter.unwrap_or(w.max_requests / 10),
        ),
        env: w.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    })
}
