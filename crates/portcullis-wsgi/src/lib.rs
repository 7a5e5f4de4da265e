//! The portcullis WSGI server: a Python WSGI application (Django, Flask,
//! anything PEP 3333) run inside portcullis, doing gunicorn's job without
//! gunicorn and without a second HTTP hop.
//!
//! # Design
//!
//! ```text
//!  client ──HTTP/1.1, HTTP/2, TLS──▶ portcullis (tokio: front, tokens)
//!                                       │  body received whole (memory, then a temp file)
//!                                       │  environ's CGI part built in Rust (environ.rs)
//!                                       ▼
//!                                    Pool: queue ─▶ slot tasks, one per worker thread
//!                                       │  framed protocol over a Unix stream (protocol.rs)
//!                                       ▼
//!                     worker processes (`portcullis wsgi-worker`), one CPython each
//!                       thread per connection: build environ, call the app, send chunks
//! ```
//!
//! - **Processes, one interpreter each**, as gunicorn, uWSGI and granian
//!   run them: per-interpreter GILs (3.12+) fail with common extension
//!   modules (`PyO3`'s, so `cryptography`, so `PyJWT`), and free-threading
//!   re-enables the GIL at the first extension that has not opted in.
//!   Workers are started by **executing the binary** (`portcullis
//!   wsgi-worker`), never by forking the server, which runs tokio threads.
//! - **The server owns the HTTP side**: TLS, HTTP/2, the token check, the
//!   request body (received whole before the app is called: in memory up
//!   to [`Body::MEMORY_LIMIT`], then in a temporary file the worker opens)
//!   and the response (taken from the worker as fast as the app makes it,
//!   sent at the client's pace: in memory up to
//!   [`response::MEMORY_LIMIT`], then in a temporary file, see
//!   [`response`]). A slow client never holds a worker, which is the job
//!   gunicorn's docs give to nginx.
//! - **The worker is small**: it turns the CGI pairs into a dict, adds the
//!   `wsgi.*` keys, calls the app with the GIL held, and sends the response
//!   with the GIL released ([`worker`]). A list response goes out as one
//!   buffer; any other iterable chunk by chunk as it is made.
//! - **Supervision is gunicorn's arbiter** ([`pool`]): heartbeat, timeout
//!   (504, kill, respawn), crash (502 for what it held, respawn),
//!   `max_requests` with jitter, reload new-before-old, and a boot error
//!   that stops the server with the module, the exception and the last
//!   frame.
//!
//! # API
//!
//! [`Pool::start`] with a [`PoolConfig`]; [`Pool::ready`] once; then per
//! request [`Environ::build`], [`Body::receive`] and [`Pool::call`], which
//! answers an `http::Response` whose body streams from the worker, or a
//! [`Failure`] to turn into 500/502/503/504. [`worker::main`] is the
//! worker's entry point, for the binary's hidden subcommand.

pub mod environ;
pub mod pool;
pub mod protocol;
pub mod response;
pub mod worker;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body::Body as HttpBody;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::oneshot;

pub use environ::{Environ, Origin};
pub use pool::{Pool, PoolConfig, State};
pub use response::ResponseBody;

use pool::Job;
use protocol::{BodyRef, Head, Request};

/// Why a request got no (complete) answer from the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The app raised, or broke PEP 3333 (logged with the reason): 500.
    #[error("the application failed; the reason is in the log")]
    App,
    /// The worker died while it held the request: 502.
    #[error("the application's worker died while answering")]
    WorkerDied,
    /// The request ran past `timeout`; its worker was replaced: 504.
    #[error("the application did not answer within its timeout")]
    Timeout,
    /// The pool is stopping: 503.
    #[error("the application is not available")]
    Unavailable,
    /// The spooled body's path is not UTF-8 (`TMPDIR` is not): 500.
    #[error("the request body's temporary file has a non-UTF-8 path")]
    Body,
}

/// Why [`Body::receive`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError<E> {
    /// The client's body did not arrive (cut, or over the front's limit).
    #[error("reading the request body failed")]
    Read(E),
    /// It could not be written to a temporary file (a full disk).
    #[error("writing the request body to a temporary file failed: {0}")]
    Spool(std::io::Error),
}

/// A request body, received in full before the app is called.
#[derive(Debug)]
pub enum Body {
    /// Up to [`Body::MEMORY_LIMIT`] bytes.
    Memory(Bytes),
    /// Spooled to a temporary file (removed when the request is done).
    File {
        /// The file.
        path: tempfile::TempPath,
        /// Its length.
        length: u64,
    },
}

impl Body {
    /// Bodies up to this size stay in memory (nginx's
    /// `client_body_buffer_size` is 8–16 KiB; a JSON API's bodies are
    /// mostly below 1 MiB, and one copy of them is cheap).
    pub const MEMORY_LIMIT: usize = 1 << 20;

    /// Receive `body` whole: in memory up to `memory_limit`, beyond it in a
    /// temporary file, so a 1 GiB upload costs `memory_limit` of memory.
    pub async fn receive<B>(body: B, memory_limit: usize) -> Result<Self, BodyError<B::Error>>
    where
        B: HttpBody<Data = Bytes> + Unpin,
    {
        use http_body_util::BodyExt as _;
        let mut body = body;
        let mut memory: Vec<u8> = Vec::new();
        let mut file: Option<(tokio::fs::File, tempfile::TempPath)> = None;
        let mut length = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
                continue;
            };
            length += data.len() as u64;
            if let Some((out, _)) = &mut file {
                out.write_all(&data).await.map_err(BodyError::Spool)?;
                continue;
            }
            if memory.len() + data.len() <= memory_limit {
                if memory.is_empty() && data.len() == usize::try_from(length).unwrap_or(0) {
                    // The usual one-frame body: keep it, no copy.
                    memory = Vec::from(data);
                } else {
                    memory.extend_from_slice(&data);
                }
                continue;
            }
            let spool = tempfile::Builder::new()
                .prefix("portcullis-body-")
                .tempfile()
                .map_err(BodyError::Spool)?;
            let (std_file, path) = spool.into_parts();
            let mut out = tokio::fs::File::from_std(std_file);
            out.write_all(&memory).await.map_err(BodyError::Spool)?;
            out.write_all(&data).await.map_err(BodyError::Spool)?;
            memory = Vec::new();
            file = Some((out, path));
        }
        Ok(match file {
            Some((mut out, path)) => {
                out.flush().await.map_err(BodyError::Spool)?;
                Self::File { path, length }
            }
            None => Self::Memory(Bytes::from(memory)),
        })
    }

    /// The body's length.
    #[must_use]
    pub fn len(&self) -> u64 {
        match self {
            Self::Memory(bytes) => bytes.len() as u64,
            Self::File { length, .. } => *length,
        }
    }

    /// No bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Pool {
    /// Run the app for one request: `environ` from [`Environ::build`] with
    /// `body`'s length. The response's head is back once the app has
    /// started its body; the body streams as the app makes it.
    pub async fn call(
        &self,
        environ: &Environ,
        body: Body,
    ) -> Result<http::Response<ResponseBody>, Failure> {
        let vars: Vec<(&[u8], &[u8])> = environ
            .vars
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_slice()))
            .collect();
        let (frame, spool) = match body {
            Body::Memory(bytes) => (Request::encode(&vars, &BodyRef::Inline(&bytes)), None),
            Body::File { path, length } => {
                let Some(name) = path.to_str() else {
                    return Err(Failure::Body);
                };
                let frame = Request::encode(&vars, &BodyRef::File { path: name, length });
                (frame, Some(path))
            }
        };
        let (reply, answer) = oneshot::channel();
        self.submit(Job {
            frame,
            reply,
            _spool: spool,
        })
        .await?;
        let reply = answer.await.map_err(|_| Failure::WorkerDied)??;
        Ok(reply.into_response())
    }
}

/// A response head from the worker and the channel its body comes on.
#[derive(Debug)]
pub(crate) struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: ResponseBody,
}

impl Reply {
    /// Check the app's head as HTTP (the worker checked PEP 3333's rules).
    pub(crate) fn new(head: &Head<'_>, body: ResponseBody) -> Result<Self, String> {
        let code = head.status.get(..3).unwrap_or_default();
        let status = StatusCode::from_bytes(code)
            .map_err(|_| format!("status {:?}", String::from_utf8_lossy(head.status)))?;
        let mut headers = http::HeaderMap::with_capacity(head.headers.len());
        for (name, value) in &head.headers {
            let name = HeaderName::from_bytes(name)
                .map_err(|_| format!("header name {:?}", String::from_utf8_lossy(name)))?;
            let value = HeaderValue::from_bytes(value)
                .map_err(|_| format!("the value of header {name}"))?;
            headers.append(name, value);
        }
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    fn into_response(self) -> http::Response<ResponseBody> {
        let mut response = http::Response::new(self.body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}
