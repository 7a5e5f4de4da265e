//! The staff console in a real browser (issue 18): headless Chromium
//! (Debian's `chromium`), driven by `chromedriver` (W3C `WebDriver`), which
//! each test starts as its own child on a free port and stops at its end.
//! Without chromium or chromedriver these tests fail, never skip:
//! `scripts/test` installs both.
//!
//! Every check reads what the page shows (element text and attributes),
//! and the API is asked right after what the console changed.
//!
//! `PORTCULLIS_TEST_SCREENSHOTS=docs cargo test -p portcullis --test api browser::`
//! also writes the screenshots of the main pages that `docs/console-*.png`
//! and the README show.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::console::{CSRF_REFUSED, audit_lines, sql, staff};
use crate::helpers::{Backend, TestApp};

const INACTIVE: &str = r#"{"detail":"User is inactive","code":"user_inactive"}"#;
const BLACKLISTED: &str = r#"{"detail":"Token is blacklisted","code":"token_not_valid"}"#;

/// The browser window, in CSS pixels: a laptop's.
const WINDOW: (u32, u32) = (1100, 820);

/// One browser at a time: the machines that run the suite have two cores,
/// and a Chromium per test at once makes every page load slow.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where `program` is on `PATH`, or a failure that says how to get it.
fn installed(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{program} is not installed: the browser tests need Debian's chromium and \
                 chromium-driver (scripts/test installs them: apt-get install chromium chromium-driver)"
            )
        })
}

/// A free TCP port on 127.0.0.1 (the kernel's choice, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `chromedriver` as this test's child, and one headless Chromium session
/// in it with a fresh profile.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    async fn start() -> Self {
        let turn = ONE_BROWSER.lock().await;
        let chromium = installed("chromium");
        let chromedriver = installed("chromedriver");
        let port = free_port();
        let driver = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group, so that the end of the test (or its
            // failure) also ends the Chromium it started.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        wait_until_ready(&url).await;
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start chromium: {e}"));
        Self {
            client,
            driver,
            _profile: profile,
            _turn: turn,
        }
    }

    /// End the session (Chromium exits) and chromedriver.
    async fn stop(mut self) {
        self.client.clone().close().await.ok();
        self.driver.kill().await.ok();
    }

    async fn goto(&self, app: &TestApp, path: &str) {
        self.client.goto(&app.url(path)).await.unwrap();
    }

    async fn find(&self, css: &str) -> Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Type into the field `css` (emptied first).
    async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Click the element `css` (a link, a checkbox, an option).
    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Click the button whose text is `label`, and wait for the next page.
    async fn press(&self, label: &str) {
        let xpath = format!("//button[normalize-space(text())='{label}']");
        let button = self
            .client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no button {label:?}: {e}"));
        self.leave_by(button).await;
    }

    /// Click the link `css`, and wait for the page it leads to.
    async fn follow(&self, css: &str) {
        self.leave_by(self.find(css).await).await;
    }

    /// Click `element`, which loads another page, and wait for it.
    async fn leave_by(&self, element: Element) {
        let before = self.find("html").await;
        element.click().await.unwrap();
        wait_for_new_page(&self.client, &before).await;
    }

    /// The flash message of the page (what was just done).
    async fn flash(&self) -> String {
        self.text("p.flash").await
    }

    async fn title(&self) -> String {
        self.text("main h1").await
    }

    /// The session cookie and the CSRF token of the page shown, as a
    /// script-free client would send them.
    async fn credentials(&self) -> (String, String) {
        let cookie = self
            .client
            .get_named_cookie("portcullis-admin")
            .await
            .unwrap();
        let csrf = self
            .find(r#"input[name="csrf"]"#)
            .await
            .attr("value")
            .await
            .unwrap()
            .unwrap();
        (format!("portcullis-admin={}", cookie.value()), csrf)
    }

    /// A PNG of the page shown; also written as `docs/console-NAME.png`
    /// when `PORTCULLIS_TEST_SCREENSHOTS` names a folder.
    async fn screenshot(&self, name: &str) {
        // WebDriver shows the viewport only: make it as tall as the page.
        let (width, height) = (WINDOW.0, WINDOW.1);
        let page = self
            .client
            .execute(
                "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight",
                vec![],
            )
            .await
            .unwrap();
        let tall = u32::try_from(page.as_u64().unwrap())
            .unwrap()
            .clamp(height, 2400);
        self.client.set_window_size(width, tall).await.unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client.set_window_size(width, height).await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG of {name}");
        if let Some(dir) = std::env::var_os("PORTCULLIS_TEST_SCREENSHOTS") {
            let dir = workspace_path(Path::new(&dir));
            std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
        }
    }

    /// Log in through the login form.
    async fn login(&self, app: &TestApp, username: &str, password: &str) {
        self.goto(app, "/admin/login/").await;
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        self.press("Log in").await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test never reaches `stop`: end the whole group here.
        if let Some(pid) = self.driver.id() {
            std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status()
                .ok();
        }
    }
}

/// A relative folder is one of the workspace's (the tests run in the crate's).
fn workspace_path(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_owned()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir)
    }
}

/// Poll chromedriver's `/status` until it is ready (at most 20 s).
async fn wait_until_ready(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("{url}/status")).send().await
            && let Ok(status) = response.json::<Value>().await
            && status["value"]["ready"] == true
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer on {url} within 20 s");
}

/// Wait until `before` (the old page's root) is gone and the new page has
/// loaded: a form's submission does not block the click.
async fn wait_for_new_page(client: &Client, before: &Element) {
    for _ in 0..200 {
        // A stale element is the sign that the page was replaced.
        if before.tag_name().await.is_err() {
            let ready = client
                .execute("return document.readyState", vec![])
                .await
                .unwrap_or(Value::Null);
            if ready == "complete" {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the page did not change within 10 s");
}

/// A client that sends the console's cookie by hand and follows no redirect.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Log in as a superuser, find an account, deactivate it (its access token
/// is refused at once), set its password (which logs in on the API), end
/// one of its sessions, rotate a key; screenshots of the main pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superuser_manages_accounts_and_keys() {
    // Logins start sessions, so the user page lists them.
    let app = TestApp::spawn(
        Backend::Sqlite,
        "refresh_reuse_detection = true\nupdate_last_login = true\n",
    )
    .await;
    let root = staff(&app, "root", true).await;
    for (name, email) in [
        ("ada", "ada.lovelace@example.com"),
        ("alan", "alan.turing@example.org"),
        ("barbara", "barbara@example.net"),
        ("dave", "dave@example.com"),
        ("edsger", "edsger@example.nl"),
        ("grace", "grace.hopper@example.com"),
        ("ken", "ken@example.com"),
    ] {
        app.user_with_email(name, "old-pass", email, true, false)
            .await;
    }
    // Joined over the last months, as accounts do (the screenshots show it).
    sql(
        &app,
        &format!(
            "UPDATE users SET date_joined = {} - id * 1987654",
            crate::helpers::now()
        ),
    )
    .await;
    app.login("grace", "old-pass").await;
    let (_, dave_access) = app.login("dave", "old-pass").await;
    let browser = Browser::start().await;

    // The login page.
    browser.goto(&app, "/admin/users/").await;
    assert_eq!(browser.title().await, "Log in");
    browser.screenshot("login").await;
    browser.login(&app, "root", "wrong").await;
    assert_eq!(
        browser.text(r#"p.error[role="alert"]"#).await,
        "Please enter the correct username and password for a staff account. Note that both fields may be case-sensitive."
    );
    assert_eq!(
        browser.find("#username").await.prop("value").await.unwrap(),
        Some("root".to_owned()),
        "the username is kept"
    );
    browser.login(&app, "root", "staff-pass").await;
    assert_eq!(browser.title().await, "Users");
    assert_eq!(
        browser.text("header button").await,
        "Log out root",
        "logged in as root"
    );
    let names = browser
        .client
        .find_all(Locator::Css("tbody td:first-child a"))
        .await
        .unwrap();
    let mut listed = Vec::new();
    for name in names {
        listed.push(name.text().await.unwrap());
    }
    assert_eq!(
        listed,
        [
            "ada", "alan", "barbara", "dave", "edsger", "grace", "ken", "root"
        ]
    );
    browser.screenshot("users").await;

    // Search: by a prefix of the username, then of the email.
    browser.fill("#q", "da").await;
    browser.press("Search").await;
    let rows = browser
        .client
        .find_all(Locator::Css("tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(browser.text("tbody td:first-child a").await, "dave");
    assert_eq!(
        browser.text("tbody td:nth-child(2)").await,
        "dave@example.com"
    );
    browser.fill("#q", "grace.h").await;
    browser.press("Search").await;
    assert_eq!(browser.text("tbody td:first-child a").await, "grace");
    browser.fill("#q", "nobody").await;
    browser.press("Search").await;
    assert_eq!(browser.text("main > p").await, "No account matches.");

    // Dave's page, with his live session.
    browser.fill("#q", "dave").await;
    browser.press("Search").await;
    browser.follow("tbody td:first-child a").await;
    assert_eq!(browser.title().await, "dave");
    let sessions = browser
        .client
        .find_all(Locator::Css("section tbody tr"))
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1, "dave's one session");
    assert_eq!(
        browser.text("section tbody td:nth-child(4)").await,
        "127.0.0.1"
    );
    browser.screenshot("user").await;

    // Deactivate him: his access token is refused right after.
    let active = browser.find(r#"input[name="is_active"]"#).await;
    assert_eq!(
        active.prop("checked").await.unwrap(),
        Some("true".to_owned())
    );
    active.click().await.unwrap();
    browser.press("Save").await;
    assert_eq!(browser.flash().await, "Saved dave: is_active: yes -> no.");
    assert_eq!(
        browser
            .find(r#"input[name="is_active"]"#)
            .await
            .prop("checked")
            .await
            .unwrap(),
        Some("false".to_owned())
    );
    let me = app.get("/api/users/me/", Some(&dave_access)).await;
    assert_eq!((me.status, me.body.as_str()), (401, INACTIVE));
    assert_eq!(api_login(&app, "dave", "old-pass").await, 401);

    // Activate him again and reset his password: it logs in on the API,
    // and the old one no longer does.
    browser.click(r#"input[name="is_active"]"#).await;
    browser.press("Save").await;
    assert_eq!(browser.flash().await, "Saved dave: is_active: no -> yes.");
    browser.fill("#password", "brand-new-pass").await;
    browser.fill("#password2", "brand-new-pass").await;
    browser.press("Set password").await;
    assert_eq!(
        browser.flash().await,
        "Password set for dave; their sessions were ended."
    );
    let (refresh, access) = app.login("dave", "brand-new-pass").await;
    assert_eq!(app.get("/api/users/me/", Some(&access)).await.status, 200);
    assert_eq!(api_login(&app, "dave", "old-pass").await, 401);

    // End that new session from the console: its refresh token is refused.
    browser
        .goto(&app, &format!("/admin/users/{}/", dave_id(&app).await))
        .await;
    let sessions = browser
        .client
        .find_all(Locator::Css("section tbody tr"))
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1, "the session the new password started");
    browser.press("End").await;
    assert_eq!(
        browser.flash().await,
        "The session was ended; its tokens are refused."
    );
    assert_eq!(
        browser.text("section:nth-of-type(3) > p").await,
        "No live session."
    );
    let refreshed = app
        .post("/api/token/refresh/", json!({"refresh": refresh}))
        .await;
    assert_eq!(
        (refreshed.status, refreshed.body.as_str()),
        (401, BLACKLISTED)
    );

    // Keys: generate one that signs, then rotate it.
    browser.follow(r#"header a[href="/admin/keys/"]"#).await;
    assert_eq!(browser.title().await, "Signing keys");
    browser.click(r#"#algorithm option[value="EdDSA"]"#).await;
    browser.click(r#"input[name="activate"]"#).await;
    browser.press("Generate").await;
    let generated = browser.flash().await;
    assert!(
        generated.starts_with("Generated EdDSA key ")
            && generated.ends_with("; it signs from now on."),
        "{generated}"
    );
    browser.press("Rotate").await;
    let rotated = browser.flash().await;
    assert!(rotated.starts_with("Published EdDSA key "), "{rotated}");
    let new_kid = rotated["Published EdDSA key ".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut states = Vec::new();
    for row in browser
        .client
        .find_all(Locator::Css("tbody tr"))
        .await
        .unwrap()
    {
        let cells = row.find_all(Locator::Css("td")).await.unwrap();
        states.push((
            cells[0].text().await.unwrap(),
            cells[1].text().await.unwrap(),
            cells[2].text().await.unwrap(),
        ));
    }
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(
        states
            .iter()
            .any(|(kid, alg, _)| kid == &new_kid && alg == "EdDSA"),
        "{states:?}"
    );
    // A running server picks up a new key within 5 s (as from the CLI).
    let mut published = false;
    for _ in 0..100 {
        let jwks = app.get("/.well-known/jwks.json", None).await;
        if jwks.json["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == new_kid.as_str())
        {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(published, "the new key {new_kid} is published within 5 s");
    browser.screenshot("keys").await;

    // The audit trail shows it all, newest first.
    browser.follow(r#"header a[href="/admin/audit/"]"#).await;
    assert_eq!(browser.title().await, "Audit trail");
    let mut actions = Vec::new();
    for cell in browser
        .client
        .find_all(Locator::Css("tbody td:nth-child(3)"))
        .await
        .unwrap()
    {
        actions.push(cell.text().await.unwrap());
    }
    assert_eq!(
        actions,
        [
            "key.rotate",
            "key.generate",
            "session.end",
            "user.set_password",
            "user.activate",
            "user.deactivate"
        ]
    );
    browser.screenshot("audit").await;
    let lines = audit_lines(&app).await;
    assert!(lines.iter().all(|l| l["actor_id"] == root));

    // Log out: the console asks for a login again.
    browser.press("Log out root").await;
    assert_eq!(browser.title().await, "Log in");
    browser.goto(&app, "/admin/users/").await;
    assert_eq!(browser.title().await, "Log in");
    browser.stop().await;
}

/// The status of a login on `/api/token/`.
async fn api_login(app: &TestApp, username: &str, password: &str) -> u16 {
    app.post(
        "/api/token/",
        json!({"username": username, "password": password}),
    )
    .await
    .status
}

async fn dave_id(app: &TestApp) -> i64 {
    app.auth
        .user_store()
        .user_by_username("dave")
        .await
        .unwrap()
        .unwrap()
        .id
}

/// A plain staff member sees no superuser action, and posting one directly
/// with their own cookie and CSRF token is refused; a form whose CSRF token
/// was taken out is refused too. Nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_staff_and_forged_forms_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    staff(&app, "plain", false).await;
    let carol = app.user("carol", "carol-pass", true, false).await;
    let browser = Browser::start().await;
    browser.login(&app, "plain", "staff-pass").await;
    assert_eq!(browser.title().await, "Users");
    assert!(
        browser
            .client
            .find_all(Locator::Css(r#"header a[href="/admin/keys/"]"#))
            .await
            .unwrap()
            .is_empty(),
        "no Keys link for plain staff"
    );
    browser.goto(&app, "/admin/keys/").await;
    assert_eq!(browser.title().await, "Not allowed");
    assert_eq!(
        browser.text("main > p").await,
        "Only a superuser can manage the signing keys."
    );

    // Carol's page: the staff and superuser flags are read-only text.
    browser
        .goto(&app, &format!("/admin/users/{}/", carol.id))
        .await;
    assert!(
        browser
            .client
            .find_all(Locator::Css(
                r#"input[type="checkbox"][name="is_superuser"]"#
            ))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        browser
            .text("section p.meta")
            .await
            .ends_with("(only a superuser can change these)")
    );

    // The same forms posted directly, with the browser's cookie and token.
    let (cookie, csrf) = browser.credentials().await;
    let client = plain_client();
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        let request = client
            .post(app.url(&path))
            .header("cookie", &cookie)
            .form(&fields);
        async move { crate::helpers::Reply::read(request.send().await.unwrap()).await }
    };
    let rotate = post("/admin/keys/rotate/".into(), vec![("csrf", csrf.clone())]).await;
    assert_eq!(rotate.status, 403, "{}", rotate.body);
    assert!(
        rotate
            .body
            .contains("<p>Only a superuser can manage the signing keys.</p>")
    );
    let generate = post(
        "/admin/keys/generate/".into(),
        vec![("csrf", csrf.clone()), ("algorithm", "EdDSA".into())],
    )
    .await;
    assert_eq!(generate.status, 403, "{}", generate.body);
    let promote = post(
        format!("/admin/users/{}/", carol.id),
        vec![
            ("csrf", csrf.clone()),
            ("email", "carol@example.com".into()),
            ("is_active", "on".into()),
            ("is_superuser", "on".into()),
        ],
    )
    .await;
    assert_eq!(promote.status, 403, "{}", promote.body);
    assert!(
        promote
            .body
            .contains("<p>Only a superuser can make or unmake staff and superusers.</p>")
    );
    // The token is real: the same post without the flag goes through.
    let harmless = post(
        format!("/admin/users/{}/", carol.id),
        vec![
            ("csrf", csrf.clone()),
            ("email", "carol@example.com".into()),
            ("is_active", "on".into()),
        ],
    )
    .await;
    assert_eq!(harmless.status, 303, "{}", harmless.body);

    // A forged form: the page's own form with its CSRF field removed
    // (WebDriver's script runs outside the page's CSP).
    browser
        .goto(&app, &format!("/admin/users/{}/", carol.id))
        .await;
    browser
        .client
        .execute(
            r#"for (const f of document.querySelectorAll('input[name="csrf"]')) f.remove();"#,
            vec![],
        )
        .await
        .unwrap();
    browser.click(r#"input[name="is_active"]"#).await;
    browser.press("Save").await;
    assert_eq!(browser.title().await, "Form refused");
    assert!(browser.text("main > p").await.starts_with(CSRF_REFUSED));

    let carol = app
        .auth
        .user_store()
        .user_by_id(carol.id)
        .await
        .unwrap()
        .unwrap();
    assert!(carol.is_active && !carol.is_staff && !carol.is_superuser);
    assert!(
        audit_lines(&app).await.is_empty(),
        "nothing was changed, nothing recorded"
    );
    browser.stop().await;
}

/// A username with markup in it is shown as text, and no script runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_a_username_is_text() {
    const NAME: &str = "<script>window.__x=1</script>";
    let app = TestApp::spawn(Backend::Sqlite, "").await;
    staff(&app, "ada", false).await;
    // Django's username validator refuses `<`; an imported or older
    // database may still hold one.
    sql(
        &app,
        &format!(
            "INSERT INTO users (username, email, password, is_active, is_staff, is_superuser, date_joined) \
             VALUES ('{NAME}', '<b>x</b>@example.com', '!', TRUE, FALSE, FALSE, 0)"
        ),
    )
    .await;
    let browser = Browser::start().await;
    browser.login(&app, "ada", "staff-pass").await;
    let link = browser.find("tbody tr:first-child td:first-child a").await;
    assert_eq!(link.text().await.unwrap(), NAME);
    assert_eq!(
        browser.text("tbody tr:first-child td:nth-child(2)").await,
        "<b>x</b>@example.com"
    );
    browser
        .follow("tbody tr:first-child td:first-child a")
        .await;
    assert_eq!(browser.title().await, NAME);
    let ran = browser
        .client
        .execute(
            "return [typeof window.__x, document.querySelectorAll('script').length, document.querySelectorAll('b').length]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        ran,
        json!(["undefined", 0, 0]),
        "no script ran, no markup made"
    );
    browser.stop().await;
}
