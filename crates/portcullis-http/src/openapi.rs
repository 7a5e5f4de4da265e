//! The OpenAPI 3.1 document of the API (issue 19), generated with utoipa
//! from the handlers' `#[utoipa::path]` annotations and the body types
//! below, as drf-spectacular generates a DRF project's: served at
//! `GET /api/schema/` (YAML, or JSON on request) and printed by
//! `portcullis openapi`.
//!
//! The types here describe bodies the handlers build with `json!` (their
//! key order is the wire's); they exist for the document only. That no
//! route goes undescribed is a test: [`crate::route_table`] is the table
//! the router itself is built from, and the document must name every
//! documented path and method in it, and nothing else.

// The body types are descriptions for the document: never built, their
// fields never read.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr};
use utoipa::{OpenApi, ToResponse, ToSchema};

use crate::HttpSettings;
use crate::routes;

/// The name of the security scheme, drf-spectacular's for simplejwt.
pub(crate) const SECURITY: &str = "jwtAuth";

/// The path of the docs page, left out of the document when it is off.
pub(crate) const DOCS_PATH: &str = "/api/schema/docs/";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "portcullis",
        description = "A simplejwt-compatible JWT authentication server: the endpoints, bodies, \
error strings and status codes of djangorestframework-simplejwt 5.5.1, with sessions, staff \
endpoints, forward-auth and key discovery.\n\nEvery path of a DRF view also answers without its \
trailing slash. Request bodies may be JSON, form-encoded or multipart, as DRF parses them.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::token::obtain_pair,
        routes::token::refresh,
        routes::token::verify,
        routes::token::blacklist,
        routes::token::obtain_sliding,
        routes::token::refresh_sliding,
        routes::sessions::logout,
        routes::sessions::logout_all,
        routes::sessions::list,
        routes::sessions::end,
        routes::users::me,
        routes::users::change_password,
        routes::admin::list,
        routes::admin::end_all,
        routes::admin::deactivate,
        routes::admin::remove,
        routes::forward_auth::verify,
        routes::well_known::jwks,
        routes::well_known::metadata,
        routes::health::healthz,
        routes::health::readyz,
        routes::schema::schema,
        routes::schema::docs,
    ),
    components(schemas(BadRequestBody, FieldErrors, ErrorDetail), responses(
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        PayloadTooLarge,
        UnsupportedMediaType,
        Throttled,
    )),
    tags(
        (name = "token", description = "simplejwt's token views"),
        (name = "sessions", description = "The caller's sessions"),
        (name = "users", description = "The caller's account"),
        (name = "admin", description = "Staff endpoints (DRF's IsAdminUser)"),
        (name = "forward-auth", description = "For a proxy in front (nginx auth_request, Traefik, Caddy)"),
        (name = "discovery", description = "Published keys and RFC 8414 metadata"),
        (name = "health", description = "Probes for orchestrators"),
        (name = "schema", description = "This document and its docs page"),
    )
)]
struct ApiDoc;

/// The document for a server with these settings: the docs page is left
/// out when `API_DOCS` is off, and the security scheme follows
/// `AUTH_HEADER_NAME` and `AUTH_HEADER_TYPES` as drf-spectacular's
/// simplejwt extension makes it (HTTP bearer for `Authorization: Bearer`,
/// otherwise an API key header with the prefix in its description).
#[must_use]
pub fn document(http: &HttpSettings, header_types: &[String]) -> Document {
    let mut doc = ApiDoc::openapi();
    if !http.api_docs {
        doc.paths.paths.shift_remove(DOCS_PATH);
    }
    // One handler answers both methods of forward-auth; operation ids
    // must be unique (OpenAPI 3.1 §4.8.10.1).
    if let Some(item) = doc.paths.paths.get_mut("/auth/verify") {
        for (op, id) in [
            (&mut item.get, "auth_verify_retrieve"),
            (&mut item.post, "auth_verify_create"),
        ] {
            if let Some(op) = op {
                op.operation_id = Some(id.to_owned());
            }
        }
    }
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.post, &mut item.get, &mut item.delete]
            .into_iter()
            .flatten()
        {
            body_parsing(op);
        }
    }
    let name = http.auth_header_name.as_str();
    let scheme = match header_types {
        [only] if only == "Bearer" && name == "authorization" => SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
        _ => {
            let prefix = header_types.first().map_or("Bearer", String::as_str);
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                canonical_header(name),
                format!("Token-based authentication with required prefix \"{prefix}\""),
            )))
        }
    };
    doc.components
        .get_or_insert_with(Default::default)
        .security_schemes
        .insert(SECURITY.to_owned(), RefOr::T(scheme));
    doc
}

/// What every operation that reads a body shares, said once here rather
/// than on each handler: DRF's parsers take the body as JSON, form-encoded
/// or multipart (the same fields), and a body can fail to parse (400),
/// be too large (413) or be of another media type (415).
fn body_parsing(op: &mut Operation) {
    let Some(RefOr::T(body)) = op.request_body.as_mut() else {
        return;
    };
    let Some(json) = body.content.get("application/json").cloned() else {
        return;
    };
    for media in ["application/x-www-form-urlencoded", "multipart/form-data"] {
        body.content.insert(media.to_owned(), json.clone());
    }
    for (status, component) in [
        ("400", "BadRequest"),
        ("413", "PayloadTooLarge"),
        ("415", "UnsupportedMediaType"),
    ] {
        op.responses.responses.insert(
            status.to_owned(),
            RefOr::Ref(Ref::from_response_name(component)),
        );
    }
}

/// `x-auth-token` as `X-Auth-Token`, as people write header names.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The document could not be written out.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the OpenAPI document")]
pub struct SchemaError(#[source] Box<dyn std::error::Error + Send + Sync>);

/// The document as YAML, the default of `GET /api/schema/`.
pub fn to_yaml(doc: &Document) -> Result<String, SchemaError> {
    doc.to_yaml().map_err(|e| SchemaError(e.into()))
}

/// The document as JSON (`?format=json`), pretty-printed with 4 spaces
/// as drf-spectacular's JSON renderer does.
pub fn to_json(doc: &Document) -> Result<String, SchemaError> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    doc.serialize(&mut serializer)
        .map_err(|e| SchemaError(e.into()))?;
    String::from_utf8(out).map_err(|e| SchemaError(e.into()))
}

// Request bodies. Every field is a DRF `CharField`: a string, trimmed,
// neither blank nor null (a number is taken as its decimal string).

/// `TokenObtainSerializer`'s fields.
#[derive(ToSchema)]
#[schema(example = json!({"username": "alice", "password": "s3cret-pass"}))]
pub(crate) struct TokenObtainRequest {
    #[schema(min_length = 1)]
    username: String,
    #[schema(min_length = 1, format = Password)]
    password: String,
}

/// `TokenRefreshSerializer`'s input. In cookie mode (`REFRESH_COOKIE`)
/// `refresh` may be left out: the refresh cookie is read instead, with
/// the `X-CSRF-Token` check.
#[derive(ToSchema)]
#[schema(example = json!({"refresh": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…"}))]
pub(crate) struct RefreshRequest {
    #[schema(min_length = 1)]
    refresh: String,
}

/// A token, of any type (`TokenVerifySerializer`,
/// `TokenRefreshSlidingSerializer`).
#[derive(ToSchema)]
#[schema(example = json!({"token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…"}))]
pub(crate) struct TokenRequest {
    #[schema(min_length = 1)]
    token: String,
}

/// Logout: the session's refresh token, optional (the access token's
/// session is ended either way).
#[derive(ToSchema)]
pub(crate) struct LogoutRequest {
    #[schema(nullable = false)]
    refresh: Option<String>,
}

/// A password change.
#[derive(ToSchema)]
#[schema(example = json!({"old_password": "s3cret-pass", "new_password": "n3w-s3cret-pass"}))]
pub(crate) struct PasswordChangeRequest {
    #[schema(min_length = 1, format = Password)]
    old_password: String,
    #[schema(min_length = 1, format = Password)]
    new_password: String,
}

// Response bodies.

/// An access and a refresh token.
#[derive(ToSchema)]
#[schema(example = json!({"refresh": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…", "access": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…"}))]
pub(crate) struct TokenPair {
    refresh: String,
    access: String,
}

/// A new access token; with `ROTATE_REFRESH_TOKENS` also a new refresh
/// token.
#[derive(ToSchema)]
#[schema(example = json!({"access": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…"}))]
pub(crate) struct RefreshResponse {
    access: String,
    #[schema(nullable = false)]
    refresh: Option<String>,
}

/// A sliding token.
#[derive(ToSchema)]
#[schema(example = json!({"token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…"}))]
pub(crate) struct SlidingToken {
    token: String,
}

/// `{}`: done.
#[derive(ToSchema)]
#[schema(example = json!({}))]
pub(crate) struct Empty {}

/// The caller's account.
#[derive(ToSchema)]
#[schema(example = json!({"id": 1, "username": "alice", "email": "alice@example.com"}))]
pub(crate) struct Me {
    id: i64,
    username: String,
    email: String,
}

/// A live session. Times are Unix seconds; `ip_address` and `user_agent`
/// are those of its last login or refresh.
#[derive(ToSchema)]
#[schema(example = json!({"id": "5c0e0c6f1b2a4f7e9d3c8b6a5f4e3d2c", "created_at": 1_767_225_600, "last_used_at": 1_767_229_200, "expires_at": 1_767_312_000, "ip_address": "203.0.113.9", "user_agent": "curl/8.5.0", "current": true}))]
pub(crate) struct SessionInfo {
    /// The session id (the `sid` claim).
    id: String,
    created_at: i64,
    last_used_at: i64,
    /// The `exp` of its newest refresh token.
    expires_at: i64,
    #[schema(required = true)]
    ip_address: Option<String>,
    #[schema(required = true)]
    user_agent: Option<String>,
    /// Whether it is the session of the access token that asked.
    current: bool,
}

/// A probe's verdict.
#[derive(ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub(crate) struct Status {
    status: String,
}

/// A JSON Web Key Set (RFC 7517 §5): public keys only, never an HMAC key.
#[derive(ToSchema)]
pub(crate) struct Jwks {
    keys: Vec<Jwk>,
}

/// One public key (RFC 7517 §4), with the members of its `kty`.
#[derive(ToSchema)]
#[schema(example = json!({"kty": "OKP", "use": "sig", "kid": "q3bXvJ2kWk8", "alg": "EdDSA", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}))]
pub(crate) struct Jwk {
    /// `RSA`, `EC` or `OKP`.
    kty: String,
    #[schema(nullable = false)]
    kid: Option<String>,
    #[schema(nullable = false)]
    alg: Option<String>,
    #[schema(nullable = false)]
    r#use: Option<String>,
    /// RSA modulus and exponent.
    #[schema(nullable = false)]
    n: Option<String>,
    #[schema(nullable = false)]
    e: Option<String>,
    /// EC and OKP curve and coordinates.
    #[schema(nullable = false)]
    crv: Option<String>,
    #[schema(nullable = false)]
    x: Option<String>,
    #[schema(nullable = false)]
    y: Option<String>,
}

/// RFC 8414 authorization server metadata, minimal: portcullis is no
/// OAuth server, so it lists no response or grant types.
#[derive(ToSchema)]
#[schema(example = json!({"issuer": "https://auth.example.com", "jwks_uri": "https://auth.example.com/.well-known/jwks.json", "token_endpoint": "https://auth.example.com/api/token/", "response_types_supported": [], "grant_types_supported": []}))]
pub(crate) struct ServerMetadata {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
    response_types_supported: Vec<String>,
    grant_types_supported: Vec<String>,
}

// Error bodies, DRF's and simplejwt's.

/// DRF's error body: a `detail`; simplejwt's token errors add a `code`
/// (`token_not_valid`, `user_inactive`, …) and, when no token class
/// accepted the token, the `messages` of each class.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"detail": "Given token not valid for any token type", "code": "token_not_valid", "messages": [{"token_class": "AccessToken", "token_type": "access", "message": "Token is expired"}]}))]
pub(crate) struct ErrorDetail {
    detail: String,
    #[schema(nullable = false)]
    code: Option<String>,
    #[schema(nullable = false)]
    messages: Option<Vec<TokenMessage>>,
}

/// Why one token class refused the token.
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenMessage {
    token_class: String,
    token_type: String,
    message: String,
}

/// DRF's validation errors: each failing field (or `non_field_errors`)
/// with its messages.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"username": ["This field is required."], "password": ["This field may not be blank."]}))]
pub(crate) struct FieldErrors(std::collections::BTreeMap<String, Vec<String>>);

/// 400: field errors, or an unparsable body's `detail`; untagged, as
/// on the wire.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum BadRequestBody {
    /// DRF's validation errors.
    Fields(FieldErrors),
    /// A body that does not parse (`JSON parse error - …`).
    Parse(ErrorDetail),
}

/// 400 Bad Request.
#[derive(ToResponse)]
#[response(
    description = "DRF's validation errors, or the parse error of a body that is not JSON, form or multipart as it claims",
    examples(
        ("missing" = (value = json!({"username": ["This field is required."], "password": ["This field is required."]}))),
        ("parse" = (value = json!({"detail": "JSON parse error - Expecting value: line 1 column 1 (char 0)"}))),
    )
)]
pub(crate) struct BadRequest(BadRequestBody);

/// 401 Unauthorized, always with `WWW-Authenticate`.
#[derive(ToResponse)]
#[response(
    description = "No valid credentials: simplejwt's body, with `WWW-Authenticate: Bearer realm=\"api\"` (the first of `AUTH_HEADER_TYPES`)",
    headers(("WWW-Authenticate" = String, description = "The scheme to authenticate with: `Bearer realm=\"api\"`")),
    examples(
        ("not_authenticated" = (value = json!({"detail": "Authentication credentials were not provided."}))),
        ("token_not_valid" = (value = json!({"detail": "Token is invalid", "code": "token_not_valid"}))),
        ("no_valid_token_type" = (value = json!({"detail": "Given token not valid for any token type", "code": "token_not_valid", "messages": [{"token_class": "AccessToken", "token_type": "access", "message": "Token is expired"}]}))),
    )
)]
pub(crate) struct Unauthorized(ErrorDetail);

/// 403 Forbidden.
#[derive(ToResponse)]
#[response(
    description = "Authenticated but not allowed (not staff), or in cookie mode a failed CSRF check",
    examples(
        ("permission_denied" = (value = json!({"detail": "You do not have permission to perform this action."}))),
        ("csrf" = (value = json!({"detail": "CSRF Failed: CSRF token missing."}))),
    )
)]
pub(crate) struct Forbidden(ErrorDetail);

/// 404 Not Found.
#[derive(ToResponse)]
#[response(
    description = "No such object",
    example = json!({"detail": "Not found."})
)]
pub(crate) struct NotFound(ErrorDetail);

/// 413 Content Too Large.
#[derive(ToResponse)]
#[response(
    description = "A body over `MAX_BODY_BYTES`",
    example = json!({"detail": "Request body is larger than the limit of 1048576 bytes."})
)]
pub(crate) struct PayloadTooLarge(ErrorDetail);

/// 415 Unsupported Media Type.
#[derive(ToResponse)]
#[response(
    description = "A body in a media type DRF does not parse",
    example = json!({"detail": "Unsupported media type \"text/plain\" in request."})
)]
pub(crate) struct UnsupportedMediaType(ErrorDetail);

/// 429 Too Many Requests, with `Retry-After`.
#[derive(ToResponse)]
#[response(
    description = "Login throttled (too many failures for the username or the client address)",
    headers(("Retry-After" = u64, description = "Seconds until the next attempt is allowed")),
    example = json!({"detail": "Request was throttled. Expected available in 900 seconds."})
)]
pub(crate) struct Throttled(ErrorDetail);

/// Used by the tests: the component a `$ref` names.
#[cfg(test)]
fn ref_name(r: &RefOr<utoipa::openapi::Response>) -> Option<&str> {
    match r {
        RefOr::Ref(r) => r.ref_location.rsplit('/').next(),
        RefOr::T(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_routed_path_and_method_is_documented_and_nothing_else() {
        for docs in [true, false] {
            let http = HttpSettings {
                api_docs: docs,
                ..HttpSettings::default()
            };
            let doc = document(&http, &["Bearer".to_owned()]);
            let table = crate::route_table(&http);
            let mut routed = Vec::new();
            for route in table.iter().filter(|r| r.documented) {
                let item =
                    doc.paths.paths.get(route.path).unwrap_or_else(|| {
                        panic!("{} is routed but not in the document", route.path)
                    });
                let mut documented: Vec<String> = Vec::new();
                let ops = [
                    ("GET", &item.get),
                    ("POST", &item.post),
                    ("PUT", &item.put),
                    ("PATCH", &item.patch),
                    ("DELETE", &item.delete),
                    ("HEAD", &item.head),
                    ("OPTIONS", &item.options),
                ];
                for (method, op) in ops {
                    if op.is_some() {
                        documented.push(method.to_owned());
                    }
                }
                let mut methods: Vec<String> =
                    route.methods.iter().map(|m| (*m).to_owned()).collect();
                methods.sort();
                documented.sort();
                assert_eq!(documented, methods, "{}", route.path);
                routed.push(route.path);
            }
            let mut in_doc: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
            in_doc.sort_unstable();
            routed.sort_unstable();
            assert_eq!(in_doc, routed);
            assert_eq!(doc.paths.paths.contains_key(DOCS_PATH), docs);
        }
    }

    #[test]
    fn every_response_component_is_used() {
        let doc = document(&HttpSettings::default(), &["Bearer".to_owned()]);
        let components = doc.components.unwrap_or_default();
        for name in components.responses.keys() {
            let used = doc.paths.paths.values().any(|item| {
                [&item.get, &item.post, &item.delete, &item.put, &item.patch]
                    .into_iter()
                    .flatten()
                    .any(|op| {
                        op.responses
                            .responses
                            .values()
                            .any(|r| ref_name(r) == Some(name.as_str()))
                    })
            });
            assert!(used, "response {name} is declared but never used");
        }
    }

    #[test]
    fn header_names_are_written_as_people_write_them() {
        assert_eq!(canonical_header("x-auth-token"), "X-Auth-Token");
        assert_eq!(canonical_header("authorization"), "Authorization");
    }
}
