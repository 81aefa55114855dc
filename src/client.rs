//! The phone's side of the device protocol, for the reference
//! authenticator, the load generator and the tests: key generation, the
//! provisioning proof, signed request headers, signed answers, TOTP codes.
//! No HTTP here; callers bring their own client.

use ed25519_dalek::{Signer, SigningKey};

use crate::domain::sig::{self, b64};
use crate::domain::totp;

#[derive(Clone)]
pub struct DeviceKey {
    key: SigningKey,
}

impl DeviceKey {
    pub fn generate() -> DeviceKey {
        DeviceKey { key: SigningKey::generate(&mut rand::rng()) }
    }

    pub fn from_seed(seed: &[u8; 32]) -> DeviceKey {
        DeviceKey { key: SigningKey::from_bytes(seed) }
    }

    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn public_key(&self) -> String {
        b64(self.key.verifying_key().as_bytes())
    }

    pub fn sign(&self, message: &str) -> String {
        b64(&self.key.sign(message.as_bytes()).to_bytes())
    }

    /// The body of `POST /api/v1/device/provision`.
    pub fn provision_body(&self, label: Option<&str>, push_endpoint: Option<&str>) -> serde_json::Value {
        let pk = self.public_key();
        serde_json::json!({
            "public_key": pk,
            "proof": self.sign(&sig::provision_message(&pk)),
            "label": label,
            "push_endpoint": push_endpoint,
        })
    }

    /// `X-Onepush-*` headers for a device request.
    pub fn headers(&self, token_id: &str, method: &str, path: &str, body: &[u8], unix_secs: i64) -> [(&'static str, String); 3] {
        let msg = sig::device_message(method, path, unix_secs, body);
        [("X-Onepush-Token", token_id.to_string()), ("X-Onepush-Time", unix_secs.to_string()), ("X-Onepush-Signature", self.sign(&msg))]
    }

    /// The body of an answer to a challenge, signed over the lines the phone showed.
    pub fn answer_body(
        &self,
        challenge_id: &str,
        token_id: &str,
        decision: &str,
        number: Option<&str>,
        display: &[(String, String)],
        report_fraud: bool,
    ) -> serde_json::Value {
        let digest = sig::display_digest(display);
        let msg = sig::response_message(challenge_id, token_id, decision, number, &digest);
        serde_json::json!({
            "token_id": token_id,
            "decision": decision,
            "number": number,
            "report_fraud": report_fraud,
            "signature": self.sign(&msg),
        })
    }
}

/// Two consecutive codes for registration: steps t and t + 1 at `unix_secs`.
pub fn registration_otps(secret_base32: &str, unix_secs: u64) -> Option<(String, String)> {
    let secret = data_encoding::BASE32_NOPAD.decode(secret_base32.as_bytes()).ok()?;
    let t = totp::step_at(unix_secs);
    Some((totp::totp(&secret, t), totp::totp(&secret, t + 1)))
}

pub fn now_secs() -> i64 {
    (crate::domain::now_ms() / 1000) as i64
}
