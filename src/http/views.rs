//! The wire views: how records look in JSON answers (API.md), in one place.

use serde_json::{json, Value};

use crate::audit::AuditEvent;
use crate::domain::account::{Contract, User};
use crate::domain::challenge::Challenge;
use crate::domain::rfc3339;
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
