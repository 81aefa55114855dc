//! The audit log's record and its hash chain (SPEC R5.2).
//!
//! Each event holds the SHA-256 of the previous one; `hash` covers every
//! other field. The store appends events in the same transaction as the
//! change they describe; `verify` walks the chain.
//!
//! A chain alone proves nothing to someone who can write the store file: they
//! can cut its end off, or edit an entry and recompute every hash after it.
//! So the head (the newest entry's sequence number and hash) is signed with
//! an Ed25519 key kept outside the store (`audit_key_file`), in the same
//! transaction as every commit that appends, and logged periodically.
//! `verify_signed` then finds a cut (the signed head is past the end), a
//! recomputed chain (the entry at the signed head has another hash) and
//! unsigned appends (entries after the signed head).

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::sig::{b64, sha256_hex, unb64};

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
        let canonical =
            serde_json::json!([self.seq, self.at, self.kind, self.actor, self.contract_no, self.user_id, self.detail, self.prev_hash]);
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

/// The key that signs the audit head, read from (or made at first start in)
/// `audit_key_file`: 32 random bytes, the Ed25519 seed.
pub struct AuditKey {
    key: SigningKey,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey(public {})", self.public_b64())
    }
}

impl AuditKey {
    /// Reads the key file or creates it (0600); true when it was created now.
    pub fn load_or_create(path: &Path) -> std::result::Result<(AuditKey, bool), String> {
        let (seed, created) = crate::secrets::load_or_create_key(path, "audit signing key")?;
        let seed: [u8; 32] = seed[..].try_into().map_err(|_| format!("{}: a key file holds exactly 32 bytes", path.display()))?;
        Ok((AuditKey { key: SigningKey::from_bytes(&seed) }, created))
    }

    /// Reads an existing key file (for `audit public-key`).
    pub fn load(path: &Path) -> std::result::Result<AuditKey, String> {
        if !path.exists() {
            return Err(format!("{}: no audit key (it is made when onepush first starts)", path.display()));
        }
        Ok(AuditKey::load_or_create(path)?.0)
    }

    #[cfg(test)]
    pub fn from_seed(seed: [u8; 32]) -> AuditKey {
        AuditKey { key: SigningKey::from_bytes(&seed) }
    }

    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as base64url, as `onepush audit public-key` prints it.
    pub fn public_b64(&self) -> String {
        b64(self.public().as_bytes())
    }

    pub fn sign(&self, seq: u64, hash: &str, signed_at: String) -> SignedHead {
        let signature = b64(&self.key.sign(&SignedHead::message(seq, hash, &signed_at)).to_bytes());
        SignedHead { seq, hash: hash.to_string(), signed_at, signature }
    }
}

/// Parses a public key as `onepush audit public-key` prints it.
pub fn parse_public_key(s: &str) -> std::result::Result<VerifyingKey, String> {
    crate::domain::sig::parse_public_key("public key", s.trim()).map_err(|e| e.to_string())
}

/// The chain's newest entry, signed with the audit key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    pub seq: u64,
    pub hash: String,
    pub signed_at: String,
    /// Ed25519 over `onepush-audit-head-v1\n<seq>\n<hash>\n<signed_at>`, base64url.
    pub signature: String,
}

impl SignedHead {
    fn message(seq: u64, hash: &str, signed_at: &str) -> Vec<u8> {
        format!("onepush-audit-head-v1\n{seq}\n{hash}\n{signed_at}").into_bytes()
    }

    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        let Ok(sig) = unb64("signature", &self.signature) else { return false };
        let Ok(sig) = Signature::from_slice(&sig) else { return false };
        key.verify_strict(&Self::message(self.seq, &self.hash, &self.signed_at), &sig).is_ok()
    }
}

/// What a start found wrong with the signed head, kept in the store so that
/// `audit verify` goes on failing after new appends have been signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadBreak {
    pub found_at: String,
    /// The first entry concerned.
    pub seq: u64,
    pub why: String,
}

/// `verify`, then the signed head: present when there are entries, signed by
/// `key`, at the chain's last entry and with that entry's hash.
pub fn verify_signed<I>(events: I, head: Option<&SignedHead>, key: &VerifyingKey) -> Result<u64, Broken>
where
    I: IntoIterator<Item = Result<AuditEvent, Broken>>,
{
    let want = head.map(|h| h.seq);
    let mut at_head = None;
    let n = verify(events.into_iter().inspect(|e| {
        if let Ok(e) = e {
            if Some(e.seq) == want {
                at_head = Some(e.hash.clone());
            }
        }
    }))?;
    check_head(n, at_head.as_deref(), head, key)
}

/// The signed-head checks of `verify_signed`, given the number of entries
/// and the hash of the entry at the head's sequence number.
pub fn check_head(n: u64, hash_at_head: Option<&str>, head: Option<&SignedHead>, key: &VerifyingKey) -> Result<u64, Broken> {
    let Some(h) = head else {
        return match n {
            0 => Ok(0),
            _ => Err(Broken { seq: 1, why: format!("no signed head for its {n} entries: a cut-off end could not be seen") }),
        };
    };
    if !h.is_signed_by(key) {
        return Err(Broken { seq: h.seq, why: "the signed head's signature does not verify with the audit key".into() });
    }
    if h.seq > n {
        return Err(Broken {
            seq: n + 1,
            why: format!(
                "entries {}..{} are missing: the log ends at entry {n} but its signed head is entry {} (truncated)",
                n + 1,
                h.seq,
                h.seq
            ),
        });
    }
    if hash_at_head != Some(h.hash.as_str()) {
        return Err(Broken {
            seq: h.seq,
            why: "the entry's hash is not the one its signed head holds: the chain was rewritten and recomputed".into(),
        });
    }
    if h.seq < n {
        return Err(Broken {
            seq: h.seq + 1,
            why: format!("entries {}..{n} come after the signed head and were never signed with the audit key", h.seq + 1),
        });
    }
    Ok(n)
}

/// One line of `onepush audit export`: an event, or the signed head last.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExportLine {
    Head { signed_head: SignedHead },
    Event(AuditEvent),
}

/// Checks an export (JSON lines ending with the signed head) with only the
/// public key.
pub fn verify_export(text: &str, key: &VerifyingKey) -> Result<u64, Broken> {
    let mut head = None;
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        if head.is_some() {
            return Err(Broken { seq: 0, why: format!("line {}: entries follow the signed head", i + 1) });
        }
        match serde_json::from_str::<ExportLine>(line) {
            Ok(ExportLine::Head { signed_head }) => head = Some(signed_head),
            Ok(ExportLine::Event(e)) => events.push(Ok(e)),
            Err(e) => return Err(Broken { seq: 0, why: format!("line {}: not an audit entry: {e}", i + 1) }),
        }
    }
    match head {
        Some(h) => verify_signed(events, Some(&h), key),
        None => Err(Broken { seq: events.len() as u64, why: "no signed head: an export ends with one (was its end cut off?)".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let e = NewEvent::new("login", "rp:bank").user("1", "taro").detail(serde_json::json!({"result": "allow", "n": seq})).seal(
                    seq,
                    "2026-11-25T04:31:42Z".into(),
                    &prev,
                );
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

    fn recompute_from(c: &mut [AuditEvent], i: usize) {
        for j in i..c.len() {
            if j > 0 {
                c[j].prev_hash = c[j - 1].hash.clone();
            }
            c[j].hash = c[j].compute_hash();
        }
    }

    #[test]
    fn the_signed_head_finds_a_cut_a_rewrite_and_unsigned_appends() {
        let key = AuditKey::from_seed([3; 32]);
        let c = chain(6);
        let head = key.sign(6, &c[5].hash, "2026-11-26T00:00:00Z".into());
        let ok = |c: &[AuditEvent], h: Option<&SignedHead>| verify_signed(c.iter().cloned().map(Ok), h, &key.public());
        assert_eq!(ok(&c, Some(&head)), Ok(6));
        // The last two cut off: the chain itself still verifies.
        assert_eq!(verify(c[..4].iter().cloned().map(Ok)), Ok(4));
        let cut = ok(&c[..4], Some(&head)).unwrap_err();
        assert_eq!(cut.seq, 5);
        assert!(cut.why.contains("entries 5..6 are missing"), "{}", cut.why);
        // Entry 2 edited and everything after it recomputed, without the key.
        let mut re = c.clone();
        re[1].actor = "operator:mallory".into();
        recompute_from(&mut re, 1);
        assert_eq!(verify(re.iter().cloned().map(Ok)), Ok(6));
        let rewritten = ok(&re, Some(&head)).unwrap_err();
        assert_eq!(rewritten.seq, 6);
        assert!(rewritten.why.contains("rewritten"), "{}", rewritten.why);
        // A head for the rewritten chain that the key did not sign.
        let mut forged = key.sign(6, &re[5].hash, "2026-11-26T00:00:00Z".into());
        forged.signature = AuditKey::from_seed([4; 32]).sign(6, &re[5].hash, "2026-11-26T00:00:00Z".into()).signature;
        assert!(ok(&re, Some(&forged)).unwrap_err().why.contains("signature"));
        // Entries appended after the head without the key.
        let older = key.sign(4, &c[3].hash, "2026-11-26T00:00:00Z".into());
        assert!(ok(&c, Some(&older)).unwrap_err().why.contains("entries 5..6 come after"));
        assert!(ok(&c, None).unwrap_err().why.contains("no signed head"));
        assert_eq!(ok(&[], None), Ok(0));
    }

    #[test]
    fn an_export_is_checked_with_the_public_key_alone() {
        let key = AuditKey::from_seed([3; 32]);
        let c = chain(3);
        let head = key.sign(3, &c[2].hash, "2026-11-26T00:00:00Z".into());
        let mut text: String = c.iter().map(|e| serde_json::to_string(e).unwrap() + "\n").collect();
        text += &serde_json::to_string(&ExportLine::Head { signed_head: head }).unwrap();
        assert_eq!(verify_export(&text, &key.public()), Ok(3));
        assert!(verify_export(&text, &AuditKey::from_seed([4; 32]).public()).is_err(), "another appliance's key");
        let cut: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert!(verify_export(&cut, &key.public()).is_err());
        let without_head: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(verify_export(&without_head, &key.public()).unwrap_err().why.contains("no signed head"));
    }
}
