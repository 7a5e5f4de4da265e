//! Who is asking: the client address and user agent a session records at
//! login and refresh (`GET /api/sessions/` shows them).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use portcullis_core::Client;

use crate::{ApiError, AppState};

/// The client of a request, as a [`portcullis_core::Client`].
#[derive(Debug, Clone)]
pub struct ClientInfo(pub Client);

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        Ok(Self(Client::new(
            client_address(parts).map(|ip| ip.to_string()),
            user_agent.as_deref(),
        )))
    }
}

/// The client address of a request: the TCP peer, as the server's
/// `ConnectInfo` recorded it (`None` for a router served without it, as
/// in-process tests may do). This is the one place that decides it, so a
/// trusted-proxy rule (`X-Forwarded-For` from `TRUSTED_PROXIES`) can replace
/// it for every user at once. An IPv4 peer on a dual-stack socket is shown
/// as IPv4.
#[must_use]
pub fn client_address(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
}
