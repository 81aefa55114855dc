//! Accounts (SPEC R3, R4): contracts, users and their lifecycle.
//!
//! Every action is one write job: the state machine of `domain::lifecycle`
//! decides, then the cascade (token revoked, pending challenges cancelled,
//! parked polls answered) and the audit entry (actor, reason, before and
//! after) are written in the same transaction.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewContract {
    pub contract_no: String,
    pub name: String,
    pub edition: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub user_id: String,
    pub name: String,
    pub role: String,
    pub password: Password,
    #[serde(default)]
    pub transaction_password: Option<Password>,
}

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

pub(super) fn check_reason(r: &str) -> Result<()> {
    check_text("reason", r, 1, 500)
}

pub(super) fn action_event(a: Action) -> &'static str {
    match a {
        Action::Suspend => "user_suspended",
        Action::Resume => "user_resumed",
        Action::Deregister => "user_deregistered",
        Action::Stop => "user_stopped",
        Action::Unstop => "user_unstopped",
        Action::Unlock => "user_unlocked",
    }
}

impl App {
    pub fn create_contract(&self, operator: &str, input: NewContract, now: Ms) -> Result<Contract> {
        check_contract_no("contract_no", &input.contract_no)?;
        check_text("name", &input.name, 1, 100)?;
        if !self.cfg().editions.contains_key(&input.edition) {
            let names: Vec<_> = self.cfg().editions.keys().cloned().collect();
            return Err(Error::bad_field("edition", format!("must be one of {}", names.join(", "))));
        }
        let actor = format!("operator:{operator}");
        self.call(Durability::Durable, move |tx, _| {
            if tx.contract(&input.contract_no)?.is_some() {
                return Err(Error::Conflict(format!("contract {} exists", input.contract_no)));
            }
            let c = Contract {
                contract_no: input.contract_no.clone(),
                name: input.name.clone(),
                edition: input.edition.clone(),
                status: ContractStatus::Active,
                service_admin: None,
                created_at: now,
                cancelled_at: None,
            };
            tx.put_contract(&c)?;
            tx.audit(
                NewEvent::new("contract_created", actor.clone())
                    .contract(&c.contract_no)
                    .detail(json!({"name": c.name, "edition": c.edition})),
            )?;
            Ok(c)
        })
    }

    pub fn create_user(&self, operator: &str, contract_no: &str, input: NewUser, now: Ms) -> Result<User> {
        check_contract_no("contract_no", contract_no)?;
        check_user_id("user_id", &input.user_id)?;
        check_text("name", &input.name, 1, 100)?;
        let role = Role::parse("role", &input.role)?;
        input.password.check("password")?;
        if let Some(p) = &input.transaction_password {
            p.check("transaction_password")?;
        }
        let password_hash = self.passwords.hash(input.password.expose())?;
        let tx_hash = input.transaction_password.as_ref().map(|p| self.passwords.hash(p.expose())).transpose()?;
        let actor = format!("operator:{operator}");
        let contract_no = contract_no.to_string();
        self.call(Durability::Durable, move |tx, _| {
            let mut contract = tx.contract(&contract_no)?.ok_or_else(|| Error::NotFound("no such contract".into()))?;
            contract.check_open()?;
            if tx.user(&contract_no, &input.user_id)?.is_some() {
                return Err(Error::Conflict(format!("user {} exists in contract {contract_no}", input.user_id)));
            }
            if role == Role::ServiceAdmin {
                if let Some(sa) = &contract.service_admin {
                    return Err(Error::Conflict(format!("the contract's service admin is {sa}; change it with service-admin")));
                }
            }
            let u = User::new(&contract_no, &input.user_id, &input.name, role, password_hash.clone(), tx_hash.clone(), now);
            if role == Role::ServiceAdmin {
                contract.service_admin = Some(u.user_id.clone());
                tx.put_contract(&contract)?;
            }
            tx.put_user(&u)?;
            tx.audit(
                NewEvent::new("user_created", actor.clone()).user(&contract_no, &u.user_id).detail(json!({"role": role, "name": u.name})),
            )?;
            Ok(u)
        })
    }

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

    pub(super) fn revoke_token(
        &self,
        tx: &mut WriteTx,
        events: &mut Vec<Event>,
        token_id: &str,
        reason: &str,
        actor: &str,
        now: Ms,
    ) -> Result<()> {
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
