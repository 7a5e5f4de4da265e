//! `[[wsgi]]`: a real Django project with DRF (tests/wsgi/) run inside the
//! real `portcullis` binary, from a real virtualenv with Django and
//! djangorestframework installed from the Python package index. `PORTCULLIS_TEST_VENV` names
//! it (`export PORTCULLIS_TEST_VENV=$(scripts/python-venv)`); without it these
//! tests fail, they do not skip.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{SIGNING_KEY, Served, TestCert, run, serve_in};

const PASSWORD: &str = "correct horse battery staple";

fn venv() -> PathBuf {
    let venv = std::env::var_os("PORTCULLIS_TEST_VENV").map(PathBuf::from);
    let venv = venv.unwrap_or_else(|| {
        panic!(
            "PORTCULLIS_TEST_VENV is not set. The WSGI tests run Django from a virtualenv: \
             make one with `export PORTCULLIS_TEST_VENV=$(scripts/python-venv)` and run the tests again"
        )
    });
    assert!(
        venv.join("bin/python").exists(),
        "PORTCULLIS_TEST_VENV={} is not a virtualenv; make one with scripts/python-venv",
        venv.display()
    );
    venv
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The downloadable file's bytes (300,000 of them, not a multiple of any
/// block size).
fn download_bytes() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect()
}

/// A copy of the Django project in a fresh directory, its database
/// migrated, and a portcullis database with the user `alice`.
struct Site {
    dir: tempfile::TempDir,
    venv: PathBuf,
}

impl Site {
    async fn new() -> Self {
        let venv = venv();
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wsgi"),
            &site,
        );
        std::fs::write(site.join("download.bin"), download_bytes()).unwrap();
        let migrate = tokio::process::Command::new(venv.join("bin/python"))
            .args(["manage.py", "migrate", "-v0"])
            .current_dir(&site)
            .env("MYSITE_DB", dir.path().join("django.sqlite3"))
            .output()
            .await
            .unwrap();
        assert!(
            migrate.status.success(),
            "manage.py migrate: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        let mut create = serve_in(dir.path());
        create.args(["user", "create", "alice", "--password-stdin"]);
        let out = run(create, &format!("{PASSWORD}\n")).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        Self { dir, venv }
    }

    fn site(&self) -> PathBuf {
        self.dir.path().join("site")
    }

    /// `[[wsgi]]` for the Django project at `/app/`, plus `extra` TOML.
    fn config(&self, extra: &str, workers: usize) -> PathBuf {
        self.config_with(extra, "", workers)
    }

    /// [`Site::config`] with more keys (`mount`) in the `[[wsgi]]` table.
    fn config_with(&self, extra: &str, mount: &str, workers: usize) -> PathBuf {
        let toml = format!(
            r#"{extra}
[[wsgi]]
prefix = "/app/"
app = "mysite.wsgi:application"
virtualenv = {venv:?}
workers = {workers}
{mount}
env = {{ DJANGO_SETTINGS_MODULE = "mysite.settings", MYSITE_DB = {db:?}, MYSITE_JWT_KEY = "{SIGNING_KEY}" }}
"#,
            venv = self.venv.display().to_string(),
            db = self.dir.path().join("django.sqlite3").display().to_string(),
        );
        let path = self.site().join("portcullis.toml");
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// `portcullis --config … serve`, ready (`/readyz` 200).
    async fn serve(&self, extra: &str, workers: usize) -> Served {
        let served = self.start(extra, workers).await;
        wait_ready(&served, &reqwest::Client::new(), &served.base).await;
        served
    }

    /// `portcullis --config … serve`, listening.
    async fn start(&self, extra: &str, workers: usize) -> Served {
        let mut command = serve_in(self.dir.path());
        command.arg("--config").arg(self.config(extra, workers));
        Served::start(command).await.unwrap()
    }

    /// [`Site::serve`] with more keys in the `[[wsgi]]` table.
    async fn serve_mount(&self, mount: &str, workers: usize) -> Served {
        let mut command = serve_in(self.dir.path());
        command
            .arg("--config")
            .arg(self.config_with("", mount, workers));
        let served = Served::start(command).await.unwrap();
        wait_ready(&served, &reqwest::Client::new(), &served.base).await;
        served
    }
}

async fn wait_ready(served: &Served, client: &reqwest::Client, base: &str) {
    for _ in 0..600 {
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never ready:\n{}", served.log());
}

async fn token(served: &Served) -> String {
    let login = served.login("alice", PASSWORD).await;
    login["access"].as_str().unwrap().to_owned()
}

async fn get_json(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn django_sees_the_token_user_and_nothing_a_client_claims() {
    let site = Site::new().await;
    let served = site.serve("", 2).await;
    let client = reqwest::Client::new();
    let access = token(&served).await;
    let bearer = format!("Bearer {access}");

    let (status, body) = get_json(
        &client,
        &served.url("/app/me/"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"username": "alice", "auth": "None"}))
    );

    // Anonymous (auth = "optional"): DRF's own refusal.
    let (status, body) = get_json(&client, &served.url("/app/me/"), &[]).await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"detail": "Authentication credentials were not provided."})
        )
    );
    // A client's own identity headers authenticate nobody.
    let spoof = [
        ("remote-user", "mallory"),
        ("x-portcullis-username", "mallory"),
    ];
    let (status, _) = get_json(&client, &served.url("/app/me/"), &spoof).await;
    assert_eq!(status, 403);
    let (status, seen) = get_json(&client, &served.url("/app/where/"), &spoof).await;
    assert_eq!(status, 200);
    assert_eq!(seen["remote_user"], Value::Null);
    assert_eq!(seen["identity_header"], Value::Null);
    assert_eq!(seen["http_remote_user"], "mallory");

    // A bad token is simplejwt's 401, before Django is asked.
    let (status, body) = get_json(
        &client,
        &served.url("/app/me/"),
        &[("authorization", "Bearer not.a.token")],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "token_not_valid");

    // The environ as Django reads it, and the virtualenv it imports from.
    let (status, seen) = get_json(
        &client,
        &served.url("/app/where/"),
        &[
            ("authorization", &bearer),
            ("x-portcullis-username", "mallory"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let venv = site.venv.display().to_string();
    assert_eq!(seen["remote_user"], "alice");
    assert_eq!(seen["identity_header"], "alice");
    assert_eq!(seen["script_name"], "/app");
    assert_eq!(seen["path"], "/app/where/");
    assert_eq!(seen["path_info"], "/where/");
    assert_eq!(seen["scheme"], "http");
    assert_eq!(seen["remote_addr"], "127.0.0.1");
    assert_eq!(seen["settings_module"], "mysite.settings");
    assert_eq!(seen["prefix"], venv.as_str());
    assert!(
        seen["django_file"].as_str().unwrap().starts_with(&venv),
        "{seen}"
    );
    served.terminate().await;
}

#[tokio::test]
async fn streaming_download_and_upload_are_exact() {
    let site = Site::new().await;
    // The upload below is larger than the default MAX_BODY_BYTES.
    let served = site.serve("max_body_bytes = 10000000", 1).await;
    let client = reqwest::Client::new();

    let stream = client.get(served.url("/app/stream/")).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/plain");
    assert_eq!(
        stream.text().await.unwrap(),
        "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"
    );

    let download = client
        .get(served.url("/app/download/"))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-length"], "300000");
    assert_eq!(
        download.headers()["content-disposition"],
        "attachment; filename=\"download.bin\""
    );
    assert_eq!(download.bytes().await.unwrap().to_vec(), download_bytes());

    // 2.5 MB: above the front's memory limit (spooled to a file) and
    // Django's FILE_UPLOAD_MAX_MEMORY_SIZE.
    let upload: Vec<u8> = (0..2_500_000u32).map(|i| (i % 241) as u8).collect();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&upload))
    };
    let form = reqwest::multipart::Form::new()
        .text("note", "caf\u{e9}")
        .part(
            "file",
            reqwest::multipart::Part::bytes(upload).file_name("data.bin"),
        );
    let response = client
        .post(served.url("/app/upload/"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"name": "data.bin", "size": 2_500_000, "sha256": digest, "note": "caf\u{e9}"})
    );

    // An exception in a view: a generic 500, the traceback in the log only.
    let crash = client.get(served.url("/app/crash/")).send().await.unwrap();
    assert_eq!(crash.status(), 500);
    let body = crash.text().await.unwrap();
    assert!(!body.contains("secret"), "{body}");
    served.wait_for_log("a secret in the traceback").await;
    served.terminate().await;
}

#[tokio::test]
async fn django_over_tls_and_http2() {
    let site = Site::new().await;
    let cert = TestCert::new(site.dir.path(), "tls");
    let served = site.start(&cert.toml(), 1).await;
    let addr: std::net::SocketAddr = served.addr.parse().unwrap();
    let base = format!("https://localhost:{}", addr.port());
    let client = cert.client(addr, false);
    wait_ready(&served, &client, &base).await;
    let access = token_over(&client, &base).await;
    let response = client
        .get(format!("{base}/app/me/"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"username": "alice", "auth": "None"})
    );
    let (status, seen) = get_json(&client, &format!("{base}/app/where/"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(seen["scheme"], "https");
    let stream = client
        .get(format!("{base}/app/stream/"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        stream.text().await.unwrap(),
        "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"
    );
    let download = client
        .get(format!("{base}/app/download/"))
        .send()
        .await
        .unwrap();
    assert_eq!(download.bytes().await.unwrap().to_vec(), download_bytes());
    served.terminate().await;
}

async fn token_over(client: &reqwest::Client, base: &str) -> String {
    let login: Value = client
        .post(format!("{base}/api/token/"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access"].as_str().unwrap().to_owned()
}

/// 200 slow clients (100 sending their body a byte at a time, 100 not
/// reading a large response) hold no worker: with one worker, other
/// requests are still answered.
#[tokio::test]
async fn slow_clients_never_hold_a_worker() {
    use tokio::io::AsyncWriteExt as _;
    let site = Site::new().await;
    let served = site.serve("", 1).await;
    let addr = served.addr.clone();
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = if i % 2 == 0 {
            "POST /app/upload/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\nab".to_owned()
        } else {
            "GET /app/download/ HTTP/1.1\r\nHost: x\r\n\r\n".to_owned()
        };
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    let client = reqwest::Client::new();
    for _ in 0..50 {
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            client.get(served.url("/app/hello/")).send(),
        )
        .await
        .expect("a request waited behind slow clients")
        .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.json::<Value>().await.unwrap(),
            json!({"message": "hello", "user": null})
        );
    }
    drop(slow);
    served.terminate().await;
}

/// The resident memory of process `pid`, in bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
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

/// A 200 MiB generated response to a client that reads nothing for a while
/// costs the server bounded memory (it is spooled to a file), and the one
/// worker is free for others meanwhile.
#[tokio::test]
async fn a_huge_response_to_a_slow_client_keeps_the_server_small() {
    let site = Site::new().await;
    let served = site.serve("", 1).await;
    let pid = served.child.id().unwrap();
    let client = reqwest::Client::new();
    let (status, _) = get_json(&client, &served.url("/app/hello/"), &[]).await;
    assert_eq!(status, 200);
    let before = resident(pid);
    let mut huge = client.get(served.url("/app/huge/")).send().await.unwrap();
    assert_eq!(huge.status(), 200);
    // One worker, one thread: it answers this only once it has handed
    // over all of the 200 MiB the slow client has not read.
    let (status, body) = tokio::time::timeout(
        Duration::from_mins(1),
        get_json(&client, &served.url("/app/hello/"), &[]),
    )
    .await
    .expect("the worker stayed held by a client that does not read");
    assert_eq!(
        (status, body),
        (200, json!({"message": "hello", "user": null}))
    );
    let grown = resident(pid).saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "the server grew by {grown} bytes for a response its client did not read"
    );
    // The app sends bytes 0, 1, …, 255, 0, 1, …: each chunk is compared
    // with the same run of that pattern.
    let pattern: Vec<u8> = (0..=255u8).cycle().take((4 << 20) + 256).collect();
    let mut length = 0usize;
    loop {
        let chunk = match huge.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => panic!(
                "the response was cut after {length} bytes: {e}\nthe server's log:\n{}",
                served.log()
            ),
        };
        let start = length % 256;
        assert!(chunk.len() <= 4 << 20, "a chunk of {} bytes", chunk.len());
        assert!(
            chunk[..] == pattern[start..start + chunk.len()],
            "bytes {length}..{} of the response",
            length + chunk.len()
        );
        length += chunk.len();
    }
    assert_eq!(length, 200 << 20);
    let (code, _) = served.terminate().await;
    assert_eq!(code, 0);
}

#[tokio::test]
async fn an_app_that_cannot_be_imported_stops_serve_with_the_reason() {
    let site = Site::new().await;
    let config = site.config("", 1);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("mysite.wsgi:application", "mysite.nosuch:application");
    std::fs::write(&config, text).unwrap();
    let mut command = serve_in(site.dir.path());
    command.arg("--config").arg(&config);
    let (code, log) = match Served::start(command).await {
        Ok(served) => served.exit().await,
        Err(log) => (1, log),
    };
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("error: [[wsgi]] #1 (prefix \"/app/\", from config file ")
            && log.contains("app \"mysite.nosuch:application\": no module named \"mysite.nosuch\""),
        "{log}"
    );
}

/// An app that raises (outside any framework that would answer for it):
/// the mount's generic 500, the traceback in the log only.
#[tokio::test]
async fn an_app_that_raises_answers_the_generic_failure() {
    let site = Site::new().await;
    std::fs::write(
        site.site().join("raising.py"),
        "def application(environ, start_response):\n    \
         raise RuntimeError('a secret in the traceback')\n",
    )
    .unwrap();
    let config = site.site().join("portcullis.toml");
    std::fs::write(
        &config,
        "[[wsgi]]\nprefix = \"/r/\"\napp = \"raising:application\"\nworkers = 1\n",
    )
    .unwrap();
    let mut command = serve_in(site.dir.path());
    command.arg("--config").arg(&config);
    let served = Served::start(command).await.unwrap();
    let client = reqwest::Client::new();
    wait_ready(&served, &client, &served.base).await;
    let answer = client.get(served.url("/r/")).send().await.unwrap();
    assert_eq!(answer.status(), 500);
    assert_eq!(answer.headers()["content-type"], "application/json");
    assert_eq!(
        answer.text().await.unwrap(),
        r#"{"detail":"The application failed to answer.","code":"application_error"}"#
    );
    served.wait_for_log("a secret in the traceback").await;
    served.terminate().await;
}

#[tokio::test]
async fn readyz_waits_for_the_import_and_sighup_reloads_the_code() {
    let site = Site::new().await;
    let app = |version: u32| {
        format!(
            "import time\ntime.sleep(1)\ndef application(environ, start_response):\n    \
             start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'v{version}']\n"
        )
    };
    std::fs::write(site.site().join("versioned.py"), app(1)).unwrap();
    let config = site.site().join("portcullis.toml");
    std::fs::write(
        &config,
        "[[wsgi]]\nprefix = \"/v/\"\napp = \"versioned:application\"\nworkers = 2\n",
    )
    .unwrap();
    let mut command = serve_in(site.dir.path());
    command.arg("--config").arg(&config);
    let served = Served::start(command).await.unwrap();
    let client = reqwest::Client::new();
    // The app sleeps a second on import: not ready yet.
    let early = client.get(served.url("/readyz")).send().await.unwrap();
    assert_eq!(early.status(), 503);
    assert_eq!(
        early.text().await.unwrap(),
        r#"{"detail":"The application is still starting."}"#
    );
    wait_ready(&served, &client, &served.base).await;
    let text = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    assert_eq!(
        text(client.get(served.url("/v/")).send().await.unwrap()).await,
        "v1"
    );

    std::fs::write(site.site().join("versioned.py"), app(2)).unwrap();
    served.signal("HUP").await;
    let mut seen = Vec::new();
    for _ in 0..2000 {
        let answer = client.get(served.url("/v/")).send().await.unwrap();
        seen.push(text(answer).await);
        if seen.last().is_some_and(|v| v == "v2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        seen.last().map(String::as_str),
        Some("v2"),
        "{}",
        served.log()
    );
    assert!(seen.iter().all(|v| v == "v1" || v == "v2"));
    served.terminate().await;
}

#[tokio::test]
async fn serve_dash_dash_wsgi_runs_an_app_from_the_working_directory() {
    let site = Site::new().await;
    std::fs::write(
        site.site().join("hello.py"),
        "def application(environ, start_response):\n    start_response('200 OK', [])\n    \
         return [environ['SCRIPT_NAME'].encode() + b'|' + environ['PATH_INFO'].encode()]\n",
    )
    .unwrap();
    let mut command = serve_in(site.dir.path());
    command.current_dir(site.site());
    let served = Served::start_with(command, &["--wsgi", "hello:application"])
        .await
        .unwrap();
    let client = reqwest::Client::new();
    wait_ready(&served, &client, &served.base).await;
    let answer = client.get(served.url("/x/y")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "|/x/y");
    served.terminate().await;
}

/// The failure bodies, through the mount's one error mapping.
fn bad_gateway() -> Value {
    json!({"detail": "The application's worker stopped while answering.", "code": "bad_gateway"})
}

async fn hello_is_answered(client: &reqwest::Client, served: &Served) {
    let (status, body) = get_json(client, &served.url("/app/hello/"), &[]).await;
    assert_eq!(
        (status, body),
        (200, json!({"message": "hello", "user": null})),
        "{}",
        served.log()
    );
}

/// A worker that segfaults, `os._exit`s or gets `SIGKILL` (as the OOM killer
/// does) costs only the request it held (502), and a new worker answers;
/// requests on the other worker meanwhile see nothing.
#[tokio::test]
async fn a_worker_that_dies_is_502_for_its_request_only_and_replaced() {
    let site = Site::new().await;
    let served = site.serve("", 2).await;
    let client = reqwest::Client::new();
    // (A SIGSEGV sent with kill(2) rather than raised by a fault is not
    // fatal in a worker: the Rust runtime's handler, chained by
    // faulthandler, returns from it.)
    for how in ["segfault", "exit", "sigkill"] {
        let others: Vec<_> = (0..10)
            .map(|_| {
                let client = client.clone();
                let url = served.url("/app/hello/");
                tokio::spawn(async move {
                    let answer = client.get(url).send().await.unwrap();
                    (
                        answer.status().as_u16(),
                        answer.json::<Value>().await.unwrap(),
                    )
                })
            })
            .collect();
        let (status, body) = get_json(&client, &served.url(&format!("/app/die/{how}/")), &[]).await;
        assert_eq!((status, body), (502, bad_gateway()), "{how}");
        for other in others {
            assert_eq!(
                other.await.unwrap(),
                (200, json!({"message": "hello", "user": null})),
                "a request beside the {how} worker"
            );
        }
        served.wait_for_log("worker died; starting a new one").await;
        hello_is_answered(&client, &served).await;
    }
    let log = served.log();
    assert!(log.contains("killed by signal 11"), "{log}");
    assert!(log.contains("exit code 3"), "{log}");
    assert!(
        log.contains("killed by SIGKILL (perhaps out of memory)"),
        "{log}"
    );
    let (code, _) = served.terminate().await;
    assert_eq!(code, 0);
}

/// A request past `timeout` is 504; its worker gets SIGABRT first, so its
/// Python traceback (faulthandler) is in the log, and a new worker answers.
#[tokio::test]
async fn a_hang_past_the_timeout_is_504_with_the_traceback_logged() {
    let site = Site::new().await;
    let served = site.serve_mount("timeout = 2", 1).await;
    let client = reqwest::Client::new();
    let (status, body) = get_json(&client, &served.url("/app/hang/"), &[]).await;
    assert_eq!(
        (status, body),
        (
            504,
            json!({"detail": "The application did not answer in time.", "code": "gateway_timeout"})
        )
    );
    let log = served.wait_for_log("Fatal Python error: Aborted").await;
    assert!(log.contains("views.py\", line"), "{log}");
    assert!(log.contains("in hang"), "{log}");
    served
        .wait_for_log("worker killed after its timeout; starting a new one")
        .await;
    hello_is_answered(&client, &served).await;
    let (code, _) = served.terminate().await;
    assert_eq!(code, 0);
}

/// `max_requests` recycles workers under load with no failed request, and
/// the requests are answered by more than one process.
#[tokio::test]
async fn max_requests_recycles_under_load_without_a_failed_request() {
    let site = Site::new().await;
    let served = site.serve_mount("max_requests = 10", 1).await;
    let client = reqwest::Client::new();
    let mut pids = std::collections::BTreeSet::new();
    let mut answered = 0;
    // The old worker serves while its replacement imports Django, so go on
    // until two replacements have answered.
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while pids.len() < 3 && tokio::time::Instant::now() < deadline {
        let batch: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                let url = served.url("/app/pid/");
                tokio::spawn(async move {
                    let answer = client.get(url).send().await.unwrap();
                    (
                        answer.status().as_u16(),
                        answer.json::<Value>().await.unwrap(),
                    )
                })
            })
            .collect();
        for answer in batch {
            let (status, body) = answer.await.unwrap();
            assert_eq!(status, 200, "{body}");
            pids.insert(body["pid"].as_u64().unwrap());
            answered += 1;
        }
    }
    assert!(
        pids.len() >= 3,
        "{answered} requests, max_requests 10, served by {pids:?}"
    );
    let (code, _) = served.terminate().await;
    assert_eq!(code, 0);
}

/// SIGTERM with a request in flight: the request completes, serve exits 0.
#[tokio::test]
async fn sigterm_drains_a_request_in_flight() {
    let site = Site::new().await;
    let served = site.serve("", 1).await;
    let client = reqwest::Client::new();
    let url = served.url("/app/slow/");
    let slow = tokio::spawn(async move {
        let answer = client.get(url).send().await.unwrap();
        (
            answer.status().as_u16(),
            answer.json::<Value>().await.unwrap(),
        )
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (code, log) = served.terminate().await;
    assert_eq!(slow.await.unwrap(), (200, json!({"slept": 2})), "{log}");
    assert_eq!(code, 0, "{log}");
}

/// A Django app that kept simplejwt's `JWTAuthentication` accepts
/// portcullis's access token with the same key.
#[tokio::test]
async fn simplejwt_jwt_authentication_accepts_a_portcullis_token() {
    let site = Site::new().await;
    let served = site.serve("", 1).await;
    let client = reqwest::Client::new();
    let access = token(&served).await;
    let bearer = format!("Bearer {access}");
    let user_id = {
        use base64::Engine as _;
        let payload = access.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        claims["user_id"].clone()
    };
    // The app's own user table has alice under the same id.
    let create = tokio::process::Command::new(site.venv.join("bin/python"))
        .args([
            "manage.py",
            "shell",
            "-c",
            &format!(
                "from django.contrib.auth.models import User; User.objects.create(id={user_id}, username='alice')"
            ),
        ])
        .current_dir(site.site())
        .env("DJANGO_SETTINGS_MODULE", "mysite.settings")
        .env("MYSITE_DB", site.dir.path().join("django.sqlite3"))
        .output()
        .await
        .unwrap();
    assert!(
        create.status.success(),
        "{}",
        String::from_utf8_lossy(&create.stderr)
    );
    let (status, body) = get_json(
        &client,
        &served.url("/app/jwt-me/"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"username": "alice", "user_id": user_id}))
    );
    // A token signed with another key is refused by simplejwt itself.
    let forged = format!("Bearer {}x", &access[..access.len() - 1]);
    let (status, _) = get_json(
        &client,
        &served.url("/app/jwt-me/"),
        &[("authorization", &forged)],
    )
    .await;
    assert_eq!(status, 401);
    let (code, _) = served.terminate().await;
    assert_eq!(code, 0);
}
