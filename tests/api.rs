//! The wire contract (../shared/API.md), through the real binary over HTTP.

mod common;
#[path = "suites/import.rs"]
mod import;
#[path = "suites/lifecycle.rs"]
mod lifecycle;
#[path = "suites/operators.rs"]
mod operators;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const C: &str = "1000000001";

fn audit_lines(s: &Server) -> Vec<Value> {
    let (code, out, err) = s.cli(&["audit", "export"], None);
    assert_eq!(code, 0, "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

// ------------------------------------------------------------ R2.3b what a login shows

fn login_lines(w: &World, phone: &Phone, client: Value) -> Vec<(String, String)> {
    let r = w.s.post("/api/v1/login", &w.rp(), &json!({"contract_no": C, "user_id": "taro", "password": PASSWORD, "client": client}));
    let id = r.json["challenge_id"].as_str().unwrap_or_else(|| panic!("{}", r.text)).to_string();
    let ch = phone.fetch(&id);
    phone.answer(&ch, "approve");
    serde_json::from_value(ch["display"].clone()).unwrap()
}

#[test]
fn login_lines_are_in_the_phones_language_with_the_banks_time_and_the_client() {
    let w = World::new("max_challenges_per_window = 100");
    let phone = w.registered(C, "jweb", "taro");
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    let lines = login_lines(&w, &phone, json!({"ip": "198.51.100.4", "user_agent": chrome}));
    let labels: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["サービス", "契約番号", "利用者ID", "接続元", "日時"]);
    assert_eq!(lines[0].1, "JWEBOFFICE");
    assert_eq!(lines[3].1, "198.51.100.4 (Chrome / Windows 10)");
    // 2026/11/26 20:46:05 JST: Asia/Tokyo by default.
    let time = &lines[4].1;
    assert!(time.ends_with(" JST") && time.len() == "2026/11/26 20:46:05 JST".len() && &time[4..5] == "/", "{time}");
    // The phone asks for English: lines composed after it are in English.
    let r = phone.signed("PUT", "/api/v1/device/settings", Some(&json!({"lang": "en"})));
    assert_eq!((r.status, r.json["lang"].as_str()), (200, Some("en")), "{}", r.text);
    let lines = login_lines(&w, &phone, json!({}));
    let labels: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["Service", "Contract", "User", "Client", "Time"]);
    assert_eq!(lines[3].1, "-", "only when the RP sent no client");
    let r = phone.signed("PUT", "/api/v1/device/settings", Some(&json!({"lang": "fr"})));
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("lang"), "{}", r.text);
    // Another zone for the bank: the time follows it.
    let w = World::new("display_timezone = \"Europe/London\"");
    let phone = w.registered(C, "jweb", "taro");
    let time = login_lines(&w, &phone, json!({"ip": "198.51.100.4"}))[4].1.clone();
    assert!(time.ends_with(" GMT") || time.ends_with(" BST"), "{time}");
}

#[test]
fn a_phone_can_ask_for_english_when_it_is_provisioned_and_a_bad_zone_stops_the_start() {
    let w = World::new("");
    let key = onepush::client::DeviceKey::generate();
    let mut body = key.provision_body(Some("test phone"), None);
    body["lang"] = json!("en");
    let r = w.s.post("/api/v1/device/provision", &[], &body);
    assert_eq!(r.status, 201, "{}", r.text);
    let mut bad = onepush::client::DeviceKey::generate().provision_body(None, None);
    bad["lang"] = json!("de");
    let r = w.s.post("/api/v1/device/provision", &[], &bad);
    assert_eq!(r.status, 400);
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("lang"), "{}", r.text);
    let (code, _, err) = w.s.cli(&["config", "check"], None);
    assert_eq!(code, 0, "{err}");
    std::fs::write(&w.s.config, format!("{}\ndisplay_timezone = \"Mars/Olympus\"\n", std::fs::read_to_string(&w.s.config).unwrap()))
        .unwrap();
    let (code, _, err) = w.s.cli(&["config", "check"], None);
    assert_eq!(code, 2);
    assert!(err.contains("display_timezone"), "{err}");
}

// ------------------------------------------------------------ R2.5 outcomes

#[test]
fn login_is_approved_by_one_push_and_the_parked_rp_wakes() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");

    // The RP parks on the challenge while the phone answers.
    let rp_wait = {
        let (url, h) = (w.s.url(&format!("/api/v1/challenges/{id}?wait=20")), w.rp());
        std::thread::spawn(move || {
            let t = Instant::now();
            (request("GET", &url, &h, None), t.elapsed())
        })
    };
    let ch = phone.fetch(&id);
    assert_eq!(ch["kind"], "login");
    let display: Vec<(String, String)> = serde_json::from_value(ch["display"].clone()).unwrap();
    let labels: Vec<&str> = display.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["サービス", "契約番号", "利用者ID", "接続元", "日時"], "Japanese unless the phone asks otherwise");
    assert!(display.contains(&("接続元".into(), "203.0.113.7".into())));
    assert_eq!(ch["display_digest"], onepush::domain::sig::display_digest(&display));
    assert!(ch["number_choices"].is_null());

    std::thread::sleep(Duration::from_millis(200)); // let the RP park
    let r = phone.answer(&ch, "approve");
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("approved")), "{}", r.text);

    let (r, took) = rp_wait.join().unwrap();
    assert_eq!(r.json["status"], "approved", "{}", r.text);
    assert!(took < Duration::from_secs(10), "the parked RP was answered by the decision, not the deadline");
    assert!(r.json["decided_at"].is_string());

    // Leaves pending exactly once.
    let again = phone.answer(&ch, "reject");
    assert_eq!((again.status, again.code()), (409, "challenge_closed"));

    // The decision is audited with the device's signature as evidence.
    let events = audit_lines(&w.s);
    let closed = events.iter().find(|e| e["type"] == "challenge_closed" && e["detail"]["challenge_id"] == id.as_str()).unwrap();
    assert_eq!(closed["detail"]["status"], "approved");
    assert!(closed["detail"]["signature"].as_str().unwrap().len() > 80);
    assert_eq!(closed["actor"], format!("device:{}", phone.token_id));
}

#[test]
fn reject_and_fraud_report() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let ch = phone.fetch(&id);
    let r = phone.answer_with(&ch, "reject", None, true);
    assert_eq!(r.json["status"], "rejected", "{}", r.text);
    assert_eq!(w.challenge(&id, 0).json["status"], "rejected");
    let events = audit_lines(&w.s);
    assert!(events.iter().any(|e| e["type"] == "fraud_report" && e["detail"]["challenge_id"] == id.as_str()));
    let m = w.s.get("/metrics", &[]).text;
    assert!(m.contains("onepush_fraud_reports_total 1"), "{m}");
    assert!(m.contains("onepush_challenges_closed_total{kind=\"login\",status=\"rejected\"} 1"));
    // report_fraud goes with reject only.
    let id = w.login_challenge(C, "taro");
    let ch = phone.fetch(&id);
    assert_eq!(phone.answer_with(&ch, "approve", None, true).status, 400);
}

#[test]
fn unanswered_challenges_close_as_expired_or_undelivered_within_a_second() {
    let w = World::new("challenge_ttl = \"2s\"\nmax_pending_per_user = 5");
    let phone = w.registered(C, "jweb", "taro");
    let fetched = w.login_challenge(C, "taro");
    phone.fetch(&fetched); // delivered, never answered
    let never = w.login_challenge(C, "taro");
    // The phone fetches both, so make the second one undelivered on another user.
    let other = w.registered(C, "jweb", "hanako");
    let undelivered = w.login_challenge(C, "hanako");
    let _ = (never, &other);

    let r = w.challenge(&fetched, 10);
    assert_eq!(r.json["status"], "expired", "{}", r.text);
    let r = w.challenge(&undelivered, 10);
    assert_eq!(r.json["status"], "undelivered", "{}", r.text);
    for id in [&fetched, &undelivered] {
        let c = w.challenge(id, 0).json;
        let exp = onepush::domain::parse_rfc3339("expires_at", c["expires_at"].as_str().unwrap()).unwrap();
        let dec = onepush::domain::parse_rfc3339("decided_at", c["decided_at"].as_str().unwrap()).unwrap();
        assert!(dec >= exp && dec - exp <= 1000, "closed {} ms after expires_at", dec as i64 - exp as i64);
    }
    // A late answer is refused.
    let ch = json!({"challenge_id": fetched, "display": []});
    assert_eq!(phone.answer(&ch, "approve").code(), "challenge_closed");
}

#[test]
fn an_answer_from_another_token_closes_as_token_mismatch() {
    let w = World::new("");
    let taro = w.registered(C, "jweb", "taro");
    let hanako = w.registered(C, "jweb", "hanako");
    let id = w.login_challenge(C, "taro");
    let ch = taro.fetch(&id);
    let r = hanako.answer(&ch, "approve");
    assert_eq!(r.json["status"], "token_mismatch", "{}", r.text);
    assert_eq!(w.challenge(&id, 0).json["status"], "token_mismatch");
    assert_eq!(taro.answer(&ch, "approve").code(), "challenge_closed");
}

#[test]
fn a_bad_answer_signature_leaves_the_challenge_pending() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let mut ch = phone.fetch(&id);
    // Sign other lines than the ones the server sent: the digest differs.
    ch["display"] = json!([["Amount", "JPY 1"]]);
    let r = phone.answer(&ch, "approve");
    assert_eq!((r.status, r.code()), (401, "bad_signature"), "{}", r.text);
    assert_eq!(w.challenge(&id, 0).json["status"], "pending");
    let real = phone.fetch(&id);
    assert_eq!(phone.answer(&real, "approve").json["status"], "approved");
    assert_eq!(
        phone
            .signed(
                "POST",
                "/api/v1/device/challenges/ch_nope/response",
                Some(&json!({"token_id": phone.token_id, "decision": "approve", "signature": "x"}))
            )
            .status,
        404
    );
}

#[test]
fn rp_cancel_and_superseding_login_cancel() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let r = request("DELETE", &w.s.url(&format!("/api/v1/challenges/{id}")), &w.rp(), None);
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("cancelled")), "{}", r.text);
    let r = request("DELETE", &w.s.url(&format!("/api/v1/challenges/{id}")), &w.rp(), None);
    assert_eq!((r.status, r.code()), (409, "challenge_closed"));

    // max_pending_per_user = 1: a new login cancels the older one and wakes its waiter.
    let first = w.login_challenge(C, "taro");
    let waiter = {
        let (url, h) = (w.s.url(&format!("/api/v1/challenges/{first}?wait=20")), w.rp());
        std::thread::spawn(move || request("GET", &url, &h, None))
    };
    std::thread::sleep(Duration::from_millis(200));
    let second = w.login_challenge(C, "taro");
    assert_eq!(waiter.join().unwrap().json["status"], "cancelled");
    let list = phone.poll(0);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["challenge_id"], second.as_str());
}

#[test]
fn anti_fatigue_window_denies_the_sixth_challenge() {
    let w = World::new("");
    let _phone = w.registered(C, "jweb", "taro");
    for _ in 0..5 {
        w.login_challenge(C, "taro");
    }
    let r = w.login(C, "taro", PASSWORD);
    assert_eq!((r.json["result"].as_str(), r.json["reason"].as_str()), (Some("deny"), Some("too_many_challenges")), "{}", r.text);
    // The user is told how long to wait: until the first of the five leaves
    // the ten-minute window (a few seconds of this test have passed).
    let wait = r.json["retry_after"].as_u64().expect("retry_after");
    assert!((570..=600).contains(&wait), "{wait}");
    // Other denials carry none.
    let r = w.login(C, "taro", "wrong-password");
    assert_eq!(r.json, json!({"result": "deny", "reason": "bad_credentials"}));
}

#[test]
fn the_demo_bank_uses_number_challenge_and_reports_the_browser_as_its_client() {
    let s = Server::start_demo("");
    let phone = Phone::provision(&s);
    assert_eq!(phone.register(&s, "1000000001", "taro", "demo-pass-1").status, 201);
    // Whatever client the page claims, the demo's server side reports the
    // connection's address and user agent, as a bank's own server would.
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let r = request(
        "POST",
        &s.url("/demo/api/login"),
        &[("User-Agent", ua.to_string())],
        json_body(&json!({"contract_no": "1000000001", "user_id": "taro", "password": "demo-pass-1", "client": {"ip": "203.0.113.9"}})),
    );
    assert_eq!(r.json["result"], "challenge", "{}", r.text);
    let number = r.json["number"].as_str().expect("the demo shows a number").to_string();
    let c = phone.fetch(r.json["challenge_id"].as_str().unwrap());
    let choices: Vec<&str> = c["number_choices"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(choices.contains(&number.as_str()), "{choices:?} {number}");
    let client =
        c["display"].as_array().unwrap().iter().find(|l| l[0] == "接続元").expect("a client line")[1].as_str().unwrap().to_string();
    assert!(client.starts_with("127.0.0.1") && client.contains("Chrome") && client.contains("Windows"), "{client}");
    assert!(!client.contains("203.0.113.9"), "{client}");
}

#[test]
fn number_challenge_wrong_pick_rejects_right_pick_approves() {
    let w = World::new("number_challenge = true");
    let phone = w.registered(C, "jweb", "taro");
    for (pick_right, want) in [(false, "rejected"), (true, "approved")] {
        let r = w.login(C, "taro", PASSWORD);
        let number = r.json["number"].as_str().unwrap().to_string();
        let id = r.json["challenge_id"].as_str().unwrap().to_string();
        let ch = phone.fetch(&id);
        let choices: Vec<String> = serde_json::from_value(ch["number_choices"].clone()).unwrap();
        assert_eq!(choices.len(), 3);
        assert!(choices.contains(&number));
        let pick = if pick_right { number.clone() } else { choices.iter().find(|c| **c != number).unwrap().clone() };
        let r = phone.answer_with(&ch, "approve", Some(&pick), false);
        assert_eq!(r.json["status"], want, "{}", r.text);
    }
}

// ------------------------------------------------------------ login reasons

#[test]
fn login_answers_and_password_lock() {
    let w = World::new("");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    assert_eq!(w.login(C, "taro", PASSWORD).json, json!({"result": "allow", "reason": "push_not_registered"}));
    let bad = json!({"result": "deny", "reason": "bad_credentials"});
    assert_eq!(w.login("9999", "taro", PASSWORD).json, bad, "unknown contract");
    assert_eq!(w.login(C, "nobody", PASSWORD).json, bad, "unknown user");
    for _ in 0..4 {
        assert_eq!(w.login(C, "taro", "wrong-password").json, bad);
    }
    // A success resets the count.
    assert_eq!(w.login(C, "taro", PASSWORD).json["result"], "allow");
    for _ in 0..5 {
        assert_eq!(w.login(C, "taro", "wrong-password").json, bad);
    }
    let locked = json!({"result": "deny", "reason": "password_locked"});
    assert_eq!(w.login(C, "taro", PASSWORD).json, locked);
    let u = w.s.get(&format!("/api/v1/users/{C}/taro"), &w.rp());
    assert_eq!(u.json["password_locked"], true);
    assert_eq!(u.json["registration"], "unregistered");
    let m = w.s.get("/metrics", &[]).text;
    assert!(m.contains("onepush_decisions_total{operation=\"login\",result=\"deny\",reason=\"password_locked\"} 1"), "{m}");
}

#[test]
fn require_registration_refuses_unregistered_users() {
    let w = World::new("require_registration = true");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    assert_eq!(w.login(C, "taro", PASSWORD).json, json!({"result": "deny", "reason": "registration_required"}));
}

#[test]
fn approvals_follow_the_edition_policy() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let fx = w.registered("2000000002", "fx", "jiro");
    let approve = |no: &str, uid: &str, kind: &str, txpw: Option<&str>| {
        let mut body = json!({"contract_no": no, "user_id": uid, "kind": kind,
            "display": [["Amount", "JPY 1,250,000"], ["Payee", "水戸商事株式会社"]], "client": {"ip": "203.0.113.7"}});
        if let Some(p) = txpw {
            body["transaction_password"] = json!(p);
        }
        w.s.post("/api/v1/approvals", &w.rp(), &body)
    };
    // jweb: a transaction needs the transaction password.
    let r = approve(C, "taro", "transaction", None);
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("transaction_password"));
    assert_eq!(
        approve(C, "taro", "transaction", Some("wrong-txpass")).json,
        json!({"result": "deny", "reason": "bad_transaction_password"})
    );
    let r = approve(C, "taro", "transaction", Some(TX_PASSWORD));
    let id = r.json["challenge_id"].as_str().unwrap();
    let ch = phone.fetch(id);
    assert_eq!(ch["kind"], "transaction");
    assert_eq!(ch["display"], json!([["Amount", "JPY 1,250,000"], ["Payee", "水戸商事株式会社"]]));
    assert_eq!(ch["display_digest"], "6de3ea1561b940f7b8c4890f524ff6029dda0c3d92caad54bbe5dd011c36347d");
    assert_eq!(phone.answer(&ch, "approve").json["status"], "approved");
    assert_eq!(w.challenge(id, 0).json["kind"], "transaction");
    // fx: no push for transactions; filings push without a transaction password.
    assert_eq!(approve("2000000002", "jiro", "transaction", None).json, json!({"result": "allow", "reason": "push_not_required"}));
    let r = approve("2000000002", "jiro", "notice", None);
    let id = r.json["challenge_id"].as_str().unwrap();
    assert_eq!(fx.fetch(id)["kind"], "notice");
    // Bad kinds and lines.
    assert_eq!(approve(C, "taro", "wire", Some(TX_PASSWORD)).status, 400);
}

// ------------------------------------------------------------ registration

#[test]
fn registration_errors() {
    let w = World::new("");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    w.user(C, "hanako", "user");
    let phone = Phone::provision(&w.s);
    let reg = |uid: &str, password: &str, token: &str, otp1: &str, otp2: &str| {
        w.s.post(
            "/api/v1/registrations",
            &[],
            &json!({"contract_no": C, "user_id": uid, "password": password, "token_id": token, "otp1": otp1, "otp2": otp2}),
        )
    };
    let (a, b) = phone.otps();
    assert_eq!(reg("taro", "wrong-password", &phone.token_id, &a, &b).code(), "bad_credentials");
    assert_eq!(reg("nobody", PASSWORD, &phone.token_id, &a, &b).code(), "bad_credentials");
    assert_eq!(reg("taro", PASSWORD, "ONEP00000000", &a, &b).code(), "token_or_otp_mismatch", "unknown token");
    assert_eq!(reg("taro", PASSWORD, &phone.token_id, &a, &a).code(), "token_or_otp_mismatch", "same OTP twice");
    assert_eq!(reg("taro", PASSWORD, &phone.token_id, &b, &a).code(), "token_or_otp_mismatch", "out of order");
    let r = reg("taro", PASSWORD, &phone.token_id, "12345", &b);
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    let r = reg("taro", PASSWORD, "ONEP12345675", &a, &b);
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("token_id"), "{}", r.text);

    // Tolerant token ID input: spaces, hyphens, lower case.
    let tolerant = format!("{} {}-{}", &phone.token_id[..4].to_lowercase(), &phone.token_id[4..8], &phone.token_id[8..]);
    let r = reg("taro", PASSWORD, &tolerant, &a, &b);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["registration"], "active");
    assert_eq!(r.json["token_id"], phone.token_id.as_str());

    // Replaying the same codes: the user has a phone, and the token is bound.
    assert_eq!(reg("taro", PASSWORD, &phone.token_id, &a, &b).code(), "already_registered");
    assert_eq!(reg("hanako", PASSWORD, &phone.token_id, &a, &b).code(), "token_already_bound");
    // A second phone for the same user.
    let second = Phone::provision(&w.s);
    assert_eq!(second.register(&w.s, C, "taro", PASSWORD).code(), "already_registered");
    assert_eq!(w.s.get(&format!("/api/v1/users/{C}/taro"), &w.rp()).json["token_id"], phone.token_id.as_str());
}

#[test]
fn five_failed_registrations_revoke_the_token() {
    let w = World::new("");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    let phone = Phone::provision(&w.s);
    let (a, b) = phone.otps();
    for _ in 0..5 {
        let r = w.s.post("/api/v1/registrations", &[], &json!({"contract_no": C, "user_id": "taro", "password": PASSWORD, "token_id": phone.token_id, "otp1": "000000", "otp2": "111111"}));
        assert_eq!(r.code(), "token_or_otp_mismatch");
    }
    // Even the right codes cannot use the revoked token now (another user tries).
    w.user(C, "hanako", "user");
    let r = w.s.post(
        "/api/v1/registrations",
        &[],
        &json!({"contract_no": C, "user_id": "hanako", "password": PASSWORD, "token_id": phone.token_id, "otp1": a, "otp2": b}),
    );
    assert_eq!((r.status, r.code()), (422, "token_or_otp_mismatch"), "{}", r.text);
    let r = phone.signed("GET", "/api/v1/device/challenges", None);
    assert_eq!((r.status, r.code()), (403, "token_revoked"));
    // The user's own counter now rate-limits registration, with Retry-After.
    let fresh = Phone::provision(&w.s);
    let r = fresh.register(&w.s, C, "taro", PASSWORD);
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{}", r.text);
    assert!(r.header("retry-after").is_some());
}

#[test]
fn a_revoked_tokens_parked_poll_is_answered_at_once() {
    let w = World::new("");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    let phone = Phone::provision(&w.s);
    let parked = {
        let p = phone.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            (p.signed("GET", "/api/v1/device/challenges?wait=25", None), t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        w.s.post("/api/v1/registrations", &[], &json!({"contract_no": C, "user_id": "taro", "password": PASSWORD, "token_id": phone.token_id, "otp1": "000000", "otp2": "111111"}));
    }
    let (r, took) = parked.join().unwrap();
    assert_eq!((r.status, r.code()), (403, "token_revoked"), "{}", r.text);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

// ------------------------------------------------------------ isolation and auth

#[test]
fn an_rp_sees_only_its_own_challenges() {
    let w = World::new("");
    let _phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let (code, other_key, _) = w.s.cli(&["rp-key", "add", "other-bank"], None);
    assert_eq!(code, 0);
    let other = vec![("Authorization", format!("Bearer {}", other_key.trim()))];
    let r = w.s.get(&format!("/api/v1/challenges/{id}?wait=1"), &other);
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = request("DELETE", &w.s.url(&format!("/api/v1/challenges/{id}")), &other, None);
    assert_eq!(r.status, 404);
    assert_eq!(w.challenge(&id, 0).json["status"], "pending");
    assert_eq!(w.challenge("ch_unknown", 0).status, 404);

    // Missing, wrong and revoked keys.
    assert_eq!(w.s.get(&format!("/api/v1/challenges/{id}"), &[]).code(), "unauthorized");
    let wrong = vec![("Authorization", "Bearer opk_nope".to_string())];
    assert_eq!(w.s.get(&format!("/api/v1/challenges/{id}"), &wrong).status, 401);
    let (code, list, _) = w.s.cli(&["rp-key", "list"], None);
    assert_eq!(code, 0);
    assert!(list.contains("other-bank") && !list.contains(other_key.trim()), "keys are never listed: {list}");
    assert_eq!(w.s.cli(&["rp-key", "revoke", "other-bank"], None).0, 0);
    assert_eq!(w.s.get(&format!("/api/v1/challenges/{id}"), &other).status, 401);
    assert_eq!(w.s.cli(&["rp-key", "revoke", "other-bank"], None).0, 1);
}

#[test]
fn device_requests_must_be_signed_and_fresh() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let url = w.s.url("/api/v1/device/challenges");
    assert_eq!(request("GET", &url, &[], None).code(), "unauthorized");
    // Signed 2 minutes ago.
    let old: Vec<(&str, String)> = phone
        .key
        .headers(&phone.token_id, "GET", "/api/v1/device/challenges", b"", onepush::client::now_secs() - 120)
        .into_iter()
        .collect();
    assert_eq!(request("GET", &url, &old, None).status, 401);
    // Signed for another path.
    let other: Vec<(&str, String)> =
        phone.key.headers(&phone.token_id, "GET", "/api/v1/device/provision", b"", onepush::client::now_secs()).into_iter().collect();
    assert_eq!(request("GET", &url, &other, None).status, 401);
    // Signed by another key.
    let stranger = onepush::client::DeviceKey::generate();
    let forged: Vec<(&str, String)> =
        stranger.headers(&phone.token_id, "GET", "/api/v1/device/challenges", b"", onepush::client::now_secs()).into_iter().collect();
    assert_eq!(request("GET", &url, &forged, None).status, 401);
    assert_eq!(phone.signed("GET", "/api/v1/device/challenges", None).status, 200);
    // An answer naming another token than the signer's.
    let id = w.login_challenge(C, "taro");
    let mut body = phone.key.answer_body(&id, &phone.token_id, "approve", None, &[], false);
    body["token_id"] = json!("ONEP00000000");
    let r = phone.signed("POST", &format!("/api/v1/device/challenges/{id}/response"), Some(&body));
    assert_eq!(r.status, 400);
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("token_id"));
}

#[test]
fn provisioning_checks_the_key_proof_and_rate() {
    let s = Server::start("");
    let key = onepush::client::DeviceKey::generate();
    let mut body = key.provision_body(None, None);
    body["proof"] = json!(key.sign("something else"));
    let r = s.post("/api/v1/device/provision", &[], &body);
    assert_eq!(r.status, 400);
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("proof"));
    let r = s.post("/api/v1/device/provision", &[], &json!({"public_key": "AAAA", "proof": "AAAA"}));
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("public_key"));
    let r = s.post("/api/v1/device/provision", &[], &key.provision_body(Some("a\u{0007}b"), None));
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("label"));
    let r = s.post("/api/v1/device/provision", &[], &key.provision_body(None, None));
    assert_eq!(r.status, 201);
    assert_eq!(r.json["otp_algorithm"], "SHA1");
    assert_eq!(r.json["otp_digits"], 6);
    assert_eq!(r.json["otp_period"], 30);
    assert_eq!(r.json["otp_secret"].as_str().unwrap().len(), 32);
    let id = r.json["token_id"].as_str().unwrap();
    assert!(onepush::domain::ids::TokenId::parse(id, "ONEP").is_ok());
    // A public key is provisioned once: the same body replayed (a captured
    // provisioning request) makes no second token.
    let r = s.post("/api/v1/device/provision", &[], &key.provision_body(None, None));
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.text);
    let mut limited = None;
    for _ in 0..30 {
        let r = s.post("/api/v1/device/provision", &[], &onepush::client::DeviceKey::generate().provision_body(None, None));
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("per-address provisioning rate applies");
    assert_eq!(r.code(), "rate_limited");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 0);
}

// ------------------------------------------------------------ bad input

#[test]
fn bad_input_gets_clear_errors_and_never_breaks_the_server() {
    let w = World::new("");
    let _phone = w.registered(C, "jweb", "taro");
    let login = w.s.url("/api/v1/login");
    let rp = w.rp();
    let send = |ct: &str, body: &[u8]| request("POST", &login, &rp, Some((ct, body.to_vec())));

    let r = send("application/json", b"{\"contract_no\": ");
    assert_eq!((r.status, r.code()), (400, "bad_request"), "{}", r.text);
    let r = send("text/plain", b"{}");
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type"));
    let r = send("application/x-www-form-urlencoded", b"contract_no=1");
    assert_eq!(r.status, 415);
    let big = vec![b' '; 70 * 1024];
    let r = send("application/json", &big);
    assert_eq!((r.status, r.code()), (413, "body_too_large"));
    let r = send("application/json", br#"{"contract_no": "1000000001", "password": "login-pass-1"}"#);
    assert_eq!(r.status, 400);
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("user_id"), "{}", r.text);
    let r = send("application/json", br#"{"contract_no": "10-01", "user_id": "taro", "password": "login-pass-1"}"#);
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("contract_no"), "{}", r.text);
    let r = send("application/json", br#"{"contract_no": "1000000001", "user_id": "taro", "password": "short"}"#);
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("password"), "{}", r.text);
    let r = send("application/json", br#"{"contract_no": "1000000001", "user_id": "taro", "password": "login-pass-1", "extra": 1}"#);
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("extra"), "{}", r.text);
    let r = send("application/json", br#"[1, 2, 3]"#);
    assert_eq!(r.status, 400);
    let r = send("application/json", b"\xff\xfe");
    assert_eq!(r.status, 400);

    let approval = |display: Value| {
        w.s.post(
            "/api/v1/approvals",
            &w.rp(),
            &json!({"contract_no": C, "user_id": "taro", "kind": "notice", "transaction_password": TX_PASSWORD, "display": display}),
        )
    };
    let r = approval(json!([["Amount", "JPY\u{0000}1"]]));
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("display[0] value"), "{}", r.text);
    let r = approval(json!([["Amo\nunt", "1"]]));
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("display[0] label"), "{}", r.text);
    // Unicode format characters (category Cf) could make the phone show
    // something other than what is signed.
    for cf in ["\u{202e}", "\u{2066}", "\u{200b}", "\u{feff}", "\u{00ad}"] {
        let r = approval(json!([["Payee", format!("Mito{cf}Trading")]]));
        assert_eq!(r.status, 400, "{cf:?}: {}", r.text);
        assert!(r.json["error"]["message"].as_str().unwrap().starts_with("display[0] value"), "{}", r.text);
        let r = approval(json!([["Amount", "1"], [format!("Pay{cf}ee"), "x"]]));
        assert!(r.json["error"]["message"].as_str().unwrap().starts_with("display[1] label"), "{}", r.text);
    }

    let thirteen: Vec<Value> = (0..13).map(|i| json!([format!("L{i}"), "v"])).collect();
    let r = approval(Value::Array(thirteen));
    assert!(r.json["error"]["message"].as_str().unwrap().contains("at most 12"), "{}", r.text);
    let r = approval(json!([["x".repeat(41), "v"]]));
    assert_eq!(r.status, 400);
    let r = approval(json!([["Amount"]]));
    assert_eq!(r.status, 400);
    let r = w.s.get("/api/v1/challenges/x?wait=abc", &w.rp());
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("wait"));
    assert_eq!(w.s.get("/nope", &[]).status, 404);
    let r = request("PUT", &w.s.url("/api/v1/login"), &[], None);
    assert_eq!((r.status, r.code(), r.header("Allow")), (405, "method_not_allowed", Some("POST")), "{}", r.text);

    // Nothing half-written, and the server still answers a normal login.
    assert_eq!(w.login(C, "taro", PASSWORD).json["result"], "challenge");
    let (code, out, _) = w.s.cli(&["audit", "verify"], None);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn wait_is_clamped_and_answers_pending_at_its_deadline() {
    let w = World::new("max_wait = \"1s\"");
    let _phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let t = Instant::now();
    let r = w.challenge(&id, 3600);
    assert_eq!(r.json["status"], "pending");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "took {took:?}");
}

// ------------------------------------------------------------ operators, CLI, public

#[test]
fn admin_api_needs_a_session() {
    let w = World::new("");
    let r = w.s.post("/api/v1/admin/contracts", &[], &json!({"contract_no": C, "name": "x", "edition": "jweb"}));
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    let r = w.s.post("/api/v1/admin/session", &[], &json!({"username": "alice", "password": "wrong-pass-1"}));
    assert_eq!(r.status, 401);
    let r = w.s.post("/api/v1/admin/session", &[], &json!({"username": "alice", "password": "operator-pass-1"}));
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains("Secure"), "{cookie}");
    w.contract(C, "jweb");
    let r = w.s.post("/api/v1/admin/contracts", &w.admin(), &json!({"contract_no": C, "name": "x", "edition": "jweb"}));
    assert_eq!((r.status, r.code()), (409, "conflict"));
    let r = w.s.post("/api/v1/admin/contracts", &w.admin(), &json!({"contract_no": "2", "name": "x", "edition": "gold"}));
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("edition"));
    w.user(C, "taro", "service_admin");
    let r = w.s.post(
        &format!("/api/v1/admin/contracts/{C}/users"),
        &w.admin(),
        &json!({"user_id": "taro", "name": "T", "role": "user", "password": PASSWORD}),
    );
    assert_eq!(r.status, 409);
    let r = w.s.post(
        "/api/v1/admin/contracts/404/users",
        &w.admin(),
        &json!({"user_id": "x", "name": "T", "role": "user", "password": PASSWORD}),
    );
    assert_eq!(r.status, 404);
    let r = w.s.post(
        &format!("/api/v1/admin/contracts/{C}/users"),
        &w.admin(),
        &json!({"user_id": "y", "name": "T", "role": "boss", "password": PASSWORD}),
    );
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("role"));
    let u = w.s.get(&format!("/api/v1/users/{C}/taro"), &w.rp()).json;
    assert_eq!(u["role"], "service_admin");
    assert_eq!(w.s.get(&format!("/api/v1/users/{C}/ghost"), &w.rp()).status, 404);
    // Logout ends the session.
    let r = request("DELETE", &w.s.url("/api/v1/admin/session"), &w.admin(), None);
    assert_eq!(r.status, 200);
    let r = w.s.post("/api/v1/admin/contracts", &w.admin(), &json!({"contract_no": "3", "name": "x", "edition": "jweb"}));
    assert_eq!(r.status, 401);
}

#[test]
fn a_failed_sign_in_is_audited_with_the_name_cut_to_64_characters() {
    let w = World::new("");
    let long = "ゆ".repeat(20_000);
    let r = w.s.post("/api/v1/admin/session", &[], &json!({"username": long, "password": "wrong-pass-1"}));
    assert_eq!(r.status, 401);
    let entry = audit_lines(&w.s).into_iter().rev().find(|e| e["type"] == "operator_login").expect("the sign-in is audited");
    assert_eq!(entry["detail"]["ok"], false);
    assert_eq!(entry["detail"]["username"].as_str().unwrap().chars().count(), 64, "{entry}");
}

#[test]
fn an_rp_key_scoped_to_an_edition_sees_only_that_editions_contracts() {
    let w = World::new("");
    let jweb_phone = w.registered(C, "jweb", "taro");
    w.user(C, "admin1", "service_admin");
    let fx_phone = w.registered("2000000002", "fx", "jiro");
    let (code, out, err) = w.s.cli(&["rp-key", "add", "fx-server", "--edition", "fx"], None);
    assert_eq!(code, 0, "{err}");
    let fx = vec![("Authorization", format!("Bearer {}", out.trim()))];
    let (_, list, _) = w.s.cli(&["rp-key", "list"], None);
    assert!(list.lines().any(|l| l.starts_with("fx-server") && l.ends_with("editions fx")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("bank") && l.ends_with("every edition")), "{list}");
    // On a jweb contract: as if it did not exist.
    let r = w.s.post("/api/v1/login", &fx, &json!({"contract_no": C, "user_id": "taro", "password": PASSWORD}));
    assert_eq!(r.json, json!({"result": "deny", "reason": "bad_credentials"}), "{}", r.text);
    let r = w.s.post("/api/v1/approvals", &fx, &json!({"contract_no": C, "user_id": "taro", "kind": "notice", "display": [["a", "b"]]}));
    assert_eq!(r.json["result"], "deny", "{}", r.text);
    assert_eq!(w.s.get(&format!("/api/v1/users/{C}/taro"), &fx).status, 404);
    let r = w.s.post(&format!("/api/v1/users/{C}/taro/deregister"), &fx, &json!({"actor_user_id": "admin1", "reason": "x"}));
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(w.s.get(&format!("/api/v1/users/{C}/taro"), &w.rp()).json["registration"], "active", "nothing changed");
    // The jweb challenge of another key is not its either.
    let id = w.login_challenge(C, "taro");
    assert_eq!(w.s.get(&format!("/api/v1/challenges/{id}"), &fx).status, 404);
    assert_eq!(request("DELETE", &w.s.url(&format!("/api/v1/challenges/{id}")), &fx, None).status, 404);
    assert_eq!(jweb_phone.answer(&jweb_phone.fetch(&id), "approve").json["status"], "approved");
    // On its own edition it works.
    let r = w.s.post("/api/v1/login", &fx, &json!({"contract_no": "2000000002", "user_id": "jiro", "password": PASSWORD}));
    let id = r.json["challenge_id"].as_str().unwrap_or_else(|| panic!("{}", r.text)).to_string();
    assert_eq!(w.s.get(&format!("/api/v1/challenges/{id}"), &fx).json["status"], "pending");
    assert_eq!(fx_phone.answer(&fx_phone.fetch(&id), "approve").json["status"], "approved");
    assert_eq!(w.s.get("/api/v1/users/2000000002/jiro", &fx).status, 200);
    // An edition the config does not know is refused, naming the flag.
    let (code, _, err) = w.s.cli(&["rp-key", "add", "gold", "--edition", "gold"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--edition"), "{err}");
}

#[test]
fn the_demo_acts_only_on_its_own_contracts_and_only_on_loopback() {
    // A bank's own contract with a demo contract's number is never touched.
    let mut s = Server::start("");
    let (rc, _, err) = s.cli(&["operator", "add", "alice", "--password-stdin"], Some("operator-pass-1\n"));
    assert_eq!(rc, 0, "{err}");
    let r = s.post("/api/v1/admin/session", &[], &json!({"username": "alice", "password": "operator-pass-1"}));
    let admin = vec![("Cookie", r.header("set-cookie").unwrap().split(';').next().unwrap().to_string())];
    for no in ["1000000001", "3000000003"] {
        assert_eq!(
            s.post("/api/v1/admin/contracts", &admin, &json!({"contract_no": no, "name": "Bank's own", "edition": "jweb"})).status,
            201
        );
        let r = s.post(
            &format!("/api/v1/admin/contracts/{no}/users"),
            &admin,
            &json!({"user_id": "taro", "name": "T", "role": "service_admin", "password": PASSWORD}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    s.kill();
    s.serve_args = vec!["--demo".into()];
    s.respawn();
    for no in ["1000000001", "3000000003"] {
        let r = s.post("/demo/api/login", &[], &json!({"contract_no": no, "user_id": "taro", "password": PASSWORD}));
        assert_eq!(r.json, json!({"result": "deny", "reason": "bad_credentials"}), "{no}: {}", r.text);
        assert_eq!(s.get(&format!("/demo/api/users/{no}/taro"), &[]).status, 404, "{no}");
        let r = s.post(&format!("/demo/api/users/{no}/taro/deregister"), &[], &json!({"actor_user_id": "taro", "reason": "x"}));
        assert_eq!(r.status, 404, "{no}: {}", r.text);
    }
    // Its own FX contract works (jiro, published password demo-pass-3).
    let r = s.post("/demo/api/login", &[], &json!({"contract_no": "2000000002", "user_id": "jiro", "password": "demo-pass-3"}));
    assert_eq!(r.json["result"], "allow", "{}", r.text);
    // Without --demo, the demo contracts left in the store are named at start.
    s.kill();
    s.serve_args = vec![];
    s.respawn();
    assert!(s.log().contains("demo contracts 2000000002"), "{}", s.log());
    // --demo never listens beyond loopback.
    let bad = s.dir.join("public.toml");
    std::fs::write(&bad, format!("listen = \"0.0.0.0:0\"\ndata_dir = \"{}\"\n", s.dir.join("other").display())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onepush")).args(["serve", "--demo", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn head_on_the_device_poll_delivers_nothing() {
    let w = World::new("challenge_ttl = \"2s\"\nsweep_interval = \"200ms\"\n");
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let r = phone.signed("HEAD", "/api/v1/device/challenges?wait=5", None);
    assert_eq!(r.status, 200);
    // Never fetched, so it closes as undelivered, not expired.
    let status = eventually("the challenge closes", 10, || {
        let s = w.challenge(&id, 0).json["status"].as_str().unwrap_or("").to_string();
        (s != "pending").then_some(s)
    });
    assert_eq!(status, "undelivered");
}

#[test]
fn demo_is_not_an_rp_key_name() {
    let s = Server::start("");
    let (code, _, err) = s.cli(&["rp-key", "add", "demo"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("demo"), "{err}");
}

#[test]
fn public_endpoints() {
    let s = Server::start("");
    assert_eq!(s.get("/healthz", &[]).status, 200);
    let st = s.get("/api/v1/status", &[]);
    assert_eq!(st.json["push_suspended"], false);
    assert!(st.json["server_time"].as_str().unwrap().ends_with('Z'));
    let doc = s.get("/api/openapi.json", &[]).json;
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let m = s.get("/metrics", &[]);
    assert!(m.text.contains("# TYPE onepush_challenges_closed_total counter"));
    let r = s.get("/", &[]);
    assert!(r.header("content-security-policy").unwrap().contains("script-src 'self'"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
}

/// The value of an unlabelled series in `/metrics` text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} is not in /metrics:\n{text}"))
}

#[test]
fn metrics_show_latencies_sweeper_lag_and_store_size() {
    let w = World::new("challenge_ttl = \"2s\"");
    let phone = w.registered(C, "jweb", "taro");
    // A decision that wakes a parked RP waiter.
    let id = w.login_challenge(C, "taro");
    let (url, rp) = (w.s.url(&format!("/api/v1/challenges/{id}?wait=10")), w.rp());
    let waiter = std::thread::spawn(move || request("GET", &url, &rp, None));
    eventually("the RP waiter parked", 10, || {
        (metric(&w.s.get("/metrics", &[]).text, "onepush_parked_requests{side=\"rp\"}") == 1.0).then_some(())
    });
    assert_eq!(phone.answer(&phone.fetch(&id), "approve").status, 200);
    assert_eq!(waiter.join().unwrap().json["status"], "approved");
    // One the sweeper closes, with the RP parked on it too.
    let late = w.login_challenge(C, "taro");
    assert_eq!(w.challenge(&late, 10).json["status"], "undelivered");
    // The sweeper counts its lag after the commit that woke the RP.
    let m = eventually("the sweep counted", 10, || {
        let m = w.s.get("/metrics", &[]).text;
        (metric(&m, "onepush_sweeper_lag_seconds_count") > 0.0 && metric(&m, "onepush_wake_latency_seconds_count") > 1.0).then_some(m)
    });
    assert!(metric(&m, "onepush_store_bytes") > 0.0);
    assert_eq!(metric(&m, "onepush_decision_latency_seconds_count"), 1.0, "challenge created to answered");
    assert_eq!(metric(&m, "onepush_wake_latency_seconds_count"), 2.0, "the approval and the sweeper's close, each to its parked RP waiter");
    assert_eq!(metric(&m, "onepush_sweeper_lag_seconds_count"), 1.0, "expires_at to closed");
    assert!(metric(&m, "onepush_sweeper_lag_seconds_sum") < 1.0);
    assert!(metric(&m, "onepush_store_commits_total") > 0.0);
    assert!(metric(&m, "onepush_store_commit_seconds_count") >= metric(&m, "onepush_store_commits_total"));
}

#[test]
fn cli_config_check_and_exit_codes() {
    let dir = std::env::temp_dir().join(format!("onepush-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        format!("data_dir = \"{}\"\nchallenge_ttl = \"90s\"\n[editions.fx]\npush_on_transaction = true\n", dir.join("d").display()),
    )
    .unwrap();
    assert_eq!(cli(&good, &["config", "check"], None).0, 0);
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "challenge_tll = \"90s\"\n").unwrap();
    let (code, _, err) = cli(&bad, &["config", "check"], None);
    assert_eq!(code, 2);
    assert!(err.contains("challenge_tll"), "{err}");
    std::fs::write(&bad, "grace_period = \"a month\"\n").unwrap();
    let (code, _, err) = cli(&bad, &["serve"], None);
    assert_eq!(code, 2);
    assert!(err.contains("grace_period"), "{err}");
    // A duration that would carry a date past year 9999 (it used to panic the
    // store's writer at the first suspension) is refused at load.
    std::fs::write(&bad, "grace_period = \"10000years\"\n").unwrap();
    let (code, _, err) = cli(&bad, &["serve"], None);
    assert_eq!(code, 2);
    assert!(err.contains("grace_period") && err.contains("too long"), "{err}");
    // Management commands work with no server running, too.
    let (code, out, _) = cli(&good, &["rp-key", "add", "bank"], None);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "the key alone on its line");
    let (code, out, _) = cli(&good, &["audit", "verify"], None);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = cli(&good, &["operator", "add", "x y", "--password-stdin"], Some("operator-pass-1"));
    assert_eq!(code, 2, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------ durability and architecture

#[test]
fn decisions_and_registrations_survive_kill_9() {
    let mut w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let ch = phone.fetch(&id);
    assert_eq!(phone.answer(&ch, "approve").json["status"], "approved");
    w.s.crash_and_restart();
    assert_eq!(w.challenge(&id, 0).json["status"], "approved");
    assert_eq!(w.s.get(&format!("/api/v1/users/{C}/taro"), &w.rp()).json["registration"], "active");
    let (code, out, err) = w.s.cli(&["audit", "verify"], None);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn parked_phones_hold_no_threads_and_logins_go_on() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let before = w.s.threads();
    let mut parked = Vec::new();
    for _ in 0..200 {
        let p = phone.clone();
        parked.push(std::thread::spawn(move || p.signed("GET", "/api/v1/device/challenges?wait=20", None)));
    }
    let m = eventually("200 parked polls", 20, || {
        let text = w.s.get("/metrics", &[]).text;
        text.contains("onepush_parked_requests{side=\"device\"} 200").then_some(text)
    });
    assert!(!m.is_empty());
    // tiny_http's pool may spawn threads for a burst of connections; idle ones
    // leave after 5 s. Parked requests must not keep any of them.
    eventually("the pool to shrink back while 200 polls stay parked", 20, || (w.s.threads() < before + 10).then_some(()));
    assert!(w.s.get("/metrics", &[]).text.contains("onepush_parked_requests{side=\"device\"} 200"));
    // A login is answered at once, and every parked poll gets the challenge.
    let t = Instant::now();
    let id = w.login_challenge(C, "taro");
    assert!(t.elapsed() < Duration::from_secs(1));
    for p in parked {
        let r = p.join().unwrap();
        assert_eq!(r.json["challenges"][0]["challenge_id"], id.as_str(), "{}", r.text);
    }
}

#[test]
fn no_secrets_in_logs() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    w.login(C, "taro", "wrong-password");
    let id = w.login_challenge(C, "taro");
    let ch = phone.fetch(&id);
    phone.answer(&ch, "approve");
    let log = w.s.log();
    assert!(log.contains("POST /api/v1/login 200"), "one line per request: {log}");
    for secret in [PASSWORD, "wrong-password", "operator-pass-1", w.rp_key.as_str(), phone.secret.as_str()] {
        assert!(!log.contains(secret), "the log shows a secret");
    }
}

#[test]
fn registration_of_a_locked_user_is_refused() {
    let w = World::new("");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    for _ in 0..5 {
        w.login(C, "taro", "wrong-password");
    }
    let phone = Phone::provision(&w.s);
    // A wrong password does not learn that the account is locked ...
    let r = phone.register(&w.s, C, "taro", "wrong-password");
    assert_eq!((r.status, r.code()), (401, "bad_credentials"), "{}", r.text);
    // ... the right one does.
    let r = phone.register(&w.s, C, "taro", PASSWORD);
    assert_eq!((r.status, r.code()), (403, "password_locked"), "{}", r.text);
}

#[test]
fn registrations_with_wrong_credentials_never_count_against_the_token() {
    let w = World::new("");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    let victim = Phone::provision(&w.s);
    // A stranger names the victim's new token with unknown contracts, unknown
    // users and wrong passwords, more often than the token's failure limit.
    for (no, uid, pw) in [("9999999999", "taro", PASSWORD), (C, "ghost", PASSWORD), (C, "taro", "wrong-password")] {
        for _ in 0..3 {
            let r = victim.register(&w.s, no, uid, pw);
            assert_eq!((r.status, r.code()), (401, "bad_credentials"), "{}", r.text);
        }
    }
    // The token is still good: its owner registers with it.
    let r = victim.register(&w.s, C, "taro", PASSWORD);
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn registrations_are_limited_per_client_address() {
    let w = World::new("");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    let phone = Phone::provision(&w.s);
    let mut limited = None;
    for i in 0..25 {
        let r = phone.register(&w.s, C, &format!("user{i}"), PASSWORD);
        if r.status == 429 {
            limited = Some((i, r));
            break;
        }
    }
    let (i, r) = limited.expect("a per-address limit on registrations");
    assert_eq!(i, 20, "20 attempts per 10 minutes, then 429");
    assert_eq!(r.code(), "rate_limited");
    assert!(r.header("Retry-After").is_some());
}

#[test]
fn the_device_api_answers_an_unknown_token_and_a_bad_signature_alike() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let unknown = {
        let mut p = Phone::provision(&w.s);
        p.token_id = "ONEP00000000".into();
        p.signed("GET", "/api/v1/device/challenges", None)
    };
    let mut forged = phone.clone();
    forged.key = onepush::client::DeviceKey::generate();
    let bad_sig = forged.signed("GET", "/api/v1/device/challenges", None);
    assert_eq!((unknown.status, unknown.code()), (401, "unauthorized"));
    assert_eq!((bad_sig.status, bad_sig.code()), (401, "unauthorized"));
    assert_eq!(unknown.json["error"]["message"], bad_sig.json["error"]["message"]);
}

#[test]
fn an_edited_audit_entry_is_found_and_named() {
    let mut w = World::new(EMBEDDED);
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let ch = phone.fetch(&id);
    phone.answer(&ch, "approve");
    assert_eq!(w.s.cli(&["audit", "verify"], None).0, 0);
    w.s.kill();
    {
        // Someone with the file rewrites entry 3's actor.
        let store = onepush::store::Store::open(&w.s.store_path()).unwrap();
        let writer = store.writer();
        writer
            .call(onepush::store::Durability::Durable, |tx| {
                use onepush::store::Reader;
                let mut e = tx.audit_after(2, 1)?.remove(0);
                e.actor = "operator:mallory".into();
                tx.overwrite_audit_for_test(&e)
            })
            .unwrap();
    }
    let (code, _, err) = eventually("the store to be released", 10, || {
        let r = w.s.cli(&["audit", "verify"], None);
        (!r.2.contains("in use")).then_some(r)
    });
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("entry 3"), "{err}");
}

/// A server's data directory after some activity, copied (store and keys)
/// for a tamper test; returns the copy and the number of audit entries.
fn copy_of_a_real_store(w: &mut World) -> (std::path::PathBuf, u64) {
    let phone = w.registered(C, "jweb", "taro");
    for _ in 0..2 {
        let id = w.login_challenge(C, "taro");
        let ch = phone.fetch(&id);
        phone.answer(&ch, "approve");
    }
    let (code, out, err) = w.s.cli(&["audit", "verify"], None);
    assert_eq!(code, 0, "{err}");
    let n: u64 = out.trim().trim_start_matches("audit log intact: ").trim_end_matches(" entries").parse().unwrap();
    assert!(n >= 8, "{out}");
    w.s.kill();
    let copy = w.s.dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["onepush.redb", "secret.key", "audit.key"] {
        std::fs::copy(w.s.dir.join("data").join(f), copy.join(f)).unwrap();
    }
    (copy, n)
}

/// Rewrites the audit log of a stopped store as someone with the file but
/// without the audit key can.
fn tamper(store: &std::path::Path, f: impl FnMut(&mut onepush::store::WriteTx) -> onepush::error::Result<()> + Send + 'static) {
    {
        let s = onepush::store::Store::open(store).unwrap();
        s.writer().call(onepush::store::Durability::Durable, f).unwrap();
    }
    // The writer thread lets the file go when it sees its queue closed.
    eventually("the store to be released", 10, || onepush::store::Store::open(store).ok());
}

#[test]
fn a_cut_off_audit_log_is_found_even_after_new_entries() {
    let mut w = World::new(EMBEDDED);
    let (copy, n) = copy_of_a_real_store(&mut w);
    let data = copy.to_str().unwrap();
    tamper(&copy.join("onepush.redb"), move |tx| (n - 3..=n).try_for_each(|seq| tx.remove_audit_for_test(seq)));
    let (code, _, err) = w.s.cli(&["--data", data, "audit", "verify"], None);
    assert_eq!(code, 1, "{err}");
    let missing = format!("entries {}..{n} are missing", n - 3);
    assert!(err.contains(&missing) && err.contains("truncated"), "{err}");
    // New entries, signed with the key, do not wash the cut away.
    let (code, _, err2) = w.s.cli(&["--data", data, "rp-key", "add", "later"], None);
    assert_eq!(code, 0, "{err2}");
    let (code, _, err) = w.s.cli(&["--data", data, "audit", "verify"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&missing), "{err}");
}

#[test]
fn an_audit_chain_recomputed_without_the_key_is_found() {
    let mut w = World::new(EMBEDDED);
    let (copy, n) = copy_of_a_real_store(&mut w);
    tamper(&copy.join("onepush.redb"), |tx| {
        use onepush::store::Reader;
        let mut all = tx.audit_after(0, 100_000)?;
        all[2].actor = "operator:mallory".into();
        for i in 2..all.len() {
            if i > 2 {
                all[i].prev_hash = all[i - 1].hash.clone();
            }
            all[i].hash = all[i].compute_hash();
            tx.overwrite_audit_for_test(&all[i])?;
        }
        Ok(())
    });
    let (code, _, err) = w.s.cli(&["--data", copy.to_str().unwrap(), "audit", "verify"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("entry {n}")) && err.contains("rewritten"), "{err}");
}

#[test]
fn audit_verify_without_a_server_writes_nothing_and_needs_the_key() {
    let mut w = World::new(EMBEDDED);
    let (copy, n) = copy_of_a_real_store(&mut w);
    let data = copy.to_str().unwrap();
    let key = copy.join("audit.key");
    std::fs::rename(&key, copy.join("kept.key")).unwrap();
    let (code, _, err) = w.s.cli(&["--data", data, "audit", "verify"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("audit.key"), "{err}");
    assert!(!key.exists(), "a check must not make a key (nor sign anything with it)");
    std::fs::rename(copy.join("kept.key"), &key).unwrap();
    let before = w.s.cli(&["--data", data, "audit", "export"], None).1;
    let (code, out, err) = w.s.cli(&["--data", data, "audit", "verify"], None);
    assert_eq!((code, out.trim()), (0, format!("audit log intact: {n} entries").as_str()), "{err}");
    assert_eq!(w.s.cli(&["--data", data, "audit", "export"], None).1, before, "the log and its signed head as they were");
}

#[test]
fn a_store_from_before_signed_heads_verifies_and_is_signed_at_its_first_start() {
    let mut w = World::new(EMBEDDED);
    let (copy, n) = copy_of_a_real_store(&mut w);
    let data = copy.to_str().unwrap();
    tamper(&copy.join("onepush.redb"), |tx| {
        tx.remove_meta_for_test("audit_signed_head")?;
        tx.remove_meta_for_test("audit_signing_started")
    });
    // As an older version left it: the chain is checked, there is no head yet.
    let (code, out, err) = w.s.cli(&["--data", data, "audit", "verify"], None);
    assert_eq!((code, out.trim()), (0, format!("audit log intact: {n} entries").as_str()), "{err}");
    // Its first start signs the head; from then on a missing head is a break.
    assert_eq!(w.s.cli(&["--data", data, "rp-key", "add", "later"], None).0, 0);
    let (code, export, _) = w.s.cli(&["--data", data, "audit", "export"], None);
    assert_eq!(code, 0);
    assert!(export.lines().last().unwrap().contains("signed_head"), "{export}");
    tamper(&copy.join("onepush.redb"), |tx| tx.remove_meta_for_test("audit_signed_head"));
    let (code, _, err) = w.s.cli(&["--data", data, "audit", "verify"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no signed head"), "{err}");
}

#[test]
fn an_export_ends_with_its_signed_head_and_is_checked_with_the_public_key_alone() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    phone.answer(&phone.fetch(&id), "approve");
    let (code, export, err) = w.s.cli(&["audit", "export"], None);
    assert_eq!(code, 0, "{err}");
    let last: Value = serde_json::from_str(export.lines().last().unwrap()).unwrap();
    let n = export.lines().count() - 1;
    assert_eq!(last["signed_head"]["seq"], n as u64, "{last}");
    let (code, key, err) = w.s.cli(&["audit", "public-key"], None);
    assert_eq!(code, 0, "{err}");
    let key = key.trim().to_string();
    assert_eq!(key.len(), 43, "{key}");
    let file = w.s.dir.join("export.jsonl");
    let check = |text: &str, key: &str| {
        std::fs::write(&file, text).unwrap();
        w.s.cli(&["audit", "verify", "--public-key", key, file.to_str().unwrap()], None)
    };
    let (code, out, err) = check(&export, &key);
    assert_eq!((code, out.trim()), (0, format!("audit export intact: {n} entries, signed head verified").as_str()), "{err}");
    // The last entry cut out of the export.
    let lines: Vec<&str> = export.lines().collect();
    let cut = format!("{}\n{}\n", lines[..n - 1].join("\n"), lines[n]);
    let (code, _, err) = check(&cut, &key);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("entries {n}..{n} are missing")), "{err}");
    // Another appliance's key.
    let other = w.s.cli(&["--data", w.s.dir.join("other").to_str().unwrap(), "rp-key", "add", "x"], None);
    assert_eq!(other.0, 0, "{}", other.2);
    let (_, other_key, _) = w.s.cli(&["--data", w.s.dir.join("other").to_str().unwrap(), "audit", "public-key"], None);
    let (code, _, err) = check(&export, other_key.trim());
    assert_eq!(code, 1);
    assert!(err.contains("signature"), "{err}");
    // The journal holds the anchors: the head and the public key, logged at start and every 10 minutes.
    assert!(w.s.log().contains(&format!("(audit public key {key})")), "{}", w.s.log());
}

#[test]
fn the_server_exits_non_zero_when_its_accept_loop_dies() {
    // Out of descriptors, tiny_http either sees accept() fail (its loop ends)
    // or accepts the last one and panics cloning it (its thread dies and the
    // loop hangs). Which one depends on the parity of the descriptors left,
    // so both limits run.
    for limit in [48, 49] {
        exits_1_out_of_descriptors(limit);
    }
}

fn exits_1_out_of_descriptors(limit: libc::rlim_t) {
    use std::os::unix::process::CommandExt;
    let s = Server::start("");
    let dir = s.dir.clone();
    let config = s.config.clone();
    drop(s);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&config, format!("listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n", dir.join("data").display())).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_onepush"));
    cmd.args(["serve", "--config"]).arg(&config).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit in the child before exec; no allocation.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let addr = lines.next().unwrap().unwrap().trim_start_matches("onepush listening on http://").to_string();
    std::thread::spawn(move || for _ in lines {});
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    // Idle keep-alive connections use up the descriptors.
    let mut conns = Vec::new();
    for _ in 0..40 {
        if let Ok(c) = std::net::TcpStream::connect(&addr) {
            conns.push(c);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit (limit {limit})");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(1), "exit 1, for systemd to restart it (limit {limit}):\n{log}");
    assert!(log.contains("exiting so that the service manager restarts onepush"), "limit {limit}:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_user_costs_what_a_wrong_password_costs() {
    let p = onepush::passwords::Passwords::new(4096, 2).unwrap();
    let h = p.hash("right-password").unwrap();
    let once = |hash: Option<&str>| {
        let t = Instant::now();
        assert!(!p.verify(hash, "wrong-password"));
        t.elapsed()
    };
    // Interleaved, so that both see the same load from the tests around them.
    let (mut u, mut w) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        u.push(once(None));
        w.push(once(Some(&h)));
    }
    u.sort();
    w.sort();
    let (unknown, wrong) = (u[7], w[7]);
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    // Without the dummy verification an unknown user would answer ~1000x faster.
    assert!((0.5..2.0).contains(&ratio), "unknown {unknown:?} vs wrong {wrong:?}");
}

#[test]
fn the_first_operator_comes_from_the_one_time_code() {
    let s = Server::start("");
    let code = s.bootstrap_code.clone().expect("serve prints a one-time code while no operator exists");
    let body = |code: &str| json!({"code": code, "username": "alice", "password": "operator-pass-1"});
    let r = s.post("/api/v1/admin/bootstrap", &[], &body("AAAA-BBBB-CCCC-DDDD"));
    assert_eq!(r.status, 401);
    let r = s.post("/api/v1/admin/bootstrap", &[], &json!({"code": code, "username": "alice", "password": "short"}));
    assert_eq!(r.status, 400, "a bad password does not spend the code");
    let r = s.post("/api/v1/admin/bootstrap", &[], &body(&code.to_lowercase()));
    assert_eq!(r.status, 201, "{}", r.text);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let r = s.post("/api/v1/admin/contracts", &[("Cookie", cookie)], &json!({"contract_no": "1", "name": "x", "edition": "jweb"}));
    assert_eq!(r.status, 201, "signed in at once");
    assert_eq!(s.post("/api/v1/admin/bootstrap", &[], &body(&code)).code(), "conflict", "one time only");
    let events = s.cli(&["audit", "export"], None).1;
    assert!(events.contains("\"actor\":\"bootstrap\""), "{events}");
    assert!(!s.dir.join("data/bootstrap.code").exists(), "the code file goes once used");
}

#[test]
fn the_one_time_code_is_not_in_the_log_and_ends_when_any_operator_exists() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start("");
    let code = s.bootstrap_code.clone().expect("a one-time code while no operator exists");
    // Not on a terminal (as under systemd): in a 0600 file, not in the log.
    let file = s.dir.join("data/bootstrap.code");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!s.log().contains(&code), "the journal would keep it");
    // The first operator made another way (the CLI, through the running
    // server) ends the code: it cannot make a second one.
    let (rc, _, err) = s.cli(&["operator", "add", "alice", "--password-stdin"], Some("operator-pass-1\n"));
    assert_eq!(rc, 0, "{err}");
    let r = s.post("/api/v1/admin/bootstrap", &[], &json!({"code": code, "username": "mallory", "password": "operator-pass-2"}));
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.text);
    assert!(!file.exists());
}

#[test]
fn the_one_time_code_expires_after_bootstrap_ttl() {
    let s = Server::start("bootstrap_ttl = \"1s\"\n");
    let code = s.bootstrap_code.clone().unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    let r = s.post("/api/v1/admin/bootstrap", &[], &json!({"code": code, "username": "alice", "password": "operator-pass-1"}));
    assert_eq!((r.status, r.code()), (409, "conflict"), "{}", r.text);
    assert!(r.json["error"]["message"].as_str().unwrap().contains("expired"), "{}", r.text);
}

#[test]
fn a_copy_of_the_store_alone_reveals_no_otp_secret() {
    let mut s = Server::start(EMBEDDED);
    let key = onepush::client::DeviceKey::generate();
    let r = s.post("/api/v1/device/provision", &[], &key.provision_body(None, None));
    let b32 = r.json["otp_secret"].as_str().unwrap().to_string();
    let raw = data_encoding::BASE32_NOPAD.decode(b32.as_bytes()).unwrap();
    s.kill();
    let db = std::fs::read(s.store_path()).unwrap();
    let json_form = serde_json::to_string(&raw).unwrap(); // how a plain Vec<u8> would be stored
    for (what, needle) in [("raw bytes", raw.clone()), ("base32", b32.into_bytes()), ("JSON array", json_form.into_bytes())] {
        assert!(!db.windows(needle.len()).any(|w| w == needle.as_slice()), "the store holds the OTP secret as {what}");
    }
    // The key is its own file, 0600.
    use std::os::unix::fs::PermissionsExt;
    let key_file = s.dir.join("data").join("secret.key");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&key_file).unwrap().len(), 32);
}

#[test]
fn sigterm_answers_parked_requests_and_exits_0_within_5_s() {
    let mut w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let rp_wait = {
        let (url, h) = (w.s.url(&format!("/api/v1/challenges/{id}?wait=25")), w.rp());
        std::thread::spawn(move || request("GET", &url, &h, None))
    };
    let other = w.registered(C, "jweb", "hanako");
    let dev_wait = {
        let p = other.clone();
        std::thread::spawn(move || p.signed("GET", "/api/v1/device/challenges?wait=25", None))
    };
    std::thread::sleep(Duration::from_millis(400));
    let t = Instant::now();
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(w.s.pid as i32, libc::SIGTERM) };
    let r = rp_wait.join().unwrap();
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("pending")), "{}", r.text);
    let d = dev_wait.join().unwrap();
    assert_eq!(d.status, 200, "{}", d.text);
    let code = w.s.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "exit 0 within 5 s");
    assert!(t.elapsed() < Duration::from_secs(5));
    w.s.respawn();
    assert_eq!(w.challenge(&id, 0).json["status"], "pending", "the challenge survived");
    let _ = phone;
}

#[test]
fn sighup_reloads_what_can_change_and_names_the_rest() {
    let w = World::new("challenge_ttl = \"60s\"");
    let _phone = w.registered(C, "jweb", "taro");
    let ttl = |id: &str| {
        let c = w.challenge(id, 0).json;
        let p = |k: &str| onepush::domain::parse_rfc3339(k, c[k].as_str().unwrap()).unwrap();
        (p("expires_at") - p("created_at")) / 1000
    };
    let id = w.login_challenge(C, "taro");
    assert_eq!(ttl(&id), 60);
    let text = std::fs::read_to_string(&w.s.config)
        .unwrap()
        .replace("challenge_ttl = \"60s\"", "challenge_ttl = \"90s\"\ntoken_prefix = \"BANK\"");
    std::fs::write(&w.s.config, text).unwrap();
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(w.s.pid as i32, libc::SIGHUP) };
    let id = eventually("the new challenge_ttl", 10, || {
        let id = w.login_challenge(C, "taro");
        (ttl(&id) == 90).then_some(id)
    });
    assert!(!id.is_empty());
    let log = eventually("the reload log line", 5, || {
        let l = w.s.log();
        l.contains("SIGHUP").then_some(l)
    });
    assert!(log.contains("except token_prefix"), "{log}");
}

/// A tiny HTTPS receiver on loopback that records requests, with its own CA:
/// the endpoint, the requests (first line, a newline, the body) and the
/// config lines that let onepush send to it (`push_allowed_hosts`,
/// `push_ca_file`).
fn receiver(dir: &std::path::Path) -> (String, std::sync::mpsc::Receiver<String>, String) {
    let (endpoint, raw, config) = receiver_answering(dir, 201);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (head, body) in raw {
            let _ = tx.send(format!("{}\n{}", head.lines().next().unwrap_or(""), String::from_utf8_lossy(&body)));
        }
    });
    (endpoint, rx, config)
}

/// `receiver`, answering `status`, passing on each request's head and raw body.
fn receiver_answering(dir: &std::path::Path, status: u16) -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>, String) {
    use std::io::{Read, Write};
    let TestCa { ca_pem, leaf, leaf_key } = test_ca();
    std::fs::create_dir_all(dir).unwrap();
    let ca_file = dir.join("push-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()))
            .unwrap(),
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming().take(20) {
            let Ok(c) = conn else { continue };
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let Ok(server) = rustls::ServerConnection::new(tls.clone()) else { continue };
            let mut c = rustls::StreamOwned::new(server, c);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = c.read(&mut chunk).unwrap_or(0);
                buf.extend_from_slice(&chunk[..n]);
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..at]).to_string();
                    let body = &buf[at + 4..];
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let _ = tx.send((head, body.to_vec()));
                        let _ = c.write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
                        let _ = c.flush();
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
        }
    });
    let config = format!("push_allowed_hosts = [\"127.0.0.1\"]\npush_ca_file = \"{}\"\n", ca_file.display());
    (format!("https://{addr}/up/abc"), rx, config)
}

fn provision_and_register(w: &World, endpoint: &str) {
    let key = onepush::client::DeviceKey::generate();
    let r = w.s.post("/api/v1/device/provision", &[], &key.provision_body(Some("p"), Some(endpoint)));
    assert_eq!(r.status, 201, "{}", r.text);
    let token = r.json["token_id"].as_str().unwrap().to_string();
    let (o1, o2) = onepush::client::registration_otps(r.json["otp_secret"].as_str().unwrap(), onepush::client::now_secs() as u64).unwrap();
    let r = w.s.post(
        "/api/v1/registrations",
        &[],
        &json!({"contract_no": C, "user_id": "taro", "password": PASSWORD, "token_id": token, "otp1": o1, "otp2": o2}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn a_push_endpoint_gets_a_wake_up_over_https_with_the_challenge_id_only() {
    let dir = std::env::temp_dir().join(format!("onepush-push-{}", onepush::domain::ids::random_hex(6)));
    let (endpoint, got, config) = receiver_answering(&dir, 201);
    let w = World::new(&config);
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    provision_and_register(&w, &endpoint);
    let id = w.login_challenge(C, "taro");
    let (head, body) = got.recv_timeout(Duration::from_secs(10)).expect("a wake-up POST");
    assert!(head.starts_with("POST /up/abc "), "{head}");
    let header = |name: &str| {
        head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"), "{head}");
    assert_eq!(header("urgency").as_deref(), Some("high"), "{head}");
    let ttl: u64 = header("ttl").expect("TTL").parse().unwrap();
    assert!((1..=60).contains(&ttl), "TTL is the seconds until expires_at: {ttl}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, json!({"challenge_id": id}), "the challenge id, no display lines");
    let m = eventually("the wake-up counted", 10, || {
        let m = w.s.get("/metrics", &[]).text;
        m.contains("onepush_wakeups_total 1").then_some(m)
    });
    assert!(m.contains("onepush_wakeup_failures_total 0"));
    assert!(m.contains("onepush_push_total{kind=\"unifiedpush\",outcome=\"sent\"} 1"), "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CONNECT proxy on loopback that tunnels each connection and reports the
/// CONNECT line it was asked for.
fn connect_proxy() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming().take(20) {
            let Ok(client) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(client.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let target = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let _ = tx.send(first.trim_end().to_string());
                let Ok(upstream) = std::net::TcpStream::connect(&target) else { return };
                let mut c = client.try_clone().unwrap();
                c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap();
                let (mut up_r, mut up_w) = (upstream.try_clone().unwrap(), upstream);
                let mut down_w = client;
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut reader, &mut up_w);
                });
                let _ = std::io::copy(&mut up_r, &mut down_w);
            });
        }
    });
    (format!("http://{addr}"), rx)
}

#[test]
fn push_goes_through_push_proxy_when_set() {
    let dir = std::env::temp_dir().join(format!("onepush-push-{}", onepush::domain::ids::random_hex(6)));
    let (endpoint, got, config) = receiver(&dir);
    let (proxy, asked) = connect_proxy();
    let w = World::new(&format!("{config}push_proxy = \"{proxy}\"\n"));
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    provision_and_register(&w, &endpoint);
    let id = w.login_challenge(C, "taro");
    let connect = asked.recv_timeout(Duration::from_secs(10)).expect("a CONNECT through the proxy");
    let target = endpoint.trim_start_matches("https://").split('/').next().unwrap().to_string();
    assert_eq!(connect, format!("CONNECT {target} HTTP/1.1"));
    let req = got.recv_timeout(Duration::from_secs(10)).expect("the wake-up, through the tunnel");
    assert!(req.contains(&id), "{req}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn registered_with_push(w: &World) -> Phone {
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    let phone = Phone::provision(&w.s);
    let r = phone.register(&w.s, C, "taro", PASSWORD);
    assert_eq!(r.status, 201, "{}", r.text);
    phone
}

#[test]
fn web_push_reaches_the_phone_encrypted_and_signed_with_vapid() {
    let dir = std::env::temp_dir().join(format!("onepush-push-{}", onepush::domain::ids::random_hex(6)));
    let (endpoint, got, config) = receiver_answering(&dir, 201);
    let w = World::new(&format!("{config}push_contact = \"mailto:it@bank.example\"\n"));
    let config_doc = w.s.get("/api/v1/device/push-config", &[]).json;
    let vapid = config_doc["vapid_public_key"].as_str().unwrap().to_string();
    assert_eq!(onepush::domain::sig::unb64("k", &vapid).unwrap().len(), 65);
    assert_eq!(config_doc["kinds"], json!(["webpush", "unifiedpush"]));
    let phone = registered_with_push(&w);
    let (keys, auth) = ece::generate_keypair_and_auth_secret().unwrap();
    let p256dh = onepush::domain::sig::b64(&keys.pub_as_raw().unwrap());
    let auth_b64 = onepush::domain::sig::b64(&auth);
    // Bad keys are named.
    let r = phone.signed(
        "PUT",
        "/api/v1/device/push",
        Some(&json!({"kind": "webpush", "endpoint": endpoint, "p256dh": "AAAA", "auth": auth_b64})),
    );
    assert!(r.status == 400 && r.json["error"]["message"].as_str().unwrap().starts_with("p256dh"), "{}", r.text);
    let r = phone.signed(
        "PUT",
        "/api/v1/device/push",
        Some(&json!({"kind": "webpush", "endpoint": "http://127.0.0.1/x", "p256dh": p256dh, "auth": auth_b64})),
    );
    assert!(r.status == 400 && r.json["error"]["message"].as_str().unwrap().starts_with("endpoint"), "{}", r.text);
    let r = phone.signed(
        "PUT",
        "/api/v1/device/push",
        Some(&json!({"kind": "webpush", "endpoint": endpoint, "p256dh": p256dh, "auth": auth_b64})),
    );
    assert_eq!((r.status, r.json["kind"].as_str()), (200, Some("webpush")), "{}", r.text);
    assert_eq!(phone.signed("GET", "/api/v1/device/push", None).json["endpoint"], endpoint.as_str());
    let id = w.login_challenge(C, "taro");
    let (head, body) = got.recv_timeout(Duration::from_secs(10)).expect("a Web Push POST");
    let header = |name: &str| {
        head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    };
    assert_eq!(header("content-encoding").as_deref(), Some("aes128gcm"), "{head}");
    assert_eq!(header("urgency").as_deref(), Some("high"), "{head}");
    let ttl: u64 = header("ttl").unwrap().parse().unwrap();
    assert!((1..=60).contains(&ttl), "TTL is the seconds until expires_at: {ttl}");
    let authz = header("authorization").unwrap();
    assert!(authz.starts_with("vapid t=") && authz.ends_with(&format!("k={vapid}")), "{authz}");
    let jwt = authz.trim_start_matches("vapid t=").split(',').next().unwrap();
    let claims: Value = serde_json::from_slice(&onepush::domain::sig::unb64("jwt", jwt.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let origin = endpoint.trim_end_matches("/up/abc");
    assert_eq!((claims["aud"].as_str(), claims["sub"].as_str()), (Some(origin), Some("mailto:it@bank.example")), "{claims}");
    assert!(claims["exp"].as_u64().unwrap() <= onepush::client::now_secs() as u64 + 24 * 3600);
    let plain = ece::decrypt(&keys.raw_components().unwrap(), &auth, &body).unwrap();
    let payload: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(payload["challenge_id"], id.as_str());
    assert_eq!(payload["kind"], "login");
    assert!(payload.get("display").is_none(), "no lines in the payload: {payload}");
    // The same message for an implementation that is not onepush's (the `ece`
    // crate above is what onepush encrypts with): .ci/run hands this file to
    // tests/independent/check_webpush.py (Python http_ece and cryptography).
    let components = keys.raw_components().unwrap();
    let b64 = onepush::domain::sig::b64;
    let captured_at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let capture = json!({
        "captured_at_ms": captured_at_ms,
        "request_line": head.lines().next().unwrap_or(""),
        "endpoint": endpoint,
        "headers": {
            "authorization": header("authorization"),
            "content-encoding": header("content-encoding"),
            "ttl": header("ttl"),
            "urgency": header("urgency"),
            "content-type": header("content-type"),
        },
        "body": b64(&body),
        "subscription": {
            "private_key": b64(components.private_key()),
            "public_key": b64(components.public_key()),
            "p256dh": p256dh,
            "auth": auth_b64,
        },
        "expected": {
            "vapid_public_key": vapid,
            "challenge_id": id,
            "push_contact": "mailto:it@bank.example",
        },
    });
    let path = concat!(env!("CARGO_TARGET_TMPDIR"), "/webpush-capture.json");
    std::fs::write(path, serde_json::to_string_pretty(&capture).unwrap()).unwrap();
    eventually("counted as sent", 10, || {
        w.s.get("/metrics", &[]).text.contains("onepush_push_total{kind=\"webpush\",outcome=\"sent\"} 1").then_some(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_push_service_answering_410_removes_the_subscription() {
    let dir = std::env::temp_dir().join(format!("onepush-push-{}", onepush::domain::ids::random_hex(6)));
    let (endpoint, got, config) = receiver_answering(&dir, 410);
    let w = World::new(&config);
    let phone = registered_with_push(&w);
    let r = phone.signed("PUT", "/api/v1/device/push", Some(&json!({"kind": "unifiedpush", "endpoint": endpoint})));
    assert_eq!((r.status, r.json["kind"].as_str()), (200, Some("unifiedpush")), "{}", r.text);
    w.login_challenge(C, "taro");
    got.recv_timeout(Duration::from_secs(10)).expect("the push POST");
    eventually("the subscription removed", 10, || phone.signed("GET", "/api/v1/device/push", None).json["kind"].is_null().then_some(()));
    assert!(audit_lines(&w.s).iter().any(|e| e["type"] == "push_removed"), "audited");
    assert!(w.s.get("/metrics", &[]).text.contains("onepush_push_total{kind=\"unifiedpush\",outcome=\"gone\"} 1"));
    // The app subscribes again, and can end it itself.
    let r = phone.signed("PUT", "/api/v1/device/push", Some(&json!({"kind": "unifiedpush", "endpoint": endpoint})));
    assert_eq!(r.status, 200);
    let r = phone.signed("DELETE", "/api/v1/device/push", None);
    assert_eq!((r.status, r.json["kind"].is_null()), (200, true), "{}", r.text);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_vapid_key_with_web_push_subscriptions_stops_the_start() {
    let mut w = World::new("push_allowed_hosts = [\"fcm.googleapis.com\"]");
    let phone = registered_with_push(&w);
    let (keys, auth) = ece::generate_keypair_and_auth_secret().unwrap();
    let body = json!({"kind": "webpush", "endpoint": "https://fcm.googleapis.com/fcm/send/abc",
                      "p256dh": onepush::domain::sig::b64(&keys.pub_as_raw().unwrap()), "auth": onepush::domain::sig::b64(&auth)});
    assert_eq!(phone.signed("PUT", "/api/v1/device/push", Some(&body)).status, 200);
    w.s.kill();
    let key = w.s.dir.join("data").join("vapid.key");
    std::fs::remove_file(&key).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onepush")).args(["serve", "--config"]).arg(&w.s.config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("vapid.key") && err.contains("Web Push subscriptions exist"), "{err}");
    assert!(!key.exists(), "no new key was made");
}

#[test]
fn push_endpoints_are_https_to_allowed_hosts_only() {
    let w = World::new("push_allowed_hosts = [\"*.fcm.googleapis.com\", \"fcm.googleapis.com\"]");
    let phone = Phone::provision(&w.s);
    for (endpoint, why) in [
        ("http://fcm.googleapis.com/fcm/send/x", "https://"),
        ("https://user:pw@fcm.googleapis.com/fcm/send/x", "user or password"),
        ("https://127.0.0.1:8080/api/v1/admin/session", "not allowed"),
        ("https://169.254.169.254/latest/meta-data", "not allowed"),
        ("https://[::1]/up", "not allowed"),
        ("https://localhost/up", "not allowed"),
        ("https://10.0.0.5/up", "not allowed"),
        ("https://192.168.1.20/up", "not allowed"),
        ("https://[fe80::1]/up", "not allowed"),
        ("https://ntfy.sh/up", "not allowed"),
        ("https://googleapis.com/up", "not allowed"),
    ] {
        let key = onepush::client::DeviceKey::generate();
        let r = w.s.post("/api/v1/device/provision", &[], &key.provision_body(None, Some(endpoint)));
        assert_eq!(r.status, 400, "{endpoint}: {}", r.text);
        let msg = r.json["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with("push_endpoint") && msg.contains(why), "{endpoint}: {msg}");
        // The same rules where a subscription is replaced later.
        for body in [json!({"kind": "unifiedpush", "endpoint": endpoint}), {
            let (keys, auth) = ece::generate_keypair_and_auth_secret().unwrap();
            json!({"kind": "webpush", "endpoint": endpoint, "p256dh": onepush::domain::sig::b64(&keys.pub_as_raw().unwrap()),
                   "auth": onepush::domain::sig::b64(&auth)})
        }] {
            let r = phone.signed("PUT", "/api/v1/device/push", Some(&body));
            assert_eq!(r.status, 400, "{endpoint}: {}", r.text);
            let msg = r.json["error"]["message"].as_str().unwrap();
            assert!(msg.starts_with("endpoint") && msg.contains(why), "{endpoint}: {msg}");
        }
    }
    assert!(phone.signed("GET", "/api/v1/device/push", None).json["kind"].is_null());
    let key = onepush::client::DeviceKey::generate();
    let r = w.s.post("/api/v1/device/provision", &[], &key.provision_body(None, Some("https://fcm.googleapis.com/fcm/send/abc")));
    assert_eq!(r.status, 201, "{}", r.text);
    // Subdomains of a wildcard at any depth; the port is ignored.
    let r = phone.signed(
        "PUT",
        "/api/v1/device/push",
        Some(&json!({"kind": "unifiedpush", "endpoint": "https://a.b.fcm.googleapis.com:8443/x"})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn a_push_service_that_never_answers_delays_neither_the_rp_nor_the_next_login() {
    // Accepts the connection and says nothing: the TLS handshake hangs.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.push(c);
        }
    });
    let w = World::new("push_allowed_hosts = [\"127.0.0.1\"]");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    provision_and_register(&w, &format!("https://{addr}/up"));
    for _ in 0..3 {
        let t = Instant::now();
        w.login_challenge(C, "taro");
        assert!(t.elapsed() < Duration::from_millis(800), "login took {:?}", t.elapsed());
    }
    // Each attempt's connect (TCP and the TLS handshake) times out at 2 s; three
    // attempts with 0.5 s and 1 s of backoff between them; then it is counted.
    let t = Instant::now();
    eventually("a hung push counted as failed", 40, || {
        w.s.get("/metrics", &[]).text.contains("onepush_push_total{kind=\"unifiedpush\",outcome=\"failed\"}").then_some(())
    });
    assert!(t.elapsed() > Duration::from_secs(6), "three attempts of 2 s: {:?}", t.elapsed());
    assert!(w.s.log().contains("not delivered: timeout"), "{}", w.s.log());
}

#[test]
fn a_certificate_the_push_ca_file_does_not_vouch_for_is_a_failure() {
    // The receiver's CA is not given to onepush: the TLS handshake fails.
    let dir = std::env::temp_dir().join(format!("onepush-push-{}", onepush::domain::ids::random_hex(6)));
    let (endpoint, got, _) = receiver(&dir);
    let w = World::new("push_allowed_hosts = [\"127.0.0.1\"]");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    provision_and_register(&w, &endpoint);
    w.login_challenge(C, "taro");
    eventually("the failure counted", 15, || w.s.get("/metrics", &[]).text.contains("onepush_wakeup_failures_total 1").then_some(()));
    assert!(got.try_recv().is_err(), "nothing reached the receiver");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dead_push_endpoint_is_counted_and_never_delays_the_rp() {
    let w = World::new("push_allowed_hosts = [\"127.0.0.1\"]");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    provision_and_register(&w, &format!("https://{dead}/up"));
    let t = Instant::now();
    w.login_challenge(C, "taro");
    assert!(t.elapsed() < Duration::from_millis(800), "login took {:?}", t.elapsed());
    eventually("the failure counted after its retries", 15, || {
        w.s.get("/metrics", &[]).text.contains("onepush_wakeup_failures_total 1").then_some(())
    });
}

#[test]
fn systemd_hears_ready_and_watchdog_pings() {
    let s = Server::start("");
    let (dir, config) = (s.dir.clone(), s.config.clone());
    drop(s);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&config, format!("listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n", dir.join("data").display())).unwrap();
    let sock_path = dir.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onepush"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !(seen.iter().any(|m: &String| m.contains("READY=1")) && seen.iter().any(|m| m.contains("WATCHDOG=1"))) {
        let n = sock.recv(&mut buf).expect("a notification within 10 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let provisioned_ip = |s: &Server| {
        let key = onepush::client::DeviceKey::generate();
        let r = request(
            "POST",
            &s.url("/api/v1/device/provision"),
            &[("X-Forwarded-For", "198.51.100.7".into())],
            json_body(&key.provision_body(None, None)),
        );
        assert_eq!(r.status, 201);
        let events = s.cli(&["audit", "export"], None).1;
        let last: Value = serde_json::from_str(events.lines().rev().find(|l| l.contains("token_provisioned")).unwrap()).unwrap();
        last["detail"]["ip"].as_str().unwrap().to_string()
    };
    let untrusted = Server::start("");
    assert_eq!(provisioned_ip(&untrusted), "127.0.0.1", "X-Forwarded-For from an untrusted peer is ignored");
    let trusted = Server::start("trusted_proxies = [\"127.0.0.1\"]");
    assert_eq!(provisioned_ip(&trusted), "198.51.100.7");
    // Behind a trusted front that says https, the admin cookie is Secure.
    let (code, _, _) = trusted.cli(&["operator", "add", "alice", "--password-stdin"], Some("operator-pass-1"));
    assert_eq!(code, 0);
    let r = request(
        "POST",
        &trusted.url("/api/v1/admin/session"),
        &[("X-Forwarded-Proto", "https".into())],
        json_body(&json!({"username": "alice", "password": "operator-pass-1"})),
    );
    assert!(r.header("set-cookie").unwrap().contains("Secure"));
    let r = request(
        "POST",
        &untrusted.url("/api/v1/admin/session"),
        &[("X-Forwarded-Proto", "https".into())],
        json_body(&json!({"username": "x", "password": "operator-pass-1"})),
    );
    assert_eq!(r.status, 401);
}

#[test]
fn operator_sign_in_attempts_are_rate_limited_per_address() {
    let s = Server::start("");
    let mut last = None;
    for _ in 0..21 {
        last = Some(s.post("/api/v1/admin/session", &[], &json!({"username": "mallory", "password": "guess-pass-1"})));
    }
    let r = last.unwrap();
    assert_eq!((r.status, r.code()), (429, "rate_limited"), "{}", r.text);
    assert!(r.header("retry-after").is_some());
}

#[test]
fn brute_force_limits_survive_a_crash() {
    let mut w = World::new("");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    let phone = Phone::provision(&w.s);
    for _ in 0..20 {
        w.s.post("/api/v1/admin/session", &[], &json!({"username": "mallory", "password": "guess-pass-1"}));
        phone.register(&w.s, C, "ghost", PASSWORD);
    }
    // Provisioning: what is left of its 20 (one was used above).
    for _ in 0..25 {
        if w.s.post("/api/v1/device/provision", &[], &onepush::client::DeviceKey::generate().provision_body(None, None)).status == 429 {
            break;
        }
    }
    w.s.crash_and_restart();
    let mut phone = phone;
    phone.rebase(&w.s.base);
    let r = w.s.post("/api/v1/admin/session", &[], &json!({"username": "mallory", "password": "guess-pass-1"}));
    assert_eq!(r.code(), "rate_limited", "sign-in after kill -9: {}", r.text);
    assert_eq!(phone.register(&w.s, C, "ghost", PASSWORD).code(), "rate_limited", "registration after kill -9");
    let r = w.s.post("/api/v1/device/provision", &[], &onepush::client::DeviceKey::generate().provision_body(None, None));
    assert_eq!(r.code(), "rate_limited", "provisioning after kill -9");
}

#[test]
fn over_http_an_unknown_user_answers_as_slowly_as_a_wrong_password() {
    let w = World::new("argon2_memory_kib = 4096\nargon2_iterations = 2\npassword_max_failures = 1000");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    let time = |uid: &str, no: &str| {
        let t = Instant::now();
        assert_eq!(w.login(no, uid, "wrong-password").json["reason"], "bad_credentials");
        t.elapsed()
    };
    let (mut unknown, mut wrong, mut no_contract) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..9 {
        unknown.push(time("nobody", C));
        wrong.push(time("taro", C));
        no_contract.push(time("taro", "999999"));
    }
    for v in [&mut unknown, &mut wrong, &mut no_contract] {
        v.sort();
    }
    for (what, v) in [("unknown user", unknown[4]), ("unknown contract", no_contract[4])] {
        let ratio = v.as_secs_f64() / wrong[4].as_secs_f64();
        assert!((0.5..2.0).contains(&ratio), "{what} {v:?} vs wrong password {:?}", wrong[4]);
    }
}

#[test]
fn a_burst_of_new_connections_is_never_queued_behind_one_idle_thread() {
    // tiny_http 0.12.0 handed a burst of connections that arrived while one
    // pool thread waited to that one thread and left the rest queued until
    // some other connection ended (vendor/PATCHES.md). Idle keep-alive
    // connections hold their threads, as a browser's do.
    use std::io::{Read, Write};
    let s = Server::start("");
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut idle: Vec<std::net::TcpStream> = Vec::new();
    for round in 0..60 {
        if !idle.is_empty() {
            drop(idle.remove(0)); // frees one pool thread
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut burst: Vec<std::net::TcpStream> = (0..3).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
        for c in &mut burst {
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        }
        for (i, c) in burst.iter_mut().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap_or(0);
            assert!(n > 0 && buf.starts_with(b"HTTP/1.1 200"), "round {round}: connection {i} of the burst got no answer in 3 s");
        }
        idle.extend(burst);
    }
}

#[test]
fn garbage_on_the_wire_never_takes_the_server_down() {
    use std::io::{Read, Write};
    let w = World::new("");
    let addr = w.s.base.trim_start_matches("http://").to_string();
    let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let shapes: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".to_vec(),
        b"POST /api/v1/login HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 99999999999999999999\r\n\r\n{".to_vec(),
        b"POST /api/v1/login HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"POST /api/v1/registrations HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n\xff\xfe\x00\x01\x02".to_vec(),
        b"GET /api/v1/challenges/%00%ff?wait=99999999999999999999999 HTTP/1.1\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        b"GET /../../etc/passwd HTTP/1.1\r\n\r\n".to_vec(),
        b"POST /api/v1/device/challenges/x/response HTTP/1.1\r\nX-Onepush-Token: \xe3\x81\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
    ];
    for i in 0..200 {
        let mut payload = shapes[i % shapes.len()].clone();
        if i >= shapes.len() {
            for _ in 0..(next() % 64) {
                let at = (next() as usize) % payload.len();
                payload[at] = next() as u8;
            }
        }
        if let Ok(mut c) = std::net::TcpStream::connect(&addr) {
            let _ = c.set_read_timeout(Some(Duration::from_millis(300)));
            let _ = c.write_all(&payload);
            let _ = c.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = c.read_to_end(&mut sink);
        }
    }
    assert_eq!(w.s.get("/healthz", &[]).status, 200);
    assert_eq!(w.login(C, "nobody", PASSWORD).json["reason"], "bad_credentials");
    assert_eq!(w.s.cli(&["audit", "verify"], None).0, 0);
    let log = w.s.log();
    assert!(!log.contains("panicked") && !log.contains("dropped unanswered"), "{log}");
}

/// The check order comes from the route table: a JSON route refuses another
/// media type before it looks at the caller (415 before 401), the CSV import
/// asks for the session first (401 before 415).
#[test]
fn every_json_route_answers_415_before_401_and_the_import_401_first() {
    use onepush::http::routes::{Body, ROUTES};
    let s = Server::start("");
    let mut checked = 0;
    for r in ROUTES.iter().filter(|r| !r.demo && r.body != Body::None) {
        let path: String = r.path.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/");
        let resp = request(r.method, &s.url(&path), &[], Some(("text/plain", b"x=1".to_vec())));
        let want = if r.body == Body::Csv { 401 } else { 415 };
        assert_eq!(resp.status, want, "{} {}: {}", r.method, r.path, resp.text);
        checked += 1;
    }
    assert!(checked >= 21, "{checked} routes with a body");
}

#[test]
fn management_commands_find_the_config_through_onepush_config_and_say_which() {
    let s = Server::start("");
    let cwd = s.dir.join("elsewhere");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onepush"))
        .args(["rp-key", "add", "found"])
        .env("ONEPUSH_CONFIG", &s.config)
        .current_dir(&cwd)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("config {} ($ONEPUSH_CONFIG)", s.config.display())), "{stderr}");
    // The key is the running server's: no store was made where the command ran.
    let key = stdout.trim();
    let r = s.post(
        "/api/v1/login",
        &[("Authorization", format!("Bearer {key}"))],
        &json!({"contract_no": C, "user_id": "x", "password": "password-1"}),
    );
    assert_eq!((r.status, r.json["reason"].as_str()), (200, Some("bad_credentials")), "{}", r.text);
    assert!(!cwd.join("onepush-data").exists());
    // `config check` names every bad key with its line, and exits 2.
    let bad = s.dir.join("bad.toml");
    std::fs::write(&bad, "listen = \"nowhere\"\nmax_wait = \"20s\"\ncolour = \"blue\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onepush")).args(["config", "check", "--config"]).arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 1: listen:") && stderr.contains("line 3: colour: unknown field"), "{stderr}");
}

#[test]
fn under_journald_log_lines_carry_their_priority_and_request_lines_name_client_and_caller() {
    use std::io::BufRead;
    use std::os::unix::fs::MetadataExt;
    let mut s = Server::start("");
    s.kill();
    let log_path = s.dir.join("journal.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onepush"))
        .args(["serve", "--config"])
        .arg(&s.config)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    s.base = first.trim_start_matches("onepush listening on ").to_string();
    std::thread::spawn(move || for _ in lines {});
    let (_, key, _) = s.cli(&["rp-key", "add", "ib-server"], None);
    let r = s.post(
        "/api/v1/login",
        &[("Authorization", format!("Bearer {}", key.trim())), ("X-Forwarded-For", "198.51.100.9".into())],
        &json!({"contract_no": C, "user_id": "x", "password": "password-1"}),
    );
    assert_eq!(r.status, 200);
    let text = eventually("the request line", 5, || {
        let t = std::fs::read_to_string(&log_path).unwrap();
        t.contains("/api/v1/login").then_some(t)
    });
    let _ = child.kill();
    let _ = child.wait();
    // WARN as <4> (push_contact is the default), INFO as <6>; no timestamp.
    assert!(text.lines().any(|l| l.starts_with("<4>onepush: push_contact")), "{text}");
    let line = text.lines().find(|l| l.contains("/api/v1/login")).unwrap();
    // Not behind a trusted proxy: the peer, not the header's claim.
    assert!(
        line.starts_with("<6>onepush::http::response: req=") && line.contains(" client=127.0.0.1 rp=ib-server POST /api/v1/login 200 "),
        "{line}"
    );
    assert!(text.lines().all(|l| l.starts_with('<')), "{text}");
}

#[test]
fn audit_export_follow_prints_each_new_entry_as_it_is_written() {
    use std::io::BufRead;
    let s = Server::start("");
    let (_, _, _) = s.cli(&["rp-key", "add", "first"], None);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onepush"))
        .args(["audit", "export", "--follow", "--config"])
        .arg(&s.config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(serde_json::from_str(&line).unwrap());
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("the existing entries");
    assert_eq!(first["seq"], 1);
    let mut seen = vec![first];
    while let Ok(e) = rx.recv_timeout(Duration::from_millis(1500)) {
        seen.push(e);
    }
    assert!(seen.iter().any(|e| e["type"] == "rp_key_added"), "{seen:?}");
    let last = seen.last().unwrap()["seq"].as_u64().unwrap();
    // A new event reaches the follower within its 1 s poll, exactly once and in order.
    s.cli(&["rp-key", "revoke", "first"], None);
    let next = rx.recv_timeout(Duration::from_secs(5)).expect("the new entry");
    assert_eq!((next["seq"].as_u64(), next["type"].as_str()), (Some(last + 1), Some("rp_key_revoked")), "{next}");
    assert!(rx.recv_timeout(Duration::from_millis(1500)).is_err(), "nothing twice");
    let _ = child.kill();
    let _ = child.wait();
}
