//! Argon2id password hashing with the configured cost, and a dummy hash so
//! that an unknown user costs the same time as a wrong password (SPEC R6).

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{Error, Result};

pub struct Passwords {
    argon: Argon2<'static>,
    dummy: String,
}

impl Passwords {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Passwords> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut p = Passwords { argon, dummy: String::new() };
        p.dummy = p.hash("onepush dummy password, never matches")?;
        Ok(p)
    }

    /// PHC string (`$argon2id$v=19$m=…`) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String> {
        self.argon
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("argon2: {e}")))
    }

    /// Verifies `password` against `hash`; with no hash (unknown user) it
    /// verifies against the dummy so that the time taken is the same.
    pub fn verify(&self, hash: Option<&str>, password: &str) -> bool {
        match hash {
            Some(h) => self.argon.verify_password(password.as_bytes(), h).is_ok(),
            None => {
                let _ = self.argon.verify_password(password.as_bytes(), self.dummy.as_str());
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_dummy_never_matches() {
        let p = Passwords::new(64, 1).unwrap();
        let h = p.hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(p.verify(Some(&h), "correct horse"));
        assert!(!p.verify(Some(&h), "wrong horse"));
        assert!(!p.verify(None, "onepush dummy password, never matches"));
        assert!(!p.verify(Some("not a phc string"), "x"));
    }
}
