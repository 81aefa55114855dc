//! Registration (SPEC R1): binding a provisioned phone to a user who proves
//! the password and two OTPs. Failures count against the token only once
//! the user's credentials were right.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationInput {
    pub contract_no: String,
    pub user_id: String,
    pub password: Password,
    pub token_id: String,
    pub otp1: String,
    pub otp2: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegistrationOutput {
    pub registration: &'static str,
    pub token_id: String,
    pub registered_at: String,
}

/// A registration whose fields were checked, ready for its write job.
pub(super) struct Registering {
    contract_no: ContractNo,
    user_id: UserId,
    token_id: TokenId,
    otp1: String,
    otp2: String,
    creds: Credentials,
}

impl Registering {
    fn actor(&self) -> String {
        format!("user:{}/{}", self.contract_no, self.user_id)
    }
}

impl App {
    /// POST /api/v1/registrations (SPEC R1.4–R1.7).
    pub fn register(
        self: &Arc<Self>,
        input: RegistrationInput,
        ip: IpAddr,
        now: Ms,
        done: impl FnOnce(Result<RegistrationOutput>) + Send + 'static,
    ) {
        let prepared = (|| {
            self.rate_limit("registration", ip, REGISTRATION_RATE_LIMIT, REGISTRATION_RATE_WINDOW, now)?;
            let contract_no = ContractNo::parse("contract_no", &input.contract_no)?;
            let user_id = UserId::parse("user_id", &input.user_id)?;
            input.password.check("password")?;
            let token_id = TokenId::parse(&input.token_id, &self.cfg().token_prefix)?;
            for (f, v) in [("otp1", &input.otp1), ("otp2", &input.otp2)] {
                if v.len() != 6 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::bad_field(f, "must be 6 digits"));
                }
            }
            let r = self.store.read_latest()?;
            let user = match r.contract(&contract_no)? {
                Some(_) => r.user(&contract_no, &user_id)?,
                None => None,
            };
            // The store's connection is given back before the Argon2 work.
            drop(r);
            // Registration checks the password of a locked account too: it
            // says `password_locked` only to the right one (API.md).
            let creds = match user.as_ref() {
                Some(u) if u.password_locked => match self.passwords.verify(Some(&u.password_hash), input.password.expose()) {
                    true => Credentials::Right,
                    false => Credentials::Wrong,
                },
                other => self.check_credentials(other, &input.password),
            };
            Ok((contract_no, user_id, creds, token_id))
        })();
        let (contract_no, user_id, creds, token_id) = match prepared {
            Ok(p) => p,
            Err(e) => return done(Err(e)),
        };
        let app = self.clone();
        let reg = Registering { contract_no, user_id, token_id, otp1: input.otp1, otp2: input.otp2, creds };
        self.submit(Durability::Durable, move |tx, events| app.register_job(tx, events, &reg, now), {
            let app = self.clone();
            move |r: Result<Result<RegistrationOutput>>| {
                let r = r.and_then(|inner| inner);
                let counter = if r.is_ok() { &app.metrics.registrations } else { &app.metrics.registration_failures };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                done(r)
            }
        });
    }

    /// The registration job. Failures that must be counted are written and
    /// returned as the inner error, so their counters commit.
    pub(super) fn register_job(
        &self,
        tx: &mut WriteTx,
        events: &mut Vec<Event>,
        reg: &Registering,
        now: Ms,
    ) -> Result<Result<RegistrationOutput>> {
        let (contract_no, user_id, token_id) = (reg.contract_no.as_str(), reg.user_id.as_str(), reg.token_id.as_str());
        let mut token = tx.token(token_id)?;
        let contract = tx.contract(contract_no)?;
        let user = tx.user(contract_no, user_id)?;
        let failed = |tx: &mut WriteTx, events: &mut Vec<Event>, token: Option<&mut Token>, e: Error| {
            self.registration_failed(tx, events, reg, token, e, now)
        };
        // A wrong or unknown contract, user or password never counts against
        // the token (a stranger naming someone's token must not revoke it),
        // and a locked account says so only to the right password (API.md).
        let (mut user, contract) = match (contract, user, reg.creds) {
            (Some(c), Some(u), Credentials::Right) if !u.password_locked => (u, c),
            (_, Some(u), Credentials::Right) if u.password_locked => return failed(tx, events, None, Error::PasswordLocked),
            (_, Some(mut u), Credentials::Wrong) => {
                self.count_wrong_password(tx, &mut u)?;
                return failed(tx, events, None, Error::BadCredentials);
            }
            _ => return failed(tx, events, None, Error::BadCredentials),
        };
        user.password_ok();
        match self.try_bind(&contract, &mut user, token.as_mut(), &reg.otp1, &reg.otp2, now) {
            Ok(()) => {
                let token = token.ok_or_else(|| Error::Internal("bound a missing token".into()))?;
                tx.put_token(&token)?;
                tx.put_user(&user)?;
                tx.audit(
                    NewEvent::new("registered", reg.actor())
                        .user(contract_no, user_id)
                        .detail(json!({"token_id": token_id, "otp_step": token.last_otp_step})),
                )?;
                Ok(Ok(RegistrationOutput {
                    registration: Registration::Active.as_str(),
                    token_id: token_id.to_string(),
                    registered_at: rfc3339(now),
                }))
            }
            Err(e) => {
                if matches!(e, Error::TokenOrOtpMismatch) {
                    user.registration_failures = user.registration_failures.saturating_add(1);
                    user.last_registration_failure = Some(now);
                }
                // Keeps the password-failure reset and the registration counters.
                tx.put_user(&user)?;
                failed(tx, events, token.as_mut(), e)
            }
        }
    }

    /// A failed registration: counted on the token only for a token or code
    /// failure after the credentials were right (never for a wrong or
    /// unknown contract, user or password), audited, and returned as the
    /// inner error so the job commits.
    pub(super) fn registration_failed(
        &self,
        tx: &mut WriteTx,
        events: &mut Vec<Event>,
        reg: &Registering,
        token: Option<&mut Token>,
        e: Error,
        now: Ms,
    ) -> Result<Result<RegistrationOutput>> {
        // Only failures after the credentials were right reach here with a token.
        if matches!(e, Error::TokenOrOtpMismatch) {
            self.count_token_failure(tx, events, token, now)?;
        }
        tx.audit(
            NewEvent::new("registration_failed", reg.actor())
                .user(&reg.contract_no, &reg.user_id)
                .detail(json!({"token_id": reg.token_id.as_str(), "code": e.code()})),
        )?;
        Ok(Err(e))
    }

    /// The rules after a right password: contract, stop, one phone per user,
    /// rate, token state and the two OTPs. Changes `user` and `token` only on success.
    pub(super) fn try_bind(
        &self,
        contract: &Contract,
        user: &mut User,
        token: Option<&mut Token>,
        otp1: &str,
        otp2: &str,
        now: Ms,
    ) -> Result<()> {
        user.check_can_register(contract)?;
        if user.registration_failures >= self.cfg().otp_max_failures {
            if let Some(last) = user.last_registration_failure {
                if now < last + REGISTRATION_LOCKOUT {
                    return Err(Error::RateLimited { retry_after_secs: (last + REGISTRATION_LOCKOUT - now).div_ceil(SECOND) });
                }
            }
        }
        let token = token.ok_or(Error::TokenOrOtpMismatch)?;
        if token.bound_to.is_some() && !token.is_revoked() {
            return Err(Error::TokenAlreadyBound);
        }
        if !token.open_for_registration(now) {
            return Err(Error::TokenOrOtpMismatch);
        }
        let secret = self.secrets.open(token.token_id.as_bytes(), &token.otp_secret_sealed)?;
        let step = totp::match_consecutive(&secret, otp1, otp2, totp::step_at(now / SECOND), self.cfg().otp_window, token.last_otp_step)
            .ok_or(Error::TokenOrOtpMismatch)?;
        token.last_otp_step = Some(step);
        token.bound_to = Some((user.contract_no.clone(), user.user_id.clone()));
        token.bound_at = Some(now);
        token.failures = 0;
        user.register(&token.token_id, now);
        Ok(())
    }

    pub(super) fn count_token_failure(&self, tx: &mut WriteTx, events: &mut Vec<Event>, token: Option<&mut Token>, now: Ms) -> Result<()> {
        let Some(t) = token else { return Ok(()) };
        if !t.open_for_registration(now) {
            return Ok(());
        }
        t.failures = t.failures.saturating_add(1);
        if t.failures >= self.cfg().otp_max_failures {
            return end_token(tx, events, t, Ending::Revoked, "too many failed registrations", "system", now);
        }
        tx.put_token(t)
    }
}
