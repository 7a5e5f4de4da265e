//! The pages, one module per area. A GET renders a page; a POST that
//! succeeds redirects (303) to a page that shows its flash message; a POST
//! that is refused renders the form again with what was typed and the
//! error next to its field.

pub(crate) mod audit;
pub(crate) mod keys;
pub(crate) mod login;
pub(crate) mod users;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse as _, Redirect, Response};

use crate::ConsoleError;
use crate::extract::Staff;
use crate::session::Flash;

/// The frame of every page: title, navigation, flash message.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) title: String,
    /// The logged-in staff member; `None` on the login and error pages.
    pub(crate) username: Option<String>,
    pub(crate) is_superuser: bool,
    /// The session's CSRF token, for the forms of the page.
    pub(crate) csrf: String,
    pub(crate) flash: Option<Flash>,
}

impl Layout {
    /// A page for nobody in particular.
    pub(crate) fn anonymous(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            username: None,
            is_superuser: false,
            csrf: String::new(),
            flash: None,
        }
    }
}

/// An error page.
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub(crate) layout: Layout,
    pub(crate) message: &'static str,
}

/// A rendered page.
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => ConsoleError::Render(e).into_response(),
    }
}

/// After a POST: the page to show next (303, so a reload does not post again).
pub(crate) fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

/// `GET /admin/`: the user list.
pub(crate) async fn home(_: Staff) -> Response {
    see_other("/admin/users/")
}

/// Unix seconds as `2026-12-02 15:40:00 UTC`.
#[must_use]
pub fn time(at: i64) -> String {
    let Ok(secs) = u64::try_from(at) else {
        return at.to_string();
    };
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let text = humantime::format_rfc3339_seconds(when).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replacen('T', " ", 1))
}

/// An optional time, or a dash.
pub(crate) fn maybe_time(at: Option<i64>) -> String {
    at.map_or_else(|| "—".to_owned(), time)
}

/// The path segment for a user id; anything else names no page.
pub(crate) fn user_id(raw: &str) -> Result<i64, ConsoleError> {
    raw.parse().map_err(|_| ConsoleError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_796_300_000), "2026-12-03 12:13:20 UTC");
        assert_eq!(maybe_time(None), "—");
    }
}
