//! The router and the handlers. `ROUTES` lists every endpoint; a test checks
//! that each one is documented in the OpenAPI file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use tiny_http::Method;

use super::request::{self, bearer, client_ip, cookie, header, json_body, read_body, wait_param};
use super::response::Exchange;
use super::waiters::{self, device_list, Msg};
use super::Http;
use crate::domain::ids::Password;
use crate::domain::{now_ms, rfc3339};
use crate::error::Error;
use crate::service::{contract_view, rp_view, user_view, DeviceRequest};
use crate::store::Reader;

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
    ("DELETE", "/api/v1/admin/session"),
    ("POST", "/api/v1/admin/contracts"),
    ("POST", "/api/v1/admin/contracts/{contract_no}/users"),
];

const SESSION_COOKIE: &str = "onepush_session";

pub fn handle(http: &Arc<Http>, req: tiny_http::Request) {
    let ex = Exchange::new(req, http.app.metrics.clone());
    let method = ex.request().method().clone();
    let path = request::path(ex.request()).to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // Bodies on state-changing requests must be JSON (API.md, and CSRF).
    let routed = ROUTES.iter().any(|(m, p)| *m == method.as_str() && matches_pattern(p, &segs));
    if routed && matches!(method, Method::Post | Method::Put | Method::Delete) && request::has_body(ex.request()) {
        if let Err(e) = request::require_json(ex.request()) {
            return ex.error(&e);
        }
    }
    use Method::*;
    match (&method, segs.as_slice()) {
        (Get, ["healthz"]) => healthz(http, ex),
        (Get, ["metrics"]) => {
            let text = http.app.metrics.render(http.app.store.stats().file_bytes, &http.app.writer.stats);
            ex.send(200, "text/plain; version=0.0.4", text.into_bytes())
        }
        (Get, ["api", "openapi.json"]) => ex.send(200, "application/json", OPENAPI.as_bytes().to_vec()),
        (Get, [""]) => ex.send(200, "text/html; charset=utf-8", INDEX.as_bytes().to_vec()),
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
        (Delete, ["api", "v1", "admin", "session"]) => admin_logout(http, ex),
        (Post, ["api", "v1", "admin", "contracts"]) => admin_create_contract(http, ex),
        (Post, ["api", "v1", "admin", "contracts", no, "users"]) => admin_create_user(http, ex, no),
        _ => {
            let known_path = ROUTES.iter().any(|(_, p)| matches_pattern(p, &segs));
            if known_path {
                ex.error(&Error::NotFound(format!("{method} is not supported on {path}")))
            } else {
                ex.error(&Error::NotFound(format!("no endpoint {path}")))
            }
        }
    }
}

fn matches_pattern(pattern: &str, segs: &[&str]) -> bool {
    let p: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    p.len() == segs.len() && p.iter().zip(segs).all(|(a, b)| a.starts_with('{') || a == b)
}

pub const OPENAPI: &str = include_str!("../../static/openapi.json");
const INDEX: &str = include_str!("../../static/index.html");

fn healthz(http: &Arc<Http>, ex: Exchange) {
    match http.app.store.read().and_then(|r| r.system()) {
        Ok(_) => ex.json(200, &json!({"status": "ok"})),
        Err(e) => ex.error(&e),
    }
}

fn status(http: &Arc<Http>, ex: Exchange) {
    match http.app.store.read().and_then(|r| r.system()) {
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
    let Some((rp, mut ex)) = rp(http, ex) else { return };
    match json_body(ex.request_mut()) {
        Ok(input) => http.app.login(rp, input, now_ms(), move |r| ex.result(200, r)),
        Err(e) => ex.error(&e),
    }
}

fn approval(http: &Arc<Http>, ex: Exchange) {
    let Some((rp, mut ex)) = rp(http, ex) else { return };
    match json_body(ex.request_mut()) {
        Ok(input) => http.app.approve(rp, input, now_ms(), move |r| ex.result(200, r)),
        Err(e) => ex.error(&e),
    }
}

fn get_challenge(http: &Arc<Http>, ex: Exchange, id: &str) {
    let Some((rp, ex)) = rp(http, ex) else { return };
    let wait = match wait_param(ex.request(), http.app.cfg.max_wait) {
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
    http.app.cancel(rp, id.to_string(), now_ms(), move |r| match r {
        Ok(c) => ex.json(200, &rp_view(&c)),
        Err(e) => ex.error(&e),
    });
}

fn get_user(http: &Arc<Http>, ex: Exchange, contract_no: &str, user_id: &str) {
    let Some((_, ex)) = rp(http, ex) else { return };
    match http.app.user(contract_no, user_id) {
        Ok(u) => ex.json(200, &user_view(&u)),
        Err(e) => ex.error(&e),
    }
}

// ---------------------------------------------------------------- device API

fn provision(http: &Arc<Http>, mut ex: Exchange) {
    let ip = client_ip(ex.request(), &http.app.cfg.trusted_proxies);
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
    let wait = match wait_param(ex.request(), http.app.cfg.max_wait) {
        Ok(w) => w,
        Err(e) => return ex.error(&e),
    };
    match http.app.has_pending(&token.token_id) {
        Ok(true) => waiters::deliver(&http.app, &token.token_id, ex),
        Ok(false) if wait > 0 => {
            let deadline = Instant::now() + Duration::from_millis(wait);
            let _ = http.waiters.send(Msg::ParkDevice { token_id: token.token_id, ex, deadline });
        }
        Ok(false) => ex.json(200, &device_list(vec![])),
        Err(e) => ex.error(&e),
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
    match json_body(ex.request_mut()) {
        Ok(input) => http.app.register(input, now_ms(), move |r| ex.result(201, r)),
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
    match http.app.admin_login(&input.username, &input.password, now_ms()) {
        Ok(token) => {
            let secure = if request::via_tls(ex.request(), &http.app.cfg.trusted_proxies) { "; Secure" } else { "" };
            ex.add_header("Set-Cookie", &format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"));
            ex.json(200, &json!({"username": input.username}))
        }
        Err(e) => ex.error(&e),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route is in the OpenAPI document, with its method.
    #[test]
    fn openapi_covers_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
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
