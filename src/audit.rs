//! The audit log's record and its hash chain (SPEC R5.2).
//!
//! Each event holds the SHA-256 of the previous one; `hash` covers every
//! other field. The store appends events in the same transaction as the
//! change they describe; `verify` walks the chain.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::sig::sha256_hex;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: u64,
    pub at: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `operator:NAME`, `rp:NAME`, `rp:NAME/user:ID`, `device:TOKEN`, `user:CONTRACT/ID`, `cli`, `system`.
    pub actor: String,
    pub contract_no: Option<String>,
    pub user_id: Option<String>,
    pub detail: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// An event before it gets its place in the chain.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: &'static str,
    pub actor: String,
    pub contract_no: Option<String>,
    pub user_id: Option<String>,
    pub detail: Value,
}

impl NewEvent {
    pub fn new(kind: &'static str, actor: impl Into<String>) -> NewEvent {
        NewEvent { kind, actor: actor.into(), contract_no: None, user_id: None, detail: Value::Null }
    }
    pub fn user(mut self, contract_no: &str, user_id: &str) -> NewEvent {
        self.contract_no = Some(contract_no.to_string());
        self.user_id = Some(user_id.to_string());
        self
    }
    pub fn contract(mut self, contract_no: &str) -> NewEvent {
        self.contract_no = Some(contract_no.to_string());
        self
    }
    pub fn detail(mut self, detail: Value) -> NewEvent {
        self.detail = detail;
        self
    }

    pub fn seal(self, seq: u64, at: String, prev_hash: &str) -> AuditEvent {
        let mut e = AuditEvent {
            seq,
            at,
            kind: self.kind.to_string(),
            actor: self.actor,
            contract_no: self.contract_no,
            user_id: self.user_id,
            detail: self.detail,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        e
    }
}

impl AuditEvent {
    /// SHA-256 over the canonical JSON of every field but `hash` (object keys
    /// in `detail` are sorted by serde_json's map).
    pub fn compute_hash(&self) -> String {
        let canonical = serde_json::json!([
            self.seq,
            self.at,
            self.kind,
            self.actor,
            self.contract_no,
            self.user_id,
            self.detail,
            self.prev_hash
        ]);
        sha256_hex(canonical.to_string().as_bytes())
    }
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub seq: u64,
    pub why: String,
}

/// Checks that the events are 1, 2, 3, … with each hash right and each
/// `prev_hash` the hash before. Returns the number of events checked.
pub fn verify<I: IntoIterator<Item = Result<AuditEvent, Broken>>>(events: I) -> Result<u64, Broken> {
    let mut prev = GENESIS.to_string();
    let mut expected = 1u64;
    for item in events {
        let e = item?;
        if e.seq != expected {
            return Err(Broken { seq: e.seq, why: format!("expected sequence number {expected}") });
        }
        if e.prev_hash != prev {
            return Err(Broken { seq: e.seq, why: "prev_hash does not match the previous entry".into() });
        }
        if e.compute_hash() != e.hash {
            return Err(Broken { seq: e.seq, why: "hash does not match the entry's content".into() });
        }
        prev = e.hash;
        expected += 1;
    }
    Ok(expected - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let e = NewEvent::new("login", "rp:bank")
                    .user("1", "taro")
                    .detail(serde_json::json!({"result": "allow", "n": seq}))
                    .seal(seq, "2026-11-25T04:31:42Z".into(), &prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(chain(5).into_iter().map(Ok)), Ok(5));
        assert_eq!(verify(Vec::new()), Ok(0));
    }

    #[test]
    fn an_edit_is_found_and_named() {
        let mut c = chain(5);
        c[2].detail = serde_json::json!({"result": "deny"});
        assert_eq!(verify(c.into_iter().map(Ok)).unwrap_err().seq, 3);
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(c.into_iter().map(Ok)).unwrap_err().seq, 3);
        // Rehashing an edited entry still breaks the link to the next one.
        let mut c = chain(5);
        c[1].actor = "operator:mallory".into();
        c[1].hash = c[1].compute_hash();
        assert_eq!(verify(c.into_iter().map(Ok)).unwrap_err().seq, 3);
    }
}
