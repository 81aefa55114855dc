//! Operators and the appliance's own keys: sessions, the one-time bootstrap
//! code, operator accounts, RP keys, and the signed audit head.
//!
//! Sessions and the code live in `sessions::Sessions` (this process's
//! memory, or the database several nodes share). Every change that must end
//! an operator's sessions (disable, remove, new password) ends them once
//! committed (on PostgreSQL in the same commit); without a server there are
//! none in memory.

use super::*;

impl App {
    /// Makes the one-time bootstrap code if no operator exists yet; `serve`
    /// shows it. It is kept hashed (in memory, or in the database that
    /// several nodes share: one code for all), is valid for `bootstrap_ttl`,
    /// and is gone once used or once any operator exists (API.md).
    pub fn bootstrap_code(&self, now: Ms) -> Result<Option<String>> {
        if self.store.read()?.operator_count()? > 0 {
            return Ok(None);
        }
        let raw = data_encoding::BASE32_NOPAD.encode(&{
            let mut b = [0u8; 10];
            rand::fill(&mut b[..]);
            b
        });
        let code = format!("{}-{}-{}-{}", &raw[..4], &raw[4..8], &raw[8..12], &raw[12..16]);
        if !self.sessions.offer_code(&sig::sha256_hex(code.as_bytes()), now, self.cfg().bootstrap_ttl)? {
            log::info!("no operator yet: the one-time code another node made is still valid (see that node's start)");
            return Ok(None);
        }
        Ok(Some(code))
    }

    /// POST /api/v1/admin/bootstrap: the first operator, with the one-time code.
    /// Returns a session for the new operator.
    pub fn bootstrap(&self, code: &str, username: &str, password: &Password, ip: IpAddr, now: Ms) -> Result<String> {
        use crate::store::pg::CodeTaken;
        self.rate_limit("signin", ip, SIGNIN_RATE_LIMIT, SIGNIN_RATE_WINDOW, now)?;
        let used = || Error::Conflict("an operator exists, or the one-time code was used; sign in instead".into());
        // Any operator, however made (the CLI too), ends the code.
        if self.store.read()?.operator_count()? > 0 {
            self.sessions.clear_code()?;
            return Err(used());
        }
        // Validate before spending the code.
        check_user_id("username", username)?;
        password.check("password")?;
        match self.sessions.take_code(&sig::sha256_hex(code.trim().to_uppercase().as_bytes()), now, self.cfg().bootstrap_ttl)? {
            CodeTaken::Taken => {}
            CodeTaken::Wrong => return Err(Error::Unauthorized("the one-time code is wrong".into())),
            CodeTaken::Expired => {
                return Err(Error::Conflict(
                    "the one-time code has expired; create an operator with: onepush operator add NAME --password-stdin".into(),
                ))
            }
            CodeTaken::Absent => return Err(used()),
        }
        self.set_operator("bootstrap", username, password, true, now)?;
        // Counted once above, with the code: the sign-in that follows is not another attempt.
        self.sign_in(username, password, now)
    }

    /// POST /api/v1/admin/session: returns the session cookie value.
    pub fn admin_login(&self, username: &str, password: &Password, ip: IpAddr, now: Ms) -> Result<String> {
        self.rate_limit("signin", ip, SIGNIN_RATE_LIMIT, SIGNIN_RATE_WINDOW, now)?;
        self.sign_in(username, password, now)
    }

    /// Checks an operator's password, audits the attempt, opens a session.
    /// A disabled operator is answered as a wrong password, after the same
    /// Argon2 work, so the answer tells nothing about the account.
    pub(super) fn sign_in(&self, username: &str, password: &Password, now: Ms) -> Result<String> {
        let wrong = || Error::Unauthorized("username or password is wrong".into());
        let op = if username.is_empty() || username.len() > 64 { None } else { self.store.read()?.operator(username)? };
        let verified = self.passwords.verify(op.as_ref().map(|o| o.password_hash.as_str()), password.expose());
        let disabled = op.as_ref().is_some_and(|o| !o.enabled());
        let ok = verified && !disabled;
        let actor = format!("operator:{}", if op.is_some() { username } else { "?" });
        // The audit log is never purged: a stranger's name is kept to 64 characters.
        let name: String = username.chars().take(64).collect();
        let mut detail = json!({"username": name, "ok": ok});
        if disabled {
            detail["disabled"] = json!(true);
        }
        let hash = op.map(|o| o.password_hash).unwrap_or_default();
        let (who, checked) = (username.to_string(), hash.clone());
        self.call(Durability::Durable, move |tx, _| {
            tx.audit(NewEvent::new("operator_login", actor.clone()).detail(detail.clone()))?;
            if let Some(mut o) = tx.operator(&who)?.filter(|o| ok && o.enabled() && o.password_hash == checked) {
                o.last_sign_in_at = Some(now);
                tx.put_operator(&o)?;
            }
            Ok(())
        })?;
        if !ok {
            return Err(wrong());
        }
        let token = ids::random_b64(32);
        let key = sig::sha256_hex(token.as_bytes());
        // Opened first, checked after: a disable, removal or new password
        // committed meanwhile (on any node) either shows in the check, or
        // ends this operator's sessions after it, this one among them.
        self.sessions.open(&key, username, now)?;
        if !self.store.read()?.operator(username)?.is_some_and(|o| o.enabled() && o.password_hash == hash) {
            self.sessions.end(&key)?;
            return Err(wrong());
        }
        Ok(token)
    }

    /// The operator behind a session cookie, or 401.
    pub fn admin_session(&self, token: &str, now: Ms) -> Result<String> {
        use crate::store::pg::SessionFound;
        match self.sessions.check(&sig::sha256_hex(token.as_bytes()), now)? {
            SessionFound::Valid(operator) => Ok(operator),
            SessionFound::Expired => Err(Error::Unauthorized("session expired; sign in again".into())),
            SessionFound::Unknown => Err(Error::Unauthorized("sign in first".into())),
        }
    }

    pub fn admin_logout(&self, token: &str) {
        if let Err(e) = self.sessions.end(&sig::sha256_hex(token.as_bytes())) {
            log::error!("signing out: {e}");
        }
    }

    /// Ends every session of operator `name` (their next request gets 401).
    fn end_sessions_of(&self, name: &str) {
        if let Err(e) = self.sessions.end_of(name) {
            log::error!("ending the sessions of operator {name}: {e}");
        }
    }

    /// `onepush operator add` / `passwd`. A new password ends every session
    /// of the operator (the CLI has none of its own to keep).
    pub fn set_operator(&self, actor: &str, name: &str, password: &Password, create: bool, now: Ms) -> Result<()> {
        check_user_id("name", name)?;
        password.check("password")?;
        let hash = self.passwords.hash(password.expose())?;
        let (name, actor) = (name.to_string(), actor.to_string());
        let named = name.clone();
        self.call(Durability::Durable, move |tx, _| {
            let op = match (tx.operator(&name)?, create) {
                (Some(_), true) => return Err(Error::Conflict(format!("operator {name} exists"))),
                (None, false) => return Err(Error::NotFound(format!("no operator {name}"))),
                (None, true) => {
                    Operator { name: name.clone(), password_hash: hash.clone(), created_at: now, disabled_at: None, last_sign_in_at: None }
                }
                (Some(old), false) => Operator { password_hash: hash.clone(), ..old },
            };
            tx.put_operator(&op)?;
            if !create {
                // Shared sessions end in the same commit as the change.
                tx.end_shared_sessions_of(&name)?;
            }
            let kind = if create { "operator_added" } else { "operator_password_changed" };
            tx.audit(NewEvent::new(kind, actor.clone()).detail(json!({"operator": name})))?;
            Ok(())
        })?;
        if create {
            // The first operator exists: the one-time code has done its job.
            self.sessions.clear_code()?;
            let _ = std::fs::remove_file(self.cfg().data_dir.join(BOOTSTRAP_CODE_FILE));
        } else {
            self.end_sessions_of(&named);
        }
        Ok(())
    }

    /// `onepush operator list`: every operator, by name.
    pub fn operators(&self) -> Result<Vec<Operator>> {
        self.store.read()?.operators()
    }

    /// `onepush operator disable NAME`: no sign-in until enabled; its
    /// sessions end at once.
    pub fn disable_operator(&self, actor: &str, name: &str, now: Ms) -> Result<()> {
        self.change_operator(actor, name, OperatorChange::Disable, now)
    }

    /// `onepush operator enable NAME`.
    pub fn enable_operator(&self, actor: &str, name: &str, now: Ms) -> Result<()> {
        self.change_operator(actor, name, OperatorChange::Enable, now)
    }

    /// `onepush operator remove NAME`: the record goes, its sessions end;
    /// the audit log keeps its name.
    pub fn remove_operator(&self, actor: &str, name: &str, now: Ms) -> Result<()> {
        self.change_operator(actor, name, OperatorChange::Remove, now)
    }

    fn change_operator(&self, actor: &str, name: &str, change: OperatorChange, now: Ms) -> Result<()> {
        let (name, actor) = (name.to_string(), actor.to_string());
        let named = name.clone();
        self.call(Durability::Durable, move |tx, _| {
            // Every operator in the job's transaction: the single writer
            // serialises two changes, so the last enabled one cannot be lost
            // to a race.
            match changed_operator(&tx.operators()?, &name, change, now)? {
                Some(op) => tx.put_operator(&op)?,
                None => {
                    tx.delete_operator(&name)?;
                }
            }
            if change != OperatorChange::Enable {
                // Shared sessions end in the same commit as the change.
                tx.end_shared_sessions_of(&name)?;
            }
            tx.audit(NewEvent::new(change.audit_type(), actor.clone()).detail(json!({"operator": name})))?;
            Ok(())
        })?;
        if change != OperatorChange::Enable {
            self.end_sessions_of(&named);
        }
        Ok(())
    }

    /// `onepush rp-key add NAME`: returns the key, which is stored only hashed.
    pub fn add_rp_key(&self, actor: &str, name: &str, editions: &[String], now: Ms) -> Result<String> {
        check_user_id("name", name)?;
        if name == crate::http::DEMO_RP {
            return Err(Error::bad_field("name", "\"demo\" is the demo bank's own RP name"));
        }
        for e in editions {
            self.edition(e).map_err(|_| Error::bad_field("--edition", format!("{e:?} is not an edition of the config")))?;
        }
        let editions = editions.to_vec();
        let key = format!("opk_{}", ids::random_b64(32));
        let hash = sig::sha256_hex(key.as_bytes());
        let (name, actor) = (name.to_string(), actor.to_string());
        self.call(Durability::Durable, move |tx, _| {
            if tx.rp_key(&name)?.is_some_and(|k| k.revoked_at.is_none()) {
                return Err(Error::Conflict(format!("RP key {name} exists; revoke it first")));
            }
            tx.put_rp_key(&RpKey {
                name: name.clone(),
                key_hash: hash.clone(),
                created_at: now,
                revoked_at: None,
                editions: editions.clone(),
            })?;
            tx.audit(NewEvent::new("rp_key_added", actor.clone()).detail(json!({"name": name, "editions": editions})))?;
            Ok(())
        })?;
        Ok(key)
    }

    pub fn revoke_rp_key(&self, actor: &str, name: &str, now: Ms) -> Result<()> {
        let (name, actor) = (name.to_string(), actor.to_string());
        self.call(Durability::Durable, move |tx, _| {
            let mut k =
                tx.rp_key(&name)?.filter(|k| k.revoked_at.is_none()).ok_or_else(|| Error::NotFound(format!("no live RP key {name}")))?;
            k.revoked_at = Some(now);
            tx.put_rp_key(&k)?;
            tx.audit(NewEvent::new("rp_key_revoked", actor.clone()).detail(json!({"name": name})))?;
            // The other nodes drop their cached look-ups at this commit.
            tx.publish(&crate::store::pg::Remote::RpKeys)?;
            Ok(())
        })?;
        self.forget_rp_keys();
        Ok(())
    }

    /// Drops the cached RP key look-ups (a key was revoked here or on
    /// another node); a look-up that raced this is not cached.
    pub(crate) fn forget_rp_keys(&self) {
        let mut cache = crate::sync::lock(&self.rp_cache);
        cache.0 += 1;
        cache.1.clear();
    }

    /// `onepush audit verify`: the number of events, or where the chain breaks.
    pub fn verify_audit(&self) -> Result<std::result::Result<u64, crate::audit::Broken>> {
        let key = self.store.audit_key().ok_or_else(|| Error::Internal("the store has no audit key".into()))?.public();
        self.store.verify_audit(Some(&key))
    }

    /// Compares the signed audit head with the chain's end before anything
    /// is appended: the next append would sign over a cut or rewritten log,
    /// so what is found is logged and kept in the store, and `audit verify`
    /// goes on reporting it. A store from before signed heads gets its first
    /// one when its audit key is made.
    pub(super) fn check_audit_head(&self, key: &ed25519_dalek::VerifyingKey, now: Ms) -> Result<()> {
        let r = self.store.read()?;
        let last = r.audit_last()?;
        let head = r.audit_signed_head()?;
        let started = r.audit_signing_started()?;
        let at = rfc3339(now);
        let found = match (&head, &last) {
            (None, None) if started => return Ok(()),
            (None, None) => Ok(0),
            (None, Some(_)) if !started => {
                // A store from before signed heads: its head is signed once,
                // with the mark that signing has begun, in one transaction.
                if self.store.audit_key().is_none() {
                    return Ok(());
                }
                drop(r);
                let signed = self.writer.call(Durability::Durable, move |tx| {
                    // Looked at again under the write lock: on a shared store
                    // another node may have begun signing (or appended) since.
                    if tx.audit_signing_started()? {
                        return Ok(None);
                    }
                    let seq = tx.sign_head_at_commit()?;
                    tx.put_audit_signing_started(&at)?;
                    Ok(seq)
                })?;
                if let Some(seq) = signed {
                    log::info!("audit log: its head (entry {seq}) is now signed with the audit key");
                }
                return Ok(());
            }
            (head, last) => {
                let at_head = match head {
                    Some(h) => r.audit_at(h.seq)?.map(|e| e.hash),
                    None => None,
                };
                crate::audit::check_head(last.as_ref().map_or(0, |e| e.seq), at_head.as_deref(), head.as_ref(), key)
            }
        };
        drop(r);
        let record = found.err().map(|b| {
            log::error!("audit log broken at entry {}: {}; kept for `onepush audit verify`", b.seq, b.why);
            crate::audit::HeadBreak { found_at: at.clone(), seq: b.seq, why: b.why }
        });
        if record.is_some() || !started {
            self.writer.call(Durability::Durable, move |tx| {
                if let Some(b) = &record {
                    tx.put_audit_head_break(b)?;
                }
                if !started {
                    tx.put_audit_signing_started(&at)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Logs the signed audit head, so the journal holds anchors that someone
    /// with write access to the store cannot rewrite (the sweeper calls this
    /// every 10 minutes).
    pub fn log_audit_head(&self) {
        let public = self.store.audit_key().map(|k| k.public_b64()).unwrap_or_default();
        match self.store.read().and_then(|r| r.audit_signed_head()) {
            Ok(Some(h)) => log::info!(
                "audit head: entry {} hash {} signed {} signature {} (audit public key {public})",
                h.seq,
                h.hash,
                h.signed_at,
                h.signature
            ),
            Ok(None) => log::info!("audit head: the log is empty (audit public key {public})"),
            Err(e) => log::error!("audit head: {e}"),
        }
    }

    /// `onepush rp-key list`: every key, live or revoked.
    pub fn rp_keys(&self) -> Result<Vec<RpKey>> {
        self.store.read()?.rp_keys()
    }

    /// How many operators and live RP keys exist (the start-up hints).
    pub fn operator_and_live_key_counts(&self) -> Result<(u64, usize)> {
        let r = self.store.read()?;
        Ok((r.operator_count()?, r.rp_keys()?.iter().filter(|k| k.revoked_at.is_none()).count()))
    }

    /// `onepush backup DEST`: a consistent copy of the store, while serving.
    pub fn backup_to(&self, dest: &std::path::Path) -> Result<u64> {
        self.store.backup_to(dest)
    }

    /// `onepush audit export`: every entry as a JSON line, oldest first, then
    /// the head signed in the same snapshot, so that the export can be
    /// checked elsewhere with only the public key.
    pub fn audit_export(&self) -> Result<String> {
        self.store.audit_export()
    }

    /// The watchdog's check: a read and an empty write job both answer.
    pub fn healthy(&self) -> bool {
        self.store.read().is_ok() && self.writer.call(Durability::Lazy, |_| Ok(())).is_ok()
    }

    /// Returns once everything queued before it is committed (shutdown).
    pub fn flush(&self) -> Result<()> {
        self.writer.call(Durability::Durable, |_| Ok(()))
    }

    /// `/healthz`: the store answers a read.
    pub fn store_answers(&self) -> Result<()> {
        self.store.read()?.system().map(|_| ())
    }

    /// `/metrics` in Prometheus text.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(self.store.stats().file_bytes, &self.writer.stats)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OperatorChange {
    Disable,
    Enable,
    Remove,
}

impl OperatorChange {
    fn audit_type(self) -> &'static str {
        match self {
            OperatorChange::Disable => "operator_disabled",
            OperatorChange::Enable => "operator_enabled",
            OperatorChange::Remove => "operator_removed",
        }
    }
}

/// What `change` makes of operator `name`, among `all`, at `now`: its new
/// record, or `None` when it is removed. The rule: at least one operator
/// stays enabled, so that someone can always sign in and administer (the
/// one-time bootstrap code never comes back once an operator exists).
fn changed_operator(all: &[Operator], name: &str, change: OperatorChange, now: Ms) -> Result<Option<Operator>> {
    let op = all.iter().find(|o| o.name == name).ok_or_else(|| Error::NotFound(format!("no operator {name}")))?;
    let last_enabled = op.enabled() && !all.iter().any(|o| o.name != name && o.enabled());
    match change {
        OperatorChange::Disable | OperatorChange::Remove if last_enabled => Err(Error::Conflict(format!(
            "refused: {name} is the last enabled operator, and at least one operator must stay enabled; add or enable another first"
        ))),
        OperatorChange::Disable if !op.enabled() => Err(Error::Conflict(format!("operator {name} is already disabled"))),
        OperatorChange::Enable if op.enabled() => Err(Error::Conflict(format!("operator {name} is already enabled"))),
        OperatorChange::Disable => Ok(Some(Operator { disabled_at: Some(now), ..op.clone() })),
        OperatorChange::Enable => Ok(Some(Operator { disabled_at: None, ..op.clone() })),
        OperatorChange::Remove => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Ms = 1_800_000_000_000;

    fn op(name: &str, disabled_at: Option<Ms>) -> Operator {
        Operator { name: name.into(), password_hash: format!("hash of {name}"), created_at: NOW - 1000, disabled_at, last_sign_in_at: None }
    }

    #[test]
    fn disabling_and_enabling_keep_the_record_and_stamp_the_time() {
        let all = [op("alice", None), op("bob", None)];
        let bob = changed_operator(&all, "bob", OperatorChange::Disable, NOW).unwrap().unwrap();
        assert_eq!(bob, Operator { disabled_at: Some(NOW), ..all[1].clone() });
        assert!(!bob.enabled());
        let all = [all[0].clone(), bob];
        let bob = changed_operator(&all, "bob", OperatorChange::Enable, NOW + 5).unwrap().unwrap();
        assert_eq!(bob, op("bob", None));
        assert_eq!(changed_operator(&all, "bob", OperatorChange::Remove, NOW).unwrap(), None, "a disabled operator may go");
    }

    #[test]
    fn the_last_enabled_operator_can_be_neither_disabled_nor_removed() {
        let all = [op("alice", None), op("bob", Some(NOW - 10))];
        for change in [OperatorChange::Disable, OperatorChange::Remove] {
            let e = changed_operator(&all, "alice", change, NOW).unwrap_err();
            assert!(matches!(e, Error::Conflict(_)), "{change:?}: {e:?}");
            assert!(e.to_string().contains("at least one operator must stay enabled"), "{e}");
        }
        let all = [op("alice", None)];
        assert!(changed_operator(&all, "alice", OperatorChange::Remove, NOW).is_err(), "the only operator stays");
    }

    #[test]
    fn unknown_operators_and_changes_that_change_nothing_are_refused() {
        let all = [op("alice", None), op("bob", Some(NOW - 10))];
        assert!(matches!(changed_operator(&all, "carol", OperatorChange::Enable, NOW), Err(Error::NotFound(_))));
        assert!(matches!(changed_operator(&all, "alice", OperatorChange::Enable, NOW), Err(Error::Conflict(_))));
        assert!(matches!(changed_operator(&all, "bob", OperatorChange::Disable, NOW), Err(Error::Conflict(_))));
    }
}
