//! The router and the handlers. `ROUTES` lists every endpoint; a test checks
//! that each one is documented in the OpenAPI file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use tiny_http::Method;

use super::request::{self, bearer, client_ip, cookie, header, json_body, query_param, read_body, wait_param};
use super::response::Exchange;
use super::waiters::{self, device_list, Msg};
use super::{assets, Http, DEMO_RP};
use crate::domain::ids::Password;
use crate::domain::{now_ms, parse_rfc3339, rfc3339};
use crate::error::Error;
use crate::http::views::{contract_view, notice_view, rp_view, system_view, user_view};
use crate::service::AuditQuery;
use crate::service::DeviceRequest;

/// Every endpoint: method and path pattern (`{x}` is one segment).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/v1/status"),
    ("POST", "/api/v1/login"),
    ("POST", "/api/v1/approvals"),
    ("GET", "/api/v1/challenges/{id}"),
    ("DELETE", "/api/v1/challenges/{id}"),
    ("GET", "/api/v1/users/{contract_no}/{user_id}"),
    ("POST", "/api/v1/device/provision"),
    ("GET", "/api/v1/device/challenges"),
    ("POST", "/api/v1/device/challenges/{id}/response"),
    ("POST", "/api/v1/registrations"),
    ("POST", "/api/v1/admin/session"),
    ("POST", "/api/v1/admin/bootstrap"),
    ("DELETE", "/api/v1/admin/session"),
    ("POST", "/api/v1/admin/contracts"),
    ("POST", "/api/v1/admin/contracts/{contract_no}/users"),
    ("GET", "/api/v1/admin/contracts"),
    ("GET", "/api/v1/admin/contracts/{contract_no}"),
    ("POST", "/api/v1/admin/contracts/{contract_no}/cancel"),
    ("POST", "/api/v1/admin/contracts/{contract_no}/service-admin"),
    ("DELETE", "/api/v1/admin/contracts/{contract_no}/users/{user_id}"),
    ("POST", "/api/v1/admin/contracts/{contract_no}/users/{user_id}/{action}"),
    ("GET", "/api/v1/admin/system"),
    ("PUT", "/api/v1/admin/system"),
    ("GET", "/api/v1/admin/notices"),
    ("POST", "/api/v1/admin/notices"),
    ("DELETE", "/api/v1/admin/notices/{id}"),
    ("GET", "/api/v1/admin/audit"),
    ("GET", "/api/v1/admin/stats"),
    ("POST", "/api/v1/admin/import"),
    ("POST", "/api/v1/users/{contract_no}/{user_id}/deregister"),
    ("GET", "/api/v1/notices"),
];

const SESSION_COOKIE: &str = "onepush_session";

pub fn handle(http: &Arc<Http>, req: tiny_http::Request) {
    let ex = Exchange::new(req, http.app.metrics.clone());
    // HEAD is answered as GET; tiny_http leaves the body out.
    let method = match ex.request().method() {
        Method::Head => Method::Get,
        m => m.clone(),
    };
    let path = request::path(ex.request()).to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // Bodies on state-changing requests must be JSON (API.md, and CSRF).
    let routed = ROUTES.iter().any(|(m, p)| *m == method.as_str() && matches_pattern(p, &segs)) || segs.starts_with(&["demo", "api"]);
    let csv = segs == ["api", "v1", "admin", "import"];
    if routed && !csv && matches!(method, Method::Post | Method::Put | Method::Delete) && request::has_body(ex.request()) {
        if let Err(e) = request::require_json(ex.request()) {
            return ex.error(&e);
        }
    }
    use Method::*;
    match (&method, segs.as_slice()) {
        (Get, ["healthz"]) => healthz(http, ex),
        (Get, ["metrics"]) => {
            let text = http.app.metrics_text();
            ex.send(200, "text/plain; version=0.0.4", text.into_bytes())
        }
        (Get, ["api", "openapi.json"]) => static_file(ex, "openapi.json"),
        (Get, ["static", name]) => static_file(ex, name),
        (Get, [name]) if (*name != "demo" || http.demo) && assets::page(name).is_some() => {
            #[allow(clippy::expect_used, reason = "the arm's guard found the page")]
            let a = assets::page(name).expect("the guard found it");
            ex.send(200, a.content_type, a.body)
        }
        // The demo bank's server side: the RP API as the RP "demo", no key.
        (Post, ["demo", "api", "login"]) if http.demo => login_as(http, ex, DEMO_RP.to_string()),
        (Post, ["demo", "api", "approvals"]) if http.demo => approval_as(http, ex, DEMO_RP.to_string()),
        (Get, ["demo", "api", "challenges", id]) if http.demo => get_challenge_as(http, ex, DEMO_RP.to_string(), id),
        (Delete, ["demo", "api", "challenges", id]) if http.demo => cancel_challenge_as(http, ex, DEMO_RP.to_string(), id),
        (Get, ["demo", "api", "users", c, u]) if http.demo => get_user_as(http, ex, DEMO_RP, c, u),
        (Post, ["demo", "api", "users", c, u, "deregister"]) if http.demo => customer_deregister_as(http, ex, DEMO_RP, c, u),
        (Get, ["api", "v1", "status"]) => status(http, ex),
        (Post, ["api", "v1", "login"]) => login(http, ex),
        (Post, ["api", "v1", "approvals"]) => approval(http, ex),
        (Get, ["api", "v1", "challenges", id]) => get_challenge(http, ex, id),
        (Delete, ["api", "v1", "challenges", id]) => cancel_challenge(http, ex, id),
        (Get, ["api", "v1", "users", c, u]) => get_user(http, ex, c, u),
        (Post, ["api", "v1", "device", "provision"]) => provision(http, ex),
        (Get, ["api", "v1", "device", "challenges"]) => device_challenges(http, ex),
        (Post, ["api", "v1", "device", "challenges", id, "response"]) => device_response(http, ex, id),
        (Post, ["api", "v1", "registrations"]) => register(http, ex),
        (Post, ["api", "v1", "admin", "session"]) => admin_login(http, ex),
        (Post, ["api", "v1", "admin", "bootstrap"]) => admin_bootstrap(http, ex),
        (Delete, ["api", "v1", "admin", "session"]) => admin_logout(http, ex),
        (Post, ["api", "v1", "admin", "contracts"]) => admin_create_contract(http, ex),
        (Post, ["api", "v1", "admin", "contracts", no, "users"]) => admin_create_user(http, ex, no),
        (Get, ["api", "v1", "admin", "contracts"]) => admin_contracts(http, ex),
        (Get, ["api", "v1", "admin", "contracts", no]) => admin_contract(http, ex, no),
        (Post, ["api", "v1", "admin", "contracts", no, "cancel"]) => admin_cancel_contract(http, ex, no),
        (Post, ["api", "v1", "admin", "contracts", no, "service-admin"]) => admin_service_admin(http, ex, no),
        (Delete, ["api", "v1", "admin", "contracts", no, "users", uid]) => admin_delete_user(http, ex, no, uid),
        (Post, ["api", "v1", "admin", "contracts", no, "users", uid, action]) => admin_action(http, ex, no, uid, action),
        (Get, ["api", "v1", "admin", "system"]) => admin_get_system(http, ex),
        (Put, ["api", "v1", "admin", "system"]) => admin_put_system(http, ex),
        (Get, ["api", "v1", "admin", "notices"]) => admin_notices(http, ex),
        (Post, ["api", "v1", "admin", "notices"]) => admin_create_notice(http, ex),
        (Delete, ["api", "v1", "admin", "notices", id]) => admin_delete_notice(http, ex, id),
        (Get, ["api", "v1", "admin", "audit"]) => admin_audit(http, ex),
        (Get, ["api", "v1", "admin", "stats"]) => admin_stats(http, ex),
        (Post, ["api", "v1", "admin", "import"]) => admin_import(http, ex),
        (Post, ["api", "v1", "users", c, u, "deregister"]) => customer_deregister(http, ex, c, u),
        (Get, ["api", "v1", "notices"]) => public_notices(http, ex),
        _ => match allowed_methods(http, &segs) {
            Some(allow) => ex.error(&Error::MethodNotAllowed { allow }),
            None => ex.error(&Error::NotFound(format!("no endpoint {path}"))),
        },
    }
}

/// The demo bank's RP endpoints (`serve --demo`), for `Allow`.
const DEMO_ROUTES: &[(&str, &str)] = &[
    ("POST", "/demo/api/login"),
    ("POST", "/demo/api/approvals"),
    ("GET", "/demo/api/challenges/{id}"),
    ("DELETE", "/demo/api/challenges/{id}"),
    ("GET", "/demo/api/users/{c}/{u}"),
    ("POST", "/demo/api/users/{c}/{u}/deregister"),
];

/// The methods a known path answers, as an `Allow` value (HEAD wherever GET
/// is); `None` for a path that is not known.
fn allowed_methods(http: &Http, segs: &[&str]) -> Option<String> {
    let page = match segs {
        [name] => (*name != "demo" || http.demo) && assets::page(name).is_some(),
        ["static", name] | ["api", name] => assets::get(name).is_some() && (segs[0] == "static" || *name == "openapi.json"),
        _ => false,
    };
    let demo = if http.demo { DEMO_ROUTES } else { &[] };
    let mut methods: Vec<&str> = ROUTES.iter().chain(demo).filter(|(_, p)| matches_pattern(p, segs)).map(|(m, _)| *m).collect();
    if page {
        methods.push("GET");
    }
    if methods.is_empty() {
        return None;
    }
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    let order = ["GET", "HEAD", "POST", "PUT", "DELETE"];
    methods.sort_by_key(|m| order.iter().position(|o| o == m));
    methods.dedup();
    Some(methods.join(", "))
}

fn matches_pattern(pattern: &str, segs: &[&str]) -> bool {
    let p: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    p.len() == segs.len() && p.iter().zip(segs).all(|(a, b)| a.starts_with('{') || a == b)
}

/// A file built into the binary (`static/`), sent without a copy.
fn static_file(ex: Exchange, name: &str) {
    match assets::get(name) {
        Some(a) => ex.send(200, a.content_type, a.body),
        None => ex.error(&Error::NotFound(format!("no file {name}"))),
    }
}

fn healthz(http: &Arc<Http>, ex: Exchange) {
    match http.app.store_answers() {
        Ok(()) => ex.json(200, &json!({"status": "ok"})),
        Err(e) => ex.error(&e),
    }
}

fn status(http: &Arc<Http>, ex: Exchange) {
    match http.app.system() {
        Ok(s) => ex.json(200, &json!({"push_suspended": s.push_suspended, "server_time": rfc3339(now_ms())})),
        Err(e) => ex.error(&e),
    }
}

// ---------------------------------------------------------------- RP API

/// The RP behind the bearer key, or the exchange back with a 401 sent.
fn rp(http: &Http, ex: Exchange) -> Option<(String, Exchange)> {
    let Some(key) = bearer(ex.request()) else {
        ex.error(&Error::Unauthorized("Authorization: Bearer <rp key> is required".into()));
        return None;
    };
    match http.app.rp_for_key(key) {
        Ok(name) => Some((name, ex)),
        Err(e) => {
            ex.error(&e);
            None
        }
    }
}

fn login(http: &Arc<Http>, ex: Exchange) {
    let Some((rp, ex)) = rp(http, ex) else { return };
    login_as(http, ex, rp)
}

fn login_as(http: &Arc<Http>, mut ex: Exchange, rp: String) {
    match json_body(ex.request_mut()) {
        Ok(input) => http.app.login(rp, input, now_ms(), move |r| ex.result(200, r)),
        Err(e) => ex.error(&e),
    }
}

fn approval(http: &Arc<Http>, ex: Exchange) {
    let Some((rp, ex)) = rp(http, ex) else { return };
    approval_as(http, ex, rp)
}

fn approval_as(http: &Arc<Http>, mut ex: Exchange, rp: String) {
    match json_body(ex.request_mut()) {
        Ok(input) => http.app.approve(rp, input, now_ms(), move |r| ex.result(200, r)),
        Err(e) => ex.error(&e),
    }
}

fn get_challenge(http: &Arc<Http>, ex: Exchange, id: &str) {
    let Some((rp, ex)) = rp(http, ex) else { return };
    get_challenge_as(http, ex, rp, id)
}

fn get_challenge_as(http: &Arc<Http>, ex: Exchange, rp: String, id: &str) {
    let wait = match wait_param(ex.request(), http.app.cfg().max_wait) {
        Ok(w) => w,
        Err(e) => return ex.error(&e),
    };
    match http.app.challenge_for_rp(&rp, id) {
        Ok(c) if c.is_pending() && wait > 0 => {
            let deadline = Instant::now() + Duration::from_millis(wait);
            let _ = http.waiters.send(Msg::ParkRp { challenge_id: id.to_string(), rp, ex, deadline });
        }
        Ok(c) => ex.json(200, &rp_view(&c)),
        Err(e) => ex.error(&e),
    }
}

fn cancel_challenge(http: &Arc<Http>, ex: Exchange, id: &str) {
    let Some((rp, ex)) = rp(http, ex) else { return };
    cancel_challenge_as(http, ex, rp, id)
}

fn cancel_challenge_as(http: &Arc<Http>, ex: Exchange, rp: String, id: &str) {
    http.app.cancel(rp, id.to_string(), now_ms(), move |r| match r {
        Ok(c) => ex.json(200, &rp_view(&c)),
        Err(e) => ex.error(&e),
    });
}

fn get_user(http: &Arc<Http>, ex: Exchange, contract_no: &str, user_id: &str) {
    let Some((rp, ex)) = rp(http, ex) else { return };
    get_user_as(http, ex, &rp, contract_no, user_id)
}

fn get_user_as(http: &Arc<Http>, ex: Exchange, rp: &str, contract_no: &str, user_id: &str) {
    match http.app.user(rp, contract_no, user_id) {
        Ok(u) => ex.json(200, &user_view(&u)),
        Err(e) => ex.error(&e),
    }
}

// ---------------------------------------------------------------- device API

fn provision(http: &Arc<Http>, mut ex: Exchange) {
    let ip = client_ip(ex.request(), &http.app.cfg().trusted_proxies);
    match json_body(ex.request_mut()) {
        Ok(input) => http.app.provision(input, ip, now_ms(), move |r| ex.result(201, r)),
        Err(e) => ex.error(&e),
    }
}

/// Checks the signed headers; returns the token and the raw body.
fn device(http: &Http, mut ex: Exchange) -> Option<(crate::domain::account::Token, Vec<u8>, Exchange)> {
    let body = match read_body(ex.request_mut(), request::BODY_LIMIT) {
        Ok(b) => b,
        Err(e) => {
            ex.error(&e);
            return None;
        }
    };
    let req = ex.request();
    let (Some(token), Some(time), Some(sig)) =
        (header(req, "X-Onepush-Token"), header(req, "X-Onepush-Time"), header(req, "X-Onepush-Signature"))
    else {
        ex.error(&Error::Unauthorized("X-Onepush-Token, X-Onepush-Time and X-Onepush-Signature are required".into()));
        return None;
    };
    let dr = DeviceRequest { token_id: token, time, signature: sig, method: req.method().as_str(), path: request::path(req), body: &body };
    match http.app.authenticate_device(&dr, now_ms()) {
        Ok(t) => Some((t, body, ex)),
        Err(e) => {
            ex.error(&e);
            None
        }
    }
}

fn device_challenges(http: &Arc<Http>, ex: Exchange) {
    let Some((token, _, ex)) = device(http, ex) else { return };
    // HEAD has no body to carry challenges: it never delivers or parks.
    if *ex.request().method() == Method::Head {
        return ex.json(200, &device_list(vec![]));
    }
    let wait = match wait_param(ex.request(), http.app.cfg().max_wait) {
        Ok(w) => w,
        Err(e) => return ex.error(&e),
    };
    match waiters::deliver(&http.app, &token.token_id, ex) {
        None => {}
        Some(ex) if wait == 0 => ex.json(200, &device_list(vec![])),
        Some(ex) => {
            let deadline = Instant::now() + Duration::from_millis(wait);
            let _ = http.waiters.send(Msg::ParkDevice { token_id: token.token_id, ex, deadline });
        }
    }
}

fn device_response(http: &Arc<Http>, ex: Exchange, id: &str) {
    let Some((token, body, ex)) = device(http, ex) else { return };
    if let Err(e) = request::require_json(ex.request()) {
        return ex.error(&e);
    }
    match request::parse_json(&body) {
        Ok(input) => http.app.answer(&token, id.to_string(), input, now_ms(), move |r| match r {
            Ok(status) => ex.json(200, &json!({"status": status.as_str()})),
            Err(e) => ex.error(&e),
        }),
        Err(e) => ex.error(&e),
    }
}

// ---------------------------------------------------------------- registration

fn register(http: &Arc<Http>, mut ex: Exchange) {
    let ip = client_ip(ex.request(), &http.app.cfg().trusted_proxies);
    match json_body(ex.request_mut()) {
        Ok(input) => http.app.register(input, ip, now_ms(), move |r| ex.result(201, r)),
        Err(e) => ex.error(&e),
    }
}

// ---------------------------------------------------------------- operator admin

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionInput {
    username: String,
    password: Password,
}

fn admin_login(http: &Arc<Http>, mut ex: Exchange) {
    let input: SessionInput = match json_body(ex.request_mut()) {
        Ok(i) => i,
        Err(e) => return ex.error(&e),
    };
    let ip = client_ip(ex.request(), &http.app.cfg().trusted_proxies);
    let r = http.app.admin_login(&input.username, &input.password, ip, now_ms());
    signed_in(http, ex, 200, &input.username, r);
}

/// Answers a sign-in (or the first operator's creation) with its cookie.
fn signed_in(http: &Arc<Http>, mut ex: Exchange, status: u16, username: &str, token: crate::error::Result<String>) {
    match token {
        Ok(token) => {
            set_session_cookie(http, &mut ex, &token);
            ex.json(status, &json!({"username": username}))
        }
        Err(e) => ex.error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BootstrapInput {
    code: String,
    username: String,
    password: Password,
}

fn admin_bootstrap(http: &Arc<Http>, mut ex: Exchange) {
    let input: BootstrapInput = match json_body(ex.request_mut()) {
        Ok(i) => i,
        Err(e) => return ex.error(&e),
    };
    let ip = client_ip(ex.request(), &http.app.cfg().trusted_proxies);
    let r = http.app.bootstrap(&input.code, &input.username, &input.password, ip, now_ms());
    signed_in(http, ex, 201, &input.username, r);
}

fn set_session_cookie(http: &Http, ex: &mut Exchange, token: &str) {
    let secure = if request::via_tls(ex.request(), &http.app.cfg().trusted_proxies) { "; Secure" } else { "" };
    ex.add_header("Set-Cookie", &format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"));
}

fn admin_logout(http: &Arc<Http>, mut ex: Exchange) {
    if let Some(token) = cookie(ex.request(), SESSION_COOKIE) {
        http.app.admin_logout(token);
    }
    ex.add_header("Set-Cookie", &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"));
    ex.json(200, &json!({}))
}

/// The operator behind the session cookie, or the exchange answered 401.
fn operator(http: &Http, ex: Exchange) -> Option<(String, Exchange)> {
    let r = match cookie(ex.request(), SESSION_COOKIE) {
        Some(token) => http.app.admin_session(token, now_ms()),
        None => Err(Error::Unauthorized("sign in first".into())),
    };
    match r {
        Ok(name) => Some((name, ex)),
        Err(e) => {
            ex.error(&e);
            None
        }
    }
}

fn admin_create_contract(http: &Arc<Http>, ex: Exchange) {
    let Some((op, mut ex)) = operator(http, ex) else { return };
    let r = json_body(ex.request_mut()).and_then(|input| http.app.create_contract(&op, input, now_ms()));
    ex.result(201, r.map(|c| contract_view(&c)))
}

fn admin_create_user(http: &Arc<Http>, ex: Exchange, contract_no: &str) {
    let Some((op, mut ex)) = operator(http, ex) else { return };
    let r = json_body(ex.request_mut()).and_then(|input| http.app.create_user(&op, contract_no, input, now_ms()));
    ex.result(201, r.map(|u| user_view(&u)))
}

fn customer_deregister(http: &Arc<Http>, ex: Exchange, contract_no: &str, user_id: &str) {
    let Some((rp, ex)) = rp(http, ex) else { return };
    customer_deregister_as(http, ex, &rp, contract_no, user_id)
}

fn customer_deregister_as(http: &Arc<Http>, mut ex: Exchange, rp: &str, contract_no: &str, user_id: &str) {
    let r = json_body(ex.request_mut()).and_then(|input| http.app.customer_deregister(rp, contract_no, user_id, input, now_ms()));
    ex.result(200, r.map(|u| user_view(&u)))
}

fn public_notices(http: &Arc<Http>, ex: Exchange) {
    let now = now_ms();
    let time = |name: &str| query_param(ex.request(), name).map(|v| parse_rfc3339(name, &url_decode(v))).transpose();
    let r = (|| {
        let from = time("from")?.unwrap_or(now);
        let to = time("to")?.unwrap_or(from);
        let lang = query_param(ex.request(), "lang").map(url_decode);
        http.app.public_notices(from, to, lang.as_deref())
    })();
    ex.result(200, r.map(|list| json!({"notices": list.iter().map(notice_view).collect::<Vec<_>>()})))
}

fn admin_contracts(http: &Arc<Http>, ex: Exchange) {
    let Some((_, ex)) = operator(http, ex) else { return };
    let req = ex.request();
    let q = query_param(req, "q").map(url_decode).unwrap_or_default();
    let after = query_param(req, "after").map(url_decode).unwrap_or_default();
    let limit = match query_param(req, "limit").map(str::parse::<usize>).transpose() {
        Ok(l) => l.unwrap_or(50).clamp(1, 500),
        Err(_) => return ex.error(&Error::bad_field("limit", "must be a whole number")),
    };
    let r = http.app.contracts(&q, &after, limit);
    ex.result(200, r.map(|(list, next)| json!({"contracts": list.iter().map(contract_view).collect::<Vec<_>>(), "next": next})))
}

fn admin_contract(http: &Arc<Http>, ex: Exchange, no: &str) {
    let Some((_, ex)) = operator(http, ex) else { return };
    let r = http.app.contract_detail(no).map(|(c, users)| {
        let mut v = contract_view(&c);
        v["users"] = json!(users.iter().map(user_view).collect::<Vec<_>>());
        v
    });
    ex.result(200, r)
}

fn admin_cancel_contract(http: &Arc<Http>, ex: Exchange, no: &str) {
    let Some((op, mut ex)) = operator(http, ex) else { return };
    let r = json_body(ex.request_mut()).and_then(|input| http.app.cancel_contract(&op, no, input, now_ms()));
    ex.result(200, r.map(|c| contract_view(&c)))
}

fn admin_service_admin(http: &Arc<Http>, ex: Exchange, no: &str) {
    let Some((op, mut ex)) = operator(http, ex) else { return };
    let r = json_body(ex.request_mut()).and_then(|input| http.app.change_service_admin(&op, no, input, now_ms()));
    ex.result(200, r.map(|c| contract_view(&c)))
}

fn admin_delete_user(http: &Arc<Http>, ex: Exchange, no: &str, uid: &str) {
    let Some((op, mut ex)) = operator(http, ex) else { return };
    let r = json_body(ex.request_mut()).and_then(|input| http.app.delete_user(&op, no, uid, input, now_ms()));
    ex.result(200, r.map(|()| json!({"deleted": true, "contract_no": no, "user_id": uid})))
}

fn admin_action(http: &Arc<Http>, ex: Exchange, no: &str, uid: &str, action: &str) {
    let Some((op, mut ex)) = operator(http, ex) else { return };
    let r = json_body(ex.request_mut()).and_then(|input| http.app.operator_action(&op, no, uid, action, input, now_ms()));
    ex.result(200, r.map(|u| user_view(&u)))
}

fn admin_get_system(http: &Arc<Http>, ex: Exchange) {
    let Some((_, ex)) = operator(http, ex) else { return };
    ex.result(200, http.app.system().map(|s| system_view(&s)))
}

fn admin_put_system(http: &Arc<Http>, ex: Exchange) {
    let Some((op, mut ex)) = operator(http, ex) else { return };
    let r = json_body(ex.request_mut()).and_then(|input| http.app.set_system(&op, input, now_ms()));
    ex.result(200, r.map(|s| system_view(&s)))
}

fn admin_notices(http: &Arc<Http>, ex: Exchange) {
    let Some((_, ex)) = operator(http, ex) else { return };
    ex.result(200, http.app.notices().map(|list| json!({"notices": list.iter().map(notice_view).collect::<Vec<_>>()})))
}

fn admin_create_notice(http: &Arc<Http>, ex: Exchange) {
    let Some((op, mut ex)) = operator(http, ex) else { return };
    let r = json_body(ex.request_mut()).and_then(|input| http.app.create_notice(&op, input, now_ms()));
    ex.result(201, r.map(|n| notice_view(&n)))
}

fn admin_delete_notice(http: &Arc<Http>, ex: Exchange, id: &str) {
    let Some((op, ex)) = operator(http, ex) else { return };
    ex.result(200, http.app.delete_notice(&op, id).map(|()| json!({"deleted": true, "id": id})))
}

fn admin_audit(http: &Arc<Http>, ex: Exchange) {
    let Some((_, ex)) = operator(http, ex) else { return };
    let req = ex.request();
    let num = |name: &str, default: u64| -> Result<u64, Error> {
        query_param(req, name)
            .filter(|v| !v.is_empty())
            .map_or(Ok(default), |v| v.parse().map_err(|_| Error::bad_field(name, "must be a whole number")))
    };
    let text = |name: &str| query_param(req, name).filter(|v| !v.is_empty()).map(url_decode);
    let r = (|| {
        let q = AuditQuery {
            after: num("after", 0)?,
            limit: num("limit", 100)? as usize,
            contract_no: text("contract_no"),
            user_id: text("user_id"),
            kind: text("type"),
        };
        if q.user_id.is_some() && q.contract_no.is_none() {
            return Err(Error::bad_field("user_id", "goes with contract_no"));
        }
        http.app.search_audit(&q)
    })();
    ex.result(
        200,
        r.map(|(events, next)| {
            json!({"events": events.iter().map(|e| json!({
        "seq": e.seq, "at": e.at, "type": e.kind, "actor": e.actor, "contract_no": e.contract_no,
        "user_id": e.user_id, "detail": e.detail, "hash": e.hash})).collect::<Vec<_>>(), "next": next})
        }),
    )
}

fn admin_stats(http: &Arc<Http>, ex: Exchange) {
    let Some((_, ex)) = operator(http, ex) else { return };
    ex.result(200, http.app.stats(now_ms()))
}

/// API.md: CSV import bodies up to 5 MiB.
fn admin_import(http: &Arc<Http>, ex: Exchange) {
    let Some((op, mut ex)) = operator(http, ex) else { return };
    let ct = header(ex.request(), "Content-Type").unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if ct != "text/csv" {
        return ex.error(&Error::UnsupportedMediaType);
    }
    let r = read_body(ex.request_mut(), request::CSV_LIMIT)
        .and_then(|b| String::from_utf8(b).map_err(|_| Error::bad_field("body", "must be UTF-8 text")))
        .and_then(|text| http.app.import_csv(&format!("operator:{op}"), &text, now_ms()));
    match r {
        Ok(Ok(n)) => ex.json(200, &json!({"created": n, "errors": []})),
        Ok(Err(errors)) => ex.json(
            400,
            &json!({"created": 0, "errors": errors.iter().map(|(line, message)| json!({"line": line, "message": message})).collect::<Vec<_>>(),
                    "error": {"code": "bad_request", "message": format!("{} bad lines; nothing was imported", errors.len())}}),
        ),
        Err(e) => ex.error(&e),
    }
}

/// Decodes %XX and '+' in a query value.
fn url_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                Ok(x) => {
                    out.push(x);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(url_decode("Mito+Trading%20Co"), "Mito Trading Co");
        assert_eq!(url_decode("%E6%B0%B4%E6%88%B8"), "水戸");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("2026-11-25T00%3A00%3A00Z"), "2026-11-25T00:00:00Z");
    }

    /// Every route is in the OpenAPI document, with its method.
    #[test]
    fn openapi_covers_every_route() {
        let doc: serde_json::Value = serde_json::from_slice(assets::get("openapi.json").expect("embedded").body).unwrap();
        for (method, path) in ROUTES {
            let op = &doc["paths"][path][method.to_lowercase()];
            assert!(op.is_object(), "{method} {path} is missing from static/openapi.json");
        }
    }

    #[test]
    fn patterns_match_segments() {
        assert!(matches_pattern("/api/v1/challenges/{id}", &["api", "v1", "challenges", "ch_1"]));
        assert!(!matches_pattern("/api/v1/challenges/{id}", &["api", "v1", "challenges"]));
    }
}
