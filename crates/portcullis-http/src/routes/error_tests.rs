//! Every error response, pinned: each [`ApiError`] (and each refusal an
//! [`AuthError`] carries) answered by a handler behind the handler wrapper
//! [`Finish`], as the API's routes are, with its exact status, headers and
//! body bytes. The server's middleware and mounts answer with the same
//! [`ApiError`]s, so this is also what they send; `tests/api` asserts the
//! same bodies from the real binary where a request can provoke them.

use axum::extract::Path;
use axum::routing::get;
use portcullis_core::{AuthError, HasherError, StoreError, TokenMessage};
use portcullis_token::{Rejection, TokenError, TokenType};

use super::Finish;
use super::finish_tests::{answer, request, state};
use crate::{ApiError, MountError};

/// An error, the status it answers, its exact body, and its headers other
/// than `content-type: application/json` and `content-length`.
type Expected = (
    ApiError,
    u16,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

/// The error of case `n` and what it must answer.
#[allow(clippy::too_many_lines)] // one table
fn case(n: usize) -> Option<Expected> {
    let challenge = vec![("www-authenticate", r#"Bearer realm="api""#)];
    let none = Vec::new;
    let token = |e: TokenError| ApiError::from(AuthError::Token(e));
    let rejected = |r: Rejection| ApiError::from(AuthError::Rejected(r));
    let auth = |e: AuthError| ApiError::from(e);
    Some(match n {
        0 => (
            token(TokenError::Invalid),
            401,
            r#"{"detail":"Token is invalid","code":"token_not_valid"}"#,
            challenge,
        ),
        1 => (
            token(TokenError::Expired),
            401,
            r#"{"detail":"Token is expired","code":"token_not_valid"}"#,
            challenge,
        ),
        2 => (
            token(TokenError::Blacklisted),
            401,
            r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#,
            challenge,
        ),
        3 => (
            token(TokenError::NoId),
            401,
            r#"{"detail":"Token has no id","code":"token_not_valid"}"#,
            challenge,
        ),
        4 => (
            token(TokenError::NoType),
            401,
            r#"{"detail":"Token has no type","code":"token_not_valid"}"#,
            challenge,
        ),
        5 => (
            token(TokenError::WrongType),
            401,
            r#"{"detail":"Token has wrong type","code":"token_not_valid"}"#,
            challenge,
        ),
        6 => (
            token(TokenError::MissingClaim("exp".to_owned())),
            401,
            r#"{"detail":"Token has no 'exp' claim","code":"token_not_valid"}"#,
            challenge,
        ),
        7 => (
            token(TokenError::ClaimExpired("refresh_exp".to_owned())),
            401,
            r#"{"detail":"Token 'refresh_exp' claim has expired","code":"token_not_valid"}"#,
            challenge,
        ),
        8 => (
            rejected(Rejection::NotAuthenticated),
            401,
            r#"{"detail":"Authentication credentials were not provided."}"#,
            challenge,
        ),
        9 => (
            rejected(Rejection::BadAuthorizationHeader),
            401,
            r#"{"detail":"Authorization header must contain two space-delimited values","code":"bad_authorization_header"}"#,
            challenge,
        ),
        10 => (
            rejected(Rejection::NoValidTokenType(vec![
                TokenMessage {
                    token_type: TokenType::Access,
                    error: TokenError::Blacklisted,
                },
                TokenMessage {
                    token_type: TokenType::Sliding,
                    error: TokenError::Expired,
                },
            ])),
            401,
            r#"{"detail":"Given token not valid for any token type","code":"token_not_valid","messages":[{"token_class":"AccessToken","token_type":"access","message":"Token is blacklisted"},{"token_class":"SlidingToken","token_type":"sliding","message":"Token is expired"}]}"#,
            challenge,
        ),
        11 => (
            rejected(Rejection::NoUserIdentification),
            401,
            r#"{"detail":"Token contained no recognizable user identification","code":"token_not_valid"}"#,
            challenge,
        ),
        12 => (
            rejected(Rejection::UserNotFound),
            401,
            r#"{"detail":"User not found","code":"user_not_found"}"#,
            challenge,
        ),
        13 => (
            rejected(Rejection::UserInactive),
            401,
            r#"{"detail":"User is inactive","code":"user_inactive"}"#,
            challenge,
        ),
        14 => (
            rejected(Rejection::PasswordChanged),
            401,
            r#"{"detail":"The user's password has been changed.","code":"password_changed"}"#,
            challenge,
        ),
        15 => (
            rejected(Rejection::PermissionDenied),
            403,
            r#"{"detail":"You do not have permission to perform this action."}"#,
            none(),
        ),
        16 => (
            auth(AuthError::NoActiveAccount),
            401,
            r#"{"detail":"No active account found with the given credentials"}"#,
            challenge,
        ),
        17 => (
            auth(AuthError::NoActiveAccountForToken),
            401,
            r#"{"detail":"No active account found for the given token."}"#,
            challenge,
        ),
        18 => (
            auth(AuthError::PasswordChangedOnRefresh),
            401,
            r#"{"detail":"The user's password has been changed."}"#,
            challenge,
        ),
        19 => (
            auth(AuthError::VerifyBlacklisted),
            400,
            r#"{"non_field_errors":["Token is blacklisted"]}"#,
            none(),
        ),
        20 => (
            auth(AuthError::NoSession),
            400,
            r#"{"detail":"This token belongs to no session: send the refresh token to end."}"#,
            none(),
        ),
        21 => (
            auth(AuthError::WrongPassword),
            400,
            r#"{"old_password":["Wrong password."]}"#,
            none(),
        ),
        22 => (
            auth(AuthError::Throttled(900)),
            429,
            r#"{"detail":"Request was throttled. Expected available in 900 seconds."}"#,
            vec![("retry-after", "900")],
        ),
        23 => (
            auth(AuthError::Throttled(1)),
            429,
            r#"{"detail":"Request was throttled. Expected available in 1 second."}"#,
            vec![("retry-after", "1")],
        ),
        24 => (
            auth(StoreError::unusable("the database is gone").into()),
            500,
            r#"{"detail":"A server error occurred."}"#,
            none(),
        ),
        25 => (
            auth(HasherError::Hash("no memory".into()).into()),
            500,
            r#"{"detail":"A server error occurred."}"#,
            none(),
        ),
        26 => (
            ApiError::Fields(vec![
                ("username", "This field is required."),
                ("password", "This field may not be blank."),
            ]),
            400,
            r#"{"username":["This field is required."],"password":["This field may not be blank."]}"#,
            none(),
        ),
        27 => (
            ApiError::NonField("No active account".to_owned()),
            400,
            r#"{"non_field_errors":["No active account"]}"#,
            none(),
        ),
        28 => (
            ApiError::Parse(
                "JSON parse error - Expecting value: line 1 column 1 (char 0)".to_owned(),
            ),
            400,
            r#"{"detail":"JSON parse error - Expecting value: line 1 column 1 (char 0)"}"#,
            none(),
        ),
        29 => (
            ApiError::UnsupportedMediaType("text/plain".to_owned()),
            415,
            r#"{"detail":"Unsupported media type \"text/plain\" in request."}"#,
            none(),
        ),
        30 => (
            ApiError::MethodNotAllowed("PUT".to_owned()),
            405,
            r#"{"detail":"Method \"PUT\" not allowed."}"#,
            none(),
        ),
        31 => (
            ApiError::NotAcceptable,
            406,
            r#"{"detail":"Could not satisfy the request Accept header."}"#,
            none(),
        ),
        32 => (
            ApiError::PayloadTooLarge(1_048_576),
            413,
            r#"{"detail":"Request body is larger than the limit of 1048576 bytes."}"#,
            none(),
        ),
        33 => (
            ApiError::NotFound,
            404,
            r#"{"detail":"Not found."}"#,
            none(),
        ),
        34 => (
            ApiError::PermissionDenied,
            403,
            r#"{"detail":"You do not have permission to perform this action."}"#,
            none(),
        ),
        35 => (
            ApiError::Csrf("CSRF token missing."),
            403,
            r#"{"detail":"CSRF Failed: CSRF token missing."}"#,
            none(),
        ),
        36 => (
            ApiError::Unavailable,
            503,
            r#"{"detail":"The database is unreachable."}"#,
            none(),
        ),
        37 => (
            ApiError::Internal,
            500,
            r#"{"detail":"A server error occurred."}"#,
            none(),
        ),
        38 => (
            ApiError::RequestTimeout(30),
            408,
            r#"{"detail":"The request was not completed within 30 seconds (REQUEST_TIMEOUT).","code":"request_timeout"}"#,
            vec![("connection", "close")],
        ),
        39 => (
            ApiError::MissingHost,
            400,
            r#"{"detail":"A Host header naming this server is required."}"#,
            none(),
        ),
        40 => (
            ApiError::Mount(MountError::BadGateway),
            502,
            r#"{"detail":"The upstream server is unreachable or sent an invalid response.","code":"bad_gateway"}"#,
            none(),
        ),
        41 => (
            ApiError::Mount(MountError::GatewayTimeout),
            504,
            r#"{"detail":"The upstream server did not answer in time.","code":"gateway_timeout"}"#,
            none(),
        ),
        42 => (
            ApiError::Mount(MountError::IncompleteBody),
            400,
            r#"{"detail":"The request body did not arrive whole.","code":"bad_request"}"#,
            none(),
        ),
        43 => (
            ApiError::Mount(MountError::ApplicationFailed),
            500,
            r#"{"detail":"The application failed to answer.","code":"application_error"}"#,
            none(),
        ),
        44 => (
            ApiError::Mount(MountError::WorkerDied),
            502,
            r#"{"detail":"The application's worker stopped while answering.","code":"bad_gateway"}"#,
            none(),
        ),
        45 => (
            ApiError::Mount(MountError::ApplicationTimeout),
            504,
            r#"{"detail":"The application did not answer in time.","code":"gateway_timeout"}"#,
            none(),
        ),
        46 => (
            ApiError::Mount(MountError::ApplicationUnavailable),
            503,
            r#"{"detail":"The application is not available.","code":"unavailable"}"#,
            vec![("retry-after", "1")],
        ),
        47 => (
            ApiError::Starting,
            503,
            r#"{"detail":"The application is still starting."}"#,
            none(),
        ),
        _ => return None,
    })
}

async fn fail(Path(n): Path<usize>) -> Result<(), ApiError> {
    Err(case(n).map_or(ApiError::NotFound, |(error, ..)| error))
}

#[tokio::test]
async fn every_error_answers_its_exact_status_headers_and_body() {
    let (state, _dir) = state().await;
    let router = axum::Router::new()
        .route("/fail/{n}", get(Finish::plain().wrap(fail)))
        .with_state(state);
    let mut n = 0;
    while let Some((_, status, body, extra)) = case(n) {
        let (got_status, headers, got_body) =
            answer(&router, request("GET", &format!("/fail/{n}"), &[], "")).await;
        let mut expected: Vec<(String, String)> = extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .chain([
                ("content-length".to_owned(), body.len().to_string()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ])
            .collect();
        expected.sort();
        assert_eq!(
            (got_status, headers, String::from_utf8(got_body).unwrap()),
            (status, expected, body.to_owned()),
            "case {n}"
        );
        n += 1;
    }
    assert_eq!(n, 48);
}
