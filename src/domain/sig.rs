//! The signed-message formats of API.md and their verification.
//!
//! Every byte of these strings is part of the wire contract; the test vectors
//! in ../shared/test-vectors.json pin them.

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const PROVISION_PREFIX: &str = "onepush-provision-v1";
pub const DEVICE_PREFIX: &str = "onepush-device-v1";
pub const RESPONSE_PREFIX: &str = "onepush-response-v1";

pub fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

pub fn unb64(field: &str, s: &str) -> Result<Vec<u8>> {
    data_encoding::BASE64URL_NOPAD.decode(s.as_bytes()).map_err(|_| Error::bad_field(field, "must be base64url without padding"))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
}

/// `onepush-provision-v1\n<public_key as base64url text>`
pub fn provision_message(public_key_b64: &str) -> String {
    format!("{PROVISION_PREFIX}\n{public_key_b64}")
}

/// `onepush-device-v1\n<METHOD>\n<path>\n<unix seconds>\n<sha256 hex of body>`
pub fn device_message(method: &str, path: &str, unix_secs: i64, body: &[u8]) -> String {
    format!("{DEVICE_PREFIX}\n{method}\n{path}\n{unix_secs}\n{}", sha256_hex(body))
}

/// `onepush-response-v1\n<challenge_id>\n<token_id>\n<decision>\n<number or empty>\n<display_digest>`
pub fn response_message(challenge_id: &str, token_id: &str, decision: &str, number: Option<&str>, digest: &str) -> String {
    format!("{RESPONSE_PREFIX}\n{challenge_id}\n{token_id}\n{decision}\n{}\n{digest}", number.unwrap_or(""))
}

/// SHA-256 hex of the concatenation of `label + "\t" + value + "\n"` over the lines.
pub fn display_digest(lines: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    for (label, value) in lines {
        h.update(label.as_bytes());
        h.update(b"\t");
        h.update(value.as_bytes());
        h.update(b"\n");
    }
    data_encoding::HEXLOWER.encode(&h.finalize())
}

/// Decodes a base64url Ed25519 public key (32 bytes) that is a valid point.
/// A fixed key that no device holds, to spend a signature check on a
/// request for an unknown token.
pub fn dummy_key() -> VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key()
}

pub fn parse_public_key(field: &str, s: &str) -> Result<VerifyingKey> {
    let raw = unb64(field, s)?;
    let arr: [u8; 32] = raw.as_slice().try_into().map_err(|_| Error::bad_field(field, "must be a 32-byte Ed25519 public key"))?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| Error::bad_field(field, "is not a valid Ed25519 public key"))?;
    if key.is_weak() {
        return Err(Error::bad_field(field, "is a weak Ed25519 key"));
    }
    Ok(key)
}

/// Strict verification (RFC 8032 with the malleability checks).
pub fn verify(key: &VerifyingKey, message: &str, signature_b64: &str) -> bool {
    let Ok(raw) = data_encoding::BASE64URL_NOPAD.decode(signature_b64.as_bytes()) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&raw) else {
        return false;
    };
    key.verify_strict(message.as_bytes(), &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/data/test-vectors.json")).unwrap()
    }

    fn key() -> SigningKey {
        let seed = data_encoding::HEXLOWER.decode(b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").unwrap();
        SigningKey::from_bytes(&seed.try_into().unwrap())
    }

    fn s(v: &serde_json::Value) -> &str {
        v.as_str().unwrap()
    }

    #[test]
    fn public_key_and_provision_proof_match_vectors() {
        let v = vectors();
        let pk = b64(key().verifying_key().as_bytes());
        assert_eq!(pk, s(&v["ed25519"]["public_key_b64url"]));
        let msg = provision_message(&pk);
        assert_eq!(msg, s(&v["provision_proof"]["message"]));
        assert_eq!(b64(&key().sign(msg.as_bytes()).to_bytes()), s(&v["provision_proof"]["signature"]));
        let vk = parse_public_key("public_key", &pk).unwrap();
        assert!(verify(&vk, &msg, s(&v["provision_proof"]["signature"])));
        assert!(!verify(&vk, "onepush-provision-v1\nother", s(&v["provision_proof"]["signature"])));
    }

    #[test]
    fn device_request_messages_match_vectors() {
        let v = vectors();
        let vk = key().verifying_key();
        for name in ["device_request_get", "device_request_post"] {
            let c = &v[name];
            let msg = device_message(s(&c["method"]), s(&c["path"]), c["time"].as_i64().unwrap(), s(&c["body"]).as_bytes());
            assert_eq!(msg, s(&c["message"]), "{name}");
            assert_eq!(b64(&key().sign(msg.as_bytes()).to_bytes()), s(&c["signature"]), "{name}");
            assert!(verify(&vk, &msg, s(&c["signature"])));
        }
    }

    #[test]
    fn display_digest_and_response_messages_match_vectors() {
        let v = vectors();
        let lines: Vec<(String, String)> =
            v["display_digest"]["display"].as_array().unwrap().iter().map(|l| (s(&l[0]).to_string(), s(&l[1]).to_string())).collect();
        let digest = display_digest(&lines);
        assert_eq!(digest, s(&v["display_digest"]["digest_hex"]));
        assert_eq!(display_digest(&[]), s(&v["display_digest"]["empty_display_digest_hex"]));

        let m = response_message("ch_0123456789abcdef", "ONEP12345674", "approve", None, &digest);
        assert_eq!(m, s(&v["response_signature"]["message"]));
        assert_eq!(b64(&key().sign(m.as_bytes()).to_bytes()), s(&v["response_signature"]["signature"]));
        let m = response_message("ch_0123456789abcdef", "ONEP12345674", "approve", Some("42"), &digest);
        assert_eq!(m, s(&v["response_signature_with_number"]["message"]));
        assert_eq!(b64(&key().sign(m.as_bytes()).to_bytes()), s(&v["response_signature_with_number"]["signature"]));
    }

    #[test]
    fn bad_keys_and_signatures_are_refused() {
        assert!(parse_public_key("public_key", "AAAA").is_err());
        assert!(parse_public_key("public_key", "not base64!").is_err());
        // The identity point is a weak key.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        assert!(parse_public_key("public_key", &b64(&ident)).is_err());
        let vk = key().verifying_key();
        assert!(!verify(&vk, "x", "garbage"));
        assert!(!verify(&vk, "x", &b64(&[0u8; 64])));
    }
}
