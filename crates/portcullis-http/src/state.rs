//! What every handler can reach.

use std::sync::Arc;

use axum::http::HeaderName;
use axum::response::Response;
use portcullis_core::{AuditEntry, AuditStore, AuthService};
use portcullis_token::drf::Challenge;

use crate::IdentityHeaders;
use crate::RefreshCookie;

/// HTTP-only settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `AUTH_HEADER_NAME`: where the token is read from.
    pub auth_header_name: HeaderName,
    /// Request bodies above this many bytes are refused with 413.
    pub max_body_bytes: usize,
    /// `ISSUER`, for the RFC 8414 metadata document.
    pub issuer: Option<String>,
    /// `Cache-Control: max-age` of the JWKS, seconds.
    pub jwks_max_age: i64,
    /// The identity header names (forward-auth and the reverse proxy).
    pub identity: IdentityHeaders,
    /// `REFRESH_COOKIE`: `Some` when the refresh token also travels in a
    /// cookie (see [`crate::cookie`]).
    pub refresh_cookie: Option<RefreshCookie>,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<crate::Cidr>,
    /// What else must be ready before `/readyz` answers 200 (a `[[wsgi]]`
    /// app that is still importing).
    pub readiness: Vec<ReadinessCheck>,
    /// `API_SCHEMA`: serve the OpenAPI document at `/api/schema/`.
    pub api_schema: bool,
    /// `API_DOCS`: serve its docs page at `/api/schema/docs/` (only with
    /// `api_schema`: the page renders that document).
    pub api_docs: bool,
}

/// One more condition of `/readyz`: `Err(what)` while not ready.
#[derive(Clone)]
pub struct ReadinessCheck(pub Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl std::fmt::Debug for ReadinessCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadinessCheck")
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            auth_header_name: HeaderName::from_static("authorization"),
            max_body_bytes: 1024 * 1024,
            issuer: None,
            jwks_max_age: 300,
            identity: IdentityHeaders::default(),
            refresh_cookie: None,
            trusted_proxies: Vec::new(),
            readiness: Vec::new(),
            api_schema: true,
            api_docs: true,
        }
    }
}

/// Shared, cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    auth: AuthService,
    http: HttpSettings,
    challenge: Challenge,
    /// Where the staff endpoints record their changes (issue 18).
    audit: Option<Arc<dyn AuditStore>>,
}

impl AppState {
    /// Build the state. The `WWW-Authenticate` value is computed once.
    #[must_use]
    pub fn new(auth: AuthService, http: HttpSettings) -> Self {
        let challenge = Challenge::new(&auth.settings().auth_header_types);
        Self {
            inner: Arc::new(Inner {
                auth,
                http,
                challenge,
                audit: None,
            }),
        }
    }

    /// Record the staff endpoints' changes in this audit trail.
    #[must_use]
    pub fn with_audit(self, audit: Arc<dyn AuditStore>) -> Self {
        Self {
            inner: Arc::new(Inner {
                auth: self.inner.auth.clone(),
                http: self.inner.http.clone(),
                challenge: self.inner.challenge.clone(),
                audit: Some(audit),
            }),
        }
    }

    /// Record a staff change. It is made already: a failed write is logged
    /// and the answer stands.
    pub async fn record_audit(&self, entry: AuditEntry) {
        if let Some(audit) = &self.inner.audit
            && let Err(e) = audit.record_audit(&entry).await
        {
            let error = portcullis_core::error_chain(&e);
            tracing::error!(%error, action = entry.action.as_str(), "cannot record an audit entry");
        }
    }

    /// The simplejwt flows.
    #[must_use]
    pub fn auth(&self) -> &AuthService {
        &self.inner.auth
    }

    /// The HTTP settings.
    #[must_use]
    pub fn http(&self) -> &HttpSettings {
        &self.inner.http
    }

    /// Give a 401 of ours its `WWW-Authenticate` (simplejwt's
    /// `authenticate_header`: the first of `AUTH_HEADER_TYPES`, realm
    /// "api"), unless it has one. The one place the server adds it: the
    /// API's handlers and the mounts' own refusals both come here, while
    /// an upstream application's 401 is passed on as it was sent. The
    /// header is written by [`Challenge::apply`], as `portcullis-verify`
    /// writes it.
    pub fn challenge(&self, response: &mut Response) {
        self.inner.challenge.apply(response);
    }
}
