//! `/admin/keys/…`: the key set with each key's state, generate, rotate,
//! and retire after a page that says what retiring does. Superusers only.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use portcullis_core::{AuditAction, Target};
use portcullis_token::{KeyState, key_states};

use super::{Layout, maybe_time, render, see_other, time};
use crate::extract::{Posted, Staff};
use crate::{ConsoleError, ConsoleState};

const SUPERUSERS_ONLY: &str = "Only a superuser can manage the signing keys.";

/// The algorithms `portcullis keys generate` offers.
const ALGORITHMS: [&str; 6] = ["EdDSA", "ES256", "ES384", "RS256", "PS256", "HS256"];

struct KeyRow {
    kid: String,
    algorithm: String,
    state: &'static str,
    created: String,
    activates: String,
    retires: String,
    retired: bool,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    layout: Layout,
    keys: Vec<KeyRow>,
    algorithms: [&'static str; 6],
}

/// `GET /admin/keys/`
pub(crate) async fn list(
    State(state): State<ConsoleState>,
    staff: Staff,
) -> Result<Response, ConsoleError> {
    staff.require_superuser(SUPERUSERS_ONLY)?;
    let keys = state.auth().key_store().signing_keys().await?;
    let states = key_states(&keys, state.now());
    let rows = keys
        .into_iter()
        .zip(states)
        .rev()
        .map(|(k, s)| KeyRow {
            state: s.as_str(),
            retired: s == KeyState::Retired,
            created: time(k.created_at),
            activates: maybe_time(k.activates_at),
            retires: maybe_time(k.retires_at),
            kid: k.kid,
            algorithm: k.algorithm,
        })
        .collect();
    let page = KeysPage {
        layout: staff.layout(&state, "Signing keys"),
        keys: rows,
        algorithms: ALGORITHMS,
    };
    Ok(render(StatusCode::OK, &page))
}

/// `POST /admin/keys/generate/`
pub(crate) async fn generate(
    State(state): State<ConsoleState>,
    Posted { staff, fields }: Posted,
) -> Result<Response, ConsoleError> {
    staff.require_superuser(SUPERUSERS_ONLY)?;
    let algorithm = fields.get("algorithm");
    if !ALGORITHMS.contains(&algorithm) {
        return Err(ConsoleError::BadForm(
            "Choose one of the algorithms offered.",
        ));
    }
    let activate = fields.checked("activate");
    match state.inner.keys.generate(algorithm, activate).await {
        Ok(key) => {
            state
                .record(
                    &staff.actor(),
                    staff.address.clone(),
                    AuditAction::KeyGenerate,
                    Some(Target::named(&key.kid)),
                    format!(
                        "{}{}",
                        key.algorithm,
                        if activate { ", signs now" } else { "" }
                    ),
                )
                .await;
            staff.flash(
                &state,
                "ok",
                format!(
                    "Generated {} key {}; it {}.",
                    key.algorithm,
                    key.kid,
                    if activate {
                        "signs from now on"
                    } else {
                        "verifies but does not sign"
                    }
                ),
            );
        }
        Err(e) => staff.flash(&state, "error", format!("No key was generated: {e}")),
    }
    Ok(see_other("/admin/keys/"))
}

/// `POST /admin/keys/rotate/`
pub(crate) async fn rotate(
    State(state): State<ConsoleState>,
    Posted { staff, .. }: Posted,
) -> Result<Response, ConsoleError> {
    staff.require_superuser(SUPERUSERS_ONLY)?;
    match state.inner.keys.rotate().await {
        Ok(key) => {
            state
                .record(
                    &staff.actor(),
                    staff.address.clone(),
                    AuditAction::KeyRotate,
                    Some(Target::named(&key.kid)),
                    format!(
                        "{}, signs from {}",
                        key.algorithm,
                        maybe_time(key.activates_at)
                    ),
                )
                .await;
            staff.flash(
                &state,
                "ok",
                format!(
                    "Published {} key {}; it signs from {} on.",
                    key.algorithm,
                    key.kid,
                    maybe_time(key.activates_at)
                ),
            );
        }
        Err(e) => staff.flash(&state, "error", format!("No rotation: {e}")),
    }
    Ok(see_other("/admin/keys/"))
}

#[derive(Template)]
#[template(path = "retire.html")]
struct RetirePage {
    layout: Layout,
    kid: String,
    algorithm: String,
    state: &'static str,
    active: bool,
}

/// `GET /admin/keys/{kid}/retire/`: the consequences, then the button.
pub(crate) async fn confirm_retire(
    State(state): State<ConsoleState>,
    staff: Staff,
    Path(kid): Path<String>,
) -> Result<Response, ConsoleError> {
    staff.require_superuser(SUPERUSERS_ONLY)?;
    let keys = state.auth().key_store().signing_keys().await?;
    let states = key_states(&keys, state.now());
    let (key, key_state) = keys
        .into_iter()
        .zip(states)
        .find(|(k, _)| k.kid == kid)
        .ok_or(ConsoleError::NotFound)?;
    let page = RetirePage {
        layout: staff.layout(&state, format!("Retire key {kid}")),
        state: key_state.as_str(),
        active: key_state == KeyState::Active,
        kid: key.kid,
        algorithm: key.algorithm,
    };
    Ok(render(StatusCode::OK, &page))
}

/// `POST /admin/keys/{kid}/retire/`
pub(crate) async fn retire(
    State(state): State<ConsoleState>,
    Path(kid): Path<String>,
    Posted { staff, .. }: Posted,
) -> Result<Response, ConsoleError> {
    staff.require_superuser(SUPERUSERS_ONLY)?;
    if !state
        .auth()
        .key_store()
        .retire_signing_key(&kid, state.now())
        .await?
    {
        return Err(ConsoleError::NotFound);
    }
    state
        .record(
            &staff.actor(),
            staff.address.clone(),
            AuditAction::KeyRetire,
            Some(Target::named(&kid)),
            String::new(),
        )
        .await;
    staff.flash(
        &state,
        "ok",
        format!("Key {kid} is retired: its tokens are no longer accepted."),
    );
    Ok(see_other("/admin/keys/"))
}
