//! SPEC R3 and R4 through the HTTP API: every row of the state and flag
//! tables, every cascade, operator and customer actions, system suspension,
//! notices, audit search, statistics, CSV import, backup and restore.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

const C: &str = "1000000001";
const PAST: &str = "2020-01-01T00:00:00Z";
const FUTURE: &str = "2099-01-01T00:00:00Z";

fn act(w: &World, uid: &str, action: &str, body: Value) -> Resp {
    w.s.post(&format!("/api/v1/admin/contracts/{C}/users/{uid}/{action}"), &w.admin(), &body)
}

fn user(w: &World, uid: &str) -> Value {
    w.s.get(&format!("/api/v1/users/{C}/{uid}"), &w.rp()).json
}

fn login_json(w: &World, uid: &str) -> Value {
    w.login(C, uid, PASSWORD).json
}

#[test]
fn suspend_grace_then_refused_and_resume_keeps_the_token() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let r = act(&w, "taro", "suspend", json!({"reason": "customer asked", "usable_until": FUTURE}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["registration"], "suspended");
    assert_eq!(r.json["usable_until"], FUTURE);
    assert_eq!(login_json(&w, "taro"), json!({"result": "allow", "reason": "push_suspended"}));
    // Grace over: refused.
    let r = act(&w, "taro", "resume", json!({"reason": "back"}));
    assert_eq!(r.json["registration"], "active");
    act(&w, "taro", "suspend", json!({"reason": "again", "usable_until": PAST}));
    assert_eq!(login_json(&w, "taro"), json!({"result": "deny", "reason": "registration_required"}));
    // Resume: active again with the same phone (Art. 6.1).
    let r = act(&w, "taro", "resume", json!({"reason": "customer asked"}));
    assert_eq!(r.json["token_id"], phone.token_id.as_str());
    let id = w.login_challenge(C, "taro");
    assert_eq!(phone.answer(&phone.fetch(&id), "approve").json["status"], "approved");
}

#[test]
fn default_grace_is_grace_period() {
    let w = World::new("grace_period = \"2days\"");
    let _phone = w.registered(C, "jweb", "taro");
    let r = act(&w, "taro", "suspend", json!({"reason": "no date"}));
    let until = onepush::domain::parse_rfc3339("usable_until", r.json["usable_until"].as_str().unwrap()).unwrap();
    let expect = onepush::domain::now_ms() + 2 * 86_400_000;
    assert!(until.abs_diff(expect) < 60_000, "usable_until defaults to now + grace_period");
}

#[test]
fn deregister_grace_revokes_the_token_and_a_new_phone_registers() {
    let w = World::new("");
    let old = w.registered(C, "jweb", "taro");
    let parked = {
        let p = old.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            (p.signed("GET", "/api/v1/device/challenges?wait=25", None), t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let r = act(&w, "taro", "deregister", json!({"reason": "phone replaced", "usable_until": FUTURE}));
    assert_eq!((r.json["registration"].as_str(), r.json["token_id"].is_null()), (Some("deregistered"), true), "{}", r.text);
    let (resp, took) = parked.join().unwrap();
    assert_eq!(resp.code(), "token_revoked");
    assert!(took < Duration::from_secs(10));
    assert_eq!(old.signed("GET", "/api/v1/device/challenges", None).code(), "token_revoked");
    assert_eq!(login_json(&w, "taro"), json!({"result": "allow", "reason": "push_deregistered"}));
    // The old, revoked token cannot register anyone again.
    assert_eq!(old.register(&w.s, C, "taro", PASSWORD).code(), "token_or_otp_mismatch");
    // Device change (Art. 7.4): the new phone registers; push is active at once.
    let new = Phone::provision(&w.s);
    assert_eq!(new.register(&w.s, C, "taro", PASSWORD).status, 201);
    let id = w.login_challenge(C, "taro");
    assert_eq!(new.answer(&new.fetch(&id), "approve").json["status"], "approved");
}

#[test]
fn deregistered_after_grace_is_refused() {
    let w = World::new("");
    let _phone = w.registered(C, "jweb", "taro");
    act(&w, "taro", "deregister", json!({"reason": "ended", "usable_until": PAST}));
    assert_eq!(login_json(&w, "taro"), json!({"result": "deny", "reason": "registration_required"}));
}

#[test]
fn stop_cancels_pending_revokes_and_refuses_until_registered_again() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let waiter = {
        let (url, h) = (w.s.url(&format!("/api/v1/challenges/{id}?wait=20")), w.rp());
        std::thread::spawn(move || request("GET", &url, &h, None))
    };
    std::thread::sleep(Duration::from_millis(300));
    let r = act(&w, "taro", "stop", json!({"reason": "phone lost"}));
    assert_eq!((r.json["stopped"].as_bool(), r.json["registration"].as_str()), (Some(true), Some("deregistered")), "{}", r.text);
    assert_eq!(waiter.join().unwrap().json["status"], "cancelled");
    assert_eq!(phone.signed("GET", "/api/v1/device/challenges", None).code(), "token_revoked");
    assert_eq!(login_json(&w, "taro"), json!({"result": "deny", "reason": "account_stopped"}));
    assert_eq!(Phone::provision(&w.s).register(&w.s, C, "taro", PASSWORD).code(), "account_stopped");
    assert_eq!(act(&w, "taro", "stop", json!({"reason": "twice"})).code(), "invalid_transition");
    let r = act(&w, "taro", "unstop", json!({"reason": "found"}));
    assert_eq!(r.json["stopped"], false);
    // Unstop leaves a grace period, as a deregistration does: password-only
    // logins until usable_until (here now + grace_period).
    assert_eq!(login_json(&w, "taro"), json!({"result": "allow", "reason": "push_deregistered"}));
    assert_eq!(Phone::provision(&w.s).register(&w.s, C, "taro", PASSWORD).status, 201);
}

#[test]
fn unstop_honours_usable_until() {
    let w = World::new("");
    for (uid, until, expect) in [
        ("taro", FUTURE, json!({"result": "allow", "reason": "push_deregistered"})),
        ("hanako", PAST, json!({"result": "deny", "reason": "registration_required"})),
    ] {
        let _phone = w.registered(C, "jweb", uid);
        act(&w, uid, "stop", json!({"reason": "phone lost"}));
        let r = act(&w, uid, "unstop", json!({"reason": "found", "usable_until": until}));
        assert_eq!(r.json["usable_until"].as_str(), Some(until), "{}", r.text);
        assert_eq!(login_json(&w, uid), expect, "{uid}");
    }
}

#[test]
fn password_lock_until_unlock() {
    let w = World::new("");
    let _phone = w.registered(C, "jweb", "taro");
    for _ in 0..5 {
        w.login(C, "taro", "wrong-password");
    }
    assert_eq!(login_json(&w, "taro")["reason"], "password_locked");
    let r = act(&w, "taro", "unlock", json!({"reason": "identity checked"}));
    assert_eq!(r.json["password_locked"], false);
    assert_eq!(login_json(&w, "taro")["result"], "challenge");
    assert_eq!(act(&w, "taro", "unlock", json!({"reason": "again"})).code(), "invalid_transition");
}

#[test]
fn invalid_transitions_change_nothing() {
    let w = World::new("");
    w.contract(C, "jweb");
    w.user(C, "taro", "user");
    let before = user(&w, "taro");
    for action in ["suspend", "resume", "deregister", "unstop", "unlock"] {
        let r = act(&w, "taro", action, json!({"reason": "try"}));
        assert_eq!((r.status, r.code()), (409, "invalid_transition"), "{action}: {}", r.text);
    }
    assert_eq!(user(&w, "taro"), before);
    assert_eq!(act(&w, "taro", "explode", json!({"reason": "x"})).status, 404);
    assert_eq!(act(&w, "taro", "suspend", json!({})).status, 400, "reason is required");
    assert_eq!(act(&w, "ghost", "suspend", json!({"reason": "x"})).status, 404);
    let r = act(&w, "taro", "stop", json!({"reason": "x", "usable_until": "tomorrow"}));
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("usable_until"));
}

#[test]
fn contract_cancel_deregisters_everyone_and_refuses_every_login() {
    let w = World::new("");
    let taro = w.registered(C, "jweb", "taro");
    let hanako = w.registered(C, "jweb", "hanako");
    w.user(C, "jiro", "user");
    let r = w.s.post(&format!("/api/v1/admin/contracts/{C}/cancel"), &w.admin(), &json!({"reason": "解約"}));
    assert_eq!(r.json["status"], "cancelled", "{}", r.text);
    for (uid, phone) in [("taro", &taro), ("hanako", &hanako)] {
        assert_eq!(user(&w, uid)["registration"], "deregistered");
        assert_eq!(phone.signed("GET", "/api/v1/device/challenges", None).code(), "token_revoked");
    }
    for uid in ["taro", "hanako", "jiro"] {
        assert_eq!(login_json(&w, uid), json!({"result": "deny", "reason": "contract_cancelled"}));
    }
    assert_eq!(Phone::provision(&w.s).register(&w.s, C, "jiro", PASSWORD).code(), "contract_cancelled");
    let r = w.s.post(&format!("/api/v1/admin/contracts/{C}/cancel"), &w.admin(), &json!({"reason": "again"}));
    assert_eq!(r.code(), "invalid_transition");
    // Every operator change under the cancelled contract is the same 409
    // (creating a user answered `conflict`, and the CSV import a bare 400).
    let r = w.s.post(
        &format!("/api/v1/admin/contracts/{C}/users"),
        &w.admin(),
        &json!({"user_id": "saburo", "name": "Saburo", "role": "user", "password": PASSWORD}),
    );
    assert_eq!((r.status, r.code()), (409, "invalid_transition"), "{}", r.text);
    assert_eq!(act(&w, "jiro", "suspend", json!({"reason": "x"})).code(), "invalid_transition");
    let r = w.s.post(&format!("/api/v1/admin/contracts/{C}/service-admin"), &w.admin(), &json!({"user_id": "jiro", "reason": "x"}));
    assert_eq!(r.code(), "invalid_transition", "{}", r.text);
    let csv = format!("{C},saburo,Saburo,user,{PASSWORD}\n");
    let r = request("POST", &w.s.url("/api/v1/admin/import"), &w.admin(), Some(("text/csv", csv.into_bytes())));
    assert!(r.text.contains("contract_no: the contract is cancelled"), "{}", r.text);
}

#[test]
fn deleting_a_user_deregisters_and_revokes() {
    let w = World::new("");
    let phone = w.registered(C, "jweb", "taro");
    let r = request(
        "DELETE",
        &w.s.url(&format!("/api/v1/admin/contracts/{C}/users/taro")),
        &w.admin(),
        json_body(&json!({"reason": "left the company"})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(phone.signed("GET", "/api/v1/device/challenges", None).code(), "token_revoked");
    assert_eq!(login_json(&w, "taro"), json!({"result": "deny", "reason": "bad_credentials"}));
    assert_eq!(w.s.get(&format!("/api/v1/users/{C}/taro"), &w.rp()).status, 404);
}

#[test]
fn changing_the_service_admin_deregisters_the_previous_one() {
    let w = World::new("");
    w.contract(C, "jweb");
    w.user(C, "boss", "service_admin");
    let boss_phone = w.registered(C, "jweb", "boss");
    w.user(C, "next", "user");
    let r = w.s.post(
        &format!("/api/v1/admin/contracts/{C}/service-admin"),
        &w.admin(),
        &json!({"user_id": "next", "reason": "personnel change"}),
    );
    assert_eq!(r.json["service_admin"], "next", "{}", r.text);
    let boss = user(&w, "boss");
    assert_eq!((boss["role"].as_str(), boss["registration"].as_str()), (Some("user"), Some("deregistered")));
    assert_eq!(boss_phone.signed("GET", "/api/v1/device/challenges", None).code(), "token_revoked");
    assert_eq!(user(&w, "next")["role"], "service_admin");
}

#[test]
fn customer_side_deregister_follows_the_edition_policy() {
    let w = World::new("");
    w.contract(C, "jweb");
    w.user(C, "sa", "service_admin");
    w.user(C, "adm", "admin");
    let _t = w.registered(C, "jweb", "taro");
    w.contract("2000000002", "fx");
    w.user("2000000002", "fxadm", "admin");
    let _j = w.registered("2000000002", "fx", "jiro");
    let dereg = |no: &str, target: &str, actor: &str| {
        w.s.post(&format!("/api/v1/users/{no}/{target}/deregister"), &w.rp(), &json!({"actor_user_id": actor, "reason": "phone replaced"}))
    };
    assert_eq!(dereg(C, "taro", "adm").code(), "forbidden", "jweb: an admin may not");
    assert_eq!(dereg(C, "taro", "fxadm").code(), "forbidden", "an actor from another contract");
    assert_eq!(dereg(C, "taro", "nobody").status, 403);
    let r = dereg(C, "taro", "sa");
    assert_eq!((r.status, r.json["registration"].as_str()), (200, Some("deregistered")), "{}", r.text);
    assert_eq!(dereg(C, "taro", "sa").code(), "invalid_transition");
    let r = dereg("2000000002", "jiro", "fxadm");
    assert_eq!(r.json["registration"], "deregistered", "fx: an admin may: {}", r.text);
    let events = w.s.get(&format!("/api/v1/admin/audit?contract_no={C}&user_id=taro&type=user_deregistered"), &w.admin()).json;
    assert_eq!(events["events"][0]["actor"], "rp:bank/user:sa");
    assert_eq!(events["events"][0]["detail"]["reason"], "phone replaced");
}

#[test]
fn system_suspension_needs_a_notice_and_allows_without_push() {
    let w = World::new("");
    let _phone = w.registered(C, "jweb", "taro");
    let put = |body: Value| request("PUT", &w.s.url("/api/v1/admin/system"), &w.admin(), json_body(&body));
    let r = put(json!({"push_suspended": true}));
    assert_eq!(r.status, 400);
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("notice_id"));
    let n = w.s.post(
        "/api/v1/admin/notices",
        &w.admin(),
        &json!({"kind": "outage", "title": "ワンプッシュ認証の一時停止", "body": "障害のため", "lang": "ja"}),
    );
    assert_eq!(n.status, 201, "{}", n.text);
    let id = n.json["id"].as_str().unwrap();
    assert_eq!(put(json!({"push_suspended": true, "notice_id": "n_nope"})).status, 400);
    let r = put(json!({"push_suspended": true, "notice_id": id}));
    assert_eq!(r.json["push_suspended"], true, "{}", r.text);
    assert_eq!(w.s.get("/api/v1/status", &[]).json["push_suspended"], true);
    assert_eq!(login_json(&w, "taro"), json!({"result": "allow", "reason": "push_system_suspended"}));
    let r = w.s.post("/api/v1/approvals", &w.rp(), &json!({"contract_no": C, "user_id": "taro", "kind": "transaction", "transaction_password": TX_PASSWORD, "display": [["Amount", "1"]]}));
    assert_eq!(r.json, json!({"result": "allow", "reason": "push_system_suspended"}));
    let audited = w.s.get("/api/v1/admin/audit?type=login", &w.admin()).json;
    assert!(audited["events"].as_array().unwrap().iter().any(|e| e["detail"]["reason"] == "push_system_suspended"));
    // The notice is public while it runs; it cannot be deleted while it explains the suspension.
    let public = w.s.get("/api/v1/notices", &[]).json;
    assert_eq!(public["notices"][0]["title"], "ワンプッシュ認証の一時停止");
    assert_eq!(request("DELETE", &w.s.url(&format!("/api/v1/admin/notices/{id}")), &w.admin(), None).status, 409);
    put(json!({"push_suspended": false}));
    assert_eq!(login_json(&w, "taro")["result"], "challenge");
    assert_eq!(request("DELETE", &w.s.url(&format!("/api/v1/admin/notices/{id}")), &w.admin(), None).status, 200);
    assert!(w.s.get("/api/v1/notices", &[]).json["notices"].as_array().unwrap().is_empty());
}

#[test]
fn turning_push_back_on_ends_the_notice_that_explained_the_suspension() {
    let w = World::new("");
    let put = |body: Value| request("PUT", &w.s.url("/api/v1/admin/system"), &w.admin(), json_body(&body));
    let mk = |title: &str| {
        let n = w.s.post("/api/v1/admin/notices", &w.admin(), &json!({"kind": "outage", "title": title, "body": "b", "lang": "ja"}));
        assert_eq!(n.status, 201, "{}", n.text);
        n.json["id"].as_str().unwrap().to_string()
    };
    let public = || -> Vec<String> {
        let list = w.s.get("/api/v1/notices", &[]).json;
        list["notices"].as_array().unwrap().iter().map(|n| n["title"].as_str().unwrap().to_string()).collect()
    };
    let outage = mk("outage");
    mk("unrelated");
    assert_eq!(put(json!({"push_suspended": true, "notice_id": outage})).status, 200);
    assert_eq!(public().len(), 2);
    let r = put(json!({"push_suspended": false}));
    assert_eq!((r.status, &r.json["push_suspended"]), (200, &json!(false)), "{}", r.text);
    // The linked notice has ended; any other stays public.
    assert_eq!(public(), ["unrelated"]);
    let all = w.s.get("/api/v1/admin/notices", &w.admin()).json;
    let ended = all["notices"].as_array().unwrap().iter().find(|n| n["id"] == outage.as_str()).unwrap().clone();
    assert!(ended["ends_at"].is_string(), "{ended}");
    // The same write's audit entry says so.
    let changes = w.s.get("/api/v1/admin/audit?type=system_changed", &w.admin()).json;
    let last = changes["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["detail"]["after"]["push_suspended"], false);
    assert_eq!(last["detail"]["notice_ended"], json!({"id": outage, "ends_at": ended["ends_at"]}));
    // Turning it off again ends nothing more.
    put(json!({"push_suspended": false}));
    let changes = w.s.get("/api/v1/admin/audit?type=system_changed", &w.admin()).json;
    assert_eq!(changes["events"].as_array().unwrap().last().unwrap()["detail"]["notice_ended"], Value::Null);
}

#[test]
fn notices_by_time_window_and_language() {
    let w = World::new("");
    let mk = |title: &str, lang: &str, starts: &str, ends: Option<&str>| {
        let r = w.s.post(
            "/api/v1/admin/notices",
            &w.admin(),
            &json!({"kind": "maintenance", "title": title, "body": "b", "lang": lang, "starts_at": starts, "ends_at": ends}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    };
    mk("past", "ja", "2020-01-01T00:00:00Z", Some("2020-01-02T00:00:00Z"));
    mk("current", "ja", "2020-01-01T00:00:00Z", None);
    mk("future", "en", "2099-01-01T00:00:00Z", Some("2099-01-02T00:00:00Z"));
    let titles = |q: &str| -> Vec<String> {
        w.s.get(&format!("/api/v1/notices{q}"), &[]).json["notices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(titles(""), ["current"]);
    assert_eq!(titles("?from=2020-01-01T12:00:00Z&to=2020-01-01T13:00:00Z").len(), 2);
    assert_eq!(titles("?from=2099-01-01T12:00:00Z&lang=en"), ["future"]);
    let r = w.s.post("/api/v1/admin/notices", &w.admin(), &json!({"kind": "gossip", "title": "t", "body": "b"}));
    assert!(r.json["error"]["message"].as_str().unwrap().starts_with("kind"));
    assert_eq!(w.s.get("/api/v1/admin/notices", &w.admin()).json["notices"].as_array().unwrap().len(), 3);
    // Times with an offset are the instant they name: 09:00 in Japan is 00:00Z,
    // with or without a fraction, in bodies and in query strings.
    for starts in ["2031-12-01T09:00:00.000+09:00", "2031-12-01T09:00:00+09:00"] {
        let r = w.s.post(
            "/api/v1/admin/notices",
            &w.admin(),
            &json!({"kind": "maintenance", "title": "jst", "body": "b", "starts_at": starts}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.json["starts_at"], "2031-12-01T00:00:00Z", "{starts}: {}", r.text);
    }
    assert_eq!(titles("?from=2031-12-01T09:30:00%2B09:00"), ["jst", "jst", "current"], "newest first");
    let r = w.s.post(
        "/api/v1/admin/notices",
        &w.admin(),
        &json!({"kind": "maintenance", "title": "t", "body": "b", "starts_at": "2031-12-01T09:00:00"}),
    );
    assert!(r.status == 400 && r.json["error"]["message"].as_str().unwrap().starts_with("starts_at"), "{}", r.text);
}

#[test]
fn one_users_history_is_in_the_audit_in_order_with_actor_and_reason() {
    let w = World::new("");
    let _p1 = w.registered(C, "jweb", "taro");
    for (action, reason) in [("suspend", "customer asked"), ("resume", "customer back"), ("deregister", "phone replaced")] {
        assert_eq!(act(&w, "taro", action, json!({"reason": reason})).status, 200);
    }
    let _p2 = Phone::provision(&w.s).register(&w.s, C, "taro", PASSWORD);
    for (action, reason) in [("stop", "phone lost"), ("unstop", "phone found")] {
        assert_eq!(act(&w, "taro", action, json!({"reason": reason})).status, 200);
    }
    let r = w.s.get(&format!("/api/v1/admin/audit?contract_no={C}&user_id=taro"), &w.admin());
    let events = r.json["events"].as_array().unwrap();
    let steps: Vec<&str> =
        events.iter().map(|e| e["type"].as_str().unwrap()).filter(|t| *t == "registered" || t.starts_with("user_")).collect();
    assert_eq!(
        steps,
        [
            "user_created",
            "registered",
            "user_suspended",
            "user_resumed",
            "user_deregistered",
            "registered",
            "user_stopped",
            "user_unstopped"
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "in order");
    let stopped = events.iter().find(|e| e["type"] == "user_stopped").unwrap();
    assert_eq!(stopped["actor"], "operator:alice");
    assert_eq!(stopped["detail"]["reason"], "phone lost");
    assert_eq!(stopped["detail"]["before"]["registration"], "active");
    assert_eq!(stopped["detail"]["after"]["registration"], "deregistered");
    // Paging with the cursor.
    let page = w.s.get(&format!("/api/v1/admin/audit?contract_no={C}&user_id=taro&limit=3"), &w.admin()).json;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let next = page["next"].as_u64().unwrap();
    let rest = w.s.get(&format!("/api/v1/admin/audit?contract_no={C}&user_id=taro&after={next}"), &w.admin()).json;
    assert_eq!(rest["events"][0]["seq"], events[3]["seq"]);
    assert_eq!(w.s.cli(&["audit", "verify"], None).0, 0);
}

#[test]
fn contracts_list_detail_and_stats() {
    let w = World::new("");
    for (no, name) in [("100", "Alpha Trading"), ("200", "Beta Foods"), ("300", "Gamma Alpha")] {
        let r = w.s.post("/api/v1/admin/contracts", &w.admin(), &json!({"contract_no": no, "name": name, "edition": "jweb"}));
        assert_eq!(r.status, 201);
    }
    let page = w.s.get("/api/v1/admin/contracts?limit=2", &w.admin()).json;
    assert_eq!(page["contracts"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    let rest = w.s.get(&format!("/api/v1/admin/contracts?limit=2&after={next}"), &w.admin()).json;
    assert_eq!(rest["contracts"][0]["contract_no"], "300");
    assert!(rest["next"].is_null());
    let found = w.s.get("/api/v1/admin/contracts?q=alpha", &w.admin()).json;
    assert_eq!(found["contracts"].as_array().unwrap().len(), 2);
    let phone = w.registered("100", "jweb", "taro");
    let detail = w.s.get("/api/v1/admin/contracts/100", &w.admin()).json;
    assert_eq!(detail["users"][0]["registration"], "active");
    assert_eq!(w.s.get("/api/v1/admin/contracts/999", &w.admin()).status, 404);

    let id = w.login_challenge("100", "taro");
    phone.answer_with(&phone.fetch(&id), "reject", None, true);
    let _pending = w.login_challenge("100", "taro");
    let st = w.s.get("/api/v1/admin/stats", &w.admin()).json;
    assert_eq!(st["users"]["by_registration"]["active"], 1);
    assert_eq!(st["challenges_last_24h"]["rejected"], 1);
    assert_eq!(st["pending"], 1);
    assert_eq!(st["fraud_reports_last_24h"], 1);
    assert_eq!(st["fraud_reports"][0]["challenge_id"], id.as_str());
    assert_eq!(w.s.get("/api/v1/admin/stats", &[]).status, 401);
}

#[test]
fn csv_import_is_all_or_nothing() {
    let w = World::new("");
    w.contract(C, "jweb");
    let post = |body: &str| request("POST", &w.s.url("/api/v1/admin/import"), &w.admin(), Some(("text/csv", body.as_bytes().to_vec())));
    let bad = "contract_no,user_id,name,role,password,transaction_password\n\
               1000000001,a1,Alice,user,login-pass-1,\n\
               1000000001,b 2,Bob,user,login-pass-1,\n\
               9999,c3,Carol,user,login-pass-1,\n\
               1000000001,a1,Alice again,user,login-pass-1,\n\
               1000000001,d4,Dan,boss,short\n";
    let r = post(bad);
    assert_eq!(r.json["created"], 0, "{}", r.text);
    let lines: Vec<u64> = r.json["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [3, 4, 5, 6]);
    assert!(r.json["errors"][0]["message"].as_str().unwrap().starts_with("user_id"));
    assert_eq!(w.s.get(&format!("/api/v1/users/{C}/a1"), &w.rp()).status, 404, "nothing written");
    assert_eq!(request("POST", &w.s.url("/api/v1/admin/import"), &w.admin(), json_body(&json!({}))).status, 415);
    let good = "1000000001,a1,Alice,user,login-pass-1,tx-pass-123\n1000000001,b2,Bob,service_admin,login-pass-1\n";
    let r = post(good);
    assert_eq!(r.json, json!({"created": 2, "errors": []}), "{}", r.text);
    assert_eq!(login_json(&w, "a1")["reason"], "push_not_registered");
    // The CLI does the same, through the running server.
    let file = w.s.dir.join("users.csv");
    std::fs::write(&file, "1000000001,c3,Carol,user,login-pass-1\n1000000001,a1,Dup,user,login-pass-1\n").unwrap();
    let (code, _, err) = w.s.cli(&["import", file.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(err.contains("line 2: user_id: exists already"), "{err}");
    std::fs::write(&file, "1000000001,c3,Carol,user,login-pass-1\n").unwrap();
    assert_eq!(w.s.cli(&["import", file.to_str().unwrap()], None).0, 0);
    assert_eq!(user(&w, "c3")["registration"], "unregistered");
}

#[test]
fn a_backup_taken_under_load_restores_with_users_tokens_and_keys() {
    let w = World::new(&format!("{EMBEDDED}max_challenges_per_window = 1000"));
    let phone = w.registered(C, "jweb", "taro");
    w.user(C, "hanako", "user");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (url, h, stop) = (w.s.url("/api/v1/login"), w.rp(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({"contract_no": C, "user_id": if n % 2 == 0 { "taro" } else { "hanako" }, "password": PASSWORD});
                assert_eq!(request("POST", &url, &h, json_body(&body)).status, 200);
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let backup = w.s.dir.join("backup.redb");
    let (code, out, err) = w.s.cli(&["backup", backup.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(load.join().unwrap() > 0);
    // Restore refuses a data directory in use.
    let (code, _, err) = w.s.cli(&["restore", backup.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(err.contains("running"), "{err}");
    // Restore into a fresh data directory and serve from it.
    let fresh = Server::start("");
    let fresh_dir = fresh.dir.clone();
    let fresh_config = fresh.config.clone();
    drop(fresh);
    std::fs::create_dir_all(&fresh_dir).unwrap();
    std::fs::write(&fresh_config, format!("listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nargon2_memory_kib = 256\nargon2_iterations = 1\nmax_challenges_per_window = 1000\n", fresh_dir.join("data").display())).unwrap();
    // Without the key files the backup names, restore refuses.
    let (code, _, err) = cli(&fresh_config, &["restore", backup.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(err.contains("audit.key") && err.contains("audit key file of the server that made the backup"), "{err}");
    for f in ["secret.key", "audit.key"] {
        std::fs::create_dir_all(fresh_dir.join("data")).unwrap();
        std::fs::copy(w.s.dir.join("data").join(f), fresh_dir.join("data").join(f)).unwrap();
    }
    let (code, out, err) = cli(&fresh_config, &["restore", backup.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audit log intact"), "{out}");
    let mut restored = Server::adopt(fresh_dir, fresh_config);
    restored.respawn();
    let rp = w.rp();
    assert_eq!(restored.get(&format!("/api/v1/users/{C}/taro"), &rp).json["token_id"], phone.token_id.as_str());
    assert_eq!(restored.get(&format!("/api/v1/users/{C}/hanako"), &rp).json["registration"], "unregistered");
    let mut moved = phone.clone();
    moved.rebase(&restored.base);
    let r = restored.post("/api/v1/login", &rp, &json!({"contract_no": C, "user_id": "taro", "password": PASSWORD}));
    let id = r.json["challenge_id"].as_str().unwrap_or_else(|| panic!("{}", r.text)).to_string();
    assert_eq!(moved.answer(&moved.fetch(&id), "approve").json["status"], "approved");
}

#[test]
fn backups_are_0600_new_files_never_written_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new(EMBEDDED);
    w.registered(C, "jweb", "taro");
    let backup = w.s.dir.join("b1.redb");
    let (code, out, err) = w.s.cli(&["backup", backup.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
    // It holds the password hashes: owner only, whatever the umask.
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
    // Not over an existing file, and not through a symlink to one.
    let victim = w.s.dir.join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    let link = w.s.dir.join("b2.redb");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for dest in [&backup, &victim, &link] {
        let before = std::fs::read(dest).unwrap();
        let (code, _, err) = w.s.cli(&["backup", dest.to_str().unwrap()], None);
        assert_eq!(code, 1, "{}: {err}", dest.display());
        assert!(err.contains("exists"), "{err}");
        assert_eq!(std::fs::read(dest).unwrap(), before);
    }
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(&w.s.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn closed_challenges_go_after_challenge_retention_and_the_audit_keeps_them() {
    let w = World::new("challenge_retention = \"2s\"\nsweep_interval = \"200ms\"");
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    assert_eq!(phone.answer(&phone.fetch(&id), "approve").json["status"], "approved");
    assert_eq!(w.challenge(&id, 0).status, 200);
    eventually("the challenge to be purged", 10, || (w.challenge(&id, 0).status == 404).then_some(()));
    let audit = w.s.get(&format!("/api/v1/admin/audit?contract_no={C}&user_id=taro&type=challenge_closed"), &w.admin()).json;
    assert_eq!(audit["events"][0]["detail"]["challenge_id"], id.as_str());
    assert_eq!(audit["events"][0]["detail"]["status"], "approved");
    assert!(w.s.get("/api/v1/admin/audit?type=challenges_purged", &w.admin()).json["events"][0]["detail"]["count"].as_u64().unwrap() >= 1);
    assert_eq!(w.s.cli(&["audit", "verify"], None).0, 0);
}

/// Every way a challenge leaves `pending` goes through the one after-commit
/// hook: each moves `onepush_challenges_closed_total` exactly once, as many
/// as the audit log's `challenge_closed` entries.
#[test]
fn every_closure_of_a_challenge_is_counted_once() {
    let w = World::new("challenge_ttl = \"2s\"\nsweep_interval = \"200ms\"\nmax_pending_per_user = 1\nmax_challenges_per_window = 1000");
    let closed = || -> u64 {
        let m = w.s.get("/metrics", &[]).text;
        m.lines()
            .filter(|l| l.starts_with("onepush_challenges_closed_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let created = || -> u64 {
        let m = w.s.get("/metrics", &[]).text;
        m.lines()
            .filter(|l| l.starts_with("onepush_challenges_created_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let phone = w.registered(C, "jweb", "taro");
    let _hanako = w.registered(C, "jweb", "hanako");
    let _jiro = w.registered("1000000002", "jweb", "jiro");
    let reason = json!({"reason": "test"});
    let mut expect = 0;
    let mut step = |what: &str, f: &mut dyn FnMut()| {
        f();
        expect += 1;
        let n = eventually(what, 10, || Some(closed()).filter(|n| *n >= expect));
        assert_eq!(n, expect, "{what}: counted {n} closures, expected {expect}");
    };
    let a = w.login_challenge(C, "taro");
    let mut b = String::new();
    step("superseded by a newer challenge", &mut || b = w.login_challenge(C, "taro"));
    assert_eq!(w.challenge(&a, 0).json["status"], "cancelled");
    step("answered by the phone", &mut || {
        phone.answer(&phone.fetch(&b), "approve");
    });
    step("cancelled by the RP", &mut || {
        let c = w.login_challenge(C, "taro");
        assert_eq!(request("DELETE", &w.s.url(&format!("/api/v1/challenges/{c}")), &w.rp(), None).status, 200);
    });
    step("expired by the sweeper", &mut || {
        w.login_challenge(C, "taro");
        std::thread::sleep(Duration::from_millis(2500));
    });
    step("the account stopped (cascade)", &mut || {
        w.login_challenge(C, "taro");
        assert_eq!(act(&w, "taro", "stop", reason.clone()).status, 200);
    });
    step("the user deleted (cascade)", &mut || {
        w.login_challenge(C, "hanako");
        let url = w.s.url(&format!("/api/v1/admin/contracts/{C}/users/hanako"));
        assert_eq!(request("DELETE", &url, &w.admin(), json_body(&reason)).status, 200);
    });
    step("the contract cancelled (cascade)", &mut || {
        w.login_challenge("1000000002", "jiro");
        assert_eq!(w.s.post("/api/v1/admin/contracts/1000000002/cancel", &w.admin(), &reason).status, 200);
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(closed(), expect, "no closure counted twice");
    assert_eq!(created(), expect, "each challenge created counted once");
    let audited = crate::audit_lines(&w.s).iter().filter(|e| e["type"] == "challenge_closed").count() as u64;
    assert_eq!(audited, expect, "the audit log holds one entry per closure");
}
