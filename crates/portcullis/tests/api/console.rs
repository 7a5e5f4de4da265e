//! The staff console at `/admin/` (issue 18) over real HTTP: login and its
//! cookie, the security headers, CSRF refusals, superuser-only actions
//! refused to plain staff, escaping, and the audit trail of every
//! administrative change (console, staff API, CLI) without a secret in it.

use sqlx::Connection as _;

use crate::cli::portcullis;
use crate::helpers::{Backend, Reply, TestApp, run};

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
pub(crate) const CSRF_REFUSED: &str = "This form was refused: its security token (CSRF) is missing or does not belong to your session.";

/// Run one SQL statement on the test database (what no API can do: a
/// username Django would refuse, a superuser flag).
pub(crate) async fn sql(app: &TestApp, statement: &str) {
    if app.db.url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// A browser without JavaScript: cookies by hand, redirects not followed.
pub(crate) struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookie: String,
    csrf: String,
}

/// The value of the page's first hidden `csrf` field.
fn csrf_of(body: &str) -> String {
    let start = body.find(r#"name="csrf" value=""#).expect("a CSRF field") + 19;
    body[start..start + 64].to_owned()
}

/// `name=value` of a `Set-Cookie` for `name`.
fn set_cookie<'r>(reply: &'r Reply, name: &str) -> &'r str {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", reply.headers))
}

impl<'a> Browser<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: String::new(),
            csrf: String::new(),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        Reply::read(
            self.client
                .get(self.app.url(path))
                .header("cookie", &self.cookie)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POST a form as the page would, with the session's CSRF token.
    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        form.extend_from_slice(fields);
        self.post_raw(path, &form).await
    }

    /// POST exactly these fields.
    async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        Reply::read(
            self.client
                .post(self.app.url(path))
                .header("cookie", &self.cookie)
                .form(fields)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Log in through the login form; returns the login's answer.
    pub(crate) async fn login(&mut self, username: &str, password: &str) -> Reply {
        let form = self.get("/admin/login/").await;
        assert_eq!(form.status, 200, "{}", form.body);
        set_cookie(&form, "portcullis-admin-login")
            .split(';')
            .next()
            .unwrap()
            .clone_into(&mut self.cookie);
        let token = csrf_of(&form.body);
        let reply = self
            .post_raw(
                "/admin/login/",
                &[
                    ("csrf", &token),
                    ("username", username),
                    ("password", password),
                ],
            )
            .await;
        if reply.status == 303 {
            set_cookie(&reply, "portcullis-admin")
                .split(';')
                .next()
                .unwrap()
                .clone_into(&mut self.cookie);
            let page = self.get("/admin/users/").await;
            assert_eq!(page.status, 200, "{}", page.body);
            self.csrf = csrf_of(&page.body);
        }
        reply
    }
}

/// A staff account with the password `staff-pass`, a superuser if asked.
pub(crate) async fn staff(app: &TestApp, name: &str, superuser: bool) -> i64 {
    let user = app.user(name, "staff-pass", true, true).await;
    if superuser {
        sql(
            app,
            &format!(
                "UPDATE users SET is_superuser = TRUE WHERE id = {}",
                user.id
            ),
        )
        .await;
    }
    user.id
}

/// The audit trail as `portcullis audit list --json` prints it.
pub(crate) async fn audit_lines(app: &TestApp) -> Vec<serde_json::Value> {
    let out = run(portcullis(&app.db, &["audit", "list", "--json"]), "").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn login_cookie_and_headers(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    staff(&app, "ada", false).await;
    app.user("bob", "bob-pass", true, false).await;
    let mut browser = Browser::new(&app);

    let form = browser.get("/admin/login/").await;
    assert_eq!(form.status, 200);
    assert_eq!(form.headers["content-security-policy"], CSP);
    assert_eq!(form.headers["x-frame-options"], "DENY");
    assert_eq!(form.headers["x-content-type-options"], "nosniff");
    assert_eq!(form.headers["cache-control"], "no-store");
    assert!(
        set_cookie(&form, "portcullis-admin-login")
            .ends_with("; Path=/admin/; HttpOnly; SameSite=Strict")
    );
    assert!(!form.body.contains("<script"), "no script at all");

    // Not logged in: every page sends to the login.
    let users = browser.get("/admin/users/").await;
    assert_eq!(
        (users.status, &users.headers["location"]),
        (303, &"/admin/login/".parse().unwrap())
    );

    // A login form without its double-submit token is refused.
    let forged = browser
        .post_raw(
            "/admin/login/",
            &[("username", "ada"), ("password", "staff-pass")],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(forged.body.contains(CSRF_REFUSED), "{}", forged.body);

    // A non-staff account with the right password is refused like a wrong one.
    let refused = browser.login("bob", "bob-pass").await;
    assert_eq!(refused.status, 200);
    assert!(
        refused
            .body
            .contains("Please enter the correct username and password for a staff account.")
    );
    assert!(
        refused.body.contains(r#"value="bob""#),
        "the username is kept"
    );

    let ok = browser.login("ada", "staff-pass").await;
    assert_eq!(ok.status, 303);
    assert_eq!(ok.headers["location"], "/admin/users/");
    let cookie = set_cookie(&ok, "portcullis-admin");
    let (value, attributes) = cookie.split_once(';').unwrap();
    assert_eq!(value.len(), "portcullis-admin=".len() + 64);
    assert_eq!(attributes, " Path=/admin/; HttpOnly; SameSite=Strict");

    // Logout ends the session on the server: the old cookie is refused.
    let out = browser.post("/admin/logout/", &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.headers["location"], "/admin/login/?logged_out=1");
    assert_eq!(browser.get("/admin/users/").await.status, 303);
}

async fn forged_and_forbidden_forms(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    staff(&app, "plain", false).await;
    let carol = app.user("carol", "carol-pass", true, false).await;
    let mut browser = Browser::new(&app);
    assert_eq!(browser.login("plain", "staff-pass").await.status, 303);

    // Without the CSRF token, or with another one: refused, nothing changed.
    let path = format!("/admin/users/{}/", carol.id);
    for csrf in [None, Some("0".repeat(64))] {
        let mut fields = vec![("email", "carol@example.com")];
        if let Some(csrf) = &csrf {
            fields.push(("csrf", csrf));
        }
        let reply = browser.post_raw(&path, &fields).await;
        assert_eq!(reply.status, 403, "{}", reply.body);
        assert!(reply.body.contains(CSRF_REFUSED));
        assert_eq!(reply.headers["content-security-policy"], CSP);
    }
    let user = app
        .auth
        .user_store()
        .user_by_id(carol.id)
        .await
        .unwrap()
        .unwrap();
    assert!(user.is_active, "the forged form deactivated nobody");

    // Plain staff posting a superuser action directly, with a valid token.
    let reply = browser
        .post(
            &path,
            &[
                ("email", "carol@example.com"),
                ("is_active", "on"),
                ("is_superuser", "on"),
            ],
        )
        .await;
    assert_eq!(reply.status, 403);
    assert!(
        reply
            .body
            .contains("Only a superuser can make or unmake staff and superusers.")
    );
    assert_eq!(browser.get("/admin/keys/").await.status, 403);
    let rotate = browser.post("/admin/keys/rotate/", &[]).await;
    assert_eq!(rotate.status, 403);
    assert!(
        rotate
            .body
            .contains("Only a superuser can manage the signing keys.")
    );
    let user = app
        .auth
        .user_store()
        .user_by_id(carol.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!user.is_superuser && !user.is_staff);
    assert!(
        audit_lines(&app).await.is_empty(),
        "nothing was done, nothing recorded"
    );
}

async fn values_are_escaped(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    staff(&app, "ada", false).await;
    sql(
        &app,
        "INSERT INTO users (username, email, password, is_active, is_staff, is_superuser, date_joined) \
         VALUES ('<script>alert(1)</script>', 'x\"@example.com', '!', TRUE, FALSE, FALSE, 0)",
    )
    .await;
    let mut browser = Browser::new(&app);
    browser.login("ada", "staff-pass").await;
    let page = browser.get("/admin/users/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(">&#60;script&#62;alert(1)&#60;/script&#62;</a></td>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>"));
    assert!(page.body.contains("<td>x&#34;@example.com</td>"));
}

async fn console_changes_take_effect_and_are_recorded(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let root = staff(&app, "root", true).await;
    let dave = app.user("dave", "dave-pass", true, false).await;
    let (_, access) = app.login("dave", "dave-pass").await;
    let mut browser = Browser::new(&app);
    browser.login("root", "staff-pass").await;
    let path = format!("/admin/users/{}/", dave.id);

    // Search finds him by a prefix of his username or email.
    let found = browser.get("/admin/users/?q=dav").await;
    assert!(
        found
            .body
            .contains(&format!(r#"<a href="/admin/users/{}/">dave</a>"#, dave.id))
    );
    let missing = browser.get("/admin/users/?q=zed").await;
    assert!(missing.body.contains("No account matches."));

    // A refused form keeps what was typed, the error next to the field.
    let bad = browser
        .post(&path, &[("email", "not an email"), ("is_active", "on")])
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains(r#"value="not an email""#));
    assert!(bad.body.contains(r#"<p class="error" id="email-error">Enter a valid email address, such as ada@example.com.</p>"#));

    // Deactivate: his access token is refused right after.
    let saved = browser.post(&path, &[("email", "dave@example.com")]).await;
    assert_eq!(
        (saved.status, saved.headers["location"].to_str().unwrap()),
        (303, path.as_str())
    );
    let page = browser.get(&path).await;
    assert!(
        page.body.contains("Saved dave: is_active: yes -&#62; no."),
        "{}",
        page.body
    );
    assert_eq!(app.get("/api/users/me/", Some(&access)).await.status, 401);

    // Activate again, set a password: it works on the API.
    browser
        .post(&path, &[("email", "dave@example.com"), ("is_active", "on")])
        .await;
    let mismatch = browser
        .post(
            &format!("{path}password/"),
            &[("password", "new-pass-1"), ("password2", "other")],
        )
        .await;
    assert_eq!(mismatch.status, 422);
    assert!(mismatch.body.contains("The two passwords differ."));
    let set = browser
        .post(
            &format!("{path}password/"),
            &[("password", "new-pass-1"), ("password2", "new-pass-1")],
        )
        .await;
    assert_eq!(set.status, 303);
    let (_, access) = app.login("dave", "new-pass-1").await;
    assert_eq!(app.get("/api/users/me/", Some(&access)).await.status, 200);

    // End all sessions, unlock, delete (after its confirmation page).
    assert_eq!(
        browser
            .post(&format!("{path}sessions/end-all/"), &[])
            .await
            .status,
        303
    );
    assert_eq!(
        browser.post(&format!("{path}unlock/"), &[]).await.status,
        303
    );
    let confirm = browser.get(&format!("{path}delete/")).await;
    assert!(confirm.body.contains("cannot be undone"));
    assert_eq!(
        browser.post(&format!("{path}delete/"), &[]).await.status,
        303
    );
    assert!(
        app.auth
            .user_store()
            .user_by_id(dave.id)
            .await
            .unwrap()
            .is_none()
    );

    // Keys: generate, rotate, retire.
    let generated = browser
        .post(
            "/admin/keys/generate/",
            &[("algorithm", "EdDSA"), ("activate", "on")],
        )
        .await;
    assert_eq!(generated.status, 303);
    let keys = browser.get("/admin/keys/").await;
    assert!(keys.body.contains("Generated EdDSA key"), "{}", keys.body);
    assert_eq!(browser.post("/admin/keys/rotate/", &[]).await.status, 303);
    let keys = browser.get("/admin/keys/").await;
    assert!(keys.body.contains("Published EdDSA key"), "{}", keys.body);
    let kid_start = keys.body.find("<td><code>").unwrap() + 10;
    let kid = keys.body[kid_start..].split('<').next().unwrap().to_owned();
    let consequences = browser.get(&format!("/admin/keys/{kid}/retire/")).await;
    assert!(
        consequences
            .body
            .contains("every token it signed is refused at once")
    );
    assert_eq!(
        browser
            .post(&format!("/admin/keys/{kid}/retire/"), &[])
            .await
            .status,
        303
    );

    let lines = audit_lines(&app).await;
    let actions: Vec<&str> = lines
        .iter()
        .rev()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "user.deactivate",
            "user.activate",
            "user.set_password",
            "sessions.end_all",
            "user.unlock",
            "user.delete",
            "key.generate",
            "key.rotate",
            "key.retire"
        ]
    );
    for line in &lines {
        assert_eq!(line["actor"], "root");
        assert_eq!(line["actor_id"], root);
        assert_eq!(line["address"], "127.0.0.1");
    }
    assert_eq!(lines.last().unwrap()["target"], "dave");
    assert_eq!(lines.last().unwrap()["target_id"], dave.id);
    let text = serde_json::to_string(&lines).unwrap();
    for secret in ["new-pass-1", "dave-pass", "staff-pass", "$argon2", &access] {
        assert!(!text.contains(secret), "{secret} reached the audit trail");
    }

    // The console's own trail page, filtered by target.
    let trail = browser.get("/admin/audit/?target=dave").await;
    assert!(trail.body.contains("user.set_password"));
    assert!(!trail.body.contains("key.rotate"));
}

async fn cli_and_staff_api_are_recorded(backend: Backend) {
    let app = TestApp::spawn(backend, "").await;
    let db = &app.db;
    let ok = |out: crate::helpers::Output| assert_eq!(out.code, 0, "{}", out.stderr);
    ok(run(
        portcullis(db, &["user", "create", "erin", "--password-stdin"]),
        "erin-secret-1\n",
    )
    .await);
    ok(run(
        portcullis(db, &["user", "set-password", "erin", "--password-stdin"]),
        "erin-secret-2\n",
    )
    .await);
    ok(run(portcullis(db, &["user", "deactivate", "erin"]), "").await);
    ok(run(portcullis(db, &["user", "activate", "erin"]), "").await);
    ok(run(portcullis(db, &["user", "unlock", "erin"]), "").await);
    ok(run(portcullis(db, &["keys", "generate", "--alg", "EdDSA"]), "").await);
    ok(run(portcullis(db, &["keys", "rotate", "--alg", "EdDSA"]), "").await);
    let lines = audit_lines(&app).await;
    let kid = lines[0]["target"].as_str().unwrap().to_owned();
    ok(run(portcullis(db, &["keys", "retire", "--", &kid]), "").await);
    ok(run(portcullis(db, &["user", "delete", "erin"]), "").await);

    // The staff API, with a staff token.
    staff(&app, "ops", false).await;
    let frank = app.user("frank", "frank-pass", true, false).await;
    let (_, token) = app.login("ops", "staff-pass").await;
    let reply = app
        .post_bearer(
            &format!("/api/admin/users/{}/deactivate/", frank.id),
            &token,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(reply.status, 204);

    let lines = audit_lines(&app).await;
    let rows: Vec<(String, String)> = lines
        .iter()
        .rev()
        .map(|l| {
            (
                l["actor"].as_str().unwrap().to_owned(),
                l["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("cli", "user.create"),
        ("cli", "user.set_password"),
        ("cli", "user.deactivate"),
        ("cli", "user.activate"),
        ("cli", "user.unlock"),
        ("cli", "key.generate"),
        ("cli", "key.rotate"),
        ("cli", "key.retire"),
        ("cli", "user.delete"),
        ("ops", "user.deactivate"),
    ];
    assert_eq!(
        rows,
        expected.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
    );
    assert_eq!(lines[0]["target"], "frank");
    assert_eq!(lines[0]["address"], "127.0.0.1");
    assert!(lines[1]["os_user"].is_string());
    let text = serde_json::to_string(&lines).unwrap();
    for secret in [
        "erin-secret-1",
        "erin-secret-2",
        "staff-pass",
        "$argon2",
        &token,
    ] {
        assert!(!text.contains(secret), "{secret} reached the audit trail");
    }

    // The table form and the export agree on the count.
    let table = run(portcullis(db, &["audit", "list"]), "").await;
    assert_eq!(table.stdout.lines().count(), 1 + lines.len());
    let export = run(portcullis(db, &["audit", "export"]), "").await;
    assert_eq!(export.stdout.lines().count(), lines.len());
}

crate::both_backends!(
    login_cookie_and_headers,
    forged_and_forbidden_forms,
    values_are_escaped,
    console_changes_take_effect_and_are_recorded,
    cli_and_staff_api_are_recorded,
);

#[tokio::test]
async fn the_console_can_be_turned_off_and_its_prefix_is_not_a_mount() {
    let app = TestApp::spawn(Backend::Sqlite, "admin_console = false\n").await;
    let reply = app.get("/admin/login/", None).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (404, r#"{"detail":"Not found."}"#)
    );

    let error = portcullis::config::Settings::from_toml(
        "[[upstream]]\nprefix = \"/admin/app/\"\nurl = \"http://127.0.0.1:9\"\n",
    )
    .unwrap_err();
    assert!(
        error.0.contains("the staff console answers /admin/, which comes before every mount; choose another prefix or set ADMIN_CONSOLE=false"),
        "{}",
        error.0
    );
}
