//! The command line: `portcullis serve`, account and token administration.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// A simplejwt-compatible authentication server.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    /// A TOML settings file (its keys are the settings in snake_case).
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server until SIGINT or SIGTERM.
    Serve(Serve),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage issued tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Bring accounts and tokens over from another system.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Manage the signing keys (kept in the database, shared by every node).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read the audit trail of administrative changes.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print the OpenAPI 3.1 document that `GET /api/schema/` serves
    /// (for client generators).
    Openapi {
        /// `yaml` (the default, as the server's) or `json`.
        #[arg(long, value_enum, default_value_t = OpenapiFormat::Yaml)]
        format: OpenapiFormat,
    },
    /// A WSGI worker process, started by `serve` for a `[[wsgi]]` mount.
    #[command(hide = true)]
    WsgiWorker {
        /// The worker's arguments, as the server writes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// The formats of `portcullis openapi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OpenapiFormat {
    /// YAML, as `GET /api/schema/` answers by default.
    Yaml,
    /// JSON, as `GET /api/schema/?format=json` answers.
    Json,
}

/// `portcullis serve`
#[derive(Debug, Args)]
pub struct Serve {
    /// Run this WSGI app at `/` (`module:callable`, as gunicorn takes it),
    /// with the working directory on `sys.path`: one `[[wsgi]]` mount.
    #[arg(long, value_name = "MODULE:CALLABLE")]
    pub wsgi: Option<String>,
}

/// `portcullis audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List entries, newest first.
    List {
        /// Only this actor: a staff username, or `cli`.
        #[arg(long)]
        actor: Option<String>,
        /// Only changes to this username or kid.
        #[arg(long)]
        target: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object a line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every entry as JSON lines, newest first.
    Export,
}

/// `portcullis user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account.
    Create(CreateUser),
    /// List accounts.
    List,
    /// Set an account's password.
    SetPassword {
        /// The account.
        username: String,
        /// Read the password as one line from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Allow an account to log in again.
    Activate {
        /// The account.
        username: String,
    },
    /// Stop an account from logging in or using its tokens.
    Deactivate {
        /// The account.
        username: String,
    },
    /// Lift a login lock (or backoff delay) on a username, whether or not
    /// an account of that name exists.
    Unlock {
        /// The username as it was typed at the login.
        username: String,
    },
    /// Delete an account.
    Delete {
        /// The account.
        username: String,
    },
}

/// `portcullis user create`
#[derive(Debug, Args)]
pub struct CreateUser {
    /// Letters, digits and @ . + - _ ; at most 150 characters.
    pub username: String,
    /// Email address.
    #[arg(long, default_value = "")]
    pub email: String,
    /// Mark as staff.
    #[arg(long)]
    pub staff: bool,
    /// Mark as superuser (implies staff).
    #[arg(long)]
    pub superuser: bool,
    /// Create the account inactive.
    #[arg(long)]
    pub inactive: bool,
    /// Read the password as one line from standard input (otherwise it is
    /// asked for twice on the terminal).
    #[arg(long)]
    pub password_stdin: bool,
}

/// `portcullis tokens …`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Delete expired outstanding tokens (simplejwt's `flushexpiredtokens`).
    FlushExpired,
}

/// `portcullis import …`
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a Django project's users with their passwords, and simplejwt's
    /// outstanding and blacklisted tokens. Safe to run again: it updates.
    Django(ImportDjango),
}

/// `portcullis import django`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["from", "from_json"])))]
pub struct ImportDjango {
    /// The Django database, read only: `sqlite:///path/to/db.sqlite3` or
    /// `postgres://user@host/db` (the portcullis database is `DATABASE_URL`).
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// The output of `manage.py dumpdata auth.user token_blacklist`.
    #[arg(long, value_name = "FILE")]
    pub from_json: Option<PathBuf>,
}

/// `portcullis keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a key; it is published at once and signs only with --activate.
    Generate {
        /// `ES256`, `ES384`, `EdDSA`, `RS256`, `PS256` or `HS256` (HMAC keys are never published).
        #[arg(long)]
        alg: String,
        /// RSA modulus size: 2048 (default), 3072, 4096 or 8192.
        #[arg(long)]
        bits: Option<u32>,
        /// Sign with the new key from now on.
        #[arg(long)]
        activate: bool,
    },
    /// List the keys: kid, algorithm, state, created, activates, retires.
    List,
    /// Publish a new key now; it signs after `KEY_PUBLISH_DELAY`, and the
    /// key it replaces verifies until every token it signed has expired.
    Rotate {
        /// The new key's algorithm (default: the active key's).
        #[arg(long)]
        alg: Option<String>,
    },
    /// Stop trusting a key now: its tokens fail, it is no longer published.
    Retire {
        /// The key id (random base64url: it may begin with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Print the published JWKS (public keys only).
    ExportPublic,
}
