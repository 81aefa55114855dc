//! Reading requests safely: header look-ups, the body limit, JSON parsing
//! with errors that name the field, query parameters, the client address.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};

use serde::de::DeserializeOwned;
use tiny_http::Request;

use crate::error::{Error, Result};

/// API.md: bodies up to 64 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;
/// API.md: a CSV import up to 5 MiB.
pub const CSV_LIMIT: usize = 5 * 1024 * 1024;
/// The one route that takes a CSV body.
pub const CSV_PATH: &str = "/api/v1/admin/import";

/// The largest body a request to `url` may declare; checked by the HTTP edge
/// before any of the body is read.
pub fn body_limit(url: &str) -> usize {
    if url.split('?').next() == Some(CSV_PATH) {
        CSV_LIMIT
    } else {
        BODY_LIMIT
    }
}

pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().iter().find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

/// Reads the body through a limit: the declared length is checked first,
/// then at most `limit + 1` bytes are read, so a lying client cannot make
/// the server buffer more.
pub fn read_body(req: &mut Request, limit: usize) -> Result<Vec<u8>> {
    if req.body_length().is_some_and(|n| n > limit) {
        return Err(Error::BodyTooLarge(limit));
    }
    let mut buf = Vec::with_capacity(req.body_length().unwrap_or(0).min(limit));
    req.as_reader().take(limit as u64 + 1).read_to_end(&mut buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut => Error::RequestTimeout,
        _ => Error::BadRequest("body: could not be read".into()),
    })?;
    if buf.len() > limit {
        return Err(Error::BodyTooLarge(limit));
    }
    Ok(buf)
}

/// True if a body was sent (declared length > 0, or chunked).
pub fn has_body(req: &Request) -> bool {
    req.body_length() != Some(0) && (req.body_length().is_some() || header(req, "Transfer-Encoding").is_some())
}

/// Requests with a body must say `application/json` (415 otherwise).
pub fn require_json(req: &Request) -> Result<()> {
    let ct = header(req, "Content-Type").unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType)
    }
}

/// Parses JSON, turning serde's message into one that names the field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadRequest("body: a JSON object is required".into()));
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        // serde says "missing field `x` at line 1 column 9": lead with the field.
        let field = msg.split('`').nth(1).filter(|_| msg.contains("field"));
        match field {
            Some(f) => Error::BadRequest(format!("{f}: {msg}")),
            None => Error::BadRequest(format!("body: {msg}")),
        }
    })
}

/// Reads and parses a JSON body (content type, limit, syntax).
pub fn json_body<T: DeserializeOwned>(req: &mut Request) -> Result<T> {
    require_json(req)?;
    let body = read_body(req, BODY_LIMIT)?;
    parse_json(&body)
}

/// The path without the query string.
pub fn path(req: &Request) -> &str {
    req.url().split('?').next().unwrap_or("")
}

pub fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    let q = req.url().split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// `wait` in seconds: 0..=max_wait, larger values clamped.
pub fn wait_param(req: &Request, max_wait_ms: u64) -> Result<u64> {
    match query_param(req, "wait") {
        None | Some("") => Ok(0),
        Some(v) => {
            let secs: u64 = v.parse().map_err(|_| Error::bad_field("wait", "must be whole seconds"))?;
            Ok((secs.saturating_mul(1000)).min(max_wait_ms))
        }
    }
}

/// The peer, or, when the peer is a trusted proxy, the last address of
/// `X-Forwarded-For` (the one the proxy appended).
pub fn client_ip(req: &Request, trusted: &[IpAddr]) -> IpAddr {
    let peer = req.remote_addr().map(|a| a.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if trusted.contains(&peer) {
        if let Some(xff) = header(req, "X-Forwarded-For") {
            // The proxy appends the address it saw last; take the one it saw.
            if let Some(ip) = xff.rsplit(',').next().and_then(|s| s.trim().parse().ok()) {
                return ip;
            }
        }
    }
    peer
}

/// True when a trusted proxy says the client used TLS.
pub fn via_tls(req: &Request, trusted: &[IpAddr]) -> bool {
    let peer = req.remote_addr().map(|a| a.ip());
    peer.is_some_and(|p| trusted.contains(&p)) && header(req, "X-Forwarded-Proto").is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    header(req, "Cookie")?.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

pub fn bearer(req: &Request) -> Option<&str> {
    let v = header(req, "Authorization")?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        contract_no: String,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<T>(b"{}").unwrap_err();
        assert!(e.to_string().starts_with("contract_no:"), "{e}");
        let e = parse_json::<T>(b"{\"contract_no\": 1}").unwrap_err();
        assert!(e.to_string().starts_with("body:"), "{e}");
        let e = parse_json::<T>(b"{\"contract_no\": \"1\", \"x\": 1}").unwrap_err();
        assert!(e.to_string().starts_with("x:"), "{e}");
        let e = parse_json::<T>(b"{nope").unwrap_err();
        assert!(e.to_string().starts_with("body:"), "{e}");
        assert!(parse_json::<T>(b"").is_err());
    }
}
