//! The production front (issue 5): `[[static]]` mounts, `[[upstream]]`
//! routes and `GET /auth/verify`, over real sockets, with a real upstream
//! application and a real nginx.

use std::path::Path;
use std::time::Duration;

use portcullis::config::Settings;
use serde_json::{Value, json};

use crate::front_helpers::{Upstream, raw, raw_get};
use crate::helpers::{Backend, Reply, TestApp};

const NOT_FOUND: &str = r#"{"detail":"Not found."}"#;
const NO_CREDENTIALS: &str = r#"{"detail":"Authentication credentials were not provided."}"#;

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// A static tree: `public/` (the mount) and `secret.txt` beside it.
fn static_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public");
    std::fs::create_dir_all(public.join("sub")).unwrap();
    std::fs::write(public.join("app.css"), "body { color: red; }\n").unwrap();
    std::fs::write(public.join("app.css.br"), "BROTLI-BYTES").unwrap();
    std::fs::write(public.join("app.css.gz"), "GZIP-BYTES").unwrap();
    std::fs::write(public.join("app.js"), "let x = 1;").unwrap();
    std::fs::write(public.join("logo.png"), [0x89, b'P', b'N', b'G']).unwrap();
    std::fs::write(public.join("data.unknownext"), "?").unwrap();
    std::fs::write(public.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(public.join("sub/index.html"), "<h1>sub</h1>").unwrap();
    std::fs::write(public.join("ok.txt"), "inside").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOP-SECRET").unwrap();
    dir
}

fn static_toml(dir: &Path) -> String {
    format!(
        "[[static]]\nprefix = \"/static/\"\ndir = \"{}\"\ncache_control = \"public, max-age=31536000, immutable\"\n",
        dir.join("public").display()
    )
}

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = app.client.get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Reply::read(request.send().await.unwrap()).await
}

/// Content, types, precompressed variants with `Vary`, validators,
/// `Cache-Control`, `HEAD`, index files and the directory redirect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_served_like_nginx() {
    let dir = static_tree();
    let app = TestApp::spawn(Backend::Sqlite, &static_toml(dir.path())).await;

    let plain = get_with(&app, "/static/app.css", &[]).await;
    assert_eq!(
        (plain.status, plain.body.as_str()),
        (200, "body { color: red; }\n")
    );
    assert_eq!(
        plain.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(plain.header("content-length"), Some("21"));
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    assert_eq!(plain.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        plain.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(plain.header("content-encoding"), None);
    let etag = plain.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let modified = std::fs::metadata(dir.path().join("public/app.css"))
        .unwrap()
        .modified()
        .unwrap();
    let last_modified = plain.header("last-modified").unwrap().to_owned();
    assert_eq!(last_modified, httpdate::fmt_http_date(modified));

    let br = get_with(
        &app,
        "/static/app.css",
        &[("accept-encoding", "gzip, deflate, br")],
    )
    .await;
    assert_eq!((br.status, br.body.as_str()), (200, "BROTLI-BYTES"));
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(br.header("vary"), Some("Accept-Encoding"));
    assert_ne!(br.header("etag").unwrap(), etag);

    let gz = get_with(
        &app,
        "/static/app.css",
        &[("accept-encoding", "br;q=0, gzip")],
    )
    .await;
    assert_eq!((gz.status, gz.body.as_str()), (200, "GZIP-BYTES"));
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    // A file without variants is sent as it is, whatever is accepted.
    let js = get_with(&app, "/static/app.js", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!((js.status, js.body.as_str()), (200, "let x = 1;"));
    assert_eq!(js.header("content-encoding"), None);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let png = get_with(&app, "/static/logo.png", &[]).await;
    assert_eq!(png.header("content-type"), Some("image/png"));
    let unknown = get_with(&app, "/static/data.unknownext", &[]).await;
    assert_eq!(
        unknown.header("content-type"),
        Some("application/octet-stream")
    );

    // HEAD: the GET's headers, no body.
    let head = app
        .client
        .head(app.url("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "21");
    assert_eq!(head.headers()["etag"], etag.as_str());
    assert_eq!(head.bytes().await.unwrap().len(), 0);

    // Index files and the slash redirect.
    let home = get_with(&app, "/static/", &[]).await;
    assert_eq!((home.status, home.body.as_str()), (200, "<h1>home</h1>"));
    assert_eq!(
        home.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let sub = get_with(&app, "/static/sub/", &[]).await;
    assert_eq!((sub.status, sub.body.as_str()), (200, "<h1>sub</h1>"));
    let redirect = raw_get(&addr(&app), "/static/sub?x=1", "").await;
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), Some("/static/sub/?x=1"));

    let missing = get_with(&app, "/static/missing.css", &[]).await;
    assert_eq!((missing.status, missing.body.as_str()), (404, NOT_FOUND));
    let post = app
        .client
        .post(app.url("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    assert_eq!(
        post.text().await.unwrap(),
        r#"{"detail":"Method \"POST\" not allowed."}"#
    );
    app.stop().await;
}

/// `If-None-Match` and `If-Modified-Since` answer 304; `If-Match` that
/// fails answers 412; single byte ranges 206; unsatisfiable ones 416; an
/// `If-Range` that no longer holds the whole file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_conditional_and_range_requests() {
    let dir = static_tree();
    let app = TestApp::spawn(Backend::Sqlite, &static_toml(dir.path())).await;
    let first = get_with(&app, "/static/app.css", &[]).await;
    let etag = first.header("etag").unwrap().to_owned();
    let last_modified = first.header("last-modified").unwrap().to_owned();

    let cached = get_with(&app, "/static/app.css", &[("if-none-match", &etag)]).await;
    assert_eq!((cached.status, cached.body.as_str()), (304, ""));
    assert_eq!(cached.header("etag"), Some(etag.as_str()));
    assert_eq!(
        cached.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let weak = format!("\"other\", W/{etag}");
    let cached = get_with(&app, "/static/app.css", &[("if-none-match", &weak)]).await;
    assert_eq!(cached.status, 304);
    let stale = get_with(&app, "/static/app.css", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(stale.status, 200);
    let since = get_with(
        &app,
        "/static/app.css",
        &[("if-modified-since", &last_modified)],
    )
    .await;
    assert_eq!((since.status, since.body.as_str()), (304, ""));
    let old = get_with(
        &app,
        "/static/app.css",
        &[("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")],
    )
    .await;
    assert_eq!(old.status, 200);
    // The variant has its own tag: the identity tag does not validate it.
    let br = get_with(
        &app,
        "/static/app.css",
        &[("if-none-match", &etag), ("accept-encoding", "br")],
    )
    .await;
    assert_eq!((br.status, br.body.as_str()), (200, "BROTLI-BYTES"));
    let failed = get_with(&app, "/static/app.css", &[("if-match", "\"other\"")]).await;
    assert_eq!(failed.status, 412);

    let part = get_with(&app, "/static/app.css", &[("range", "bytes=0-3")]).await;
    assert_eq!((part.status, part.body.as_str()), (206, "body"));
    assert_eq!(part.header("content-range"), Some("bytes 0-3/21"));
    assert_eq!(part.header("content-length"), Some("4"));
    let tail = get_with(&app, "/static/app.css", &[("range", "bytes=-3")]).await;
    assert_eq!((tail.status, tail.body.as_str()), (206, " }\n"));
    assert_eq!(tail.header("content-range"), Some("bytes 18-20/21"));
    let open = get_with(&app, "/static/app.css", &[("range", "bytes=15-")]).await;
    assert_eq!((open.status, open.body.as_str()), (206, "ed; }\n"));
    assert_eq!(open.header("content-range"), Some("bytes 15-20/21"));
    let beyond = get_with(&app, "/static/app.css", &[("range", "bytes=100-")]).await;
    assert_eq!((beyond.status, beyond.body.as_str()), (416, ""));
    assert_eq!(beyond.header("content-range"), Some("bytes */21"));
    let several = get_with(&app, "/static/app.css", &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!(several.status, 200);
    let if_range_ok = get_with(
        &app,
        "/static/app.css",
        &[("range", "bytes=0-3"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(if_range_ok.status, 206);
    let if_range_stale = get_with(
        &app,
        "/static/app.css",
        &[("range", "bytes=0-3"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(
        (if_range_stale.status, if_range_stale.body.as_str()),
        (200, "body { color: red; }\n")
    );
    app.stop().await;
}

/// The hand-written range and precondition parsing against nginx's, on
/// the same file: for each request, the same status, `Content-Range` and
/// body. Validators are each server's own (the `ETag` formats differ), read
/// from a first plain `GET`, and error pages are each server's own. Two
/// deliberate differences, both allowed by RFC 9110 §14.2: several ranges
/// in one request get the whole file here (200), a `multipart/byteranges`
/// answer from nginx; a `Range` that does not parse is ignored here (200)
/// and refused by nginx (416).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_ranges_and_preconditions_answer_as_nginx_does() {
    let dir = static_tree();
    let app = TestApp::spawn(Backend::Sqlite, &static_toml(dir.path())).await;
    let nginx = Nginx::with_locations(&format!(
        "        location /static/ {{ alias {}/; etag on; }}",
        dir.path().join("public").display()
    ))
    .await;
    let ours = addr(&app);
    let old = "Sat, 01 Jan 2000 00:00:00 GMT";
    let cases: &[&[(&str, &str)]] = &[
        &[],
        &[("range", "bytes=0-3")],
        &[("range", "bytes=0-0")],
        &[("range", "bytes=-3")],
        &[("range", "bytes=-100")],
        &[("range", "bytes=15-")],
        &[("range", "bytes=5-100")],
        &[("range", "bytes=20-20")],
        &[("range", "bytes=21-")],
        &[("range", "bytes=100-")],
        &[("range", "bytes=-0")],
        &[("range", "items=0-3")],
        &[("if-none-match", "{etag}")],
        &[("if-none-match", "*")],
        &[("if-none-match", "\"other\"")],
        &[("if-none-match", "\"other\", {etag}")],
        &[("if-modified-since", "{modified}")],
        &[("if-modified-since", old)],
        &[("if-match", "{etag}")],
        &[("if-match", "\"other\"")],
        &[("if-unmodified-since", "{modified}")],
        &[("if-unmodified-since", old)],
        &[("range", "bytes=0-3"), ("if-range", "{etag}")],
        &[("range", "bytes=0-3"), ("if-range", "\"other\"")],
        &[("range", "bytes=0-3"), ("if-range", "{modified}")],
        &[("range", "bytes=0-3"), ("if-range", old)],
        &[("range", "bytes=100-"), ("if-range", "\"other\"")],
        &[("range", "bytes=0-3"), ("if-none-match", "{etag}")],
    ];
    let mut answers = Vec::new();
    for server in [ours.as_str(), nginx.addr.as_str()] {
        let first = raw_get(server, "/static/app.css", "").await;
        let etag = first.header("etag").unwrap().to_owned();
        let modified = first.header("last-modified").unwrap().to_owned();
        answers.push(answers_of(server, cases, &etag, &modified).await);
    }
    let differ: Vec<String> = cases
        .iter()
        .zip(&answers[0])
        .zip(&answers[1])
        .filter(|((_, ours), nginx)| ours != nginx)
        .map(|((case, ours), nginx)| format!("{case:?}: portcullis {ours:?}, nginx {nginx:?}"))
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // The deliberate differences.
    let malformed = raw_get(&addr(&app), "/static/app.css", "Range: bytes=abc\r\n").await;
    assert_eq!(
        (malformed.status, malformed.text().as_str()),
        (200, "body { color: red; }\n")
    );
    let malformed = raw_get(&nginx.addr, "/static/app.css", "Range: bytes=abc\r\n").await;
    assert_eq!(malformed.status, 416);
    let several = raw_get(&addr(&app), "/static/app.css", "Range: bytes=0-1,4-5\r\n").await;
    assert_eq!(
        (several.status, several.text().as_str()),
        (200, "body { color: red; }\n")
    );
    let several = raw_get(&nginx.addr, "/static/app.css", "Range: bytes=0-1,4-5\r\n").await;
    assert_eq!(several.status, 206);
    assert!(
        several
            .header("content-type")
            .unwrap()
            .starts_with("multipart/byteranges"),
        "{:?}",
        several.headers
    );
    app.stop().await;
}

/// Each case's (status, `Content-Range`, body of a success) from `server`, with
/// `{etag}` and `{modified}` replaced by that server's validators.
async fn answers_of(
    server: &str,
    cases: &[&[(&str, &str)]],
    etag: &str,
    modified: &str,
) -> Vec<(u16, Option<String>, String)> {
    let mut answers = Vec::new();
    for case in cases {
        let mut extra = String::new();
        for (name, value) in *case {
            let value = value
                .replace("{etag}", etag)
                .replace("{modified}", modified);
            extra = extra + name + ": " + &value + "\r\n";
        }
        let reply = raw_get(server, "/static/app.css", &extra).await;
        // Error pages are each server's own: only a success's body counts.
        let body = if reply.status < 300 {
            reply.text()
        } else {
            String::new()
        };
        answers.push((
            reply.status,
            reply.header("content-range").map(str::to_owned),
            body,
        ));
    }
    answers
}

/// No way out of the directory: `..`, encoded dots and slashes,
/// backslashes, and symlinks (to a file or a directory) that leave the
/// root are all 404, while a symlink that stays inside is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_never_leave_the_directory() {
    let dir = static_tree();
    let public = dir.path().join("public");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), public.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), public.join("up")).unwrap();
    std::os::unix::fs::symlink(public.join("ok.txt"), public.join("alias.txt")).unwrap();
    std::fs::write(public.join("sub/leak.txt.br"), "x").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), public.join("app.js.gz")).unwrap();
    let app = TestApp::spawn(Backend::Sqlite, &static_toml(dir.path())).await;
    let addr = addr(&app);
    for path in [
        "/static/../secret.txt",
        "/static/sub/../../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/sub%2f..%2f..%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/.%2e/secret.txt",
        "/static/%00secret.txt",
        "/static/leak.txt",
        "/static/up/secret.txt",
    ] {
        let reply = raw_get(&addr, path, "").await;
        assert_eq!(
            (reply.status, reply.text()),
            (404, NOT_FOUND.to_owned()),
            "{path}"
        );
    }
    // A variant that is a symlink out is skipped, not served.
    let js = raw_get(&addr, "/static/app.js", "Accept-Encoding: gzip\r\n").await;
    assert_eq!((js.status, js.text()), (200, "let x = 1;".to_owned()));
    // A symlink whose target is inside, even by way of the outside, is fine.
    let round = raw_get(&addr, "/static/up/public/ok.txt", "").await;
    assert_eq!((round.status, round.text()), (200, "inside".to_owned()));
    let inside = raw_get(&addr, "/static/alias.txt", "").await;
    assert_eq!((inside.status, inside.text()), (200, "inside".to_owned()));
    let encoded = raw_get(&addr, "/static/%6fk.txt", "").await;
    assert_eq!((encoded.status, encoded.text()), (200, "inside".to_owned()));
    app.stop().await;
}

/// `GET path` until `done` holds for the reply, within 10 s (the cache
/// looks at the disk again at most a second after its last look).
async fn poll_until(
    addr: &str,
    path: &str,
    extra: &str,
    done: impl Fn(&crate::front_helpers::RawReply) -> bool,
) -> crate::front_helpers::RawReply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = raw_get(addr, path, extra).await;
        if done(&reply) {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} still answers {} {:?}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Small files are answered from memory (through the real binary): a file
/// changed on disk is served fresh, with new validators, once the cache
/// looks again; a new precompressed variant is picked up; a deleted file
/// becomes 404; a file above the cache's limit is still served, whole and
/// in ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_cache_follows_the_disk() {
    let dir = static_tree();
    let public = dir.path().join("public");
    let big: Vec<u8> = (0..100 * 1024).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(public.join("big.bin"), &big).unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, static_toml(dir.path())).unwrap();
    let mut command = crate::helpers::binary();
    command
        .current_dir(dir.path())
        .env("PORTCULLIS_CONFIG", &config)
        .env("PORTCULLIS_PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PORTCULLIS_PASSWORD_HASH_ITERATIONS", "1");
    let served = crate::helpers::Served::start(command).await.unwrap();
    let addr = served.addr.clone();

    let first = raw_get(&addr, "/static/ok.txt", "").await;
    assert_eq!((first.status, first.text()), (200, "inside".to_owned()));
    let etag = first.header("etag").unwrap().to_owned();
    let again = raw_get(&addr, "/static/ok.txt", "").await;
    assert_eq!((again.status, again.text()), (200, "inside".to_owned()));
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let cached = raw_get(
        &addr,
        "/static/ok.txt",
        &format!("If-None-Match: {etag}\r\n"),
    )
    .await;
    assert_eq!((cached.status, cached.text()), (304, String::new()));

    std::fs::write(public.join("ok.txt"), "changed on disk").unwrap();
    let fresh = poll_until(&addr, "/static/ok.txt", "", |reply| {
        assert_eq!(reply.status, 200);
        reply.text() != "inside"
    })
    .await;
    assert_eq!(fresh.text(), "changed on disk");
    assert_eq!(fresh.header("content-length"), Some("15"));
    assert_ne!(fresh.header("etag"), Some(etag.as_str()));
    let stale = raw_get(
        &addr,
        "/static/ok.txt",
        &format!("If-None-Match: {etag}\r\n"),
    )
    .await;
    assert_eq!(
        (stale.status, stale.text()),
        (200, "changed on disk".to_owned())
    );

    // A variant that appears later is sent to the clients that take it.
    let plain = raw_get(&addr, "/static/app.js", "Accept-Encoding: br\r\n").await;
    assert_eq!((plain.status, plain.text()), (200, "let x = 1;".to_owned()));
    std::fs::write(public.join("app.js.br"), "BROTLI-JS").unwrap();
    let br = poll_until(
        &addr,
        "/static/app.js",
        "Accept-Encoding: br\r\n",
        |reply| reply.text() != "let x = 1;",
    )
    .await;
    assert_eq!((br.status, br.text()), (200, "BROTLI-JS".to_owned()));
    assert_eq!(br.header("content-encoding"), Some("br"));

    std::fs::remove_file(public.join("ok.txt")).unwrap();
    let gone = poll_until(&addr, "/static/ok.txt", "", |reply| reply.status != 200).await;
    assert_eq!((gone.status, gone.text()), (404, NOT_FOUND.to_owned()));

    for _ in 0..2 {
        let whole = raw_get(&addr, "/static/big.bin", "").await;
        assert_eq!(whole.status, 200);
        assert_eq!(whole.header("content-length"), Some("102400"));
        assert!(whole.body == big, "the large file came back altered");
    }
    let part = raw_get(&addr, "/static/big.bin", "Range: bytes=70000-70009\r\n").await;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some("bytes 70000-70009/102400")
    );
    assert_eq!(part.body, big[70000..70010]);
    let (code, log) = served.terminate().await;
    assert_eq!(code, 0, "{log}");
}

/// API routes come first, then mounts by longest prefix; a path no mount
/// takes is the API's 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_precedence() {
    let dir = static_tree();
    let upstream = Upstream::start().await;
    let toml = format!(
        "[[static]]\nprefix = \"/\"\ndir = \"{}\"\n[[upstream]]\nprefix = \"/app/\"\nurl = \"{}\"\nauth = \"none\"\n[[static]]\nprefix = \"/app/assets/\"\ndir = \"{}\"\n",
        dir.path().join("public").display(),
        upstream.url(),
        dir.path().join("public/sub").display(),
    );
    let app = TestApp::spawn(Backend::Sqlite, &toml).await;
    app.user("alice", "alice-pass", true, false).await;
    app.login("alice", "alice-pass").await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status, 200);
    let me = app.get("/api/users/me/", None).await;
    assert_eq!((me.status, me.body.as_str()), (401, NO_CREDENTIALS));
    let page = app.get("/app.css", None).await;
    assert_eq!(
        (page.status, page.body.as_str()),
        (200, "body { color: red; }\n")
    );
    let proxied = app.get("/app/page", None).await;
    assert_eq!(proxied.json["path"], "/app/page");
    let nested = app.get("/app/assets/", None).await;
    assert_eq!((nested.status, nested.body.as_str()), (200, "<h1>sub</h1>"));
    let unknown = app.get("/api/unknown/", None).await;
    assert_eq!((unknown.status, unknown.body.as_str()), (404, NOT_FOUND));
    app.stop().await;

    // Without a mount at "/", a path nobody takes is still the API's 404.
    let app = TestApp::spawn(Backend::Sqlite, &static_toml(dir.path())).await;
    let unknown = app.get("/nothing/here", None).await;
    assert_eq!((unknown.status, unknown.body.as_str()), (404, NOT_FOUND));
    app.stop().await;
}

/// Why these settings cannot serve: refused when read, or when the
/// mounts are opened; empty when they can.
fn mount_error(toml: &str) -> String {
    Settings::from_toml(toml)
        .and_then(|settings| settings.mounts.open().map(drop))
        .err()
        .map(|e| e.0)
        .unwrap_or_default()
}

/// Each bad entry is refused with a message naming it and the fix.
#[test]
fn bad_mounts_are_refused_with_the_fix() {
    let dir = static_tree();
    let public = dir.path().join("public");
    let cases = [
        (
            "[[static]]\nprefix = \"/static/\"\ndir = \"/no/such/dir\"\n".to_owned(),
            "[[static]] #1 (prefix \"/static/\", from default): dir /no/such/dir cannot be served (No such file or directory (os error 2)); set dir to an existing directory (relative paths are from the working directory)",
        ),
        (
            format!(
                "[[static]]\nprefix = \"static\"\ndir = \"{}\"\n",
                public.display()
            ),
            "[[static]] #1 (prefix \"static\", from default): prefix must start and end with `/`, such as \"/static/\"",
        ),
        (
            format!(
                "[[static]]\nprefix = \"/s/\"\ndir = \"{}\"\n[[static]]\nprefix = \"/media\"\ndir = \"{}\"\n",
                public.display(),
                public.display()
            ),
            "[[static]] #2 (prefix \"/media\", from default): prefix must start and end with `/`, such as \"/static/\"",
        ),
        (
            format!(
                "[[static]]\nprefix = \"/api/token/\"\ndir = \"{}\"\n",
                public.display()
            ),
            "[[static]] #1 (prefix \"/api/token/\", from default): the API itself answers /api/token/, which comes before every mount; choose another prefix",
        ),
        (
            format!(
                "[[static]]\nprefix = \"/x/\"\ndir = \"{}\"\n[[upstream]]\nprefix = \"/x/\"\nurl = \"http://127.0.0.1:1\"\n",
                public.display()
            ),
            "[[upstream]] #1 (prefix \"/x/\", from default): another [[static]], [[upstream]] or [[wsgi]] entry has the same prefix; give each its own",
        ),
        (
            "[[upstream]]\nprefix = \"/app/\"\nurl = \"http://127.0.0.1:8001\"\nauth = \"yes\"\n"
                .to_owned(),
            "[[upstream]] #1 (prefix \"/app/\", from default): auth \"yes\" is not one of \"required\", \"optional\", \"none\"",
        ),
        (
            "[[upstream]]\nprefix = \"/app/\"\nurl = \"https://example.com\"\n".to_owned(),
            "[[upstream]] #1 (prefix \"/app/\", from default): url \"https://example.com\" must start with http:// (the upstream is reached over plain HTTP, usually on localhost or a private network); use the application's address, such as \"http://127.0.0.1:8001\"",
        ),
        (
            "[[upstream]]\nprefix = \"/app/\"\nurl = \"localhost:8001\"\n".to_owned(),
            "[[upstream]] #1 (prefix \"/app/\", from default): url \"localhost:8001\" must start with http:// (the upstream is reached over plain HTTP, usually on localhost or a private network); use the application's address, such as \"http://127.0.0.1:8001\"",
        ),
        (
            "identity_header_user_id = \"Bad Header\"\n".to_owned(),
            "IDENTITY_HEADER_USER_ID (`identity_header_user_id`, from default): \"Bad Header\" is not a valid header name; use letters, digits and dashes, such as X-Portcullis-User-Id",
        ),
        (
            "identity_header_username = \"X-Portcullis-User-Id\"\n".to_owned(),
            "IDENTITY_HEADER_USER_ID (`identity_header_user_id`, from default), IDENTITY_HEADER_USERNAME (`identity_header_username`, from default) and IDENTITY_HEADER_IS_STAFF (`identity_header_is_staff`, from default) must be three distinct headers of their own (not x-portcullis-user-id); the defaults are X-Portcullis-User-Id, X-Portcullis-Username and X-Portcullis-Is-Staff",
        ),
        (
            "upstream_read_timeout = 0\n".to_owned(),
            "UPSTREAM_READ_TIMEOUT (`upstream_read_timeout`, from default) must be at least 1 second, such as 5s or 1m",
        ),
    ];
    for (toml, expected) in cases {
        assert_eq!(mount_error(&toml), expected, "{toml}");
    }
    let unknown =
        Settings::from_toml("[[upstream]]\nprefix = \"/a/\"\nurl = \"http://x\"\nstrip = true\n")
            .unwrap_err()
            .0;
    assert_eq!(
        unknown,
        "`strip` in [[upstream]] #1 in the settings is not a setting; did you mean `strip_prefix`?"
    );
}

fn upstream_toml(upstream: &str, auth: &str, extra: &str) -> String {
    format!("{extra}[[upstream]]\nprefix = \"/app/\"\nurl = \"{upstream}\"\nauth = \"{auth}\"\n")
}

fn header_values(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Method, path, query, headers and body pass through; hop-by-hop headers
/// (in both directions) and client-sent identity headers do not;
/// `X-Forwarded-*` are set; connections to the upstream are pooled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_passes_requests_through() {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &upstream_toml(&upstream.url(), "none", "")).await;
    let addr = addr(&app);
    let body = "name=alice&x=%2F";
    let reply = raw(
        &addr,
        &format!(
            "PATCH /app/items/a%20b/?x=1&y=%2F HTTP/1.1\r\nHost: front.example\r\nConnection: close, X-Hop\r\nX-Hop: gone\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nProxy-Thing: 1\r\nX-Custom: kept\r\nX-Custom: twice\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Portcullis-User-Id: 1\r\nx-portcullis-username: admin\r\nX-Portcullis-Is-Staff: true\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(echo["method"], "PATCH");
    assert_eq!(echo["path"], "/app/items/a%20b/");
    assert_eq!(echo["query"], "x=1&y=%2F");
    assert_eq!(echo["body"], body);
    assert_eq!(header_values(&echo, "x-custom"), ["kept", "twice"]);
    assert_eq!(header_values(&echo, "host"), ["front.example"]);
    assert_eq!(header_values(&echo, "x-forwarded-host"), ["front.example"]);
    assert_eq!(
        header_values(&echo, "x-forwarded-for"),
        ["203.0.113.9, 127.0.0.1"]
    );
    assert_eq!(header_values(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        header_values(&echo, "content-type"),
        ["application/x-www-form-urlencoded"]
    );
    for gone in [
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-thing",
        "x-portcullis-user-id",
        "x-portcullis-username",
        "x-portcullis-is-staff",
    ] {
        assert_eq!(header_values(&echo, gone), Vec::<String>::new(), "{gone}");
    }
    // The upstream's own headers come back; its hop-by-hop ones do not.
    assert_eq!(reply.header("x-upstream"), Some("yes"));
    assert_eq!(reply.header("x-upstream-hop"), None);
    assert_eq!(reply.header("keep-alive"), None);

    // Pooled: sequential requests reuse one upstream connection.
    let mut peers = std::collections::HashSet::new();
    for _ in 0..4 {
        let reply = app.get("/app/pool", None).await;
        assert_eq!(reply.status, 200);
        assert_eq!(header_values(&reply.json, "x-forwarded-for"), ["127.0.0.1"]);
        peers.insert(reply.json["peer"].as_str().unwrap().to_owned());
    }
    assert_eq!(peers.len(), 1, "{peers:?}");
    // An application's own 401 comes back untouched (no WWW-Authenticate added).
    let own = app.get("/app/unauthorized", None).await;
    assert_eq!((own.status, own.body.as_str()), (401, "the app says no"));
    assert_eq!(own.header("www-authenticate"), None);
    app.stop().await;
}

/// `X-Forwarded-For` names each request's own peer, however the requests
/// from several addresses interleave (the value of the last one is kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_forwards_each_peers_own_address() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let upstream = Upstream::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &upstream_toml(&upstream.url(), "none", "")).await;
    let server: std::net::SocketAddr = addr(&app).parse().unwrap();
    for peer in [
        "127.0.0.2",
        "127.0.0.1",
        "127.0.0.3",
        "127.0.0.3",
        "127.0.0.2",
    ] {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{peer}:0").parse().unwrap()).unwrap();
        let mut stream = socket.connect(server).await.unwrap();
        stream
            .write_all(b"GET /app/who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.unwrap();
        let reply = crate::front_helpers::parse(&bytes);
        assert_eq!(reply.status, 200);
        let echo: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(header_values(&echo, "x-forwarded-for"), [peer], "{peer}");
    }
    app.stop().await;
}

/// `strip_prefix = true` forwards `/app/x` as `/x`, and a path in `url`
/// goes before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_strips_the_prefix_when_asked() {
    let upstream = Upstream::start().await;
    let toml = format!(
        "[[upstream]]\nprefix = \"/app/\"\nurl = \"{0}\"\nauth = \"none\"\nstrip_prefix = true\n[[upstream]]\nprefix = \"/based/\"\nurl = \"{0}/base/\"\nauth = \"none\"\nstrip_prefix = true\n",
        upstream.url()
    );
    let app = TestApp::spawn(Backend::Sqlite, &toml).await;
    let reply = app.get("/app/x/y?q=1", None).await;
    assert_eq!(
        (reply.json["path"].as_str(), reply.json["query"].as_str()),
        (Some("/x/y"), Some("q=1"))
    );
    let root = app.get("/app/", None).await;
    assert_eq!(root.json["path"], "/");
    let based = app.get("/based/z", None).await;
    assert_eq!(based.json["path"], "/base/z");
    app.stop().await;
}

/// `auth = "required"`: exactly `GET /api/users/me/`'s verdict (status and
/// body) for no token, a bad one, a good one and a revoked one; identity
/// headers for the good one, replacing the client's.
async fn proxy_requires_a_valid_token(backend: Backend) {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn(
        backend,
        &upstream_toml(
            &upstream.url(),
            "required",
            "rotate_refresh_tokens = true\n",
        ),
    )
    .await;
    let alice = app.user("alice", "alice-pass", true, true).await;
    let (_, access) = app.login("alice", "alice-pass").await;

    let anonymous = get_with(&app, "/app/data", &[("x-portcullis-user-id", "1")]).await;
    assert_eq!(
        (anonymous.status, anonymous.body.as_str()),
        (401, NO_CREDENTIALS)
    );
    assert_eq!(
        anonymous.header("www-authenticate"),
        Some("Bearer realm=\"api\"")
    );
    let garbage = app.get("/app/data", Some("not-a-token")).await;
    let me = app.get("/api/users/me/", Some("not-a-token")).await;
    assert_eq!((garbage.status, &garbage.body), (401, &me.body));
    assert_eq!(
        garbage.header("www-authenticate"),
        Some("Bearer realm=\"api\"")
    );

    let ok = app
        .client
        .get(app.url("/app/data"))
        .header("authorization", format!("Bearer {access}"))
        .header("x-portcullis-user-id", "999")
        .header("x-portcullis-username", "mallory")
        .send()
        .await
        .unwrap();
    let ok = Reply::read(ok).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        header_values(&ok.json, "x-portcullis-user-id"),
        [alice.id.to_string()]
    );
    assert_eq!(header_values(&ok.json, "x-portcullis-username"), ["alice"]);
    assert_eq!(header_values(&ok.json, "x-portcullis-is-staff"), ["true"]);
    assert_eq!(
        header_values(&ok.json, "authorization"),
        [format!("Bearer {access}")]
    );

    let out = app
        .post_bearer("/api/token/logout-all/", &access, json!({}))
        .await;
    assert_eq!(out.status, 200);
    let revoked = app.get("/app/data", Some(&access)).await;
    let me = app.get("/api/users/me/", Some(&access)).await;
    assert_eq!(me.status, 401);
    assert_eq!((revoked.status, &revoked.body), (401, &me.body));
    app.stop().await;
}

crate::both_backends!(proxy_requires_a_valid_token);

/// `auth = "optional"`: anonymous requests pass without identity (client
/// copies removed); a token adds it; a bad token is refused as DRF does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_optional_auth() {
    let upstream = Upstream::start().await;
    let toml = upstream_toml(
        &upstream.url(),
        "optional",
        "identity_header_user_id = \"X-User\"\nidentity_header_username = \"X-Name\"\nidentity_header_is_staff = \"X-Staff\"\n",
    );
    let app = TestApp::spawn(Backend::Sqlite, &toml).await;
    let bob = app.user("bob", "bob-pass", true, false).await;
    let (_, access) = app.login("bob", "bob-pass").await;
    let anonymous = get_with(&app, "/app/p", &[("x-user", "1"), ("x-staff", "true")]).await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(
        header_values(&anonymous.json, "x-user"),
        Vec::<String>::new()
    );
    assert_eq!(
        header_values(&anonymous.json, "x-staff"),
        Vec::<String>::new()
    );
    let known = app.get("/app/p", Some(&access)).await;
    assert_eq!(header_values(&known.json, "x-user"), [bob.id.to_string()]);
    assert_eq!(header_values(&known.json, "x-name"), ["bob"]);
    assert_eq!(header_values(&known.json, "x-staff"), ["false"]);
    let bad = app.get("/app/p", Some("bad")).await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json["code"], "token_not_valid");
    // /auth/verify uses the same names.
    let verify = app.get("/auth/verify", Some(&access)).await;
    assert_eq!(verify.header("x-user"), Some(bob.id.to_string().as_str()));
    app.stop().await;
}

/// Bodies stream both ways: the client gets the upstream's first chunk
/// before the upstream has sent its second, and the upstream gets the
/// client's first chunk before the client has sent its second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_streams_bodies() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let upstream = Upstream::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &upstream_toml(&upstream.url(), "none", "")).await;
    let mut response = app.client.get(app.url("/app/stream")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("the first chunk must arrive before the upstream finishes")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first");
    upstream.release.notify_one();
    let second = response.chunk().await.unwrap().unwrap();
    assert_eq!(&second[..], b"second");
    assert!(response.chunk().await.unwrap().is_none());

    let mut stream = tokio::net::TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(b"POST /app/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), upstream.got_first.notified())
        .await
        .expect("the upstream must get the first chunk before the body ends");
    stream.write_all(b"6\r\n world\r\n0\r\n\r\n").await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let reply = crate::front_helpers::parse(&bytes);
    let echo: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(echo["body"], "hello world");
    app.stop().await;
}

/// Connections to an upstream are kept and reused; one the upstream closes
/// after each answer (without saying so) costs the client nothing: the
/// next request goes on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_reuses_upstream_connections() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let upstream = Upstream::start().await;
    let closer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closer_addr = closer.local_addr().unwrap();
    let closing = tokio::spawn(async move {
        loop {
            let (mut socket, _) = closer.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                socket.write_all(answer).await.ok();
                // Dropped: closed without `Connection: close`.
            });
        }
    });
    let toml = format!(
        "[[upstream]]\nprefix = \"/app/\"\nurl = \"{}\"\nauth = \"none\"\n[[upstream]]\nprefix = \"/closing/\"\nurl = \"http://{closer_addr}\"\nauth = \"none\"\n",
        upstream.url()
    );
    let app = TestApp::spawn(Backend::Sqlite, &toml).await;
    let mut peers = Vec::new();
    for _ in 0..3 {
        let reply = app.get("/app/echo", None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let echo: Value = serde_json::from_str(&reply.body).unwrap();
        peers.push(echo["peer"].as_str().unwrap().to_owned());
    }
    assert!(peers.iter().all(|p| *p == peers[0]), "{peers:?}");
    for _ in 0..5 {
        let reply = app.get("/closing/x", None).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    }
    closing.abort();
    app.stop().await;
}

/// An upstream that refuses connections is a 502, one that does not
/// answer within `UPSTREAM_READ_TIMEOUT` a 504, each with a JSON body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_failures_are_502_and_504() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let upstream = Upstream::start().await;
    let toml = format!(
        "upstream_read_timeout = 1\nupstream_connect_timeout = 1\n[[upstream]]\nprefix = \"/down/\"\nurl = \"http://{closed}\"\nauth = \"none\"\n[[upstream]]\nprefix = \"/app/\"\nurl = \"{}\"\nauth = \"none\"\n",
        upstream.url()
    );
    let app = TestApp::spawn(Backend::Sqlite, &toml).await;
    let down = app.get("/down/x", None).await;
    assert_eq!(
        (down.status, down.body.as_str()),
        (
            502,
            r#"{"detail":"The upstream server is unreachable or sent an invalid response.","code":"bad_gateway"}"#
        )
    );
    assert_eq!(down.header("content-type"), Some("application/json"));
    assert_eq!(down.header("www-authenticate"), None);
    let slow = app.get("/app/slow", None).await;
    assert_eq!(
        (slow.status, slow.body.as_str()),
        (
            504,
            r#"{"detail":"The upstream server did not answer in time.","code":"gateway_timeout"}"#
        )
    );
    assert_eq!(slow.header("content-type"), Some("application/json"));
    app.stop().await;
}

/// A file the server cannot read for another reason than permissions
/// (here a socket, which `open` refuses): DRF's generic 500, and the
/// cause only in the log.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_file_that_cannot_be_read_is_500() {
    let dir = static_tree();
    let _socket =
        std::os::unix::net::UnixListener::bind(dir.path().join("public/socket.txt")).unwrap();
    let app = TestApp::spawn(Backend::Sqlite, &static_toml(dir.path())).await;
    let reply = app.get("/static/socket.txt", None).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (500, r#"{"detail":"A server error occurred."}"#)
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), None);
    app.stop().await;
}

/// `UPSTREAM_CONNECT_TIMEOUT`: an upstream whose accept queue is full
/// drops new SYNs, so connecting hangs; past the timeout, 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_connect_timeout_is_504() {
    // A listener with the smallest backlog that nobody accepts from, and
    // connections that fill its queue (the later ones hang, and are
    // dropped with the test).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let hung = listener.local_addr().unwrap();
    let mut fillers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        fillers.spawn(tokio::net::TcpStream::connect(hung));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let toml = format!(
        "upstream_connect_timeout = 1\n[[upstream]]\nprefix = \"/hung/\"\nurl = \"http://{hung}\"\nauth = \"none\"\n"
    );
    let app = TestApp::spawn(Backend::Sqlite, &toml).await;
    let started = std::time::Instant::now();
    let reply = app.get("/hung/x", None).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            504,
            r#"{"detail":"The upstream server did not answer in time.","code":"gateway_timeout"}"#
        )
    );
    // The connect timeout answered, not the 60 s read timeout.
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(listener);
    fillers.abort_all();
    app.stop().await;
}

/// A WebSocket handshake (`Connection: Upgrade`) passes through with its
/// token checked, and bytes then flow both ways on the tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_passes_websocket_upgrades() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let upstream = Upstream::start().await;
    let app = TestApp::spawn(
        Backend::Sqlite,
        &upstream_toml(&upstream.url(), "required", ""),
    )
    .await;
    app.user("alice", "alice-pass", true, false).await;
    let (_, access) = app.login("alice", "alice-pass").await;
    let handshake = |token: &str| {
        format!(
            "GET /app/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
    };
    let refused = raw(
        &addr(&app),
        &handshake("bad").replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(refused.status, 401);

    let mut stream = tokio::net::TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(handshake(&access).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let reply = crate::front_helpers::parse(&head);
    assert_eq!(reply.status, 101);
    assert_eq!(reply.header("upgrade"), Some("websocket"));
    for message in ["ping", "pong"] {
        stream.write_all(message.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 5 + message.len()];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, format!("echo:{message}").as_bytes());
    }
    app.stop().await;
}

/// Concurrent requests each get their own upstream connection and their
/// own answer, with bodies of many reads each way; once done, the
/// connections are all kept, so as many concurrent requests again open
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_keeps_concurrent_connections() {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn(Backend::Sqlite, &upstream_toml(&upstream.url(), "none", "")).await;
    let round = |round: usize| {
        let requests = (0..8).map(|i| {
            // 200 KB: many reads and writes on both connections.
            let body = format!("{round}-{i}:{}", "x".repeat(200_000));
            let request = app.client.post(app.url("/app/echo")).body(body.clone());
            async move {
                let reply = Reply::read(request.send().await.unwrap()).await;
                assert_eq!(reply.status, 200);
                let echo: Value = serde_json::from_str(&reply.body).unwrap();
                assert_eq!(echo["body"].as_str(), Some(body.as_str()));
                echo["peer"].as_str().unwrap().to_owned()
            }
        });
        futures_util::future::join_all(requests)
    };
    let first: std::collections::HashSet<String> = round(1).await.into_iter().collect();
    // A connection goes back to the pool once the server has sent its
    // body's end, which can be just after the client has read the body:
    // let the first round's connections come back before the second asks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second: std::collections::HashSet<String> = round(2).await.into_iter().collect();
    // Eight requests at a time never need more than eight connections if
    // the kept ones are reused. (The first round may itself use fewer, one
    // connection carrying two of its requests one after the other; then
    // the second may open the rest, so it need not be within the first.)
    let all: std::collections::HashSet<&String> = first.union(&second).collect();
    assert!(
        all.len() <= 8,
        "{} connections for rounds of 8: {second:?} after {first:?}",
        all.len()
    );
    app.stop().await;
}

/// `UPSTREAM_READ_TIMEOUT` also bounds the wait between two reads of the
/// body: an upstream that sends a first chunk and then nothing has the
/// response cut (the client sees the body fail), not held open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_read_timeout_cuts_a_stalled_body() {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn(
        Backend::Sqlite,
        &upstream_toml(&upstream.url(), "none", "upstream_read_timeout = 1\n"),
    )
    .await;
    let mut response = app.client.get(app.url("/app/stream")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"first");
    // `/stream` is never released: its second chunk never comes.
    let started = std::time::Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("the stalled body must be cut by the read timeout");
    assert!(rest.is_err(), "{rest:?}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    app.stop().await;
}

/// An upstream that answers before it has read the request's body (here
/// at once after the head) still gets the whole body, which the client
/// sends after the answer; the connection then carries the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_finishes_a_request_answered_early() {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = listener.local_addr().unwrap();
    // (connection number, request line, body) for every request.
    let seen: Arc<Mutex<Vec<(usize, String, String)>>> = Arc::default();
    let got_body = Arc::new(tokio::sync::Notify::new());
    let (record, notify) = (Arc::clone(&seen), Arc::clone(&got_body));
    let upstream = tokio::spawn(async move {
        for connection in 0.. {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (record, notify) = (Arc::clone(&record), Arc::clone(&notify));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end;
                        }
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let line = head.lines().next().unwrap().to_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    let early = line.contains("/early");
                    if early {
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly";
                        socket.write_all(answer).await.unwrap();
                    }
                    while buf.len() < length {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body: Vec<u8> = buf.drain(..length).collect();
                    let body = String::from_utf8_lossy(&body).into_owned();
                    record.lock().unwrap().push((connection, line, body));
                    notify.notify_one();
                    if !early {
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        socket.write_all(answer).await.unwrap();
                    }
                }
            });
        }
    });
    let app = TestApp::spawn(
        Backend::Sqlite,
        &upstream_toml(&format!("http://{upstream_addr}"), "none", ""),
    )
    .await;
    let mut client = tokio::net::TcpStream::connect(addr(&app)).await.unwrap();
    client
        .write_all(b"POST /app/early HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .unwrap();
    // The answer comes while half the body is still with the client.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"early") {
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut byte))
            .await
            .expect("the early answer must come before the body is sent")
            .unwrap();
        answer.push(byte[0]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{answer:?}");
    client.write_all(b"world").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), got_body.notified())
        .await
        .expect("the rest of the body must reach the upstream");
    // The connection goes back to the pool once its request is written,
    // a moment after the upstream has read it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let next = app.get("/app/after", None).await;
    assert_eq!((next.status, next.body.as_str()), (200, "ok"));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (
                0,
                "POST /app/early HTTP/1.1".to_owned(),
                "helloworld".to_owned()
            ),
            (0, "GET /app/after HTTP/1.1".to_owned(), String::new()),
        ]
    );
    upstream.abort();
    app.stop().await;
}

/// `/auth/verify`: 200 with the identity headers for a valid access token;
/// otherwise `GET /api/users/me/`'s 401 and `WWW-Authenticate`.
async fn forward_auth_verifies_tokens(backend: Backend) {
    let app = TestApp::spawn(backend, "rotate_refresh_tokens = true\n").await;
    let carol = app.user("carol", "carol-pass", true, false).await;
    let (refresh, access) = app.login("carol", "carol-pass").await;
    let ok = app.get("/auth/verify", Some(&access)).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, ""));
    assert_eq!(
        ok.header("x-portcullis-user-id"),
        Some(carol.id.to_string().as_str())
    );
    assert_eq!(ok.header("x-portcullis-username"), Some("carol"));
    assert_eq!(ok.header("x-portcullis-is-staff"), Some("false"));
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    let post = app.post_bearer("/auth/verify", &access, json!({})).await;
    assert_eq!(post.status, 200);
    for token in [None, Some("garbage"), Some(refresh.as_str())] {
        let verdict = app.get("/auth/verify", token).await;
        let me = app.get("/api/users/me/", token).await;
        assert_eq!(
            (verdict.status, &verdict.body),
            (401, &me.body),
            "{token:?}"
        );
        assert_eq!(
            verdict.header("www-authenticate"),
            Some("Bearer realm=\"api\"")
        );
        assert_eq!(verdict.header("x-portcullis-user-id"), None);
    }
    let out = app
        .post_bearer("/api/token/logout-all/", &access, json!({}))
        .await;
    assert_eq!(out.status, 200);
    let revoked = app.get("/auth/verify", Some(&access)).await;
    let me = app.get("/api/users/me/", Some(&access)).await;
    assert_eq!((revoked.status, &revoked.body), (401, &me.body));
    app.stop().await;
}

crate::both_backends!(forward_auth_verifies_tokens);

/// A real nginx (Debian's package) with `auth_request` in front of
/// portcullis and an application: allowed and refused requests. nginx runs
/// as this test's own child process on a free port, never as the system
/// service; a missing nginx fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_in_front() {
    let upstream = Upstream::start().await;
    let app = TestApp::spawn(Backend::Sqlite, "rotate_refresh_tokens = true\n").await;
    let dave = app.user("dave", "dave-pass", true, true).await;
    let (_, access) = app.login("dave", "dave-pass").await;
    let nginx = Nginx::start(&addr(&app), &upstream.addr.to_string()).await;

    let allowed = nginx.get("/app/report?x=1", Some(&access), &[]).await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let echo: Value = serde_json::from_slice(&allowed.body).unwrap();
    assert_eq!(echo["path"], "/app/report");
    assert_eq!(
        header_values(&echo, "x-portcullis-user-id"),
        [dave.id.to_string()]
    );
    assert_eq!(header_values(&echo, "x-portcullis-username"), ["dave"]);
    assert_eq!(header_values(&echo, "x-portcullis-is-staff"), ["true"]);

    let anonymous = nginx
        .get("/app/report", None, &[("X-Portcullis-User-Id", "1")])
        .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.header("www-authenticate"),
        Some("Bearer realm=\"api\"")
    );
    let forged = nginx
        .get("/app/report", Some("forged.token.value"), &[])
        .await;
    assert_eq!(forged.status, 401);
    // A spoofed identity header with a valid token is overwritten.
    let spoofed = nginx
        .get(
            "/app/report",
            Some(&access),
            &[("X-Portcullis-User-Id", "999")],
        )
        .await;
    let echo: Value = serde_json::from_slice(&spoofed.body).unwrap();
    assert_eq!(
        header_values(&echo, "x-portcullis-user-id"),
        [dave.id.to_string()]
    );

    let out = app
        .post_bearer("/api/token/logout-all/", &access, json!({}))
        .await;
    assert_eq!(out.status, 200);
    let revoked = nginx.get("/app/report", Some(&access), &[]).await;
    assert_eq!(revoked.status, 401);
    app.stop().await;
}

/// nginx as a child process; killed with the value.
struct Nginx {
    addr: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx with `auth_request` to portcullis in front of `upstream`.
    async fn start(portcullis: &str, upstream: &str) -> Self {
        Self::with_locations(&format!(
            r#"
        location = /_portcullis {{
            internal;
            proxy_pass http://{portcullis}/auth/verify;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location /app/ {{
            auth_request /_portcullis;
            auth_request_set $pc_user_id $upstream_http_x_portcullis_user_id;
            auth_request_set $pc_username $upstream_http_x_portcullis_username;
            auth_request_set $pc_is_staff $upstream_http_x_portcullis_is_staff;
            proxy_set_header X-Portcullis-User-Id $pc_user_id;
            proxy_set_header X-Portcullis-Username $pc_username;
            proxy_set_header X-Portcullis-Is-Staff $pc_is_staff;
            proxy_pass http://{upstream};
        }}"#
        ))
        .await
    }

    /// nginx with one server whose body is `locations`.
    async fn with_locations(locations: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        // Root (CI) must name a user for the workers; with
        // `master_process off` there are none, but nginx still checks.
        let user =
            if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir.path()).unwrap()) == 0 {
                "user root;"
            } else {
                ""
            };
        let conf = format!(
            r"{user}
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = tokio::process::Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .args(["-e", &format!("{d}/error.log")])
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nginx ({e}); install Debian's nginx package (`apt-get install -y nginx`), as .ci/run does")
            });
        let addr = format!("127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx did not listen within 15 s: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            addr,
            _child: child,
            _dir: dir,
        }
    }

    async fn get(
        &self,
        path: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
    ) -> crate::front_helpers::RawReply {
        let mut extra = String::new();
        if let Some(token) = bearer {
            extra = extra + "Authorization: Bearer " + token + "\r\n";
        }
        for (name, value) in headers {
            extra = extra + name + ": " + value + "\r\n";
        }
        raw_get(&self.addr, path, &extra).await
    }
}
