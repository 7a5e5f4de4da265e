//! `/admin/audit/`: the audit trail, newest first, filtered by actor and
//! target, paged by id.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use portcullis_core::AuditFilter;
use serde::Deserialize;

use super::{Layout, render, time};
use crate::extract::Staff;
use crate::{ConsoleError, ConsoleState};

const PAGE: u32 = 100;

struct Row {
    at: String,
    actor: String,
    action: &'static str,
    target: String,
    target_id: Option<i64>,
    detail: String,
    address: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    actor: String,
    target: String,
    rows: Vec<Row>,
    older: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    before: Option<i64>,
}

/// `GET /admin/audit/?actor=…&target=…&before=…`
pub(crate) async fn list(
    State(state): State<ConsoleState>,
    staff: Staff,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ConsoleError> {
    let (actor, target) = (
        query.actor.trim().to_owned(),
        query.target.trim().to_owned(),
    );
    let records = state
        .inner
        .audit
        .audit_entries(&AuditFilter {
            actor: Some(actor.clone()).filter(|a| !a.is_empty()),
            target: Some(target.clone()).filter(|t| !t.is_empty()),
            before: query.before,
            limit: PAGE,
        })
        .await?;
    let older = records
        .last()
        .filter(|_| records.len() == PAGE as usize)
        .map(|last| {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("actor", &actor)
                .append_pair("target", &target)
                .append_pair("before", &last.id.to_string())
                .finish();
            format!("/admin/audit/?{query}")
        });
    let rows = records
        .into_iter()
        .map(|r| {
            let e = r.entry;
            let actor = match &e.actor {
                portcullis_core::Actor::Cli { os_user } => format!("cli ({os_user})"),
                staff @ portcullis_core::Actor::Staff { .. } => staff.name().to_owned(),
            };
            Row {
                at: time(e.at),
                actor,
                action: e.action.as_str(),
                target_id: e.target.as_ref().and_then(|t| t.id),
                target: e.target.map(|t| t.name).unwrap_or_default(),
                detail: e.detail,
                address: e.address.unwrap_or_default(),
            }
        })
        .collect();
    let page = AuditPage {
        layout: staff.layout(&state, "Audit trail"),
        actor,
        target,
        rows,
        older,
    };
    Ok(render(StatusCode::OK, &page))
}
