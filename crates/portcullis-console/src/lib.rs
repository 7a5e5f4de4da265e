//! The staff console at `/admin/` (issue 18), where a Django team had
//! Django admin: find an account, change it, end its sessions, lift its
//! login lock, manage the signing keys, and read the audit trail.
//!
//! Server-rendered HTML (askama templates, escaped), one stylesheet built
//! into the binary, no script at all: every page works without
//! JavaScript, and the `Content-Security-Policy` allows none.
//!
//! Security, in one place each:
//! - Login (`login.rs`): the `/api/token/` credential check and throttling
//!   ([`AuthService::check_login`]); only active staff accounts get in.
//! - Sessions (`session.rs`): cookie `HttpOnly; SameSite=Strict`, with
//!   `Secure` and the `__Host-` prefix under TLS; an idle timeout.
//! - CSRF (`extract.rs`): every form carries its session's token, and the
//!   `Posted` extractor refuses a POST without it
//!   before any handler runs; the login form is a double-submit cookie.
//! - Permissions (`extract.rs`): superuser-only actions (the staff and
//!   superuser flags, keys, another superuser's account) are refused on the
//!   server, whatever the form showed.
//! - Headers (`headers`): CSP without inline script, `X-Frame-Options:
//!   DENY`, `nosniff`, `no-store`, on every response of the console.
//!
//! This crate knows nothing of SQL: it works through the
//! [`AuthService`], an [`AuditStore`], a [`UserDirectory`] and a
//! [`KeyAdmin`].

mod error;
mod extract;
mod pages;
mod session;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use portcullis_core::{
    Actor, AuditAction, AuditEntry, AuditStore, AuthService, Target, UserDirectory,
};
use portcullis_http::Cidr;

pub use error::ConsoleError;
pub use pages::time as format_time;

/// Where the console lives. A `[[static]]` or `[[upstream]]` mount at or
/// under it could never be reached, so the configuration refuses one.
pub const CONSOLE_PREFIX: &str = "/admin/";

/// The console's settings.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// The server speaks TLS: cookies are `Secure` and `__Host-` prefixed.
    pub tls: bool,
    /// `ADMIN_IDLE_TIMEOUT`: a session unused this long ends.
    pub idle_timeout: Duration,
    /// `TRUSTED_PROXIES`, for the client address the audit trail records.
    pub trusted_proxies: Vec<Cidr>,
}

/// A key the console made (what its confirmation says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Its kid.
    pub kid: String,
    /// Its algorithm, such as `EdDSA`.
    pub algorithm: String,
    /// When it starts signing (Unix seconds); `None`: not scheduled.
    pub activates_at: Option<i64>,
}

/// Making signing keys: the same steps as `portcullis keys generate` and
/// `portcullis keys rotate`, which the binary owns (key generation and the
/// rotation policy are its settings).
#[async_trait]
pub trait KeyAdmin: Send + Sync + std::fmt::Debug {
    /// Generate a key of `algorithm`, signing at once with `activate`.
    async fn generate(&self, algorithm: &str, activate: bool) -> Result<NewKey, String>;
    /// Publish a successor of the active key, which signs after
    /// `KEY_PUBLISH_DELAY`.
    async fn rotate(&self) -> Result<NewKey, String>;
}

/// What every console handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    auth: AuthService,
    audit: Arc<dyn AuditStore>,
    directory: Arc<dyn UserDirectory>,
    keys: Arc<dyn KeyAdmin>,
    sessions: session::Sessions,
    settings: ConsoleSettings,
    cookie: String,
    login_cookie: String,
}

impl ConsoleState {
    /// The console over these flows and stores.
    #[must_use]
    pub fn new(
        auth: AuthService,
        audit: Arc<dyn AuditStore>,
        directory: Arc<dyn UserDirectory>,
        keys: Arc<dyn KeyAdmin>,
        settings: ConsoleSettings,
    ) -> Self {
        // RFC 6265bis §4.1.3.2: `__Host-` needs `Secure`, which a browser
        // takes from an HTTPS origin only.
        let prefix = if settings.tls { "__Host-" } else { "" };
        let sessions = session::Sessions::new(settings.idle_timeout, auth.engine().clock());
        Self {
            inner: Arc::new(Inner {
                auth,
                audit,
                directory,
                keys,
                sessions,
                cookie: format!("{prefix}portcullis-admin"),
                login_cookie: format!("{prefix}portcullis-admin-login"),
                settings,
            }),
        }
    }

    fn auth(&self) -> &AuthService {
        &self.inner.auth
    }

    fn now(&self) -> i64 {
        self.inner.auth.engine().now()
    }

    /// Record a change in the audit trail. The change is already made: a
    /// failed write is logged loudly, and the page still says what was done.
    async fn record(
        &self,
        actor: &Actor,
        address: Option<String>,
        action: AuditAction,
        target: Option<Target>,
        detail: String,
    ) {
        let entry = AuditEntry::new(self.now(), actor.clone(), action, target)
            .detail(detail)
            .address(address);
        if let Err(e) = self.inner.audit.record_audit(&entry).await {
            let error = portcullis_core::error_chain(&e);
            tracing::error!(%error, action = action.as_str(), "cannot record an audit entry");
        }
    }

    /// A `Set-Cookie` value for `name`.
    fn set_cookie(&self, name: &str, value: &str) -> String {
        let (path, secure) = if self.inner.settings.tls {
            ("/", "; Secure")
        } else {
            ("/admin/", "")
        };
        format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict{secure}")
    }

    /// A `Set-Cookie` value that removes `name`.
    fn clear_cookie(&self, name: &str) -> String {
        format!("{}; Max-Age=0", self.set_cookie(name, ""))
    }
}

/// The console's routes, with its headers on every response. Merged
/// into the API router (routes before every mount).
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/admin", get(pages::home))
        .route("/admin/", get(pages::home))
        .route("/admin/static/console.css", get(stylesheet))
        .route(
            "/admin/login/",
            get(pages::login::form).post(pages::login::submit),
        )
        .route("/admin/logout/", post(pages::login::logout))
        .route("/admin/users/", get(pages::users::list))
        .route(
            "/admin/users/{id}/",
            get(pages::users::show).post(pages::users::update),
        )
        .route(
            "/admin/users/{id}/password/",
            post(pages::users::set_password),
        )
        .route(
            "/admin/users/{id}/delete/",
            get(pages::users::confirm_delete).post(pages::users::delete),
        )
        .route("/admin/users/{id}/unlock/", post(pages::users::unlock))
        .route(
            "/admin/users/{id}/sessions/end-all/",
            post(pages::users::end_all),
        )
        .route(
            "/admin/users/{id}/sessions/{sid}/end/",
            post(pages::users::end_session),
        )
        .route("/admin/keys/", get(pages::keys::list))
        .route("/admin/keys/generate/", post(pages::keys::generate))
        .route("/admin/keys/rotate/", post(pages::keys::rotate))
        .route(
            "/admin/keys/{kid}/retire/",
            get(pages::keys::confirm_retire).post(pages::keys::retire),
        )
        .route("/admin/audit/", get(pages::audit::list))
        .route("/admin/{*rest}", get(not_found).post(not_found))
        .layer(axum::middleware::map_response(headers))
        .with_state(state)
}

async fn not_found() -> ConsoleError {
    ConsoleError::NotFound
}

/// The stylesheet, built into the binary.
async fn stylesheet() -> Response {
    let mut response = Response::new(include_str!("../static/console.css").into());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// The console's `Content-Security-Policy`: its own stylesheet, no script
/// of any kind, forms posting to itself only, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every console response carries (OWASP secure headers).
async fn headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}
