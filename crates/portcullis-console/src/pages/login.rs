//! `/admin/login/` and `/admin/logout/`. The login form is protected by a
//! double-submit cookie (there is no session yet to hold a token): the
//! form's hidden field must repeat an `HttpOnly`, `SameSite=Strict`
//! cookie set with the form, which another site can neither read nor set.

use askama::Template;
use axum::extract::{FromRequest as _, FromRequestParts as _, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use portcullis_core::{AuthError, Credentials};
use serde::Deserialize;

use super::{Layout, render, see_other};
use crate::extract::{CSRF_FIELD, Fields, Posted, Staff, address, cookie};
use crate::session::{csrf_matches, random_token};
use crate::{ConsoleError, ConsoleState};

/// Django admin's words, for a wrong password, an unknown user, an
/// inactive account and a non-staff account alike (no account enumeration).
const REFUSED: &str = "Please enter the correct username and password for a staff account. Note that both fields may be case-sensitive.";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    username: String,
    error: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    logged_out: Option<String>,
}

fn login_page(
    state: &ConsoleState,
    status: StatusCode,
    username: String,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let token = random_token();
    let mut layout = Layout::anonymous("Log in");
    layout.csrf.clone_from(&token);
    let mut response = render(
        status,
        &LoginPage {
            layout,
            username,
            error,
            notice,
        },
    );
    if let Ok(value) = state.set_cookie(&state.inner.login_cookie, &token).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /admin/login/`; logged-in staff go straight to the users.
pub(crate) async fn form(
    State(state): State<ConsoleState>,
    Query(query): Query<LoginQuery>,
    request: Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    if Staff::from_request_parts(&mut parts, &state).await.is_ok() {
        return see_other("/admin/users/");
    }
    let notice = query.logged_out.map(|_| "You are logged out.");
    login_page(&state, StatusCode::OK, String::new(), None, notice)
}

/// `POST /admin/login/`: the `/api/token/` credential check and
/// throttling; only active staff get a session.
pub(crate) async fn submit(State(state): State<ConsoleState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let expected = cookie(&parts.headers, &state.inner.login_cookie).map(str::to_owned);
    let client = address(&parts, &state);
    let fields = match Fields::from_request(Request::from_parts(parts, body), &state).await {
        Ok(fields) => fields,
        Err(e) => return e.into_response(),
    };
    if !csrf_matches(
        expected.as_deref().unwrap_or(""),
        Some(fields.get(CSRF_FIELD)),
    ) {
        return ConsoleError::Csrf.into_response();
    }
    // DRF's CharField trims, as `/api/token/` does.
    let username = fields.get("username").trim().to_owned();
    let credentials = Credentials {
        username: username.clone(),
        password: fields.get("password").trim().to_owned().into(),
        client: client.as_deref().and_then(|a| a.parse().ok()),
    };
    match state.auth().check_login(credentials).await {
        Ok(user) if user.is_staff => {
            let cookie = state.inner.sessions.start(user.id);
            tracing::info!(user_id = user.id, "staff logged in to the console");
            let mut response = see_other("/admin/users/");
            let headers = response.headers_mut();
            for value in [
                state.set_cookie(&state.inner.cookie, &cookie),
                state.clear_cookie(&state.inner.login_cookie),
            ] {
                if let Ok(value) = value.parse() {
                    headers.append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Ok(_) | Err(AuthError::NoActiveAccount) => login_page(
            &state,
            StatusCode::OK,
            username,
            Some(REFUSED.to_owned()),
            None,
        ),
        Err(AuthError::Throttled(seconds)) => login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            username,
            Some(format!(
                "Too many failed logins. Try again in {seconds} second{}.",
                if seconds == 1 { "" } else { "s" }
            )),
            None,
        ),
        Err(e) => ConsoleError::from(e).into_response(),
    }
}

/// `POST /admin/logout/`.
pub(crate) async fn logout(State(state): State<ConsoleState>, posted: Posted) -> Response {
    state.inner.sessions.end(&posted.staff.session.key);
    let mut response = see_other("/admin/login/?logged_out=1");
    if let Ok(value) = state.clear_cookie(&state.inner.cookie).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
