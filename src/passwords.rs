//! Argon2id password hashing with the configured cost, and a dummy hash so
//! that an unknown user costs the same time as a wrong password (SPEC R6).
//!
//! Verification runs on at most one Argon2 computation per core, each in a
//! memory area that is kept and reused: more would only share the cores and
//! the memory bandwidth, and a fresh 19 MiB area per login costs thousands
//! of page faults. The areas are the only large memory onepush holds.

use std::sync::{Condvar, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::error::{Error, Result};

pub struct Passwords {
    argon: Argon2<'static>,
    dummy: String,
    /// Reusable memory areas, one per core; a verification waits for one.
    areas: Mutex<Vec<Vec<Block>>>,
    freed: Condvar,
}

impl Passwords {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<Passwords> {
        let params = Params::new(memory_kib, iterations, 1, None).map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut p = Passwords { argon, dummy: String::new(), areas: Mutex::new(vec![Vec::new(); cores]), freed: Condvar::new() };
        p.dummy = p.hash("onepush dummy password, never matches")?;
        Ok(p)
    }

    /// PHC string (`$argon2id$v=19$m=…`) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String> {
        self.argon.hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| Error::Internal(format!("argon2: {e}")))
    }

    /// Verifies `password` against `hash`; with no hash (unknown user) it
    /// verifies against the dummy so that the time taken is the same.
    pub fn verify(&self, hash: Option<&str>, password: &str) -> bool {
        match hash {
            Some(h) => self.verify_phc(h, password),
            None => {
                let _ = self.verify_phc(&self.dummy, password);
                false
            }
        }
    }

    /// The hash's own parameters and salt, our memory area, a constant-time
    /// comparison of the outputs.
    fn verify_phc(&self, phc: &str, password: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else { return false };
        if parsed.algorithm.as_str() != "argon2id" {
            return false;
        }
        let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(&parsed), parsed.salt.as_ref(), parsed.hash.as_ref()) else {
            return false;
        };
        let blocks = params.block_count();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut out = vec![0u8; expected.as_bytes().len()];
        let mut area = self.take_area();
        if area.len() < blocks {
            area.resize(blocks, Block::default());
        }
        let ok = argon.hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, &mut area[..blocks]).is_ok()
            && bool::from(out.as_slice().ct_eq(expected.as_bytes()));
        out.zeroize();
        self.give_area(area);
        ok
    }

    fn take_area(&self) -> Vec<Block> {
        let mut areas = crate::sync::lock(&self.areas);
        loop {
            if let Some(a) = areas.pop() {
                return a;
            }
            areas = crate::sync::wait(&self.freed, areas);
        }
    }

    fn give_area(&self, area: Vec<Block>) {
        crate::sync::lock(&self.areas).push(area);
        self.freed.notify_one();
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
        // A hash made with other parameters verifies with its own.
        let other = Passwords::new(128, 2).unwrap().hash("correct horse").unwrap();
        assert!(p.verify(Some(&other), "correct horse"));
        assert!(!p.verify(Some(&other), "correct horsE"));
        // Many threads, few areas: nobody starves.
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| assert!(p.verify(Some(&h), "correct horse")));
            }
        });
    }
}
