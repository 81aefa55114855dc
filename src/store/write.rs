//! Writes: every change the use cases make, as methods on the write
//! transaction that the single writer runs them in.

use super::*;

impl WriteTx {
    /// `audit_head` is the writer's memory of the chain's end (None: read it).
    pub(super) fn new(backend: WriteBackend, now: Ms, audit_head: Option<(u64, String)>) -> WriteTx {
        WriteTx { backend, dirty: false, now, audit_head, audit_appended: false, published: Vec::new(), changed: Vec::new() }
    }

    /// On PostgreSQL, a change to a record that nodes cache
    /// (`pg::RecordCache`): dropped here after the commit, and by the other
    /// nodes when they hear of it.
    fn changed(&mut self, table: &str, key: &str) {
        if let (WriteBackend::Pg(_), Some(table)) = (&self.backend, pg::cached(table)) {
            self.published.push(pg::Remote::Changed(table.to_string(), key.to_string()).message());
            self.changed.push((table, key.to_string()));
        }
    }

    pub(super) fn put_bytes(&mut self, table: redb::TableDefinition<&str, &[u8]>, key: &str, value: &[u8]) -> Result<()> {
        self.dirty = true;
        self.changed(table.name(), key);
        match &mut self.backend {
            WriteBackend::Redb(txn) => {
                txn.open_table(table)?.insert(key, value)?;
            }
            WriteBackend::Pg(pg) => {
                pg.execute(pg::record_sql(table.name())?.put, &[&key, &value])?;
            }
        }
        Ok(())
    }

    /// Deletes a record by key; true if it was there.
    fn delete_record(&mut self, table: redb::TableDefinition<&str, &[u8]>, key: &str) -> Result<bool> {
        self.dirty = true;
        self.changed(table.name(), key);
        Ok(match &mut self.backend {
            WriteBackend::Redb(txn) => txn.open_table(table)?.remove(key)?.is_some(),
            WriteBackend::Pg(pg) => pg.execute(pg::record_sql(table.name())?.delete, &[&key])? > 0,
        })
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
        let current = match &self.backend {
            WriteBackend::Redb(txn) => txn.open_table(RATE_LIMITS)?.get(key)?.map(|v| v.value()),
            WriteBackend::Pg(pg) => pg
                .query("SELECT window_start, attempts FROM rate_limits WHERE k = $1", &[&key])?
                .first()
                .map(|r| (pg::unbig(r.get(0)), u32::try_from(r.get::<_, i32>(1)).unwrap_or(0))),
        };
        let (start, count) = match current {
            Some((start, count)) if now < start.saturating_add(window) => (start, count),
            _ => (now, 0),
        };
        if count >= limit {
            return Ok(Err(start.saturating_add(window) - now));
        }
        self.dirty = true;
        let txn = match &mut self.backend {
            WriteBackend::Pg(pg) => {
                let attempts = i32::try_from(count + 1).unwrap_or(i32::MAX);
                pg.execute(
                    "INSERT INTO rate_limits (k, window_start, attempts) VALUES ($1, $2, $3) \
                     ON CONFLICT (k) DO UPDATE SET window_start = excluded.window_start, attempts = excluded.attempts",
                    &[&key, &pg::big(start), &attempts],
                )?;
                return Ok(Ok(()));
            }
            WriteBackend::Redb(txn) => txn,
        };
        if let Some((old, _)) = current.filter(|(old, _)| *old != start) {
            txn.open_table(RATE_LIMITS_BY_START)?.remove((old, key))?;
        }
        txn.open_table(RATE_LIMITS)?.insert(key, (start, count + 1))?;
        txn.open_table(RATE_LIMITS_BY_START)?.insert((start, key), ())?;
        Ok(Ok(()))
    }

    /// Forgets attempts whose window started before `before`, at most `limit`.
    pub fn purge_attempts(&mut self, before: Ms, limit: usize) -> Result<usize> {
        let txn = match &mut self.backend {
            WriteBackend::Pg(pg) => {
                let n = pg.execute(
                    "DELETE FROM rate_limits WHERE k IN \
                     (SELECT k FROM rate_limits WHERE window_start < $1 ORDER BY window_start, k LIMIT $2)",
                    &[&pg::big(before), &pg::limit(limit)],
                )?;
                if n > 0 {
                    self.dirty = true;
                }
                return Ok(usize::try_from(n).unwrap_or(usize::MAX));
            }
            WriteBackend::Redb(txn) => txn,
        };
        let old: Vec<(u64, String)> = {
            let t = txn.open_table(RATE_LIMITS_BY_START)?;
            let mut out = Vec::new();
            for item in t.range((0u64, "")..(before, ""))?.take(limit) {
                let (k, _) = item?;
                let (start, key) = k.value();
                out.push((start, key.to_string()));
            }
            out
        };
        for (start, key) in &old {
            txn.open_table(RATE_LIMITS_BY_START)?.remove((*start, key.as_str()))?;
            let mut t = txn.open_table(RATE_LIMITS)?;
            let same = t.get(key.as_str())?.is_some_and(|v| v.value().0 == *start);
            if same {
                t.remove(key.as_str())?;
            }
        }
        if !old.is_empty() {
            self.dirty = true;
        }
        Ok(old.len())
    }

    pub fn put_operator(&mut self, o: &Operator) -> Result<()> {
        self.put_bytes(OPERATORS, &o.name, &codec::encode(o)?)
    }

    pub fn delete_operator(&mut self, name: &str) -> Result<bool> {
        self.delete_record(OPERATORS, name)
    }

    pub fn put_notice(&mut self, n: &Notice) -> Result<()> {
        self.put_bytes(NOTICES, &n.id, &codec::encode(n)?)
    }

    pub fn delete_notice(&mut self, id: &str) -> Result<bool> {
        self.delete_record(NOTICES, id)
    }

    pub fn delete_user(&mut self, contract_no: &str, user_id: &str) -> Result<()> {
        self.delete_record(USERS, &user_key(contract_no, user_id))?;
        Ok(())
    }

    pub fn put_fraud_report(&mut self, f: &FraudReport) -> Result<()> {
        self.dirty = true;
        let rec = codec::encode(f)?;
        match &mut self.backend {
            WriteBackend::Redb(txn) => {
                txn.open_table(FRAUD_REPORTS)?.insert((f.reported_at, f.challenge_id.as_str()), rec.as_slice())?;
            }
            WriteBackend::Pg(pg) => {
                pg.execute(
                    "INSERT INTO fraud_reports (reported_at, challenge_id, rec) VALUES ($1, $2, $3) \
                     ON CONFLICT (reported_at, challenge_id) DO UPDATE SET rec = excluded.rec",
                    &[&pg::big(f.reported_at), &f.challenge_id, &rec],
                )?;
            }
        }
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
        let waiting = t.bound_to.is_none() && !t.is_revoked();
        self.dirty = true;
        self.changed(TOKENS.name(), &t.token_id);
        let txn = match &mut self.backend {
            WriteBackend::Pg(pg) => {
                pg.execute(
                    "INSERT INTO tokens (k, rec, public_key, provision_expires_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (k) DO UPDATE SET rec = excluded.rec, public_key = excluded.public_key, \
                     provision_expires_at = excluded.provision_expires_at",
                    &[&t.token_id, &bytes, &t.public_key, &waiting.then(|| pg::big(t.provision_expires_at))],
                )?;
                return Ok(());
            }
            WriteBackend::Redb(txn) => txn,
        };
        txn.open_table(TOKENS)?.insert(t.token_id.as_str(), bytes.as_slice())?;
        txn.open_table(TOKEN_KEYS)?.insert(t.public_key.as_str(), t.token_id.as_str())?;
        let mut idx = txn.open_table(PROVISION_EXPIRY)?;
        let key = (t.provision_expires_at, t.token_id.as_str());
        if waiting {
            idx.insert(key, ())?;
        } else {
            idx.remove(key)?;
        }
        Ok(())
    }

    /// Stores a challenge and keeps its two indexes in step with its status.
    pub fn put_challenge(&mut self, c: &Challenge) -> Result<()> {
        let bytes = codec::encode(c)?;
        self.dirty = true;
        let txn = match &mut self.backend {
            WriteBackend::Pg(pg) => {
                pg.execute(
                    "INSERT INTO challenges (k, rec, token_id, created_at, expires_at, pending) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (k) DO UPDATE SET rec = excluded.rec, token_id = excluded.token_id, \
                     created_at = excluded.created_at, expires_at = excluded.expires_at, pending = excluded.pending",
                    &[&c.id, &bytes, &c.token_id, &pg::big(c.created_at), &pg::big(c.expires_at), &c.is_pending()],
                )?;
                return Ok(());
            }
            WriteBackend::Redb(txn) => txn,
        };
        txn.open_table(CHALLENGES)?.insert(c.id.as_str(), bytes.as_slice())?;
        let mut exp = txn.open_table(CHALLENGE_EXPIRY)?;
        let exp_key = (c.expires_at, c.id.as_str());
        if c.is_pending() {
            exp.insert(exp_key, ())?;
        } else {
            exp.remove(exp_key)?;
        }
        drop(exp);
        let mut pend = txn.open_table(TOKEN_PENDING)?;
        let pend_key = (c.token_id.as_str(), c.created_at, c.id.as_str());
        if c.is_pending() {
            pend.insert(pend_key, ())?;
        } else {
            pend.remove(pend_key)?;
        }
        drop(pend);
        if c.is_pending() {
            txn.open_table(CHALLENGES_BY_TIME)?.insert((c.created_at, c.id.as_str()), ())?;
        }
        Ok(())
    }

    pub fn put_rp_key(&mut self, k: &RpKey) -> Result<()> {
        let bytes = codec::encode(k)?;
        self.dirty = true;
        self.changed(RP_KEYS.name(), &k.name);
        let txn = match &mut self.backend {
            WriteBackend::Pg(pg) => {
                pg.execute(
                    "INSERT INTO rp_keys (k, rec, live_hash) VALUES ($1, $2, $3) \
                     ON CONFLICT (k) DO UPDATE SET rec = excluded.rec, live_hash = excluded.live_hash",
                    &[&k.name, &bytes, &k.revoked_at.is_none().then_some(k.key_hash.as_str())],
                )?;
                return Ok(());
            }
            WriteBackend::Redb(txn) => txn,
        };
        txn.open_table(RP_KEYS)?.insert(k.name.as_str(), bytes.as_slice())?;
        let mut idx = txn.open_table(RP_KEY_HASHES)?;
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
        self.delete_record(CHALLENGES, &c.id)?;
        if let WriteBackend::Redb(txn) = &mut self.backend {
            txn.open_table(CHALLENGES_BY_TIME)?.remove((c.created_at, c.id.as_str()))?;
        }
        Ok(())
    }

    /// The ids in a (time, id) index up to `now`.
    pub(super) fn due(&self, index: redb::TableDefinition<(u64, &str), ()>, now: Ms, limit: usize) -> Result<Vec<String>> {
        let txn = match &self.backend {
            WriteBackend::Pg(pg) => {
                let rows = pg.query(pg::due_sql(index.name())?, &[&pg::big(now), &pg::limit(limit)])?;
                return Ok(rows.iter().map(|r| r.get(0)).collect());
            }
            WriteBackend::Redb(txn) => txn,
        };
        let t = txn.open_table(index)?;
        let mut out = Vec::new();
        for item in t.range((0u64, "")..=(now, "\u{10FFFF}"))?.take(limit) {
            out.push(item?.0.value().1.to_string());
        }
        Ok(out)
    }

    /// Whether a statement failed (PostgreSQL then aborts the transaction).
    pub(super) fn failed(&self) -> bool {
        matches!(&self.backend, WriteBackend::Pg(pg) if pg.failed())
    }

    /// Ends every shared session of an operator in this transaction (on
    /// PostgreSQL; the embedded store's sessions are in the node's memory).
    pub fn end_shared_sessions_of(&mut self, operator: &str) -> Result<()> {
        if let WriteBackend::Pg(pg) = &mut self.backend {
            self.dirty = true;
            pg.execute("DELETE FROM admin_sessions WHERE operator = $1", &[&operator])?;
        }
        Ok(())
    }

    /// Tells the other nodes sharing this store what this transaction
    /// changed: a NOTIFY, delivered when it commits and never if it rolls
    /// back. Nothing to do on the embedded store (one node).
    pub fn publish(&mut self, what: &pg::Remote) -> Result<()> {
        if matches!(self.backend, WriteBackend::Pg(_)) {
            // Sent in one statement just before the commit (`notify_all`).
            self.published.push(what.message());
        }
        Ok(())
    }

    /// The NOTIFYs of everything published in this transaction, one
    /// statement for all (delivered at the commit).
    pub(super) fn notify_all(&mut self) -> Result<()> {
        if let (WriteBackend::Pg(pg), false) = (&self.backend, self.published.is_empty()) {
            pg.execute("SELECT pg_notify('onepush', m) FROM unnest($1::text[]) AS m", &[&self.published])?;
        }
        Ok(())
    }

    /// Appends an event to the hash chain, in this transaction.
    pub fn audit(&mut self, ev: NewEvent) -> Result<AuditEvent> {
        self.dirty = true;
        let (seq, prev) = match self.audit_head.take() {
            Some(head) => head,
            None => {
                // On PostgreSQL under the batch's lock: no other node appends meanwhile.
                let last = self.audit_last()?;
                last.map_or((0, GENESIS.to_string()), |e| (e.seq, e.hash))
            }
        };
        let event = ev.seal(seq + 1, rfc3339(self.now), &prev);
        let rec = codec::encode(&event)?;
        match &mut self.backend {
            WriteBackend::Redb(txn) => {
                txn.open_table(AUDIT)?.insert(event.seq, rec.as_slice())?;
                if let Some(c) = &event.contract_no {
                    let u = event.user_id.as_deref().unwrap_or("");
                    txn.open_table(AUDIT_BY_SUBJECT)?.insert((c.as_str(), u, event.seq), ())?;
                }
            }
            WriteBackend::Pg(pg) => {
                pg.execute(
                    "INSERT INTO audit (seq, rec, contract_no, user_id, event_type) VALUES ($1, $2, $3, $4, $5)",
                    &[&pg::big(event.seq), &rec, &event.contract_no, &event.user_id.as_deref().unwrap_or(""), &event.kind],
                )?;
            }
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

    /// Has this commit sign the chain's end as it is now (read here, under
    /// the write lock), though it appends nothing: the head of an older
    /// store, signed once when its audit key is first made. Returns the seq
    /// signed (None: the log is empty).
    pub fn sign_head_at_commit(&mut self) -> Result<Option<u64>> {
        let Some(last) = self.audit_last()? else { return Ok(None) };
        self.audit_head = Some((last.seq, last.hash));
        self.audit_appended = true;
        Ok(Some(last.seq))
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

    /// `onepush migrate`: an audit entry copied as it is (its place in the
    /// chain, its hash), never sealed again.
    pub fn import_audit(&mut self, event: &AuditEvent, rec: &[u8]) -> Result<()> {
        self.dirty = true;
        match &mut self.backend {
            WriteBackend::Redb(txn) => {
                txn.open_table(AUDIT)?.insert(event.seq, rec)?;
                if let Some(c) = &event.contract_no {
                    txn.open_table(AUDIT_BY_SUBJECT)?.insert((c.as_str(), event.user_id.as_deref().unwrap_or(""), event.seq), ())?;
                }
            }
            WriteBackend::Pg(pg) => {
                pg.execute(
                    "INSERT INTO audit (seq, rec, contract_no, user_id, event_type) VALUES ($1, $2, $3, $4, $5)",
                    &[&pg::big(event.seq), &rec, &event.contract_no, &event.user_id.as_deref().unwrap_or(""), &event.kind],
                )?;
            }
        }
        Ok(())
    }

    /// `onepush migrate`: a brute-force window copied as it is.
    pub fn import_attempts(&mut self, key: &str, start: Ms, count: u32) -> Result<()> {
        self.dirty = true;
        match &mut self.backend {
            WriteBackend::Redb(txn) => {
                txn.open_table(RATE_LIMITS)?.insert(key, (start, count))?;
                txn.open_table(RATE_LIMITS_BY_START)?.insert((start, key), ())?;
            }
            WriteBackend::Pg(pg) => {
                let attempts = i32::try_from(count).unwrap_or(i32::MAX);
                pg.execute("INSERT INTO rate_limits (k, window_start, attempts) VALUES ($1, $2, $3)", &[&key, &pg::big(start), &attempts])?;
            }
        }
        Ok(())
    }

    /// Test hook for tamper and upgrade tests: removes a META record
    /// (`audit_signed_head`, `audit_signing_started`).
    pub fn remove_meta_for_test(&mut self, key: &str) -> Result<()> {
        self.delete_record(META, key)?;
        Ok(())
    }

    /// Test hook for tamper tests: removes a stored audit event.
    pub fn remove_audit_for_test(&mut self, seq: u64) -> Result<()> {
        self.dirty = true;
        match &mut self.backend {
            WriteBackend::Redb(txn) => {
                txn.open_table(AUDIT)?.remove(seq)?;
            }
            WriteBackend::Pg(pg) => {
                pg.execute("DELETE FROM audit WHERE seq = $1", &[&pg::big(seq)])?;
            }
        }
        Ok(())
    }

    /// Test hook for tamper tests: overwrites a stored audit event as is.
    pub fn overwrite_audit_for_test(&mut self, event: &AuditEvent) -> Result<()> {
        self.dirty = true;
        let rec = codec::encode(event)?;
        match &mut self.backend {
            WriteBackend::Redb(txn) => {
                txn.open_table(AUDIT)?.insert(event.seq, rec.as_slice())?;
            }
            WriteBackend::Pg(pg) => {
                pg.execute("UPDATE audit SET rec = $2 WHERE seq = $1", &[&pg::big(event.seq), &rec])?;
            }
        }
        Ok(())
    }
}
