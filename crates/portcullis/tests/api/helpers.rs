//! `TestApp`: a real server on port 0 over a fresh database of either
//! backend, plus typed request helpers.
//!
//! PostgreSQL tests use `PORTCULLIS_TEST_POSTGRES_URL`, defaulting to the
//! server every developer machine and CI runs
//! (`postgres://postgres@127.0.0.1:5432/test`). They never skip: if the
//! server is unreachable, they fail and say so.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis::config::Settings;
use portcullis::startup::Application;
use portcullis_core::{AuthService, NewUser, User, Username};
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::sync::oneshot;

/// The HMAC key the tests share with the recorded simplejwt world.
pub(crate) const SIGNING_KEY: &str = "compat-signing-key-0123456789abcdef0123456789abcdef";

/// Cheap Argon2 for tests; the production defaults are OWASP's.
const CHEAP_HASHING: &str = "password_hash_memory_kib = 64\npassword_hash_iterations = 1\n";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Run a test body once per backend: `both_backends!(name, name2, …)`
/// makes `name::sqlite` and `name::postgres` from `async fn name(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            }
        )*
    };
}

pub(crate) fn postgres_admin_url() -> String {
    std::env::var("PORTCULLIS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, empty database; dropped with the value.
pub(crate) struct TestDatabase {
    pub(crate) url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// PostgreSQL databases of this process, emptied by a finished test for the
/// next one. Creating and dropping a database writes and syncs its files
/// (about a second each on a busy machine, and they queue); emptying one
/// is a transaction. The replay of the recorded cases alone made and
/// dropped some 270.
static SPARE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

impl TestDatabase {
    pub(crate) async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.sqlite3").display());
                Self {
                    url,
                    _dir: Some(dir),
                    postgres_name: None,
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let (base, _) = admin.rsplit_once('/').expect("database URL with a path");
                let spare = SPARE.lock().unwrap().pop();
                if let Some(name) = spare {
                    return Self {
                        url: format!("{base}/{name}"),
                        _dir: None,
                        postgres_name: Some(name),
                    };
                }
                let name = format!(
                    "portcullis_test_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL at {admin} (PORTCULLIS_TEST_POSTGRES_URL) is unreachable: {e}")
                });
                drop_stale_databases(&mut conn).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                conn.close().await.ok();
                Self {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    postgres_name: Some(name),
                }
            }
        }
    }
}

/// Databases left by test processes that no longer run (killed before
/// their `Drop`), removed once per test process.
async fn drop_stale_databases(conn: &mut sqlx::PgConnection) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'portcullis\\_test\\_%'",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
        for name in names {
            let pid = name.split('_').nth(2).unwrap_or_default();
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await
                    .ok();
            }
        }
    })
    .await;
}

/// Make database `name` what `CREATE DATABASE` made: nobody connected,
/// and a `public` schema with nothing in it, owned and granted as
/// PostgreSQL 15 makes it. False when it cannot be (a test made schemas of
/// its own, or PostgreSQL refused): then it is dropped instead.
async fn empty(admin_conn: &mut sqlx::PgConnection, admin: &str, name: &str) -> bool {
    let emptied = async {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut *admin_conn)
        .await?;
        let (base, _) = admin.rsplit_once('/').unwrap_or((admin, ""));
        let mut conn = sqlx::PgConnection::connect(&format!("{base}/{name}")).await?;
        let schemas: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_namespace \
             WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\\_%'",
        )
        .fetch_one(&mut conn)
        .await?;
        if schemas == 0 {
            sqlx::raw_sql(
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public; \
                 ALTER SCHEMA public OWNER TO pg_database_owner; \
                 GRANT USAGE ON SCHEMA public TO PUBLIC;",
            )
            .execute(&mut conn)
            .await?;
        }
        conn.close().await?;
        Ok::<_, sqlx::Error>(schemas == 0)
    };
    emptied.await.unwrap_or(false)
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime: use a thread with its own.
        let admin = postgres_admin_url();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await else {
                    return;
                };
                if empty(&mut conn, &admin, &name).await {
                    SPARE.lock().unwrap().push(name);
                    return;
                }
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .ok();
            });
        })
        .join()
        .ok();
    }
}

/// The settings every test server shares (port 0, the database, the
/// shared key, cheap hashing), with `settings` on top.
fn shared_toml(database_url: &str, settings: &str) -> String {
    format!(
        "bind = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\nsigning_key = \"{SIGNING_KEY}\"\nlog = \"warn\"\n{CHEAP_HASHING}{settings}"
    )
}

/// A running server.
pub(crate) struct TestApp {
    pub(crate) base: String,
    /// The main listener.
    pub(crate) addr: std::net::SocketAddr,
    /// `HTTP_REDIRECT_BIND`'s listener, when configured.
    pub(crate) redirect_addr: Option<std::net::SocketAddr>,
    /// `METRICS_BIND`'s listener, when configured.
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    pub(crate) client: reqwest::Client,
    pub(crate) auth: AuthService,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub(crate) db: TestDatabase,
}

impl TestApp {
    /// A server with the shared signing key and `settings` (TOML) on top.
    pub(crate) async fn spawn(backend: Backend, settings: &str) -> Self {
        let db = TestDatabase::new(backend).await;
        let toml = shared_toml(&db.url, settings);
        Self::spawn_with(db, &toml).await
    }

    /// [`TestApp::spawn`] on `clock`: the test moves time instead of
    /// sleeping (expiry, throttle windows, pruning).
    pub(crate) async fn spawn_on(
        backend: Backend,
        settings: &str,
        clock: &Arc<portcullis_token::ManualClock>,
    ) -> Self {
        let db = TestDatabase::new(backend).await;
        let toml = shared_toml(&db.url, settings);
        Self::start(
            db,
            &toml,
            Arc::clone(clock) as Arc<dyn portcullis_token::Clock>,
        )
        .await
    }

    /// A server configured by exactly this TOML (plus the database).
    pub(crate) async fn spawn_with(db: TestDatabase, toml: &str) -> Self {
        Self::start(db, toml, Arc::new(portcullis_token::SystemClock)).await
    }

    async fn start(db: TestDatabase, toml: &str, clock: Arc<dyn portcullis_token::Clock>) -> Self {
        let settings =
            Settings::from_toml(toml).unwrap_or_else(|e| panic!("test config: {e}\n{toml}"));
        let app = Application::build_with_clock(&settings, clock)
            .await
            .unwrap_or_else(|e| panic!("build: {e:#}"));
        let addr = app.local_addr().unwrap();
        let redirect_addr = app.redirect_addr();
        let metrics_addr = app.metrics_addr();
        let auth = app.auth().clone();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            app.run_until_stopped(async {
                rx.await.ok();
            })
            .await
            .unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            addr,
            redirect_addr,
            metrics_addr,
            client: reqwest::Client::builder().build().unwrap(),
            auth,
            shutdown: Some(tx),
            task: Some(task),
            db,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Another node on this server's database, with `settings` (TOML) on
    /// top of the shared ones: what one node writes the other must see.
    pub(crate) async fn another_node(&self, settings: &str) -> Self {
        let db = TestDatabase {
            url: self.db.url.clone(),
            _dir: None,
            // Dropped with the first node, not this one.
            postgres_name: None,
        };
        let toml = shared_toml(&db.url, settings);
        Self::spawn_with(db, &toml).await
    }

    /// POST a login with extra headers; the reply whatever it is.
    pub(crate) async fn try_login(
        &self,
        path: &str,
        username: &str,
        password: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .client
            .post(self.url(path))
            .json(&json!({"username": username, "password": password}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    /// Create an account directly in the store, with `USERNAME@example.com`.
    pub(crate) async fn user(
        &self,
        username: &str,
        password: &str,
        active: bool,
        staff: bool,
    ) -> User {
        self.user_with_email(
            username,
            password,
            &format!("{username}@example.com"),
            active,
            staff,
        )
        .await
    }

    /// Create an account directly in the store.
    pub(crate) async fn user_with_email(
        &self,
        username: &str,
        password: &str,
        email: &str,
        active: bool,
        staff: bool,
    ) -> User {
        let hash = self.auth.hasher().hash(password.into()).await.unwrap();
        self.auth
            .user_store()
            .create_user(&NewUser {
                username: Username::parse(username).unwrap(),
                email: email.to_owned(),
                password_hash: hash,
                is_active: active,
                is_staff: staff,
                is_superuser: false,
                date_joined: 0,
            })
            .await
            .unwrap()
    }

    /// POST a JSON body.
    pub(crate) async fn post(&self, path: &str, body: Value) -> Reply {
        Reply::read(
            self.client
                .post(self.url(path))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POST a JSON body with `Authorization: Bearer`.
    pub(crate) async fn post_bearer(&self, path: &str, bearer: &str, body: Value) -> Reply {
        Reply::read(
            self.client
                .post(self.url(path))
                .header("Authorization", format!("Bearer {bearer}"))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// DELETE with `Authorization: Bearer`.
    pub(crate) async fn delete_bearer(&self, path: &str, bearer: &str) -> Reply {
        let request = self
            .client
            .delete(self.url(path))
            .header("Authorization", format!("Bearer {bearer}"));
        Reply::read(request.send().await.unwrap()).await
    }

    /// GET with an optional `Authorization: Bearer` token.
    pub(crate) async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = bearer {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Reply::read(request.send().await.unwrap()).await
    }

    /// Log in and return (refresh, access).
    pub(crate) async fn login(&self, username: &str, password: &str) -> (String, String) {
        let reply = self
            .post(
                "/api/token/",
                serde_json::json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(reply.status, 200, "login failed: {}", reply.body);
        (
            reply.json["refresh"].as_str().unwrap().to_owned(),
            reply.json["access"].as_str().unwrap().to_owned(),
        )
    }

    /// Refresh one token `n` times at once; the (status, body) of each.
    pub(crate) async fn concurrent_refreshes(&self, refresh: &str, n: usize) -> Vec<(u16, String)> {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let client = self.client.clone();
            let url = self.url("/api/token/refresh/");
            let body = json!({"refresh": refresh});
            tasks.spawn(async move {
                let response = client.post(url).json(&body).send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            });
        }
        let mut replies = Vec::new();
        while let Some(result) = tasks.join_next().await {
            replies.push(result.unwrap());
        }
        replies
    }

    /// Stop the server and wait for it.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            task.await.ok();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
    pub(crate) json: Value,
}

impl Reply {
    pub(crate) async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
            json,
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Every value of a header, in order (`Set-Cookie`).
    pub(crate) fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }
}

impl TestDatabase {
    /// How many rows a table holds, read with a connection of its own (what
    /// the server did, seen from outside).
    pub(crate) async fn count_rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        if self.postgres_name.is_some() {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .unwrap()
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    }
}

/// Decode a JWT's payload without verifying it (test inspection only).
pub(crate) fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// An HS256 token made with an independent implementation (the `hmac`
/// crate), not portcullis's engine.
pub(crate) fn mint_hs(algorithm: &str, key: &[u8], claims: &Value) -> String {
    mint_hs_with_header(
        &format!(r#"{{"alg":"{algorithm}","typ":"JWT"}}"#),
        algorithm,
        key,
        claims,
    )
}

/// [`mint_hs`] with a header of the caller's choosing (a `kid`, another `alg`).
pub(crate) fn mint_hs_with_header(
    header: &str,
    algorithm: &str,
    key: &[u8],
    claims: &Value,
) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, KeyInit as _, Mac as _};
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let message = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(serde_json::to_string(claims).unwrap().as_bytes())
    );
    let signature = match algorithm {
        "HS256" => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            mac.update(message.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "HS384" => {
            let mut mac = Hmac::<sha2::Sha384>::new_from_slice(key).unwrap();
            mac.update(message.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "HS512" => {
            let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
            mac.update(message.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        other => panic!("mint_hs does not do {other}"),
    };
    format!("{message}.{}", b64(&signature))
}

/// The current Unix time.
pub(crate) fn now() -> i64 {
    use portcullis_token::Clock as _;
    portcullis_token::SystemClock.now()
}

/// The real `portcullis` binary with a clean environment (no stray
/// `PORTCULLIS_*` from the developer's shell).
pub(crate) fn binary() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true);
    command
}

/// `portcullis serve` (the real binary) over a fresh SQLite file in `dir`,
/// with the test signing key and cheap hashing.
pub(crate) fn serve_in(dir: &std::path::Path) -> tokio::process::Command {
    let mut command = binary();
    command
        .env(
            "PORTCULLIS_DATABASE_URL",
            format!("sqlite://{}", dir.join("db.sqlite3").display()),
        )
        .env("PORTCULLIS_SIGNING_KEY", SIGNING_KEY)
        .env("PORTCULLIS_PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PORTCULLIS_PASSWORD_HASH_ITERATIONS", "1");
    command
}

/// What a finished command printed.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Run the binary to completion, feeding `stdin`.
pub(crate) async fn run(mut command: tokio::process::Command, stdin: &str) -> Output {
    use tokio::io::AsyncWriteExt as _;
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("spawn portcullis");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(std::time::Duration::from_mins(1), child.wait_with_output())
        .await
        .expect("portcullis did not finish within 60 s")
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `portcullis serve` as a child process, listening on a port it chose.
pub(crate) struct Served {
    pub(crate) child: tokio::process::Child,
    pub(crate) base: String,
    /// `HOST:PORT` of the main listener.
    pub(crate) addr: String,
    pub(crate) log: Arc<std::sync::Mutex<String>>,
}

impl Served {
    /// Start `serve` (with `BIND=127.0.0.1:0`) and wait until it listens.
    pub(crate) async fn start(command: tokio::process::Command) -> Result<Self, String> {
        Self::start_with(command, &[]).await
    }

    /// [`Served::start`] with `serve`'s own arguments.
    pub(crate) async fn start_with(
        mut command: tokio::process::Command,
        serve_args: &[&str],
    ) -> Result<Self, String> {
        use tokio::io::AsyncBufReadExt as _;
        command
            .arg("serve")
            .args(serve_args)
            .env("PORTCULLIS_BIND", "127.0.0.1:0")
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("spawn portcullis serve");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let addr = loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line()).await;
            let Ok(Ok(Some(line))) = line else {
                if line.is_err() {
                    // Still running without saying where it listens: stop it.
                    child.start_kill().ok();
                }
                let code = child.wait().await.ok().and_then(|s| s.code());
                return Err(format!("{}(exit code {code:?})", log.lock().unwrap()));
            };
            log.lock().unwrap().push_str(&line);
            log.lock().unwrap().push('\n');
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            // ACCESS_LOG=json: the log is JSON lines.
            if let Some(rest) = line.split(r#""addr":""#).nth(1) {
                break rest.split('"').next().unwrap().to_owned();
            }
        };
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        Ok(Self {
            child,
            base: format!("http://{addr}"),
            addr,
            log,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST a login to `/api/token/` and return the JSON reply.
    pub(crate) async fn login(&self, username: &str, password: &str) -> Value {
        reqwest::Client::new()
            .post(self.url("/api/token/"))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Send a signal (`TERM`, `HUP`, …) to the server.
    pub(crate) async fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let sent = tokio::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success(), "kill -{name} {pid} failed");
    }

    /// What the server has logged so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Poll the log until it contains `needle` (within 20 s).
    pub(crate) async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the log never said {needle:?}:\n{log}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Send SIGTERM and wait for the exit code.
    pub(crate) async fn terminate(self) -> (i32, String) {
        self.signal("TERM").await;
        self.exit().await
    }

    /// Wait (at most 20 s) for the process to exit: its code and log.
    pub(crate) async fn exit(mut self) -> (i32, String) {
        let status = tokio::time::timeout(std::time::Duration::from_secs(20), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let log = self.log.lock().unwrap().clone();
        (status.code().unwrap_or(-1), log)
    }
}

/// A self-signed certificate for `localhost` (and 127.0.0.1), written as
/// `NAME.crt` and `NAME.key` in `dir`.
pub(crate) struct TestCert {
    pub(crate) pem: String,
    pub(crate) cert_file: std::path::PathBuf,
    pub(crate) key_file: std::path::PathBuf,
}

impl TestCert {
    pub(crate) fn new(dir: &std::path::Path, name: &str) -> Self {
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        let pem = made.cert.pem();
        let cert_file = dir.join(format!("{name}.crt"));
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, &pem).unwrap();
        std::fs::write(&key_file, made.signing_key.serialize_pem()).unwrap();
        Self {
            pem,
            cert_file,
            key_file,
        }
    }

    /// `tls_cert_file` and `tls_key_file` as TOML lines.
    pub(crate) fn toml(&self) -> String {
        format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
            self.cert_file.display().to_string(),
            self.key_file.display().to_string()
        )
    }

    /// A client trusting only this certificate, reaching `localhost` at
    /// `addr`; HTTP/2 through ALPN unless `http1_only`.
    pub(crate) fn client(&self, addr: std::net::SocketAddr, http1_only: bool) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.pem.as_bytes()).unwrap()])
            .resolve("localhost", addr)
            .redirect(reqwest::redirect::Policy::none());
        if http1_only {
            builder = builder.http1_only();
        }
        builder.build().unwrap()
    }
}

/// A response read off a raw socket.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub(crate) status: u16,
    /// The head, lowercased, without the status line.
    pub(crate) head: String,
    pub(crate) body: String,
}

/// Read one HTTP/1.1 response (with a `Content-Length`) from `stream`;
/// `None` if the server closed the connection before a whole response.
pub(crate) async fn read_raw_reply(stream: &mut tokio::net::TcpStream) -> Option<RawReply> {
    use tokio::io::AsyncReadExt as _;
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    Some(RawReply {
        status,
        head,
        body: String::from_utf8_lossy(&buffer[head_end..head_end + length]).into_owned(),
    })
}

/// Whether the server closes `stream` (EOF or reset) within `within`,
/// reading and discarding anything it sends first.
pub(crate) async fn closed_within(
    stream: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut chunk = [0_u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}
