//! DRF's wire format for errors, the one source of it in the workspace:
//! the server's `ApiError` (portcullis-http) and `portcullis-verify`,
//! which must send the same bytes, both write their bodies with
//! [`error_body`] and give a 401 its `WWW-Authenticate` with
//! [`Challenge::apply`]. It lives in this crate because `portcullis-verify`
//! depends on nothing else of portcullis; it knows HTTP only as the `http`
//! crate's types, no server.
//!
//! DRF renders an `APIException` as `{"detail": …}`, with a `code` when
//! the exception has one (simplejwt's do), and adds `WWW-Authenticate` to
//! every 401 (`APIView.get_authenticate_header`).

use http::header::{self, HeaderValue};
use serde_json::{Map, Value};

/// DRF's `APIException` default message: the body of every 500, which
/// never says what failed.
pub const SERVER_ERROR: &str = "A server error occurred.";

/// DRF's error body: `{"detail": …}`, then `"code": …` when there is one,
/// in this order.
#[must_use]
pub fn error_body(detail: impl Into<String>, code: Option<&str>) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("detail".to_owned(), Value::String(detail.into()));
    if let Some(code) = code {
        body.insert("code".to_owned(), Value::from(code));
    }
    body
}

/// The `WWW-Authenticate` value every 401 carries (simplejwt's
/// `authenticate_header`): the first of `AUTH_HEADER_TYPES`, realm "api".
/// Computed once, from the settings.
#[derive(Debug, Clone)]
pub struct Challenge(HeaderValue);

impl Challenge {
    /// The challenge for these `AUTH_HEADER_TYPES` (`Bearer` when there is
    /// none, or the first cannot be a header value).
    #[must_use]
    pub fn new<S: AsRef<str>>(header_types: &[S]) -> Self {
        Self::try_new(header_types)
            .unwrap_or_else(|_| Self(HeaderValue::from_static("Bearer realm=\"api\"")))
    }

    /// The challenge for these `AUTH_HEADER_TYPES`, refusing a first type
    /// that cannot be a header value.
    pub fn try_new<S: AsRef<str>>(header_types: &[S]) -> Result<Self, header::InvalidHeaderValue> {
        let scheme = header_types.first().map_or("Bearer", AsRef::as_ref);
        HeaderValue::try_from(format!("{scheme} realm=\"api\"")).map(Self)
    }

    /// The header value.
    #[must_use]
    pub fn value(&self) -> &HeaderValue {
        &self.0
    }

    /// Give a 401 its `WWW-Authenticate`, unless it has one already (an
    /// upstream application's own challenge is passed on as it was sent);
    /// any other status is left alone.
    pub fn apply<B>(&self, response: &mut http::Response<B>) {
        if response.status() == http::StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .entry(header::WWW_AUTHENTICATE)
                .or_insert_with(|| self.0.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_detail_then_code() {
        assert_eq!(
            serde_json::to_string(&error_body("Not found.", None)).unwrap(),
            r#"{"detail":"Not found."}"#
        );
        assert_eq!(
            serde_json::to_string(&error_body("Token is invalid", Some("token_not_valid")))
                .unwrap(),
            r#"{"detail":"Token is invalid","code":"token_not_valid"}"#
        );
    }

    #[test]
    fn only_a_401_is_challenged_and_only_once() {
        let challenge = Challenge::new(&["JWT", "Bearer"]);
        assert_eq!(challenge.value(), "JWT realm=\"api\"");
        assert_eq!(Challenge::new::<&str>(&[]).value(), "Bearer realm=\"api\"");
        assert_eq!(
            Challenge::new(&["bad\nscheme"]).value(),
            "Bearer realm=\"api\""
        );

        let mut refused = http::Response::builder().status(401).body(()).unwrap();
        challenge.apply(&mut refused);
        assert_eq!(
            refused
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .collect::<Vec<_>>(),
            ["JWT realm=\"api\""]
        );
        let mut own = http::Response::builder()
            .status(401)
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"app\"")
            .body(())
            .unwrap();
        challenge.apply(&mut own);
        assert_eq!(
            own.headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .collect::<Vec<_>>(),
            ["Basic realm=\"app\""]
        );
        let mut forbidden = http::Response::builder().status(403).body(()).unwrap();
        challenge.apply(&mut forbidden);
        assert!(forbidden.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
