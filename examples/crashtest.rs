//! Crash test: login/approve load at concurrency 16 plus registrations and
//! a slow password guesser (its rate-limit count must survive each kill),
//! `kill -9` of the server at a random moment, restart, then checks that
//! every decision a client was told of is there with the same status, every
//! registration answered 201 is there, and `audit verify` passes. Repeats
//! (default 20 rounds) on the same data directory.
//!
//! With `--nodes 2`: two nodes on one PostgreSQL database (the cluster in
//! `ONEPUSH_TEST_POSTGRES`, else a private one started with `.ci/pg-cluster`
//! and stopped at the end). Each request goes to either node at random (the
//! RP's login on one, the phone on the other as often as not); each round
//! kills one node (A, B, A, …), keeps the load on the other for a moment (it
//! must go on serving), restarts the killed one, then checks as above
//! through either node, and `audit verify` on both.
//!
//!   cargo build --release && cargo run --release --example crashtest -- --rounds 20 [--nodes 2]
//!
//! Loopback only; every loop is bounded in count and time.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{agent, call, device_call, Resp};
use onepush::client::{now_secs, registration_otps, DeviceKey};
use rand::RngExt;
use serde_json::json;

const PW: &str = "crash-pass-1";
const C: &str = "1";
const NAMES: [&str; 2] = ["A", "B"];
/// How long the load stays on the survivor after a kill (`--nodes 2`).
const OUTAGE: Duration = Duration::from_secs(1);

/// A `onepush serve` and its config, to start it again after a kill; killed
/// when dropped. Its warnings go to `server.log` beside the config.
struct Node {
    config: PathBuf,
    child: Child,
    base: String,
}

impl Node {
    fn start(bin: &Path, config: &Path) -> Node {
        let log = config.with_file_name("server.log");
        let mut child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .expect("start onepush (cargo build --release first)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(|l| l.ok()).unwrap_or_else(|| panic!("onepush did not start: see {}", log.display()));
        std::thread::spawn(move || for _ in lines {});
        Node { config: config.to_path_buf(), child, base: first.trim_start_matches("onepush listening on ").to_string() }
    }

    /// `kill -9`, and reaped.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self, bin: &Path) {
        self.kill();
        *self = Node::start(bin, &self.config);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node's config in `dir`: its own data directory (and so its own control
/// socket); `store` is empty for the embedded store.
fn node_config(dir: &Path, store: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("onepush.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{store}argon2_memory_kib = 1024\nargon2_iterations = 1\n\
         max_challenges_per_window = 1000000\ntrusted_proxies = [\"127.0.0.1\"]\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    config
}

/// The PostgreSQL cluster of `--nodes 2`: `ONEPUSH_TEST_POSTGRES`, else a
/// private one in `dir`, stopped when dropped.
struct Cluster {
    base: String,
    dir: Option<PathBuf>,
}

impl Cluster {
    fn get(dir: &Path) -> Cluster {
        if let Some(base) = std::env::var("ONEPUSH_TEST_POSTGRES").ok().filter(|v| !v.is_empty()) {
            return Cluster { base, dir: None };
        }
        let out = Command::new("bash").arg(".ci/pg-cluster").arg("start").arg(dir).output().expect("bash");
        assert!(
            out.status.success(),
            "--nodes 2 needs PostgreSQL: set ONEPUSH_TEST_POSTGRES or install Debian's postgresql ({})",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster { base: String::from_utf8_lossy(&out.stdout).trim().to_string(), dir: Some(dir.to_path_buf()) }
    }

    /// A new database; its URL.
    fn database(&self, name: &str) -> String {
        let mut c = postgres::Client::connect(&format!("{}/postgres", self.base), postgres::NoTls).expect("the cluster answers");
        c.batch_execute(&format!("CREATE DATABASE {name}")).expect("CREATE DATABASE");
        format!("{}/{name}", self.base)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = Command::new("bash").arg(".ci/pg-cluster").arg("stop").arg(dir).status();
        }
    }
}

fn cli(bin: &Path, config: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut c = Command::new(bin)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Node A, with the operator and the RP key made before it first starts,
/// and with `--nodes 2` node B on the same store with A's key files; the RP
/// key.
fn start_nodes(bin: &Path, dir: &Path, nodes: usize, store: &str) -> (Vec<Node>, String) {
    let a = node_config(&dir.join("a"), store);
    assert!(cli(bin, &a, &["operator", "add", "ops", "--password-stdin"], "crash-operator-1").0);
    // The key is stdout's one line; stderr (after it) says which config was used.
    let rp_key = cli(bin, &a, &["rp-key", "add", "crash"], "").1.lines().next().unwrap_or("").trim().to_string();
    let mut started = vec![Node::start(bin, &a)];
    for name in &NAMES[1..nodes] {
        let other = dir.join(name.to_lowercase());
        std::fs::create_dir_all(other.join("data")).unwrap();
        for key in ["secret.key", "audit.key", "vapid.key"] {
            std::fs::copy(dir.join("a/data").join(key), other.join("data").join(key)).unwrap();
        }
        started.push(Node::start(bin, &node_config(&other, store)));
    }
    (started, rp_key)
}

#[derive(Clone)]
struct Phone {
    key: DeviceKey,
    token: String,
    user: String,
}

fn session(base: &str) -> Result<Vec<(&'static str, String)>, String> {
    // Sign-ins count against their address for 10 minutes across restarts:
    // each round's operator comes from its own address (a trusted proxy).
    static SIGN_INS: AtomicUsize = AtomicUsize::new(0);
    let n = SIGN_INS.fetch_add(1, Ordering::SeqCst);
    let mut r = ureq::post(format!("{base}/api/v1/admin/session"))
        .header("X-Forwarded-For", format!("10.98.{}.{}", n / 250, n % 250 + 1))
        .send_json(json!({"username": "ops", "password": "crash-operator-1"}))
        .map_err(|e| format!("the operator cannot sign in ({e})"))?;
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
    let _ = r.body_mut().read_to_string();
    Ok(vec![("Cookie", cookie)])
}

/// The nodes as the clients of one round see them: each request goes to a
/// node that is up, at random. Keeps what the clients were told.
struct Round {
    bases: Vec<String>,
    /// The node killed this round (no request goes to it from then on).
    down: Mutex<Option<usize>>,
    /// Set once the killed node is gone: the other one serves alone.
    outage: AtomicBool,
    stop: AtomicBool,
    decisions: Mutex<Vec<(String, String)>>,
    registrations: Mutex<Vec<Phone>>,
    guesses: AtomicUsize,
    /// Requests sent during the outage and answered 2xx.
    served: AtomicUsize,
    /// A node that was up answered 5xx, or not at all.
    failures: Mutex<Vec<String>>,
}

impl Round {
    fn new(nodes: &[Node]) -> Round {
        Round {
            bases: nodes.iter().map(|n| n.base.clone()).collect(),
            down: Mutex::new(None),
            outage: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            decisions: Mutex::default(),
            registrations: Mutex::default(),
            guesses: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            failures: Mutex::default(),
        }
    }

    fn up(&self) -> Vec<usize> {
        let down = *self.down.lock().unwrap();
        (0..self.bases.len()).filter(|&i| Some(i) != down).collect()
    }

    /// Until stopped, while a node is up.
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && !self.up().is_empty()
    }

    /// `request` to a node that is up; None when it gave no answer.
    fn send(&self, request: impl FnOnce(&str) -> Result<Resp, String>) -> Option<Resp> {
        let up = self.up();
        let node = *up.get(rand::random_range(0..up.len().max(1)))?;
        let outage = self.outage.load(Ordering::SeqCst);
        let answer = request(&self.bases[node]);
        match &answer {
            Ok(r) if r.status >= 500 => self.failures.lock().unwrap().push(format!("node {}: {} {}", NAMES[node], r.status, r.json)),
            Ok(r) if outage && r.status / 100 == 2 => {
                self.served.fetch_add(1, Ordering::Relaxed);
            }
            // Killed: the request was sent before it was taken off the list.
            Err(_) if !self.up().contains(&node) => {}
            Err(e) => self.failures.lock().unwrap().push(format!("node {} (up): {e}", NAMES[node])),
            Ok(_) => {}
        }
        answer.ok()
    }

    /// `kill -9` of `nodes[victim]` at a random moment; with another node,
    /// the load stays on it for a moment.
    fn kill(&self, nodes: &mut [Node], victim: usize) {
        std::thread::sleep(Duration::from_millis(rand::rng().random_range(300..1500)));
        *self.down.lock().unwrap() = Some(victim);
        nodes[victim].kill();
        if nodes.len() > 1 {
            self.outage.store(true, Ordering::SeqCst);
            std::thread::sleep(OUTAGE);
        }
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Creates a user and registers a new phone for it; Some(phone) once answered 201.
fn enroll(round: &Round, admin: &[(&str, String)], uid: &str) -> Option<Phone> {
    let a = agent();
    let body = json!({"user_id": uid, "name": "n", "role": "user", "password": PW});
    let r = round.send(|base| call(&a, "POST", &format!("{base}/api/v1/admin/contracts/{C}/users"), admin, Some(&body)))?;
    if r.status != 201 {
        return None;
    }
    let key = DeviceKey::generate();
    let xff = vec![("X-Forwarded-For", format!("10.9.{}.{}", rand::random_range(0..255u8), rand::random_range(0..255u8)))];
    let r = round.send(|base| call(&a, "POST", &format!("{base}/api/v1/device/provision"), &xff, Some(&key.provision_body(None, None))))?;
    let token = r.json["token_id"].as_str()?.to_string();
    let (o1, o2) = registration_otps(r.json["otp_secret"].as_str()?, now_secs() as u64)?;
    let body = json!({"contract_no": C, "user_id": uid, "password": PW, "token_id": token, "otp1": o1, "otp2": o2});
    let r = round.send(|base| call(&a, "POST", &format!("{base}/api/v1/registrations"), &xff, Some(&body)))?;
    (r.status == 201).then(|| Phone { key, token, user: uid.to_string() })
}

/// Phone `i`'s user logs in and the phone answers, again and again.
fn drive(round: &Round, i: usize, p: &Phone, rp_key: &str) {
    let a = agent();
    let auth = vec![("Authorization", format!("Bearer {rp_key}"))];
    let login = json!({"contract_no": C, "user_id": p.user, "password": PW});
    let mut n = 0u64;
    while round.running() && n < 10_000 {
        n += 1;
        let Some(r) = round.send(|base| call(&a, "POST", &format!("{base}/api/v1/login"), &auth, Some(&login))) else { continue };
        let Some(id) = r.json["challenge_id"].as_str().map(str::to_string) else { continue };
        let Some(list) = round.send(|base| device_call(&a, base, &p.key, &p.token, "GET", "/api/v1/device/challenges?wait=5", None)) else {
            continue;
        };
        let Some(ch) = list.json["challenges"].as_array().and_then(|l| l.iter().find(|c| c["challenge_id"] == id.as_str())).cloned() else {
            continue;
        };
        let display: Vec<(String, String)> = serde_json::from_value(ch["display"].clone()).unwrap_or_default();
        let decision = if (n + i as u64).is_multiple_of(3) { "reject" } else { "approve" };
        let body = p.key.answer_body(&id, &p.token, decision, None, &display, false);
        let path = format!("/api/v1/device/challenges/{id}/response");
        let Some(r) = round.send(|base| device_call(&a, base, &p.key, &p.token, "POST", &path, Some(&body))) else { continue };
        if r.status == 200 {
            // The phone has been told.
            round.decisions.lock().unwrap().push((id.clone(), r.json["status"].as_str().unwrap_or("").to_string()));
        }
    }
}

/// A password guesser from this round's own address, slowly, so that the
/// kill often comes in the middle of its 20 attempts.
fn guess(round: &Round, n: usize) {
    let a = agent();
    let xff = vec![("X-Forwarded-For", format!("10.99.{n}.1"))];
    let body = json!({"username": "mallory", "password": "guess-pass-1"});
    for _ in 0..25 {
        if !round.running() {
            break;
        }
        match round.send(|base| call(&a, "POST", &format!("{base}/api/v1/admin/session"), &xff, Some(&body))) {
            // Answered: the attempt was counted before the answer.
            Some(r) if r.status == 401 => {
                round.guesses.fetch_add(1, Ordering::SeqCst);
            }
            // No answer: the node was killed (the next goes to another).
            None => {}
            Some(_) => break,
        }
        std::thread::sleep(Duration::from_millis(40));
    }
}

/// Registers new users' phones, one after another.
fn register(round: &Round, admin: &[(&str, String)], n: usize) {
    let mut k = 0;
    while round.running() && k < 1000 {
        if let Some(p) = enroll(round, admin, &format!("r{n}u{k}")) {
            round.registrations.lock().unwrap().push(p);
        }
        k += 1;
    }
}

/// What the clients were told over all rounds, and the figures.
#[derive(Default)]
struct Told {
    passed: usize,
    decisions: Vec<(String, String)>,
    registrations: Vec<Phone>,
    guesses: usize,
    /// Decisions looked up again (after each round, all told so far).
    checked: usize,
    /// Requests the survivor served during the outages, and the fewest in one.
    served: usize,
    fewest_served: Option<usize>,
}

/// After round `n`: everything told so far is there, asked of the nodes in
/// turn; `audit verify` passes against every node; the guesser's answered
/// attempts still count.
fn check(bin: &Path, nodes: &[Node], rp_key: &str, told: &Told, n: usize, told_guesses: usize) -> Vec<String> {
    let base = |k: usize| nodes[(k + n) % nodes.len()].base.as_str();
    let a = agent();
    let auth = vec![("Authorization", format!("Bearer {rp_key}"))];
    let mut lost = Vec::new();
    for (k, (id, status)) in told.decisions.iter().enumerate() {
        let r = call(&a, "GET", &format!("{}/api/v1/challenges/{id}", base(k)), &auth, None).unwrap();
        if r.json["status"].as_str() != Some(status.as_str()) {
            lost.push(format!("challenge {id}: told {status}, found {}", r.json["status"]));
        }
    }
    for (k, p) in told.registrations.iter().enumerate() {
        let r = call(&a, "GET", &format!("{}/api/v1/users/{C}/{}", base(k), p.user), &auth, None).unwrap();
        if r.json["registration"] != "active" || r.json["token_id"] != p.token.as_str() {
            lost.push(format!("registration of {}: found {}", p.user, r.json));
        }
    }
    for (node, name) in nodes.iter().zip(NAMES) {
        let (ok, out) = cli(bin, &node.config, &["audit", "verify"], "");
        if !ok {
            lost.push(format!("audit verify (node {name}): {out}"));
        }
    }
    // At most 20 in all.
    let xff = vec![("X-Forwarded-For", format!("10.99.{n}.1"))];
    let mut more = 0;
    for k in 0..25 {
        let body = json!({"username": "mallory", "password": "guess-pass-1"});
        let r = call(&a, "POST", &format!("{}/api/v1/admin/session", base(k)), &xff, Some(&body)).unwrap();
        if r.status == 429 {
            break;
        }
        more += 1;
    }
    if told_guesses + more > 20 {
        lost.push(format!("rate limit: {told_guesses} sign-in attempts answered before the kill, {more} more allowed after it"));
    }
    lost
}

/// The rounds; Err(what was lost) at the first round that fails.
fn run(bin: &Path, rounds: usize, nodes: &mut [Node], rp_key: &str, told: &mut Told) -> Result<(), Vec<String>> {
    let admin = session(&nodes[0].base).map_err(|e| vec![e])?;
    let r = call(
        &agent(),
        "POST",
        &format!("{}/api/v1/admin/contracts", nodes[0].base),
        &admin,
        Some(&json!({"contract_no": C, "name": "Crash", "edition": "jweb"})),
    )
    .unwrap();
    assert_eq!(r.status / 100, 2, "create the contract: {}", r.json);
    let setup = Round::new(nodes);
    let phones: Vec<Phone> = (0..16).map(|i| enroll(&setup, &admin, &format!("d{i}")).expect("enrol a driver")).collect();

    for n in 0..rounds {
        let round = Round::new(nodes);
        let admin = session(&nodes[n % nodes.len()].base).map_err(|e| vec![e])?;
        let victim = n % nodes.len();
        std::thread::scope(|s| {
            for (i, p) in phones.iter().enumerate() {
                let round = &round;
                s.spawn(move || drive(round, i, p, rp_key));
            }
            s.spawn(|| guess(&round, n));
            s.spawn(|| register(&round, &admin, n));
            round.kill(nodes, victim);
        });
        nodes[victim].restart(bin);
        let (served, guesses) = (round.served.into_inner(), round.guesses.into_inner());
        told.decisions.extend(round.decisions.into_inner().unwrap());
        told.registrations.extend(round.registrations.into_inner().unwrap());
        // Everything told so far must be there.
        let mut lost = round.failures.into_inner().unwrap();
        lost.extend(check(bin, nodes, rp_key, told, n, guesses));
        told.checked += told.decisions.len();
        told.guesses += guesses;
        let outage = if nodes.len() > 1 {
            let survivor = NAMES[1 - victim];
            if served == 0 {
                lost.push(format!("node {survivor} served no request while node {} was down", NAMES[victim]));
            }
            told.served += served;
            told.fewest_served = Some(told.fewest_served.map_or(served, |f| f.min(served)));
            format!("node {} killed, node {survivor} served {served} requests meanwhile; ", NAMES[victim])
        } else {
            String::new()
        };
        println!(
            "round {:>2}: {outage}{} decisions and {} registrations told so far, all present: {}",
            n + 1,
            told.decisions.len(),
            told.registrations.len(),
            if lost.is_empty() { "yes" } else { "NO" }
        );
        if !lost.is_empty() {
            return Err(lost);
        }
        told.passed += 1;
    }
    Ok(())
}

fn main() {
    let mut rounds = 20usize;
    let mut nodes = 1usize;
    let mut bin = PathBuf::from("target/release/onepush");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().and_then(|v| v.parse::<usize>().ok()).expect("--rounds N").clamp(1, 100),
            "--nodes" => nodes = args.next().and_then(|v| v.parse::<usize>().ok()).filter(|n| (1..=2).contains(n)).expect("--nodes 1|2"),
            "--bin" => bin = PathBuf::from(args.next().expect("--bin PATH")),
            _ => panic!("flags: --rounds N --nodes 1|2 --bin PATH"),
        }
    }
    let dir = std::env::temp_dir().join(format!("onepush-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cluster = (nodes > 1).then(|| Cluster::get(&dir.join("pg")));
    let store = match &cluster {
        Some(c) => format!("store = \"{}\"\n", c.database(&format!("crash{}_{}", std::process::id(), now_secs()))),
        None => String::new(),
    };
    let (mut started, rp_key) = start_nodes(&bin, &dir, nodes, &store);
    let mut told = Told::default();
    let t = Instant::now();
    let result = run(&bin, rounds, &mut started, &rp_key, &mut told);
    let secs = t.elapsed().as_secs_f64();
    drop(started);
    drop(cluster);
    if let Err(lost) = result {
        for l in lost.iter().take(20) {
            eprintln!("  lost: {l}");
        }
        eprintln!("  (data and logs kept in {})", dir.display());
        println!("crash: {} passed, 1 failed", told.passed);
        std::process::exit(1);
    }
    if nodes > 1 {
        println!(
            "crash test: {rounds} rounds of kill -9 of one of 2 nodes on PostgreSQL in {secs:.0} s; {} decisions and {} registrations told to clients, none lost ({} decision checks through either node); audit verify passed on both nodes every time; the survivor served {} requests during the outages (at least {} a round); {} counted sign-in guesses all still counted after each kill",
            told.decisions.len(),
            told.registrations.len(),
            told.checked,
            told.served,
            told.fewest_served.unwrap_or(0),
            told.guesses
        );
    } else {
        println!(
            "crash test: {rounds} kill -9 rounds in {secs:.0} s; {} decisions and {} registrations told to clients, none lost; audit verify passed every time; {} counted sign-in guesses all still counted after each kill",
            told.decisions.len(),
            told.registrations.len(),
            told.guesses
        );
    }
    println!("crash: {rounds} passed, 0 failed");
    let _ = std::fs::remove_dir_all(&dir);
}
