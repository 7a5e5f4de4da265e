//! `GET /api/schema/`: the OpenAPI 3.1 document ([`crate::openapi`]), with
//! drf-spectacular's `SpectacularAPIView` conventions: YAML by default
//! (`application/vnd.oai.openapi`), JSON with `?format=json` or an
//! `Accept` naming a JSON type, chosen as DRF's content negotiation
//! chooses a renderer. `GET /api/schema/docs/`: Swagger UI rendering it,
//! every file built into the binary (utoipa-swagger-ui, vendored), under a
//! `Content-Security-Policy` that allows no inline script and no other
//! origin. `API_SCHEMA=false` turns both off, `API_DOCS=false` the page.

use std::sync::{Arc, LazyLock};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Routes, method_not_allowed, view_at};
use crate::openapi::{self as doc, DOCS_PATH};
use crate::{ApiError, AppState, HttpSettings};

/// The schema path.
const SCHEMA_PATH: &str = "/api/schema/";

/// The docs page's policy: scripts and styles from this origin only (the
/// page has no inline script), the document fetched from it; Swagger UI's
/// stylesheet draws its icons from `data:` images and its components set
/// `style` attributes.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn router(http: &HttpSettings) -> Routes {
    let mut routes = Routes::default();
    if !http.api_schema {
        return routes;
    }
    routes = routes.merge(view_at(SCHEMA_PATH, "GET, HEAD, OPTIONS", |view| {
        get(view.wrap(schema)).fallback(view.wrap(method_not_allowed))
    }));
    if http.api_docs {
        routes = routes
            .merge(view_at(DOCS_PATH, "GET, HEAD, OPTIONS", |view| {
                get(view.wrap(docs)).fallback(view.wrap(method_not_allowed))
            }))
            .undocumented("/api/schema/docs/{file}", get(asset));
    }
    routes
}

/// `?format=`, DRF's `URL_FORMAT_OVERRIDE`: the last one, as Django's
/// `QueryDict.get` reads it.
fn format_of(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .filter(|(name, _)| name == "format")
        .map(|(_, value)| value.into_owned())
        .last()
}

/// drf-spectacular's renderers, in its order: (format, media type, whether
/// DRF adds `; charset=utf-8`).
const RENDERERS: [(&str, &str, bool); 4] = [
    ("yaml", "application/vnd.oai.openapi", true),
    ("yaml", "application/yaml", true),
    ("json", "application/vnd.oai.openapi+json", false),
    ("json", "application/json", false),
];

/// DRF's `DefaultContentNegotiation.select_renderer`: the renderers of the
/// requested format; then, over the `Accept` media ranges from the most
/// specific to the least, the first renderer one of them matches.
/// A 404 for a format nobody renders, a 406 for an `Accept` nothing
/// satisfies.
fn negotiate(format: Option<&str>, accept: Option<&str>) -> Result<(&'static str, bool), ApiError> {
    let renderers: Vec<_> = RENDERERS
        .iter()
        .filter(|(f, _, _)| format.is_none_or(|format| *f == format))
        .collect();
    if renderers.is_empty() {
        return Err(ApiError::NotFound);
    }
    let accept = accept
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("*/*");
    let ranges: Vec<(u8, String)> = accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            let params = parts.any(|p| !p.trim().starts_with("q="));
            let (main, sub) = media.split_once('/')?;
            // DRF's `_MediaType.precedence`.
            let precedence = match (main, sub) {
                ("*", _) => 0,
                (_, "*") => 1,
                _ if !params => 2,
                _ => 3,
            };
            Some((precedence, media))
        })
        .collect();
    for precedence in (0..=3).rev() {
        for (_, media, charset) in &renderers {
            let matched = ranges.iter().any(|(p, range)| {
                *p == precedence
                    && match range.split_once('/') {
                        Some(("*", _)) => true,
                        Some((main, "*")) => media.starts_with(&format!("{main}/")),
                        _ => range == media,
                    }
            });
            if matched {
                return Ok((media, *charset));
            }
        }
    }
    Err(ApiError::NotAcceptable)
}

#[utoipa::path(
    get,
    path = "/api/schema/",
    tag = "schema",
    operation_id = "schema_retrieve",
    summary = "This document",
    description = "The OpenAPI 3.1 document of this API: YAML by default, JSON with `?format=json` or `Accept: application/json` (drf-spectacular's conventions).",
    params(
        ("format" = Option<String>, Query, description = "`json` or `yaml`", example = "json"),
    ),
    responses(
        (status = 200, description = "The document", content(
            ("application/vnd.oai.openapi"),
            ("application/yaml"),
            ("application/vnd.oai.openapi+json"),
            ("application/json"),
        )),
        (status = 404, description = "A format other than `json` and `yaml`", body = doc::ErrorDetail,
            example = json!({"detail": "Not found."})),
        (status = 406, description = "An `Accept` header no format satisfies", body = doc::ErrorDetail,
            example = json!({"detail": "Could not satisfy the request Accept header."})),
    ),
)]
pub(crate) async fn schema(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let format = format_of(&uri);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (media, charset) = negotiate(format.as_deref(), accept)?;
    let document = doc::document(state.http(), &state.auth().settings().auth_header_types);
    let body = if media.ends_with("json") {
        doc::to_json(&document)
    } else {
        doc::to_yaml(&document)
    }
    .map_err(|e| {
        let error = portcullis_core::error_chain(&e);
        tracing::error!(%error, "cannot serialise the OpenAPI document");
        ApiError::Internal
    })?;
    let content_type = if charset {
        format!("{media}; charset=utf-8")
    } else {
        media.to_owned()
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// The page: Swagger UI's, with absolute paths so that it works at
/// `/api/schema/docs` too, and no inline script.
const INDEX: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>portcullis API</title>
    <link rel="stylesheet" type="text/css" href="/api/schema/docs/swagger-ui.css">
    <link rel="stylesheet" type="text/css" href="/api/schema/docs/index.css">
    <link rel="icon" type="image/png" href="/api/schema/docs/favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/api/schema/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="/api/schema/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="/api/schema/docs/swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"#;

/// The headers of every file of the page.
fn page_headers(content_type: &str) -> [(header::HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DOCS_CSP),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

#[utoipa::path(
    get,
    path = "/api/schema/docs/",
    tag = "schema",
    operation_id = "schema_docs_retrieve",
    summary = "The docs page",
    description = "Swagger UI rendering this document, served from the binary (no other origin). Off with `API_DOCS=false`.",
    responses(
        (status = 200, description = "The page", content_type = "text/html; charset=utf-8", body = String),
    ),
)]
pub(crate) async fn docs() -> Response {
    (page_headers("text/html; charset=utf-8"), INDEX).into_response()
}

/// Swagger UI's configuration: the JSON document, no call to the public
/// validator (the page must work offline), no top bar that loads other
/// documents.
static CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::new(["/api/schema/?format=json"])
            .use_base_layout()
            .validator_url("none")
            .try_it_out_enabled(false)
            .display_operation_id(true),
    )
});

/// The files the page loads; anything else is a 404.
const ASSETS: [&str; 5] = [
    "swagger-ui.css",
    "index.css",
    "favicon-32x32.png",
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
];

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    if !ASSETS.contains(&file.as_str()) && file != "swagger-initializer.js" {
        return Err(ApiError::NotFound);
    }
    match utoipa_swagger_ui::serve(&file, Arc::clone(&CONFIG)) {
        Ok(Some(found)) => {
            let mut response =
                (page_headers(&found.content_type), found.bytes.into_owned()).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            Ok(response)
        }
        Ok(None) => Err(ApiError::NotFound),
        Err(e) => {
            tracing::error!(error = %e, file, "cannot serve a docs page file");
            Err(ApiError::Internal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::negotiate;
    use crate::ApiError;

    #[test]
    fn negotiation_follows_drf() {
        let chosen = |format, accept| negotiate(format, accept).ok();
        let yaml = Some(("application/vnd.oai.openapi", true));
        let json = Some(("application/vnd.oai.openapi+json", false));
        assert_eq!(chosen(None, None), yaml);
        assert_eq!(chosen(None, Some("*/*")), yaml);
        assert_eq!(chosen(Some("json"), None), json);
        assert_eq!(chosen(Some("yaml"), Some("*/*")), yaml);
        assert_eq!(
            chosen(None, Some("application/json")),
            Some(("application/json", false))
        );
        assert_eq!(
            chosen(Some("json"), Some("application/json")),
            Some(("application/json", false))
        );
        assert_eq!(
            chosen(None, Some("text/html, application/yaml;q=0.9")),
            Some(("application/yaml", true))
        );
        assert!(matches!(
            negotiate(None, Some("text/html")),
            Err(ApiError::NotAcceptable)
        ));
        assert!(matches!(
            negotiate(Some("json"), Some("application/yaml")),
            Err(ApiError::NotAcceptable)
        ));
        assert!(matches!(
            negotiate(Some("xml"), None),
            Err(ApiError::NotFound)
        ));
    }
}
