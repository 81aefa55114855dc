//! Prints, as JSON, every signed message format produced by onepush's own
//! code with a fresh random key, so that an independent Ed25519 and TOTP
//! implementation can check them (tests/independent/check_vectors.py).

use onepush::client::{now_secs, DeviceKey};
use onepush::domain::{sig, totp};
use serde_json::json;

fn main() {
    let key = DeviceKey::generate();
    let pk = key.public_key();
    let display = vec![
        ("Amount".to_string(), "JPY 1,250,000".to_string()),
        ("Payee".to_string(), "水戸商事株式会社".to_string()),
        ("Memo".to_string(), "tab\tinside".to_string()),
    ];
    let digest = sig::display_digest(&display);
    let body = br#"{"token_id":"ONEP12345674","decision":"approve"}"#;
    let t = now_secs();
    let headers = key.headers("ONEP12345674", "POST", "/api/v1/device/challenges/ch_x/response", body, t);
    let answer = key.answer_body("ch_x", "ONEP12345674", "approve", Some("42"), &display, false);
    let mut secret = [0u8; 20];
    rand::fill(&mut secret[..]);
    let out = json!({
        "public_key": pk,
        "provision": {"proof": key.provision_body(None, None)["proof"]},
        "device": {"method": "POST", "path": "/api/v1/device/challenges/ch_x/response", "time": t,
                   "body": String::from_utf8_lossy(body), "signature": headers[2].1},
        "response": {"challenge_id": "ch_x", "token_id": "ONEP12345674", "decision": "approve", "number": "42",
                     "display": display, "display_digest": digest, "signature": answer["signature"]},
        "totp": {"secret_base32": data_encoding::BASE32_NOPAD.encode(&secret), "time": t,
                 "otp": totp::totp(&secret, totp::step_at(t as u64))},
    });
    println!("{out}");
}
