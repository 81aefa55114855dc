use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Method};
use crate::limits::{self, Framing, Limits, Rejection};
use crate::request::ResponseWriter;
use crate::util::timed_reader::{Clock, TimedReader};
use crate::util::flusher::Flusher;
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// After an answer that closes the connection, what the client is still
/// sending is read and dropped for at most this long and this much, so that
/// closing with unread data does not reset the connection before the client
/// has read the answer (nginx's `lingering_close`).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 << 10;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: Option<SocketAddr>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<TimedReader>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<TimedReader>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    limits: Arc<Limits>,

    // finishes the responses that the socket does not take at once
    flusher: Arc<Flusher>,

    // the read deadline and the requests being answered
    clock: Arc<Clock>,

    // no request has started yet: the header timeout runs from accept
    first: bool,

    accepted: Instant,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
    /// no byte of a next request came in time: close without an answer
    Idle,
    /// a limit was passed: answer and close
    Rejected(Rejection),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Arc<Limits>,
        flusher: Arc<Flusher>,
    ) -> ClientConnection {
        // A client that has already gone may have no address: not a reason to panic.
        let remote_addr = read_socket.peer_addr().ok().flatten();
        let secure = read_socket.secure();
        let clock = Clock::new();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(
            1024,
            TimedReader::new(read_socket, clock.clone()),
        ));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            limits,
            flusher,
            clock,
            first: true,
            accepted: Instant::now(),
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Waits for the first byte of the next request: on a new connection for
    /// the header timeout, later for the keep-alive timeout counted from the
    /// last answer (a request still being answered keeps it open).
    fn wait_for_request(&mut self) -> Result<u8, ReadError> {
        loop {
            // A request still being answered (a parked long-poll) keeps the
            // connection from being idle.
            let deadline = if self.first {
                self.limits.header_timeout.map(|t| self.accepted + t)
            } else if self.clock.in_flight() > 0 {
                self.limits.keepalive_timeout.map(|t| Instant::now() + t)
            } else {
                self.limits.keepalive_timeout.map(|t| self.clock.idle_since() + t)
            };
            self.clock.set_deadline(deadline);
            let mut byte = [0u8];
            match self.next_header_source.read(&mut byte) {
                Ok(0) => return Err(ReadError::ReadIoError(ErrorKind::UnexpectedEof.into())),
                Ok(_) => {
                    self.first = false;
                    return Ok(byte[0]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    let idle_until = self.limits.keepalive_timeout.map(|t| self.clock.idle_since() + t);
                    let busy = self.clock.in_flight() > 0;
                    if self.first || (!busy && idle_until.map_or(false, |d| d <= Instant::now())) {
                        return Err(ReadError::Idle);
                    }
                }
                Err(e) => return Err(ReadError::ReadIoError(e)),
            }
        }
    }

    /// Reads one line of at most `max` bytes (without its CRLF); `first` is
    /// its first byte, already read.
    fn read_next_line(&mut self, max: usize, first: Option<u8>) -> Result<AsciiString, ReadError> {
        let mut buf = Vec::with_capacity(64);
        let mut prev_byte_was_cr = false;
        let mut pending = first;

        loop {
            let byte = match pending.take() {
                Some(b) => b,
                None => {
                    let mut byte = [0u8];
                    match self.next_header_source.read(&mut byte) {
                        Ok(0) => {
                            return Err(ReadError::ReadIoError(IoError::new(
                                ErrorKind::ConnectionAborted,
                                "Unexpected EOF",
                            )))
                        }
                        Ok(_) => byte[0],
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(ReadError::ReadIoError(e)),
                    }
                }
            };

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                // bytes past ASCII (obs-text) cannot be held: refused, not dropped silently
                return AsciiString::from_ascii(buf).map_err(|_| ReadError::WrongRequestLine);
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
            // a trailing CR may still be the line's end
            if buf.len() - usize::from(prev_byte_was_cr) > max {
                return Err(ReadError::Rejected(Rejection::HeadersTooLarge));
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read, and the body if it is buffered.
    /// The flag says that the body is streamed: the connection closes after.
    fn read(&mut self) -> Result<(Request, bool), ReadError> {
        let first_byte = self.wait_for_request()?;
        // One request at a time: the rest of this one is read only after the
        // one before has been answered, so a connection never queues
        // requests (or their bodies) and answers go out in order. (Waiting
        // after the first byte, not before it, keeps the common case, a
        // client that waits for each answer, free of a wake-up.)
        self.clock.wait_until_answered();
        if self.clock.broken() {
            // an answer could not be sent: what the client pipelined is not read
            return Err(ReadError::Idle);
        }
        let limits = self.limits.clone();
        self.clock
            .set_deadline(limits.header_timeout.map(|t| Instant::now() + t));

        let (method, path, version, headers) = {
            // reading the request line
            let mut line = self.read_next_line(limits.max_request_line, Some(first_byte))?;
            if line.is_empty() {
                // RFC 9112 §2.2: one empty line before a request line is ignored
                line = self.read_next_line(limits.max_request_line, None)?;
            }
            let mut total = line.len() + 2;
            let (method, path, version) = parse_request_line(line.as_str())?;
            if version > (1, 1) {
                return Err(ReadError::Rejected(Rejection::VersionNotSupported));
            }

            // getting all headers
            let mut headers = Vec::new();
            loop {
                let line = self.read_next_line(limits.max_header_line, None)?;
                if line.is_empty() {
                    break;
                };
                total += line.len() + 2;
                if headers.len() >= limits.max_headers || total > limits.max_header_bytes {
                    return Err(ReadError::Rejected(Rejection::HeadersTooLarge));
                }
                if !limits::well_formed_header(line.as_bytes()) {
                    return Err(ReadError::WrongHeader(version));
                }
                headers.push(match FromStr::from_str(line.as_str().trim()) {
                    Ok(h) => h,
                    _ => return Err(ReadError::WrongHeader(version)),
                });
            }

            (method, path, version, headers)
        };

        // the body's length, strictly, and the route's limit, before any of it is read
        let framing = limits::framing(&headers)
            .map_err(|why| ReadError::Rejected(Rejection::BadFraming(why)))?;
        if framing == Framing::Chunked && version == HTTPVersion(1, 0) {
            // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing
            return Err(ReadError::Rejected(Rejection::BadFraming("Transfer-Encoding on HTTP/1.0")));
        }
        let limit = (limits.body_limit)(&method, &path);
        if let Framing::Length(n) = framing {
            if n > limit {
                return Err(ReadError::Rejected(Rejection::BodyTooLarge(limit)));
            }
        }
        self.clock
            .set_deadline(limits.body_timeout.map(|t| Instant::now() + t));

        // building the writer for the request
        let writer = ResponseWriter::Socket {
            writer: self.sink.next().unwrap(),
            flusher: self.flusher.clone(),
        };

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let rules = crate::request::BodyRules {
            framing,
            limit,
            buffer: limits.buffer_body,
            allow_upgrade: limits.allow_upgrade,
            in_flight: Some(self.clock.request_started()),
        };
        let created = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            self.remote_addr,
            data_source,
            writer,
            rules,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => match e.kind() {
                    ErrorKind::TimedOut => ReadError::Rejected(Rejection::RequestTimeout),
                    ErrorKind::InvalidInput | ErrorKind::InvalidData => {
                        ReadError::Rejected(Rejection::BadFraming("malformed chunked body"))
                    }
                    _ => ReadError::ReadIoError(e),
                },
                request::RequestCreationError::Rejected(r) => ReadError::Rejected(r),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?;
        if created.1 {
            // a streamed body's deadline runs from when its handler starts reading it
            self.clock.arm_on_next_read(limits.body_timeout);
        }
        Ok(created)
    }

    /// Answers a rejected request, then lingers: the connection closes after.
    fn reject(&mut self, why: Rejection) {
        let mut writer = self.sink.next().unwrap();
        let mut response = (self.limits.rejection)(why);
        response.say_connection_close();
        if response
            .raw_print(writer.by_ref(), HTTPVersion(1, 1), &[], false, None)
            .is_ok()
        {
            writer.flush().ok();
        }
        drop(writer);
        self.sink.shutdown_write();
        self.clock.set_deadline(Some(Instant::now() + LINGER_TIME));
        let mut buf = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match self.next_header_source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            let (rq, streamed) = match self.read() {
                // we don't know where the next request would start, so we have to close
                Err(ReadError::WrongRequestLine) | Err(ReadError::WrongHeader(_)) => {
                    self.reject(Rejection::BadRequest);
                    return None;
                }

                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    self.reject(Rejection::RequestTimeout);
                    return None;
                }

                Err(ReadError::Rejected(why)) => {
                    self.reject(why);
                    return None;
                }

                Err(ReadError::ExpectationFailed(_)) => {
                    self.reject(Rejection::ExpectationFailed);
                    return None;
                }

                Err(ReadError::Idle) | Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // a body too large to buffer was left to the handler: where the
            // next request starts depends on how much of it is read
            if streamed {
                self.no_more_requests = true;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().filter(|m| !m.is_empty() && m.bytes().all(limits::is_tchar)).and_then(|w| w.parse().ok());
    // a target of visible ASCII only: no control character reaches a log line
    let path = parts.next().filter(|p| !p.is_empty() && p.bytes().all(|b| (0x21..=0x7e).contains(&b))).map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());
    if parts.next().is_some() {
        return Err(ReadError::WrongRequestLine);
    }

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
        assert!(super::parse_request_line("GET /hello HTTP/1.1 extra").is_err());
        assert!(super::parse_request_line("GET  /hello HTTP/1.1").is_err());
        assert!(super::parse_request_line("G(T /hello HTTP/1.1").is_err());
        assert!(super::parse_request_line("GET /a\tb HTTP/1.1").is_err());
        assert!(super::parse_request_line("GET /a\nb HTTP/1.1").is_err());
        assert!(super::parse_request_line("OPTIONS * HTTP/1.1").is_ok());
    }

    #[test]
    fn header_lines_are_strict() {
        assert!(crate::limits::well_formed_header(b"Host: x"));
        assert!(crate::limits::well_formed_header(b"X-A:\tb c"));
        assert!(!crate::limits::well_formed_header(b" folded: x"));
        assert!(!crate::limits::well_formed_header(b"Bad Name: x"));
        assert!(!crate::limits::well_formed_header(b": x"));
        assert!(!crate::limits::well_formed_header(b"X: a\0b"));
        assert!(!crate::limits::well_formed_header(b"X: a\rb"));
        assert!(!crate::limits::well_formed_header(b"no colon"));
    }
}
