//! Crash test: login/approve load at concurrency 16 plus registrations and
//! a slow password guesser (its rate-limit count must survive each kill),
//! `kill -9` of the server at a random moment, restart, then checks that
//! every decision a client was told of is there with the same status, every
//! registration answered 201 is there, and `audit verify` passes. Repeats
//! (default 20 rounds) on the same data directory.
//!
//!   cargo build --release && cargo run --release --example crashtest -- --rounds 20
//!
//! Loopback only; every loop is bounded in count and time.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{agent, call, device_call};
use onepush::client::{now_secs, registration_otps, DeviceKey};
use rand::RngExt;
use serde_json::json;

const PW: &str = "crash-pass-1";
const C: &str = "1";

fn start(bin: &Path, config: &Path) -> (Child, String) {
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start onepush (cargo build --release first)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    std::thread::spawn(move || for _ in lines {});
    (child, first.trim_start_matches("onepush listening on ").to_string())
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

#[derive(Clone)]
struct Phone {
    key: DeviceKey,
    token: String,
    user: String,
}

fn session(base: &str) -> Vec<(&'static str, String)> {
    // Sign-ins count against their address for 10 minutes across restarts:
    // each round's operator comes from its own address (a trusted proxy).
    static SIGN_INS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SIGN_INS.fetch_add(1, Ordering::SeqCst);
    let mut r = ureq::post(format!("{base}/api/v1/admin/session"))
        .header("X-Forwarded-For", format!("10.98.{}.{}", n / 250, n % 250 + 1))
        .send_json(json!({"username": "ops", "password": "crash-operator-1"}))
        .unwrap_or_else(|e| {
            println!("lost: the operator cannot sign in ({e})");
            println!("crash: 0 passed, 1 failed");
            std::process::exit(1)
        });
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
    let _ = r.body_mut().read_to_string();
    vec![("Cookie", cookie)]
}

/// Creates a user and registers a new phone for it; Some(phone) once answered 201.
fn enroll(base: &str, admin: &[(&str, String)], uid: &str) -> Option<Phone> {
    let a = agent();
    let r = call(
        &a,
        "POST",
        &format!("{base}/api/v1/admin/contracts/{C}/users"),
        admin,
        Some(&json!({"user_id": uid, "name": "n", "role": "user", "password": PW})),
    )
    .ok()?;
    if r.status != 201 {
        return None;
    }
    let key = DeviceKey::generate();
    let xff = vec![("X-Forwarded-For", format!("10.9.{}.{}", rand::random_range(0..255u8), rand::random_range(0..255u8)))];
    let r = call(&a, "POST", &format!("{base}/api/v1/device/provision"), &xff, Some(&key.provision_body(None, None))).ok()?;
    let token = r.json["token_id"].as_str()?.to_string();
    let (o1, o2) = registration_otps(r.json["otp_secret"].as_str()?, now_secs() as u64)?;
    let r = call(
        &a,
        "POST",
        &format!("{base}/api/v1/registrations"),
        &xff,
        Some(&json!({"contract_no": C, "user_id": uid, "password": PW, "token_id": token, "otp1": o1, "otp2": o2})),
    )
    .ok()?;
    (r.status == 201).then(|| Phone { key, token, user: uid.to_string() })
}

fn main() {
    let mut rounds = 20usize;
    let mut bin = PathBuf::from("target/release/onepush");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().and_then(|v| v.parse::<usize>().ok()).expect("--rounds N").clamp(1, 100),
            "--bin" => bin = PathBuf::from(args.next().expect("--bin PATH")),
            _ => panic!("flags: --rounds N --bin PATH"),
        }
    }
    let dir = std::env::temp_dir().join(format!("onepush-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("onepush.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nargon2_memory_kib = 1024\nargon2_iterations = 1\n\
         max_challenges_per_window = 1000000\ntrusted_proxies = [\"127.0.0.1\"]\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    assert!(cli(&bin, &config, &["operator", "add", "ops", "--password-stdin"], "crash-operator-1").0);
    // The key is stdout's one line; stderr (after it) says which config was used.
    let rp_key = cli(&bin, &config, &["rp-key", "add", "crash"], "").1.lines().next().unwrap_or("").trim().to_string();

    let (mut child, base) = start(&bin, &config);
    let admin = session(&base);
    call(
        &agent(),
        "POST",
        &format!("{base}/api/v1/admin/contracts"),
        &admin,
        Some(&json!({"contract_no": C, "name": "Crash", "edition": "jweb"})),
    )
    .unwrap();
    let phones: Vec<Phone> = (0..16).map(|i| enroll(&base, &admin, &format!("d{i}")).expect("enrol a driver")).collect();

    let mut told_decisions: Vec<(String, String)> = Vec::new();
    let mut told_registrations: Vec<Phone> = Vec::new();
    let mut total_guesses = 0usize;
    let mut base = base;
    let started = Instant::now();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let decisions = Arc::new(Mutex::new(Vec::new()));
        let registrations = Arc::new(Mutex::new(Vec::new()));
        let guesses = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let admin = session(&base);
        std::thread::scope(|s| {
            for (i, p) in phones.iter().enumerate() {
                let (stop, decisions, base, rp_key) = (stop.clone(), decisions.clone(), base.clone(), rp_key.clone());
                s.spawn(move || {
                    let a = agent();
                    let auth = vec![("Authorization", format!("Bearer {rp_key}"))];
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) && n < 10_000 {
                        n += 1;
                        let Ok(r) = call(
                            &a,
                            "POST",
                            &format!("{base}/api/v1/login"),
                            &auth,
                            Some(&json!({"contract_no": C, "user_id": p.user, "password": PW})),
                        ) else {
                            break;
                        };
                        let Some(id) = r.json["challenge_id"].as_str().map(str::to_string) else { continue };
                        let Ok(list) = device_call(&a, &base, &p.key, &p.token, "GET", "/api/v1/device/challenges?wait=5", None) else {
                            break;
                        };
                        let Some(ch) =
                            list.json["challenges"].as_array().and_then(|l| l.iter().find(|c| c["challenge_id"] == id.as_str())).cloned()
                        else {
                            continue;
                        };
                        let display: Vec<(String, String)> = serde_json::from_value(ch["display"].clone()).unwrap_or_default();
                        let decision = if (n + i as u64).is_multiple_of(3) { "reject" } else { "approve" };
                        let body = p.key.answer_body(&id, &p.token, decision, None, &display, false);
                        let Ok(r) = device_call(
                            &a,
                            &base,
                            &p.key,
                            &p.token,
                            "POST",
                            &format!("/api/v1/device/challenges/{id}/response"),
                            Some(&body),
                        ) else {
                            break;
                        };
                        if r.status == 200 {
                            // The phone has been told.
                            decisions.lock().unwrap().push((id.clone(), r.json["status"].as_str().unwrap_or("").to_string()));
                        }
                    }
                });
            }
            {
                // A password guesser from this round's own address, slowly, so
                // that the kill often comes in the middle of its 20 attempts.
                let (stop, guesses, base) = (stop.clone(), guesses.clone(), base.clone());
                s.spawn(move || {
                    let a = agent();
                    let xff = vec![("X-Forwarded-For", format!("10.99.{round}.1"))];
                    for _ in 0..25 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let body = json!({"username": "mallory", "password": "guess-pass-1"});
                        match call(&a, "POST", &format!("{base}/api/v1/admin/session"), &xff, Some(&body)) {
                            // Answered: the attempt was counted before the answer.
                            Ok(r) if r.status == 401 => {
                                guesses.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => break,
                        }
                        std::thread::sleep(Duration::from_millis(40));
                    }
                });
            }
            {
                let (stop, registrations, base, admin) = (stop.clone(), registrations.clone(), base.clone(), admin.clone());
                s.spawn(move || {
                    let mut k = 0;
                    while !stop.load(Ordering::Relaxed) && k < 1000 {
                        if let Some(p) = enroll(&base, &admin, &format!("r{round}u{k}")) {
                            registrations.lock().unwrap().push(p);
                        }
                        k += 1;
                    }
                });
            }
            // kill -9 at a random moment.
            std::thread::sleep(Duration::from_millis(rand::rng().random_range(300..1500)));
            child.kill().unwrap();
            child.wait().unwrap();
            stop.store(true, Ordering::Relaxed);
        });
        told_decisions.extend(decisions.lock().unwrap().drain(..));
        told_registrations.extend(registrations.lock().unwrap().drain(..));
        let (c, b) = start(&bin, &config);
        child = c;
        base = b;
        // Everything told so far must be there.
        let a = agent();
        let auth = vec![("Authorization", format!("Bearer {rp_key}"))];
        let mut lost = Vec::new();
        for (id, status) in &told_decisions {
            let r = call(&a, "GET", &format!("{base}/api/v1/challenges/{id}"), &auth, None).unwrap();
            if r.json["status"].as_str() != Some(status.as_str()) {
                lost.push(format!("challenge {id}: told {status}, found {}", r.json["status"]));
            }
        }
        for p in &told_registrations {
            let r = call(&a, "GET", &format!("{base}/api/v1/users/{C}/{}", p.user), &auth, None).unwrap();
            if r.json["registration"] != "active" || r.json["token_id"] != p.token.as_str() {
                lost.push(format!("registration of {}: found {}", p.user, r.json));
            }
        }
        let (ok, out) = cli(&bin, &config, &["audit", "verify"], "");
        if !ok {
            lost.push(format!("audit verify: {out}"));
        }
        // The guesser's answered attempts still count: at most 20 in all.
        let told_guesses = guesses.load(Ordering::SeqCst);
        let xff = vec![("X-Forwarded-For", format!("10.99.{round}.1"))];
        let mut more = 0;
        for _ in 0..25 {
            let body = json!({"username": "mallory", "password": "guess-pass-1"});
            let r = call(&a, "POST", &format!("{base}/api/v1/admin/session"), &xff, Some(&body)).unwrap();
            if r.status == 429 {
                break;
            }
            more += 1;
        }
        if told_guesses + more > 20 {
            lost.push(format!("rate limit: {told_guesses} sign-in attempts answered before the kill, {more} more allowed after it"));
        }
        total_guesses += told_guesses;
        println!(
            "round {:>2}: {} decisions and {} registrations told so far, all present: {}",
            round + 1,
            told_decisions.len(),
            told_registrations.len(),
            if lost.is_empty() { "yes" } else { "NO" }
        );
        if !lost.is_empty() {
            for l in lost.iter().take(20) {
                eprintln!("  lost: {l}");
            }
            println!("crash: {round} passed, 1 failed");
            let _ = child.kill();
            std::process::exit(1);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "crash test: {rounds} kill -9 rounds in {:.0} s; {} decisions and {} registrations told to clients, none lost; audit verify passed every time; {} counted sign-in guesses all still counted after each kill",
        started.elapsed().as_secs_f64(),
        told_decisions.len(),
        told_registrations.len(),
        total_guesses
    );
    println!("crash: {rounds} passed, 0 failed");
    let _ = std::fs::remove_dir_all(&dir);
}
