//! The identity headers that tell an application behind portcullis who is
//! calling: set by the reverse proxy on forwarded requests and by
//! `GET /auth/verify` for nginx `auth_request`, Traefik `forwardAuth` and
//! Caddy `forward_auth`, which copy them onto the request they forward.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_core::User;

/// The three header names (`IDENTITY_HEADER_USER_ID`,
/// `IDENTITY_HEADER_USERNAME`, `IDENTITY_HEADER_IS_STAFF`).
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// The user's primary key, in decimal.
    pub user_id: HeaderName,
    /// The username (a header value; a name that is not one is left out).
    pub username: HeaderName,
    /// `true` or `false`.
    pub is_staff: HeaderName,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            user_id: HeaderName::from_static("x-portcullis-user-id"),
            username: HeaderName::from_static("x-portcullis-username"),
            is_staff: HeaderName::from_static("x-portcullis-is-staff"),
        }
    }
}

impl IdentityHeaders {
    /// Remove every copy of the identity headers: a client must never be
    /// able to claim an identity by sending them itself.
    pub fn remove(&self, headers: &mut HeaderMap) {
        // One pass over the few fields a request carries instead of a
        // lookup (a hash of the name) per identity header: usually none
        // of them is there.
        let names = [&self.user_id, &self.username, &self.is_staff];
        if !headers.keys().any(|key| names.contains(&key)) {
            return;
        }
        for name in names {
            headers.remove(name);
        }
    }

    /// Set the headers for `user`, replacing any copies.
    pub fn insert(&self, headers: &mut HeaderMap, user: &User) {
        headers.insert(&self.user_id, HeaderValue::from(user.id));
        // Django's `\w.@+-` usernames are valid values (non-ASCII letters go
        // as their UTF-8 bytes); one with a control character (imported
        // data) is left out, not mangled.
        match HeaderValue::from_str(&user.username) {
            Ok(value) => drop(headers.insert(&self.username, value)),
            Err(_) => drop(headers.remove(&self.username)),
        }
        headers.insert(
            &self.is_staff,
            HeaderValue::from_static(if user.is_staff { "true" } else { "false" }),
        );
    }
}
