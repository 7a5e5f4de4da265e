//! The one place errors become responses, with the bodies DRF and
//! simplejwt send. Internal failures are logged here and shown as DRF's
//! generic 500 body, never with their cause.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::AuthError;
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
    /// A failure already logged where it happened (a static file that
    /// cannot be read): DRF's generic 500, without its cause.
    Internal,
    /// `REQUEST_TIMEOUT` (whole seconds) passed before the request was
    /// answered: 408, and the connection is closed (RFC 9110 §15.5.9).
    RequestTimeout(u64),
    /// The redirect listener got no `Host` naming a server to send the
    /// client to.
    MissingHost,
    /// An `[[upstream]]` that cannot be reached or broke the exchange.
    BadGateway,
    /// An `[[upstream]]` that did not connect or answer in time.
    GatewayTimeout,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"detail": message.into()}))).into_response()
}

fn coded(message: impl Into<String>, code: &str) -> Response {
    coded_with(StatusCode::UNAUTHORIZED, message, code)
}

fn coded_with(status: StatusCode, message: impl Into<String>, code: &str) -> Response {
    (
        status,
        Json(json!({"detail": message.into(), "code": code})),
    )
        .into_response()
}

/// DRF's `APIException` default: the generic 500 body.
fn server_error() -> Response {
    detail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "A server error occurred.",
    )
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
            Self::PermissionDenied => {
                let rejection = portcullis_token::Rejection::PermissionDenied;
                (StatusCode::FORBIDDEN, Json(rejection.body())).into_response()
            }
            Self::Csrf(reason) => detail(StatusCode::FORBIDDEN, format!("CSRF Failed: {reason}")),
            Self::Unavailable => detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is unreachable.",
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
            Self::BadGateway => coded_with(
                StatusCode::BAD_GATEWAY,
                "The upstream server is unreachable or sent an invalid response.",
                "bad_gateway",
            ),
            Self::GatewayTimeout => coded_with(
                StatusCode::GATEWAY_TIMEOUT,
                "The upstream server did not answer in time.",
                "gateway_timeout",
            ),
        }
    }
}

fn auth_response(e: &AuthError) -> Response {
    // A protected endpoint's refusal: the body and status shared with
    // `portcullis-verify` (one implementation, in portcullis-token).
    if let Some(rejection) = e.rejection() {
        let status = StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        return (status, Json(rejection.body())).into_response();
    }
    let message = e.to_string();
    match e {
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
        AuthError::Store(_) | AuthError::Internal(_) => {
            tracing::error!(error = %e, request_id = %crate::request_id::current(), "request failed");
            server_error()
        }
        // The rest are protected-endpoint refusals, answered above.
        _ => detail(StatusCode::UNAUTHORIZED, message),
    }
}
