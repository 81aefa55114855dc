//! Test harness: starts the real `onepush` binary on port 0 with a temp data
//! directory, and speaks HTTP to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use onepush::client::{now_secs, registration_otps, DeviceKey};
use serde_json::{json, Value};

pub const PASSWORD: &str = "login-pass-1";
pub const TX_PASSWORD: &str = "tx-pass-123";

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub pid: u32,
    /// The one-time operator code `serve` printed, if it did.
    pub bootstrap_code: Option<String>,
    /// Arguments after `serve --config F` (e.g. `--demo`).
    pub serve_args: Vec<String>,
}

pub struct Resp {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into()
}

/// One HTTP request. `body` is (content type, bytes).
pub fn request(method: &str, url: &str, headers: &[(&str, String)], body: Option<(&str, Vec<u8>)>) -> Resp {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    let resp = match body {
        Some((ct, bytes)) => agent().run(b.header("Content-Type", ct).body(bytes).unwrap()),
        None => agent().run(b.body(()).unwrap()),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let text = resp.into_body().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, json, text, headers }
}

pub fn json_body(v: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", v.to_string().into_bytes()))
}

/// With `ONEPUSH_TEST_POSTGRES=postgres://…@host:port` (a cluster the test
/// script started, `.ci/pg-cluster`), every server gets a new database in it
/// (`store = …`): the whole suite runs on the PostgreSQL backend. Empty
/// otherwise: the embedded store.
pub fn test_store(n: u32) -> String {
    match postgres_base() {
        Some(base) => format!("store = \"{}\"\n", new_database(&base, &format!("t{}_{n}_{}", std::process::id(), now_secs()))),
        None => String::new(),
    }
}

/// For tests of the embedded store's file itself (backups, tampering with
/// the file): the embedded store whatever `ONEPUSH_TEST_POSTGRES` says.
pub const EMBEDDED: &str = "store = \"\"\n";

pub fn postgres_base() -> Option<String> {
    std::env::var("ONEPUSH_TEST_POSTGRES").ok().filter(|v| !v.is_empty())
}

/// Creates database `name` in the cluster at `base`; its URL.
pub fn new_database(base: &str, name: &str) -> String {
    let mut c = postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls).expect("the test cluster answers");
    c.batch_execute(&format!("CREATE DATABASE {name}")).expect("CREATE DATABASE");
    format!("{base}/{name}")
}

impl Server {
    /// Starts onepush with fast test settings plus `extra` TOML lines.
    pub fn start(extra: &str) -> Server {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("onepush-test-{}-{n}-{}", std::process::id(), now_secs()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("onepush.toml");
        let store = if extra.contains("store =") { String::new() } else { test_store(n) };
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{store}{}{extra}\n",
                dir.join("data").display(),
                // Fast Argon2 for tests, unless the test sets its own.
                if extra.contains("argon2_") { "" } else { "argon2_memory_kib = 256\nargon2_iterations = 1\n" }
            ),
        )
        .unwrap();
        let mut s = Server { child: None, base: String::new(), dir, config, pid: 0, bootstrap_code: None, serve_args: vec![] };
        s.spawn();
        s
    }

    /// `serve --demo` with fast test settings plus `extra`.
    pub fn start_demo(extra: &str) -> Server {
        let mut s = Server::start(extra);
        s.kill();
        s.serve_args = vec!["--demo".into()];
        s.spawn();
        s
    }

    /// A server object for an existing config and directory, not started.
    pub fn adopt(dir: PathBuf, config: PathBuf) -> Server {
        Server { child: None, base: String::new(), dir, config, pid: 0, bootstrap_code: None, serve_args: vec![] }
    }

    pub fn respawn(&mut self) {
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_onepush"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(&self.serve_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("server printed nothing").unwrap();
        let addr = first.strip_prefix("onepush listening on ").unwrap_or_else(|| panic!("unexpected: {first}"));
        self.base = addr.to_string();
        // The banner ends with an empty line; it may hold the one-time code.
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            if line.is_empty() {
                break;
            }
            if line.contains("One-time code for the first operator") {
                // Not a terminal: the code is in a 0600 file, not on stdout.
                self.bootstrap_code = match line.split(" written to ").nth(1) {
                    Some(path) => std::fs::read_to_string(path.trim()).ok().map(|c| c.trim().to_string()),
                    None => line.rsplit(": ").next().map(|c| c.trim().to_string()),
                };
            }
        }
        std::thread::spawn(move || for _ in lines {});
        self.pid = child.id();
        self.child = Some(child);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// kill -9, then start again on the same data directory (a new port).
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// kill -9, leaving the data directory for inspection.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Waits for the server to exit by itself; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let mut c = self.child.take()?;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.join("data").join("onepush.redb")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Runs a CLI command against this server's config; returns (code, stdout, stderr).
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        cli(&self.config, args, stdin)
    }

    pub fn get(&self, path: &str, headers: &[(&str, String)]) -> Resp {
        request("GET", &self.url(path), headers, None)
    }

    pub fn post(&self, path: &str, headers: &[(&str, String)], body: &Value) -> Resp {
        request("POST", &self.url(path), headers, json_body(body))
    }

    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("server log kept at {}", self.dir.join("server.log").display());
        }
    }
}

pub fn cli(config: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_onepush"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut si = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            si.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A server with an RP key, an operator session, and helpers to set up users.
pub struct World {
    pub s: Server,
    pub rp_key: String,
    pub cookie: String,
}

impl World {
    pub fn new(extra: &str) -> World {
        let s = Server::start(extra);
        let (code, out, err) = s.cli(&["rp-key", "add", "bank"], None);
        assert_eq!(code, 0, "rp-key add: {err}");
        let rp_key = out.trim().to_string();
        let (code, _, err) = s.cli(&["operator", "add", "alice", "--password-stdin"], Some("operator-pass-1\n"));
        assert_eq!(code, 0, "operator add: {err}");
        let r = s.post("/api/v1/admin/session", &[], &json!({"username": "alice", "password": "operator-pass-1"}));
        assert_eq!(r.status, 200, "{}", r.text);
        let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
        World { s, rp_key, cookie }
    }

    pub fn rp(&self) -> Vec<(&'static str, String)> {
        vec![("Authorization", format!("Bearer {}", self.rp_key))]
    }

    pub fn admin(&self) -> Vec<(&'static str, String)> {
        vec![("Cookie", self.cookie.clone())]
    }

    pub fn contract(&self, no: &str, edition: &str) {
        let r =
            self.s.post("/api/v1/admin/contracts", &self.admin(), &json!({"contract_no": no, "name": "Mito Trading", "edition": edition}));
        assert_eq!(r.status, 201, "{}", r.text);
    }

    pub fn user(&self, no: &str, uid: &str, role: &str) {
        let r = self.s.post(
            &format!("/api/v1/admin/contracts/{no}/users"),
            &self.admin(),
            &json!({"user_id": uid, "name": "Taro", "role": role, "password": PASSWORD, "transaction_password": TX_PASSWORD}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }

    pub fn login(&self, no: &str, uid: &str, password: &str) -> Resp {
        self.s.post(
            "/api/v1/login",
            &self.rp(),
            &json!({"contract_no": no, "user_id": uid, "password": password, "client": {"ip": "203.0.113.7", "user_agent": "test"}}),
        )
    }

    /// A login that must produce a challenge; returns its id.
    pub fn login_challenge(&self, no: &str, uid: &str) -> String {
        let r = self.login(no, uid, PASSWORD);
        assert_eq!(r.json["result"], "challenge", "{}", r.text);
        r.json["challenge_id"].as_str().unwrap().to_string()
    }

    pub fn challenge(&self, id: &str, wait: u64) -> Resp {
        self.s.get(&format!("/api/v1/challenges/{id}?wait={wait}"), &self.rp())
    }

    /// Contract `no` (created if needed) + user `uid` with a registered phone.
    pub fn registered(&self, no: &str, edition: &str, uid: &str) -> Phone {
        let r = self.s.get(&format!("/api/v1/users/{no}/{uid}"), &self.rp());
        if r.status == 404 {
            let c = self.s.post("/api/v1/admin/contracts", &self.admin(), &json!({"contract_no": no, "name": "Co", "edition": edition}));
            assert!(c.status == 201 || c.status == 409, "{}", c.text);
            self.user(no, uid, "user");
        }
        let phone = Phone::provision(&self.s);
        let r = phone.register(&self.s, no, uid, PASSWORD);
        assert_eq!(r.status, 201, "{}", r.text);
        phone
    }
}

#[derive(Clone)]
pub struct Phone {
    pub key: DeviceKey,
    pub token_id: String,
    pub secret: String,
    base: String,
}

impl Phone {
    pub fn provision(s: &Server) -> Phone {
        let key = DeviceKey::generate();
        let r = s.post("/api/v1/device/provision", &[], &key.provision_body(Some("test phone"), None));
        assert_eq!(r.status, 201, "{}", r.text);
        Phone {
            key,
            token_id: r.json["token_id"].as_str().unwrap().to_string(),
            secret: r.json["otp_secret"].as_str().unwrap().to_string(),
            base: s.base.clone(),
        }
    }

    /// Points the phone at another server address.
    pub fn rebase(&mut self, base: &str) {
        self.base = base.to_string();
    }

    pub fn otps(&self) -> (String, String) {
        registration_otps(&self.secret, now_secs() as u64).unwrap()
    }

    pub fn register(&self, s: &Server, no: &str, uid: &str, password: &str) -> Resp {
        let (otp1, otp2) = self.otps();
        s.post(
            "/api/v1/registrations",
            &[],
            &json!({"contract_no": no, "user_id": uid, "password": password, "token_id": self.token_id, "otp1": otp1, "otp2": otp2}),
        )
    }

    pub fn signed(&self, method: &str, path_and_query: &str, body: Option<&Value>) -> Resp {
        let path = path_and_query.split('?').next().unwrap();
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut headers: Vec<(&str, String)> = self.key.headers(&self.token_id, method, path, &bytes, now_secs()).into_iter().collect();
        headers.push(("Connection", "close".into()));
        let url = format!("{}{path_and_query}", self.base);
        request(method, &url, &headers, body.map(|_| ("application/json", bytes)))
    }

    /// Long-polls for challenges.
    pub fn poll(&self, wait: u64) -> Vec<Value> {
        let r = self.signed("GET", &format!("/api/v1/device/challenges?wait={wait}"), None);
        assert_eq!(r.status, 200, "{}", r.text);
        r.json["challenges"].as_array().unwrap().clone()
    }

    /// Polls until the challenge `id` arrives; returns it.
    pub fn fetch(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(c) = self.poll(5).into_iter().find(|c| c["challenge_id"] == id) {
                return c;
            }
        }
        panic!("challenge {id} never reached the phone");
    }

    pub fn answer_with(&self, challenge: &Value, decision: &str, number: Option<&str>, fraud: bool) -> Resp {
        let id = challenge["challenge_id"].as_str().unwrap();
        let display: Vec<(String, String)> = serde_json::from_value(challenge["display"].clone()).unwrap();
        let body = self.key.answer_body(id, &self.token_id, decision, number, &display, fraud);
        self.signed("POST", &format!("/api/v1/device/challenges/{id}/response"), Some(&body))
    }

    pub fn answer(&self, challenge: &Value, decision: &str) -> Resp {
        self.answer_with(challenge, decision, None, false)
    }
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test CA and a certificate it signed for 127.0.0.1 (HTTPS push
/// receivers, a TLS database). Each has a name of its own: OpenSSL takes a
/// certificate whose issuer is its subject for self-signed.
pub struct TestCa {
    pub ca_pem: String,
    pub leaf: rcgen::Certificate,
    pub leaf_key: rcgen::KeyPair,
}

pub fn test_ca() -> TestCa {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "onepush test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    TestCa { ca_pem: ca.pem(), leaf, leaf_key }
}
