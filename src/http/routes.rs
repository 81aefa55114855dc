//! The router and the handlers.
//!
//! `ROUTES` is the one list of endpoints: each route's method, path, body
//! kind and handler, whose type says who may call it (anyone, an RP key,
//! a signed device request, an operator session). The dispatcher, the
//! `Allow` header of a 405 and the OpenAPI check are all derived from it, and
//! so is the order of the checks: a JSON body's media type is checked before
//! the caller (415 before 401, so a cross-site form post never reaches a
//! credential check); a CSV import's after the session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use tiny_http::Method;

use super::device::{delete_push, device, device_challenges, device_response, device_settings, get_push, provision, push_config, put_push};
use super::request::{self, bearer, client_ip, cookie, header, json_body, query_param, read_body, wait_param};
use super::response::Exchange;
use super::waiters::Msg;
use super::{assets, Http, DEMO_RP};
use crate::domain::account::Token;
use crate::domain::ids::{ChallengeId, ContractNo, Password, UserId};
use crate::domain::{now_ms, parse_rfc3339, rfc3339};
use crate::error::Error;
use crate::http::views::{
    audit_page_view, contract_detail_view, contract_view, contracts_page_view, import_view, notice_view, notices_view, rp_view, stats_view,
    system_view, user_view,
};
use crate::service::AuditQuery;
use crate::service::{ApprovalInput, ClientInfo, LoginInput};

/// What a route's body must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body is read.
    None,
    /// JSON (`Content-Type: application/json`), checked before the caller.
    Json,
    /// `text/csv`, checked after the operator's session.
    Csv,
}

/// A route's handler; its variant is who may call it.
#[derive(Clone, Copy)]
pub enum Handler {
    Public(fn(&Arc<Http>, Exchange, &Params)),
    /// The RP behind the bearer key (the demo routes: the RP "demo", no key).
    Rp(fn(&Arc<Http>, Exchange, String, &Params)),
    /// A signed device request: the token and the raw body.
    Device(fn(&Arc<Http>, Exchange, Token, Vec<u8>, &Params)),
    /// The operator behind the session cookie.
    Operator(fn(&Arc<Http>, Exchange, String, &Params)),
}

pub struct Route {
    pub method: &'static str,
    /// `{x}` is one segment, passed to the handler in order.
    pub path: &'static str,
    pub body: Body,
    /// Served only with `serve --demo` (not in the OpenAPI document).
    pub demo: bool,
    pub handler: Handler,
}

/// The path segments a route's `{x}` matched, in order.
pub struct Params(Vec<String>);

impl Params {
    pub(super) fn get(&self, i: usize) -> &str {
        self.0.get(i).map_or("", String::as_str)
    }
}

const fn route(method: &'static str, path: &'static str, body: Body, handler: Handler) -> Route {
    Route { method, path, body, demo: false, handler }
}

const fn demo(method: &'static str, path: &'static str, body: Body, handler: fn(&Arc<Http>, Exchange, String, &Params)) -> Route {
    Route { method, path, body, demo: true, handler: Handler::Rp(handler) }
}

use Body::{Csv, Json, None as NoBody};
use Handler::{Device, Operator, Public, Rp};

/// Every endpoint.
pub const ROUTES: &[Route] = &[
    route("GET", "/healthz", NoBody, Public(healthz)),
    route("GET", "/metrics", NoBody, Public(metrics)),
    route("GET", "/api/openapi.json", NoBody, Public(openapi)),
    route("GET", "/api/v1/status", NoBody, Public(status)),
    route("POST", "/api/v1/login", Json, Rp(login)),
    route("POST", "/api/v1/approvals", Json, Rp(approval)),
    route("GET", "/api/v1/challenges/{id}", NoBody, Rp(get_challenge)),
    route("DELETE", "/api/v1/challenges/{id}", Json, Rp(cancel_challenge)),
    route("GET", "/api/v1/users/{contract_no}/{user_id}", NoBody, Rp(get_user)),
    route("POST", "/api/v1/users/{contract_no}/{user_id}/deregister", Json, Rp(customer_deregister)),
    route("POST", "/api/v1/device/provision", Json, Public(provision)),
    route("GET", "/api/v1/device/challenges", NoBody, Device(device_challenges)),
    route("POST", "/api/v1/device/challenges/{id}/response", Json, Device(device_response)),
    route("PUT", "/api/v1/device/settings", Json, Device(device_settings)),
    route("GET", "/api/v1/device/push-config", NoBody, Public(push_config)),
    route("PUT", "/api/v1/device/push", Json, Device(put_push)),
    route("GET", "/api/v1/device/push", NoBody, Device(get_push)),
    route("DELETE", "/api/v1/device/push", Json, Device(delete_push)),
    route("POST", "/api/v1/registrations", Json, Public(register)),
    route("POST", "/api/v1/admin/session", Json, Public(admin_login)),
    route("POST", "/api/v1/admin/bootstrap", Json, Public(admin_bootstrap)),
    route("DELETE", "/api/v1/admin/session", Json, Public(admin_logout)),
    route("POST", "/api/v1/admin/contracts", Json, Operator(admin_create_contract)),
    route("POST", "/api/v1/admin/contracts/{contract_no}/users", Json, Operator(admin_create_user)),
    route("GET", "/api/v1/admin/contracts", NoBody, Operator(admin_contracts)),
    route("GET", "/api/v1/admin/contracts/{contract_no}", NoBody, Operator(admin_contract)),
    route("POST", "/api/v1/admin/contracts/{contract_no}/cancel", Json, Operator(admin_cancel_contract)),
    route("POST", "/api/v1/admin/contracts/{contract_no}/service-admin", Json, Operator(admin_service_admin)),
    route("DELETE", "/api/v1/admin/contracts/{contract_no}/users/{user_id}", Json, Operator(admin_delete_user)),
    route("POST", "/api/v1/admin/contracts/{contract_no}/users/{user_id}/{action}", Json, Operator(admin_action)),
    route("GET", "/api/v1/admin/system", NoBody, Operator(admin_get_system)),
    route("PUT", "/api/v1/admin/system", Json, Operator(admin_put_system)),
    route("GET", "/api/v1/admin/notices", NoBody, Operator(admin_notices)),
    route("POST", "/api/v1/admin/notices", Json, Operator(admin_create_notice)),
    route("DELETE", "/api/v1/admin/notices/{id}", Json, Operator(admin_delete_notice)),
    route("GET", "/api/v1/admin/audit", NoBody, Operator(admin_audit)),
    route("GET", "/api/v1/admin/stats", NoBody, Operator(admin_stats)),
    route("POST", "/api/v1/admin/import", Csv, Operator(admin_import)),
    route("GET", "/api/v1/notices", NoBody, Public(public_notices)),
    // The demo bank's server side: the RP API as the RP "demo", without a key.
    demo("POST", "/demo/api/login", Json, demo_login),
    demo("POST", "/demo/api/approvals", Json, demo_approval),
    demo("GET", "/demo/api/challenges/{id}", NoBody, get_challenge),
    demo("DELETE", "/demo/api/challenges/{id}", Json, cancel_challenge),
    demo("GET", "/demo/api/users/{contract_no}/{user_id}", NoBody, get_user),
    demo("POST", "/demo/api/users/{contract_no}/{user_id}/deregister", Json, customer_deregister),
];

const SESSION_COOKIE: &str = "onepush_session";

pub fn handle(http: &Arc<Http>, req: tiny_http::Request) {
    let mut ex = Exchange::new(req, http.app.metrics.clone());
    ex.set_client(client_ip(ex.request(), &http.app.cfg().trusted_proxies));
    // HEAD is answered as GET; tiny_http leaves the body out.
    let method = match ex.request().method() {
        Method::Head => "GET".to_string(),
        m => m.as_str().to_string(),
    };
    let path = request::path(ex.request()).to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let Some((route, params)) = ROUTES
        .iter()
        .filter(|r| r.method == method && (!r.demo || http.demo))
        .find_map(|r| captures(r.path, &segs).map(|p| (r, Params(p))))
    else {
        return not_routed(http, ex, &method, &segs, &path);
    };
    // Bodies on state-changing requests must be JSON (API.md, and CSRF).
    if route.body == Body::Json && request::has_body(ex.request()) {
        if let Err(e) = request::require_json(ex.request()) {
            return ex.error(&e);
        }
    }
    match route.handler {
        Public(f) => f(http, ex, &params),
        Rp(f) if route.demo => {
            let mut ex = ex;
            ex.set_actor(format!("rp={DEMO_RP}"));
            f(http, ex, DEMO_RP.to_string(), &params)
        }
        Rp(f) => {
            if let Some((rp, ex)) = rp(http, ex) {
                f(http, ex, rp, &params)
            }
        }
        Device(f) => {
            if let Some((token, body, ex)) = device(http, ex) {
                f(http, ex, token, body, &params)
            }
        }
        Operator(f) => {
            if let Some((op, ex)) = operator(http, ex) {
                f(http, ex, op, &params)
            }
        }
    }
}

/// Pages and built-in files, else 405 with `Allow` for a known path, else 404.
fn not_routed(http: &Arc<Http>, ex: Exchange, method: &str, segs: &[&str], path: &str) {
    match (method, segs) {
        ("GET", ["static", name]) => static_file(ex, name),
        ("GET", [name]) if (*name != "demo" || http.demo) && assets::page(name).is_some() => {
            #[allow(clippy::expect_used, reason = "the arm's guard found the page")]
            let a = assets::page(name).expect("the guard found it");
            ex.send(200, a.content_type, a.body)
        }
        _ => match allowed_methods(http, segs) {
            Some(allow) => ex.error(&Error::MethodNotAllowed { allow }),
            None => ex.error(&Error::NotFound(format!("no endpoint {path}"))),
        },
    }
}

/// The methods a known path answers, as an `Allow` value (HEAD wherever GET
/// is); `None` for a path that is not known.
fn allowed_methods(http: &Http, segs: &[&str]) -> Option<String> {
    let page = match segs {
        [name] => (*name != "demo" || http.demo) && assets::page(name).is_some(),
        ["static", name] => assets::get(name).is_some(),
        _ => false,
    };
    let mut methods: Vec<&str> =
        ROUTES.iter().filter(|r| (!r.demo || http.demo) && captures(r.path, segs).is_some()).map(|r| r.method).collect();
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

/// The segments a pattern's `{x}` match, or `None` if the path is not the pattern's.
fn captures(pattern: &str, segs: &[&str]) -> Option<Vec<String>> {
    let p: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    if p.len() != segs.len() {
        return None;
    }
    let mut out = Vec::new();
    for (a, b) in p.iter().zip(segs) {
        if a.starts_with('{') {
            out.push((*b).to_string());
        } else if a != b {
            return None;
        }
    }
    Some(out)
}

fn metrics(http: &Arc<Http>, ex: Exchange, _: &Params) {
    ex.send(200, "text/plain; version=0.0.4", http.app.metrics_text().into_bytes())
}

fn openapi(_: &Arc<Http>, ex: Exchange, _: &Params) {
    static_file(ex, "openapi.json")
}

/// A file built into the binary (`static/`), sent without a copy.
fn static_file(ex: Exchange, name: &str) {
    match assets::get(name) {
        Some(a) => ex.send(200, a.content_type, a.body),
        None => ex.error(&Error::NotFound(format!("no file {name}"))),
    }
}

fn healthz(http: &Arc<Http>, ex: Exchange, _: &Params) {
    match http.app.store_answers() {
        Ok(()) => ex.json(200, &json!({"status": "ok"})),
        Err(e) => ex.error(&e),
    }
}

fn status(http: &Arc<Http>, ex: Exchange, _: &Params) {
    match http.app.system() {
        Ok(s) => ex.json(200, &json!({"push_suspended": s.push_suspended, "server_time": rfc3339(now_ms())})),
        Err(e) => ex.error(&e),
    }
}

// ---------------------------------------------------------------- RP API

/// The RP behind the bearer key, or the exchange back with a 401 sent.
fn rp(http: &Http, mut ex: Exchange) -> Option<(String, Exchange)> {
    let Some(key) = bearer(ex.request()) else {
        ex.error(&Error::Unauthorized("Authorization: Bearer <rp key> is required".into()));
        return None;
    };
    match http.app.rp_for_key(key) {
        Ok(name) => {
            ex.set_actor(format!("rp={name}"));
            Some((name, ex))
        }
        Err(e) => {
            ex.error(&e);
            None
        }
    }
}

fn login(http: &Arc<Http>, mut ex: Exchange, rp: String, _: &Params) {
    match json_body(ex.request_mut()) {
        Ok(input) => http.app.login(rp, input, now_ms(), move |r| ex.result(200, r)),
        Err(e) => ex.error(&e),
    }
}

fn approval(http: &Arc<Http>, mut ex: Exchange, rp: String, _: &Params) {
    match json_body(ex.request_mut()) {
        Ok(input) => http.app.approve(rp, input, now_ms(), move |r| ex.result(200, r)),
        Err(e) => ex.error(&e),
    }
}

/// The client as the demo bank's server reports it to onepush: the browser's
/// address (through a trusted proxy's `X-Forwarded-For`) and user agent, as
/// a bank's own server would, whatever the page sent.
fn demo_client(http: &Http, ex: &Exchange) -> ClientInfo {
    let req = ex.request();
    let user_agent = header(req, "User-Agent").map(|ua| ua.chars().take(512).collect());
    ClientInfo { ip: Some(client_ip(req, &http.app.cfg().trusted_proxies).to_string()), user_agent }
}

fn demo_login(http: &Arc<Http>, mut ex: Exchange, rp: String, _: &Params) {
    match json_body::<LoginInput>(ex.request_mut()) {
        Ok(mut input) => {
            input.client = demo_client(http, &ex);
            http.app.login(rp, input, now_ms(), move |r| ex.result(200, r))
        }
        Err(e) => ex.error(&e),
    }
}

fn demo_approval(http: &Arc<Http>, mut ex: Exchange, rp: String, _: &Params) {
    match json_body::<ApprovalInput>(ex.request_mut()) {
        Ok(mut input) => {
            input.client = demo_client(http, &ex);
            http.app.approve(rp, input, now_ms(), move |r| ex.result(200, r))
        }
        Err(e) => ex.error(&e),
    }
}

fn get_challenge(http: &Arc<Http>, ex: Exchange, rp: String, p: &Params) {
    let wait = match wait_param(ex.request(), http.app.cfg().max_wait) {
        Ok(w) => w,
        Err(e) => return ex.error(&e),
    };
    let id = match ChallengeId::lookup(p.get(0)) {
        Ok(id) => id,
        Err(e) => return ex.error(&e),
    };
    let seen = http.waiters.seen();
    match http.app.challenge_for_rp(&rp, &id) {
        Ok(c) if c.is_pending() && wait > 0 => {
            let deadline = Instant::now() + Duration::from_millis(wait);
            http.waiters.send(Msg::ParkRp { challenge_id: id, rp, ex, deadline, seen });
        }
        Ok(c) => ex.json(200, &rp_view(&c)),
        Err(e) => ex.error(&e),
    }
}

fn cancel_challenge(http: &Arc<Http>, ex: Exchange, rp: String, p: &Params) {
    let id = match ChallengeId::lookup(p.get(0)) {
        Ok(id) => id,
        Err(e) => return ex.error(&e),
    };
    http.app.cancel(rp, id, now_ms(), move |r| match r {
        Ok(c) => ex.json(200, &rp_view(&c)),
        Err(e) => ex.error(&e),
    });
}

fn get_user(http: &Arc<Http>, ex: Exchange, rp: String, p: &Params) {
    let user = ContractNo::parse("contract_no", p.get(0))
        .and_then(|c| Ok((c, UserId::parse("user_id", p.get(1))?)))
        .and_then(|(c, u)| http.app.user(&rp, &c, &u));
    match user {
        Ok(u) => ex.json(200, &user_view(&u)),
        Err(e) => ex.error(&e),
    }
}

// ---------------------------------------------------------------- registration

fn register(http: &Arc<Http>, mut ex: Exchange, _: &Params) {
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

fn admin_login(http: &Arc<Http>, mut ex: Exchange, _: &Params) {
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

fn admin_bootstrap(http: &Arc<Http>, mut ex: Exchange, _: &Params) {
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

fn admin_logout(http: &Arc<Http>, mut ex: Exchange, _: &Params) {
    if let Some(token) = cookie(ex.request(), SESSION_COOKIE) {
        http.app.admin_logout(token);
    }
    ex.add_header("Set-Cookie", &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"));
    ex.json(200, &json!({}))
}

/// The operator behind the session cookie, or the exchange answered 401.
fn operator(http: &Http, mut ex: Exchange) -> Option<(String, Exchange)> {
    let r = match cookie(ex.request(), SESSION_COOKIE) {
        Some(token) => http.app.admin_session(token, now_ms()),
        None => Err(Error::Unauthorized("sign in first".into())),
    };
    match r {
        Ok(name) => {
            ex.set_actor(format!("operator={name}"));
            Some((name, ex))
        }
        Err(e) => {
            ex.error(&e);
            None
        }
    }
}

fn admin_create_contract(http: &Arc<Http>, mut ex: Exchange, op: String, _: &Params) {
    let r = json_body(ex.request_mut()).and_then(|input| http.app.create_contract(&op, input, now_ms()));
    ex.result(201, r.map(|c| contract_view(&c)))
}

fn admin_create_user(http: &Arc<Http>, mut ex: Exchange, op: String, p: &Params) {
    let contract_no = p.get(0);
    let r = json_body(ex.request_mut())
        .and_then(|input| http.app.create_user(&op, &ContractNo::parse("contract_no", contract_no)?, input, now_ms()));
    ex.result(201, r.map(|u| user_view(&u)))
}

fn customer_deregister(http: &Arc<Http>, mut ex: Exchange, rp: String, p: &Params) {
    let r = json_body(ex.request_mut()).and_then(|input| {
        let (c, u) = (ContractNo::parse("contract_no", p.get(0))?, UserId::parse("user_id", p.get(1))?);
        http.app.customer_deregister(&rp, &c, &u, input, now_ms())
    });
    ex.result(200, r.map(|u| user_view(&u)))
}

fn public_notices(http: &Arc<Http>, ex: Exchange, _: &Params) {
    let now = now_ms();
    let time = |name: &str| query_param(ex.request(), name).map(|v| parse_rfc3339(name, &url_decode(v))).transpose();
    let r = (|| {
        let from = time("from")?.unwrap_or(now);
        let to = time("to")?.unwrap_or(from);
        let lang = query_param(ex.request(), "lang").map(url_decode);
        http.app.public_notices(from, to, lang.as_deref())
    })();
    ex.result(200, r.map(|list| notices_view(&list)))
}

fn admin_contracts(http: &Arc<Http>, ex: Exchange, _: String, _: &Params) {
    let req = ex.request();
    let q = query_param(req, "q").map(url_decode).unwrap_or_default();
    let after = query_param(req, "after").map(url_decode).unwrap_or_default();
    let limit = match query_param(req, "limit").map(str::parse::<usize>).transpose() {
        Ok(l) => l.unwrap_or(50).clamp(1, 500),
        Err(_) => return ex.error(&Error::bad_field("limit", "must be a whole number")),
    };
    let r = http.app.contracts(&q, &after, limit);
    ex.result(200, r.map(|(list, next)| contracts_page_view(&list, &next)))
}

fn admin_contract(http: &Arc<Http>, ex: Exchange, _: String, p: &Params) {
    let no = p.get(0);
    let r = ContractNo::lookup(no).and_then(|no| http.app.contract_detail(&no));
    ex.result(200, r.map(|(c, users)| contract_detail_view(&c, &users)))
}

fn admin_cancel_contract(http: &Arc<Http>, mut ex: Exchange, op: String, p: &Params) {
    let no = p.get(0);
    let r = json_body(ex.request_mut()).and_then(|input| http.app.cancel_contract(&op, no, input, now_ms()));
    ex.result(200, r.map(|c| contract_view(&c)))
}

fn admin_service_admin(http: &Arc<Http>, mut ex: Exchange, op: String, p: &Params) {
    let no = p.get(0);
    let r = json_body(ex.request_mut()).and_then(|input| http.app.change_service_admin(&op, no, input, now_ms()));
    ex.result(200, r.map(|c| contract_view(&c)))
}

fn admin_delete_user(http: &Arc<Http>, mut ex: Exchange, op: String, p: &Params) {
    let no = p.get(0);
    let uid = p.get(1);
    let r = json_body(ex.request_mut()).and_then(|input| http.app.delete_user(&op, no, uid, input, now_ms()));
    ex.result(200, r.map(|()| json!({"deleted": true, "contract_no": no, "user_id": uid})))
}

fn admin_action(http: &Arc<Http>, mut ex: Exchange, op: String, p: &Params) {
    let no = p.get(0);
    let uid = p.get(1);
    let action = p.get(2);
    let r = json_body(ex.request_mut()).and_then(|input| http.app.operator_action(&op, no, uid, action, input, now_ms()));
    ex.result(200, r.map(|u| user_view(&u)))
}

fn admin_get_system(http: &Arc<Http>, ex: Exchange, _: String, _: &Params) {
    ex.result(200, http.app.system().map(|s| system_view(&s)))
}

fn admin_put_system(http: &Arc<Http>, mut ex: Exchange, op: String, _: &Params) {
    let r = json_body(ex.request_mut()).and_then(|input| http.app.set_system(&op, input, now_ms()));
    ex.result(200, r.map(|s| system_view(&s)))
}

fn admin_notices(http: &Arc<Http>, ex: Exchange, _: String, _: &Params) {
    ex.result(200, http.app.notices().map(|list| notices_view(&list)))
}

fn admin_create_notice(http: &Arc<Http>, mut ex: Exchange, op: String, _: &Params) {
    let r = json_body(ex.request_mut()).and_then(|input| http.app.create_notice(&op, input, now_ms()));
    ex.result(201, r.map(|n| notice_view(&n)))
}

fn admin_delete_notice(http: &Arc<Http>, ex: Exchange, op: String, p: &Params) {
    let id = p.get(0);
    ex.result(200, http.app.delete_notice(&op, id).map(|()| json!({"deleted": true, "id": id})))
}

fn admin_audit(http: &Arc<Http>, ex: Exchange, _: String, _: &Params) {
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
    ex.result(200, r.map(|(events, next)| audit_page_view(&events, &next)))
}

fn admin_stats(http: &Arc<Http>, ex: Exchange, _: String, _: &Params) {
    ex.result(200, http.app.stats(now_ms()).map(|s| stats_view(&s)))
}

/// API.md: CSV import bodies up to 5 MiB.
fn admin_import(http: &Arc<Http>, mut ex: Exchange, op: String, _: &Params) {
    let content_type = header(ex.request(), "Content-Type").unwrap_or("").to_string();
    let mut params = content_type.split(';');
    let ct = params.next().unwrap_or("").trim().to_ascii_lowercase();
    if ct != "text/csv" {
        return ex.error(&Error::UnsupportedMediaType);
    }
    // `text/csv; charset=shift_jis`: the file's encoding; without one, UTF-8 or else Shift_JIS.
    let charset = params.filter_map(|p| p.split_once('=')).find(|(k, _)| k.trim().eq_ignore_ascii_case("charset")).map(|(_, v)| v);
    let r = read_body(ex.request_mut(), request::CSV_LIMIT)
        .and_then(|b| http.app.import_csv_bytes(&format!("operator:{op}"), &b, charset, now_ms()));
    match r {
        Ok(result) => ex.json(if result.is_ok() { 200 } else { 400 }, &import_view(&result)),
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
        for r in ROUTES.iter().filter(|r| !r.demo) {
            let op = &doc["paths"][r.path][r.method.to_lowercase()];
            assert!(op.is_object(), "{} {} is missing from static/openapi.json", r.method, r.path);
            // A JSON body is documented as one, and the callers the handler admits as its security.
            if r.body == Body::Json && r.method != "DELETE" {
                assert!(op["requestBody"]["content"]["application/json"].is_object(), "{} {}: no JSON requestBody", r.method, r.path);
            }
        }
    }

    #[test]
    fn patterns_match_segments() {
        assert_eq!(captures("/api/v1/challenges/{id}", &["api", "v1", "challenges", "ch_1"]), Some(vec!["ch_1".to_string()]));
        assert_eq!(captures("/api/v1/challenges/{id}", &["api", "v1", "challenges"]), None);
        assert_eq!(captures("/api/v1/status", &["api", "v1", "status"]), Some(vec![]));
    }
}
