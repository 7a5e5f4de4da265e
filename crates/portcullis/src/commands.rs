//! What each CLI command does. Every command creates and migrates the
//! database it is pointed at, and reads the same settings as `serve`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use portcullis_core::{
    AuditAction, AuditStore as _, AuthService, NewUser, StoreError, Target, ThrottleStore as _,
    User, UserStore as _, Username,
};
use portcullis_store::SqlStore;
use portcullis_token::{Clock as _, SystemClock};
use secrecy::SecretString;

use crate::audit::record;
use crate::cli::{
    Command, CreateUser, ImportCommand, ImportDjango, OpenapiFormat, TokensCommand, UserCommand,
};
use crate::config::Settings;
use crate::startup::{Application, shutdown_signal};
use crate::store_setup::{auth_service, hasher, open_store};
use crate::{import, keys};

/// Run one command to completion.
pub async fn run(command: Command, settings: &Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let mut settings = settings.clone();
            if let Some(app) = args.wsgi {
                settings = settings.with_wsgi(crate::config::WsgiEntry::shortcut(
                    app,
                    std::env::current_dir().context("cannot read the working directory")?,
                ))?;
            }
            Application::build(&settings)
                .await?
                .run_until_stopped(shutdown_signal())
                .await
        }
        Command::WsgiWorker { .. } => bail!("wsgi-worker runs only as a process of `serve`"),
        Command::Migrate => {
            let store = open_store(settings).await?;
            println!("The {} database is up to date.", store.backend());
            Ok(())
        }
        Command::Tokens(TokensCommand::FlushExpired) => {
            let store = open_store(settings).await?;
            let removed = flush_expired(
                &service(settings, &store).await?,
                &store,
                settings.store.audit_retention,
            )
            .await?;
            println!("Removed {removed} expired token record(s).");
            Ok(())
        }
        Command::User(command) => user(command, settings).await,
        Command::Import(ImportCommand::Django(args)) => import_django(&args, settings).await,
        Command::Keys(command) => keys::command(command, settings).await,
        Command::Audit(command) => crate::audit::command(command, settings).await,
        Command::Openapi { format } => {
            // No database: the document depends on settings alone.
            let (http, header_types) = settings.openapi_settings();
            let document = portcullis_http::openapi::document(&http, &header_types);
            let text = match format {
                OpenapiFormat::Yaml => portcullis_http::openapi::to_yaml(&document),
                OpenapiFormat::Json => portcullis_http::openapi::to_json(&document),
            }?;
            print!("{text}");
            Ok(())
        }
    }
}

/// Delete the token and session records expired by now (their count is
/// returned) and the login throttle rows that block nothing any more
/// ([`AuthService::flush_expired`]), and the audit entries older than
/// `AUDIT_RETENTION` (seconds); shared by `portcullis tokens flush-expired`
/// and the server's pruning task.
pub(crate) async fn flush_expired(
    auth: &AuthService,
    store: &SqlStore,
    audit_retention: i64,
) -> Result<u64, StoreError> {
    let tokens = auth.flush_expired().await?;
    let audit = store
        .prune_audit(auth.engine().now().saturating_sub(audit_retention))
        .await?;
    if audit > 0 {
        tracing::info!(removed = audit, "pruned audit entries past AUDIT_RETENTION");
    }
    Ok(tokens)
}

async fn import_django(args: &ImportDjango, settings: &Settings) -> anyhow::Result<()> {
    let source = match (&args.from, &args.from_json) {
        (Some(url), _) => import::Source::Database(url),
        (None, Some(path)) => import::Source::Json(path),
        // clap's "source" group requires one of them.
        (None, None) => bail!("give --from URL or --from-json FILE"),
    };
    let store = open_store(settings).await?;
    let report = import::django(source, &store, &hasher(settings, 1)?, SystemClock.now()).await;
    if let Ok(report) = &report {
        let detail = format!(
            "users: {} imported, {} updated; tokens: {} imported, {} updated",
            report.users_imported,
            report.users_updated,
            report.tokens_imported,
            report.tokens_updated
        );
        record(&store, AuditAction::ImportDjango, None, detail).await;
    }
    store.close().await;
    print!("{}", report?);
    Ok(())
}

async fn user(command: UserCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    match command {
        UserCommand::Create(args) => create(args, settings, &store).await,
        UserCommand::List => {
            println!(
                "{:>6}  {:<24} {:<32} {:<6} {:<5} {:<9}",
                "id", "username", "email", "active", "staff", "superuser"
            );
            for u in store.list_users().await? {
                println!(
                    "{:>6}  {:<24} {:<32} {:<6} {:<5} {:<9}",
                    u.id,
                    u.username,
                    u.email,
                    yes_no(u.is_active),
                    yes_no(u.is_staff),
                    yes_no(u.is_superuser)
                );
            }
            Ok(())
        }
        UserCommand::SetPassword {
            username,
            password_stdin,
        } => {
            let user = existing(&store, &username).await?;
            let password = read_password(password_stdin)?;
            // The flows end the user's sessions too, as the console does.
            if !service(settings, &store)
                .await?
                .set_password(user.id, password)
                .await?
            {
                bail!("no user named {username:?}");
            }
            record(
                &store,
                AuditAction::UserSetPassword,
                Some(Target::user(user.id, &username)),
                "",
            )
            .await;
            println!("Password changed for {username}.");
            Ok(())
        }
        UserCommand::Activate { username } => {
            let user = existing(&store, &username).await?;
            store.set_active(user.id, true).await?;
            record(
                &store,
                AuditAction::UserActivate,
                Some(Target::user(user.id, &username)),
                "",
            )
            .await;
            println!("{username} is active.");
            Ok(())
        }
        UserCommand::Deactivate { username } => {
            let user = existing(&store, &username).await?;
            // The flows end the user's sessions first (ASVS V7.4.2).
            if !service(settings, &store)
                .await?
                .deactivate_user(user.id)
                .await?
            {
                bail!("no user named {username:?}");
            }
            record(
                &store,
                AuditAction::UserDeactivate,
                Some(Target::user(user.id, &username)),
                "sessions ended",
            )
            .await;
            println!("{username} is inactive.");
            Ok(())
        }
        UserCommand::Unlock { username } => {
            // No lookup: unknown usernames are throttled too, and whether
            // one exists is not this command's business.
            let key = portcullis_core::throttle_key_for_username(&username);
            let cleared = store.clear_login_failures(&key).await?;
            let target = match store.user_by_username(&username).await? {
                Some(user) => Target::user(user.id, &username),
                None => Target::named(&username),
            };
            let detail = if cleared {
                "failed logins cleared"
            } else {
                "no failed logins"
            };
            record(&store, AuditAction::UserUnlock, Some(target), detail).await;
            if cleared {
                println!("{username} is unlocked.");
            } else {
                println!("{username} had no failed logins to clear.");
            }
            Ok(())
        }
        UserCommand::Delete { username } => {
            let user = existing(&store, &username).await?;
            // The flows end the user's sessions first (ASVS V7.4.2).
            if !service(settings, &store)
                .await?
                .delete_user(user.id)
                .await?
            {
                bail!("no user named {username:?}");
            }
            record(
                &store,
                AuditAction::UserDelete,
                Some(Target::user(user.id, &username)),
                "sessions ended",
            )
            .await;
            println!("{username} was deleted.");
            Ok(())
        }
    }
}

async fn create(args: CreateUser, settings: &Settings, store: &SqlStore) -> anyhow::Result<()> {
    let username = Username::parse(&args.username).map_err(|e| anyhow!("invalid username: {e}"))?;
    if store.user_by_username(username.as_str()).await?.is_some() {
        bail!("a user named {:?} already exists", username.as_str());
    }
    let password = read_password(args.password_stdin)?;
    let hash = hasher(settings, 1)?.hash(password).await?;
    let user = store
        .create_user(&NewUser {
            username,
            email: args.email,
            password_hash: hash,
            is_active: !args.inactive,
            is_staff: args.staff || args.superuser,
            is_superuser: args.superuser,
            date_joined: SystemClock.now(),
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(message) => anyhow!(message),
            other => anyhow!(other),
        })?;
    let flags = format!(
        "is_active: {}, is_staff: {}, is_superuser: {}",
        yes_no(user.is_active),
        yes_no(user.is_staff),
        yes_no(user.is_superuser)
    );
    record(
        store,
        AuditAction::UserCreate,
        Some(Target::user(user.id, &user.username)),
        flags,
    )
    .await;
    println!("Created user {} with id {}.", user.username, user.id);
    Ok(())
}

async fn existing(store: &SqlStore, username: &str) -> anyhow::Result<User> {
    store
        .user_by_username(username)
        .await?
        .ok_or_else(|| anyhow!("no user named {username:?}"))
}

/// The flows over `store`, as `serve` builds them (one hashing slot): the
/// commands that end sessions go through them, so the rules they keep
/// live in one place.
async fn service(settings: &Settings, store: &SqlStore) -> anyhow::Result<AuthService> {
    auth_service(settings, store, hasher(settings, 1)?, Arc::new(SystemClock)).await
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// One line from standard input, or asked twice on a terminal.
fn read_password(from_stdin: bool) -> anyhow::Result<SecretString> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!(
                "no terminal to ask for the password on; pass --password-stdin and write it to standard input"
            );
        }
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let second =
            rpassword::prompt_password("Password (again): ").context("cannot read the password")?;
        if first != second {
            bail!("the two passwords differ");
        }
        first
    };
    check_password(&password)?;
    std::io::stdout().flush().ok();
    Ok(password.into())
}

fn check_password(password: &str) -> anyhow::Result<()> {
    if password.is_empty() {
        bail!("the password is empty");
    }
    // The login endpoint trims whitespace as simplejwt does, so such a
    // password could never be typed in successfully.
    if password.trim() != password {
        bail!(
            "the password starts or ends with whitespace, which the login endpoint trims (as simplejwt does); choose one without"
        );
    }
    Ok(())
}
