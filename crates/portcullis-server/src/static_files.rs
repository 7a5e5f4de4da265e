//! `[[static]]`: a directory served the way nginx serves one, plus the
//! validators nginx sends.
//!
//! Not tower-http's `ServeDir`, although since 0.7.0 it sends a strong
//! `ETag` and answers `If-None-Match` as this does: it ignores `If-Range`,
//! follows symlinks out of its root, and does each file-system step on the
//! blocking pool. Here a small file (up to [`static_cache::MAX_FILE`]) is
//! answered from memory with precomputed headers ([`Representation`]), and
//! looked up on disk again at most once a second ([`static_cache`]). The
//! lookup costs one `lstat` per candidate (`.br`, `.gz`, the file), `open`,
//! `fstat` and one `read` — plus one `realpath` for a file in a
//! subdirectory or behind a symlink — done inline: from the page cache that
//! is a few microseconds, less than handing the work to another thread and
//! back (nginx, too, opens files on its event loop). Files above
//! [`INLINE_MAX`] are streamed through tokio's file reader instead.

use std::borrow::Cow;
use std::fs::{File, Metadata};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use portcullis_http::ApiError;

use crate::representation::Representation;
use crate::static_cache::{self, Cache};

/// Files up to this size are read into memory in one call; larger ones
/// stream.
const INLINE_MAX: u64 = 256 * 1024;

/// One `[[static]]` entry, checked.
#[derive(Debug, Clone)]
pub struct StaticMount {
    /// Starts and ends with `/`.
    pub prefix: String,
    /// Canonical (symlinks resolved): every served file must lie under it.
    root: PathBuf,
    cache_control: Option<HeaderValue>,
    cache: Arc<Cache>,
}

impl StaticMount {
    /// A mount of `dir` at `prefix`; `dir` is resolved once here.
    pub fn new(prefix: String, dir: &Path, cache_control: Option<HeaderValue>) -> io::Result<Self> {
        let root = std::fs::canonicalize(dir)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        Ok(Self {
            prefix,
            root,
            cache_control,
            cache: Arc::default(),
        })
    }

    /// Answer a request whose path starts with the prefix.
    pub(crate) fn serve(&self, request: &Request) -> Response {
        let head = match *request.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut response =
                    ApiError::MethodNotAllowed(request.method().to_string()).into_response();
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return response;
            }
        };
        let rest = request.uri().path().get(self.prefix.len()..).unwrap_or("");
        let headers = request.headers();
        let (br, gzip) = accepted_encodings(headers);
        let negotiation = static_cache::negotiation(br, gzip);
        let cached = self.cache.get(rest, negotiation);
        if let Some(entry) = &cached
            && entry.is_fresh(Instant::now())
        {
            let body = Source::Memory(entry.body.clone());
            return self.respond(&entry.representation, body, headers, head);
        }
        let (response, obsolete) = self.look_up(request, rest, (br, gzip), cached.as_deref(), head);
        if obsolete && cached.is_some() {
            // Deleted, grown past the limit, now a directory or out of
            // reach: the stale entry must not outlive the file.
            self.cache.forget(rest, negotiation);
        }
        response
    }

    /// The full lookup on disk: the answer, and whether it came from
    /// anything but a cacheable file (then a cached entry for the same
    /// request is obsolete). `cached` is the stale entry, whose bytes are
    /// kept if the file has not changed.
    fn look_up(
        &self,
        request: &Request,
        rest: &str,
        (br, gzip): (bool, bool),
        cached: Option<&static_cache::Entry>,
        head: bool,
    ) -> (Response, bool) {
        let Some((relative, index)) = relative_path(rest) else {
            return (not_found(), true);
        };
        let headers = request.headers();
        // The directory is resolved once for every candidate: its own
        // symlinks may lead anywhere, but it must end under the root.
        let full = self.root.join(&relative);
        let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else {
            return (not_found(), true);
        };
        let parent = if parent == self.root {
            Cow::Borrowed(parent)
        } else {
            match self.resolve_inside(parent) {
                Ok(Some(real)) => Cow::Owned(real),
                Ok(None) => return (not_found(), true),
                Err(e) => return (io_failure(parent, &e), true),
            }
        };
        let variants = [
            (br, ".br", "br"),
            (gzip, ".gz", "gzip"),
            (true, "", "identity"),
        ];
        for (wanted, suffix, encoding) in variants {
            if !wanted {
                continue;
            }
            let candidate = if suffix.is_empty() {
                parent.join(name)
            } else {
                let mut variant = name.to_os_string();
                variant.push(suffix);
                parent.join(variant)
            };
            match self.open(&candidate) {
                Ok(Some((file, meta))) if meta.is_file() => {
                    let negotiation = static_cache::negotiation(br, gzip);
                    return self.found(
                        file,
                        &meta,
                        (rest, negotiation, cached),
                        Representation::new(&meta, &relative, encoding),
                        headers,
                        head,
                    );
                }
                Ok(Some((_, meta))) if meta.is_dir() && suffix.is_empty() && !index => {
                    return (redirect_to_directory(request), true);
                }
                Ok(_) => {}
                Err(e) => return (io_failure(&candidate, &e), true),
            }
        }
        (not_found(), true)
    }

    /// Answer with a file the lookup found: from the cache when it is
    /// small (read once, or not at all if `cached` holds the same file),
    /// from the file otherwise.
    fn found(
        &self,
        mut file: File,
        meta: &Metadata,
        (rest, negotiation, cached): (&str, usize, Option<&static_cache::Entry>),
        representation: Representation,
        headers: &HeaderMap,
        head: bool,
    ) -> (Response, bool) {
        let len = meta.len();
        if len > static_cache::MAX_FILE {
            let response = self.respond(&representation, Source::File(file), headers, head);
            return (response, true);
        }
        let entry = match cached {
            Some(cached) if cached.is_same_file(meta) => {
                self.cache.renew(rest, negotiation, cached)
            }
            _ => {
                let mut bytes = vec![0; usize::try_from(len).unwrap_or(0)];
                if let Err(e) = file.read_exact(&mut bytes) {
                    tracing::error!(error = %e, "cannot read a static file");
                    return (server_error(), true);
                }
                let body = Bytes::from(bytes);
                self.cache
                    .store(rest, negotiation, representation, body, meta)
            }
        };
        let body = Source::Memory(entry.body.clone());
        (
            self.respond(&entry.representation, body, headers, head),
            false,
        )
    }

    /// `path` with every symlink resolved, if it exists and lies under the
    /// root; a path that leads out is as good as missing.
    fn resolve_inside(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        match std::fs::canonicalize(path) {
            Ok(real) if real.starts_with(&self.root) => Ok(Some(real)),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Open a file of an already resolved directory. One `lstat` tells a
    /// missing variant (the common case) and a plain file apart from a
    /// symlink, which alone pays for a full resolution.
    fn open(&self, path: &Path) -> io::Result<Option<(File, Metadata)>> {
        let link = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta.file_type().is_symlink(),
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let path = if link {
            match self.resolve_inside(path)? {
                Some(real) => Cow::Owned(real),
                None => return Ok(None),
            }
        } else {
            Cow::Borrowed(path)
        };
        let file = File::open(&path)?;
        let meta = file.metadata()?;
        Ok(Some((file, meta)))
    }

    /// The answer for one representation: validators, preconditions,
    /// ranges, then the body from `source`.
    fn respond(
        &self,
        representation: &Representation,
        source: Source,
        request: &HeaderMap,
        head: bool,
    ) -> Response {
        let Representation {
            etag,
            modified,
            last_modified,
            content_type,
            encoding,
            len,
            content_length,
        } = representation;
        let (modified, len) = (*modified, *len);
        let mut response = Response::new(Body::empty());
        let out = response.headers_mut();
        // The server's own headers come on top: one allocation, not two.
        out.reserve(12);
        out.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        out.insert(header::ETAG, etag.clone());
        if let Some(value) = last_modified {
            out.insert(header::LAST_MODIFIED, value.clone());
        }
        if let Some(cache_control) = &self.cache_control {
            out.insert(header::CACHE_CONTROL, cache_control.clone());
        }
        match precondition(request, etag, modified) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                return response;
            }
            Precondition::Failed => {
                *response.status_mut() = StatusCode::PRECONDITION_FAILED;
                return response;
            }
        }
        out.insert(header::CONTENT_TYPE, content_type.clone());
        out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if *encoding != "identity" {
            out.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        let (start, count) = match range(request, etag, modified, len) {
            Range::Full => {
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, content_length.clone());
                (0, len)
            }
            Range::Part(start, end) => {
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                let count = end - start + 1;
                let out = response.headers_mut();
                if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                    out.insert(header::CONTENT_RANGE, value);
                }
                out.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
                (start, count)
            }
            Range::Unsatisfiable => {
                *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                let out = response.headers_mut();
                out.remove(header::CONTENT_TYPE);
                out.remove(header::CONTENT_ENCODING);
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    out.insert(header::CONTENT_RANGE, value);
                }
                out.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                return response;
            }
        };
        if head || count == 0 {
            return response;
        }
        match source.body(start, count) {
            Ok(body) => {
                *response.body_mut() = body;
                response
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read a static file");
                server_error()
            }
        }
    }
}

/// Where the body's bytes come from.
enum Source {
    /// A cached small file.
    Memory(Bytes),
    /// An open file, above the cache's limit.
    File(File),
}

impl Source {
    /// `count` bytes from `start`.
    fn body(self, start: u64, count: u64) -> io::Result<Body> {
        match self {
            Self::Memory(bytes) => {
                let start = usize::try_from(start).map_err(io::Error::other)?;
                let end = usize::try_from(count)
                    .ok()
                    .and_then(|count| start.checked_add(count))
                    .filter(|end| *end <= bytes.len())
                    .ok_or_else(|| io::Error::other("range beyond the cached file"))?;
                Ok(Body::from(bytes.slice(start..end)))
            }
            Self::File(mut file) => body(&mut file, start, count),
        }
    }
}

/// The part of a URL path under the prefix as a relative file path, and
/// whether it named a directory (then `index.html` in it). `None` for a
/// path that could lead out of the root: a `.` or `..` segment, or a
/// segment that decodes to one, or that decodes to a `/`, `\` or NUL.
fn relative_path(rest: &str) -> Option<(PathBuf, bool)> {
    let mut relative = PathBuf::new();
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode_str(segment).decode_utf8().ok()?;
        if decoded == "." || decoded == ".." || decoded.contains(['/', '\\', '\0']) {
            return None;
        }
        relative.push(&*decoded);
    }
    let index = rest.is_empty() || rest.ends_with('/');
    if index {
        relative.push("index.html");
    }
    Some((relative, index))
}

/// Whether the client takes `br` and `gzip` (present without `q=0`).
fn accepted_encodings(headers: &HeaderMap) -> (bool, bool) {
    let (mut br, mut gzip) = (false, false);
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if coding.eq_ignore_ascii_case("br") {
                br = !refused;
            } else if coding.eq_ignore_ascii_case("gzip") {
                gzip = !refused;
            }
        }
    }
    (br, gzip)
}

enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

/// RFC 9110 §13.2.2, in its order.
fn precondition(
    request: &HeaderMap,
    etag: &HeaderValue,
    modified: Option<SystemTime>,
) -> Precondition {
    let modified_secs = modified.map(whole_seconds);
    if let Some(if_match) = request.get(header::IF_MATCH) {
        if !tag_list_matches(if_match, etag, false) {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(modified)) = (
        date_header(request, header::IF_UNMODIFIED_SINCE),
        modified_secs,
    ) && modified > since
    {
        return Precondition::Failed;
    }
    if let Some(if_none_match) = request.get(header::IF_NONE_MATCH) {
        if tag_list_matches(if_none_match, etag, true) {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(modified)) = (
        date_header(request, header::IF_MODIFIED_SINCE),
        modified_secs,
    ) && modified <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Whether an `If-Match` / `If-None-Match` list holds `etag` (or is `*`);
/// `weak` compares without the `W/` prefix (RFC 9110 §8.8.3.2).
fn tag_list_matches(list: &HeaderValue, etag: &HeaderValue, weak: bool) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    let ours = etag.as_bytes();
    list.split(',').map(str::trim).any(|tag| {
        if tag == "*" {
            return true;
        }
        let tag = match tag.strip_prefix("W/") {
            Some(_) if !weak => return false,
            Some(stripped) => stripped,
            None => tag,
        };
        tag.as_bytes() == ours
    })
}

fn whole_seconds(time: SystemTime) -> SystemTime {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_secs(since.as_secs())
}

fn date_header(request: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(request.get(name)?.to_str().ok()?).ok()
}

enum Range {
    Full,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range (RFC 9110 §14). Several ranges, another unit, a
/// syntax error or an `If-Range` that no longer holds: the whole file, as
/// the RFC allows.
fn range(request: &HeaderMap, etag: &HeaderValue, modified: Option<SystemTime>, len: u64) -> Range {
    let Some(spec) = request
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Range::Full;
    };
    if let Some(if_range) = request.get(header::IF_RANGE) {
        let holds = if if_range.as_bytes().first() == Some(&b'"') {
            if_range == etag
        } else {
            let date = if_range
                .to_str()
                .ok()
                .and_then(|d| httpdate::parse_http_date(d).ok());
            date.is_some() && date == modified.map(whole_seconds)
        };
        if !holds {
            return Range::Full;
        }
    }
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match last.parse::<u64>() {
            Ok(0) => return Range::Unsatisfiable,
            Ok(n) if len > 0 => Some((len.saturating_sub(n), len - 1)),
            Ok(_) => return Range::Unsatisfiable,
            Err(_) => None,
        },
        (false, true) => first
            .parse::<u64>()
            .ok()
            .map(|a| (a, len.saturating_sub(1))),
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Some((a, b.min(len.saturating_sub(1)))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => Range::Full,
        Some((start, _)) if start >= len => Range::Unsatisfiable,
        Some((start, end)) => Range::Part(start, end),
    }
}

/// `count` bytes from `start`: read now when small, streamed otherwise.
fn body(file: &mut File, start: u64, count: u64) -> io::Result<Body> {
    if start > 0 {
        file.seek(SeekFrom::Start(start))?;
    }
    if count <= INLINE_MAX {
        let mut bytes = vec![0; usize::try_from(count).unwrap_or(0)];
        file.read_exact(&mut bytes)?;
        return Ok(Body::from(bytes));
    }
    let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file.try_clone()?), count);
    Ok(Body::from_stream(
        tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024),
    ))
}

/// nginx's answer to a directory named without its slash: the same URL
/// with one (query kept), where `index.html` and relative links work.
fn redirect_to_directory(request: &Request) -> Response {
    let uri = request.uri();
    let location = match uri.query() {
        Some(query) => format!("{}/?{query}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    match HeaderValue::from_str(&location) {
        Ok(location) => (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => not_found(),
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidFilename
    )
}

/// 403 for a file the server may not read (as nginx), 500 otherwise.
fn io_failure(path: &Path, e: &io::Error) -> Response {
    if e.kind() == io::ErrorKind::PermissionDenied {
        return forbidden();
    }
    tracing::error!(path = %path.display(), error = %e, "cannot read a static file");
    server_error()
}

fn not_found() -> Response {
    ApiError::NotFound.into_response()
}

fn forbidden() -> Response {
    ApiError::PermissionDenied.into_response()
}

fn server_error() -> Response {
    ApiError::Internal.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(response: Response) -> (StatusCode, Option<String>, String) {
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    /// A file the server may not read is nginx's 403, with DRF's body
    /// (the tests run as root, who reads every file, so not over HTTP).
    #[tokio::test]
    async fn an_unreadable_file_is_403() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(
            answer(io_failure(Path::new("secret"), &denied)).await,
            (
                StatusCode::FORBIDDEN,
                Some("application/json".to_owned()),
                r#"{"detail":"You do not have permission to perform this action."}"#.to_owned()
            )
        );
    }

    #[tokio::test]
    async fn another_failure_is_500() {
        let other = io::Error::other("disk on fire");
        assert_eq!(
            answer(io_failure(Path::new("file"), &other)).await,
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("application/json".to_owned()),
                r#"{"detail":"A server error occurred."}"#.to_owned()
            )
        );
    }
}
