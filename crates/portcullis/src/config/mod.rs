//! Settings: defaults < TOML file (`--config` or `PORTCULLIS_CONFIG`) <
//! `PORTCULLIS_*` environment variables, named after simplejwt's settings.
//!
//! They are read and checked once, into [`Settings`]: one typed section per
//! area, each in its own file with the names it reads — `tokens` (the
//! token's shape), `keys` (signing keys and rotation), `auth` (the flows,
//! throttling, password hashing), `http` (the API, cookies, identity
//! headers, the console), `server` (listeners, TLS, limits, logs),
//! `mounts` (`[[static]]`, `[[upstream]]`, `[[wsgi]]`) and `store` (the
//! database). The names share one flat namespace: a name no section reads
//! is refused, with the nearest known one.
//!
//! A bad value stops the start with a message that names the setting, where
//! its value came from, and what is allowed.

mod auth;
mod http;
mod keys;
mod mounts;
mod server;
mod store;
mod tokens;
mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use portcullis_core::{AuthSettings, HashParams};
use portcullis_http::HttpSettings;
use portcullis_server::ServerSettings;
use portcullis_token::TokenSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use keys::{KeySettings, Rotation};
pub use mounts::{MountSettings, WsgiEntry, WsgiMountSpec};
pub use store::{DEFAULT_DATABASE_URL, StoreSettings};
pub use values::{List, Seconds};

use auth::AuthSection;
use http::HttpSection;
use keys::KeySection;
use mounts::MountSection;
use server::ServerSection;
use store::StoreSection;
use tokens::TokenSection;

/// A configuration that cannot be used, with where the value came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Every setting, read and checked once. Its `Debug` shows no secret (the
/// keys and the database URL are [`SecretString`]s).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `BIND`: the address to listen on.
    pub bind: SocketAddr,
    /// `LOG`: a tracing filter.
    pub log: String,
    /// The token's shape.
    pub tokens: TokenSettings,
    /// The flows.
    pub auth: AuthSettings,
    /// The Argon2id parameters (`PASSWORD_HASH_*`).
    pub hash: HashParams,
    /// The API's settings (`readiness` is left to the server).
    pub http: HttpSettings,
    /// `ADMIN_IDLE_TIMEOUT` with `ADMIN_CONSOLE` on; `None`: no console.
    pub console: Option<Duration>,
    /// Listeners, TLS, limits, the access log.
    pub server: ServerSettings,
    /// `[[static]]`, `[[upstream]]` and `[[wsgi]]`.
    pub mounts: MountSettings,
    /// The configured keys and the rotation policy.
    pub keys: KeySettings,
    /// The database.
    pub store: StoreSettings,
    origins: Origins,
}

impl Settings {
    /// Read defaults, then the TOML file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, Env::prefixed("PORTCULLIS_"))
    }

    /// Read defaults, then settings given as TOML text; the environment is
    /// not consulted (tests build many differently configured servers in
    /// one process).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::check(Figment::from(Toml::string(text)), None)
    }

    fn load_from(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
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
        let config_dir = file
            .and_then(Path::parent)
            .map(|d| {
                if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                }
            })
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf()));
        Self::check(figment.merge(env), config_dir.as_deref())
    }

    /// Every section read and checked; `config_dir` is the TOML file's
    /// directory (`[[wsgi]]`'s default `path`).
    fn check(figment: Figment, config_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let origins = Origins { figment };
        origins.refuse_unknown_names()?;
        let tokens = origins.section::<TokenSection>()?.parse(&origins)?;
        let keys = origins.section::<KeySection>()?.parse(&origins, &tokens)?;
        let (auth, hash) = origins.section::<AuthSection>()?.parse(&origins)?;
        let (http, console) = origins
            .section::<HttpSection>()?
            .parse(&origins, &tokens, &keys)?;
        let server = origins
            .section::<ServerSection>()?
            .parse(&origins, http.max_body_bytes)?;
        let mounts =
            origins
                .section::<MountSection>()?
                .parse(&origins, console.is_some(), config_dir)?;
        let store = origins.section::<StoreSection>()?.parse();
        Ok(Self {
            bind: server.bind,
            log: server.log,
            tokens,
            auth,
            hash,
            http,
            console,
            server: server.settings,
            mounts,
            keys,
            store,
            origins,
        })
    }

    /// These settings with one more `[[wsgi]]` app (`serve --wsgi`), the
    /// mounts checked again together.
    pub fn with_wsgi(mut self, entry: WsgiEntry) -> Result<Self, ConfigError> {
        self.mounts = self
            .mounts
            .with_wsgi(entry, &self.origins, self.console.is_some())?;
        Ok(self)
    }

    /// `NAME (from SOURCE)`, for messages about one setting.
    #[must_use]
    pub fn origin(&self, key: &str) -> String {
        self.origins.origin(key)
    }

    /// The settings the OpenAPI document depends on, as `serve` uses
    /// them: `portcullis openapi` prints what `GET /api/schema/` serves.
    #[must_use]
    pub fn openapi_settings(&self) -> (HttpSettings, Vec<String>) {
        let http = HttpSettings {
            auth_header_name: self.http.auth_header_name.clone(),
            api_schema: self.http.api_schema,
            api_docs: self.http.api_docs,
            ..HttpSettings::default()
        };
        (http, self.auth.auth_header_types.clone())
    }
}

/// Where each value came from (the merged sources), for messages.
#[derive(Clone)]
struct Origins {
    figment: Figment,
}

impl fmt::Debug for Origins {
    // The sources hold the values as written, secrets among them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Origins")
    }
}

impl Origins {
    /// `NAME (from SOURCE)`, for messages about one setting.
    fn origin(&self, key: &str) -> String {
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

    /// One section, as written (its names missing: their defaults).
    fn section<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ConfigError> {
        self.figment.extract().map_err(|e| self.describe(&e))
    }

    /// Every name given is one a section reads; else the first that is not,
    /// named as written, with the nearest known name.
    fn refuse_unknown_names(&self) -> Result<(), ConfigError> {
        let known = [
            values::field_names::<TokenSection>(),
            values::field_names::<KeySection>(),
            values::field_names::<AuthSection>(),
            values::field_names::<HttpSection>(),
            values::field_names::<ServerSection>(),
            values::field_names::<MountSection>(),
            values::field_names::<StoreSection>(),
        ]
        .concat();
        let given: Dict = self.figment.extract().map_err(|e| self.describe(&e))?;
        let Some(found) = given.keys().find(|key| !known.contains(&key.as_str())) else {
            return Ok(());
        };
        let meta = self.figment.find_metadata(found);
        let from_env = meta.is_some_and(|meta| meta.name.contains("environment"));
        let source = match meta.and_then(|meta| meta.source.as_ref()) {
            Some(figment::Source::File(path)) => format!("config file {}", path.display()),
            _ => "the settings".to_owned(),
        };
        Err(ConfigError(unknown_name(
            found, &known, from_env, "", &source,
        )))
    }

    /// A figment error as a message: an unknown name or value named with
    /// its entry, anything else as figment puts it.
    fn describe(&self, error: &figment::Error) -> ConfigError {
        ConfigError(
            unknown_setting(error)
                .or_else(|| self.unknown_variant(error))
                .unwrap_or_else(|| format!("invalid setting: {error}")),
        )
    }

    /// A value that is not one of a setting's words (`access_log = "xml"`,
    /// `auth = "yes"` in an `[[upstream]]`), with the words allowed.
    fn unknown_variant(&self, error: &figment::Error) -> Option<String> {
        let figment::error::Kind::UnknownVariant(found, allowed) = &error.kind else {
            return None;
        };
        let allowed = allowed
            .iter()
            .map(|word| format!("{word:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        match error.path.as_slice() {
            [key] => Some(format!(
                "{}: {found:?} is not one of {allowed}",
                self.origin(key)
            )),
            [table, index, key] => {
                let i: usize = index.parse().ok()?;
                let entries: Vec<Dict> = self.figment.extract_inner(table).ok()?;
                let prefix = entries.get(i)?.get("prefix").and_then(Value::as_str)?;
                Some(format!(
                    "[[{table}]] #{} (prefix {prefix:?}, from {}): {key} {found:?} is not one of {allowed}",
                    i + 1,
                    self.source(table)
                ))
            }
            _ => None,
        }
    }
}

/// An unknown key of an `[[upstream]]`, `[[static]]` or `[[wsgi]]` entry
/// (`strip` for `strip_prefix`), named with its entry; `None` for any
/// other error.
fn unknown_setting(error: &figment::Error) -> Option<String> {
    let figment::error::Kind::UnknownField(found, expected) = &error.kind else {
        return None;
    };
    let from_env = error
        .metadata
        .as_ref()
        .is_some_and(|meta| meta.name.contains("environment"));
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
    Some(unknown_name(found, expected, from_env, &table, &source))
}

/// An unknown setting named as it was written (`PORTCULLIS_ACESS_TOKEN_LIFETIME`
/// in the environment, `acess_token_lifetime` in a file), with the
/// closest known name.
fn unknown_name(found: &str, known: &[&str], from_env: bool, table: &str, source: &str) -> String {
    let closest = closest_name(found, known);
    if from_env {
        let written = format!("PORTCULLIS_{}", found.to_ascii_uppercase());
        let hint = closest.map_or_else(String::new, |name| {
            format!("; did you mean `PORTCULLIS_{}`?", name.to_ascii_uppercase())
        });
        return format!("the environment variable `{written}` is not a setting{hint}");
    }
    let hint = closest.map_or_else(String::new, |name| format!("; did you mean `{name}`?"));
    format!("`{found}`{table} in {source} is not a setting{hint}")
}

/// The known name nearest to `found` by edit distance, if it is near
/// enough to be a typo (at most a third of its length, and at least 1),
/// else a known name that `found` begins.
fn closest_name<'a>(found: &str, known: &[&'a str]) -> Option<&'a str> {
    let found = found.to_ascii_lowercase();
    let limit = (found.len() / 3).max(1);
    known
        .iter()
        .map(|name| (strsim::levenshtein(&found, name), *name))
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

/// Expose a secret's bytes for key loading.
#[must_use]
pub fn secret_bytes(secret: &SecretString) -> &[u8] {
    secret.expose_secret().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn debug_shows_no_secret() {
        let settings = Settings::from_toml(
            "signing_key = \"a-signing-key-of-thirty-two-bytes-at-least\"\ndatabase_url = \"postgres://portcullis:db-Pa55word@127.0.0.1/x\"\n",
        )
        .unwrap();
        for shown in [format!("{settings:?}"), format!("{settings:#?}")] {
            assert!(!shown.contains("db-Pa55word"), "{shown}");
            assert!(!shown.contains("a-signing-key"), "{shown}");
            assert!(shown.contains("database_url"), "{shown}");
        }
        assert_eq!(
            settings.store.database_url.expose_secret(),
            "postgres://portcullis:db-Pa55word@127.0.0.1/x"
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = Settings::from_toml("").unwrap();
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(
            settings.store.database_url.expose_secret(),
            DEFAULT_DATABASE_URL
        );
        assert_eq!(
            settings.server.access_log,
            portcullis_server::AccessLog::Text
        );
        assert_eq!(settings.console, Some(Duration::from_mins(30)));
        assert_eq!(settings.keys.rotation.publish_delay, 600);
        assert_eq!(settings.store.prune_interval, Some(Duration::from_hours(1)));
    }

    #[test]
    fn an_unknown_word_names_the_allowed_ones() {
        assert_eq!(
            Settings::from_toml("access_log = \"xml\"\n").unwrap_err().0,
            "ACCESS_LOG (`access_log`, from default): \"xml\" is not one of \"off\", \"text\", \"json\""
        );
    }
}
