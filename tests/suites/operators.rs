//! Operator accounts from the command line (`onepush operator list`,
//! `disable`, `enable`, `remove`, `passwd`), through the running server's
//! control socket and on the store when none runs: who can sign in, which
//! sessions end, the last enabled operator, and the audit of each change.

use serde_json::{json, Value};

use crate::common::*;

const BOB_PASSWORD: &str = "bob-pass-1234";

fn sign_in(w: &World, name: &str, password: &str) -> Resp {
    w.s.post("/api/v1/admin/session", &[], &json!({"username": name, "password": password}))
}

/// A session cookie for `name`, as the admin page would hold it.
fn session(w: &World, name: &str, password: &str) -> Vec<(&'static str, String)> {
    let r = sign_in(w, name, password);
    assert_eq!(r.status, 200, "{}", r.text);
    vec![("Cookie", r.header("set-cookie").unwrap().split(';').next().unwrap().to_string())]
}

/// The status of an admin request made with `cookie`.
fn admin_status(w: &World, cookie: &[(&'static str, String)]) -> u16 {
    w.s.get("/api/v1/admin/contracts", cookie).status
}

fn cli_ok(w: &World, args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = w.s.cli(args, stdin);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

fn add_bob(w: &World) {
    cli_ok(w, &["operator", "add", "bob", "--password-stdin"], Some(BOB_PASSWORD));
}

/// The `operator list` line of `name`, split at its tabs.
fn listed(w: &World, name: &str) -> Option<Vec<String>> {
    let out = cli_ok(w, &["operator", "list"], None);
    out.lines().map(|l| l.split('\t').map(String::from).collect::<Vec<_>>()).find(|f| f[0] == name)
}

/// The CLI's audit entries of `kind` about operator `name`.
fn audited(w: &World, kind: &str, name: &str) -> Vec<Value> {
    crate::audit_lines(&w.s).into_iter().filter(|e| e["type"] == kind && e["detail"]["operator"] == name).collect()
}

#[test]
fn the_list_shows_every_operator_with_its_state_and_last_sign_in() {
    let w = World::new("");
    add_bob(&w);
    let alice = listed(&w, "alice").expect("alice is listed");
    assert_eq!(alice.len(), 4, "{alice:?}");
    assert!(alice[1].starts_with("created 20") && alice[1].ends_with('Z'), "{alice:?}");
    assert_eq!(alice[2], "enabled");
    assert!(alice[3].starts_with("last sign-in 20"), "World signed alice in: {alice:?}");
    assert_eq!(listed(&w, "bob").unwrap()[2..], ["enabled", "no sign-in recorded"]);
    cli_ok(&w, &["operator", "disable", "bob"], None);
    let bob = listed(&w, "bob").unwrap();
    assert!(bob[2].starts_with("disabled 20"), "{bob:?}");
}

#[test]
fn a_disabled_operator_cannot_sign_in_and_its_session_ends_at_once() {
    let w = World::new("");
    add_bob(&w);
    let bob = session(&w, "bob", BOB_PASSWORD);
    assert_eq!(admin_status(&w, &bob), 200);
    let out = cli_ok(&w, &["operator", "disable", "bob"], None);
    assert!(out.contains("bob disabled"), "{out}");
    assert_eq!(admin_status(&w, &bob), 401, "the session ended with the disable");
    assert_eq!(admin_status(&w, &w.admin()), 200, "other operators keep theirs");
    // The right password is answered as a wrong one: nothing says the account exists.
    let right = sign_in(&w, "bob", BOB_PASSWORD);
    let wrong = sign_in(&w, "nobody", BOB_PASSWORD);
    assert_eq!((right.status, wrong.status), (401, 401));
    assert_eq!(right.json, wrong.json);
    assert!(right.header("set-cookie").is_none());
    let attempt = crate::audit_lines(&w.s).into_iter().rev().find(|e| e["type"] == "operator_login" && e["detail"]["username"] == "bob");
    assert_eq!(attempt.map(|e| (e["detail"]["ok"].clone(), e["detail"]["disabled"].clone())), Some((json!(false), json!(true))));
    let (code, _, err) = w.s.cli(&["operator", "disable", "bob"], None);
    assert_eq!(code, 1, "disabling twice changes nothing: {err}");
    // Enabled again: the password works; the old session stays ended.
    cli_ok(&w, &["operator", "enable", "bob"], None);
    assert_eq!(admin_status(&w, &bob), 401);
    assert_eq!(admin_status(&w, &session(&w, "bob", BOB_PASSWORD)), 200);
    for kind in ["operator_disabled", "operator_enabled"] {
        let e = audited(&w, kind, "bob");
        assert_eq!(e.len(), 1, "{kind}: {e:?}");
        assert_eq!(e[0]["actor"], "cli");
    }
}

#[test]
fn a_new_password_ends_every_session_of_the_operator() {
    let w = World::new("");
    add_bob(&w);
    let created = listed(&w, "bob").unwrap()[1].clone();
    let (first, second) = (session(&w, "bob", BOB_PASSWORD), session(&w, "bob", BOB_PASSWORD));
    let out = cli_ok(&w, &["operator", "passwd", "bob", "--password-stdin"], Some("bob-new-pass-5678\n"));
    assert!(out.contains("password of bob changed"), "{out}");
    assert_eq!((admin_status(&w, &first), admin_status(&w, &second)), (401, 401));
    assert_eq!(admin_status(&w, &w.admin()), 200, "other operators keep theirs");
    assert_eq!(sign_in(&w, "bob", BOB_PASSWORD).status, 401);
    assert_eq!(admin_status(&w, &session(&w, "bob", "bob-new-pass-5678")), 200);
    assert_eq!(listed(&w, "bob").unwrap()[1], created, "a new password is not a new operator");
    assert_eq!(audited(&w, "operator_password_changed", "bob")[0]["actor"], "cli");
}

#[test]
fn a_removed_operator_is_gone_with_its_sessions_and_the_last_enabled_one_stays() {
    let w = World::new("");
    add_bob(&w);
    let bob = session(&w, "bob", BOB_PASSWORD);
    cli_ok(&w, &["operator", "remove", "bob"], None);
    assert_eq!(listed(&w, "bob"), None);
    assert_eq!(admin_status(&w, &bob), 401);
    assert_eq!(sign_in(&w, "bob", BOB_PASSWORD).status, 401);
    assert_eq!(audited(&w, "operator_removed", "bob")[0]["actor"], "cli");
    let (code, _, err) = w.s.cli(&["operator", "remove", "bob"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no operator bob"), "{err}");
    // Alice is the only operator, then the only enabled one: she stays.
    add_bob(&w);
    cli_ok(&w, &["operator", "disable", "bob"], None);
    for action in ["remove", "disable"] {
        let (code, out, err) = w.s.cli(&["operator", action, "alice"], None);
        assert_eq!(code, 1, "{action}: {out}");
        assert!(err.contains("alice is the last enabled operator") && err.contains("at least one operator must stay enabled"), "{err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("onepush: ") && !l.starts_with("onepush: config")).count(), 1, "{err}");
    }
    assert_eq!(listed(&w, "alice").unwrap()[2], "enabled");
    assert_eq!(admin_status(&w, &w.admin()), 200);
    assert!(audited(&w, "operator_removed", "alice").is_empty() && audited(&w, "operator_disabled", "alice").is_empty());
    // A disabled operator may go, the enabled one then still stays.
    cli_ok(&w, &["operator", "remove", "bob"], None);
    assert_eq!(w.s.cli(&["operator", "remove", "alice"], None).0, 1);
}

#[test]
fn the_commands_work_on_the_store_when_no_server_runs() {
    let mut w = World::new("");
    add_bob(&w);
    w.s.kill();
    cli_ok(&w, &["operator", "disable", "bob"], None);
    assert!(listed(&w, "bob").unwrap()[2].starts_with("disabled "));
    let (code, _, err) = w.s.cli(&["operator", "remove", "alice"], None);
    assert_eq!(code, 1);
    assert!(err.contains("last enabled operator"), "{err}");
    w.s.respawn();
    assert_eq!(sign_in(&w, "bob", BOB_PASSWORD).status, 401);
    cli_ok(&w, &["operator", "enable", "bob"], None);
    assert_eq!(sign_in(&w, "bob", BOB_PASSWORD).status, 200);
    assert_eq!(audited(&w, "operator_disabled", "bob")[0]["actor"], "cli");
    assert_eq!(w.s.cli(&["audit", "verify"], None).0, 0);
}
