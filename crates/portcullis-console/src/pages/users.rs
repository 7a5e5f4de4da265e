//! `/admin/users/…`: the list with search and paging, one account with
//! its profile, password, sessions and login lock, and deletion.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use portcullis_core::{AuditAction, Session, Target, User, UserQuery, throttle_key_for_username};
use serde::Deserialize;

use super::{Layout, maybe_time, render, see_other, time, user_id};
use crate::extract::{Posted, Staff};
use crate::{ConsoleError, ConsoleState};

/// Accounts per page of the list.
const PAGE: u32 = 50;

/// Django's `EmailField` limit.
const MAX_EMAIL: usize = 254;

struct Row {
    id: i64,
    username: String,
    email: String,
    is_active: bool,
    is_staff: bool,
    is_superuser: bool,
    last_login: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct ListPage {
    layout: Layout,
    q: String,
    rows: Vec<Row>,
    /// The link to the next page, if there is one.
    next: Option<String>,
    paged: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    after: Option<String>,
}

/// `GET /admin/users/?q=…&after=…`
pub(crate) async fn list(
    State(state): State<ConsoleState>,
    staff: Staff,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let q = query.q.trim().to_owned();
    let mut users = state
        .inner
        .directory
        .search_users(&UserQuery {
            prefix: q.clone(),
            after: query.after.clone().filter(|a| !a.is_empty()),
            limit: PAGE + 1,
        })
        .await?;
    let more = users.len() > PAGE as usize;
    users.truncate(PAGE as usize);
    let next = users.last().filter(|_| more).map(|last| {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &q)
            .append_pair("after", &last.username)
            .finish();
        format!("/admin/users/?{query}")
    });
    let rows = users
        .into_iter()
        .map(|u| Row {
            last_login: maybe_time(u.last_login),
            id: u.id,
            username: u.username,
            email: u.email,
            is_active: u.is_active,
            is_staff: u.is_staff,
            is_superuser: u.is_superuser,
        })
        .collect();
    let page = ListPage {
        layout: staff.layout(&state, "Users"),
        q,
        rows,
        next,
        paged: query.after.is_some(),
    };
    Ok(render(StatusCode::OK, &page))
}

struct SessionRow {
    id: String,
    created: String,
    last_used: String,
    expires: String,
    address: String,
    user_agent: String,
}

impl From<Session> for SessionRow {
    fn from(s: Session) -> Self {
        Self {
            created: time(s.created_at),
            last_used: time(s.last_used_at),
            expires: time(s.expires_at),
            address: s.client.ip_address.unwrap_or_default(),
            user_agent: s.client.user_agent.unwrap_or_default(),
            id: s.id,
        }
    }
}

/// What the profile form shows: the account's values, or what was typed
/// into a refused form.
#[derive(Debug, Clone)]
struct Profile {
    email: String,
    is_active: bool,
    is_staff: bool,
    is_superuser: bool,
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    layout: Layout,
    id: i64,
    username: String,
    joined: String,
    last_login: String,
    profile: Profile,
    email_error: Option<String>,
    password_error: Option<String>,
    sessions: Vec<SessionRow>,
    locked_until: Option<String>,
    /// Plain staff see the flags they may not change as read-only.
    can_change_flags: bool,
}

async fn user_page(
    state: &ConsoleState,
    staff: &Staff,
    user: User,
    profile: Option<Profile>,
    email_error: Option<String>,
    password_error: Option<String>,
) -> Result<UserPage, ConsoleError> {
    let sessions = state
        .auth()
        .sessions_of(user.id)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(SessionRow::from)
        .collect();
    let key = throttle_key_for_username(&user.username);
    let blocked = state
        .auth()
        .throttle_store()
        .login_blocked_until(&key)
        .await?;
    let now_ms = state.now().saturating_mul(1000);
    Ok(UserPage {
        layout: staff.layout(state, user.username.clone()),
        id: user.id,
        joined: time(user.date_joined),
        last_login: maybe_time(user.last_login),
        profile: profile.unwrap_or(Profile {
            email: user.email.clone(),
            is_active: user.is_active,
            is_staff: user.is_staff,
            is_superuser: user.is_superuser,
        }),
        email_error,
        password_error,
        sessions,
        locked_until: (blocked > now_ms).then(|| time(blocked / 1000)),
        can_change_flags: staff.user.is_superuser,
        username: user.username,
    })
}

async fn existing(state: &ConsoleState, raw: &str) -> Result<User, ConsoleError> {
    state
        .auth()
        .user_store()
        .user_by_id(user_id(raw)?)
        .await?
        .ok_or(ConsoleError::NotFound)
}

/// Plain staff may not act on a superuser's account: setting its password
/// would make them one.
fn may_manage(staff: &Staff, user: &User) -> Result<(), ConsoleError> {
    if user.is_superuser {
        staff.require_superuser("Only a superuser can change a superuser's account.")
    } else {
        Ok(())
    }
}

/// `GET /admin/users/{id}/`
pub(crate) async fn show(
    State(state): State<ConsoleState>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let user = existing(&state, &id).await?;
    let page = user_page(&state, &staff, user, None, None, None).await?;
    Ok(render(StatusCode::OK, &page))
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// `POST /admin/users/{id}/`: email, active, staff, superuser.
pub(crate) async fn update(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Posted { staff, fields }: Posted,
) -> Result<Response, ConsoleError> {
    let user = existing(&state, &id).await?;
    may_manage(&staff, &user)?;
    let wanted = Profile {
        email: fields.get("email").trim().to_owned(),
        is_active: fields.checked("is_active"),
        // Superuser implies staff, as `portcullis user create --superuser`.
        is_staff: fields.checked("is_staff") || fields.checked("is_superuser"),
        is_superuser: fields.checked("is_superuser"),
    };
    if wanted.is_staff != user.is_staff || wanted.is_superuser != user.is_superuser {
        staff.require_superuser("Only a superuser can make or unmake staff and superusers.")?;
    }
    if let Some(error) = email_error(&wanted.email) {
        let page = user_page(&state, &staff, user, Some(wanted), Some(error), None).await?;
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    if user.id == staff.user.id && (!wanted.is_active || !wanted.is_staff) {
        let error = "You cannot take away your own access; ask another superuser.".to_owned();
        let page = user_page(&state, &staff, user, Some(wanted), Some(error), None).await?;
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let mut changes = Vec::new();
    if wanted.email != user.email {
        changes.push("email changed".to_owned());
    }
    for (name, before, after) in [
        ("is_active", user.is_active, wanted.is_active),
        ("is_staff", user.is_staff, wanted.is_staff),
        ("is_superuser", user.is_superuser, wanted.is_superuser),
    ] {
        if before != after {
            changes.push(format!("{name}: {} -> {}", yes_no(before), yes_no(after)));
        }
    }
    if changes.is_empty() {
        staff.flash(
            &state,
            "ok",
            format!("Nothing to change for {}.", user.username),
        );
        return Ok(see_other(&format!("/admin/users/{}/", user.id)));
    }
    state
        .inner
        .directory
        .update_profile(user.id, &wanted.email, wanted.is_staff, wanted.is_superuser)
        .await?;
    // Through the flows' store, which forgets this node's cached copy; a
    // deactivation ends every session first (ASVS V7.4.2).
    if !wanted.is_active && user.is_active {
        state.auth().deactivate_user(user.id).await?;
    } else {
        state
            .auth()
            .user_store()
            .set_active(user.id, wanted.is_active)
            .await?;
    }
    let target = Some(Target::user(user.id, &user.username));
    let action = match (user.is_active, wanted.is_active) {
        (true, false) => AuditAction::UserDeactivate,
        (false, true) => AuditAction::UserActivate,
        _ => AuditAction::UserUpdate,
    };
    state
        .record(
            &staff.actor(),
            staff.address.clone(),
            action,
            target,
            changes.join(", "),
        )
        .await;
    staff.flash(
        &state,
        "ok",
        format!("Saved {}: {}.", user.username, changes.join(", ")),
    );
    Ok(see_other(&format!("/admin/users/{}/", user.id)))
}

/// What is wrong with an email address, as Django's `EmailField` would
/// roughly say; empty is allowed (Django's default).
fn email_error(email: &str) -> Option<String> {
    if email.is_empty() {
        return None;
    }
    if email.chars().count() > MAX_EMAIL {
        return Some(format!("At most {MAX_EMAIL} characters."));
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
                && !domain.contains('@') =>
        {
            None
        }
        _ => Some("Enter a valid email address, such as ada@example.com.".to_owned()),
    }
}

/// `POST /admin/users/{id}/password/`: set a password; every session of
/// the account ends (whoever knew the old one is out).
pub(crate) async fn set_password(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Posted { staff, fields }: Posted,
) -> Result<Response, ConsoleError> {
    let user = existing(&state, &id).await?;
    may_manage(&staff, &user)?;
    let (password, again) = (fields.get("password"), fields.get("password2"));
    let error = if password.is_empty() {
        Some("Enter a password.")
    } else if password != again {
        Some("The two passwords differ.")
    } else if password.trim() != password {
        // The login endpoints trim, as simplejwt does: such a password
        // could never be typed in.
        Some("The password may not start or end with a space.")
    } else {
        None
    };
    if let Some(error) = error {
        let page = user_page(&state, &staff, user, None, None, Some(error.to_owned())).await?;
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    state
        .auth()
        .set_password(user.id, password.to_owned().into())
        .await?;
    state
        .record(
            &staff.actor(),
            staff.address.clone(),
            AuditAction::UserSetPassword,
            Some(Target::user(user.id, &user.username)),
            "sessions ended".to_owned(),
        )
        .await;
    staff.flash(
        &state,
        "ok",
        format!(
            "Password set for {}; their sessions were ended.",
            user.username
        ),
    );
    Ok(see_other(&format!("/admin/users/{}/", user.id)))
}

#[derive(Template)]
#[template(path = "delete.html")]
struct DeletePage {
    layout: Layout,
    id: i64,
    username: String,
    sessions: usize,
}

/// `GET /admin/users/{id}/delete/`: what deleting means, and the button.
pub(crate) async fn confirm_delete(
    State(state): State<ConsoleState>,
    staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let user = existing(&state, &id).await?;
    let sessions = state
        .auth()
        .sessions_of(user.id)
        .await?
        .map_or(0, |s| s.len());
    let page = DeletePage {
        layout: staff.layout(&state, format!("Delete {}", user.username)),
        id: user.id,
        username: user.username,
        sessions,
    };
    Ok(render(StatusCode::OK, &page))
}

/// `POST /admin/users/{id}/delete/`
pub(crate) async fn delete(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Posted { staff, .. }: Posted,
) -> Result<Response, ConsoleError> {
    let user = existing(&state, &id).await?;
    may_manage(&staff, &user)?;
    if user.id == staff.user.id {
        return Err(ConsoleError::Forbidden(
            "You cannot delete your own account; ask another superuser.",
        ));
    }
    if state.auth().delete_user(user.id).await? {
        state
            .record(
                &staff.actor(),
                staff.address.clone(),
                AuditAction::UserDelete,
                Some(Target::user(user.id, &user.username)),
                "sessions ended".to_owned(),
            )
            .await;
    }
    staff.flash(&state, "ok", format!("Deleted {}.", user.username));
    Ok(see_other("/admin/users/"))
}

/// `POST /admin/users/{id}/unlock/`: lift the login lock.
pub(crate) async fn unlock(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Posted { staff, .. }: Posted,
) -> Result<Response, ConsoleError> {
    let user = existing(&state, &id).await?;
    let key = throttle_key_for_username(&user.username);
    let cleared = state
        .auth()
        .throttle_store()
        .clear_login_failures(&key)
        .await?;
    state
        .record(
            &staff.actor(),
            staff.address.clone(),
            AuditAction::UserUnlock,
            Some(Target::user(user.id, &user.username)),
            if cleared {
                "failed logins cleared"
            } else {
                "no failed logins"
            }
            .to_owned(),
        )
        .await;
    staff.flash(
        &state,
        "ok",
        if cleared {
            format!("{} is unlocked.", user.username)
        } else {
            format!("{} had no failed logins to clear.", user.username)
        },
    );
    Ok(see_other(&format!("/admin/users/{}/", user.id)))
}

/// `POST /admin/users/{id}/sessions/end-all/`
pub(crate) async fn end_all(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    Posted { staff, .. }: Posted,
) -> Result<Response, ConsoleError> {
    let user = existing(&state, &id).await?;
    may_manage(&staff, &user)?;
    state.auth().end_sessions_of(user.id).await?;
    state
        .record(
            &staff.actor(),
            staff.address.clone(),
            AuditAction::SessionsEndAll,
            Some(Target::user(user.id, &user.username)),
            String::new(),
        )
        .await;
    staff.flash(
        &state,
        "ok",
        format!(
            "Every session of {} was ended; their tokens are refused.",
            user.username
        ),
    );
    Ok(see_other(&format!("/admin/users/{}/", user.id)))
}

/// `POST /admin/users/{id}/sessions/{sid}/end/`
pub(crate) async fn end_session(
    State(state): State<ConsoleState>,
    Path((id, sid)): Path<(String, String)>,
    Posted { staff, .. }: Posted,
) -> Result<Response, ConsoleError> {
    let user = existing(&state, &id).await?;
    may_manage(&staff, &user)?;
    if !state.auth().end_user_session(&user, &sid).await? {
        staff.flash(
            &state,
            "error",
            "That session had ended already.".to_owned(),
        );
        return Ok(see_other(&format!("/admin/users/{}/", user.id)));
    }
    state
        .record(
            &staff.actor(),
            staff.address.clone(),
            AuditAction::SessionEnd,
            Some(Target::user(user.id, &user.username)),
            // A session id is a refresh token's jti: not a secret, but the
            // trail needs only enough of it to tell sessions apart.
            format!("session {}…", sid.chars().take(8).collect::<String>()),
        )
        .await;
    staff.flash(
        &state,
        "ok",
        "The session was ended; its tokens are refused.".to_owned(),
    );
    Ok(see_other(&format!("/admin/users/{}/", user.id)))
}
