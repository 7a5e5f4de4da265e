//! The pool against real worker processes and real (small) WSGI apps:
//! PEP 3333 behaviour, and gunicorn's arbiter duties (crash, hang,
//! recycle, reload, boot errors).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use portcullis_wsgi::{Body, Environ, Failure, Origin, Pool, PoolConfig};

fn config(dir: &Path, app: &str) -> PoolConfig {
    PoolConfig {
        command: vec![env!("CARGO_BIN_EXE_portcullis-wsgi-worker").into()],
        app: app.to_owned(),
        paths: vec![dir.to_path_buf()],
        virtualenv: None,
        env: vec![("REMOTE_USER".to_owned(), "from-the-os".to_owned())],
        workers: 1,
        threads: 1,
        timeout: Duration::from_secs(30),
        max_requests: 0,
        max_requests_jitter: 0,
        boot_timeout: Duration::from_secs(30),
        name: "/".to_owned(),
    }
}

fn write_app(dir: &Path, module: &str, source: &str) {
    std::fs::write(dir.join(format!("{module}.py")), source).unwrap();
}

async fn start(config: PoolConfig) -> Pool {
    // The workers' stderr (tracebacks) shows in a failing test's output.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let pool = Pool::start(config).unwrap();
    pool.ready().await.unwrap();
    pool
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn environ(request: http::Request<()>, length: u64) -> Environ {
    let (parts, ()) = request.into_parts();
    let origin = Origin {
        remote_addr: Some("127.0.0.1".parse().unwrap()),
        remote_port: Some(50000),
        scheme: "http",
        server_port: 8000,
        remote_user: None,
    };
    Environ::build(&parts, "", &origin, length).unwrap()
}

async fn call(pool: &Pool, request: http::Request<()>, body: &[u8]) -> Result<Answer, Failure> {
    let env = environ(request, body.len() as u64);
    let response = pool
        .call(&env, Body::Memory(Bytes::copy_from_slice(body)))
        .await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes().to_vec();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// `GET /`'s body, unread.
async fn streamed(pool: &Pool) -> portcullis_wsgi::ResponseBody {
    let env = environ(http::Request::get("/").body(()).unwrap(), 0);
    let response = pool.call(&env, Body::Memory(Bytes::new())).await;
    response.unwrap().into_body()
}

async fn get(pool: &Pool, path: &str) -> Result<Answer, Failure> {
    call(pool, http::Request::get(path).body(()).unwrap(), b"").await
}

const PROBE: &str = r#"
import json, os, sys

closed = []

class Body:
    def __init__(self, chunks):
        self.chunks = chunks
    def __iter__(self):
        return iter(self.chunks)
    def close(self):
        closed.append(1)

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/environ":
        start_response("200 OK", [("Content-Type", "application/json")])
        keys = {k: v for k, v in environ.items() if isinstance(v, str)}
        flags = {k: environ[k] for k in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated")}
        return [json.dumps({"str": keys, "flags": flags, "version": list(environ["wsgi.version"])}).encode()]
    if path == "/input":
        i = environ["wsgi.input"]
        out = [i.readline(), i.read(3), i.readline(), i.readlines(), i.read()]
        start_response("200 OK", [])
        return [json.dumps([x.decode() if isinstance(x, bytes) else [y.decode() for y in x] for x in out]).encode()]
    if path == "/iterate":
        start_response("200 OK", [])
        return [json.dumps([line.decode() for line in environ["wsgi.input"]]).encode()]
    if path == "/write":
        write = start_response("201 Created", [("X-A", "1")])
        write(b"written ")
        return [b"and returned"]
    if path == "/exc_info":
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("late")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Second", "2")], sys.exc_info())
        return [b"replaced"]
    if path == "/generator-status":
        def body():
            start_response("202 Accepted", [])
            yield b"from a generator"
        return body()
    if path == "/latin1":
        start_response("200 OK", [("X-Latin", "caf\xe9")])
        return [environ.get("HTTP_X_LATIN", "").encode("latin-1")]
    if path == "/close":
        start_response("200 OK", [])
        return Body([b"closed so far: ", str(len(closed)).encode()])
    if path == "/raise":
        raise RuntimeError("secret detail")
    if path == "/no-start":
        return [b"x"]
    if path == "/bad-header":
        start_response("200 OK", [("X-Bad", "\u20ac")])
        return [b""]
    if path == "/str-chunk":
        start_response("200 OK", [])
        return ["not bytes"]
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    if path == "/pid":
        start_response("200 OK", [])
        return [str(os.getpid()).encode()]
    if path == "/file":
        f = open(__file__, "rb")
        f.seek(7)
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](f)
    if path == "/errors":
        environ["wsgi.errors"].write("a line for the log\n")
        start_response("200 OK", [])
        return [b"logged"]
    start_response("404 Not Found", [])
    return [b"no"]
"#;

async fn probe() -> (tempfile::TempDir, Pool) {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path(), "probe", PROBE);
    let pool = start(config(dir.path(), "probe:application")).await;
    (dir, pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environ_has_the_cgi_keys_and_nothing_of_the_os_environment() {
    let (_dir, pool) = probe().await;
    let answer = call(
        &pool,
        http::Request::get("/environ?a=1")
            .header("host", "example.com")
            .body(())
            .unwrap(),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let keys = v["str"].as_object().unwrap();
    let mut names: Vec<&str> = keys.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "HTTP_HOST",
            "PATH_INFO",
            "QUERY_STRING",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "REQUEST_METHOD",
            "SCRIPT_NAME",
            "SERVER_NAME",
            "SERVER_PORT",
            "SERVER_PROTOCOL",
            "wsgi.url_scheme"
        ]
    );
    assert_eq!(keys["QUERY_STRING"], "a=1");
    assert_eq!(keys["SERVER_NAME"], "example.com");
    assert_eq!(keys["SERVER_PORT"], "80");
    assert_eq!(
        v["flags"],
        serde_json::json!({"wsgi.multithread": false, "wsgi.multiprocess": false, "wsgi.run_once": false, "wsgi.input_terminated": true})
    );
    assert_eq!(v["version"], serde_json::json!([1, 0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsgi_input_reads_lines_sizes_and_the_rest() {
    let (_dir, pool) = probe().await;
    let post = || http::Request::post("/input").body(()).unwrap();
    let answer = call(&pool, post(), b"line1\nabcdef\nx\ny\n").await.unwrap();
    assert_eq!(
        answer.text(),
        r#"["line1\n", "abc", "def\n", ["x\n", "y\n"], ""]"#
    );
    let answer = call(
        &pool,
        http::Request::post("/iterate").body(()).unwrap(),
        b"a\nb\nc",
    )
    .await
    .unwrap();
    assert_eq!(answer.text(), r#"["a\n", "b\n", "c"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_response_returns_write_and_honours_exc_info() {
    let (_dir, pool) = probe().await;
    let answer = get(&pool, "/write").await.unwrap();
    assert_eq!(answer.status, 201);
    assert_eq!(answer.headers["x-a"], "1");
    assert_eq!(answer.text(), "written and returned");

    let answer = get(&pool, "/exc_info").await.unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers.get("x-first"), None);
    assert_eq!(answer.headers["x-second"], "2");
    assert_eq!(answer.text(), "replaced");

    let answer = get(&pool, "/generator-status").await.unwrap();
    assert_eq!(answer.status, 202);
    assert_eq!(answer.text(), "from a generator");

    let answer = get(&pool, "/empty").await.unwrap();
    assert_eq!(answer.status, 204);
    assert_eq!(answer.text(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latin1_headers_go_both_ways() {
    let (_dir, pool) = probe().await;
    let answer = call(
        &pool,
        http::Request::get("/latin1")
            .header(
                "x-latin",
                http::HeaderValue::from_bytes(b"na\xefve").unwrap(),
            )
            .body(())
            .unwrap(),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(answer.headers["x-latin"].as_bytes(), b"caf\xe9");
    assert_eq!(answer.body, b"na\xefve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_called_on_every_response() {
    let (_dir, pool) = probe().await;
    assert_eq!(
        get(&pool, "/close").await.unwrap().text(),
        "closed so far: 0"
    );
    assert_eq!(
        get(&pool, "/close").await.unwrap().text(),
        "closed so far: 1"
    );
    assert_eq!(
        get(&pool, "/close").await.unwrap().text(),
        "closed so far: 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_errors_and_protocol_breaks_are_500s_and_the_worker_goes_on() {
    let (_dir, pool) = probe().await;
    for path in ["/raise", "/no-start", "/bad-header", "/str-chunk"] {
        assert_eq!(get(&pool, path).await.err(), Some(Failure::App), "{path}");
    }
    assert_eq!(get(&pool, "/write").await.unwrap().status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_wrapper_sends_the_file_from_its_position() {
    let (dir, pool) = probe().await;
    let answer = get(&pool, "/file").await.unwrap();
    let source = std::fs::read(dir.path().join("probe.py")).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, source[7..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_is_spooled_to_a_file_and_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        "upload",
        r#"
import hashlib
def application(environ, start_response):
    i = environ["wsgi.input"]
    h = hashlib.sha256()
    n = 0
    while True:
        block = i.read(65536)
        if not block:
            break
        h.update(block)
        n += len(block)
    start_response("200 OK", [])
    return [("%d %s %s" % (n, environ["CONTENT_LENGTH"], h.hexdigest())).encode()]
"#,
    );
    let pool = start(config(dir.path(), "upload:application")).await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let body = Body::receive(
        http_body_util::Full::new(Bytes::from(data.clone())),
        Body::MEMORY_LIMIT,
    )
    .await
    .unwrap();
    assert!(matches!(body, Body::File { .. }));
    let env = environ(http::Request::post("/").body(()).unwrap(), body.len());
    let response = pool.call(&env, body).await.unwrap();
    let text = response.into_body().collect().await.unwrap().to_bytes();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&data))
    };
    assert_eq!(
        String::from_utf8_lossy(&text),
        format!("3000000 3000000 {digest}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_chunk_reaches_the_caller_before_the_next_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("go");
    write_app(
        dir.path(),
        "stream",
        &format!(
            r#"
import os, time
def application(environ, start_response):
    start_response("200 OK", [])
    def body():
        yield b"first"
        while not os.path.exists({flag:?}):
            time.sleep(0.01)
        yield b"second"
    return body()
"#,
            flag = flag.to_str().unwrap()
        ),
    );
    let pool = start(config(dir.path(), "stream:application")).await;
    let mut body = streamed(&pool).await;
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first");
    std::fs::write(&flag, b"").unwrap();
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(second, "second");
    assert!(body.frame().await.is_none());
}

/// This process's resident memory (the pool runs in it), in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_response_to_a_client_that_does_not_read_costs_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        "huge",
        r#"
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    if environ["PATH_INFO"] == "/small":
        return [b"small"]
    block = bytes(range(256)) * 4096
    return (block for _ in range(200))
"#,
    );
    let pool = start(config(dir.path(), "huge:application")).await;
    let before = resident();
    // 200 MiB made by a generator; the caller reads nothing yet.
    let mut body = streamed(&pool).await;
    // One worker with one thread: it answers this only once it has handed
    // over the whole 200 MiB.
    let small = get(&pool, "/small").await.unwrap();
    assert_eq!((small.status, small.text().as_str()), (200, "small"));
    let grown = resident().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "resident memory grew by {grown} bytes for a response the client did not read"
    );
    let mut length = 0usize;
    let mut position = 0u8;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        for &b in &data {
            assert_eq!(b, position, "byte {length} of the response");
            position = position.wrapping_add(1);
            length += 1;
        }
    }
    assert_eq!(length, 200 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_the_iterable_and_close_runs() {
    let dir = tempfile::tempdir().unwrap();
    let closed = dir.path().join("closed");
    write_app(
        dir.path(),
        "endless",
        &format!(
            r#"
import time
class Endless:
    def __iter__(self):
        while True:
            time.sleep(0.01)
            yield b"x" * 1000
    def close(self):
        open({closed:?}, "w").close()
def application(environ, start_response):
    start_response("200 OK", [])
    return Endless()
"#,
            closed = closed.to_str().unwrap()
        ),
    );
    let pool = start(config(dir.path(), "endless:application")).await;
    let mut body = streamed(&pool).await;
    body.frame().await.unwrap().unwrap();
    drop(body);
    for _ in 0..500 {
        if closed.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed.exists(), "close() was not called");
    // The worker is free again.
    let mut again = streamed(&pool).await;
    assert_eq!(
        again
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap()
            .len(),
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validator_finds_nothing_to_warn_about() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path(), "probe", PROBE);
    write_app(
        dir.path(),
        "validated",
        r#"
import warnings
from wsgiref.validate import validator
warnings.simplefilter("error")

def inner(environ, start_response):
    path = environ["PATH_INFO"]
    text = [("Content-Type", "text/plain")]
    if path == "/echo":
        i = environ["wsgi.input"]
        body = i.readline() + i.read(2) + b"".join(i.readlines()) + b"".join(i) + i.read(100)
        start_response("200 OK", text + [("Content-Length", str(len(body)))])
        return [body]
    if path == "/write":
        write = start_response("200 OK", text)
        write(b"written ")
        return [b"returned"]
    if path == "/stream":
        start_response("200 OK", text)
        def body():
            yield b"a"
            yield b"b"
        return body()
    if path == "/file":
        start_response("200 OK", text)
        return environ["wsgi.file_wrapper"](open(__file__, "rb"), 4096)
    if path == "/latin1":
        start_response("200 OK", text + [("X-Latin", "caf\xe9")])
        return [b"latin-1"]
    start_response("404 Not Found", text)
    return [b"not found"]

application = validator(inner)
"#,
    );
    let pool = start(config(dir.path(), "validated:application")).await;
    assert_eq!(
        get(&pool, "/write").await.unwrap().text(),
        "written returned"
    );
    assert_eq!(get(&pool, "/stream").await.unwrap().text(), "ab");
    assert_eq!(
        get(&pool, "/latin1").await.unwrap().headers["x-latin"].as_bytes(),
        b"caf\xe9"
    );
    assert_eq!(get(&pool, "/missing").await.unwrap().status, 404);
    let file = get(&pool, "/file").await.unwrap();
    assert_eq!(
        file.body,
        std::fs::read(dir.path().join("validated.py")).unwrap()
    );
    let answer = call(
        &pool,
        http::Request::post("/echo")
            .header("content-type", "text/plain")
            .body(())
            .unwrap(),
        b"one\ntwo\nthree\nfour",
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "one\ntwo\nthree\nfour");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_is_502_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        "crash",
        r#"
import os
def application(environ, start_response):
    if environ["PATH_INFO"] == "/die":
        os._exit(1)
    start_response("200 OK", [])
    return [str(os.getpid()).encode()]
"#,
    );
    let pool = start(config(dir.path(), "crash:application")).await;
    let before = get(&pool, "/").await.unwrap().text();
    assert_eq!(get(&pool, "/die").await.err(), Some(Failure::WorkerDied));
    let after = get(&pool, "/").await.unwrap();
    assert_eq!(after.status, 200);
    assert_ne!(after.text(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_timeout_is_504_and_its_worker_replaced() {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        "hang",
        r#"
import os, time
def application(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        time.sleep(60)
    start_response("200 OK", [])
    return [str(os.getpid()).encode()]
"#,
    );
    let mut config = config(dir.path(), "hang:application");
    config.timeout = Duration::from_secs(1);
    let pool = start(config).await;
    let before = get(&pool, "/").await.unwrap().text();
    assert_eq!(get(&pool, "/hang").await.err(), Some(Failure::Timeout));
    let after = get(&pool, "/").await.unwrap();
    assert_eq!(after.status, 200);
    assert_ne!(after.text(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_recycles_workers_without_dropping_a_request() {
    let (_dir, pool) = {
        let dir = tempfile::tempdir().unwrap();
        write_app(dir.path(), "probe", PROBE);
        let mut config = config(dir.path(), "probe:application");
        config.workers = 2;
        config.max_requests = 3;
        config.max_requests_jitter = 2;
        let pool = start(config).await;
        (dir, pool)
    };
    // A worker past its limit serves on until its replacement is ready, so
    // go on until replacements have answered; every request is answered.
    let mut pids = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while pids.len() < 6 && tokio::time::Instant::now() < deadline {
        let mut calls = Vec::new();
        for _ in 0..8 {
            let pool = pool.clone();
            calls.push(tokio::spawn(async move { get(&pool, "/pid").await }));
        }
        for call in calls {
            let answer = call.await.unwrap().unwrap();
            assert_eq!(answer.status, 200);
            pids.insert(answer.text());
        }
    }
    assert!(pids.len() >= 6, "{} workers", pids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_brings_new_code_with_no_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let app = |version: u32| {
        format!(
            r#"
import time
def application(environ, start_response):
    time.sleep(0.005)
    start_response("200 OK", [])
    return [b"v{version}"]
"#
        )
    };
    write_app(dir.path(), "versioned", &app(1));
    let mut config = config(dir.path(), "versioned:application");
    config.workers = 2;
    let pool = start(config).await;
    assert_eq!(get(&pool, "/").await.unwrap().text(), "v1");
    write_app(dir.path(), "versioned", &app(2));
    // Requests keep coming while the new generation boots and the old one
    // drains.
    let load = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..400 {
                let answer = get(&pool, "/").await.unwrap();
                assert_eq!(answer.status, 200);
                seen.push(answer.text());
                if seen.last().is_some_and(|v| v == "v2") && seen.len() > 20 {
                    break;
                }
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    pool.reload();
    let seen = load.await.unwrap();
    assert_eq!(seen.last().map(String::as_str), Some("v2"), "{seen:?}");
    assert_eq!(get(&pool, "/").await.unwrap().text(), "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_errors_say_what_was_not_found_or_what_raised() {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        "broken",
        "import os\n\ndef helper():\n    raise RuntimeError('no settings')\n\nhelper()\n",
    );
    write_app(
        dir.path(),
        "fine",
        "def application(e, s):\n    pass\nvalue = 3\n",
    );
    let cases = [
        (
            "missing:application",
            "app \"missing:application\": no module named \"missing\"",
        ),
        (
            "broken:application",
            "app \"broken:application\": importing module \"broken\" failed: RuntimeError: no settings (at ",
        ),
        (
            "fine:app",
            "app \"fine:app\": module \"fine\" has no attribute \"app\"",
        ),
        (
            "fine:value",
            "app \"fine:value\": \"value\" is a int, not a WSGI callable",
        ),
    ];
    for (app, expected) in cases {
        let pool = Pool::start(config(dir.path(), app)).unwrap();
        let reason = pool.ready().await.unwrap_err();
        assert!(reason.starts_with(expected), "{app}: {reason}");
        if app.starts_with("broken") {
            assert!(reason.contains("broken.py:4 in helper)"), "{reason}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtualenv_of_another_python_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path(), "probe", PROBE);
    let venv = dir.path().join("venv");
    std::fs::create_dir_all(&venv).unwrap();
    std::fs::write(
        venv.join("pyvenv.cfg"),
        "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.9.18\n",
    )
    .unwrap();
    let mut config = config(dir.path(), "probe:application");
    config.virtualenv = Some(venv.clone());
    let reason = Pool::start(config).unwrap().ready().await.unwrap_err();
    assert!(
        reason.starts_with(&format!(
            "virtualenv {} was made by Python 3.9.18, but this portcullis embeds Python 3.",
            venv.display()
        )),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multithread_and_multiprocess_are_true_to_the_setup() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path(), "probe", PROBE);
    let mut config = config(dir.path(), "probe:application");
    config.workers = 2;
    config.threads = 3;
    let pool = start(config).await;
    let mut calls = Vec::new();
    for _ in 0..12 {
        let pool = pool.clone();
        calls.push(tokio::spawn(async move { get(&pool, "/environ").await }));
    }
    for call in calls {
        let answer = call.await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(v["flags"]["wsgi.multithread"], true);
        assert_eq!(v["flags"]["wsgi.multiprocess"], true);
    }
}
