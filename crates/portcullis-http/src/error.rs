//! The one place errors become responses, with the bodies DRF and
//! simplejwt send (written by [`portcullis_token::drf`], the wire format
//! `portcullis-verify` shares). The API's handlers, the server's
//! middleware, static files, reverse proxy and WSGI mounts all answer
//! their errors with an [`ApiError`]. Internal failures are logged here,
//! with their causes, and shown as DRF's generic 500 body, never with them.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::AuthError;
use portcullis_token::drf;
use serde_json::{Map, Value, json};

/// Every way a request can fail.
#[derive(Debug)]
pub enum ApiError {
    /// A simplejwt flow refused.
    Auth(AuthError),
    /// DRF field errors, in field order: `{"field":["message",…],…}`.
    Fields(Vec<(&'static str, &'static str)>),
    /// DRF `non_field_errors`.
    NonField(String),
    /// An unparsable body: `{"detail":"JSON parse error - …"}` (the whole detail).
    Parse(String),
    /// A content type no parser takes.
    UnsupportedMediaType(String),
    /// A method the view does not implement.
    MethodNotAllowed(String),
    /// No renderer satisfies the request's `Accept` (DRF's `NotAcceptable`).
    NotAcceptable,
    /// A body over the configured limit.
    PayloadTooLarge(usize),
    /// No such endpoint or object.
    NotFound,
    /// DRF's `PermissionDenied`: authenticated, but not allowed (not staff).
    PermissionDenied,
    /// A cookie-authenticated request failed the CSRF check: DRF's
    /// `SessionAuthentication` refusal, `CSRF Failed: <Django's reason>`.
    Csrf(&'static str),
    /// The database is unreachable (readiness).
    Unavailable,
    /// A `[[wsgi]]` app has not imported yet (readiness): which one is
    /// only logged, not told to whoever asks.
    Starting,
    /// A failure already logged where it happened (a static file that
    /// cannot be read): DRF's generic 500, without its cause.
    Internal,
    /// `REQUEST_TIMEOUT` (whole seconds) passed before the request was
    /// answered: 408, and the connection is closed (RFC 9110 §15.5.9).
    RequestTimeout(u64),
    /// The redirect listener got no `Host` naming a server to send the
    /// client to.
    MissingHost,
    /// A mount could not get an answer from the upstream or the WSGI app
    /// it serves (or the request body for it).
    Mount(MountError),
}

/// What a mount answers when it cannot get an answer from what it serves:
/// bodies that never vary, the reason being in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountError {
    /// An `[[upstream]]` that cannot be reached or broke the exchange.
    BadGateway,
    /// An `[[upstream]]` that did not connect or answer in time.
    GatewayTimeout,
    /// A request body that broke off before its end, where it must be
    /// received whole first (a `[[wsgi]]` mount).
    IncompleteBody,
    /// A `[[wsgi]]` app raised, or sent an answer that is not HTTP: 500.
    ApplicationFailed,
    /// A `[[wsgi]]` worker process died while answering: 502.
    WorkerDied,
    /// A `[[wsgi]]` app did not answer within its timeout: 504.
    ApplicationTimeout,
    /// A `[[wsgi]]` app that has no worker to answer (still starting, or
    /// failing to): 503 with `Retry-After: 1`.
    ApplicationUnavailable,
}

impl MountError {
    /// The status, `detail` and `code`.
    fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadGateway => (
                StatusCode::BAD_GATEWAY,
                "The upstream server is unreachable or sent an invalid response.",
                "bad_gateway",
            ),
            Self::GatewayTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "The upstream server did not answer in time.",
                "gateway_timeout",
            ),
            Self::IncompleteBody => (
                StatusCode::BAD_REQUEST,
                "The request body did not arrive whole.",
                "bad_request",
            ),
            Self::ApplicationFailed => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The application failed to answer.",
                "application_error",
            ),
            Self::WorkerDied => (
                StatusCode::BAD_GATEWAY,
                "The application's worker stopped while answering.",
                "bad_gateway",
            ),
            Self::ApplicationTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "The application did not answer in time.",
                "gateway_timeout",
            ),
            Self::ApplicationUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The application is not available.",
                "unavailable",
            ),
        }
    }
}

impl From<MountError> for ApiError {
    fn from(e: MountError) -> Self {
        Self::Mount(e)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(drf::error_body(message, None))).into_response()
}

fn coded(message: impl Into<String>, code: &str) -> Response {
    coded_with(StatusCode::UNAUTHORIZED, message, code)
}

fn coded_with(status: StatusCode, message: impl Into<String>, code: &str) -> Response {
    (status, Json(drf::error_body(message, Some(code)))).into_response()
}

/// DRF's `APIException` default: the generic 500 body.
fn server_error() -> Response {
    detail(StatusCode::INTERNAL_SERVER_ERROR, drf::SERVER_ERROR)
}

/// A protected endpoint's refusal: the body and status shared with
/// `portcullis-verify`.
fn rejected(rejection: &portcullis_token::Rejection) -> Response {
    let status = StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    (status, Json(rejection.body())).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Auth(e) => auth_response(&e),
            Self::Fields(errors) => {
                let mut body = Map::new();
                for (field, message) in errors {
                    body.insert(field.to_owned(), json!([message]));
                }
                (StatusCode::BAD_REQUEST, Json(Value::Object(body))).into_response()
            }
            Self::NonField(message) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"non_field_errors": [message]})),
            )
                .into_response(),
            Self::Parse(message) => detail(StatusCode::BAD_REQUEST, message),
            Self::UnsupportedMediaType(media_type) => detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Unsupported media type \"{media_type}\" in request."),
            ),
            Self::MethodNotAllowed(method) => detail(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Method \"{method}\" not allowed."),
            ),
            Self::NotAcceptable => detail(
                StatusCode::NOT_ACCEPTABLE,
                "Could not satisfy the request Accept header.",
            ),
            Self::PayloadTooLarge(limit) => detail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body is larger than the limit of {limit} bytes."),
            ),
            Self::NotFound => detail(StatusCode::NOT_FOUND, "Not found."),
            Self::PermissionDenied => rejected(&portcullis_token::Rejection::PermissionDenied),
            Self::Csrf(reason) => detail(StatusCode::FORBIDDEN, format!("CSRF Failed: {reason}")),
            Self::Unavailable => detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is unreachable.",
            ),
            Self::Starting => detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "The application is still starting.",
            ),
            Self::Internal => server_error(),
            Self::RequestTimeout(seconds) => {
                let mut response = coded_with(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "The request was not completed within {seconds} seconds (REQUEST_TIMEOUT)."
                    ),
                    "request_timeout",
                );
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            }
            Self::MissingHost => detail(
                StatusCode::BAD_REQUEST,
                "A Host header naming this server is required.",
            ),
            Self::Mount(e) => {
                let (status, message, code) = e.parts();
                let mut response = coded_with(status, message, code);
                if e == MountError::ApplicationUnavailable {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                response
            }
        }
    }
}

fn auth_response(e: &AuthError) -> Response {
    let message = e.to_string();
    match e {
        AuthError::Rejected(rejection) => rejected(rejection),
        AuthError::Token(_) => coded(message, "token_not_valid"),
        AuthError::VerifyBlacklisted => ApiError::NonField(message).into_response(),
        AuthError::NoSession => detail(StatusCode::BAD_REQUEST, message),
        AuthError::Throttled(wait) => {
            // DRF's `Throttled`: the body and `Retry-After` in seconds.
            let mut response = detail(StatusCode::TOO_MANY_REQUESTS, message);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*wait));
            response
        }
        AuthError::WrongPassword => {
            ApiError::Fields(vec![("old_password", "Wrong password.")]).into_response()
        }
        // The token endpoints' own 401s: a `detail` and no `code`.
        AuthError::NoActiveAccount
        | AuthError::NoActiveAccountForToken
        | AuthError::PasswordChangedOnRefresh => detail(StatusCode::UNAUTHORIZED, message),
        AuthError::Store(_) | AuthError::Hash(_) | AuthError::Sign(_) => {
            let error = portcullis_core::error_chain(e);
            tracing::error!(%error, request_id = %crate::request_id::current(), "request failed");
            server_error()
        }
    }
}
