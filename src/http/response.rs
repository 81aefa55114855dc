//! The one place that maps a domain `Error` to an HTTP status and JSON body,
//! and the `Exchange` that answers a request exactly once and logs it.

use std::borrow::Cow;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tiny_http::{Header, Request, Response};

use crate::error::Error;
use crate::metrics::Metrics;

/// API.md's error table.
pub fn status_of(e: &Error) -> u16 {
    match e {
        Error::BadRequest(_) => 400,
        Error::Unauthorized(_) | Error::BadSignature | Error::BadCredentials => 401,
        Error::Forbidden(_) | Error::TokenRevoked | Error::PasswordLocked | Error::AccountStopped | Error::ContractCancelled => 403,
        Error::NotFound(_) => 404,
        Error::Conflict(_) | Error::ChallengeClosed | Error::AlreadyRegistered | Error::TokenAlreadyBound | Error::InvalidTransition(_) => {
            409
        }
        Error::MethodNotAllowed { .. } => 405,
        Error::RequestTimeout => 408,
        Error::BodyTooLarge(_) => 413,
        Error::UnsupportedMediaType => 415,
        Error::HeadersTooLarge => 431,
        Error::Overloaded => 503,
        Error::TokenOrOtpMismatch => 422,
        Error::RateLimited { .. } => 429,
        Error::Internal(_) => 500,
    }
}

/// The answer tiny_http sends for a request it refused at the edge (API.md,
/// "HTTP edge limits"): the same JSON error body as every other error.
/// Counted by reason in the metrics.
pub fn edge_rejection(why: tiny_http::Rejection, metrics: &Metrics) -> tiny_http::RejectionResponse {
    use tiny_http::Rejection as R;
    let e = match why {
        R::HeadersTooLarge => Error::HeadersTooLarge,
        R::RequestTimeout => Error::RequestTimeout,
        R::BadRequest => Error::BadRequest("request: malformed request line or header".into()),
        R::BadFraming(what) => Error::BadRequest(format!("request: {what}")),
        R::BodyTooLarge(limit) => Error::BodyTooLarge(limit),
        R::Overloaded => Error::Overloaded,
        R::VersionNotSupported => Error::BadRequest("request: only HTTP/1.0 and HTTP/1.1 are served".into()),
        R::ExpectationFailed => Error::BadRequest("Expect: only 100-continue is supported".into()),
    };
    metrics.edge_rejected(e.code());
    // The status is the edge's (505 and 417 carry bad_request); the body is ours.
    let status = why.status().0;
    let body = json!({"error": {"code": e.code(), "message": e.to_string()}}).to_string();
    Response::from_data(body.into_bytes())
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One request and its answer. Dropping it unanswered answers 500, so every
/// path answers exactly once.
pub struct Exchange {
    req: Option<Request>,
    started: Instant,
    pub id: u64,
    metrics: Arc<Metrics>,
    extra_headers: Vec<Header>,
    /// For the request line in the log: the client (through a trusted
    /// proxy, the address it saw) and who the request spoke as.
    client: Option<std::net::IpAddr>,
    actor: Option<String>,
}

#[allow(clippy::expect_used, reason = "called with onepush's own header names and ASCII values only")]
fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header names and ASCII values")
}

impl Exchange {
    pub fn new(req: Request, metrics: Arc<Metrics>) -> Exchange {
        Exchange {
            req: Some(req),
            started: Instant::now(),
            id: NEXT_ID.fetch_add(1, Relaxed),
            metrics,
            extra_headers: vec![],
            client: None,
            actor: None,
        }
    }

    pub fn set_client(&mut self, ip: std::net::IpAddr) {
        self.client = Some(ip);
    }

    /// `rp=NAME`, `operator=NAME` or `token=ID`, for the log line.
    pub fn set_actor(&mut self, actor: String) {
        self.actor = Some(actor);
    }

    #[allow(clippy::expect_used, reason = "an exchange holds its request until it answers, which consumes it")]
    pub fn request(&self) -> &Request {
        self.req.as_ref().expect("an exchange holds its request until it answers")
    }

    #[allow(clippy::expect_used, reason = "an exchange holds its request until it answers, which consumes it")]
    pub fn request_mut(&mut self) -> &mut Request {
        self.req.as_mut().expect("an exchange holds its request until it answers")
    }

    pub fn add_header(&mut self, name: &str, value: &str) {
        self.extra_headers.push(header(name, value));
    }

    pub fn json(self, status: u16, body: &serde_json::Value) {
        self.send(status, "application/json", body.to_string().into_bytes());
    }

    pub fn error(mut self, e: &Error) {
        let status = status_of(e);
        if let Error::Internal(detail) = e {
            log::error!("request {}: internal error: {detail}", self.id);
        }
        if let Error::RateLimited { retry_after_secs } = e {
            self.add_header("Retry-After", &retry_after_secs.to_string());
        }
        if let Error::MethodNotAllowed { allow } = e {
            self.add_header("Allow", allow);
        }
        self.json(status, &json!({"error": {"code": e.code(), "message": e.to_string()}}));
    }

    pub fn result<T: serde::Serialize>(self, status: u16, r: crate::error::Result<T>) {
        match r.and_then(|v| serde_json::to_value(v).map_err(|e| Error::Internal(e.to_string()))) {
            Ok(v) => self.json(status, &v),
            Err(e) => self.error(&e),
        }
    }

    /// Sends `body`; the files built into the binary go out without a copy.
    pub fn send(mut self, status: u16, content_type: &str, body: impl Into<Cow<'static, [u8]>>) {
        let Some(req) = self.req.take() else { return };
        let body = body.into();
        let len = body.len();
        let mut resp = Response::new(status.into(), vec![], Cursor::new(body), Some(len), None)
            .with_header(header("Content-Type", content_type))
            .with_header(header("Cache-Control", "no-store"))
            .with_header(header("X-Content-Type-Options", "nosniff"))
            .with_header(header("X-Frame-Options", "DENY"))
            .with_header(header("Referrer-Policy", "no-referrer"))
            .with_header(header(
                "Content-Security-Policy",
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ))
            .with_header(header("X-Request-Id", &self.id.to_string()));
        for h in self.extra_headers.drain(..) {
            resp.add_header(h);
        }
        let method = req.method().to_string();
        let path = req.url().split('?').next().unwrap_or("").to_string();
        let outcome = req.respond(resp);
        self.metrics.http_requests.fetch_add(1, Relaxed);
        if status >= 500 {
            self.metrics.http_errors_5xx.fetch_add(1, Relaxed);
        }
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let client = self.client.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
        let actor = self.actor.as_deref().unwrap_or("-");
        let gone = if outcome.is_err() { " (client gone)" } else { "" };
        log::info!("req={} client={client} {actor} {method} {path} {status} {ms:.1}ms{gone}", self.id);
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.req.is_some() {
            log::error!("request {} was dropped unanswered", self.id);
            let e = Error::Internal("unanswered".into());
            let ex = Exchange {
                req: self.req.take(),
                started: self.started,
                id: self.id,
                metrics: self.metrics.clone(),
                extra_headers: vec![],
                client: self.client,
                actor: self.actor.take(),
            };
            ex.error(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error code of API.md's table has its status.
    #[test]
    fn error_table() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (Error::BadRequest("x: y".into()), 400, "bad_request"),
            (Error::Unauthorized("x".into()), 401, "unauthorized"),
            (Error::BadSignature, 401, "bad_signature"),
            (Error::BadCredentials, 401, "bad_credentials"),
            (Error::Forbidden("x".into()), 403, "forbidden"),
            (Error::TokenRevoked, 403, "token_revoked"),
            (Error::PasswordLocked, 403, "password_locked"),
            (Error::AccountStopped, 403, "account_stopped"),
            (Error::ContractCancelled, 403, "contract_cancelled"),
            (Error::NotFound("x".into()), 404, "not_found"),
            (Error::Conflict("x".into()), 409, "conflict"),
            (Error::ChallengeClosed, 409, "challenge_closed"),
            (Error::AlreadyRegistered, 409, "already_registered"),
            (Error::TokenAlreadyBound, 409, "token_already_bound"),
            (Error::InvalidTransition("x".into()), 409, "invalid_transition"),
            (Error::BodyTooLarge(65536), 413, "body_too_large"),
            (Error::UnsupportedMediaType, 415, "unsupported_media_type"),
            (Error::MethodNotAllowed { allow: "GET, HEAD".into() }, 405, "method_not_allowed"),
            (Error::RequestTimeout, 408, "request_timeout"),
            (Error::HeadersTooLarge, 431, "headers_too_large"),
            (Error::Overloaded, 503, "overloaded"),
            (Error::TokenOrOtpMismatch, 422, "token_or_otp_mismatch"),
            (Error::RateLimited { retry_after_secs: 3 }, 429, "rate_limited"),
            (Error::Internal("disk on fire".into()), 500, "internal"),
        ];
        for (e, status, code) in cases {
            assert_eq!(status_of(&e), status, "{e:?}");
            assert_eq!(e.code(), code);
        }
        assert!(!Error::Internal("disk on fire".into()).to_string().contains("disk"), "no internals in messages");
    }
}
