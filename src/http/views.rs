//! The wire views: how records look in JSON answers (API.md), in one place.

use serde_json::{json, Value};

use crate::audit::AuditEvent;
use crate::domain::account::{Contract, User};
use crate::domain::challenge::Challenge;
use crate::domain::rfc3339;
use crate::service::Stats;
use crate::store::{Notice, SystemState};

/// A challenge as its RP sees it.
pub fn rp_view(c: &Challenge) -> Value {
    json!({
        "challenge_id": c.id,
        "kind": c.kind.as_str(),
        "status": c.status.as_str(),
        "created_at": rfc3339(c.created_at),
        "expires_at": rfc3339(c.expires_at),
        "decided_at": c.decided_at.map(rfc3339),
    })
}

/// A challenge as the phone sees it.
pub fn device_view(c: &Challenge) -> Value {
    json!({
        "challenge_id": c.id,
        "kind": c.kind.as_str(),
        "display": c.display,
        "display_digest": c.display_digest,
        "number_choices": c.number_choices,
        "created_at": rfc3339(c.created_at),
        "expires_at": rfc3339(c.expires_at),
    })
}

pub fn user_view(u: &User) -> Value {
    json!({
        "contract_no": u.contract_no,
        "user_id": u.user_id,
        "name": u.name,
        "role": u.role,
        "registration": u.registration.as_str(),
        "token_id": u.token_id,
        "usable_until": u.usable_until.map(rfc3339),
        "password_locked": u.password_locked,
        "stopped": u.stopped,
    })
}

pub fn contract_view(c: &Contract) -> Value {
    json!({
        "contract_no": c.contract_no,
        "name": c.name,
        "edition": c.edition,
        "status": c.status,
        "service_admin": c.service_admin,
        "created_at": rfc3339(c.created_at),
        "cancelled_at": c.cancelled_at.map(rfc3339),
    })
}

pub fn notice_view(n: &Notice) -> Value {
    json!({"id": n.id, "kind": n.kind, "title": n.title, "body": n.body, "lang": n.lang,
           "starts_at": rfc3339(n.starts_at), "ends_at": n.ends_at.map(rfc3339)})
}

/// The system-wide switches as operators see them.
pub fn system_view(s: &SystemState) -> Value {
    json!({"push_suspended": s.push_suspended, "notice_id": s.notice_id})
}

/// An audit entry as the operator's search shows it (the chain's `prev_hash`
/// stays for `onepush audit export`).
pub fn audit_view(e: &AuditEvent) -> Value {
    json!({
        "seq": e.seq, "at": e.at, "type": e.kind, "actor": e.actor, "contract_no": e.contract_no,
        "user_id": e.user_id, "detail": e.detail, "hash": e.hash,
    })
}

/// The operator's statistics.
pub fn stats_view(s: &Stats) -> Value {
    json!({
        "contracts": {"total": s.contracts, "cancelled": s.cancelled},
        "users": {"by_registration": s.by_registration, "password_locked": s.password_locked, "stopped": s.stopped},
        "challenges_last_24h": s.challenges_last_24h,
        "pending": s.pending,
        "fraud_reports_last_24h": s.fraud_reports.len(),
        "fraud_reports": s.fraud_reports.iter().rev().take(50).map(|f| json!({
            "challenge_id": f.challenge_id, "contract_no": f.contract_no, "user_id": f.user_id,
            "kind": f.kind, "reported_at": rfc3339(f.reported_at)})).collect::<Vec<_>>(),
        "push_suspended": s.push_suspended,
    })
}

/// A page of contracts, `next` the cursor for the one after it.
pub fn contracts_page_view(list: &[Contract], next: &Option<String>) -> Value {
    json!({"contracts": list.iter().map(contract_view).collect::<Vec<_>>(), "next": next})
}

/// A contract with its users.
pub fn contract_detail_view(c: &Contract, users: &[User]) -> Value {
    let mut v = contract_view(c);
    v["users"] = json!(users.iter().map(user_view).collect::<Vec<_>>());
    v
}

pub fn notices_view(list: &[Notice]) -> Value {
    json!({"notices": list.iter().map(notice_view).collect::<Vec<_>>()})
}

/// A page of the audit search, `next` the `after` for the one after it.
pub fn audit_page_view(events: &[AuditEvent], next: &Option<u64>) -> Value {
    json!({"events": events.iter().map(audit_view).collect::<Vec<_>>(), "next": next})
}

/// A CSV import: how many users it created, or every bad line (nothing created).
pub fn import_view(result: &std::result::Result<usize, Vec<(usize, String)>>) -> Value {
    match result {
        Ok(n) => json!({"created": n, "errors": []}),
        Err(errors) => json!({
            "created": 0,
            "errors": errors.iter().map(|(line, message)| json!({"line": line, "message": message})).collect::<Vec<_>>(),
            "error": {"code": "bad_request", "message": format!("{} bad lines; nothing was imported", errors.len())},
        }),
    }
}

/// A phone's push subscription as it reads it back: `{"kind", "endpoint"}`,
/// or `{"kind": null}` (none, or removed after the push service answered 410).
pub fn push_view(s: Option<&crate::domain::account::PushSubscription>) -> Value {
    match s {
        Some(s) => json!({"kind": s.kind(), "endpoint": s.endpoint()}),
        None => json!({"kind": null}),
    }
}
