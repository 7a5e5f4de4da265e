//! The worker process: one embedded CPython, the app imported once, one OS
//! thread per connection to the server, each serving one request at a time.
//!
//! Started by executing the server's binary (`portcullis wsgi-worker …`),
//! never by forking it: the server runs tokio threads, and a fork of a
//! threaded process may only call async-signal-safe functions before
//! `exec` (STYLE.md habit 12; CPython 3.12 warns for the same reason).
//!
//! A thread holds the GIL only while Python runs: reading a request frame
//! and writing the response go on with the GIL released, so the threads of
//! a `threads > 1` worker overlap their I/O with each other's Python.
//!
//! What PEP 3333 asks of the server side, and where it is done here:
//! - `environ`: the CGI pairs from the server ([`crate::environ`]), each a
//!   latin-1 `str`, and the `wsgi.*` keys (`Constants`);
//! - `wsgi.input`: an `io.BytesIO` over the body (or the spooled file
//!   opened `rb`): `read(n)`, `read()`, `readline(n)`, `readlines(hint)`
//!   and iteration all as Python's own file objects do them;
//! - `wsgi.errors`: `sys.stderr`, which the server logs line by line;
//! - `start_response(status, headers, exc_info=None)` returning `write`
//!   (`StartResponse`);
//! - the iterable: a list or tuple goes out as one buffer, anything else
//!   chunk by chunk as it is made; `close()` is called on every path
//!   (`respond`); a `FileWrapper` over a real file is read and sent by
//!   Rust with the GIL released, never through Python bytes.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::protocol::{self, BodyRef, Head, Request};

/// Exit code of a worker whose app could not be loaded (gunicorn's
/// `APP_LOAD_ERROR`): the server stops instead of starting it again.
pub const APP_LOAD_ERROR: u8 = 4;
/// Exit code of a worker that could not start for another reason
/// (gunicorn's `WORKER_BOOT_ERROR`).
pub const WORKER_BOOT_ERROR: u8 = 3;

/// The largest block read from a file for `wsgi.file_wrapper`.
const FILE_BLOCK: usize = 256 << 10;

/// A worker's command line, as [`crate::Pool`] writes it.
#[derive(Debug, Clone, Default)]
pub struct WorkerArgs {
    /// The server's socket for this worker.
    pub socket: PathBuf,
    /// Connections (and threads) to open.
    pub threads: usize,
    /// `module:callable`.
    pub app: String,
    /// Directories put first on `sys.path`, in order.
    pub paths: Vec<PathBuf>,
    /// The virtualenv whose site-packages the app imports from.
    pub virtualenv: Option<PathBuf>,
    /// `wsgi.multiprocess`: more than one worker serves the mount.
    pub multiprocess: bool,
}

impl WorkerArgs {
    /// The arguments that [`WorkerArgs::parse`] reads back.
    #[must_use]
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--socket".into(),
            self.socket.clone().into(),
            "--threads".into(),
            self.threads.to_string().into(),
            "--app".into(),
            self.app.clone().into(),
        ];
        for path in &self.paths {
            args.push("--path".into());
            args.push(path.clone().into());
        }
        if let Some(venv) = &self.virtualenv {
            args.push("--virtualenv".into());
            args.push(venv.clone().into());
        }
        if self.multiprocess {
            args.push("--multiprocess".into());
        }
        args
    }

    /// Read the arguments written by [`WorkerArgs::to_args`].
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, String> {
        let mut parsed = Self {
            threads: 1,
            ..Self::default()
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| format!("{} needs a value", arg.to_string_lossy()))
            };
            match arg.to_str() {
                Some("--socket") => parsed.socket = value()?.into(),
                Some("--threads") => {
                    parsed.threads = value()?
                        .to_str()
                        .and_then(|t| t.parse().ok())
                        .filter(|t| *t > 0)
                        .ok_or("--threads needs a positive number")?;
                }
                Some("--app") => {
                    parsed.app = value()?.into_string().map_err(|_| "--app is not UTF-8")?;
                }
                Some("--path") => parsed.paths.push(value()?.into()),
                Some("--virtualenv") => parsed.virtualenv = Some(value()?.into()),
                Some("--multiprocess") => parsed.multiprocess = true,
                _ => return Err(format!("unknown argument {}", arg.to_string_lossy())),
            }
        }
        if parsed.socket.as_os_str().is_empty() || parsed.app.is_empty() {
            return Err("--socket and --app are required".to_owned());
        }
        Ok(parsed)
    }
}

/// Run a worker until the server closes its connections. The entry point
/// of `portcullis wsgi-worker`.
#[must_use]
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match WorkerArgs::parse(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("portcullis wsgi-worker: {e}");
            return ExitCode::from(WORKER_BOOT_ERROR);
        }
    };
    let mut streams = Vec::with_capacity(args.threads);
    for _ in 0..args.threads {
        match UnixStream::connect(&args.socket) {
            Ok(stream) => streams.push(stream),
            Err(e) => {
                eprintln!(
                    "portcullis wsgi-worker: cannot connect to {}: {e}",
                    args.socket.display()
                );
                return ExitCode::from(WORKER_BOOT_ERROR);
            }
        }
    }
    Python::initialize();
    let loaded = Python::attach(|py| load(py, &args));
    let (app, constants) = match loaded {
        Ok(loaded) => loaded,
        Err(reason) => {
            if let Some(stream) = streams.first_mut() {
                let _ = protocol::write_frame(stream, protocol::BOOT_ERROR, reason.as_bytes());
            }
            return ExitCode::from(APP_LOAD_ERROR);
        }
    };
    let app = Arc::new(app);
    let constants = Arc::new(constants);
    let pid = std::process::id().to_le_bytes();
    std::thread::scope(|scope| {
        for stream in streams {
            let app = Arc::clone(&app);
            let constants = Arc::clone(&constants);
            scope.spawn(move || {
                let mut stream = stream;
                if protocol::write_frame(&mut stream, protocol::READY, &pid).is_ok()
                    && let Err(e) = serve(stream, &app, &constants)
                {
                    eprintln!("portcullis wsgi-worker: connection to the server lost: {e}");
                }
            });
        }
    });
    // The server closed every connection: a retirement, a reload or a
    // shutdown. `atexit` handlers run as in a Python process that ends.
    Python::attach(|py| {
        if let Err(e) = py
            .import("atexit")
            .and_then(|m| m.call_method0("_run_exitfuncs"))
        {
            e.print(py);
        }
    });
    ExitCode::SUCCESS
}

/// Everything a request needs from Python that is the same every time.
struct Constants {
    version: Py<PyAny>,
    errors: Py<PyAny>,
    bytes_io: Py<PyAny>,
    open: Py<PyAny>,
    file_wrapper: Py<PyAny>,
    multithread: bool,
    multiprocess: bool,
}

/// Set up `sys.path` and the virtualenv, import the app: the reason it
/// failed, in one paragraph, else the callable.
fn load(py: Python<'_>, args: &WorkerArgs) -> Result<(Py<PyAny>, Constants), String> {
    if let Some(venv) = &args.virtualenv {
        use_virtualenv(py, venv)?;
    }
    // A worker past its timeout gets SIGABRT before SIGKILL: faulthandler
    // then writes every thread's Python traceback to stderr, the log.
    py.import("faulthandler")
        .and_then(|f| f.call_method0("enable"))
        .map_err(|e| describe(py, &e))?;
    let sys = py.import("sys").map_err(|e| describe(py, &e))?;
    let sys_path = sys
        .getattr("path")
        .and_then(|p| p.cast_into::<PyList>().map_err(PyErr::from))
        .map_err(|e| describe(py, &e))?;
    for (i, dir) in args.paths.iter().enumerate() {
        sys_path
            .insert(i, dir.to_string_lossy().as_ref())
            .map_err(|e| describe(py, &e))?;
    }
    let app = import_app(py, &args.app)?;
    let constants = (|| -> PyResult<Constants> {
        Ok(Constants {
            version: PyTuple::new(py, [1, 0])?.into_any().unbind(),
            errors: sys.getattr("stderr")?.unbind(),
            bytes_io: py.import("io")?.getattr("BytesIO")?.unbind(),
            open: py.import("builtins")?.getattr("open")?.unbind(),
            file_wrapper: py.get_type::<FileWrapper>().into_any().unbind(),
            multithread: args.threads > 1,
            multiprocess: args.multiprocess,
        })
    })()
    .map_err(|e| describe(py, &e))?;
    Ok((app, constants))
}

/// Make the interpreter see `venv` as `venv/bin/python` does: its
/// `site-packages` (and `.pth` files), not the base installation's unless
/// its `pyvenv.cfg` says `include-system-site-packages = true`.
///
/// How: the interpreter has already run `site` for the base installation;
/// its site directories are taken off `sys.path`, `sys.executable` is set
/// to the venv's `bin/python`, and `site.main()` runs again, which reads
/// `pyvenv.cfg` beside it exactly as at a venv's start-up (`site.venv`).
/// No `PyConfig` (and no unsafe FFI) is needed for that.
fn use_virtualenv(py: Python<'_>, venv: &Path) -> Result<(), String> {
    let cfg = venv.join("pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg).map_err(|e| {
        format!(
            "virtualenv {}: cannot read {} ({e}); is it a virtualenv made by `python3 -m venv`?",
            venv.display(),
            cfg.display()
        )
    })?;
    let made_by = text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        matches!(key.trim(), "version" | "version_info").then(|| value.trim().to_owned())
    });
    let version = py.version_info();
    let ours = format!("{}.{}", version.major, version.minor);
    if let Some(made_by) = &made_by {
        let minor_of = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        if minor_of(made_by) != ours {
            return Err(format!(
                "virtualenv {} was made by Python {made_by}, but this portcullis embeds Python {ours}: \
                 make the virtualenv with python{ours} -m venv, or build portcullis against Python {} (PYO3_PYTHON)",
                venv.display(),
                minor_of(made_by)
            ));
        }
    }
    let globals = PyDict::new(py);
    let run = || -> PyResult<()> {
        globals.set_item("venv", venv.to_string_lossy().as_ref())?;
        py.run(
            cr#"
import os, site, sys
_base = set(site.getsitepackages())
if site.ENABLE_USER_SITE:
    _base.add(site.getusersitepackages())
sys.path[:] = [p for p in sys.path if p not in _base]
sys.executable = os.path.join(venv, "bin", "python")
site.PREFIXES[:] = [sys.base_prefix, sys.base_exec_prefix]
site.ENABLE_USER_SITE = None
site.main()
"#,
            Some(&globals),
            None,
        )
    };
    run().map_err(|e| {
        format!(
            "virtualenv {}: setting it up failed: {}",
            venv.display(),
            describe(py, &e)
        )
    })
}

/// Import `module:callable` (gunicorn's form; `module` alone means
/// `module:application`), saying which part was not found.
fn import_app(py: Python<'_>, spec: &str) -> Result<Py<PyAny>, String> {
    let (module, attr) = spec.split_once(':').unwrap_or((spec, "application"));
    if module.is_empty() || attr.is_empty() {
        return Err(format!(
            "app {spec:?} is not in the form module:callable (e.g. mysite.wsgi:application)"
        ));
    }
    let imported = py
        .import("importlib")
        .and_then(|m| m.call_method1("import_module", (module,)));
    let imported = match imported {
        Ok(imported) => imported,
        Err(e) => {
            // The module itself (or a package on its way) is missing, as
            // opposed to a module it imports.
            let missing: Option<String> = e
                .is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py)
                .then(|| e.value(py).getattr("name").ok()?.extract().ok())
                .flatten();
            if let Some(name) = missing
                && (module == name || module.starts_with(&format!("{name}.")))
            {
                let path = py
                    .import("sys")
                    .and_then(|s| s.getattr("path"))
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                return Err(format!(
                    "app {spec:?}: no module named {name:?} (searched sys.path {path}); \
                     set the mount's `path` to the directory that holds it"
                ));
            }
            return Err(format!(
                "app {spec:?}: importing module {module:?} failed: {}",
                describe(py, &e)
            ));
        }
    };
    let mut object = imported;
    for part in attr.split('.') {
        object = object
            .getattr(part)
            .map_err(|_| format!("app {spec:?}: module {module:?} has no attribute {attr:?}"))?;
    }
    if !object.is_callable() {
        let kind = object
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        return Err(format!(
            "app {spec:?}: {attr:?} is a {kind}, not a WSGI callable"
        ));
    }
    Ok(object.unbind())
}

/// `Type: message (at file:line in function)`: the exception and the last
/// frame of its traceback, for boot errors and the log.
fn describe(py: Python<'_>, e: &PyErr) -> String {
    let kind = e
        .get_type(py)
        .name()
        .map_or_else(|_| "Exception".to_owned(), |n| n.to_string());
    let message = e.value(py).to_string();
    let frame = e.traceback(py).and_then(|tb| {
        let frames = py
            .import("traceback")
            .and_then(|m| m.call_method1("extract_tb", (tb,)))
            .ok()?;
        let last = frames.get_item(-1).ok()?;
        let file: String = last.getattr("filename").ok()?.extract().ok()?;
        let line: usize = last.getattr("lineno").ok()?.extract().ok()?;
        let name: String = last.getattr("name").ok()?.extract().ok()?;
        Some(format!(" (at {file}:{line} in {name})"))
    });
    format!("{kind}: {message}{}", frame.unwrap_or_default())
}

/// Response headers, latin-1 bytes.
type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// The write side of a connection, shared by the request loop and the
/// app's `write()` callable.
struct Output {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Set by `start_response`, sent with the first non-empty chunk.
    head: Option<(Vec<u8>, Headers)>,
    head_sent: bool,
}

impl Output {
    /// Frame the head into `buf` if it is not sent yet.
    fn head_into_buf(&mut self) -> PyResult<()> {
        if self.head_sent {
            return Ok(());
        }
        let Some((status, headers)) = &self.head else {
            return Err(PyAssertionError::new_err(
                "the application sent a body before calling start_response",
            ));
        };
        Head::encode_into(
            &mut self.buf,
            status,
            headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
        );
        self.head_sent = true;
        Ok(())
    }

    fn body_into_buf(&mut self, chunk: &[u8]) {
        for part in chunk.chunks(protocol::MAX_FRAME) {
            let at = protocol::begin(&mut self.buf, protocol::BODY);
            self.buf.extend_from_slice(part);
            protocol::finish(&mut self.buf, at);
        }
    }

    /// Send what is in `buf`, the GIL released.
    fn flush(&mut self, py: Python<'_>) -> io::Result<()> {
        let Self { stream, buf, .. } = self;
        let sent = py.detach(|| stream.write_all(buf));
        buf.clear();
        sent
    }
}

fn lock(output: &Mutex<Output>) -> MutexGuard<'_, Output> {
    output.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serve requests from one connection until the server closes it.
///
/// The thread stays attached to the interpreter for the connection's life
/// and releases the GIL while it waits for the next frame: attaching per
/// request would create and destroy a Python thread state each time (with
/// its data stack mapped and unmapped). Frames are read through a buffer,
/// so a request is usually one `recv`.
fn serve(stream: UnixStream, app: &Py<PyAny>, constants: &Constants) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 << 10, stream.try_clone()?);
    let output = Arc::new(Mutex::new(Output {
        stream,
        buf: Vec::with_capacity(64 << 10),
        head: None,
        head_sent: false,
    }));
    let mut frame = Vec::with_capacity(16 << 10);
    Python::attach(|py| {
        loop {
            let Some(kind) = py.detach(|| protocol::read_frame(&mut reader, &mut frame))? else {
                return Ok(());
            };
            match kind {
                protocol::REQUEST => {
                    let request = Request::decode(&frame)?;
                    handle(py, app, constants, &request, &output, &mut reader)?;
                }
                protocol::PING => {
                    // Answered with the GIL taken back: a worker whose
                    // interpreter is stuck (a thread that never releases
                    // it) does not answer.
                    let mut out = lock(&output);
                    let stream = &mut out.stream;
                    py.detach(|| protocol::write_frame(stream, protocol::PONG, &[]))?;
                }
                // A cancel that crossed the end of its response.
                protocol::CANCEL => {}
                _ => return Err(protocol::Malformed("unexpected frame kind").into()),
            }
        }
    })
}

/// Run the app for one request and send its response. `Err` only when the
/// connection to the server is lost.
fn handle(
    py: Python<'_>,
    app: &Py<PyAny>,
    constants: &Constants,
    request: &Request<'_>,
    output: &Arc<Mutex<Output>>,
    reader: &mut BufReader<UnixStream>,
) -> io::Result<()> {
    {
        let mut out = lock(output);
        out.head = None;
        out.head_sent = false;
        out.buf.clear();
    }
    let outcome = environ(py, constants, request).and_then(|environ| {
        let start = Bound::new(
            py,
            StartResponse {
                output: Arc::clone(output),
            },
        )?;
        app.bind(py).call1((environ, start))
    });
    let sent = match outcome {
        Ok(result) => {
            let sent = respond(py, &result, output, reader);
            // PEP 3333: close() on every path, also when the client left.
            let closed = if result.hasattr("close").unwrap_or(false) {
                result.call_method0("close").map(drop)
            } else {
                Ok(())
            };
            match (sent, closed) {
                (Err(e), _) | (Ok(()), Err(e)) => Err(e),
                (Ok(()), Ok(())) => Ok(()),
            }
        }
        Err(e) => Err(e),
    };
    let mut out = lock(output);
    match sent {
        Ok(()) => {
            if let Err(e) = out.head_into_buf() {
                return fail(py, &mut out, &e);
            }
            let at = protocol::begin(&mut out.buf, protocol::END);
            protocol::finish(&mut out.buf, at);
            out.flush(py)
        }
        Err(e) => fail(py, &mut out, &e),
    }
}

/// Log the app's exception (the traceback to `wsgi.errors`, which is the
/// server's log) and tell the server: a 500 if nothing was sent yet, else
/// the response is cut.
fn fail(py: Python<'_>, out: &mut Output, e: &PyErr) -> io::Result<()> {
    if e.is_instance_of::<ConnectionLost>(py) {
        return Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "server went away",
        ));
    }
    e.print(py);
    out.buf.clear();
    let reason = describe(py, e);
    let at = protocol::begin(&mut out.buf, protocol::FAILED);
    out.buf.extend_from_slice(reason.as_bytes());
    protocol::finish(&mut out.buf, at);
    out.flush(py)
}

pyo3::create_exception!(
    portcullis_wsgi,
    ConnectionLost,
    pyo3::exceptions::PyException,
    "The connection to the server was lost while sending a response."
);

fn lost(e: &io::Error) -> PyErr {
    ConnectionLost::new_err(e.to_string())
}

/// The environ dict: the CGI pairs as latin-1 strings, and the `wsgi.*`
/// keys.
fn environ<'py>(
    py: Python<'py>,
    constants: &Constants,
    request: &Request<'_>,
) -> PyResult<Bound<'py, PyDict>> {
    let environ = PyDict::new(py);
    for (key, value) in &request.vars {
        let key = std::str::from_utf8(key).map_err(|_| PyValueError::new_err("environ key"))?;
        environ.set_item(PyString::intern(py, key), latin1(py, value))?;
    }
    let input = match &request.body {
        BodyRef::Inline(bytes) => constants.bytes_io.call1(py, (PyBytes::new(py, bytes),))?,
        BodyRef::File { path, .. } => constants.open.call1(py, (*path, "rb"))?,
    };
    environ.set_item(pyo3::intern!(py, "wsgi.input"), input)?;
    environ.set_item(pyo3::intern!(py, "wsgi.version"), &constants.version)?;
    environ.set_item(pyo3::intern!(py, "wsgi.errors"), &constants.errors)?;
    environ.set_item(pyo3::intern!(py, "wsgi.multithread"), constants.multithread)?;
    environ.set_item(
        pyo3::intern!(py, "wsgi.multiprocess"),
        constants.multiprocess,
    )?;
    environ.set_item(pyo3::intern!(py, "wsgi.run_once"), false)?;
    environ.set_item(pyo3::intern!(py, "wsgi.input_terminated"), true)?;
    environ.set_item(
        pyo3::intern!(py, "wsgi.file_wrapper"),
        &constants.file_wrapper,
    )?;
    Ok(environ)
}

/// Bytes as a PEP 3333 native string: each byte one character (latin-1).
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    if let Ok(ascii) = std::str::from_utf8(bytes)
        && bytes.is_ascii()
    {
        return PyString::new(py, ascii);
    }
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    PyString::new(py, &text)
}

/// A native string's latin-1 bytes, or `what` is not latin-1.
fn latin1_bytes(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    let text = value
        .cast::<PyString>()
        .map_err(|_| {
            PyTypeError::new_err(format!("{what} must be a str, not {}", type_name(value)))
        })?
        .to_cow()?;
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| PyValueError::new_err(format!("{what} {text:?} is not latin-1 (PEP 3333)")))
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// Send the response `result` (the app's return value).
fn respond(
    py: Python<'_>,
    result: &Bound<'_, PyAny>,
    output: &Arc<Mutex<Output>>,
    reader: &mut BufReader<UnixStream>,
) -> PyResult<()> {
    if let Ok(wrapper) = result.cast::<FileWrapper>()
        && let Some(sent) = send_file(py, wrapper.get(), output)
    {
        return sent;
    }
    // A list or tuple: the whole body is known; one buffer, one write.
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        let mut out = lock(output);
        let mut first = true;
        for chunk in result.try_iter()? {
            let chunk = chunk?;
            let bytes = chunk_bytes(&chunk)?;
            if bytes.is_empty() {
                continue;
            }
            if first {
                out.head_into_buf()?;
                first = false;
            }
            out.body_into_buf(bytes);
        }
        return Ok(());
    }
    // Anything else is streamed: each chunk is sent as soon as it is made.
    for chunk in result.try_iter()? {
        let chunk = chunk?;
        let bytes = chunk_bytes(&chunk)?;
        if bytes.is_empty() {
            continue;
        }
        let mut out = lock(output);
        out.head_into_buf()?;
        out.body_into_buf(bytes);
        out.flush(py).map_err(|e| lost(&e))?;
        drop(out);
        if cancelled(reader) {
            break;
        }
    }
    Ok(())
}

fn chunk_bytes<'a>(chunk: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    chunk
        .cast::<PyBytes>()
        .map(PyBytesMethods::as_bytes)
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "the application's iterable yielded a {}, not bytes (PEP 3333)",
                type_name(chunk)
            ))
        })
}

/// Has the server sent [`protocol::CANCEL`] (the client went away)? A
/// non-blocking read of the connection between two chunks: during a
/// response the server sends nothing else, so whatever arrives (or the end
/// of the stream) means stop. What arrived stays in the buffer: the
/// request loop reads the cancel frame next and ignores it.
fn cancelled(reader: &mut BufReader<UnixStream>) -> bool {
    if !reader.buffer().is_empty() {
        return true;
    }
    if reader.get_ref().set_nonblocking(true).is_err() {
        return false;
    }
    let got = reader.fill_buf().map(<[u8]>::len);
    let _ = reader.get_ref().set_nonblocking(false);
    // Ok(0) is the end of the stream: the server is gone.
    got.is_ok()
}

/// `wsgi.file_wrapper` over a regular file: its bytes from the current
/// position read by Rust with the GIL released. `None` when the object is
/// not a real file (no `fileno()`, a pipe): it is then iterated like any
/// iterable.
fn send_file(
    py: Python<'_>,
    wrapper: &FileWrapper,
    output: &Arc<Mutex<Output>>,
) -> Option<PyResult<()>> {
    let filelike = wrapper.filelike.bind(py);
    let fd: i32 = filelike.call_method0("fileno").ok()?.extract().ok()?;
    let position: u64 = filelike.call_method0("tell").ok()?.extract().ok()?;
    // A new open of the same file (not a borrow of the fd, which would
    // need unsafe): /proc/self/fd names it.
    let mut file = std::fs::File::open(format!("/proc/self/fd/{fd}")).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut out = lock(output);
    let limit = out.head.as_ref().and_then(|(_, headers)| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"content-length"))
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok())
    });
    Some((|| -> PyResult<()> {
        out.head_into_buf()?;
        let out = &mut *out;
        py.detach(|| -> io::Result<()> {
            use std::io::Seek as _;
            file.seek(io::SeekFrom::Start(position))?;
            let mut left = limit.unwrap_or(u64::MAX);
            let mut block = vec![0u8; FILE_BLOCK];
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(FILE_BLOCK).min(FILE_BLOCK);
                let n = file.read(block.get_mut(..want).unwrap_or_default())?;
                if n == 0 {
                    break;
                }
                out.body_into_buf(block.get(..n).unwrap_or_default());
                out.stream.write_all(&out.buf)?;
                out.buf.clear();
                left -= n as u64;
            }
            Ok(())
        })
        .map_err(|e| lost(&e))
    })())
}

/// The `start_response` callable of one request.
#[pyclass(frozen)]
struct StartResponse {
    output: Arc<Mutex<Output>>,
}

#[pymethods]
impl StartResponse {
    /// PEP 3333: store the status and headers; with `exc_info`, replace
    /// them if nothing was sent yet, else re-raise the app's exception.
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let out = lock(&slf.get().output);
            if let Some(exc_info) = exc_info {
                if out.head_sent {
                    let value = exc_info.get_item(1)?;
                    return Err(PyErr::from_value(value));
                }
            } else if out.head.is_some() {
                return Err(PyAssertionError::new_err(
                    "start_response was called a second time without exc_info (PEP 3333)",
                ));
            }
        }
        let status_bytes = latin1_bytes(status, "the status")?;
        let valid_status = status_bytes.len() >= 4
            && status_bytes.iter().take(3).all(u8::is_ascii_digit)
            && status_bytes.get(3) == Some(&b' ');
        if !valid_status {
            return Err(PyValueError::new_err(format!(
                "the status {status} is not \"<3 digits> <reason>\" (PEP 3333)"
            )));
        }
        let mut list = Vec::new();
        for item in headers.try_iter()? {
            let item = item?;
            let pair = item.cast::<PyTuple>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "a response header must be a (name, value) tuple, not {}",
                    type_name(&item)
                ))
            })?;
            if pair.len() != 2 {
                return Err(PyTypeError::new_err(
                    "a response header must be a (name, value) tuple",
                ));
            }
            let name = latin1_bytes(&pair.get_item(0)?, "a header name")?;
            let value = latin1_bytes(&pair.get_item(1)?, "a header value")?;
            if is_hop_by_hop(&name) {
                return Err(PyAssertionError::new_err(format!(
                    "the hop-by-hop header {} is the server's to send (PEP 3333)",
                    String::from_utf8_lossy(&name)
                )));
            }
            if value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(PyValueError::new_err(format!(
                    "the value of header {} has a line break",
                    String::from_utf8_lossy(&name)
                )));
            }
            list.push((name, value));
        }
        lock(&slf.get().output).head = Some((status_bytes, list));
        Ok(slf.getattr("write")?.unbind())
    }

    /// The `write(data)` callable `start_response` returns: the bytes go
    /// out now, the head before them if not sent yet.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!("write() takes bytes, not {}", type_name(data)))
        })?;
        let mut out = lock(&self.output);
        out.head_into_buf()?;
        out.body_into_buf(bytes.as_bytes());
        out.flush(py).map_err(|e| lost(&e))
    }
}

fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 8] = [
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// `wsgi.file_wrapper(filelike, block_size=8192)`: sent by Rust when it is
/// over a real file, else iterated in `block_size` reads.
#[pyclass(frozen)]
struct FileWrapper {
    filelike: Py<PyAny>,
    block_size: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size = 8192))]
    fn new(filelike: Py<PyAny>, block_size: usize) -> Self {
        Self {
            filelike,
            block_size: block_size.max(1),
        }
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let chunk = self
            .filelike
            .bind(py)
            .call_method1("read", (self.block_size,))?;
        Ok((chunk.len().unwrap_or(0) > 0).then(|| chunk.unbind()))
    }

    /// Close the file (PEP 3333: the wrapper's `close()` closes it).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }
}
