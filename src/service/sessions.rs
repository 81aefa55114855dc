//! Where operator sessions and the one-time bootstrap code live: in this
//! process's memory on the embedded store (one node), in the database on
//! PostgreSQL (every node shares them: SPEC R8). One interface, the same
//! rules, two places; the use cases in `operators` never ask which.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{SESSION_IDLE, SESSION_MAX};
use crate::domain::Ms;
use crate::error::Result;
use crate::store::pg::{CodeTaken, SessionFound, Shared};

pub(crate) enum Sessions {
    Memory(Mutex<Memory>),
    Shared(Shared),
}

#[derive(Default)]
pub(crate) struct Memory {
    /// By the cookie's SHA-256.
    sessions: HashMap<String, Session>,
    /// The code's SHA-256, and when it was made.
    code: Option<(String, Ms)>,
}

struct Session {
    operator: String,
    created: Ms,
    last_seen: Ms,
}

fn live(s: &Session, now: Ms) -> bool {
    now < s.created.saturating_add(SESSION_MAX) && now < s.last_seen.saturating_add(SESSION_IDLE)
}

impl Sessions {
    /// In the shared database when there is one, else in memory.
    pub fn new(shared: Option<Shared>) -> Sessions {
        match shared {
            Some(s) => Sessions::Shared(s),
            None => Sessions::Memory(Mutex::default()),
        }
    }

    /// Opens a session (`key`: the cookie's SHA-256), dropping expired ones.
    pub fn open(&self, key: &str, operator: &str, now: Ms) -> Result<()> {
        match self {
            Sessions::Shared(s) => s.session_open(key, operator, now, SESSION_MAX, SESSION_IDLE),
            Sessions::Memory(m) => {
                let mut m = crate::sync::lock(m);
                m.sessions.retain(|_, s| live(s, now));
                m.sessions.insert(key.to_string(), Session { operator: operator.to_string(), created: now, last_seen: now });
                Ok(())
            }
        }
    }

    /// The session's operator, its last use set to `now`; an expired
    /// session is ended.
    pub fn check(&self, key: &str, now: Ms) -> Result<SessionFound> {
        match self {
            Sessions::Shared(s) => s.session_check(key, now, SESSION_MAX, SESSION_IDLE),
            Sessions::Memory(m) => {
                let mut m = crate::sync::lock(m);
                Ok(match m.sessions.get_mut(key) {
                    Some(s) if live(s, now) => {
                        s.last_seen = now;
                        SessionFound::Valid(s.operator.clone())
                    }
                    Some(_) => {
                        m.sessions.remove(key);
                        SessionFound::Expired
                    }
                    None => SessionFound::Unknown,
                })
            }
        }
    }

    pub fn end(&self, key: &str) -> Result<()> {
        match self {
            Sessions::Shared(s) => s.session_end(key),
            Sessions::Memory(m) => {
                crate::sync::lock(m).sessions.remove(key);
                Ok(())
            }
        }
    }

    /// Ends every session of `operator`.
    pub fn end_of(&self, operator: &str) -> Result<()> {
        match self {
            Sessions::Shared(s) => s.sessions_end_of(operator),
            Sessions::Memory(m) => {
                crate::sync::lock(m).sessions.retain(|_, s| s.operator != operator);
                Ok(())
            }
        }
    }

    /// Keeps a new one-time code (its SHA-256) unless another node's is
    /// still valid (several nodes have one code); true if this one stands.
    pub fn offer_code(&self, code_hash: &str, now: Ms, ttl: Ms) -> Result<bool> {
        match self {
            Sessions::Shared(s) => s.bootstrap_offer(code_hash, now, ttl),
            Sessions::Memory(m) => {
                crate::sync::lock(m).code = Some((code_hash.to_string(), now));
                Ok(true)
            }
        }
    }

    /// Spends the code if `code_hash` is it and it is still valid: once,
    /// whichever node is asked.
    pub fn take_code(&self, code_hash: &str, now: Ms, ttl: Ms) -> Result<CodeTaken> {
        match self {
            Sessions::Shared(s) => s.bootstrap_take(code_hash, now, ttl),
            Sessions::Memory(m) => {
                let mut m = crate::sync::lock(m);
                let Some((expected, made)) = &m.code else { return Ok(CodeTaken::Absent) };
                if now >= made.saturating_add(ttl) {
                    m.code = None;
                    return Ok(CodeTaken::Expired);
                }
                if !bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), code_hash.as_bytes())) {
                    return Ok(CodeTaken::Wrong);
                }
                m.code = None;
                Ok(CodeTaken::Taken)
            }
        }
    }

    /// Forgets the code (an operator exists).
    pub fn clear_code(&self) -> Result<()> {
        match self {
            Sessions::Shared(s) => s.bootstrap_clear(),
            Sessions::Memory(m) => {
                crate::sync::lock(m).code = None;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Ms = 1_795_582_018_000;

    #[test]
    fn memory_sessions_end_by_age_by_idleness_and_by_operator() {
        let s = Sessions::new(None);
        s.open("k1", "alice", T0).unwrap();
        s.open("k2", "bob", T0).unwrap();
        assert_eq!(s.check("k1", T0 + SESSION_IDLE - 1).unwrap(), SessionFound::Valid("alice".into()));
        // Used just now: idle counts from the last use, the age from the start.
        assert_eq!(s.check("k1", T0 + 2 * SESSION_IDLE - 2).unwrap(), SessionFound::Valid("alice".into()));
        assert_eq!(s.check("k2", T0 + SESSION_IDLE).unwrap(), SessionFound::Expired);
        assert_eq!(s.check("k2", T0 + SESSION_IDLE).unwrap(), SessionFound::Unknown, "ended when found expired");
        s.end_of("alice").unwrap();
        assert_eq!(s.check("k1", T0 + 1).unwrap(), SessionFound::Unknown);
        s.open("k3", "carol", T0).unwrap();
        let mut at = T0;
        while at < T0 + SESSION_MAX - SESSION_IDLE / 2 {
            at += SESSION_IDLE / 2;
            assert!(matches!(s.check("k3", at).unwrap(), SessionFound::Valid(_)), "kept alive at {at}");
        }
        assert_eq!(s.check("k3", T0 + SESSION_MAX).unwrap(), SessionFound::Expired, "8 h at most");
    }

    #[test]
    fn the_memory_code_is_spent_once_and_expires() {
        let s = Sessions::new(None);
        assert_eq!(s.take_code("h", T0, 1000).unwrap(), CodeTaken::Absent);
        assert!(s.offer_code("h", T0, 1000).unwrap());
        assert_eq!(s.take_code("x", T0 + 1, 1000).unwrap(), CodeTaken::Wrong);
        assert_eq!(s.take_code("h", T0 + 1, 1000).unwrap(), CodeTaken::Taken);
        assert_eq!(s.take_code("h", T0 + 2, 1000).unwrap(), CodeTaken::Absent, "spent");
        s.offer_code("h", T0, 1000).unwrap();
        assert_eq!(s.take_code("h", T0 + 1000, 1000).unwrap(), CodeTaken::Expired);
        assert_eq!(s.take_code("h", T0 + 1, 1000).unwrap(), CodeTaken::Absent, "an expired code is gone");
        s.offer_code("h", T0, 1000).unwrap();
        s.clear_code().unwrap();
        assert_eq!(s.take_code("h", T0 + 1, 1000).unwrap(), CodeTaken::Absent);
    }
}
