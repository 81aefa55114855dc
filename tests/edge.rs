//! The HTTP edge (API.md, Conventions: "HTTP edge limits"; SPEC R7), tried
//! as an attacker would: raw bytes on a socket, straight at the binary.
//! Every limit of the table, each case of the issue that found them, and
//! that the server is still up and answering after each.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Short timeouts, so that the timeouts can be waited for.
const FAST: &str = "header_timeout = \"2s\"\nbody_timeout = \"2s\"\nkeepalive_timeout = \"3s\"\n";

fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_string()
}

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(addr(s)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn code(&self) -> String {
        serde_json::from_str::<Value>(&self.body).ok().and_then(|v| v["error"]["code"].as_str().map(str::to_string)).unwrap_or_default()
    }
}

/// Reads one response (its body by Content-Length, none for HEAD); `None`
/// when the connection ends or times out before a status line.
fn read_answer(r: &mut BufReader<TcpStream>, head: bool) -> Option<Answer> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; if head { 0 } else { len }];
    r.read_exact(&mut body).ok()?;
    Some(Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// Sends `bytes` on a new connection and reads the answer.
fn exchange(s: &Server, bytes: &[u8]) -> (Option<Answer>, BufReader<TcpStream>) {
    let mut c = connect(s);
    c.write_all(bytes).unwrap();
    let mut r = BufReader::new(c);
    (read_answer(&mut r, bytes.starts_with(b"HEAD")), r)
}

/// True when the server closes the connection within `limit` (EOF or reset).
fn closed_within(r: &mut BufReader<TcpStream>, limit: Duration) -> bool {
    r.get_ref().set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

/// A client with a 2 KiB receive buffer, set before connecting so that the
/// window it advertises is small from the start.
fn connect_small_window(s: &Server) -> TcpStream {
    let addr: std::net::SocketAddr = addr(s).parse().unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    sock.connect(&addr.into()).unwrap();
    let c: TcpStream = sock.into();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// The server answers a plain request at once, and its process is alive.
fn assert_up(s: &Server) {
    let t = Instant::now();
    let (a, _) = exchange(s, &get("/api/v1/status"));
    let a = a.expect("the server answers /api/v1/status");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(t.elapsed() < Duration::from_secs(2), "status took {:?}", t.elapsed());
    assert!(std::path::Path::new(&format!("/proc/{}", s.pid)).exists());
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

fn rss_mb(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid)).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse::<u64>().unwrap() / 1024
}

fn metric(s: &Server, line_start: &str) -> f64 {
    let r = s.get("/metrics", &[]);
    r.text.lines().find_map(|l| l.strip_prefix(line_start)).and_then(|v| v.trim().parse().ok()).unwrap_or(-1.0)
}

// ------------------------------------------------ one request kills the process

#[test]
fn a_huge_declared_length_is_413_at_once_and_the_body_is_never_read() {
    let s = Server::start("");
    for req in [
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n",
        "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n",
        // digits past u64: a length over any limit, not a parse error
        "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: 123456789012345678901234567890\r\n\r\n",
        // one byte over the route's limit (64 KiB), and over the CSV route's (5 MiB)
        "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 65537\r\n\r\n",
        "POST /api/v1/admin/import HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 5242881\r\n\r\n",
    ] {
        let t = Instant::now();
        let (a, mut r) = exchange(&s, req.as_bytes());
        let a = a.unwrap_or_else(|| panic!("no answer to {req:?}"));
        assert_eq!((a.status, a.code().as_str()), (413, "body_too_large"), "{req:?}: {}", a.body);
        assert_eq!(a.header("Connection"), Some("close"));
        assert!(t.elapsed() < Duration::from_secs(1), "answered at once, not after a read: {:?}", t.elapsed());
        assert!(closed_within(&mut r, Duration::from_secs(3)), "closed after 413: {req:?}");
        assert_up(&s);
    }
    // At the limit is not over it: 64 KiB of JSON is read (and is not a login).
    let body = format!("{{\"contract_no\": \"{}\"}}", "1".repeat(65_536 - 19));
    assert_eq!(body.len(), 65_536);
    let req =
        format!("POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let (a, _) = exchange(&s, req.as_bytes());
    assert_eq!(a.unwrap().status, 401, "read, then refused for its missing key");
    assert!(metric(&s, "onepush_http_edge_rejections_total{code=\"body_too_large\"}") >= 5.0);
}

#[test]
fn a_csv_import_over_64_kib_is_refused_without_a_session_before_its_body_is_read() {
    let s = Server::start("");
    let t = Instant::now();
    let (a, mut r) =
        exchange(&s, b"POST /api/v1/admin/import HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 4000000\r\n\r\nno,");
    let a = a.unwrap();
    assert_eq!((a.status, a.code().as_str()), (401, "unauthorized"), "{}", a.body);
    assert!(t.elapsed() < Duration::from_secs(1));
    // The rest of the body is not drained by a worker: the connection closes.
    assert!(closed_within(&mut r, Duration::from_secs(3)));
    assert_up(&s);
}

// ----------------------------------------------------------- header limits

#[test]
fn request_line_and_headers_are_bounded_and_431_closes() {
    let s = Server::start("");
    let long = |n: usize| "a".repeat(n);
    let ok = |req: String| {
        let (a, _) = exchange(&s, req.as_bytes());
        a.unwrap().status
    };
    // At each limit: answered.
    let target = format!("/healthz?{}", long(8192 - "GET /healthz? HTTP/1.1".len()));
    assert_eq!(ok(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")), 200);
    assert_eq!(ok(format!("GET /healthz HTTP/1.1\r\nX-A: {}\r\n\r\n", long(8192 - 5))), 200);
    let hundred: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(ok(format!("GET /healthz HTTP/1.1\r\n{hundred}\r\n")), 200);
    // One over each: 431 headers_too_large, then close.
    let over = [
        format!("GET {target}a HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET /healthz HTTP/1.1\r\nX-A: {}\r\n\r\n", long(8192 - 4)),
        format!("GET /healthz HTTP/1.1\r\n{hundred}X-100: v\r\n\r\n"),
        // nine lines of 7.9 KiB: each within 8 KiB, together over 64 KiB
        format!("GET /healthz HTTP/1.1\r\n{}\r\n", (0..9).map(|i| format!("X-{i}: {}\r\n", long(7900))).collect::<String>()),
    ];
    for req in over {
        let (a, mut r) = exchange(&s, req.as_bytes());
        let a = a.unwrap_or_else(|| panic!("no answer to a request of {} bytes", req.len()));
        assert_eq!((a.status, a.code().as_str()), (431, "headers_too_large"), "{}", a.body);
        assert!(a.body.contains("8 KiB"), "{}", a.body);
        assert_eq!(a.header("Connection"), Some("close"));
        assert!(closed_within(&mut r, Duration::from_secs(3)));
    }
    assert_up(&s);
    assert!(metric(&s, "onepush_http_edge_rejections_total{code=\"headers_too_large\"}") >= 4.0);
}

#[test]
fn an_endless_header_line_costs_no_memory_and_is_cut_off() {
    let s = Server::start("");
    let before = rss_mb(&s);
    // Four clients each try to send a 512 MiB header line.
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let mut c = connect(&s);
            std::thread::spawn(move || {
                c.write_all(b"GET /healthz HTTP/1.1\r\nX-Big: ").unwrap();
                let chunk = vec![b'a'; 1 << 20];
                let mut sent = 0usize;
                while sent < 512 << 20 {
                    match c.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
                let mut r = BufReader::new(c);
                (sent, read_answer(&mut r, false).map(|a| (a.status, a.code())))
            })
        })
        .collect();
    for t in senders {
        let (sent, answer) = t.join().unwrap();
        assert!(sent < 64 << 20, "the server kept reading: {sent} bytes");
        // The answer may be lost to a reset while the client still writes;
        // when it arrives it is 431.
        if let Some(a) = answer {
            assert_eq!(a, (431, "headers_too_large".to_string()));
        }
    }
    let after = rss_mb(&s);
    assert!(after < before + 20, "RSS {before} MB -> {after} MB");
    assert_up(&s);
}

// ---------------------------------------------------- slow clients, timeouts

#[test]
fn slow_bodies_hold_no_worker_and_end_in_408() {
    let s = Server::start(FAST);
    // Twice as many as there are workers (4 per core), each stuck after "{".
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2) * 4;
    let mut stuck: Vec<BufReader<TcpStream>> = (0..workers * 2)
        .map(|_| {
            let mut c = connect(&s);
            c.write_all(b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{")
                .unwrap();
            BufReader::new(c)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        assert_up(&s);
    }
    let t = Instant::now();
    for r in &mut stuck {
        let a = read_answer(r, false).expect("an answer to the slow body");
        assert_eq!((a.status, a.code().as_str()), (408, "request_timeout"), "{}", a.body);
        assert!(closed_within(r, Duration::from_secs(3)));
    }
    assert!(t.elapsed() < Duration::from_secs(4), "body_timeout is 2 s: {:?}", t.elapsed());
    assert_up(&s);
}

#[test]
fn a_body_that_trickles_in_is_timed_as_a_whole() {
    let s = Server::start(FAST);
    let mut c = connect(&s);
    c.write_all(b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n").unwrap();
    let t = Instant::now();
    // A byte every 300 ms never lets one read wait 2 s, but the body does.
    let mut r = BufReader::new(c.try_clone().unwrap());
    let writer = std::thread::spawn(move || {
        for _ in 0..20 {
            if c.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let a = read_answer(&mut r, false).unwrap();
    assert_eq!(a.status, 408, "{}", a.body);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_millis(3500), "{took:?}");
    writer.join().unwrap();
}

#[test]
fn slowloris_headers_get_408_and_idle_connections_are_closed() {
    let s = Server::start(FAST);
    // Headers sent a byte at a time: the header timeout runs from the first byte.
    let mut c = connect(&s);
    let mut r = BufReader::new(c.try_clone().unwrap());
    let t = Instant::now();
    let dribble = std::thread::spawn(move || {
        for b in b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnopqrstuvwxyz".iter() {
            if c.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let a = read_answer(&mut r, false).expect("408 for the slow headers");
    assert_eq!((a.status, a.code().as_str()), (408, "request_timeout"), "{}", a.body);
    assert!(t.elapsed() < Duration::from_millis(3500), "{:?}", t.elapsed());
    dribble.join().unwrap();

    // A connection that never sends a byte is closed, without an answer.
    let mut idle = BufReader::new(connect(&s));
    let t = Instant::now();
    assert!(read_answer(&mut idle, false).is_none());
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_millis(3500), "{took:?}");

    // A keep-alive connection is closed keepalive_timeout after its last answer.
    let mut c = connect(&s);
    c.write_all(&get("/healthz")).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    assert_eq!(read_answer(&mut r, false).unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    c.write_all(&get("/healthz")).unwrap();
    assert_eq!(read_answer(&mut r, false).unwrap().status, 200, "still open 1.5 s after an answer");
    let t = Instant::now();
    assert!(closed_within(&mut r, Duration::from_secs(6)));
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(2800) && took < Duration::from_millis(4500), "{took:?}");
    assert_up(&s);
}

#[test]
fn a_parked_long_poll_is_not_idle() {
    let w = World::new("keepalive_timeout = \"1s\"\n");
    let _phone = w.registered("1000000001", "jweb", "taro");
    let id = w.login_challenge("1000000001", "taro");
    let mut c = connect(&w.s);
    let mut r = BufReader::new(c.try_clone().unwrap());
    let poll = format!("GET /api/v1/challenges/{id}?wait=3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n", w.rp_key);
    let t = Instant::now();
    c.write_all(poll.as_bytes()).unwrap();
    let a = read_answer(&mut r, false).expect("the long-poll is answered on its keep-alive connection");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(t.elapsed() >= Duration::from_millis(2900), "{:?}", t.elapsed());
    // And the connection is still open for the next request.
    c.write_all(&get("/healthz")).unwrap();
    assert_eq!(read_answer(&mut r, false).unwrap().status, 200);
}

// ------------------------------------------------------------ connection cap

#[test]
fn past_max_connections_a_new_connection_gets_503_and_parked_polls_count() {
    let w = World::new("max_connections = 24\n");
    let _phone = w.registered("1000000001", "jweb", "taro");
    let id = w.login_challenge("1000000001", "taro");
    let mut held = Vec::new();
    // Sixteen parked RP polls with Connection: close (each holds its socket,
    // not a thread) ...
    for _ in 0..16 {
        let mut c = connect(&w.s);
        let poll = format!(
            "GET /api/v1/challenges/{id}?wait=20 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\r\n",
            w.rp_key
        );
        c.write_all(poll.as_bytes()).unwrap();
        held.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    // ... then idle connections until one is refused at accept: 503
    // overloaded, sent without waiting for a request.
    let refused = loop {
        assert!(held.len() < 40, "no 503 after {} open connections (cap 24)", held.len());
        let c = connect(&w.s);
        c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut r = BufReader::new(c.try_clone().unwrap());
        match read_answer(&mut r, false) {
            Some(a) => break (a, r),
            None => held.push(c),
        }
    };
    let (a, mut r) = refused;
    assert_eq!((a.status, a.code().as_str()), (503, "overloaded"), "{}", a.body);
    assert_eq!(a.header("Connection"), Some("close"));
    assert!(closed_within(&mut r, Duration::from_secs(3)));
    // The parked polls counted: fewer than 24 - 16 idle ones were needed
    // (the harness's own pooled connections may hold a few more).
    assert!(held.len() <= 24, "{} connections were open before the 503", held.len());
    // Closing some makes room again, and the gauge counts what is open.
    held.truncate(20);
    let open = eventually("the gauge after closing connections", 5, || {
        let (a, _) = exchange(&w.s, &get("/metrics"));
        a.and_then(|a| a.body.lines().find_map(|l| l.strip_prefix("onepush_http_open_connections ")).and_then(|v| v.parse::<usize>().ok()))
    });
    assert!((20..=24).contains(&open), "open connections: {open}");
    held.truncate(5);
    let got = eventually("a free slot after closing connections", 5, || {
        let (a, _) = exchange(&w.s, &get("/healthz"));
        a.filter(|a| a.status == 200)
    });
    assert_eq!(got.status, 200);
}

// ------------------------------------------------------- framing and methods

#[test]
fn ambiguous_framing_is_400_and_closes() {
    let s = Server::start("");
    let login = "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
    for (what, headers) in [
        ("two equal Content-Length", "Content-Length: 2\r\nContent-Length: 2\r\n"),
        ("two different Content-Length", "Content-Length: 2\r\nContent-Length: 5\r\n"),
        ("a signed Content-Length", "Content-Length: +2\r\n"),
        ("a hex Content-Length", "Content-Length: 0x2\r\n"),
        ("an empty Content-Length", "Content-Length: \r\n"),
        ("xchunked", "Transfer-Encoding: xchunked\r\n"),
        ("gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n"),
        ("TE and CL", "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n"),
    ] {
        let (a, mut r) = exchange(&s, format!("{login}{headers}\r\n{{}}").as_bytes());
        let a = a.unwrap_or_else(|| panic!("no answer for {what}"));
        assert_eq!((a.status, a.code().as_str()), (400, "bad_request"), "{what}: {}", a.body);
        assert_eq!(a.header("Connection"), Some("close"), "{what}");
        assert!(closed_within(&mut r, Duration::from_secs(3)), "{what}");
    }
    // A well-formed chunked body is read like any other.
    let (a, _) = exchange(&s, format!("{login}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n").as_bytes());
    let a = a.unwrap();
    assert_eq!(a.status, 401, "read and refused for its missing key: {}", a.body);
    // A chunked body over the route's limit: 413, then close.
    let chunk = "a".repeat(40_000);
    let (a, _) =
        exchange(&s, format!("{login}Transfer-Encoding: chunked\r\n\r\n9c40\r\n{chunk}\r\n9c40\r\n{chunk}\r\n0\r\n\r\n").as_bytes());
    assert_eq!(a.unwrap().status, 413);
    // Garbage in a chunk size: 400.
    let (a, _) = exchange(&s, format!("{login}Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").as_bytes());
    assert_eq!(a.unwrap().status, 400);
    assert_up(&s);
}

#[test]
fn head_answers_every_get_route_and_other_methods_get_405_with_allow() {
    let s = Server::start("");
    for path in ["/healthz", "/api/v1/status", "/", "/app", "/static/app.js", "/api/openapi.json", "/api/v1/notices"] {
        let (get, _) = exchange(&s, &get(path));
        let get = get.unwrap();
        let (head, mut r) = exchange(&s, format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let head = head.unwrap_or_else(|| panic!("HEAD {path}"));
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert_eq!(head.header("Content-Length"), get.header("Content-Length"), "HEAD {path}");
        assert_eq!(head.header("Content-Type"), get.header("Content-Type"), "HEAD {path}");
        // No body follows: the next bytes on the connection are the next answer.
        r.get_mut().write_all(&get_req("/healthz")).unwrap();
        assert_eq!(read_answer(&mut r, false).unwrap().status, 200, "after HEAD {path}");
    }
    for (req, allow) in [
        ("OPTIONS /api/v1/login", "POST"),
        ("TRACE /healthz", "GET, HEAD"),
        ("PUT /healthz", "GET, HEAD"),
        ("DELETE /app", "GET, HEAD"),
        ("POST /static/app.js", "GET, HEAD"),
        ("PATCH /api/v1/challenges/abc", "GET, HEAD, DELETE"),
        ("GET /api/v1/admin/import", "POST"),
        ("POST /api/v1/admin/system", "GET, HEAD, PUT"),
    ] {
        let (a, _) = exchange(&s, format!("{req} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes());
        let a = a.unwrap_or_else(|| panic!("{req}"));
        assert_eq!((a.status, a.code().as_str()), (405, "method_not_allowed"), "{req}: {}", a.body);
        assert_eq!(a.header("Allow"), Some(allow), "{req}");
    }
    let (a, _) = exchange(&s, b"OPTIONS /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(a.unwrap().status, 404);
    assert_up(&s);
}

fn get_req(path: &str) -> Vec<u8> {
    get(path)
}

#[test]
fn malformed_requests_are_400_and_the_server_stays_up() {
    let s = Server::start(FAST);
    for req in [
        &b"\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: \xff\xfe\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        let mut c = connect(&s);
        c.write_all(req).unwrap();
        let mut r = BufReader::new(c);
        // A line that never ends runs into the header timeout instead.
        if let Some(a) = read_answer(&mut r, false) {
            assert!(a.status == 400 || a.status == 408, "{req:?}: {} {}", a.status, a.body);
        }
        assert!(closed_within(&mut r, Duration::from_secs(4)), "{req:?}");
    }
    assert_up(&s);
}

#[test]
fn http_2_request_lines_get_505_and_free_their_connection() {
    let s = Server::start("");
    for req in [&b"GET / HTTP/2.0\r\n\r\n"[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"GET / HTTP/3.0\r\nHost: x\r\n\r\n"] {
        let (a, mut r) = exchange(&s, req);
        let a = a.unwrap_or_else(|| panic!("no answer to {req:?}"));
        assert_eq!(a.status, 505, "{req:?}: {}", a.body);
        assert_eq!(a.header("Connection"), Some("close"));
        assert!(closed_within(&mut r, Duration::from_secs(3)), "{req:?}");
    }
    // Each connection was counted out again (they used to deadlock, holding a slot for ever).
    eventually("connections counted out", 5, || (metric(&s, "onepush_http_open_connections ") <= 1.0).then_some(()));
    assert_up(&s);
}

#[test]
fn clients_that_do_not_read_hold_no_worker_and_are_cut_off() {
    let w = World::new("send_timeout = \"2s\"\n");
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2) * 4;
    // Each asks for a large file many times over, pipelined, with a tiny
    // receive buffer, and never reads.
    let mut sleepers = Vec::new();
    for _ in 0..workers * 2 {
        let mut c = connect_small_window(&w.s);
        // 64 copies of 64 KiB: more than the kernel's buffers hold.
        let many: Vec<u8> = (0..64).flat_map(|_| get("/api/openapi.json")).collect();
        c.write_all(&many).unwrap();
        sleepers.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    // Workers, the writer thread and the waiters still answer everyone else.
    for _ in 0..5 {
        assert_up(&w.s);
    }
    let t = Instant::now();
    let _phone = w.registered("1000000001", "jweb", "taro");
    let id = w.login_challenge("1000000001", "taro");
    assert_eq!(w.challenge(&id, 0).status, 200);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // After send_timeout the clients that do not read are disconnected: their
    // connections are counted out (the harness's own pool keeps a few).
    eventually("slow readers cut off", 15, || (metric(&w.s, "onepush_http_open_connections ") <= 4.0).then_some(()));
    // (The clients' sockets are dropped unread: reading out what the
    // kernel still holds would wait on TCP's zero-window probes.)
    drop(sleepers);
}

#[test]
fn chunk_size_lines_and_header_lines_are_strict() {
    let s = Server::start("");
    let before = rss_mb(&s);
    // An endless chunk-size line: cut off at 4 KiB, not buffered.
    let mut c = connect(&s);
    c.write_all(b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let ones = vec![b'1'; 1 << 20];
    let mut sent = 0;
    for _ in 0..64 {
        match c.write(&ones) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 32 << 20, "the server kept reading a chunk-size line: {sent} bytes");
    assert!(rss_mb(&s) < before + 20);
    for (what, req) in [
        ("obs-fold", "GET /healthz HTTP/1.1\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n"),
        ("a space in a name", "GET /healthz HTTP/1.1\r\nContent Length: 5\r\n\r\n"),
        ("a NUL in a value", "GET /healthz HTTP/1.1\r\nX-A: a\0b\r\n\r\n"),
        ("a bare CR in a value", "GET /healthz HTTP/1.1\r\nX-A: a\rb\r\n\r\n"),
        ("a NUL after a name", "POST /api/v1/login HTTP/1.1\r\nContent-Length\0: 5\r\n\r\n{}{}{"),
        ("chunked on HTTP/1.0", "POST /api/v1/login HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        ("four words in the request line", "GET /healthz HTTP/1.1 x\r\n\r\n"),
    ] {
        let (a, mut r) = exchange(&s, req.as_bytes());
        let a = a.unwrap_or_else(|| panic!("no answer for {what}"));
        assert_eq!((a.status, a.code().as_str()), (400, "bad_request"), "{what}: {}", a.body);
        assert!(closed_within(&mut r, Duration::from_secs(3)), "{what}");
    }
    // An Expect other than 100-continue: 417, then close.
    let (a, _) = exchange(&s, b"POST /api/v1/login HTTP/1.1\r\nExpect: something\r\nContent-Length: 2\r\n\r\n{}");
    assert_eq!(a.unwrap().status, 417);
    // 100-continue: the server asks for the body, then answers.
    let mut c = connect(&s);
    c.write_all(
        b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    )
    .unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line}");
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim_end().is_empty() {
            break;
        }
    }
    c.write_all(b"{}").unwrap();
    assert_eq!(read_answer(&mut r, false).unwrap().status, 401);
    assert_up(&s);
}

#[test]
fn pipelined_requests_are_answered_in_order_one_at_a_time() {
    let s = Server::start("");
    let mut c = connect(&s);
    let mut reqs = Vec::new();
    for path in ["/healthz", "/api/v1/status", "/nowhere", "/healthz"] {
        reqs.extend(get(path));
    }
    c.write_all(&reqs).unwrap();
    let mut r = BufReader::new(c);
    let statuses: Vec<u16> = (0..4).map(|_| read_answer(&mut r, false).unwrap().status).collect();
    assert_eq!(statuses, [200, 200, 404, 200]);
    let a = read_answer(&mut r, false);
    assert!(a.is_none() || a.is_some_and(|a| a.status == 200));
}

#[test]
fn a_client_that_trickles_through_an_answer_is_cut_off_at_send_timeout() {
    let s = Server::start("send_timeout = \"2s\"\n");
    let base = metric(&s, "onepush_http_open_connections ");
    let mut c = connect_small_window(&s);
    // Enough answers to fill the kernel's buffers (on loopback a socket
    // buffers over a megabyte), so that one answer has to wait.
    let many: Vec<u8> = (0..64).flat_map(|_| get("/api/openapi.json")).collect();
    c.write_all(&many).unwrap();
    // Read a little every 200 ms: the server's sends make progress, but the
    // answer that waits is not out in time.
    let t = Instant::now();
    let mut buf = [0u8; 512];
    let mut counted_out = None;
    c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    while t.elapsed() < Duration::from_secs(8) {
        // The server cuts the connection: the client sees it reset (what it
        // had pipelined is never read).
        match c.read(&mut buf) {
            Ok(0) => {
                counted_out = Some(t.elapsed());
                break;
            }
            Err(e) if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                counted_out = Some(t.elapsed());
                break;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = counted_out.expect("the trickling client was never cut off");
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(5), "{took:?}");
    eventually("the connection counted out", 5, || (metric(&s, "onepush_http_open_connections ") == base).then_some(()));
    assert_up(&s);
}

#[test]
fn request_targets_and_header_bytes_are_checked_and_one_leading_empty_line_is_ignored() {
    let s = Server::start("");
    for (what, req) in [
        ("a tab in the target (log injection)", &b"GET /x\tforged HTTP/1.1\r\n\r\n"[..]),
        ("a bare LF in the target", b"GET /x\nforged HTTP/1.1\r\n\r\n"),
        ("a byte past ASCII in a header", b"GET /healthz HTTP/1.1\r\nUser-Agent: caf\xc3\xa9\r\n\r\n"),
        ("a bare LF in a chunk extension", b"POST /api/v1/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n{}\r\n0\r\n\r\n"),
        ("a chunk-size line without digits", b"POST /api/v1/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n{}\r\n0\r\n\r\n"),
    ] {
        let (a, mut r) = exchange(&s, req);
        let a = a.unwrap_or_else(|| panic!("no answer for {what}"));
        assert_eq!((a.status, a.code().as_str()), (400, "bad_request"), "{what}: {}", a.body);
        assert!(closed_within(&mut r, Duration::from_secs(3)), "{what}");
    }
    assert!(!s.log().contains("forged"), "a target with control characters reached the log");
    let (a, _) = exchange(&s, b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(a.unwrap().status, 200);
    assert_up(&s);
}
