//! `portcullis import django`: bring a Django deployment's users (with their
//! password hashes) and simplejwt's outstanding and blacklisted tokens into
//! the portcullis database, from the Django database itself or from
//! `manage.py dumpdata auth.user token_blacklist`.
//!
//! Invariants:
//! * **Ids are kept**, so the `user_id` of every token Django issued names
//!   the same person; ids Django ever generated (deleted users included) are
//!   reserved, never handed out again.
//! * **Idempotent**: a re-run overwrites each account from Django (the
//!   source of truth until the switch) and reports it as updated. A
//!   blacklisting is never undone.
//! * A row that could never be used is **skipped with its reason**: a
//!   username portcullis refuses, a hash nobody can verify (`crypt`), a hash
//!   over the cost caps. Hashes themselves never appear in the output.
//! * Expired tokens are left behind: they can never be presented again.

use std::collections::HashMap;
use std::fmt;
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use portcullis_core::{
    ImportedUser, NewUser, OutstandingToken, PasswordHasher, Store, StoreError, Upserted, Username,
};
use portcullis_store::{DjangoDatabase, DjangoToken, DjangoUser};
use serde::Deserialize;
use serde_json::Value;

/// Where the Django data comes from.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    /// A database URL (`sqlite:///…` or `postgres://…`).
    Database(&'a str),
    /// A `dumpdata` JSON file.
    Json(&'a Path),
}

/// What Django holds, read whole.
#[derive(Debug, Default)]
struct DjangoData {
    users: Vec<DjangoUser>,
    /// `None` when simplejwt's blacklist app is not there.
    tokens: Option<Vec<DjangoToken>>,
    highest_user_id: i64,
}

/// One row left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// What was skipped (`user 10 "john doe"`, `token 632e…`).
    pub what: String,
    /// Why.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// New accounts.
    pub users_imported: u64,
    /// Accounts that were there and were overwritten.
    pub users_updated: u64,
    /// New outstanding tokens.
    pub tokens_imported: u64,
    /// Outstanding tokens that were there.
    pub tokens_updated: u64,
    /// Of the tokens imported or updated, how many are blacklisted.
    pub tokens_blacklisted: u64,
    /// Tokens already expired, left behind.
    pub tokens_expired: u64,
    /// Whether the source had simplejwt's blacklist tables at all.
    pub had_tokens: bool,
    /// Rows left out.
    pub skipped: Vec<Skipped>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Users: {} imported, {} updated, {} skipped.",
            self.users_imported,
            self.users_updated,
            self.skipped.len()
        )?;
        for skip in &self.skipped {
            writeln!(f, "  skipped {}: {}", skip.what, skip.reason)?;
        }
        if self.had_tokens {
            writeln!(
                f,
                "Tokens: {} imported, {} updated ({} blacklisted), {} expired left behind.",
                self.tokens_imported,
                self.tokens_updated,
                self.tokens_blacklisted,
                self.tokens_expired
            )
        } else {
            writeln!(
                f,
                "Tokens: none (simplejwt's token_blacklist app is not in this source)."
            )
        }
    }
}

/// Run the import into `store`. `hasher` decides which hashes could ever
/// be verified; `now` (Unix seconds) decides which tokens are expired.
pub async fn django(
    source: Source<'_>,
    store: &dyn Store,
    hasher: &PasswordHasher,
    now: i64,
) -> anyhow::Result<Report> {
    let data = match source {
        Source::Database(url) => {
            let db = DjangoDatabase::connect(url).await?;
            let data = DjangoData {
                users: db.users().await?,
                tokens: db.tokens().await?,
                highest_user_id: db.highest_user_id_ever().await?,
            };
            db.close().await;
            data
        }
        Source::Json(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            parse_dumpdata(&text).with_context(|| format!("{} is not usable", path.display()))?
        }
    };
    let mut report = Report::default();
    let mut progress = Progress::new("users", data.users.len());
    for user in &data.users {
        progress.step();
        let what = format!("user {} {:?}", user.id, user.username);
        match import_user(store, hasher, user).await {
            Ok(Upserted::Inserted) => report.users_imported += 1,
            Ok(Upserted::Updated) => report.users_updated += 1,
            Err(Refused::Skip(reason)) => report.skipped.push(Skipped { what, reason }),
            Err(Refused::Fail(e)) => return Err(e.context(what)),
        }
    }
    progress.done();
    store.reserve_user_ids(data.highest_user_id).await?;

    if let Some(tokens) = &data.tokens {
        report.had_tokens = true;
        let mut progress = Progress::new("tokens", tokens.len());
        for token in tokens {
            progress.step();
            let what = format!("token {}", token.jti);
            let (record, blacklisted_at) = match token_record(token) {
                Ok(parsed) => parsed,
                Err(reason) => {
                    report.skipped.push(Skipped { what, reason });
                    continue;
                }
            };
            if record.expires_at <= now {
                report.tokens_expired += 1;
                continue;
            }
            match store.upsert_outstanding(&record, blacklisted_at).await {
                Ok(Upserted::Inserted) => report.tokens_imported += 1,
                Ok(Upserted::Updated) => report.tokens_updated += 1,
                Err(e) => return Err(anyhow!(e).context(what)),
            }
            if blacklisted_at.is_some() {
                report.tokens_blacklisted += 1;
            }
        }
        progress.done();
    }
    Ok(report)
}

enum Refused {
    /// Leave the row out and say why.
    Skip(String),
    /// Stop: the portcullis database failed.
    Fail(anyhow::Error),
}

async fn import_user(
    store: &dyn Store,
    hasher: &PasswordHasher,
    user: &DjangoUser,
) -> Result<Upserted, Refused> {
    let username = Username::parse(&user.username)
        .map_err(|e| Refused::Skip(format!("invalid username: {e}")))?;
    hasher.check_stored(&user.password).map_err(|e| {
        let reason = portcullis_core::error_chain(&e);
        Refused::Skip(format!("password hash cannot be used: {reason}"))
    })?;
    let time = |text: &str, field: &str| {
        parse_datetime(text).map_err(|e| Refused::Skip(format!("{field}: {e}")))
    };
    let imported = ImportedUser {
        id: user.id,
        account: NewUser {
            username,
            email: user.email.clone(),
            password_hash: user.password.clone(),
            is_active: user.is_active,
            is_staff: user.is_staff,
            is_superuser: user.is_superuser,
            date_joined: time(&user.date_joined, "date_joined")?,
        },
        last_login: user
            .last_login
            .as_deref()
            .map(|t| time(t, "last_login"))
            .transpose()?,
    };
    store
        .upsert_user_with_id(&imported)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(reason) => Refused::Skip(reason),
            other @ (StoreError::Database(_) | StoreError::InvalidUrl(_)) => {
                Refused::Fail(other.into())
            }
        })
}

fn token_record(token: &DjangoToken) -> Result<(OutstandingToken, Option<i64>), String> {
    let created_at = token
        .created_at
        .as_deref()
        .map(parse_datetime)
        .transpose()
        .map_err(|e| format!("created_at: {e}"))?;
    let expires_at = parse_datetime(&token.expires_at).map_err(|e| format!("expires_at: {e}"))?;
    let blacklisted_at = token
        .blacklisted_at
        .as_deref()
        .map(parse_datetime)
        .transpose()
        .map_err(|e| format!("blacklisted_at: {e}"))?;
    Ok((
        OutstandingToken {
            jti: token.jti.clone(),
            user_id: token.user_id,
            created_at,
            expires_at,
        },
        blacklisted_at,
    ))
}

/// One object of `dumpdata` output.
#[derive(Deserialize)]
struct DumpObject {
    model: String,
    pk: Option<Value>,
    fields: Value,
}

#[derive(Deserialize)]
struct UserFields {
    username: String,
    #[serde(default)]
    email: String,
    password: String,
    is_active: bool,
    is_staff: bool,
    is_superuser: bool,
    date_joined: String,
    last_login: Option<String>,
}

#[derive(Deserialize)]
struct OutstandingFields {
    user: Option<Value>,
    jti: String,
    created_at: Option<String>,
    expires_at: String,
}

#[derive(Deserialize)]
struct BlacklistedFields {
    token: Value,
    blacklisted_at: String,
}

/// `manage.py dumpdata auth.user [token_blacklist]` output. Other models in
/// the file are ignored.
fn parse_dumpdata(text: &str) -> anyhow::Result<DjangoData> {
    let objects: Vec<DumpObject> =
        serde_json::from_str(text).context("expected the JSON array that dumpdata writes")?;
    let pk = |object: &DumpObject| -> anyhow::Result<i64> {
        object.pk.as_ref().and_then(Value::as_i64).ok_or_else(|| {
            anyhow!(
                "a {} object has no integer pk: run dumpdata without --natural-primary",
                object.model
            )
        })
    };
    let mut data = DjangoData::default();
    let mut outstanding: Vec<(i64, DjangoToken)> = Vec::new();
    let mut blacklisted: HashMap<i64, String> = HashMap::new();
    for object in &objects {
        match object.model.as_str() {
            "auth.user" => {
                let id = pk(object)?;
                let f: UserFields = serde_json::from_value(object.fields.clone())
                    .with_context(|| format!("auth.user {id}"))?;
                data.users.push(DjangoUser {
                    id,
                    username: f.username,
                    email: f.email,
                    password: f.password,
                    is_active: f.is_active,
                    is_staff: f.is_staff,
                    is_superuser: f.is_superuser,
                    date_joined: f.date_joined,
                    last_login: f.last_login,
                });
            }
            "token_blacklist.outstandingtoken" => {
                let id = pk(object)?;
                let f: OutstandingFields = serde_json::from_value(object.fields.clone())
                    .with_context(|| format!("token_blacklist.outstandingtoken {id}"))?;
                let user_id = match f.user {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) => n.as_i64(),
                    Some(_) => bail!(
                        "token_blacklist.outstandingtoken {id} names its user by natural key: run dumpdata without --natural-foreign"
                    ),
                };
                outstanding.push((
                    id,
                    DjangoToken {
                        jti: f.jti,
                        user_id,
                        created_at: f.created_at,
                        expires_at: f.expires_at,
                        blacklisted_at: None,
                    },
                ));
            }
            "token_blacklist.blacklistedtoken" => {
                let f: BlacklistedFields = serde_json::from_value(object.fields.clone())
                    .context("token_blacklist.blacklistedtoken")?;
                let token = f.token.as_i64().ok_or_else(|| {
                    anyhow!("a blacklistedtoken names its token by natural key: run dumpdata without --natural-foreign")
                })?;
                blacklisted.insert(token, f.blacklisted_at);
            }
            _ => {}
        }
    }
    data.highest_user_id = data.users.iter().map(|u| u.id).max().unwrap_or(0);
    let has_tokens = objects
        .iter()
        .any(|o| o.model.starts_with("token_blacklist."));
    if has_tokens {
        data.tokens = Some(
            outstanding
                .into_iter()
                .map(|(id, mut token)| {
                    token.blacklisted_at = blacklisted.remove(&id);
                    token
                })
                .collect(),
        );
    }
    Ok(data)
}

/// A Django datetime as Unix seconds, the fraction dropped (simplejwt's
/// `exp` is whole seconds too). Accepts what the database and `dumpdata`
/// write: `2026-11-23 20:39:12.851144`, `2026-11-23T20:39:12.851Z`,
/// `…+00`, `…+05:30`. A time without an offset is taken as UTC: that is
/// what Django stores with `USE_TZ = True` (with `USE_TZ = False` it is the
/// server's local time, which no longer exists anywhere to be read).
pub fn parse_datetime(text: &str) -> Result<i64, String> {
    let invalid = || format!("{text:?} is not a date and time");
    let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
        text.get(range)
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(invalid)
    };
    let separators_ok = text.get(4..5) == Some("-")
        && text.get(7..8) == Some("-")
        && matches!(text.get(10..11), Some(" " | "T"))
        && text.get(13..14) == Some(":")
        && text.get(16..17) == Some(":");
    if !separators_ok {
        return Err(invalid());
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(invalid());
    }
    let mut rest = text.get(19..).ok_or_else(invalid)?;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = fraction.get(digits..).ok_or_else(invalid)?;
    }
    let offset = match rest {
        "" | "Z" => 0,
        _ => {
            let sign = match rest.get(..1) {
                Some("+") => 1,
                Some("-") => -1,
                _ => return Err(invalid()),
            };
            let digits: String = rest.chars().skip(1).filter(|c| *c != ':').collect();
            if digits.len() != 2 && digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(invalid());
            }
            let hours: i64 = digits
                .get(..2)
                .and_then(|h| h.parse().ok())
                .ok_or_else(invalid)?;
            let minutes: i64 = digits.get(2..).map_or(Ok(0), |m| {
                if m.is_empty() {
                    Ok(0)
                } else {
                    m.parse().map_err(|_| invalid())
                }
            })?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `\r users 120/5000` on standard error when it is a terminal; nothing
/// otherwise (logs and CI stay clean).
struct Progress {
    label: &'static str,
    total: usize,
    done: usize,
    shown: bool,
}

impl Progress {
    fn new(label: &'static str, total: usize) -> Self {
        Self {
            label,
            total,
            done: 0,
            shown: std::io::stderr().is_terminal() && total > 0,
        }
    }

    fn step(&mut self) {
        self.done += 1;
        // Every row for small imports, then about every percent.
        if self.shown && (self.total < 1000 || self.done.is_multiple_of(self.total / 100)) {
            let mut err = std::io::stderr().lock();
            write!(err, "\r{} {}/{}", self.label, self.done, self.total).ok();
            err.flush().ok();
        }
    }

    fn done(&self) {
        if self.shown {
            eprintln!("\r{} {}/{}", self.label, self.done, self.total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn django_datetimes_become_unix_seconds() {
        // 2026-11-23 20:39:12 UTC
        let t = 1_795_466_352;
        for text in [
            "2026-11-23 20:39:12.851144",
            "2026-11-23T20:39:12.851Z",
            "2026-11-23T20:39:12Z",
            "2026-11-23 20:39:12+00",
            "2026-11-23 21:39:12.5+01:00",
            "2026-11-23 15:09:12-0530",
        ] {
            assert_eq!(parse_datetime(text), Ok(t), "{text}");
        }
        assert_eq!(parse_datetime("1970-01-01 00:00:00"), Ok(0));
        assert_eq!(parse_datetime("2000-02-29T00:00:00Z"), Ok(951_782_400));
        assert_eq!(parse_datetime("2126-10-30T20:39:12Z"), Ok(4_949_066_352));
        for bad in [
            "",
            "2026-11-23",
            "2026-13-01 00:00:00",
            "2026-11-23 20:39:12+1",
            "yesterday",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }
}
