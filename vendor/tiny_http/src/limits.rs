//! Limits on what one client can make the server hold: bytes, time and
//! connections (onepush patch "limits", see ../../PATCHES.md).
//!
//! Upstream tiny_http reads a header line without bound, has no read
//! timeouts, no connection cap and no body limit. `Limits` bounds each, and
//! the server answers a request that passes one itself (`Rejection`), then
//! closes the connection, without handing the request out.

use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{Header, Method, Response, StatusCode};

/// Why the server answered a request itself instead of handing it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 431: the request line or a header line, the number of headers or all
    /// headers together are over their limit.
    HeadersTooLarge,
    /// 408: the request line and headers (`header_timeout`) or the body
    /// (`body_timeout`) did not arrive in time.
    RequestTimeout,
    /// 400: a request line or header that does not parse.
    BadRequest,
    /// 400: the body's length is ambiguous (two `Content-Length` headers, a
    /// non-decimal one, a `Transfer-Encoding` other than `chunked`, or both
    /// headers). The text says which.
    BadFraming(&'static str),
    /// 413: the declared body is over the limit of its route (the limit).
    BodyTooLarge(usize),
    /// 503: `max_connections` are open; answered at accept.
    Overloaded,
    /// 505: a request line naming HTTP/2 or later.
    VersionNotSupported,
    /// 417: an `Expect` other than `100-continue`.
    ExpectationFailed,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        StatusCode(match self {
            Rejection::HeadersTooLarge => 431,
            Rejection::RequestTimeout => 408,
            Rejection::BadRequest | Rejection::BadFraming(_) => 400,
            Rejection::BodyTooLarge(_) => 413,
            Rejection::Overloaded => 503,
            Rejection::VersionNotSupported => 505,
            Rejection::ExpectationFailed => 417,
        })
    }
}

/// The answer to a rejected request (`Connection: close` is added).
pub type RejectionResponse = Response<Cursor<Vec<u8>>>;

/// What one client may make the server hold. `Default` gives bounded
/// values that suit most servers; the body limit defaults to none.
#[derive(Clone)]
pub struct Limits {
    /// Bytes in the request line, without CRLF.
    pub max_request_line: usize,
    /// Bytes in one header line, without CRLF.
    pub max_header_line: usize,
    /// Number of header lines.
    pub max_headers: usize,
    /// Bytes of the request line and all header lines together.
    pub max_header_bytes: usize,
    /// From a request's first byte to the end of its headers. Also the time a
    /// new connection has to send its first byte.
    pub header_timeout: Option<Duration>,
    /// From the end of the headers to the end of the body.
    pub body_timeout: Option<Duration>,
    /// How long one write of a response may wait for the client to read:
    /// past it the connection is closed. (A response is first sent without
    /// blocking; only its rest waits, on a sender thread.)
    pub send_timeout: Option<Duration>,
    /// How long a keep-alive connection may wait for its next request's first
    /// byte after its last response. A request still being answered (a
    /// parked long-poll) does not make its connection idle.
    pub keepalive_timeout: Option<Duration>,
    /// Open connections, counted from accept until the socket is closed
    /// (requests still held by the application count). Past it, a new
    /// connection gets 503 at accept and is closed.
    pub max_connections: usize,
    /// Bodies up to this size are read whole by the connection's own thread
    /// before the request is handed out, so a slow client never holds the
    /// thread that handles requests. A larger body is streamed to the
    /// handler, and its connection closes after the request.
    pub buffer_body: usize,
    /// Honour `Connection: upgrade` (the body reader is then the raw stream).
    pub allow_upgrade: bool,
    /// The largest body a request may declare, by method and URL: more is
    /// answered 413 at once, and the body is never read.
    pub body_limit: Arc<dyn Fn(&Method, &str) -> usize + Send + Sync>,
    /// Builds the answer to a rejected request.
    pub rejection: Arc<dyn Fn(Rejection) -> RejectionResponse + Send + Sync>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_line: 8 * 1024,
            max_header_line: 8 * 1024,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            header_timeout: Some(Duration::from_secs(10)),
            body_timeout: Some(Duration::from_secs(10)),
            send_timeout: Some(Duration::from_secs(10)),
            keepalive_timeout: Some(Duration::from_secs(75)),
            max_connections: 20_000,
            buffer_body: 64 * 1024,
            allow_upgrade: true,
            body_limit: Arc::new(|_, _| usize::MAX),
            rejection: Arc::new(|r| Response::from_data(Vec::new()).with_status_code(r.status())),
        }
    }
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("max_request_line", &self.max_request_line)
            .field("max_header_line", &self.max_header_line)
            .field("max_headers", &self.max_headers)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field("max_connections", &self.max_connections)
            .field("buffer_body", &self.buffer_body)
            .field("allow_upgrade", &self.allow_upgrade)
            .finish_non_exhaustive()
    }
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// Reads the body's framing from the headers, strictly (RFC 9112 §6.3): a
/// request whose length two parties could read differently is refused, as
/// that is how requests are smuggled past a proxy.
pub(crate) fn framing(headers: &[Header]) -> Result<Framing, &'static str> {
    let mut length = None;
    let mut encoding = None;
    for h in headers {
        if h.field.equiv("Content-Length") {
            if length.is_some() {
                return Err("two Content-Length headers");
            }
            let v = h.value.as_str().trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err("Content-Length is not a decimal number");
            }
            // Digits that overflow are a length over any limit.
            length = Some(v.parse::<usize>().unwrap_or(usize::MAX));
        } else if h.field.equiv("Transfer-Encoding") {
            if encoding.is_some() {
                return Err("two Transfer-Encoding headers");
            }
            encoding = Some(h.value.as_str().trim());
        }
    }
    match (length, encoding) {
        (Some(_), Some(_)) => Err("both Transfer-Encoding and Content-Length"),
        (None, Some(te)) if te.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
        (None, Some(_)) => Err("Transfer-Encoding other than chunked"),
        (Some(n), None) => Ok(Framing::Length(n)),
        (None, None) => Ok(Framing::None),
    }
}

/// A header line as RFC 9112 §5 has it: a token, a colon, and a value
/// without control characters (HTAB allowed). A line folded onto the
/// previous one (obs-fold), a name with spaces or a NUL in a value is
/// refused rather than guessed at (onepush patch "limits").
pub(crate) fn well_formed_header(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else { return false };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    !name.is_empty() && name.iter().all(|b| is_tchar(*b)) && value.iter().all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f))
}

/// A token character (RFC 9110 §5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One open connection, counted in `open` until dropped.
pub struct ConnectionSlot {
    open: Arc<AtomicUsize>,
}

impl ConnectionSlot {
    /// A slot, or `None` when `max` connections are already open.
    pub(crate) fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Arc<ConnectionSlot>> {
        if open.fetch_add(1, Ordering::AcqRel) >= max {
            open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Arc::new(ConnectionSlot { open: open.clone() }))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::{framing, Framing};
    use crate::Header;
    use std::str::FromStr;

    fn f(lines: &[&str]) -> Result<Framing, &'static str> {
        let headers: Vec<Header> = lines.iter().map(|l| Header::from_str(l).unwrap()).collect();
        framing(&headers)
    }

    #[test]
    fn framing_is_strict() {
        assert_eq!(f(&[]), Ok(Framing::None));
        assert_eq!(f(&["Content-Length: 12"]), Ok(Framing::Length(12)));
        assert_eq!(f(&["content-length: 0012"]), Ok(Framing::Length(12)));
        assert_eq!(f(&["Content-Length: 99999999999999999999999"]), Ok(Framing::Length(usize::MAX)));
        assert_eq!(f(&["Transfer-Encoding: Chunked"]), Ok(Framing::Chunked));
        assert!(f(&["Content-Length: 2", "Content-Length: 2"]).is_err());
        assert!(f(&["Content-Length: +2"]).is_err());
        assert!(f(&["Content-Length: -1"]).is_err());
        assert!(f(&["Content-Length: 0x10"]).is_err());
        assert!(f(&["Content-Length: 1 2"]).is_err());
        assert!(f(&["Transfer-Encoding: xchunked"]).is_err());
        assert!(f(&["Transfer-Encoding: gzip, chunked"]).is_err());
        assert!(f(&["Transfer-Encoding: chunked", "Content-Length: 3"]).is_err());
        assert!(f(&["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]).is_err());
    }
}
