//! Reads: an RP's view of a user, the operator's lists, the audit search
//! and the statistics.

use super::*;

/// Filters of `GET /api/v1/admin/audit`.
#[derive(Debug, Default)]
pub struct AuditQuery {
    pub after: u64,
    pub limit: usize,
    pub contract_no: Option<String>,
    pub user_id: Option<String>,
    pub kind: Option<String>,
}

pub const DAY: Ms = 86_400_000;

impl App {
    /// GET /api/v1/users/{contract_no}/{user_id}.
    pub fn user(&self, rp: &str, contract_no: &ContractNo, user_id: &UserId) -> Result<User> {
        let r = self.store.read()?;
        if !self.rp_sees_contract(&r, rp, contract_no)? {
            return Err(Error::NotFound("no such user".into()));
        }
        r.user(contract_no, user_id)?.ok_or_else(|| Error::NotFound("no such user".into()))
    }

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

    pub fn contract_detail(&self, contract_no: &ContractNo) -> Result<(Contract, Vec<User>)> {
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
    pub fn stats(&self, now: Ms) -> Result<Stats> {
        let r = self.store.read()?;
        let mut by_registration: BTreeMap<&'static str, u64> = Registration::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        let (mut password_locked, mut stopped, mut contracts, mut cancelled) = (0, 0, 0, 0);
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
                    *by_registration.entry(u.registration.as_str()).or_default() += 1;
                    password_locked += u64::from(u.password_locked);
                    stopped += u64::from(u.stopped);
                }
                cursor = c.contract_no;
            }
        }
        let since = now.saturating_sub(DAY);
        let mut challenges_last_24h: BTreeMap<&'static str, u64> = Status::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for id in r.challenge_ids_since(since)? {
            if let Some(c) = r.challenge(&id)? {
                *challenges_last_24h.entry(c.status.as_str()).or_default() += 1;
            }
        }
        let fraud_reports = r.fraud_reports_since(since)?;
        Ok(Stats {
            contracts,
            cancelled,
            by_registration,
            password_locked,
            stopped,
            challenges_last_24h,
            pending: r.pending_count()?,
            fraud_reports,
            push_suspended: r.system()?.push_suspended,
        })
    }
}

/// What `GET /api/v1/admin/stats` reports (`http::views::stats_view`).
pub struct Stats {
    pub contracts: u64,
    pub cancelled: u64,
    pub by_registration: BTreeMap<&'static str, u64>,
    pub password_locked: u64,
    pub stopped: u64,
    pub challenges_last_24h: BTreeMap<&'static str, u64>,
    pub pending: u64,
    /// The last 24 hours', oldest first.
    pub fraud_reports: Vec<crate::store::FraudReport>,
    pub push_suspended: bool,
}

impl App {
    /// `audit export --follow`: up to `limit` entries after `after`, one JSON line each.
    pub fn audit_lines_after(&self, after: u64, limit: usize) -> Result<String> {
        self.store.audit_lines_after(after, limit)
    }
}
