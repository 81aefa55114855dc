//! The gate (SPEC R2): a login or an approval decided from the account's
//! state and its edition's policy, and the push challenge it opens.

use super::*;

#[derive(Debug, Default, Clone, Deserialize)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    pub contract_no: String,
    pub user_id: String,
    pub password: Password,
    #[serde(default)]
    pub client: ClientInfo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    pub contract_no: String,
    pub user_id: String,
    pub kind: String,
    #[serde(default)]
    pub transaction_password: Option<Password>,
    pub display: Vec<(String, String)>,
    #[serde(default)]
    pub client: ClientInfo,
}

/// The answer to a login or approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum GateAnswer {
    Challenge {
        challenge_id: String,
        expires_at: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        number: Option<String>,
    },
    Allow {
        reason: AllowReason,
    },
    Deny {
        reason: DenyReason,
        /// With `too_many_challenges`: whole seconds until the window lets
        /// the user's next challenge through (API.md).
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
}

/// A login or approval, checked and ready for its write job.
pub(super) struct GateRequest {
    /// "login" or "approval": the audit type and the metrics label.
    op: &'static str,
    rp: String,
    contract_no: ContractNo,
    user_id: UserId,
    kind: Kind,
    creds: Credentials,
    /// Whether a transaction password was checked for `creds` (an approval
    /// whose contract's edition asks for one).
    password_checked: bool,
    /// The lines of an approval; a login's are composed in `decide`.
    display: Option<Vec<(String, String)>>,
    client: ClientInfo,
    /// The client as a login's lines show it (`client_summary`).
    client_summary: String,
}

/// How the password check went, decided before the job is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Credentials {
    Unknown,
    Locked,
    Wrong,
    Right,
}

pub(super) fn answer_result(a: &GateAnswer) -> &'static str {
    match a {
        GateAnswer::Challenge { .. } => "challenge",
        GateAnswer::Allow { .. } => "allow",
        GateAnswer::Deny { .. } => "deny",
    }
}

pub(super) fn client_json(c: &ClientInfo) -> serde_json::Value {
    json!({"ip": c.ip, "user_agent": c.user_agent})
}

pub(super) fn check_client(c: &ClientInfo) -> Result<ClientInfo> {
    if let Some(ip) = &c.ip {
        ip.parse::<IpAddr>().map_err(|_| Error::bad_field("client.ip", "must be an IP address"))?;
    }
    if let Some(ua) = &c.user_agent {
        check_text("client.user_agent", ua, 0, 512)?;
    }
    Ok(c.clone())
}

pub fn check_display(lines: &[(String, String)]) -> Result<()> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    if lines.is_empty() {
        return Err(Error::bad_field("display", "must have at least one line"));
    }
    if lines.len() > MAX_DISPLAY_LINES {
        return Err(Error::bad_field("display", format!("must have at most {MAX_DISPLAY_LINES} lines")));
    }
    for (i, (label, value)) in lines.iter().enumerate() {
        for (part, text, max) in [("label", label, 40), ("value", value, 200)] {
            let field = format!("display[{i}] {part}");
            check_text(&field, text, 1, max)?;
            // Bidi overrides and isolates, zero-width characters: they can make
            // the phone show something other than what is signed (API.md).
            if text.chars().any(|c| c.general_category() == GeneralCategory::Format) {
                return Err(Error::bad_field(&field, "must not contain Unicode format characters (bidi controls, zero-width)"));
            }
        }
    }
    Ok(())
}

/// The lines a login shows on the phone, composed by onepush.
pub(super) fn login_display(
    contract: &Contract,
    user: &User,
    client: &str,
    lang: Lang,
    tz: &jiff::tz::TimeZone,
    now: Ms,
) -> Vec<(String, String)> {
    let service = match (contract.edition.as_str(), lang) {
        ("jweb", _) => "JWEBOFFICE".to_string(),
        ("fx", Lang::Ja) => "JWEBOFFICE 外為版".to_string(),
        ("fx", Lang::En) => "JWEBOFFICE FX".to_string(),
        (other, _) => other.to_string(),
    };
    let labels = match lang {
        Lang::Ja => ["サービス", "契約番号", "利用者ID", "接続元", "日時"],
        Lang::En => ["Service", "Contract", "User", "Client", "Time"],
    };
    let values = [service, contract.contract_no.clone(), user.user_id.clone(), client.to_string(), local_time(now, tz)];
    labels.iter().zip(values).map(|(l, v)| (l.to_string(), v)).collect()
}

/// `2026/11/26 20:46:05 JST`: the time in the bank's zone, as a customer reads it.
pub(super) fn local_time(now: Ms, tz: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(now as i64) {
        Ok(t) => t.to_zoned_datetime(tz.clone()).strftime("%Y/%m/%d %H:%M:%S %Z").to_string(),
        Err(_) => rfc3339(now),
    }
}

/// The client as the RP reported it: its address and a short browser/OS
/// summary of its user agent (`203.0.113.7 (Chrome / Windows 10)`); `-` only
/// when the RP sent neither.
pub(super) fn client_summary(c: &ClientInfo) -> String {
    let agent = c.user_agent.as_deref().and_then(|ua| woothee::parser::Parser::new().parse(ua)).and_then(|r| {
        let browser = (r.name != woothee::woothee::VALUE_UNKNOWN).then_some(r.name);
        let os = (r.os != woothee::woothee::VALUE_UNKNOWN).then(|| r.os.to_string());
        match (browser, os) {
            (Some(b), Some(o)) => Some(format!("{b} / {o}")),
            (Some(b), None) => Some(b.to_string()),
            (None, Some(o)) => Some(o),
            (None, None) => None,
        }
    });
    match (c.ip.as_deref(), agent) {
        (Some(ip), Some(a)) => format!("{ip} ({a})"),
        (Some(ip), None) => ip.to_string(),
        (None, Some(a)) => a,
        (None, None) => "-".to_string(),
    }
}

impl App {
    pub(super) fn check_credentials(&self, user: Option<&User>, password: &Password) -> Credentials {
        match user {
            None => {
                self.passwords.verify(None, password.expose());
                Credentials::Unknown
            }
            Some(u) if u.password_locked => Credentials::Locked,
            Some(u) => {
                if self.passwords.verify(Some(&u.password_hash), password.expose()) {
                    Credentials::Right
                } else {
                    Credentials::Wrong
                }
            }
        }
    }

    /// POST /api/v1/login (SPEC R2.1, R3).
    pub fn login(self: &Arc<Self>, rp: String, input: LoginInput, now: Ms, done: impl FnOnce(Result<GateAnswer>) + Send + 'static) {
        let prepared = (|| {
            let contract_no = ContractNo::parse("contract_no", &input.contract_no)?;
            let user_id = UserId::parse("user_id", &input.user_id)?;
            input.password.check("password")?;
            let client = check_client(&input.client)?;
            let r = self.store.read_latest()?;
            // A contract outside the RP key's editions is as unknown to it.
            let user = match r.contract(&contract_no)? {
                Some(c) if self.rp_sees(&r, &rp, &c)? => r.user(&contract_no, &user_id)?,
                _ => None,
            };
            // The store's connection is given back before the Argon2 work.
            drop(r);
            Ok((contract_no, user_id, self.check_credentials(user.as_ref(), &input.password), client))
        })();
        let (contract_no, user_id, creds, client) = match prepared {
            Ok(p) => p,
            Err(e) => return done(Err(e)),
        };
        // The user agent is parsed here, on the request's thread, not in the write job.
        let client_summary = client_summary(&client);
        let req = GateRequest {
            op: "login",
            rp,
            contract_no,
            user_id,
            kind: Kind::Login,
            creds,
            password_checked: false,
            display: None,
            client,
            client_summary,
        };
        self.submit_gate(req, now, done);
    }

    /// POST /api/v1/approvals (SPEC R2.2).
    pub fn approve(self: &Arc<Self>, rp: String, input: ApprovalInput, now: Ms, done: impl FnOnce(Result<GateAnswer>) + Send + 'static) {
        let prepared = (|| {
            let contract_no = ContractNo::parse("contract_no", &input.contract_no)?;
            let user_id = UserId::parse("user_id", &input.user_id)?;
            let kind = match input.kind.as_str() {
                "notice" => Kind::Notice,
                "transaction" => Kind::Transaction,
                _ => return Err(Error::bad_field("kind", "must be notice or transaction")),
            };
            check_display(&input.display)?;
            let client = check_client(&input.client)?;
            if let Some(p) = &input.transaction_password {
                p.check("transaction_password")?;
            }
            let r = self.store.read_latest()?;
            let contract = match r.contract(&contract_no)? {
                Some(c) if self.rp_sees(&r, &rp, &c)? => Some(c),
                _ => None,
            };
            let user = match &contract {
                Some(_) => r.user(&contract_no, &user_id)?,
                None => None,
            };
            let needs_password = match &contract {
                Some(c) => self.edition(&c.edition)?.needs_transaction_password(kind),
                None => input.transaction_password.is_some(),
            };
            // The store's connection is given back before the Argon2 work.
            drop(r);
            let creds = match (&user, needs_password, &input.transaction_password) {
                (None, _, Some(p)) => {
                    self.passwords.verify(None, p.expose());
                    Credentials::Unknown
                }
                (None, _, None) => Credentials::Unknown,
                (Some(u), _, _) if u.password_locked => Credentials::Locked,
                (Some(_), true, None) => {
                    return Err(Error::bad_field("transaction_password", "is required for this kind in this contract's edition"))
                }
                (Some(u), true, Some(p)) => {
                    if self.passwords.verify(u.transaction_password_hash.as_deref(), p.expose()) {
                        Credentials::Right
                    } else {
                        Credentials::Wrong
                    }
                }
                (Some(_), false, _) => Credentials::Right,
            };
            let password_checked = needs_password && user.is_some() && input.transaction_password.is_some();
            Ok((contract_no, user_id, kind, creds, password_checked, client))
        })();
        let (contract_no, user_id, kind, creds, password_checked, client) = match prepared {
            Ok(p) => p,
            Err(e) => return done(Err(e)),
        };
        let req = GateRequest {
            op: "approval",
            rp,
            contract_no,
            user_id,
            kind,
            creds,
            password_checked,
            display: Some(input.display),
            client,
            client_summary: String::new(),
        };
        self.submit_gate(req, now, done);
    }

    /// The write job of a login or approval: `decide`, its audit entry
    /// (with the lines for an approval), and the count in `/metrics`.
    pub(super) fn submit_gate(self: &Arc<Self>, req: GateRequest, now: Ms, done: impl FnOnce(Result<GateAnswer>) + Send + 'static) {
        let app = self.clone();
        let actor = format!("rp:{}", req.rp);
        let op = req.op;
        self.submit(
            Durability::Durable,
            move |tx, events| {
                let r = &req;
                let (answer, reason) = app.decide(tx, events, r, now)?;
                let mut detail = json!({"result": answer_result(&answer), "reason": reason, "client": client_json(&r.client)});
                if let Some(lines) = &r.display {
                    detail["kind"] = json!(r.kind.as_str());
                    detail["display"] = json!(lines);
                }
                if let GateAnswer::Challenge { challenge_id, .. } = &answer {
                    detail["challenge_id"] = json!(challenge_id);
                }
                tx.audit(NewEvent::new(r.op, actor.clone()).user(&r.contract_no, &r.user_id).detail(detail))?;
                Ok(answer)
            },
            {
                let app = self.clone();
                move |r: Result<GateAnswer>| {
                    if let Ok(a) = &r {
                        app.count_decision(op, a);
                    }
                    done(r)
                }
            },
        );
    }

    pub(super) fn count_decision(&self, op: &'static str, a: &GateAnswer) {
        match a {
            GateAnswer::Challenge { .. } => self.metrics.decision(op, "challenge", "push"),
            GateAnswer::Allow { reason } => self.metrics.decision(op, "allow", reason.as_str()),
            GateAnswer::Deny { reason, .. } => self.metrics.decision(op, "deny", reason.as_str()),
        }
    }

    /// The shared body of login and approval, inside the write job: password
    /// counters, then `gate`, then the challenge. Returns the answer and its
    /// reason for the audit entry.
    pub(super) fn decide(
        &self,
        tx: &mut WriteTx,
        events: &mut Vec<Event>,
        req: &GateRequest,
        now: Ms,
    ) -> Result<(GateAnswer, &'static str)> {
        let (contract_no, user_id, kind) = (req.contract_no.as_str(), req.user_id.as_str(), req.kind);
        let deny = |r: DenyReason| Ok((GateAnswer::Deny { reason: r, retry_after: None }, r.as_str()));
        let wrong = if kind == Kind::Login { DenyReason::BadCredentials } else { DenyReason::BadTransactionPassword };
        let (Some(contract), Some(mut user)) = (tx.contract(contract_no)?, tx.user(contract_no, user_id)?) else {
            return deny(DenyReason::BadCredentials);
        };
        // What the request decided from its own reads (the RP key's
        // editions, whether this kind needs a transaction password) may rest
        // on a node's cached copies: checked again here, under the write lock.
        if !self.rp_sees(tx, &req.rp, &contract)? {
            return deny(DenyReason::BadCredentials);
        }
        let policy = self.edition(&contract.edition)?;
        if kind != Kind::Login && policy.needs_transaction_password(kind) && !req.password_checked && req.creds == Credentials::Right {
            return Err(Error::Conflict("the contract's edition changed while this request was checked: send it again".into()));
        }
        match req.creds {
            Credentials::Unknown => return deny(DenyReason::BadCredentials),
            Credentials::Locked => return deny(DenyReason::PasswordLocked),
            _ if user.password_locked => return deny(DenyReason::PasswordLocked),
            Credentials::Wrong => {
                self.count_wrong_password(tx, &mut user)?;
                return deny(wrong);
            }
            Credentials::Right => {}
        }
        let system = tx.system()?;
        let verdict = gate(&contract, &user, policy.push_for(kind), &self.gate_settings(system.push_suspended), now);
        if user.password_failures > 0 {
            user.password_ok();
            tx.put_user(&user)?;
        }
        match verdict {
            Gate::Deny(r @ DenyReason::TooManyChallenges) => {
                let wait = user.challenge_retry_after(now, self.cfg().challenge_window, self.cfg().max_challenges_per_window);
                Ok((GateAnswer::Deny { reason: r, retry_after: Some(wait.div_ceil(SECOND).max(1)) }, r.as_str()))
            }
            Gate::Deny(r) => deny(r),
            Gate::Allow(r) => Ok((GateAnswer::Allow { reason: r }, r.as_str())),
            Gate::Push => {
                let c = self.open_challenge(tx, events, req, &contract, &mut user, now)?;
                Ok((GateAnswer::Challenge { challenge_id: c.id.clone(), expires_at: rfc3339(c.expires_at), number: c.number }, "push"))
            }
        }
    }

    /// Creates a challenge for an active user, superseding older pending ones
    /// beyond `max_pending_per_user`.
    pub(super) fn open_challenge(
        &self,
        tx: &mut WriteTx,
        events: &mut Vec<Event>,
        req: &GateRequest,
        contract: &Contract,
        user: &mut User,
        now: Ms,
    ) -> Result<Challenge> {
        let (rp, kind) = (req.rp.as_str(), req.kind);
        let token_id = user
            .token_id
            .clone()
            .ok_or_else(|| Error::Internal(format!("active user {}/{} has no token", user.contract_no, user.user_id)))?;
        // The token is read once: its language for a login's lines, its subscription for the push.
        let token = tx.token(&token_id)?;
        let display = match &req.display {
            Some(d) => d.clone(),
            None => {
                let lang = token.as_ref().map(|t| t.lang).unwrap_or_default();
                login_display(contract, user, &req.client_summary, lang, &self.cfg().display_timezone, now)
            }
        };
        let pending = tx.pending_for_token(&token_id)?;
        let excess = (pending.len() + 1).saturating_sub(self.cfg().max_pending_per_user as usize);
        for mut old in pending.into_iter().take(excess) {
            self.apply_delivered(&mut old);
            old.cancel(CancelCause::Superseded, now)?;
            self.record_closed(tx, events, &old, "system")?;
        }
        user.challenge_created(now, self.cfg().challenge_window, self.cfg().max_challenges_per_window);
        tx.put_user(user)?;
        // The demo bank always shows number challenge, the defence it demonstrates.
        let (number, number_choices) = if self.cfg().number_challenge || rp == crate::http::DEMO_RP {
            let (n, choices) = number_challenge();
            (Some(n), Some(choices))
        } else {
            (None, None)
        };
        let c = Challenge {
            id: ids::new_challenge_id(),
            rp: rp.to_string(),
            kind,
            contract_no: user.contract_no.clone(),
            user_id: user.user_id.clone(),
            token_id: token_id.clone(),
            display_digest: sig::display_digest(&display),
            display,
            number,
            number_choices,
            status: Status::Pending,
            created_at: now,
            expires_at: now + self.cfg().challenge_ttl,
            delivered_at: None,
            decided_at: None,
            answered_by: None,
            signature: None,
            report_fraud: false,
            cancel_cause: None,
        };
        tx.put_challenge(&c)?;
        events.push(Event::Created(kind));
        if let Some(subscription) = token.and_then(|t| t.subscription()) {
            events.push(Event::Wake(crate::wakeup::Wake {
                token_id: token_id.clone(),
                subscription,
                challenge_id: c.id.clone(),
                kind: kind.as_str(),
                expires_at: c.expires_at,
            }));
        }
        events.push(Event::Pending(token_id));
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::check_display;

    fn line(label: &str, value: &str) -> Vec<(String, String)> {
        vec![(label.to_string(), value.to_string())]
    }

    #[test]
    fn display_lines_refuse_format_characters_and_keep_japanese_text() {
        assert!(check_display(&line("振込先", "水戸商事株式会社")).is_ok());
        assert!(check_display(&line("金額", "１，２５０，０００円 👍 JPY 1,250,000")).is_ok());
        for cf in ['\u{202e}', '\u{202a}', '\u{2066}', '\u{2069}', '\u{200b}', '\u{200d}', '\u{feff}', '\u{00ad}', '\u{061c}'] {
            let e = check_display(&line("Payee", &format!("Mito{cf}Trading"))).unwrap_err();
            assert!(e.to_string().starts_with("display[0] value: must not contain Unicode format"), "{cf:?}: {e}");
            let e = check_display(&line(&format!("Pay{cf}ee"), "x")).unwrap_err();
            assert!(e.to_string().starts_with("display[0] label"), "{cf:?}: {e}");
        }
    }
}
