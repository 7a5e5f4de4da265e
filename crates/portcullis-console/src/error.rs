//! The one place console errors become responses: HTML pages (or a
//! redirect to the login page), never a JSON body.

use askama::Template as _;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use portcullis_core::{AuthError, HasherError, StoreError};

use crate::pages::ErrorPage;

/// Why a console request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No live session (never logged in, logged out, idle too long, or the
    /// account is no longer active staff): to the login page.
    #[error("login required")]
    LoginRequired,
    /// A form without its session's CSRF token, or with another one.
    #[error("CSRF token missing or incorrect")]
    Csrf,
    /// A superuser-only action asked by plain staff; says which.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such page, account or key.
    #[error("not found")]
    NotFound,
    /// The form could not be read.
    #[error("{0}")]
    BadForm(&'static str),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A flow failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Hashing a new password failed.
    #[error(transparent)]
    Hash(#[from] HasherError),
    /// A page could not be rendered.
    #[error("cannot render a page")]
    Render(#[source] askama::Error),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Self::LoginRequired => return Redirect::to("/admin/login/").into_response(),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form was refused: its security token (CSRF) is missing or does not belong to your session. Go back, reload the page and send the form again.",
            ),
            Self::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed", why),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page, account or key.",
            ),
            Self::BadForm(why) => (StatusCode::BAD_REQUEST, "Form refused", why),
            e @ (Self::Store(_) | Self::Auth(_) | Self::Hash(_) | Self::Render(_)) => {
                tracing::error!(error = %portcullis_core::error_chain(&e), "the console failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not do this; the error is in its log. Nothing was changed unless the page says so.",
                )
            }
        };
        let page = ErrorPage {
            layout: crate::pages::Layout::anonymous(title),
            message,
        };
        match page.render() {
            Ok(body) => (status, Html(body)).into_response(),
            Err(_) => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                message,
            )
                .into_response(),
        }
    }
}
