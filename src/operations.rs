//! Account lifecycle and administration (SPEC R3, R4, R5): operator and
//! customer actions with their cascades, contracts, notices, system-wide
//! suspension, audit search, statistics and CSV import.
//!
//! Every action is one write job: the state machine of
//! `domain::lifecycle` decides, then the cascade (token revoked, pending
//! challenges cancelled, parked polls answered) and the audit entry (actor,
//! reason, before and after) are written in the same transaction.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::{AuditEvent, NewEvent};
use crate::domain::account::{Contract, ContractStatus, Registration, Role, User};
use crate::domain::challenge::{CancelCause, Status};
use crate::domain::ids::{self, check_contract_no, check_text, check_user_id, Password};
use crate::domain::lifecycle::{self, Action, Plan};
use crate::domain::{parse_rfc3339, rfc3339, Ms};
use crate::error::{Error, Result};
use crate::service::{App, Event, NewUser};
use crate::store::{Durability, Notice, RawReader, Reader, SystemState, WriteTx};

pub const DAY: Ms = 86_400_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    pub reason: String,
    #[serde(default)]
    pub usable_until: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonInput {
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerDeregister {
    pub actor_user_id: String,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAdminInput {
    pub user_id: String,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemInput {
    pub push_suspended: bool,
    #[serde(default)]
    pub notice_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeInput {
    pub kind: String,
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub lang: Option<String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
}

/// Filters of `GET /api/v1/admin/audit`.
#[derive(Debug, Default)]
pub struct AuditQuery {
    pub after: u64,
    pub limit: usize,
    pub contract_no: Option<String>,
    pub user_id: Option<String>,
    pub kind: Option<String>,
}

pub fn notice_view(n: &Notice) -> Value {
    json!({"id": n.id, "kind": n.kind, "title": n.title, "body": n.body, "lang": n.lang,
           "starts_at": rfc3339(n.starts_at), "ends_at": n.ends_at.map(rfc3339)})
}

fn check_reason(r: &str) -> Result<()> {
    check_text("reason", r, 1, 500)
}

impl App {
    /// Applies an action to a user inside a write job: the state machine,
    /// then the cascade and the audit entry. `actor` names who did it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn act_on_user(
        &self,
        tx: &mut WriteTx,
        events: &mut Vec<Event>,
        user: &mut User,
        action: Action,
        reason: &str,
        usable_until: Option<Ms>,
        actor: &str,
        now: Ms,
    ) -> Result<Plan> {
        let plan = lifecycle::plan(user, action)?;
        // A stop (lost phone) has no grace: after unstop the user registers again.
        let until = usable_until.unwrap_or(if action == Action::Stop { now } else { now + self.cfg().grace_period });
        let before = json!({"registration": user.registration.as_str(), "stopped": user.stopped,
                            "password_locked": user.password_locked, "token_id": user.token_id});
        let token_id = user.token_id.clone();
        if let Some(t) = &token_id {
            if plan.cancel_pending {
                for mut c in tx.pending_for_token(t)? {
                    self.apply_delivered(&mut c);
                    c.cancel(CancelCause::Account, now)?;
                    self.record_closed(tx, events, &c, actor)?;
                }
            }
            if plan.revoke_token {
                self.revoke_token(tx, events, t, &format!("{}: {reason}", action.as_str()), actor, now)?;
            }
        }
        lifecycle::apply(user, &plan, until);
        tx.put_user(user)?;
        tx.audit(NewEvent::new(action_event(action), actor.to_string()).user(&user.contract_no, &user.user_id).detail(json!({
            "reason": reason,
            "before": before,
            "after": {"registration": user.registration.as_str(), "stopped": user.stopped,
                      "password_locked": user.password_locked, "usable_until": user.usable_until.map(rfc3339)},
        })))?;
        Ok(plan)
    }

    fn revoke_token(&self, tx: &mut WriteTx, events: &mut Vec<Event>, token_id: &str, reason: &str, actor: &str, now: Ms) -> Result<()> {
        if let Some(mut t) = tx.token(token_id)? {
            if !t.is_revoked() {
                t.revoke(reason, now);
                tx.put_token(&t)?;
                tx.audit(NewEvent::new("token_revoked", actor.to_string()).detail(json!({"token_id": token_id, "reason": reason})))?;
                events.push(Event::TokenRevoked(token_id.to_string()));
            }
        }
        Ok(())
    }

    /// `POST /api/v1/admin/contracts/{no}/users/{uid}/{action}`.
    pub fn operator_action(
        self: &Arc<Self>,
        operator: &str,
        contract_no: &str,
        user_id: &str,
        action: &str,
        input: ActionInput,
        now: Ms,
    ) -> Result<User> {
        let action = Action::parse(action)?;
        check_reason(&input.reason)?;
        let until = input.usable_until.as_deref().map(|s| parse_rfc3339("usable_until", s)).transpose()?;
        let (c, u, actor, reason) = (contract_no.to_string(), user_id.to_string(), format!("operator:{operator}"), input.reason);
        let app = self.clone();
        self.call(Durability::Durable, move |tx, events| {
            let contract = tx.contract(&c)?.ok_or_else(|| Error::NotFound("no such contract".into()))?;
            if action != Action::Unlock {
                contract.check_open()?;
            }
            let mut user = tx.user(&c, &u)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
            app.act_on_user(tx, events, &mut user, action, &reason, until, &actor, now)?;
            Ok(user)
        })
    }

    /// `POST /api/v1/users/{contract_no}/{target}/deregister`: the customer's
    /// own service admin (or FX admin) ends a user's phone registration (Art. 7.3).
    pub fn customer_deregister(
        self: &Arc<Self>,
        rp: &str,
        contract_no: &str,
        target: &str,
        input: CustomerDeregister,
        now: Ms,
    ) -> Result<User> {
        check_contract_no("contract_no", contract_no)?;
        check_user_id("user_id", target)?;
        check_user_id("actor_user_id", &input.actor_user_id)?;
        check_reason(&input.reason)?;
        let (c, t, actor_id, reason) = (contract_no.to_string(), target.to_string(), input.actor_user_id, input.reason);
        let actor = format!("rp:{rp}/user:{actor_id}");
        let app = self.clone();
        let rp_name = rp.to_string();
        self.call(Durability::Durable, move |tx, events| {
            let contract = tx.contract(&c)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
            if !app.rp_sees(tx, &rp_name, &contract)? {
                return Err(Error::NotFound("no such user".into()));
            }
            let Some(actor_user) = tx.user(&c, &actor_id)? else {
                return Err(Error::Forbidden("the actor is not a user of this contract".into()));
            };
            let policy = app.edition(&contract.edition)?;
            if !policy.deregister_roles.contains(&actor_user.role) || actor_user.stopped {
                return Err(Error::Forbidden(format!("a {:?} may not deregister users in this edition", actor_user.role).to_lowercase()));
            }
            let mut user = tx.user(&c, &t)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
            app.act_on_user(tx, events, &mut user, Action::Deregister, &reason, None, &actor, now)?;
            Ok(user)
        })
    }

    /// `POST /api/v1/admin/contracts/{no}/cancel` (解約, Art. 7.6): every user
    /// deregistered, every token revoked, every login refused.
    pub fn cancel_contract(self: &Arc<Self>, operator: &str, contract_no: &str, input: ReasonInput, now: Ms) -> Result<Contract> {
        check_reason(&input.reason)?;
        let (c, actor, reason) = (contract_no.to_string(), format!("operator:{operator}"), input.reason);
        let app = self.clone();
        self.call(Durability::Durable, move |tx, events| {
            let mut contract = tx.contract(&c)?.ok_or_else(|| Error::NotFound("no such contract".into()))?;
            contract.check_open()?;
            for mut u in tx.users_of(&c)? {
                if matches!(u.registration, Registration::Active | Registration::Suspended) {
                    app.act_on_user(
                        tx,
                        events,
                        &mut u,
                        Action::Deregister,
                        &format!("contract cancelled: {reason}"),
                        Some(now),
                        &actor,
                        now,
                    )?;
                }
            }
            contract.status = ContractStatus::Cancelled;
            contract.cancelled_at = Some(now);
            tx.put_contract(&contract)?;
            tx.audit(NewEvent::new("contract_cancelled", actor.clone()).contract(&c).detail(json!({"reason": reason})))?;
            Ok(contract)
        })
    }

    /// `DELETE /api/v1/admin/contracts/{no}/users/{uid}` (Art. 7.5): the
    /// registration ends and the token is revoked; the user record goes.
    pub fn delete_user(self: &Arc<Self>, operator: &str, contract_no: &str, user_id: &str, input: ReasonInput, now: Ms) -> Result<()> {
        check_reason(&input.reason)?;
        let (c, u, actor, reason) = (contract_no.to_string(), user_id.to_string(), format!("operator:{operator}"), input.reason);
        let app = self.clone();
        self.call(Durability::Durable, move |tx, events| {
            let mut contract = tx.contract(&c)?.ok_or_else(|| Error::NotFound("no such contract".into()))?;
            let mut user = tx.user(&c, &u)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
            if matches!(user.registration, Registration::Active | Registration::Suspended) {
                app.act_on_user(tx, events, &mut user, Action::Deregister, &format!("user deleted: {reason}"), Some(now), &actor, now)?;
            }
            if contract.service_admin.as_deref() == Some(u.as_str()) {
                contract.service_admin = None;
                tx.put_contract(&contract)?;
            }
            tx.delete_user(&c, &u)?;
            tx.audit(NewEvent::new("user_deleted", actor.clone()).user(&c, &u).detail(json!({"reason": reason})))?;
            Ok(())
        })
    }

    /// `POST /api/v1/admin/contracts/{no}/service-admin`: the new service
    /// admin takes the role; the previous one is deregistered (Art. 7.5).
    pub fn change_service_admin(
        self: &Arc<Self>,
        operator: &str,
        contract_no: &str,
        input: ServiceAdminInput,
        now: Ms,
    ) -> Result<Contract> {
        check_user_id("user_id", &input.user_id)?;
        check_reason(&input.reason)?;
        let (c, new_id, actor, reason) = (contract_no.to_string(), input.user_id, format!("operator:{operator}"), input.reason);
        let app = self.clone();
        self.call(Durability::Durable, move |tx, events| {
            let mut contract = tx.contract(&c)?.ok_or_else(|| Error::NotFound("no such contract".into()))?;
            contract.check_open()?;
            let mut new_admin = tx.user(&c, &new_id)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
            let previous = contract.service_admin.clone();
            if previous.as_deref() == Some(new_id.as_str()) {
                return Err(Error::Conflict(format!("{new_id} is the service admin already")));
            }
            if let Some(prev_id) = &previous {
                if let Some(mut prev) = tx.user(&c, prev_id)? {
                    prev.role = Role::User;
                    if matches!(prev.registration, Registration::Active | Registration::Suspended) {
                        app.act_on_user(
                            tx,
                            events,
                            &mut prev,
                            Action::Deregister,
                            &format!("service admin changed: {reason}"),
                            None,
                            &actor,
                            now,
                        )?;
                    } else {
                        tx.put_user(&prev)?;
                    }
                }
            }
            new_admin.role = Role::ServiceAdmin;
            tx.put_user(&new_admin)?;
            contract.service_admin = Some(new_id.clone());
            tx.put_contract(&contract)?;
            tx.audit(
                NewEvent::new("service_admin_changed", actor.clone())
                    .contract(&c)
                    .detail(json!({"reason": reason, "before": previous, "after": new_id})),
            )?;
            Ok(contract)
        })
    }

    // ------------------------------------------------------------ system and notices

    pub fn system(&self) -> Result<SystemState> {
        self.store.read()?.system()
    }

    /// `PUT /api/v1/admin/system`: push suspension needs a notice to turn on.
    pub fn set_system(&self, operator: &str, input: SystemInput, now: Ms) -> Result<SystemState> {
        if input.push_suspended && input.notice_id.is_none() {
            return Err(Error::bad_field("notice_id", "is required to suspend push authentication (tell the customers why)"));
        }
        let actor = format!("operator:{operator}");
        self.call(Durability::Durable, move |tx, _| {
            if let Some(id) = &input.notice_id {
                if tx.notice(id)?.is_none() {
                    return Err(Error::bad_field("notice_id", "no such notice"));
                }
            }
            let before = tx.system()?;
            let after = SystemState { push_suspended: input.push_suspended, notice_id: input.notice_id.clone() };
            tx.put_system(&after)?;
            tx.audit(NewEvent::new("system_changed", actor.clone()).detail(json!({
                "before": {"push_suspended": before.push_suspended, "notice_id": before.notice_id},
                "after": {"push_suspended": after.push_suspended, "notice_id": after.notice_id},
                "at": rfc3339(now),
            })))?;
            Ok(after)
        })
    }

    pub fn create_notice(&self, operator: &str, input: NoticeInput, now: Ms) -> Result<Notice> {
        if !matches!(input.kind.as_str(), "outage" | "maintenance" | "terms" | "info") {
            return Err(Error::bad_field("kind", "must be outage, maintenance, terms or info"));
        }
        check_text("title", &input.title, 1, 200)?;
        if input.body.chars().count() > 10_000 || input.body.chars().any(|c| c.is_control() && c != '\n') {
            return Err(Error::bad_field("body", "must be at most 10000 characters, without control characters but newlines"));
        }
        let lang = input.lang.unwrap_or_else(|| "ja".into());
        if !matches!(lang.as_str(), "ja" | "en") {
            return Err(Error::bad_field("lang", "must be ja or en"));
        }
        let starts_at = input.starts_at.as_deref().map(|s| parse_rfc3339("starts_at", s)).transpose()?.unwrap_or(now);
        let ends_at = input.ends_at.as_deref().map(|s| parse_rfc3339("ends_at", s)).transpose()?;
        if ends_at.is_some_and(|e| e <= starts_at) {
            return Err(Error::bad_field("ends_at", "must be after starts_at"));
        }
        let n = Notice {
            id: format!("n_{}", ids::random_hex(8)),
            kind: input.kind,
            title: input.title,
            body: input.body,
            lang,
            starts_at,
            ends_at,
            created_at: now,
        };
        let actor = format!("operator:{operator}");
        let rec = n.clone();
        self.call(Durability::Durable, move |tx, _| {
            tx.put_notice(&rec)?;
            tx.audit(NewEvent::new("notice_created", actor.clone()).detail(json!({"id": rec.id, "kind": rec.kind, "title": rec.title})))?;
            Ok(())
        })?;
        Ok(n)
    }

    pub fn delete_notice(&self, operator: &str, id: &str) -> Result<()> {
        let (id, actor) = (id.to_string(), format!("operator:{operator}"));
        self.call(Durability::Durable, move |tx, _| {
            if tx.system()?.push_suspended && tx.system()?.notice_id.as_deref() == Some(id.as_str()) {
                return Err(Error::Conflict("this notice explains the current push suspension; end the suspension first".into()));
            }
            if !tx.delete_notice(&id)? {
                return Err(Error::NotFound("no such notice".into()));
            }
            tx.audit(NewEvent::new("notice_deleted", actor.clone()).detail(json!({"id": id})))?;
            Ok(())
        })
    }

    pub fn notices(&self) -> Result<Vec<Notice>> {
        let mut all = self.store.read()?.notices()?;
        all.sort_by_key(|n| std::cmp::Reverse(n.starts_at));
        Ok(all)
    }

    /// Public notices whose time overlaps `[from, to]` (both default to now).
    pub fn public_notices(&self, from: Ms, to: Ms, lang: Option<&str>) -> Result<Vec<Notice>> {
        Ok(self
            .notices()?
            .into_iter()
            .filter(|n| n.starts_at <= to && n.ends_at.is_none_or(|e| e > from))
            .filter(|n| lang.is_none_or(|l| n.lang == l))
            .collect())
    }

    // ------------------------------------------------------------ queries

    /// `GET /api/v1/admin/contracts?q=&limit=&after=`: contract-number order;
    /// `q` matches the start of the number or any part of the name.
    pub fn contracts(&self, q: &str, after: &str, limit: usize) -> Result<(Vec<Contract>, Option<String>)> {
        let r = self.store.read()?;
        let q = q.to_lowercase();
        let mut out = Vec::new();
        let mut cursor = after.to_string();
        loop {
            let page = r.contracts_after(&cursor, 500)?;
            if page.is_empty() {
                return Ok((out, None));
            }
            for c in page {
                cursor = c.contract_no.clone();
                if q.is_empty() || c.contract_no.to_lowercase().starts_with(&q) || c.name.to_lowercase().contains(&q) {
                    if out.len() == limit {
                        let next = out.last().map(|c: &Contract| c.contract_no.clone());
                        return Ok((out, next));
                    }
                    out.push(c);
                }
            }
        }
    }

    pub fn contract_detail(&self, contract_no: &str) -> Result<(Contract, Vec<User>)> {
        let r = self.store.read()?;
        let c = r.contract(contract_no)?.ok_or_else(|| Error::NotFound("no such contract".into()))?;
        Ok((c, r.users_of(contract_no)?))
    }

    /// `GET /api/v1/admin/audit`: events after `after`, oldest first, filtered.
    pub fn search_audit(&self, q: &AuditQuery) -> Result<(Vec<AuditEvent>, Option<u64>)> {
        let r = self.store.read()?;
        let limit = q.limit.clamp(1, 1000);
        let wanted = |e: &AuditEvent| q.kind.as_deref().is_none_or(|k| e.kind == k);
        let mut out = Vec::new();
        match &q.contract_no {
            Some(c) => {
                for seq in r.audit_seqs_about(c, q.user_id.as_deref())?.into_iter().filter(|s| *s > q.after) {
                    if let Some(e) = r.audit_at(seq)? {
                        if wanted(&e) {
                            if out.len() == limit {
                                return Ok((out, Some(seq - 1)));
                            }
                            out.push(e);
                        }
                    }
                }
                Ok((out, None))
            }
            None => {
                let mut after = q.after;
                // A bounded scan per call: the cursor lets the caller go on.
                for _ in 0..50 {
                    let page = r.audit_after(after, 2000)?;
                    if page.is_empty() {
                        return Ok((out, None));
                    }
                    for e in page {
                        after = e.seq;
                        if wanted(&e) {
                            out.push(e);
                            if out.len() == limit {
                                return Ok((out, Some(after)));
                            }
                        }
                    }
                }
                Ok((out, Some(after)))
            }
        }
    }

    /// `GET /api/v1/admin/stats`.
    pub fn stats(&self, now: Ms) -> Result<Value> {
        let r = self.store.read()?;
        let mut by_state: BTreeMap<&str, u64> = Registration::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        let (mut locked, mut stopped, mut contracts, mut cancelled) = (0, 0, 0, 0);
        let mut cursor = String::new();
        loop {
            let page = r.contracts_after(&cursor, 500)?;
            if page.is_empty() {
                break;
            }
            for c in page {
                contracts += 1;
                if c.status == ContractStatus::Cancelled {
                    cancelled += 1;
                }
                for u in r.users_of(&c.contract_no)? {
                    *by_state.entry(u.registration.as_str()).or_default() += 1;
                    locked += u64::from(u.password_locked);
                    stopped += u64::from(u.stopped);
                }
                cursor = c.contract_no;
            }
        }
        let since = now.saturating_sub(DAY);
        let mut outcomes: BTreeMap<&str, u64> = Status::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for id in r.challenge_ids_since(since)? {
            if let Some(c) = r.challenge(&id)? {
                *outcomes.entry(c.status.as_str()).or_default() += 1;
            }
        }
        let frauds = r.fraud_reports_since(since)?;
        Ok(json!({
            "contracts": {"total": contracts, "cancelled": cancelled},
            "users": {"by_registration": by_state, "password_locked": locked, "stopped": stopped},
            "challenges_last_24h": outcomes,
            "pending": r.pending_count()?,
            "fraud_reports_last_24h": frauds.len(),
            "fraud_reports": frauds.iter().rev().take(50).map(|f| json!({
                "challenge_id": f.challenge_id, "contract_no": f.contract_no, "user_id": f.user_id,
                "kind": f.kind, "reported_at": rfc3339(f.reported_at)})).collect::<Vec<_>>(),
            "push_suspended": r.system()?.push_suspended,
        }))
    }

    // ------------------------------------------------------------ CSV import

    /// Users from CSV (`contract_no,user_id,name,role,password,transaction_password`),
    /// all or nothing: any bad line and nothing is written. Returns the number
    /// created, or the bad lines with what is wrong with each.
    pub fn import_csv(&self, actor: &str, text: &str, now: Ms) -> Result<std::result::Result<usize, Vec<(usize, String)>>> {
        let mut errors = Vec::new();
        let mut rows: Vec<(usize, String, NewUser)> = Vec::new();
        let mut seen = HashSet::new();
        let r = self.store.read()?;
        let mut service_admins: HashSet<String> = HashSet::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim_end_matches('\r');
            if l.trim().is_empty() || (line == 1 && l.starts_with("contract_no,")) {
                continue;
            }
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            if f.len() != 5 && f.len() != 6 {
                errors.push((line, format!("expected 5 or 6 fields, found {}", f.len())));
                continue;
            }
            let mut check = || -> Result<NewUser> {
                check_contract_no("contract_no", f[0])?;
                check_user_id("user_id", f[1])?;
                check_text("name", f[2], 1, 100)?;
                let role = Role::parse("role", f[3])?;
                let pw = Password::new(f[4].to_string());
                pw.check("password")?;
                let txpw = f.get(5).filter(|s| !s.is_empty()).map(|s| Password::new(s.to_string()));
                if let Some(p) = &txpw {
                    p.check("transaction_password")?;
                }
                let contract = r.contract(f[0])?.ok_or_else(|| Error::bad_field("contract_no", "no such contract"))?;
                contract.check_open().map_err(|e| Error::bad_field("contract_no", e.to_string()))?;
                if r.user(f[0], f[1])?.is_some() {
                    return Err(Error::bad_field("user_id", "exists already"));
                }
                if role == Role::ServiceAdmin && (contract.service_admin.is_some() || !service_admins.insert(f[0].to_string())) {
                    return Err(Error::bad_field("role", "the contract has a service admin already"));
                }
                Ok(NewUser {
                    user_id: f[1].to_string(),
                    name: f[2].to_string(),
                    role: f[3].to_string(),
                    password: pw,
                    transaction_password: txpw,
                })
            };
            match check() {
                Ok(u) => {
                    if !seen.insert((f[0].to_string(), f[1].to_string())) {
                        errors.push((line, "user_id: appears twice in the file".into()));
                    } else {
                        rows.push((line, f[0].to_string(), u));
                    }
                }
                Err(e) => errors.push((line, e.to_string())),
            }
        }
        if !errors.is_empty() {
            return Ok(Err(errors));
        }
        // Hash first (slow), then write everything in one transaction.
        let mut prepared = Vec::with_capacity(rows.len());
        for (_, c, u) in rows {
            let ph = self.passwords.hash(u.password.expose())?;
            let th = u.transaction_password.as_ref().map(|p| self.passwords.hash(p.expose())).transpose()?;
            prepared.push((c, u.user_id, u.name, Role::parse("role", &u.role)?, ph, th));
        }
        let n = prepared.len();
        let actor = actor.to_string();
        self.call(Durability::Durable, move |tx, _| {
            for (c, uid, name, role, ph, th) in &prepared {
                let mut contract = tx.contract(c)?.ok_or_else(|| Error::Conflict(format!("contract {c} vanished")))?;
                if tx.user(c, uid)?.is_some() {
                    return Err(Error::Conflict(format!("user {uid} of {c} was created meanwhile; nothing imported")));
                }
                let u = User::new(c, uid, name, *role, ph.clone(), th.clone(), now);
                if *role == Role::ServiceAdmin {
                    contract.service_admin = Some(uid.clone());
                    tx.put_contract(&contract)?;
                }
                tx.put_user(&u)?;
                tx.audit(
                    NewEvent::new("user_created", actor.clone()).user(c, uid).detail(json!({"role": role, "name": name, "via": "import"})),
                )?;
            }
            Ok(())
        })?;
        Ok(Ok(n))
    }
}

/// A demo user: contract, edition, user ID, role, password, transaction password.
pub type DemoUser = (&'static str, &'static str, &'static str, &'static str, &'static str, Option<&'static str>);

/// What `serve --demo` sets up, to print.
pub struct DemoSeed {
    pub users: Vec<DemoUser>,
}

pub const DEMO_USERS: &[DemoUser] = &[
    ("1000000001", "jweb", "taro", "user", "demo-pass-1", Some("demo-tx-1234")),
    ("1000000001", "jweb", "hanako", "service_admin", "demo-pass-2", Some("demo-tx-5678")),
    ("2000000002", "fx", "jiro", "admin", "demo-pass-3", None),
];

impl App {
    /// `serve --demo`: a JWEBOFFICE and an FX contract with users. Idempotent.
    pub fn seed_demo(&self, now: Ms) -> Result<DemoSeed> {
        let mut mine = self.store.read()?.demo_contracts()?;
        for (no, name, edition) in [("1000000001", "デモ商事株式会社", "jweb"), ("2000000002", "デモ外為株式会社", "fx")] {
            if self.store.read()?.contract(no)?.is_none() {
                self.create_contract(
                    "demo",
                    crate::service::NewContract { contract_no: no.into(), name: name.into(), edition: edition.into() },
                    now,
                )?;
                mine.push(no.to_string());
                let list = mine.clone();
                self.call(Durability::Durable, move |tx, _| tx.put_demo_contracts(&list))?;
            }
        }
        for (no, _, uid, role, pw, tx) in DEMO_USERS {
            // A bank's own contract with the same number is never touched.
            if !mine.iter().any(|m| m == no) {
                continue;
            }
            if self.store.read()?.user(no, uid)?.is_none() {
                let input = NewUser {
                    user_id: uid.to_string(),
                    name: uid.to_string(),
                    role: role.to_string(),
                    password: Password::new(pw.to_string()),
                    transaction_password: tx.map(|t| Password::new(t.to_string())),
                };
                self.create_user("demo", no, input, now)?;
            }
        }
        Ok(DemoSeed { users: DEMO_USERS.iter().filter(|u| mine.iter().any(|m| m == u.0)).copied().collect() })
    }
}

fn action_event(a: Action) -> &'static str {
    match a {
        Action::Suspend => "user_suspended",
        Action::Resume => "user_resumed",
        Action::Deregister => "user_deregistered",
        Action::Stop => "user_stopped",
        Action::Unstop => "user_unstopped",
        Action::Unlock => "user_unlocked",
    }
}
