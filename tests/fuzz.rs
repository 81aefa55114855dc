//! Bounded fuzzing, run by `.ci/run` with a fixed budget (property tests
//! with proptest; the number of cases comes from `ONEPUSH_FUZZ_CASES`).
//!
//! - The request-parsing path of the vendored tiny_http, with onepush's own
//!   edge limits: valid requests mutated byte by byte (and plain noise) are
//!   sent to an in-process server. No panic, every answer an HTTP status
//!   line, no connection left counted, and the server still answers.
//! - onepush's JSON input types, through the real binary: structured and
//!   random JSON to every JSON endpoint, authenticated. Never a 500, never a
//!   panic, always an error code from API.md's table.
//!
//! Each prints "fuzz <target>: N executions, M crashes".

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

fn cases(default: u32) -> u32 {
    std::env::var("ONEPUSH_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Panics on any thread of this process, counted.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

// ------------------------------------------------------------- the wire

const BASES: &[&[u8]] = &[
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n",
    b"POST /api/v1/registrations HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /app HTTP/1.0\r\n\r\n",
    b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nDELETE /c HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET /x HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
];

/// Pieces that matter to the parser, spliced in by the mutations.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b":",
    b" ",
    b"\0",
    b"Content-Length: ",
    b"Content-Length: 70000\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"99999999999999999999999",
    b"-1",
    b"+5",
    b"0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"HTTP/1.1",
    b"HTTP/2.0",
    b"/api/v1/admin/import",
    b"\xff\xfe",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Token(usize, usize),
    Delete(usize, usize),
    Repeat(usize, usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(i, t)| Mutation::Token(i, t)),
        (any::<usize>(), 1usize..32).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..24, 1usize..400).prop_map(|(i, n, k)| Mutation::Repeat(i, n, k)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match m {
            Mutation::Flip(i, x) if !b.is_empty() => {
                let i = i % b.len();
                b[i] = *x;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, v) => {
                let i = at(*i, b.len());
                b.splice(i..i, v.iter().copied());
            }
            Mutation::Token(i, t) => {
                let i = at(*i, b.len());
                b.splice(i..i, TOKENS[*t].iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(*i, b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Mutation::Repeat(i, n, k) => {
                let i = at(*i, b.len());
                let end = (i + n).min(b.len());
                let piece = b[i..end].to_vec();
                for _ in 0..*k {
                    b.splice(end..end, piece.iter().copied());
                }
            }
            Mutation::Truncate(i) => {
                let i = at(*i, b.len());
                b.truncate(i);
            }
        }
    }
    b
}

fn wire_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        9 => (0..BASES.len(), proptest::collection::vec(mutation(), 0..8)).prop_map(|(i, m)| apply(BASES[i].to_vec(), &m)),
        1 => proptest::collection::vec(any::<u8>(), 0..512),
    ]
}

/// An in-process tiny_http with onepush's edge limits (short timeouts) and
/// two workers that read each body through onepush's reader and answer.
fn edge_server() -> (Arc<tiny_http::Server>, String) {
    let edge = onepush::config::EdgeLimits {
        header_timeout: 300,
        body_timeout: 300,
        keepalive_timeout: 300,
        send_timeout: 1000,
        max_connections: 512,
    };
    let limits = onepush::http::limits(&edge, Arc::new(onepush::metrics::Metrics::default()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = Arc::new(tiny_http::Server::from_listener_with_limits(listener, None, limits).unwrap());
    for i in 0..2 {
        let server = server.clone();
        std::thread::Builder::new()
            .name(format!("fuzz-worker-{i}"))
            .spawn(move || {
                while let Ok(mut req) = server.recv() {
                    let limit = onepush::http::request::body_limit(req.url());
                    let answer = match onepush::http::request::read_body(&mut req, limit) {
                        Ok(body) => tiny_http::Response::from_string(format!("{} bytes", body.len())),
                        Err(e) => tiny_http::Response::from_string(e.code()).with_status_code(400),
                    };
                    let _ = req.respond(answer);
                }
            })
            .unwrap();
    }
    (server, addr)
}

/// Sends `bytes`, closes the sending side, reads every answer.
fn send(addr: &str, bytes: &[u8]) -> Result<(Vec<u8>, Duration), String> {
    let t = Instant::now();
    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.write_all(bytes);
    let _ = c.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = c.take(4 << 20).read_to_end(&mut out);
    Ok((out, t.elapsed()))
}

#[test]
fn fuzz_the_vendored_request_parser() {
    count_panics();
    let (server, addr) = edge_server();
    let executions = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config { cases: cases(3000), failure_persistence: None, ..Config::default() });
    let result = runner.run(&wire_input(), |input| {
        let n = executions.fetch_add(1, Ordering::SeqCst);
        let (out, took) = send(&addr, &input).map_err(TestCaseError::fail)?;
        prop_assert!(
            out.is_empty() || out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 "),
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(200)])
        );
        // An answer never waits past the timeouts (0.3 s) plus the linger after a rejection (2 s).
        prop_assert!(took < Duration::from_secs(4), "took {took:?}");
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
        if n.is_multiple_of(100) {
            let (ok, _) = send(&addr, BASES[0]).map_err(TestCaseError::fail)?;
            prop_assert!(ok.starts_with(b"HTTP/1.1 200"), "the server stopped answering");
        }
        Ok(())
    });
    let n = executions.load(Ordering::SeqCst);
    let crashes = PANICS.load(Ordering::SeqCst);
    println!("fuzz wire: {n} executions, {crashes} crashes");
    if let Err(e) = result {
        panic!("{e}");
    }
    // Every connection was counted out again.
    eventually("every connection counted out again", 10, || (server.num_connections() == 0).then_some(()));
}

// ------------------------------------------------------------- JSON inputs

/// Every field name of the JSON inputs, so that generated objects reach
/// past "unknown field" into the validation of each.
const FIELDS: &[&str] = &[
    "contract_no",
    "user_id",
    "password",
    "client",
    "ip",
    "user_agent",
    "kind",
    "transaction_password",
    "display",
    "public_key",
    "proof",
    "label",
    "push_endpoint",
    "token_id",
    "otp1",
    "otp2",
    "decision",
    "number",
    "report_fraud",
    "signature",
    "name",
    "edition",
    "role",
    "reason",
    "usable_until",
    "actor_user_id",
    "push_suspended",
    "notice_id",
    "title",
    "body",
    "lang",
    "starts_at",
    "ends_at",
    "username",
    "code",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9]{1,25}",
        "[a-zA-Z0-9._-]{1,40}",
        "\\PC{0,60}",
        ".{0,20}",
        Just("1000000001".to_string()),
        Just("taro".to_string()),
        Just("login-pass-1".to_string()),
        Just("2099-12-31".to_string()),
        Just("9999-12-31T23:59:59Z".to_string()),
        Just("+275760-09-13T00:00:00Z".to_string()),
        Just("\u{202e}evil\u{200b}".to_string()),
        Just("a".repeat(300)),
        Just("jweb".to_string()),
        Just("fx".to_string()),
        Just("login".to_string()),
        Just("transaction".to_string()),
        Just("approve".to_string()),
        Just("service_admin".to_string()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (prop_oneof![4 => proptest::sample::select(FIELDS).prop_map(str::to_string), 1 => text()], inner),
                0..8
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// An object with some of the known fields, each with any value.
fn json_object() -> impl Strategy<Value = Value> {
    proptest::collection::vec((proptest::sample::select(FIELDS), json_value()), 0..9)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn json_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => json_object().prop_map(|v| v.to_string().into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
        1 => "[\\[\\]{}\",:0-9a-z\\\\ ]{0,80}".prop_map(String::into_bytes),
    ]
}

#[test]
fn fuzz_the_json_inputs_of_every_endpoint() {
    let w = World::new("");
    w.contract("1000000001", "jweb");
    w.user("1000000001", "taro", "service_admin");
    w.user("1000000001", "hanako", "user");
    let endpoints: &[(&str, &str, bool)] = &[
        ("POST", "/api/v1/login", true),
        ("POST", "/api/v1/approvals", true),
        ("POST", "/api/v1/users/1000000001/hanako/deregister", true),
        ("POST", "/api/v1/device/provision", false),
        ("POST", "/api/v1/registrations", false),
        ("POST", "/api/v1/admin/session", false),
        ("POST", "/api/v1/admin/bootstrap", false),
        ("POST", "/api/v1/admin/contracts", false),
        ("POST", "/api/v1/admin/contracts/1000000001/users", false),
        ("POST", "/api/v1/admin/contracts/1000000001/cancel", false),
        ("POST", "/api/v1/admin/contracts/1000000001/service-admin", false),
        ("DELETE", "/api/v1/admin/contracts/1000000001/users/hanako", false),
        ("POST", "/api/v1/admin/contracts/1000000001/users/taro/suspend", false),
        ("POST", "/api/v1/admin/contracts/1000000001/users/taro/unlock", false),
        ("PUT", "/api/v1/admin/system", false),
        ("POST", "/api/v1/admin/notices", false),
    ];
    let allowed = [200, 201, 204, 400, 401, 403, 404, 409, 413, 415, 422, 429];
    let executions = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config { cases: cases(1500), failure_persistence: None, ..Config::default() });
    let result = runner.run(&(0..endpoints.len(), json_input()), |(e, body)| {
        executions.fetch_add(1, Ordering::SeqCst);
        let (method, path, rp) = endpoints[e];
        let mut headers = if rp { w.rp() } else { w.admin() };
        headers.push(("Content-Type", "application/json".to_string()));
        let r = request(method, &w.s.url(path), &headers, Some(("application/json", body.clone())));
        prop_assert!(allowed.contains(&r.status), "{method} {path} {:?}: {} {}", String::from_utf8_lossy(&body), r.status, r.text);
        if r.status >= 400 {
            prop_assert!(!r.code().is_empty(), "{method} {path}: no error code: {}", r.text);
            prop_assert!(r.json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        Ok(())
    });
    let n = executions.load(Ordering::SeqCst);
    let log = w.s.log();
    let crashes = log.matches("panicked").count();
    println!("fuzz json: {n} executions, {crashes} crashes");
    if let Err(e) = result {
        panic!("{e}\nserver log tail:\n{}", &log[log.len().saturating_sub(3000)..]);
    }
    assert_eq!(crashes, 0, "{log}");
    assert_eq!(w.s.get("/healthz", &[]).status, 200);
}
