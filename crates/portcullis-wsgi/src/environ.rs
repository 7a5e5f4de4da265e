//! The CGI part of a WSGI `environ`, built on the server from the HTTP
//! request, as PEP 3333 and gunicorn (`gunicorn/http/wsgi.py`) build it.
//!
//! Built here rather than in the worker so the worker's only job is to turn
//! each pair into a Python string: the rules (what `SCRIPT_NAME` is, how
//! `PATH_INFO` is decoded, who `REMOTE_ADDR` is, which headers become
//! `HTTP_*`) are Rust, tested without an interpreter.
//!
//! Nothing of the server's own process environment goes in (granian copies
//! `os.environ` into every request, so a `REMOTE_USER` in the server's
//! environment authenticated everyone). `REMOTE_USER` comes only from
//! [`Origin::remote_user`], a verified token's username.

use std::net::IpAddr;

use http::header::{self, HeaderMap};
use http::request::Parts;
use http::{Method, Version};

/// What the server knows of a request beyond its HTTP message.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The client (`TRUSTED_PROXIES` already applied): `REMOTE_ADDR`.
    pub remote_addr: Option<IpAddr>,
    /// The TCP peer's port, when the peer is the client (`REMOTE_PORT`).
    pub remote_port: Option<u16>,
    /// `http` or `https` (TLS, or a trusted proxy's `X-Forwarded-Proto`).
    pub scheme: &'a str,
    /// The listener's port, for `SERVER_PORT` when the request names none.
    pub server_port: u16,
    /// The username of a verified access token: `REMOTE_USER`.
    pub remote_user: Option<&'a str>,
}

/// The CGI variables of one request, names and byte values.
#[derive(Debug, Default)]
pub struct Environ {
    /// `(name, value)`; a value is bytes the worker decodes as latin-1.
    pub vars: Vec<(Name, Vec<u8>)>,
}

/// A variable's name: a fixed CGI name, or an `HTTP_*` name made from a
/// header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// `REQUEST_METHOD` and the rest.
    Fixed(&'static str),
    /// `HTTP_ACCEPT_LANGUAGE` and the like.
    Header(String),
}

impl Name {
    /// The name's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Fixed(name) => name.as_bytes(),
            Self::Header(name) => name.as_bytes(),
        }
    }
}

impl Environ {
    /// The environ of `parts` under the mount `script_name` (the mount
    /// prefix without its trailing `/`: `""` for `/`), with `content_length`
    /// the length of the body the front received (a chunked body is
    /// de-chunked, so Django, which reads only `CONTENT_LENGTH` bytes, sees
    /// it all).
    ///
    /// Returns `None` when the path is not under `script_name` (the caller
    /// routed it wrongly).
    #[must_use]
    pub fn build(
        parts: &Parts,
        script_name: &str,
        origin: &Origin<'_>,
        content_length: u64,
    ) -> Option<Self> {
        let path = parts.uri.path();
        let rest = path.strip_prefix(script_name)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        let mut vars = Vec::with_capacity(16 + parts.headers.len());
        let mut put = |name: &'static str, value: Vec<u8>| vars.push((Name::Fixed(name), value));
        put("REQUEST_METHOD", method(&parts.method).into());
        put("SCRIPT_NAME", script_name.as_bytes().to_vec());
        // PEP 3333: PATH_INFO is the decoded path, its bytes as latin-1.
        put(
            "PATH_INFO",
            percent_encoding::percent_decode_str(rest).collect(),
        );
        put(
            "QUERY_STRING",
            parts.uri.query().unwrap_or_default().as_bytes().to_vec(),
        );
        put("SERVER_PROTOCOL", protocol(parts.version).into());
        let (name, port) = server_name(parts, origin);
        put("SERVER_NAME", name);
        put("SERVER_PORT", port);
        if let Some(addr) = origin.remote_addr {
            put("REMOTE_ADDR", addr.to_string().into_bytes());
        }
        if let Some(port) = origin.remote_port {
            put("REMOTE_PORT", port.to_string().into_bytes());
        }
        if let Some(user) = origin.remote_user {
            put("REMOTE_USER", user.as_bytes().to_vec());
        }
        if let Some(value) = parts.headers.get(header::CONTENT_TYPE) {
            put("CONTENT_TYPE", value.as_bytes().to_vec());
        }
        if content_length > 0 || parts.headers.contains_key(header::CONTENT_LENGTH) {
            put("CONTENT_LENGTH", content_length.to_string().into_bytes());
        }
        put("wsgi.url_scheme", origin.scheme.as_bytes().to_vec());
        headers(&parts.headers, parts.uri.authority(), &mut vars);
        Some(Self { vars })
    }
}

fn method(method: &Method) -> &[u8] {
    method.as_str().as_bytes()
}

fn protocol(version: Version) -> &'static [u8] {
    match version {
        Version::HTTP_09 => b"HTTP/0.9",
        Version::HTTP_10 => b"HTTP/1.0",
        Version::HTTP_2 => b"HTTP/2",
        Version::HTTP_3 => b"HTTP/3",
        _ => b"HTTP/1.1",
    }
}

/// `SERVER_NAME` and `SERVER_PORT` from the `Host` header (or HTTP/2's
/// `:authority`), as gunicorn takes them; the port defaults to the scheme's.
fn server_name(parts: &Parts, origin: &Origin<'_>) -> (Vec<u8>, Vec<u8>) {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str));
    let default_port = if origin.scheme == "https" { 443 } else { 80 };
    match host.and_then(|h| h.parse::<http::uri::Authority>().ok()) {
        Some(authority) => {
            let port = authority.port_u16().unwrap_or(default_port);
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            (host.as_bytes().to_vec(), port.to_string().into_bytes())
        }
        None => (
            b"localhost".to_vec(),
            origin.server_port.to_string().into_bytes(),
        ),
    }
}

/// `HTTP_*` for every header but `Content-Type`/`Content-Length` (PEP 3333
/// has no `HTTP_CONTENT_*`). Repeated headers are joined with `,` (RFC 9110
/// §5.3), cookies with `; ` (RFC 9113 §8.2.3: HTTP/2 splits them). A name
/// with `_` in it is dropped, as nginx and gunicorn do: `X-Remote_User`
/// would otherwise collide with `X-Remote-User` (and `Remote_User` with
/// the `HTTP_REMOTE_USER` of `Remote-User`).
fn headers(
    headers: &HeaderMap,
    authority: Option<&http::uri::Authority>,
    vars: &mut Vec<(Name, Vec<u8>)>,
) {
    for name in headers.keys() {
        if name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH {
            continue;
        }
        let name_str = name.as_str();
        if name_str.contains('_') {
            continue;
        }
        let mut key = String::with_capacity(5 + name_str.len());
        key.push_str("HTTP_");
        key.extend(name_str.chars().map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        }));
        let separator: &[u8] = if name == header::COOKIE { b"; " } else { b"," };
        let mut value = Vec::new();
        for (i, v) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(separator);
            }
            value.extend_from_slice(v.as_bytes());
        }
        vars.push((Name::Header(key), value));
    }
    if !headers.contains_key(header::HOST)
        && let Some(authority) = authority
    {
        vars.push((
            Name::Header("HTTP_HOST".to_owned()),
            authority.as_str().as_bytes().to_vec(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(env: &'a Environ, name: &str) -> Option<&'a [u8]> {
        env.vars
            .iter()
            .find(|(n, _)| n.as_bytes() == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    fn origin() -> Origin<'static> {
        Origin {
            remote_addr: Some("10.0.0.7".parse().unwrap()),
            remote_port: Some(40000),
            scheme: "https",
            server_port: 8443,
            remote_user: None,
        }
    }

    fn parts(request: http::Request<()>) -> Parts {
        request.into_parts().0
    }

    #[test]
    fn the_mount_prefix_is_script_name_and_the_rest_is_decoded_path_info() {
        let p = parts(
            http::Request::get("/app/caf%C3%A9/a%2Fb?q=%20x")
                .header("host", "example.com:8443")
                .body(())
                .unwrap(),
        );
        let env = Environ::build(&p, "/app", &origin(), 0).unwrap();
        assert_eq!(get(&env, "SCRIPT_NAME"), Some(&b"/app"[..]));
        // The UTF-8 bytes, undecoded: the worker maps each to a latin-1
        // character, and Django encodes them back (get_bytes_from_wsgi).
        assert_eq!(get(&env, "PATH_INFO"), Some(&b"/caf\xc3\xa9/a/b"[..]));
        assert_eq!(get(&env, "QUERY_STRING"), Some(&b"q=%20x"[..]));
        assert_eq!(get(&env, "SERVER_NAME"), Some(&b"example.com"[..]));
        assert_eq!(get(&env, "SERVER_PORT"), Some(&b"8443"[..]));
        assert_eq!(get(&env, "wsgi.url_scheme"), Some(&b"https"[..]));
        assert_eq!(get(&env, "CONTENT_LENGTH"), None);
        assert!(Environ::build(&p, "/ap", &origin(), 0).is_none());
        let root = Environ::build(&p, "", &origin(), 0).unwrap();
        assert_eq!(get(&root, "SCRIPT_NAME"), Some(&b""[..]));
        assert_eq!(get(&root, "PATH_INFO"), Some(&b"/app/caf\xc3\xa9/a/b"[..]));
    }

    #[test]
    fn headers_become_http_names_joined_and_content_headers_do_not() {
        let p = parts(
            http::Request::post("/x")
                .header("content-type", "application/json")
                .header("content-length", "2")
                .header("x-many", "a")
                .header("x-many", "b")
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .header("remote_user", "mallory")
                .header(
                    "x-latin",
                    http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
                )
                .body(())
                .unwrap(),
        );
        let env = Environ::build(&p, "", &origin(), 2).unwrap();
        assert_eq!(get(&env, "CONTENT_TYPE"), Some(&b"application/json"[..]));
        assert_eq!(get(&env, "CONTENT_LENGTH"), Some(&b"2"[..]));
        assert_eq!(get(&env, "HTTP_CONTENT_TYPE"), None);
        assert_eq!(get(&env, "HTTP_CONTENT_LENGTH"), None);
        assert_eq!(get(&env, "HTTP_X_MANY"), Some(&b"a,b"[..]));
        assert_eq!(get(&env, "HTTP_COOKIE"), Some(&b"a=1; b=2"[..]));
        assert_eq!(get(&env, "HTTP_X_LATIN"), Some(&b"caf\xe9"[..]));
        assert_eq!(get(&env, "HTTP_REMOTE_USER"), None);
        assert_eq!(get(&env, "REMOTE_USER"), None);
        assert_eq!(get(&env, "REMOTE_ADDR"), Some(&b"10.0.0.7"[..]));
        // No Host: the listener's port, a placeholder name.
        assert_eq!(get(&env, "SERVER_PORT"), Some(&b"8443"[..]));
    }

    #[test]
    fn remote_user_comes_only_from_the_origin() {
        let p = parts(http::Request::get("/").body(()).unwrap());
        let mut o = origin();
        o.remote_user = Some("alice");
        let env = Environ::build(&p, "", &o, 0).unwrap();
        assert_eq!(get(&env, "REMOTE_USER"), Some(&b"alice"[..]));
    }
}
