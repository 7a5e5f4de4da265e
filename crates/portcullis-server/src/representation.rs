//! What a `[[static]]` response says about a file: its validators, media
//! type, encoding and length, computed once per file and kept with a
//! cached one. Shared by the mount ([`crate::static_files`]) and its cache
//! ([`crate::static_cache`]), which otherwise know nothing of each other's
//! insides.

use std::fs::Metadata;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderValue;

/// What the response says about a file, computed once per file (and kept
/// with a cached one).
#[derive(Debug, Clone)]
pub(crate) struct Representation {
    pub(crate) etag: HeaderValue,
    pub(crate) modified: Option<SystemTime>,
    pub(crate) last_modified: Option<HeaderValue>,
    /// From the requested name (not the variant's).
    pub(crate) content_type: HeaderValue,
    pub(crate) encoding: &'static str,
    pub(crate) len: u64,
    /// `len` as a header value, for the whole-file answer.
    pub(crate) content_length: HeaderValue,
}

impl Representation {
    pub(crate) fn new(meta: &Metadata, name: &Path, encoding: &'static str) -> Self {
        let len = meta.len();
        let modified = meta.modified().ok();
        Self {
            etag: entity_tag(modified, len, encoding),
            modified,
            last_modified: modified
                .and_then(|m| HeaderValue::from_str(&httpdate::fmt_http_date(m)).ok()),
            content_type: content_type(name),
            encoding,
            len,
            content_length: HeaderValue::from(len),
        }
    }
}

/// nginx's strong `"mtime-size"` tag, with the encoding for a variant (a
/// compressed body is another representation).
fn entity_tag(modified: Option<SystemTime>, len: u64, encoding: &str) -> HeaderValue {
    let since = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    let tag = if encoding == "identity" {
        format!(
            "\"{:x}.{:x}-{len:x}\"",
            since.as_secs(),
            since.subsec_nanos()
        )
    } else {
        format!(
            "\"{:x}.{:x}-{len:x}-{encoding}\"",
            since.as_secs(),
            since.subsec_nanos()
        )
    };
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// The media type from the extension; text is UTF-8, as nginx's
/// `charset utf-8` would say.
fn content_type(name: &Path) -> HeaderValue {
    let guessed = mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream");
    HeaderValue::from_static(match guessed {
        "text/html" => "text/html; charset=utf-8",
        "text/css" => "text/css; charset=utf-8",
        "text/javascript" | "application/javascript" => "text/javascript; charset=utf-8",
        "text/plain" => "text/plain; charset=utf-8",
        "text/csv" => "text/csv; charset=utf-8",
        "text/markdown" => "text/markdown; charset=utf-8",
        "application/json" => "application/json",
        "image/svg+xml" => "image/svg+xml",
        other => other,
    })
}
