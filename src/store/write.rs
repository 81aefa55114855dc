//! Writes: every change the use cases make, as methods on the write
//! transaction that the single writer runs them in.

use super::*;

impl WriteTx {
    /// `audit_head` is the writer's memory of the chain's end (None: read it).
    pub(super) fn new(txn: WriteTransaction, now: Ms, audit_head: Option<(u64, String)>) -> WriteTx {
        WriteTx { txn, dirty: false, now, audit_head, audit_appended: false }
    }

    pub(super) fn put_bytes(&mut self, table: redb::TableDefinition<&str, &[u8]>, key: &str, value: &[u8]) -> Result<()> {
        self.dirty = true;
        self.txn.open_table(table)?.insert(key, value)?;
        Ok(())
    }

    pub fn put_contract(&mut self, c: &Contract) -> Result<()> {
        self.put_bytes(CONTRACTS, &c.contract_no, &codec::encode(c)?)
    }

    pub fn put_user(&mut self, u: &User) -> Result<()> {
        self.put_bytes(USERS, &user_key(&u.contract_no, &u.user_id), &codec::encode(u)?)
    }

    /// Counts one attempt under `key` in a window of `window` ms: `Ok(true)`
    /// if it is within `limit` (and counted), `Err(retry_after_ms)` if not
    /// (nothing written).
    pub fn count_attempt(&mut self, key: &str, limit: u32, window: Ms, now: Ms) -> Result<std::result::Result<(), Ms>> {
        let current = self.txn.open_table(RATE_LIMITS)?.get(key)?.map(|v| v.value());
        let (start, count) = match current {
            Some((start, count)) if now < start.saturating_add(window) => (start, count),
            _ => (now, 0),
        };
        if count >= limit {
            return Ok(Err(start.saturating_add(window) - now));
        }
        self.dirty = true;
        if let Some((old, _)) = current.filter(|(old, _)| *old != start) {
            self.txn.open_table(RATE_LIMITS_BY_START)?.remove((old, key))?;
        }
        self.txn.open_table(RATE_LIMITS)?.insert(key, (start, count + 1))?;
        self.txn.open_table(RATE_LIMITS_BY_START)?.insert((start, key), ())?;
        Ok(Ok(()))
    }

    /// Forgets attempts whose window started before `before`, at most `limit`.
    pub fn purge_attempts(&mut self, before: Ms, limit: usize) -> Result<usize> {
        let old: Vec<(u64, String)> = {
            let t = self.txn.open_table(RATE_LIMITS_BY_START)?;
            let mut out = Vec::new();
            for item in t.range((0u64, "")..(before, ""))?.take(limit) {
                let (k, _) = item?;
                let (start, key) = k.value();
                out.push((start, key.to_string()));
            }
            out
        };
        if !old.is_empty() {
            self.dirty = true;
        }
        for (start, key) in &old {
            self.txn.open_table(RATE_LIMITS_BY_START)?.remove((*start, key.as_str()))?;
            let mut t = self.txn.open_table(RATE_LIMITS)?;
            let same = t.get(key.as_str())?.is_some_and(|v| v.value().0 == *start);
            if same {
                t.remove(key.as_str())?;
            }
        }
        Ok(old.len())
    }

    pub fn put_operator(&mut self, o: &Operator) -> Result<()> {
        self.put_bytes(OPERATORS, &o.name, &codec::encode(o)?)
    }

    pub fn delete_operator(&mut self, name: &str) -> Result<bool> {
        self.dirty = true;
        Ok(self.txn.open_table(OPERATORS)?.remove(name)?.is_some())
    }

    pub fn put_notice(&mut self, n: &Notice) -> Result<()> {
        self.put_bytes(NOTICES, &n.id, &codec::encode(n)?)
    }

    pub fn delete_notice(&mut self, id: &str) -> Result<bool> {
        self.dirty = true;
        Ok(self.txn.open_table(NOTICES)?.remove(id)?.is_some())
    }

    pub fn delete_user(&mut self, contract_no: &str, user_id: &str) -> Result<()> {
        self.dirty = true;
        self.txn.open_table(USERS)?.remove(user_key(contract_no, user_id).as_str())?;
        Ok(())
    }

    pub fn put_fraud_report(&mut self, f: &FraudReport) -> Result<()> {
        self.dirty = true;
        self.txn.open_table(FRAUD_REPORTS)?.insert((f.reported_at, f.challenge_id.as_str()), codec::encode(f)?.as_slice())?;
        Ok(())
    }

    pub fn put_demo_contracts(&mut self, list: &Vec<String>) -> Result<()> {
        self.put_bytes(META, "demo_contracts", &codec::encode(list)?)
    }
    pub fn put_system(&mut self, s: &SystemState) -> Result<()> {
        self.put_bytes(META, "system", &codec::encode(s)?)
    }

    /// Stores a token and keeps the provisioning-expiry index in step.
    pub fn put_token(&mut self, t: &Token) -> Result<()> {
        let bytes = codec::encode(t)?;
        self.put_bytes(TOKENS, &t.token_id, &bytes)?;
        self.txn.open_table(TOKEN_KEYS)?.insert(t.public_key.as_str(), t.token_id.as_str())?;
        let mut idx = self.txn.open_table(PROVISION_EXPIRY)?;
        let key = (t.provision_expires_at, t.token_id.as_str());
        if t.bound_to.is_none() && !t.is_revoked() {
            idx.insert(key, ())?;
        } else {
            idx.remove(key)?;
        }
        Ok(())
    }

    /// Stores a challenge and keeps its two indexes in step with its status.
    pub fn put_challenge(&mut self, c: &Challenge) -> Result<()> {
        let bytes = codec::encode(c)?;
        self.put_bytes(CHALLENGES, &c.id, &bytes)?;
        let mut exp = self.txn.open_table(CHALLENGE_EXPIRY)?;
        let exp_key = (c.expires_at, c.id.as_str());
        if c.is_pending() {
            exp.insert(exp_key, ())?;
        } else {
            exp.remove(exp_key)?;
        }
        drop(exp);
        let mut pend = self.txn.open_table(TOKEN_PENDING)?;
        let pend_key = (c.token_id.as_str(), c.created_at, c.id.as_str());
        if c.is_pending() {
            pend.insert(pend_key, ())?;
        } else {
            pend.remove(pend_key)?;
        }
        drop(pend);
        if c.is_pending() {
            self.txn.open_table(CHALLENGES_BY_TIME)?.insert((c.created_at, c.id.as_str()), ())?;
        }
        Ok(())
    }

    pub fn put_rp_key(&mut self, k: &RpKey) -> Result<()> {
        self.put_bytes(RP_KEYS, &k.name, &codec::encode(k)?)?;
        let mut idx = self.txn.open_table(RP_KEY_HASHES)?;
        if k.revoked_at.is_none() {
            idx.insert(k.key_hash.as_str(), k.name.as_str())?;
        } else {
            idx.remove(k.key_hash.as_str())?;
        }
        Ok(())
    }

    /// Ids of pending challenges whose `expires_at` is at or before `now`.
    pub fn due_challenges(&self, now: Ms, limit: usize) -> Result<Vec<String>> {
        self.due(CHALLENGE_EXPIRY, now, limit)
    }

    /// Ids of unbound tokens whose provisioning TTL has run out.
    pub fn due_tokens(&self, now: Ms, limit: usize) -> Result<Vec<String>> {
        self.due(PROVISION_EXPIRY, now, limit)
    }

    /// Ids of challenges created at or before `before` (oldest first).
    pub fn challenges_created_before(&self, before: Ms, limit: usize) -> Result<Vec<String>> {
        self.due(CHALLENGES_BY_TIME, before, limit)
    }

    /// Deletes a closed challenge and its time-index entry.
    pub fn delete_challenge(&mut self, c: &Challenge) -> Result<()> {
        self.dirty = true;
        self.txn.open_table(CHALLENGES)?.remove(c.id.as_str())?;
        self.txn.open_table(CHALLENGES_BY_TIME)?.remove((c.created_at, c.id.as_str()))?;
        Ok(())
    }

    /// The ids in a (time, id) index up to `now`.
    pub(super) fn due(&self, index: redb::TableDefinition<(u64, &str), ()>, now: Ms, limit: usize) -> Result<Vec<String>> {
        let t = self.txn.open_table(index)?;
        let mut out = Vec::new();
        for item in t.range((0u64, "")..=(now, "\u{10FFFF}"))?.take(limit) {
            out.push(item?.0.value().1.to_string());
        }
        Ok(out)
    }

    /// Appends an event to the hash chain, in this transaction.
    pub fn audit(&mut self, ev: NewEvent) -> Result<AuditEvent> {
        self.dirty = true;
        let (seq, prev) = match self.audit_head.take() {
            Some(head) => head,
            None => {
                let t = self.txn.open_table(AUDIT)?;
                let last = t.last()?.map(|(_, v)| codec::decode::<AuditEvent>(v.value())).transpose()?;
                last.map_or((0, GENESIS.to_string()), |e| (e.seq, e.hash))
            }
        };
        let event = ev.seal(seq + 1, rfc3339(self.now), &prev);
        self.txn.open_table(AUDIT)?.insert(event.seq, codec::encode(&event)?.as_slice())?;
        if let Some(c) = &event.contract_no {
            let u = event.user_id.as_deref().unwrap_or("");
            self.txn.open_table(AUDIT_BY_SUBJECT)?.insert((c.as_str(), u, event.seq), ())?;
        }
        self.audit_head = Some((event.seq, event.hash.clone()));
        self.audit_appended = true;
        Ok(event)
    }

    /// Signs the head of the log this transaction appended to (the writer
    /// calls this before each commit).
    pub(super) fn sign_audit_head(&mut self, key: &AuditKey) -> Result<()> {
        if let (true, Some((seq, hash))) = (self.audit_appended, &self.audit_head) {
            let head = key.sign(*seq, hash, rfc3339(self.now));
            self.put_bytes(META, "audit_signed_head", &codec::encode(&head)?)?;
        }
        Ok(())
    }

    /// Stores a signed head made outside a commit that appends: the head of
    /// an older store signed once, when its audit key is first made.
    pub fn put_audit_signed_head(&mut self, head: &SignedHead) -> Result<()> {
        self.put_bytes(META, "audit_signed_head", &codec::encode(head)?)
    }

    /// Marks the store as signed from now on (see `Reader::audit_signing_started`).
    pub fn put_audit_signing_started(&mut self, at: &str) -> Result<()> {
        self.put_bytes(META, "audit_signing_started", &codec::encode(&at.to_string())?)
    }

    /// Keeps the first break found; later ones add nothing to the alarm.
    pub fn put_audit_head_break(&mut self, b: &HeadBreak) -> Result<()> {
        if self.audit_head_break()?.is_none() {
            self.put_bytes(META, "audit_head_break", &codec::encode(b)?)?;
        }
        Ok(())
    }

    /// Test hook for tamper and upgrade tests: removes a META record
    /// (`audit_signed_head`, `audit_signing_started`).
    pub fn remove_meta_for_test(&mut self, key: &str) -> Result<()> {
        self.dirty = true;
        self.txn.open_table(META)?.remove(key)?;
        Ok(())
    }

    /// Test hook for tamper tests: removes a stored audit event.
    pub fn remove_audit_for_test(&mut self, seq: u64) -> Result<()> {
        self.dirty = true;
        self.txn.open_table(AUDIT)?.remove(seq)?;
        Ok(())
    }

    /// Test hook for tamper tests: overwrites a stored audit event as is.
    pub fn overwrite_audit_for_test(&mut self, event: &AuditEvent) -> Result<()> {
        self.dirty = true;
        self.txn.open_table(AUDIT)?.insert(event.seq, codec::encode(event)?.as_slice())?;
        Ok(())
    }
}
