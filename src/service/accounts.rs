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

impl NewUser {
    /// The field rules, for the admin API and the CSV import alike.
    fn validate(&self) -> Result<Role> {
        check_user_id("user_id", &self.user_id)?;
        check_text("name", &self.name, 1, 100)?;
        let role = Role::parse("role", &self.role)?;
        self.password.check("password")?;
        if let Some(p) = &self.transaction_password {
            p.check("transaction_password")?;
        }
        Ok(role)
    }
}

/// The columns of the CSV import, in order; the last may be left out.
const CSV_COLUMNS: [&str; 6] = ["contract_no", "user_id", "name", "role", "password", "transaction_password"];

/// Why a user cannot be added under a contract.
enum NewUserRefused {
    NoContract,
    /// The contract is cancelled (`Contract::check_open`).
    Closed(Error),
    /// The store failed: passed on as it is (500).
    Store(Error),
    Exists,
    /// The contract has this service admin already.
    ServiceAdminTaken(String),
}

impl NewUserRefused {
    /// As the admin API answers it.
    fn api_error(self, contract_no: &str, user_id: &str) -> Error {
        match self {
            NewUserRefused::NoContract => Error::NotFound("no such contract".into()),
            NewUserRefused::Closed(e) | NewUserRefused::Store(e) => e,
            NewUserRefused::Exists => Error::Conflict(format!("user {user_id} exists in contract {contract_no}")),
            NewUserRefused::ServiceAdminTaken(sa) => {
                Error::Conflict(format!("the contract's service admin is {sa}; change it with service-admin"))
            }
        }
    }

    /// As a line of the CSV import reports it, naming the column.
    fn line_error(self) -> Error {
        match self {
            NewUserRefused::NoContract => Error::bad_field("contract_no", "no such contract"),
            NewUserRefused::Closed(e) => Error::bad_field("contract_no", e.to_string()),
            NewUserRefused::Store(e) => e,
            NewUserRefused::Exists => Error::bad_field("user_id", "exists already"),
            NewUserRefused::ServiceAdminTaken(_) => Error::bad_field("role", "the contract has a service admin already"),
        }
    }
}

/// The one check for a new user's place: the contract exists and is open,
/// the user id is free in it, and a service admin is the contract's first.
fn check_new_user(r: &impl Reader, contract_no: &str, user_id: &str, role: Role) -> std::result::Result<Contract, NewUserRefused> {
    let contract = r.contract(contract_no).map_err(NewUserRefused::Store)?.ok_or(NewUserRefused::NoContract)?;
    contract.check_open().map_err(NewUserRefused::Closed)?;
    if r.user(contract_no, user_id).map_err(NewUserRefused::Store)?.is_some() {
        return Err(NewUserRefused::Exists);
    }
    if let (Role::ServiceAdmin, Some(sa)) = (role, &contract.service_admin) {
        return Err(NewUserRefused::ServiceAdminTaken(sa.clone()));
    }
    Ok(contract)
}

/// The one write of a new user: the record, the contract's service admin
/// when it is one, and the audit entry (`via` names the import).
fn insert_user(tx: &mut WriteTx, contract: &mut Contract, u: &User, actor: &str, via: Option<&str>) -> Result<()> {
    if u.role == Role::ServiceAdmin {
        contract.service_admin = Some(u.user_id.clone());
        tx.put_contract(contract)?;
    }
    tx.put_user(u)?;
    let mut detail = json!({"role": u.role, "name": u.name});
    if let Some(via) = via {
        detail["via"] = json!(via);
    }
    tx.audit(NewEvent::new("user_created", actor.to_string()).user(&u.contract_no, &u.user_id).detail(detail))?;
    Ok(())
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

/// An action on a user as its audit entry records it: what, why, by whom,
/// and the grace it leaves (`None`: now + `grace_period`; a stop leaves none).
pub(crate) struct Act<'a> {
    pub action: Action,
    pub reason: &'a str,
    pub usable_until: Option<Ms>,
    pub actor: &'a str,
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

    pub fn create_user(&self, operator: &str, contract_no: &ContractNo, input: NewUser, now: Ms) -> Result<User> {
        let role = input.validate()?;
        let password_hash = self.passwords.hash(input.password.expose())?;
        let tx_hash = input.transaction_password.as_ref().map(|p| self.passwords.hash(p.expose())).transpose()?;
        let actor = format!("operator:{operator}");
        let contract_no = contract_no.to_string();
        self.call(Durability::Durable, move |tx, _| {
            let mut contract =
                check_new_user(tx, &contract_no, &input.user_id, role).map_err(|e| e.api_error(&contract_no, &input.user_id))?;
            let u = User::new(&contract_no, &input.user_id, &input.name, role, password_hash.clone(), tx_hash.clone(), now);
            insert_user(tx, &mut contract, &u, &actor, None)?;
            Ok(u)
        })
    }

    /// The one rule for a wrong password, at login, approval or
    /// registration: counted, and at `password_max_failures` the password is
    /// locked and the lock audited. A locked account counts no further.
    pub(super) fn count_wrong_password(&self, tx: &mut WriteTx, user: &mut User) -> Result<()> {
        if user.password_locked {
            return Ok(());
        }
        let locked = user.password_failed(self.cfg().password_max_failures);
        tx.put_user(user)?;
        if locked {
            tx.audit(
                NewEvent::new("password_locked", "system")
                    .user(&user.contract_no, &user.user_id)
                    .detail(json!({"failures": user.password_failures})),
            )?;
        }
        Ok(())
    }

    /// Applies an action to a user inside a write job: the state machine,
    /// then the cascade and the audit entry. `actor` names who did it.
    pub(crate) fn act_on_user(&self, tx: &mut WriteTx, events: &mut Vec<Event>, user: &mut User, act: Act<'_>, now: Ms) -> Result<Plan> {
        let Act { action, reason, usable_until, actor } = act;
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
                end_token(tx, events, &mut t, Ending::Revoked, reason, actor, now)?;
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
            app.act_on_user(tx, events, &mut user, Act { action, reason: &reason, usable_until: until, actor: &actor }, now)?;
            Ok(user)
        })
    }

    /// `POST /api/v1/users/{contract_no}/{target}/deregister`: the customer's
    /// own service admin (or FX admin) ends a user's phone registration (Art. 7.3).
    pub fn customer_deregister(
        self: &Arc<Self>,
        rp: &str,
        contract_no: &ContractNo,
        target: &UserId,
        input: CustomerDeregister,
        now: Ms,
    ) -> Result<User> {
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
            app.act_on_user(
                tx,
                events,
                &mut user,
                Act { action: Action::Deregister, reason: &reason, usable_until: None, actor: &actor },
                now,
            )?;
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
            contract.check_open().map_err(|_| Error::InvalidTransition("the contract is already cancelled".into()))?;
            for mut u in tx.users_of(&c)? {
                if matches!(u.registration, Registration::Active | Registration::Suspended) {
                    app.act_on_user(
                        tx,
                        events,
                        &mut u,
                        Act {
                            action: Action::Deregister,
                            reason: &format!("contract cancelled: {reason}"),
                            usable_until: Some(now),
                            actor: &actor,
                        },
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
                app.act_on_user(
                    tx,
                    events,
                    &mut user,
                    Act { action: Action::Deregister, reason: &format!("user deleted: {reason}"), usable_until: Some(now), actor: &actor },
                    now,
                )?;
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
                            Act {
                                action: Action::Deregister,
                                reason: &format!("service admin changed: {reason}"),
                                usable_until: None,
                                actor: &actor,
                            },
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
    /// created, or the bad lines with what is wrong with each. The CSV syntax
    /// (quotes, a BOM, line numbers) is `import::records`'; a file's bytes are
    /// decoded first by `App::import_csv_bytes`.
    pub fn import_csv(&self, actor: &str, text: &str, now: Ms) -> Result<std::result::Result<usize, Vec<(usize, String)>>> {
        let mut errors = Vec::new();
        let mut rows: Vec<(usize, String, NewUser)> = Vec::new();
        let mut seen = HashSet::new();
        let r = self.store.read()?;
        let mut service_admins: HashSet<String> = HashSet::new();
        for (i, record) in import::records(text, &CSV_COLUMNS).into_iter().enumerate() {
            let (line, mut f) = match record {
                Ok(record) => (record.line, record.fields),
                Err(bad) => {
                    errors.push(bad);
                    continue;
                }
            };
            if i == 0 && f[0] == CSV_COLUMNS[0] {
                continue; // the header line
            }
            if f.len() != 5 && f.len() != 6 {
                errors.push((line, format!("expected 5 or 6 fields, found {}", f.len())));
                continue;
            }
            let mut check = || -> Result<NewUser> {
                check_contract_no("contract_no", &f[0])?;
                let u = NewUser {
                    user_id: f[1].clone(),
                    name: f[2].clone(),
                    role: f[3].clone(),
                    // Taken, not copied: a Password wipes its memory when dropped.
                    password: Password::new(std::mem::take(&mut f[4])),
                    transaction_password: f.get_mut(5).filter(|s| !s.is_empty()).map(|s| Password::new(std::mem::take(s))),
                };
                let role = u.validate()?;
                let contract = check_new_user(&r, &f[0], &f[1], role).map_err(NewUserRefused::line_error)?;
                // Two service admins for one contract within the file.
                if role == Role::ServiceAdmin && !service_admins.insert(contract.contract_no) {
                    return Err(NewUserRefused::ServiceAdminTaken(String::new()).line_error());
                }
                Ok(u)
            };
            match check() {
                Ok(u) => {
                    if !seen.insert((f[0].clone(), f[1].clone())) {
                        errors.push((line, "user_id: appears twice in the file".into()));
                    } else {
                        rows.push((line, f[0].clone(), u));
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
            let role = u.validate()?;
            prepared.push(User::new(&c, &u.user_id, &u.name, role, ph, th, now));
        }
        let n = prepared.len();
        let actor = actor.to_string();
        self.call(Durability::Durable, move |tx, _| {
            for u in &prepared {
                // Checked again in the transaction: something may have changed since the file was read.
                let mut contract = check_new_user(tx, &u.contract_no, &u.user_id, u.role).map_err(|e| match e {
                    NewUserRefused::Store(e) => e,
                    e => Error::Conflict(format!("{}; nothing imported", e.api_error(&u.contract_no, &u.user_id))),
                })?;
                insert_user(tx, &mut contract, u, &actor, Some("import"))?;
            }
            Ok(())
        })?;
        Ok(Ok(n))
    }
}
