//! OTP secrets at rest: sealed with ChaCha20-Poly1305 under a key kept in its
//! own file (`secret_key_file`), never in the store. A copy of the store
//! alone reveals no OTP secret. Each sealed value is a random 96-bit nonce
//! followed by the ciphertext and tag; the token ID is the associated data,
//! so a sealed secret cannot be moved to another token.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

/// Creates a new file that only its owner can read or write (0600 whatever
/// the umask), never over an existing file and never through a symlink: for
/// keys, backups and the one-time code.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Reads a 32-byte key file, or creates it (0600, random) if it does not
/// exist yet; true when it was created now. `what` names it in the log.
pub fn load_or_create_key(path: &Path, what: &str) -> std::result::Result<(Zeroizing<Vec<u8>>, bool), String> {
    let (key, created) = match std::fs::read(path) {
        Ok(bytes) => (Zeroizing::new(bytes), false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = Zeroizing::new(vec![0u8; KEY_LEN]);
            rand::fill(&mut key[..]);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            // Written whole under a temporary name, then linked into place, so
            // that a crash never leaves a short key file behind.
            let partial = path.with_extension(format!("partial.{}", std::process::id()));
            let written = create_private(&partial)
                .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()))
                .and_then(|()| std::fs::hard_link(&partial, path));
            let _ = std::fs::remove_file(&partial);
            written.map_err(|e| format!("{}: {e}", path.display()))?;
            log::info!("created the {what} file {}; back it up apart from the store", path.display());
            (key, true)
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if key.len() != KEY_LEN {
        return Err(format!("{}: a key file holds exactly {KEY_LEN} bytes", path.display()));
    }
    Ok((key, created))
}

impl SecretBox {
    /// Reads the key file, or creates it (mode 0600, 32 random bytes) if it
    /// does not exist yet.
    pub fn load_or_create(path: &Path) -> std::result::Result<SecretBox, String> {
        let (key, _) = load_or_create_key(path, "OTP secret key")?;
        let cipher = ChaCha20Poly1305::new_from_slice(&key).map_err(|_| "bad key length".to_string())?;
        Ok(SecretBox { cipher })
    }

    #[cfg(test)]
    fn from_key(key: &[u8; KEY_LEN]) -> SecretBox {
        SecretBox { cipher: ChaCha20Poly1305::new_from_slice(key).expect("32-byte key") }
    }

    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let ct = self
            .cipher
            .encrypt(&nonce.into(), Payload { msg: plain, aad })
            .map_err(|_| Error::Internal("sealing a secret failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN {
            return Err(Error::Internal("sealed secret too short".into()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Error::Internal("nonce".into()))?;
        self.cipher
            .decrypt(&nonce.into(), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| Error::Internal("an OTP secret does not open: is secret_key_file the key this store was made with?".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_refusals() {
        let b = SecretBox::from_key(&[7u8; 32]);
        let sealed = b.seal(b"ONEP12345674", b"twenty bytes secret!").unwrap();
        assert_eq!(&b.open(b"ONEP12345674", &sealed).unwrap()[..], b"twenty bytes secret!");
        assert!(!sealed.windows(20).any(|w| w == b"twenty bytes secret!"));
        assert!(b.open(b"ONEP00000000", &sealed).is_err(), "bound to its token");
        assert!(SecretBox::from_key(&[8u8; 32]).open(b"ONEP12345674", &sealed).is_err(), "wrong key");
        let mut bad = sealed.clone();
        bad[15] ^= 1;
        assert!(b.open(b"ONEP12345674", &bad).is_err(), "tampered");
        assert_ne!(b.seal(b"x", b"same").unwrap(), b.seal(b"x", b"same").unwrap(), "fresh nonce each time");
    }

    #[test]
    fn key_file_is_created_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("onepush-key-{}", crate::domain::ids::random_hex(6)));
        let path = dir.join("secret.key");
        let a = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let sealed = a.seal(b"t", b"s").unwrap();
        let b = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(&b.open(b"t", &sealed).unwrap()[..], b"s");
        std::fs::write(&path, b"short").unwrap();
        assert!(SecretBox::load_or_create(&path).unwrap_err().contains("32 bytes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
