//! Settings: defaults < TOML file (`--config` or `PORTCULLIS_CONFIG`) <
//! `PORTCULLIS_*` environment variables, named after simplejwt's settings.
//!
//! A bad value stops the start with a message that names the setting, where
//! its value came from, and what is allowed.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use portcullis_core::{AuthSettings, HashParams, ThrottleSettings};
use portcullis_http::{HttpSettings, RefreshCookie};
use portcullis_server::{AccessLog, Mount, ServerSettings};
use portcullis_token::{Audience, TokenSettings, TokenType};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://portcullis.sqlite3";

/// Seconds, written as a whole number or as `30s`, `5m`, `1h`, `1d`, `1w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Seconds(pub i64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        let invalid = |shown: &str| {
            serde::de::Error::custom(format!(
                "{shown} is not a duration: use whole seconds (300) or a number with a unit (30s, 5m, 1h, 1d)"
            ))
        };
        match Raw::deserialize(d).map_err(|_| invalid("the value"))? {
            Raw::Int(n) if n >= 0 => Ok(Self(n)),
            Raw::Int(n) => Err(invalid(&n.to_string())),
            Raw::Text(text) => {
                let text = text.trim();
                if let Ok(n) = text.parse::<i64>() {
                    return if n >= 0 {
                        Ok(Self(n))
                    } else {
                        Err(invalid(text))
                    };
                }
                let duration =
                    humantime::parse_duration(text).map_err(|_| invalid(&format!("{text:?}")))?;
                i64::try_from(duration.as_secs())
                    .map(Self)
                    .map_err(|_| invalid(text))
            }
        }
    }
}

/// A list written as a TOML array or as a comma-separated string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct List(pub Vec<String>);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(Self(match Raw::deserialize(d)? {
            Raw::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Raw::Many(v) => v,
        }))
    }
}

/// Every setting, as read. Keys are simplejwt's names in snake_case.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `BIND`: the address to listen on.
    pub bind: String,
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `SIGNING_KEY`: an HMAC secret or a PEM private key.
    #[serde(skip_serializing)]
    pub signing_key: Option<SecretString>,
    /// `SIGNING_KEY_FILE`: a file holding the signing key.
    pub signing_key_file: Option<PathBuf>,
    /// `VERIFYING_KEY`: a PEM public key (asymmetric algorithms).
    pub verifying_key: Option<String>,
    /// `VERIFYING_KEY_FILE`.
    pub verifying_key_file: Option<PathBuf>,
    /// `KEY_PUBLISH_DELAY`: how long a rotated-in key is published before
    /// it signs.
    pub key_publish_delay: Seconds,
    /// `KEY_ROTATION_INTERVAL`: rotate automatically this long after the
    /// active key started signing; unset: never.
    pub key_rotation_interval: Option<Seconds>,
    /// `JWK_URL`: another issuer's JWKS whose keys are trusted too.
    pub jwk_url: Option<String>,
    /// `ALGORITHM`.
    pub algorithm: String,
    /// `ACCESS_TOKEN_LIFETIME`.
    pub access_token_lifetime: Seconds,
    /// `REFRESH_TOKEN_LIFETIME`.
    pub refresh_token_lifetime: Seconds,
    /// `SLIDING_TOKEN_LIFETIME`.
    pub sliding_token_lifetime: Seconds,
    /// `SLIDING_TOKEN_REFRESH_LIFETIME`.
    pub sliding_token_refresh_lifetime: Seconds,
    /// `ROTATE_REFRESH_TOKENS`.
    pub rotate_refresh_tokens: bool,
    /// `BLACKLIST_AFTER_ROTATION`.
    pub blacklist_after_rotation: bool,
    /// `UPDATE_LAST_LOGIN`.
    pub update_last_login: bool,
    /// `REFRESH_REUSE_DETECTION`: sessions and reuse detection; unset:
    /// on exactly when `ROTATE_REFRESH_TOKENS` is.
    pub refresh_reuse_detection: Option<bool>,
    /// `REFRESH_REUSE_GRACE`: how long a rotated refresh token is answered
    /// with its successor again; 0 turns the window off.
    pub refresh_reuse_grace: Seconds,
    /// `PRUNE_INTERVAL`: how often `serve` deletes expired token and
    /// session records (what `portcullis tokens flush-expired` does), so no
    /// cron job is needed; 0 turns it off.
    pub prune_interval: Seconds,
    /// `ADMIN_CONSOLE`: serve the staff console at `/admin/`.
    pub admin_console: bool,
    /// `ADMIN_IDLE_TIMEOUT`: a console session unused this long ends.
    pub admin_idle_timeout: Seconds,
    /// `API_SCHEMA`: serve the OpenAPI document at `/api/schema/`.
    pub api_schema: bool,
    /// `API_DOCS`: serve its docs page at `/api/schema/docs/` (only with
    /// `API_SCHEMA`).
    pub api_docs: bool,
    /// `AUDIT_RETENTION`: audit entries older than this are deleted with
    /// the other pruning (`PRUNE_INTERVAL`, `tokens flush-expired`).
    pub audit_retention: Seconds,
    /// `REFRESH_COOKIE`: obtain and refresh also set the refresh token as an
    /// `HttpOnly` `__Host-` cookie, which refresh, logout and blacklist read
    /// (with a CSRF check) when the body has none.
    pub refresh_cookie: bool,
    /// `REFRESH_COOKIE_NAME`: the refresh cookie's name; must start with
    /// `__Host-`.
    pub refresh_cookie_name: String,
    /// `AUDIENCE`: one value or a list.
    pub audience: Option<List>,
    /// `ISSUER`.
    pub issuer: Option<String>,
    /// `LEEWAY`.
    pub leeway: Seconds,
    /// `AUTH_HEADER_TYPES`.
    pub auth_header_types: List,
    /// `AUTH_HEADER_NAME`: a header name, or Django's `HTTP_*` META key.
    pub auth_header_name: String,
    /// `AUTH_TOKEN_CLASSES`: `AccessToken` and/or `SlidingToken`.
    pub auth_token_classes: List,
    /// `USER_ID_CLAIM`.
    pub user_id_claim: String,
    /// `TOKEN_TYPE_CLAIM`; empty turns type checks off.
    pub token_type_claim: String,
    /// `JTI_CLAIM`.
    pub jti_claim: String,
    /// `SLIDING_TOKEN_REFRESH_EXP_CLAIM`.
    pub sliding_token_refresh_exp_claim: String,
    /// `CHECK_USER_IS_ACTIVE`.
    pub check_user_is_active: bool,
    /// `CHECK_REVOKE_TOKEN`.
    pub check_revoke_token: bool,
    /// `REVOKE_TOKEN_CLAIM`.
    pub revoke_token_claim: String,
    /// `PASSWORD_HASH_MEMORY_KIB`: Argon2id memory cost.
    pub password_hash_memory_kib: u32,
    /// `PASSWORD_HASH_ITERATIONS`: Argon2id time cost.
    pub password_hash_iterations: u32,
    /// `PASSWORD_HASH_PARALLELISM`: Argon2id lanes.
    pub password_hash_parallelism: u32,
    /// `MAX_TOKEN_BYTES`: longer tokens are invalid without parsing.
    pub max_token_bytes: usize,
    /// `TOKEN_CACHE_SIZE`: verified tokens remembered (entries); 0 turns it off.
    pub token_cache_size: usize,
    /// `MAX_BODY_BYTES`: larger request bodies get a 413.
    pub max_body_bytes: usize,
    /// `LOG`: a tracing filter such as `info` or `portcullis=debug`.
    pub log: String,
    /// `ACCESS_LOG`: `off`, `text` (one `key=value` line per request) or
    /// `json` (every log line, access lines included, as JSON).
    pub access_log: String,
    /// `TLS_CERT_FILE`: a PEM certificate chain; with `TLS_KEY_FILE`, BIND
    /// speaks HTTPS (HTTP/2 and HTTP/1.1). Reloaded on SIGHUP.
    pub tls_cert_file: Option<PathBuf>,
    /// `TLS_KEY_FILE`: the PEM private key of `TLS_CERT_FILE`.
    pub tls_key_file: Option<PathBuf>,
    /// `HSTS_MAX_AGE`: `Strict-Transport-Security: max-age` sent with TLS;
    /// 0 sends `max-age=0`, which tells browsers to forget the policy.
    pub hsts_max_age: Seconds,
    /// `HTTP_REDIRECT_BIND`: a plain-HTTP address answering every request
    /// with a 308 to the same path over HTTPS (needs TLS).
    pub http_redirect_bind: Option<String>,
    /// `METRICS_BIND`: serve `GET /metrics` only on this (admin) address;
    /// unset: on BIND.
    pub metrics_bind: Option<String>,
    /// `MAX_HEADER_BYTES`: the request line and headers together (HTTP/1.1)
    /// or the header list (HTTP/2); larger gets 431. At least 8192.
    pub max_header_bytes: usize,
    /// `REQUEST_TIMEOUT`: a request not answered within this gets 408.
    pub request_timeout: Seconds,
    /// `HEADER_READ_TIMEOUT`: a client must send its request headers (and
    /// finish the TLS handshake) within this, else the connection closes.
    pub header_read_timeout: Seconds,
    /// `KEEP_ALIVE_TIMEOUT`: an idle connection is closed after this.
    pub keep_alive_timeout: Seconds,
    /// `MAX_CONNECTIONS`: connections beyond this wait in the listen
    /// backlog until one closes.
    pub max_connections: usize,
    /// `SHUTDOWN_TIMEOUT`: after SIGTERM, how long in-flight requests may
    /// take before their connections are cut.
    pub shutdown_timeout: Seconds,
    /// `TRUSTED_PROXIES`: CIDR blocks of the reverse proxies whose
    /// `X-Forwarded-For` names the client; empty: the TCP peer is the client.
    pub trusted_proxies: List,
    /// `LOGIN_FAILURE_LIMIT`: failed logins per username within the window
    /// that lock it; 0: no username throttling.
    pub login_failure_limit: u32,
    /// `LOGIN_ADDRESS_FAILURE_LIMIT`: failed logins per client address within
    /// the window that lock it; 0: no address throttling.
    pub login_address_failure_limit: u32,
    /// `LOGIN_FAILURE_WINDOW`: how long failures are counted.
    pub login_failure_window: Seconds,
    /// `LOGIN_LOCKOUT`: how long a lock lasts.
    pub login_lockout: Seconds,
    /// `LOGIN_BACKOFF_AFTER`: failures per username before each further one
    /// delays the next attempt (2 s, 4 s, 8 s, …).
    pub login_backoff_after: u32,
    /// `IDENTITY_HEADER_USER_ID`: the header carrying the user's id to an
    /// upstream and in `/auth/verify` answers.
    pub identity_header_user_id: String,
    /// `IDENTITY_HEADER_USERNAME`.
    pub identity_header_username: String,
    /// `IDENTITY_HEADER_IS_STAFF`: `true` or `false`.
    pub identity_header_is_staff: String,
    /// `UPSTREAM_CONNECT_TIMEOUT`: opening a connection to an upstream;
    /// past it, 504.
    pub upstream_connect_timeout: Seconds,
    /// `UPSTREAM_READ_TIMEOUT`: waiting for an upstream's response head
    /// (past it, 504) and then between two reads of its body.
    pub upstream_read_timeout: Seconds,
    /// `[[static]]` mounts (TOML only).
    #[serde(rename = "static")]
    pub statics: Vec<StaticEntry>,
    /// `[[upstream]]` routes (TOML only).
    #[serde(rename = "upstream")]
    pub upstreams: Vec<UpstreamEntry>,
    /// `[[wsgi]]` apps run by portcullis itself (TOML only, or
    /// `serve --wsgi`).
    pub wsgi: Vec<WsgiEntry>,
}

/// One `[[wsgi]]` table: a Python WSGI app portcullis runs in its own
/// worker processes (gunicorn's job; see portcullis-wsgi).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// `required`, `optional` (the default) or `none`, as for `[[upstream]]`.
    #[serde(default = "default_wsgi_auth")]
    pub auth: String,
    /// Extra environment variables of the workers (`DJANGO_SETTINGS_MODULE`).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
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
            auth: default_wsgi_auth(),
            env: std::collections::BTreeMap::new(),
        }
    }
}

fn default_wsgi_prefix() -> String {
    "/".to_owned()
}

fn default_wsgi_auth() -> String {
    "optional".to_owned()
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
    pub auth: portcullis_server::AuthMode,
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
    pub timeout: std::time::Duration,
    /// `max_requests` and its jitter.
    pub max_requests: (u64, u64),
    /// Extra environment of the workers.
    pub env: Vec<(String, String)>,
}

/// Every mount, checked.
#[derive(Debug)]
pub struct Mounts {
    /// `[[static]]` and `[[upstream]]`, ready to serve.
    pub mounts: Vec<Mount>,
    /// `[[wsgi]]`, whose workers the server starts.
    pub wsgi: Vec<WsgiMountSpec>,
}

/// One `[[static]]` table: a directory served at a URL prefix.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamEntry {
    /// Starts and ends with `/`, such as `/app/` (or `/` for everything
    /// the API and the other mounts do not take).
    pub prefix: String,
    /// `http://host:port`, optionally with a path put before the request's.
    pub url: String,
    /// `required` (the default), `optional` or `none`.
    #[serde(default = "default_upstream_auth")]
    pub auth: String,
    /// Forward `/app/x` as `/x` instead of unchanged.
    #[serde(default)]
    pub strip_prefix: bool,
}

fn default_upstream_auth() -> String {
    "required".to_owned()
}

impl fmt::Debug for Config {
    // Secrets never reach a log or a panic message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("algorithm", &self.algorithm)
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        let defaults = TokenSettings::default();
        let auth = AuthSettings::default();
        let hash = HashParams::default();
        Self {
            bind: "127.0.0.1:8000".to_owned(),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            signing_key: None,
            signing_key_file: None,
            verifying_key: None,
            verifying_key_file: None,
            key_publish_delay: Seconds(600),
            key_rotation_interval: None,
            jwk_url: None,
            algorithm: "HS256".to_owned(),
            access_token_lifetime: Seconds(defaults.access_token_lifetime),
            refresh_token_lifetime: Seconds(defaults.refresh_token_lifetime),
            sliding_token_lifetime: Seconds(defaults.sliding_token_lifetime),
            sliding_token_refresh_lifetime: Seconds(defaults.sliding_token_refresh_lifetime),
            rotate_refresh_tokens: auth.rotate_refresh_tokens,
            blacklist_after_rotation: auth.blacklist_after_rotation,
            update_last_login: auth.update_last_login,
            refresh_reuse_detection: None,
            refresh_reuse_grace: Seconds(auth.refresh_reuse_grace),
            prune_interval: Seconds(3600),
            admin_console: true,
            admin_idle_timeout: Seconds(1800),
            api_schema: true,
            api_docs: true,
            audit_retention: Seconds(365 * 86_400),
            refresh_cookie: false,
            refresh_cookie_name: "__Host-refresh".to_owned(),
            audience: None,
            issuer: None,
            leeway: Seconds(0),
            auth_header_types: List(auth.auth_header_types),
            auth_header_name: "Authorization".to_owned(),
            auth_token_classes: List(vec!["AccessToken".to_owned()]),
            user_id_claim: defaults.user_id_claim,
            token_type_claim: "token_type".to_owned(),
            jti_claim: defaults.jti_claim,
            sliding_token_refresh_exp_claim: defaults.sliding_refresh_exp_claim,
            check_user_is_active: auth.check_user_is_active,
            check_revoke_token: auth.check_revoke_token,
            revoke_token_claim: auth.revoke_token_claim,
            password_hash_memory_kib: hash.memory_kib,
            password_hash_iterations: hash.iterations,
            password_hash_parallelism: hash.parallelism,
            max_token_bytes: defaults.max_token_bytes,
            token_cache_size: defaults.token_cache_size,
            max_body_bytes: 1024 * 1024,
            // sqlx reports PostgreSQL notices (such as "relation already
            // exists, skipping" on every migration check) at info.
            log: "info,sqlx=warn".to_owned(),
            identity_header_user_id: "X-Portcullis-User-Id".to_owned(),
            identity_header_username: "X-Portcullis-Username".to_owned(),
            identity_header_is_staff: "X-Portcullis-Is-Staff".to_owned(),
            upstream_connect_timeout: Seconds(5),
            upstream_read_timeout: Seconds(60),
            statics: Vec::new(),
            upstreams: Vec::new(),
            wsgi: Vec::new(),
            trusted_proxies: List(Vec::new()),
            login_failure_limit: auth.throttle.failure_limit,
            login_address_failure_limit: auth.throttle.address_failure_limit,
            login_failure_window: Seconds(auth.throttle.window),
            login_lockout: Seconds(auth.throttle.lockout),
            login_backoff_after: auth.throttle.backoff_after,
            access_log: "text".to_owned(),
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

/// `auth = "…"` of a mount.
fn auth_mode(entry: &str, auth: &str) -> Result<portcullis_server::AuthMode, ConfigError> {
    match auth {
        "required" => Ok(portcullis_server::AuthMode::Required),
        "optional" => Ok(portcullis_server::AuthMode::Optional),
        "none" => Ok(portcullis_server::AuthMode::None),
        other => Err(ConfigError(format!(
            "{entry}: auth {other:?} is not one of \"required\", \"optional\", \"none\""
        ))),
    }
}

/// A configuration that cannot be used, with where the value came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where the settings were read from, so later checks can say where a bad
/// value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The settings.
    pub config: Config,
    figment: Figment,
    /// The directory of the TOML file, if one was read (`[[wsgi]]`'s
    /// default `path`).
    pub config_dir: Option<PathBuf>,
}

impl Loaded {
    /// Read defaults, then the TOML file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, Env::prefixed("PORTCULLIS_"))
    }

    /// Read defaults, then settings given as TOML text; the environment is
    /// not consulted (tests build many differently configured servers in
    /// one process).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text));
        Self::extract(figment)
    }

    fn load_from(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "the config file {} does not exist (given by --config or PORTCULLIS_CONFIG)",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // PORTCULLIS_CONFIG names the file; PORTCULLIS_TEST_* belong to the test suite.
        let env = env
            .ignore(&["config"])
            // figment hands the filter the key as written (PORTCULLIS_TEST_… → "TEST_…").
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"));
        let mut loaded = Self::extract(figment.merge(env))?;
        loaded.config_dir = file
            .and_then(Path::parent)
            .map(|d| {
                if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                }
            })
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf()));
        Ok(loaded)
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(|e| {
            ConfigError(unknown_setting(&e).unwrap_or_else(|| format!("invalid setting: {e}")))
        })?;
        Ok(Self {
            config,
            figment,
            config_dir: None,
        })
    }

    /// `NAME (from SOURCE)`, for messages about one setting.
    #[must_use]
    pub fn origin(&self, key: &str) -> String {
        let upper = key.to_ascii_uppercase();
        format!("{upper} (`{key}`, from {})", self.source(key))
    }

    /// Where `key`'s value came from: `config file …`, `environment
    /// variable …` or `default`.
    fn source(&self, key: &str) -> String {
        let upper = key.to_ascii_uppercase();
        match self.figment.find_metadata(key) {
            Some(meta) if meta.name.contains("environment") => {
                format!("environment variable PORTCULLIS_{upper}")
            }
            Some(meta) => match &meta.source {
                Some(figment::Source::File(path)) => format!("config file {}", path.display()),
                _ => "default".to_owned(),
            },
            None => "default".to_owned(),
        }
    }

    /// The token settings, checked.
    pub fn token_settings(&self) -> Result<TokenSettings, ConfigError> {
        let c = &self.config;
        let algorithm = portcullis_token::parse_algorithm(&c.algorithm)
            .map_err(|e| ConfigError(format!("{}: {e}", self.origin("algorithm"))))?;
        let required = |key: &str, value: &str| {
            if value.trim().is_empty() {
                Err(ConfigError(format!(
                    "{} must not be empty",
                    self.origin(key)
                )))
            } else {
                Ok(value.to_owned())
            }
        };
        Ok(TokenSettings {
            algorithm,
            access_token_lifetime: c.access_token_lifetime.0,
            refresh_token_lifetime: c.refresh_token_lifetime.0,
            sliding_token_lifetime: c.sliding_token_lifetime.0,
            sliding_token_refresh_lifetime: c.sliding_token_refresh_lifetime.0,
            audience: match c.audience.as_ref().map(|l| l.0.as_slice()) {
                None | Some([]) => None,
                Some([one]) => Some(Audience::One(one.clone())),
                Some(many) => Some(Audience::Many(many.to_vec())),
            },
            issuer: c.issuer.clone().filter(|s| !s.is_empty()),
            leeway: c.leeway.0,
            user_id_claim: required("user_id_claim", &c.user_id_claim)?,
            token_type_claim: Some(c.token_type_claim.clone()).filter(|s| !s.is_empty()),
            jti_claim: required("jti_claim", &c.jti_claim)?,
            sliding_refresh_exp_claim: required(
                "sliding_token_refresh_exp_claim",
                &c.sliding_token_refresh_exp_claim,
            )?,
            max_token_bytes: c.max_token_bytes,
            token_cache_size: c.token_cache_size,
        })
    }

    /// The flow settings, checked.
    pub fn auth_settings(&self) -> Result<AuthSettings, ConfigError> {
        let c = &self.config;
        if c.auth_header_types.0.is_empty() {
            return Err(ConfigError(format!(
                "{} must name at least one scheme, such as Bearer",
                self.origin("auth_header_types")
            )));
        }
        if let Some(bad) = c
            .auth_header_types
            .0
            .iter()
            .find(|t| t.contains(char::is_whitespace))
        {
            return Err(ConfigError(format!(
                "{}: {bad:?} contains whitespace; a scheme is one word such as Bearer or JWT",
                self.origin("auth_header_types")
            )));
        }
        let mut classes = Vec::new();
        for name in &c.auth_token_classes.0 {
            match TokenType::from_class_name(name) {
                Some(t @ (TokenType::Access | TokenType::Sliding)) => classes.push(t),
                _ => {
                    return Err(ConfigError(format!(
                        "{}: {name:?} is not a token class that authenticates; allowed: AccessToken, SlidingToken",
                        self.origin("auth_token_classes")
                    )));
                }
            }
        }
        if classes.is_empty() {
            return Err(ConfigError(format!(
                "{} must not be empty",
                self.origin("auth_token_classes")
            )));
        }
        Ok(AuthSettings {
            rotate_refresh_tokens: c.rotate_refresh_tokens,
            blacklist_after_rotation: c.blacklist_after_rotation,
            update_last_login: c.update_last_login,
            check_user_is_active: c.check_user_is_active,
            check_revoke_token: c.check_revoke_token,
            revoke_token_claim: c.revoke_token_claim.clone(),
            auth_token_classes: classes,
            auth_header_types: c.auth_header_types.0.clone(),
            refresh_reuse_detection: c.refresh_reuse_detection.unwrap_or(c.rotate_refresh_tokens),
            refresh_reuse_grace: c.refresh_reuse_grace.0,
            throttle: ThrottleSettings {
                failure_limit: c.login_failure_limit,
                address_failure_limit: c.login_address_failure_limit,
                window: c.login_failure_window.0,
                lockout: c.login_lockout.0,
                backoff_after: c.login_backoff_after,
            },
        })
    }

    /// The Argon2id parameters, checked.
    pub fn hash_params(&self) -> Result<HashParams, ConfigError> {
        let c = &self.config;
        let params = HashParams {
            memory_kib: c.password_hash_memory_kib,
            iterations: c.password_hash_iterations,
            parallelism: c.password_hash_parallelism,
        };
        if params.iterations == 0
            || params.parallelism == 0
            || params.memory_kib < 8 * params.parallelism
        {
            return Err(ConfigError(format!(
                "{}, {} and {} are not valid Argon2 parameters: iterations and parallelism must be at least 1 and memory at least 8 KiB per lane",
                self.origin("password_hash_memory_kib"),
                self.origin("password_hash_iterations"),
                self.origin("password_hash_parallelism"),
            )));
        }
        Ok(params)
    }

    /// The header the token is read from: `Authorization`, or Django's
    /// `HTTP_X_ACCESS_TOKEN` form for `X-Access-Token`.
    /// The settings the OpenAPI document depends on, as `serve` uses
    /// them: `portcullis openapi` prints what `GET /api/schema/` serves.
    pub fn openapi_settings(&self) -> Result<(HttpSettings, Vec<String>), ConfigError> {
        let http = HttpSettings {
            auth_header_name: self.auth_header_name()?,
            api_schema: self.config.api_schema,
            api_docs: self.config.api_docs,
            ..HttpSettings::default()
        };
        Ok((http, self.auth_settings()?.auth_header_types))
    }

    /// `AUTH_HEADER_NAME`, checked.
    pub fn auth_header_name(&self) -> Result<axum::http::HeaderName, ConfigError> {
        let raw = self.config.auth_header_name.trim();
        let name = portcullis_token::auth_header_name(raw);
        axum::http::HeaderName::try_from(name).map_err(|_| {
            ConfigError(format!(
                "{}: {raw:?} is not a valid header name",
                self.origin("auth_header_name")
            ))
        })
    }

    /// The identity header names, checked: valid, distinct, and not a
    /// header the proxy or the client already means something by.
    pub fn identity_headers(&self) -> Result<portcullis_http::IdentityHeaders, ConfigError> {
        let c = &self.config;
        let name = |key: &str, value: &str| {
            axum::http::HeaderName::try_from(value.trim()).map_err(|_| {
                ConfigError(format!(
                    "{}: {value:?} is not a valid header name; use letters, digits and dashes, such as X-Portcullis-User-Id",
                    self.origin(key)
                ))
            })
        };
        let identity = portcullis_http::IdentityHeaders {
            user_id: name("identity_header_user_id", &c.identity_header_user_id)?,
            username: name("identity_header_username", &c.identity_header_username)?,
            is_staff: name("identity_header_is_staff", &c.identity_header_is_staff)?,
        };
        let auth_header = self.auth_header_name()?;
        let names = [&identity.user_id, &identity.username, &identity.is_staff];
        for (i, a) in names.iter().enumerate() {
            let reserved = [
                axum::http::header::HOST,
                axum::http::header::AUTHORIZATION,
                axum::http::header::COOKIE,
                axum::http::header::CONTENT_TYPE,
                axum::http::header::CONTENT_LENGTH,
                auth_header.clone(),
            ];
            if reserved.contains(a) || names.iter().skip(i + 1).any(|b| b == a) {
                return Err(ConfigError(format!(
                    "{}, {} and {} must be three distinct headers of their own (not {a}); the defaults are X-Portcullis-User-Id, X-Portcullis-Username and X-Portcullis-Is-Staff",
                    self.origin("identity_header_user_id"),
                    self.origin("identity_header_username"),
                    self.origin("identity_header_is_staff"),
                )));
            }
        }
        Ok(identity)
    }

    /// `UPSTREAM_CONNECT_TIMEOUT` and `UPSTREAM_READ_TIMEOUT`, checked.
    pub fn proxy_timeouts(&self) -> Result<portcullis_server::ProxyTimeouts, ConfigError> {
        let seconds = |key: &str, value: Seconds| {
            u64::try_from(value.0)
                .ok()
                .filter(|s| *s > 0)
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "{} must be at least 1 second, such as 5s or 1m",
                        self.origin(key)
                    ))
                })
        };
        Ok(portcullis_server::ProxyTimeouts {
            connect: seconds(
                "upstream_connect_timeout",
                self.config.upstream_connect_timeout,
            )?,
            read: seconds("upstream_read_timeout", self.config.upstream_read_timeout)?,
        })
    }

    /// The `[[static]]`, `[[upstream]]` and `[[wsgi]]` mounts, checked.
    /// Each error names the entry (`[[static]] #2, prefix "/media/"`) and
    /// how to fix it.
    pub fn mounts(&self) -> Result<Mounts, ConfigError> {
        let c = &self.config;
        let timeouts = self.proxy_timeouts()?;
        let mut seen: Vec<String> = Vec::new();
        let mut check_prefix = |table: &str, origin: &str, prefix: &str| {
            let entry = format!("{table} (prefix {prefix:?}, from {origin})");
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
            if c.admin_console && prefix.starts_with(portcullis_console::CONSOLE_PREFIX) {
                return Err(ConfigError(format!(
                    "{entry}: the staff console answers {}, which comes before every mount; choose another prefix or set ADMIN_CONSOLE=false",
                    portcullis_console::CONSOLE_PREFIX
                )));
            }
            if seen.iter().any(|p| p == prefix) {
                return Err(ConfigError(format!(
                    "{entry}: another [[static]], [[upstream]] or [[wsgi]] entry has the same prefix; give each its own"
                )));
            }
            seen.push(prefix.to_owned());
            Ok(entry)
        };
        let origin = self.source("static");
        let mut mounts = Vec::with_capacity(c.statics.len() + c.upstreams.len());
        for (i, s) in c.statics.iter().enumerate() {
            let entry = check_prefix(&format!("[[static]] #{}", i + 1), &origin, &s.prefix)?;
            let cache_control = match s.cache_control.as_deref() {
                None => None,
                Some(value) => Some(axum::http::HeaderValue::from_str(value).map_err(|_| {
                    ConfigError(format!(
                        "{entry}: cache_control {value:?} is not a header value; use text such as \"public, max-age=31536000, immutable\" or \"no-cache\""
                    ))
                })?),
            };
            let mount = portcullis_server::StaticMount::new(s.prefix.clone(), &s.dir, cache_control)
                .map_err(|e| {
                    ConfigError(format!(
                        "{entry}: dir {} cannot be served ({e}); set dir to an existing directory (relative paths are from the working directory)",
                        s.dir.display()
                    ))
                })?;
            mounts.push(Mount::Static(mount));
        }
        let origin = self.source("upstream");
        for (i, u) in c.upstreams.iter().enumerate() {
            let entry = check_prefix(&format!("[[upstream]] #{}", i + 1), &origin, &u.prefix)?;
            let auth = auth_mode(&entry, &u.auth)?;
            let upstream =
                portcullis_server::Upstream::new(
                u.prefix.clone(),
                u.url.trim(),
                auth,
                u.strip_prefix,
                timeouts,
            )
                    .map_err(|e| {
                        ConfigError(format!(
                            "{entry}: url {e}; use the application's address, such as \"http://127.0.0.1:8001\""
                        ))
                    })?;
            mounts.push(Mount::Upstream(upstream));
        }
        let origin = self.source("wsgi");
        let mut wsgi = Vec::with_capacity(c.wsgi.len());
        for (i, w) in c.wsgi.iter().enumerate() {
            let entry = check_prefix(&format!("[[wsgi]] #{}", i + 1), &origin, &w.prefix)?;
            wsgi.push(self.wsgi_spec(entry, w)?);
        }
        Ok(Mounts { mounts, wsgi })
    }

    fn wsgi_spec(&self, entry: String, w: &WsgiEntry) -> Result<WsgiMountSpec, ConfigError> {
        let auth = auth_mode(&entry, &w.auth)?;
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
            vec![
                self.config_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(".")),
            ]
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
            auth,
            app: app.to_owned(),
            paths,
            virtualenv,
            workers: w.workers,
            threads: w.threads,
            timeout: std::time::Duration::from_secs(w.timeout),
            max_requests: (
                w.max_requests,
                w.max_requests_jitter.unwrap_or(w.max_requests / 10),
            ),
            env: w.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
    }

    /// Cookie mode (`REFRESH_COOKIE`), checked: `None` when off.
    pub fn refresh_cookie(&self) -> Result<Option<RefreshCookie>, ConfigError> {
        let c = &self.config;
        if !c.refresh_cookie {
            return Ok(None);
        }
        let name = c.refresh_cookie_name.trim();
        // RFC 6265 §4.1.1: a cookie name is a token (visible ASCII, no
        // separators); `__Host-` makes browsers insist on Secure, Path=/
        // and no Domain (RFC 6265bis §4.1.3.2).
        let is_token = name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !name.starts_with("__Host-") || name.len() <= "__Host-".len() || !is_token {
            return Err(ConfigError(format!(
                "{}: {name:?} is not a usable cookie name; use __Host- followed by letters, digits or dashes, such as __Host-refresh",
                self.origin("refresh_cookie_name")
            )));
        }
        if name == portcullis_http::cookie::CSRF_COOKIE {
            return Err(ConfigError(format!(
                "{}: {name:?} is the CSRF cookie's name; choose another, such as __Host-refresh",
                self.origin("refresh_cookie_name")
            )));
        }
        Ok(Some(RefreshCookie {
            name: name.to_owned(),
            max_age: c.refresh_token_lifetime.0,
        }))
    }

    /// `TRUSTED_PROXIES`, parsed.
    pub fn trusted_proxies(&self) -> Result<Vec<portcullis_http::Cidr>, ConfigError> {
        self.config
            .trusted_proxies
            .0
            .iter()
            .map(|entry| {
                entry.parse().map_err(|e| {
                    ConfigError(format!(
                        "{}: {e}; list the reverse proxies' addresses or blocks, such as [\"10.0.0.0/8\", \"::1\"]",
                        self.origin("trusted_proxies")
                    ))
                })
            })
            .collect()
    }

    /// The listening address.
    pub fn bind(&self) -> Result<SocketAddr, ConfigError> {
        self.address("bind", &self.config.bind)
    }

    /// A `HOST:PORT` setting, parsed.
    fn address(&self, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
        value.parse().map_err(|_| {
            ConfigError(format!(
                "{}: {value:?} is not an address; use HOST:PORT such as 127.0.0.1:8000 or 0.0.0.0:8000",
                self.origin(key),
            ))
        })
    }

    /// An optional `HOST:PORT` setting; empty counts as unset.
    fn optional_address(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        value
            .filter(|v| !v.trim().is_empty())
            .map(|v| self.address(key, v.trim()))
            .transpose()
    }

    /// The server's settings (TLS, listeners, limits, logging), checked.
    pub fn server(&self) -> Result<ServerSettings, ConfigError> {
        let c = &self.config;
        let tls = match (&c.tls_cert_file, &c.tls_key_file) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError(format!(
                    "{} and {} go together: set both (PEM files) for HTTPS, or neither for plain HTTP",
                    self.origin("tls_cert_file"),
                    self.origin("tls_key_file")
                )));
            }
        };
        let redirect_bind =
            self.optional_address("http_redirect_bind", c.http_redirect_bind.as_deref())?;
        if redirect_bind.is_some() && tls.is_none() {
            return Err(ConfigError(format!(
                "{} redirects to HTTPS, which needs TLS_CERT_FILE and TLS_KEY_FILE; set them or unset it",
                self.origin("http_redirect_bind")
            )));
        }
        let access_log = match c.access_log.trim() {
            "off" => AccessLog::Off,
            "text" => AccessLog::Text,
            "json" => AccessLog::Json,
            other => {
                return Err(ConfigError(format!(
                    "{}: {other:?} is not an access log format; use off, text or json",
                    self.origin("access_log")
                )));
            }
        };
        // hyper refuses a smaller read buffer (and panics on one).
        if c.max_header_bytes < 8192 {
            return Err(ConfigError(format!(
                "{}: {} is too small; use at least 8192 (bytes)",
                self.origin("max_header_bytes"),
                c.max_header_bytes
            )));
        }
        if c.max_connections == 0 {
            return Err(ConfigError(format!(
                "{} must be at least 1",
                self.origin("max_connections")
            )));
        }
        let positive = |key: &str, value: Seconds| {
            if value.0 == 0 {
                Err(ConfigError(format!(
                    "{} must be at least 1 second",
                    self.origin(key)
                )))
            } else {
                Ok(std::time::Duration::from_secs(value.0.unsigned_abs()))
            }
        };
        Ok(ServerSettings {
            tls,
            hsts_max_age: c.hsts_max_age.0.unsigned_abs(),
            redirect_bind,
            metrics_bind: self.optional_address("metrics_bind", c.metrics_bind.as_deref())?,
            access_log,
            max_header_bytes: c.max_header_bytes,
            max_body_bytes: c.max_body_bytes,
            request_timeout: positive("request_timeout", c.request_timeout)?,
            header_read_timeout: positive("header_read_timeout", c.header_read_timeout)?,
            keep_alive_timeout: positive("keep_alive_timeout", c.keep_alive_timeout)?,
            max_connections: c.max_connections,
            shutdown_timeout: std::time::Duration::from_secs(c.shutdown_timeout.0.unsigned_abs()),
        })
    }

    /// The configured signing key bytes, from `SIGNING_KEY` or
    /// `SIGNING_KEY_FILE`; `None` when neither is set.
    pub fn signing_key(&self) -> Result<Option<SecretString>, ConfigError> {
        let c = &self.config;
        match (&c.signing_key, &c.signing_key_file) {
            (Some(_), Some(_)) => Err(ConfigError(format!(
                "both {} and {} are set; set only one",
                self.origin("signing_key"),
                self.origin("signing_key_file")
            ))),
            (Some(key), None) => Ok(Some(key.clone())),
            (None, Some(path)) => {
                read_key_file(path, &self.origin("signing_key_file")).map(|k| Some(k.into()))
            }
            (None, None) => Ok(None),
        }
    }

    /// The configured verifying key, from `VERIFYING_KEY` or `VERIFYING_KEY_FILE`.
    pub fn verifying_key(&self) -> Result<Option<String>, ConfigError> {
        let c = &self.config;
        match (&c.verifying_key, &c.verifying_key_file) {
            (Some(_), Some(_)) => Err(ConfigError(format!(
                "both {} and {} are set; set only one",
                self.origin("verifying_key"),
                self.origin("verifying_key_file")
            ))),
            (Some(key), None) => Ok(Some(key.clone()).filter(|k| !k.is_empty())),
            (None, Some(path)) => read_key_file(path, &self.origin("verifying_key_file")).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// An unknown setting named as it was written (`PORTCULLIS_ACESS_TOKEN_LIFETIME`
/// in the environment, `acess_token_lifetime` in a file), with the
/// closest known name; `None` for any other error.
fn unknown_setting(error: &figment::Error) -> Option<String> {
    let figment::error::Kind::UnknownField(found, expected) = &error.kind else {
        return None;
    };
    let from_env = error
        .metadata
        .as_ref()
        .is_some_and(|meta| meta.name.contains("environment"));
    let closest = closest_name(found, expected);
    if from_env {
        let written = format!("PORTCULLIS_{}", found.to_ascii_uppercase());
        let hint = closest.map_or_else(String::new, |name| {
            format!("; did you mean PORTCULLIS_{}?", name.to_ascii_uppercase())
        });
        return Some(format!(
            "the environment variable {written} is not a setting{hint}"
        ));
    }
    let source = match error
        .metadata
        .as_ref()
        .and_then(|meta| meta.source.as_ref())
    {
        Some(figment::Source::File(path)) => format!("config file {}", path.display()),
        _ => "the settings".to_owned(),
    };
    // The path ends with the key itself; before it, the table it is in.
    let table = match error.path.split_last().map(|(_, table)| table) {
        Some([array, index]) => match index.parse::<usize>() {
            Ok(i) => format!(" in [[{array}]] #{}", i + 1),
            Err(_) => format!(" in [{array}.{index}]"),
        },
        Some(table) if !table.is_empty() => format!(" in [{}]", table.join(".")),
        _ => String::new(),
    };
    let hint = closest.map_or_else(String::new, |name| format!("; did you mean `{name}`?"));
    Some(format!(
        "`{found}`{table} in {source} is not a setting{hint}"
    ))
}

/// The known name nearest to `found` by edit distance, if it is near
/// enough to be a typo (at most a third of its length, and at least 1),
/// else a known name that `found` begins.
fn closest_name<'a>(found: &str, known: &[&'a str]) -> Option<&'a str> {
    let found = found.to_ascii_lowercase();
    let limit = (found.len() / 3).max(1);
    known
        .iter()
        .map(|name| (edit_distance(&found, name), *name))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
        // A shortened name (`strip` for `strip_prefix`).
        .or_else(|| {
            known
                .iter()
                .find(|name| found.len() >= 3 && name.starts_with(found.as_str()))
                .copied()
        })
}

/// Levenshtein distance over bytes (setting names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.bytes().enumerate() {
            let substitute = previous.get(j).copied().unwrap_or(usize::MAX) + usize::from(ca != cb);
            let delete = previous
                .get(j + 1)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let insert = current
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

fn read_key_file(path: &Path, origin: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{origin}: cannot read {}: {e}", path.display())))?;
    // A secret written with `echo` ends in a newline that is not part of it.
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Expose a secret's bytes for key loading.
#[must_use]
pub fn secret_bytes(secret: &SecretString) -> &[u8] {
    secret.expose_secret().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(text: &str) -> Result<Seconds, String> {
        serde_json::from_value(serde_json::json!(text)).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_take_seconds_or_units() {
        assert_eq!(seconds("300"), Ok(Seconds(300)));
        assert_eq!(seconds("5m"), Ok(Seconds(300)));
        assert_eq!(seconds("1d"), Ok(Seconds(86_400)));
        assert_eq!(seconds("1h 30m"), Ok(Seconds(5_400)));
        assert_eq!(
            serde_json::from_value::<Seconds>(serde_json::json!(42)).unwrap(),
            Seconds(42)
        );
        assert!(
            seconds("soon")
                .unwrap_err()
                .contains("\"soon\" is not a duration")
        );
        assert!(seconds("-5").is_err());
    }

    #[test]
    fn typos_find_the_nearest_name() {
        let known = ["access_token_lifetime", "refresh_token_lifetime", "bind"];
        assert_eq!(
            closest_name("acess_token_lifetime", &known),
            Some("access_token_lifetime")
        );
        assert_eq!(closest_name("bnd", &known), Some("bind"));
        assert_eq!(closest_name("colour", &known), None);
        assert_eq!(
            closest_name("refresh", &known),
            Some("refresh_token_lifetime")
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn lists_take_arrays_or_commas() {
        let l: List = serde_json::from_value(serde_json::json!("Bearer, JWT")).unwrap();
        assert_eq!(l.0, ["Bearer", "JWT"]);
        let l: List = serde_json::from_value(serde_json::json!(["Bearer"])).unwrap();
        assert_eq!(l.0, ["Bearer"]);
    }
}
