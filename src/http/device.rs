//! The device API's handlers: provisioning, the signed requests of a phone
//! (challenges, answers, settings, its push subscription) and the public
//! push configuration. Routed by `routes::ROUTES`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tiny_http::Method;

use super::request::{self, client_ip, header, json_body, read_body, wait_param};
use super::response::Exchange;
use super::routes::Params;
use super::views::push_view;
use super::waiters::{self, device_list, Msg};
use super::Http;
use crate::domain::account::Token;
use crate::domain::now_ms;
use crate::error::Error;
use crate::service::DeviceRequest;

pub(super) fn provision(http: &Arc<Http>, mut ex: Exchange, _: &Params) {
    let ip = client_ip(ex.request(), &http.app.cfg().trusted_proxies);
    match json_body(ex.request_mut()) {
        Ok(input) => http.app.provision(input, ip, now_ms(), move |r| ex.result(201, r)),
        Err(e) => ex.error(&e),
    }
}

/// Checks the signed headers; returns the token and the raw body.
pub(super) fn device(http: &Http, mut ex: Exchange) -> Option<(Token, Vec<u8>, Exchange)> {
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
        Ok(t) => {
            ex.set_actor(format!("token={}", t.token_id));
            Some((t, body, ex))
        }
        Err(e) => {
            ex.error(&e);
            None
        }
    }
}

pub(super) fn device_challenges(http: &Arc<Http>, ex: Exchange, token: Token, _: Vec<u8>, _: &Params) {
    // HEAD has no body to carry challenges: it never delivers or parks.
    if *ex.request().method() == Method::Head {
        return ex.json(200, &device_list(vec![]));
    }
    let wait = match wait_param(ex.request(), http.app.cfg().max_wait) {
        Ok(w) => w,
        Err(e) => return ex.error(&e),
    };
    let seen = http.waiters.seen();
    match waiters::deliver(&http.app, &token.token_id, ex) {
        None => {}
        Some(ex) if wait == 0 => ex.json(200, &device_list(vec![])),
        Some(ex) => {
            // The token was read before `seen`: a revocation in between is
            // not among the events the park will apply.
            match http.app.token_revoked(&token.token_id) {
                Ok(false) => {}
                Ok(true) => return ex.error(&Error::TokenRevoked),
                Err(e) => return ex.error(&e),
            }
            let deadline = Instant::now() + Duration::from_millis(wait);
            http.waiters.send(Msg::ParkDevice { token_id: token.token_id, ex, deadline, seen });
        }
    }
}

pub(super) fn device_response(http: &Arc<Http>, ex: Exchange, token: Token, body: Vec<u8>, p: &Params) {
    let id = p.get(0);
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

pub(super) fn device_settings(http: &Arc<Http>, ex: Exchange, token: Token, body: Vec<u8>, _: &Params) {
    if let Err(e) = request::require_json(ex.request()) {
        return ex.error(&e);
    }
    match request::parse_json(&body).and_then(|input| http.app.set_device_settings(&token, input)) {
        Ok(lang) => ex.json(200, &json!({"lang": lang.as_str()})),
        Err(e) => ex.error(&e),
    }
}

pub(super) fn push_config(http: &Arc<Http>, ex: Exchange, _: &Params) {
    ex.json(200, &json!({"vapid_public_key": http.app.vapid_public_key(), "kinds": ["webpush", "unifiedpush"]}))
}

pub(super) fn put_push(http: &Arc<Http>, ex: Exchange, token: Token, body: Vec<u8>, _: &Params) {
    if let Err(e) = request::require_json(ex.request()) {
        return ex.error(&e);
    }
    match request::parse_json(&body).and_then(|input| http.app.set_push(&token, input, now_ms())) {
        Ok(s) => ex.json(200, &push_view(Some(&s))),
        Err(e) => ex.error(&e),
    }
}

pub(super) fn get_push(_: &Arc<Http>, ex: Exchange, token: Token, _: Vec<u8>, _: &Params) {
    ex.json(200, &push_view(token.subscription().as_ref()))
}

pub(super) fn delete_push(http: &Arc<Http>, ex: Exchange, token: Token, _: Vec<u8>, _: &Params) {
    match http.app.delete_push(&token) {
        Ok(()) => ex.json(200, &push_view(None)),
        Err(e) => ex.error(&e),
    }
}
