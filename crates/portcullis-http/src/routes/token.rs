//! simplejwt's token views: `POST` only, public, `Allow: POST, OPTIONS`.
//! Each path answers with and without its trailing slash.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::handler::Handler;
use axum::routing::post;
use portcullis_core::Credentials;
use serde_json::{Value, json};

use super::{Routes, field, metadata, method_not_allowed};
use crate::cookie::{self, CookieRefresh, SetCookies};
use crate::openapi as doc;
use crate::{ApiError, AppState, ClientAddr, ClientInfo, DrfData};

type JsonResult = Result<Json<Value>, ApiError>;
/// A body plus the cookies of cookie mode (none when it is off).
type CookieResult = Result<(SetCookies, Json<Value>), ApiError>;

pub(crate) fn router() -> Routes {
    view_at("/api/token/", obtain_pair, obtain_pair_options())
        .merge(view_at("/api/token/refresh/", refresh, refresh_options()))
        .merge(view_at("/api/token/verify/", verify, verify_options()))
        .merge(view_at(
            "/api/token/blacklist/",
            blacklist,
            blacklist_options(),
        ))
        .merge(view_at(
            "/api/token/sliding/",
            obtain_sliding,
            obtain_sliding_options(),
        ))
        .merge(view_at(
            "/api/token/sliding/refresh/",
            refresh_sliding,
            refresh_sliding_options(),
        ))
}

/// A token view: `POST` to `handler`, `OPTIONS` answered with `options`.
fn view_at<H, T>(path: &'static str, handler: H, options: Value) -> Routes
where
    H: Handler<T, AppState>,
    H::Future: Unpin,
    T: 'static,
{
    super::view_at(path, "POST, OPTIONS", |view| {
        post(view.wrap(handler))
            .options(view.wrap(move || std::future::ready(Json(options))))
            .fallback(view.wrap(method_not_allowed))
    })
}

fn credentials(data: &DrfData, client: Option<IpAddr>) -> Result<Credentials, ApiError> {
    let [username, password] = data.strings(["username", "password"])?;
    Ok(Credentials {
        username,
        password: password.into(),
        client,
    })
}

#[utoipa::path(
    post,
    path = "/api/token/",
    tag = "token",
    operation_id = "token_create",
    summary = "Obtain a token pair",
    description = "Takes a set of user credentials and returns an access and refresh JSON web token pair to prove the authentication of those credentials. In cookie mode (`REFRESH_COOKIE`) the refresh token is also set as an `HttpOnly` cookie, with a `__Host-csrf` cookie.",
    request_body = doc::TokenObtainRequest,
    responses(
        (status = 200, description = "A token pair", body = doc::TokenPair),
        (status = 401, response = doc::Unauthorized),
        (status = 429, response = doc::Throttled),
    ),
)]
async fn obtain_pair(
    State(state): State<AppState>,
    ClientInfo { address, client }: ClientInfo,
    data: DrfData,
) -> CookieResult {
    let pair = state
        .auth()
        .obtain_pair(credentials(&data, address)?, &client)
        .await?;
    Ok((
        cookie::set(&state, Some(&pair.refresh), true),
        Json(json!({"refresh": pair.refresh, "access": pair.access})),
    ))
}

/// The body's `refresh`, or in cookie mode the cookie's (CSRF-checked).
#[utoipa::path(
    post,
    path = "/api/token/refresh/",
    tag = "token",
    operation_id = "token_refresh_create",
    summary = "Refresh an access token",
    description = "Takes a refresh type JSON web token and returns an access type JSON web token if the refresh token is valid (with `ROTATE_REFRESH_TOKENS`, also a new refresh token).",
    request_body = doc::RefreshRequest,
    responses(
        (status = 200, description = "A new access token", body = doc::RefreshResponse),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
    ),
)]
async fn refresh(
    State(state): State<AppState>,
    ClientInfo { client, .. }: ClientInfo,
    cookies: CookieRefresh,
    data: DrfData,
) -> CookieResult {
    let new_csrf = !cookies.has_csrf_cookie();
    let refresh = cookies.required(&data)?;
    let (access, rotated) = state.auth().refresh(&refresh, &client).await?;
    Ok((
        cookie::set(&state, rotated.as_deref(), new_csrf),
        Json(match rotated {
            Some(refresh) => json!({"access": access, "refresh": refresh}),
            None => json!({"access": access}),
        }),
    ))
}

#[utoipa::path(
    post,
    path = "/api/token/verify/",
    tag = "token",
    operation_id = "token_verify_create",
    summary = "Verify a token",
    description = "Takes a token and indicates if it is valid. This view provides no information about a token's fitness for a particular use.",
    request_body = doc::TokenRequest,
    responses(
        (status = 200, description = "The token is valid", body = doc::Empty),
        (status = 401, response = doc::Unauthorized),
    ),
)]
async fn verify(State(state): State<AppState>, data: DrfData) -> JsonResult {
    let [token] = data.strings(["token"])?;
    state.auth().verify(&token).await?;
    Ok(Json(json!({})))
}

#[utoipa::path(
    post,
    path = "/api/token/blacklist/",
    tag = "token",
    operation_id = "token_blacklist_create",
    summary = "Blacklist a refresh token",
    description = "Takes a refresh token and blacklists it: it can no longer be used.",
    request_body = doc::RefreshRequest,
    responses(
        (status = 200, description = "Blacklisted", body = doc::Empty),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
    ),
)]
async fn blacklist(
    State(state): State<AppState>,
    cookies: CookieRefresh,
    data: DrfData,
) -> CookieResult {
    let refresh = cookies.required(&data)?;
    state.auth().blacklist(&refresh).await?;
    Ok((cookie::clear(&state), Json(json!({}))))
}

#[utoipa::path(
    post,
    path = "/api/token/sliding/",
    tag = "token",
    operation_id = "token_sliding_create",
    summary = "Obtain a sliding token",
    description = "Takes a set of user credentials and returns a sliding JSON web token to prove the authentication of those credentials.",
    request_body = doc::TokenObtainRequest,
    responses(
        (status = 200, description = "A sliding token", body = doc::SlidingToken),
        (status = 401, response = doc::Unauthorized),
        (status = 429, response = doc::Throttled),
    ),
)]
async fn obtain_sliding(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    data: DrfData,
) -> JsonResult {
    let token = state
        .auth()
        .obtain_sliding(credentials(&data, client)?)
        .await?;
    Ok(Json(json!({"token": token})))
}

#[utoipa::path(
    post,
    path = "/api/token/sliding/refresh/",
    tag = "token",
    operation_id = "token_sliding_refresh_create",
    summary = "Refresh a sliding token",
    description = "Takes a sliding JSON web token and returns a new, refreshed version if the token's refresh period has not expired.",
    request_body = doc::TokenRequest,
    responses(
        (status = 200, description = "The refreshed sliding token", body = doc::SlidingToken),
        (status = 401, response = doc::Unauthorized),
    ),
)]
async fn refresh_sliding(State(state): State<AppState>, data: DrfData) -> JsonResult {
    let [token] = data.strings(["token"])?;
    let token = state.auth().refresh_sliding(&token).await?;
    Ok(Json(json!({"token": token})))
}

// The OPTIONS bodies are simplejwt's view docstrings and serializer
// fields, as DRF's SimpleMetadata renders them.

fn credential_fields() -> Value {
    json!({"username": field("Username", false), "password": field("Password", false)})
}

fn obtain_pair_options() -> Value {
    metadata(
        "Token Obtain Pair",
        "Takes a set of user credentials and returns an access and refresh JSON web\ntoken pair to prove the authentication of those credentials.",
        Some(credential_fields()),
    )
}

fn obtain_sliding_options() -> Value {
    metadata(
        "Token Obtain Sliding",
        "Takes a set of user credentials and returns a sliding JSON web token to\nprove the authentication of those credentials.",
        Some(credential_fields()),
    )
}

fn refresh_options() -> Value {
    metadata(
        "Token Refresh",
        "Takes a refresh type JSON web token and returns an access type JSON web\ntoken if the refresh token is valid.",
        Some(json!({"refresh": field("Refresh", false), "access": field("Access", true)})),
    )
}

fn verify_options() -> Value {
    metadata(
        "Token Verify",
        "Takes a token and indicates if it is valid.  This view provides no\ninformation about a token's fitness for a particular use.",
        Some(json!({"token": field("Token", false)})),
    )
}

fn blacklist_options() -> Value {
    metadata(
        "Token Blacklist",
        "Takes a token and blacklists it. Must be used with the\n`rest_framework_simplejwt.token_blacklist` app installed.",
        Some(json!({"refresh": field("Refresh", false)})),
    )
}

fn refresh_sliding_options() -> Value {
    metadata(
        "Token Refresh Sliding",
        "Takes a sliding JSON web token and returns a new, refreshed version if the\ntoken's refresh period has not expired.",
        Some(json!({"token": field("Token", false)})),
    )
}
