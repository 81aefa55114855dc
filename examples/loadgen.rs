//! Benchmark: complete push round trips against a real `onepush serve`.
//!
//! It starts the release binary on a temp data directory, creates users and
//! registers one simulated phone per user, parks the idle phones on the
//! device long-poll (`Connection: close`), and drives round trips
//!   RP login → phone gets the challenge → signed approve → RP sees approved
//! at each concurrency level. It prints round trips/s, p50/p99 round-trip
//! latency, p99 wake latency (decision committed → parked RP waiter
//! answered, from the server's histogram), server RSS and threads. Then it
//! compares logins/s at the default Argon2 cost with Argon2 alone.
//!
//!   cargo build --release && cargo run --release --example loadgen -- --phones 10000
//!
//! Every loop is bounded in count and time; traffic goes to 127.0.0.1 only.

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{agent, call, cli, device_call, raise_fd_limit, start};
use onepush::client::{now_secs, registration_otps, DeviceKey};
use serde_json::{json, Value};

const PASSWORD: &str = "bench-pass-1";

struct Args {
    phones: usize,
    levels: Vec<usize>,
    secs: u64,
    bin: PathBuf,
    argon2: bool,
}

fn parse_args() -> Args {
    let mut a = Args { phones: 1000, levels: vec![1, 8, 32], secs: 10, bin: PathBuf::from("target/release/onepush"), argon2: true };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--phones" => a.phones = val().parse().expect("--phones N"),
            "--levels" => a.levels = val().split(',').map(|s| s.parse().expect("--levels 1,8,32")).collect(),
            "--secs" => a.secs = val().parse().expect("--secs N"),
            "--bin" => a.bin = PathBuf::from(val()),
            "--no-argon2" => a.argon2 = false,
            other => panic!("unknown flag {other}; flags: --phones N --levels 1,8,32 --secs N --bin PATH --no-argon2"),
        }
    }
    a.secs = a.secs.clamp(1, 120);
    a.phones = a.phones.clamp(*a.levels.iter().max().unwrap_or(&1), 12_000);
    a
}

/// CPU seconds (user + system) a process has used.
fn cpu_secs(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command: state is 3rd, utime 14th, stime 15th.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn proc_status(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        s.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (field("VmRSS:") / 1024, field("Threads:"))
}

fn metric(base: &str, name: &str) -> f64 {
    let body = ureq::get(format!("{base}/metrics")).call().ok().and_then(|r| r.into_body().read_to_string().ok()).unwrap_or_default();
    body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// Bucket upper bounds and cumulative counts of a histogram in /metrics.
fn histogram(base: &str, name: &str) -> Vec<(f64, u64)> {
    let body = ureq::get(format!("{base}/metrics")).call().ok().and_then(|r| r.into_body().read_to_string().ok()).unwrap_or_default();
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&format!("{name}_bucket{{le=\""))?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.parse().ok()?))
        })
        .collect()
}

/// The p-quantile from the difference of two cumulative histograms,
/// interpolated linearly inside the bucket.
fn hist_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    let deltas: Vec<(f64, u64)> = after.iter().zip(before).map(|((le, a), (_, b))| (*le, a - b)).collect();
    let total = deltas.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut prev_le = 0.0;
    let mut prev_count = 0u64;
    for (le, c) in deltas {
        if c as f64 >= rank {
            if le.is_infinite() {
                return Some(prev_le);
            }
            let frac = (rank - prev_count as f64) / ((c - prev_count).max(1)) as f64;
            return Some(prev_le + (le - prev_le) * frac);
        }
        prev_le = le;
        prev_count = c;
    }
    None
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

struct PhoneId {
    key: DeviceKey,
    token_id: String,
    user_id: String,
}

/// Creates `n` users and registers a phone for each, on `threads` threads.
fn setup(base: &str, cookie: &str, n: usize) -> Vec<PhoneId> {
    let a = agent();
    let admin = vec![("Cookie", cookie.to_string())];
    let r = call(
        &a,
        "POST",
        &format!("{base}/api/v1/admin/contracts"),
        &admin,
        Some(&json!({"contract_no": "1", "name": "Bench", "edition": "jweb"})),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.json);
    let next = AtomicU64::new(0);
    let out = Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let a = agent();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                    if i >= n {
                        break;
                    }
                    let uid = format!("u{i}");
                    let r = call(
                        &a,
                        "POST",
                        &format!("{base}/api/v1/admin/contracts/1/users"),
                        &admin,
                        Some(&json!({"user_id": uid, "name": "Bench", "role": "user", "password": PASSWORD})),
                    )
                    .unwrap();
                    assert_eq!(r.status, 201, "{}", r.json);
                    let key = DeviceKey::generate();
                    // Each simulated phone comes from its own address, through the trusted proxy.
                    let xff = vec![("X-Forwarded-For", format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))];
                    let r =
                        call(&a, "POST", &format!("{base}/api/v1/device/provision"), &xff, Some(&key.provision_body(None, None))).unwrap();
                    assert_eq!(r.status, 201, "{}", r.json);
                    let token_id = r.json["token_id"].as_str().unwrap().to_string();
                    let (otp1, otp2) = registration_otps(r.json["otp_secret"].as_str().unwrap(), now_secs() as u64).unwrap();
                    let r = call(
                        &a,
                        "POST",
                        &format!("{base}/api/v1/registrations"),
                        &xff,
                        Some(&json!({
                        "contract_no": "1", "user_id": uid, "password": PASSWORD, "token_id": token_id, "otp1": otp1, "otp2": otp2})),
                    )
                    .unwrap();
                    assert_eq!(r.status, 201, "{}", r.json);
                    out.lock().unwrap().push(PhoneId { key, token_id, user_id: uid });
                }
            });
        }
    });
    out.into_inner().unwrap()
}

/// The simulated phones: every phone stays parked on the device long-poll
/// (`Connection: close`, raw sockets, one epoll thread), and a few worker
/// threads sign and send the answer when a challenge arrives, then park the
/// phone again. No thread per phone, as a real fleet costs the server none.
struct Fleet {
    answered: Arc<AtomicU64>,
    repolls: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn park(addr: &str, p: &PhoneId, i: usize) -> Option<TcpStream> {
    let wait = 30 + (i % 30);
    let path = "/api/v1/device/challenges";
    let h = p.key.headers(&p.token_id, "GET", path, b"", now_secs());
    let req = format!(
        "GET {path}?wait={wait} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{}: {}\r\n{}: {}\r\n{}: {}\r\n\r\n",
        h[0].0, h[0].1, h[1].0, h[1].1, h[2].0, h[2].1
    );
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_nodelay(true).ok()?;
    s.write_all(req.as_bytes()).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

fn start_fleet(base: &str, phones: Arc<Vec<PhoneId>>, workers: usize) -> Fleet {
    let addr = base.trim_start_matches("http://").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let repolls = Arc::new(AtomicU64::new(0));
    let (work_tx, work_rx) = std::sync::mpsc::channel::<(usize, Vec<Value>)>();
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (rearm_tx, rearm_rx) = std::sync::mpsc::channel::<(usize, Option<TcpStream>)>();
    let (wake_r, wake_w) = std::os::unix::net::UnixStream::pair().expect("wake pipe");
    wake_r.set_nonblocking(true).unwrap();
    let wake_w = Arc::new(wake_w);
    let mut threads = Vec::new();
    for _ in 0..workers {
        let (work_rx, rearm_tx, wake_w, phones, stop, answered, addr, base) = (
            work_rx.clone(),
            rearm_tx.clone(),
            wake_w.clone(),
            phones.clone(),
            stop.clone(),
            answered.clone(),
            addr.clone(),
            base.to_string(),
        );
        threads.push(std::thread::spawn(move || {
            let a = agent();
            while !stop.load(Ordering::Relaxed) {
                let job = work_rx.lock().unwrap().recv_timeout(Duration::from_millis(100));
                let Ok((i, challenges)) = job else { continue };
                let p = &phones[i];
                for ch in challenges {
                    let id = ch["challenge_id"].as_str().unwrap_or("");
                    let display: Vec<(String, String)> = serde_json::from_value(ch["display"].clone()).unwrap_or_default();
                    let body = p.key.answer_body(id, &p.token_id, "approve", None, &display, false);
                    let path = format!("/api/v1/device/challenges/{id}/response");
                    if let Ok(r) = device_call(&a, &base, &p.key, &p.token_id, "POST", &path, Some(&body)) {
                        if r.status == 200 {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let _ = rearm_tx.send((i, park(&addr, p, i)));
                let _ = (&*wake_w).write_all(b"x");
            }
        }));
    }
    {
        let (phones, stop, repolls) = (phones.clone(), stop.clone(), repolls.clone());
        threads.push(std::thread::spawn(move || {
            // SAFETY: epoll on descriptors this thread owns; every event
            // buffer is valid for its length.
            let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            assert!(ep >= 0, "epoll_create1");
            let watch = |fd: i32, key: u64| {
                let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: key };
                // SAFETY: see above.
                unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
            };
            watch(wake_r.as_raw_fd(), 0);
            let mut socks: Vec<Option<TcpStream>> = phones.iter().enumerate().map(|(i, p)| park(&addr, p, i)).collect();
            for (i, s) in socks.iter().enumerate() {
                if let Some(s) = s {
                    watch(s.as_raw_fd(), i as u64 + 1);
                }
            }
            let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); phones.len()];
            let mut chunk = [0u8; 16384];
            let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
            while !stop.load(Ordering::Relaxed) {
                while let Ok((i, s)) = rearm_rx.try_recv() {
                    if let Some(s) = &s {
                        watch(s.as_raw_fd(), i as u64 + 1);
                    }
                    socks[i] = s;
                    bufs[i].clear();
                }
                // SAFETY: see above.
                let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 200) };
                for ev in events.iter().take(n.max(0) as usize) {
                    let key = ev.u64;
                    if key == 0 {
                        while (&wake_r).read(&mut chunk).map(|n| n > 0).unwrap_or(false) {}
                        continue;
                    }
                    let i = key as usize - 1;
                    let Some(sock) = socks[i].as_mut() else { continue };
                    let eof = loop {
                        match sock.read(&mut chunk) {
                            Ok(0) => break true,
                            Ok(n) => bufs[i].extend_from_slice(&chunk[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                            Err(_) => break true,
                        }
                    };
                    if !eof {
                        continue;
                    }
                    socks[i] = None; // closing it also removes it from the epoll set
                    let text = String::from_utf8_lossy(&bufs[i]).into_owned();
                    bufs[i].clear();
                    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
                    let challenges =
                        serde_json::from_str::<Value>(body).ok().and_then(|v| v["challenges"].as_array().cloned()).unwrap_or_default();
                    if challenges.is_empty() {
                        repolls.fetch_add(1, Ordering::Relaxed);
                        let s = park(&addr, &phones[i], i);
                        if let Some(s) = &s {
                            watch(s.as_raw_fd(), i as u64 + 1);
                        }
                        socks[i] = s;
                    } else {
                        let _ = work_tx.send((i, challenges));
                    }
                }
            }
            // SAFETY: closing our own epoll descriptor.
            unsafe { libc::close(ep) };
        }));
    }
    Fleet { answered, repolls, stop, threads }
}

struct Level {
    rt: Vec<f64>,
    elapsed: f64,
    errors: u64,
}

/// `c` RP threads for `secs`, each logging in the users of its share of the
/// fleet in turn and waiting for the outcome.
fn drive(base: &str, rp_key: &str, phones: &[PhoneId], c: usize, secs: u64) -> Level {
    let errors = AtomicU64::new(0);
    let rts = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..c {
            let (errors, rts) = (&errors, &rts);
            s.spawn(move || {
                let a = agent();
                let auth = vec![("Authorization", format!("Bearer {rp_key}"))];
                let mut wait_h = auth.clone();
                wait_h.push(("Connection", "close".to_string()));
                let mine_users: Vec<&PhoneId> = phones.iter().skip(t).step_by(c).collect();
                let mut mine = Vec::new();
                let mut k = 0;
                while started.elapsed() < Duration::from_secs(secs) {
                    let p = mine_users[k % mine_users.len()];
                    k += 1;
                    let t0 = Instant::now();
                    let body = json!({"contract_no": "1", "user_id": p.user_id, "password": PASSWORD, "client": {"ip": "203.0.113.7"}});
                    let r = match call(&a, "POST", &format!("{base}/api/v1/login"), &auth, Some(&body)) {
                        Ok(r) if r.json["result"] == "challenge" => r,
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let id = r.json["challenge_id"].as_str().unwrap_or("").to_string();
                    match call(&a, "GET", &format!("{base}/api/v1/challenges/{id}?wait=10"), &wait_h, None) {
                        Ok(r) if r.json["status"] == "approved" => mine.push(t0.elapsed().as_secs_f64() * 1000.0),
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                rts.lock().unwrap().extend(mine);
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut rt = rts.into_inner().unwrap();
    rt.sort_by(|a, b| a.total_cmp(b));
    Level { rt, elapsed, errors: errors.load(Ordering::Relaxed) }
}

fn session(base: &str) -> String {
    let mut resp = ureq::post(format!("{base}/api/v1/admin/session"))
        .send_json(json!({"username": "bench", "password": "bench-operator-1"}))
        .expect("admin session");
    let cookie = resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").to_string();
    let _ = resp.body_mut().read_to_string();
    cookie
}

fn main() {
    let args = parse_args();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    raise_fd_limit();
    let dir = std::env::temp_dir().join(format!("onepush-loadgen-{}", std::process::id()));
    println!("onepush loadgen: {} phones, concurrency {:?}, {} s per level, {cores} cores", args.phones, args.levels, args.secs);
    println!("Argon2 for the round trips: argon2_memory_kib = 1024, argon2_iterations = 1 (benchmark setting, not the default)");

    let rt_dir = dir.join("roundtrip");
    let extra = "argon2_memory_kib = 1024\nargon2_iterations = 1";
    std::fs::create_dir_all(&rt_dir).unwrap();
    let cfg_probe = start(&args.bin, &rt_dir, extra, "LOADGEN_SERVER_LOG");
    let config = cfg_probe.config.clone();
    let rp_key = cli(&args.bin, &config, &["rp-key", "add", "bench"], "");
    cli(&args.bin, &config, &["operator", "add", "bench", "--password-stdin"], "bench-operator-1");
    let server = cfg_probe;
    let base = server.base.clone();
    let cookie = session(&base);
    let t = Instant::now();
    let phones = setup(&base, &cookie, args.phones);
    println!("setup: {} users and phones registered in {:.1} s", phones.len(), t.elapsed().as_secs_f64());

    let phones = Arc::new(phones);
    let fleet = start_fleet(&base, phones.clone(), 8);
    let pid = server.child.id();
    let t = Instant::now();
    loop {
        let parked = metric(&base, "onepush_parked_requests{side=\"device\"}") as usize;
        if parked >= phones.len() || t.elapsed() > Duration::from_secs(60) {
            let (rss, threads) = proc_status(pid);
            println!("parked: {parked} phones on the device long-poll; server RSS {rss} MB, {threads} threads");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    println!();
    println!(
        "{:>11} {:>9} {:>12} {:>9} {:>9} {:>14} {:>8} {:>8} {:>7} {:>13} {:>12} {:>17}",
        "concurrency",
        "trips",
        "trips/s",
        "p50 ms",
        "p99 ms",
        "wake p99 ms",
        "RSS MB",
        "threads",
        "errors",
        "jobs/commit",
        "commit ms",
        "CPU ms/trip s+c"
    );
    for &c in &args.levels {
        let before = histogram(&base, "onepush_wake_latency_seconds");
        let cpu0 = (cpu_secs(&pid.to_string()), cpu_secs("self"));
        let stats0 =
            ["onepush_store_commits_total", "onepush_store_jobs_total", "onepush_store_commit_seconds_sum"].map(|m| metric(&base, m));
        let level = drive(&base, &rp_key, &phones, c, args.secs);
        let after = histogram(&base, "onepush_wake_latency_seconds");
        let stats1 =
            ["onepush_store_commits_total", "onepush_store_jobs_total", "onepush_store_commit_seconds_sum"].map(|m| metric(&base, m));
        let commits = (stats1[0] - stats0[0]).max(1.0);
        let per_commit = (stats1[1] - stats0[1]) / commits;
        let commit_ms = (stats1[2] - stats0[2]) * 1000.0 / commits;
        let trips = level.rt.len().max(1) as f64;
        let server_cpu = (cpu_secs(&pid.to_string()) - cpu0.0) * 1000.0 / trips;
        let client_cpu = (cpu_secs("self") - cpu0.1) * 1000.0 / trips;
        let (rss, threads) = proc_status(pid);
        let wake = hist_quantile(&before, &after, 0.99).map_or("-".into(), |v| format!("{:.2}", v * 1000.0));
        println!(
            "{c:>11} {:>9} {:>12.0} {:>9.2} {:>9.2} {:>14} {:>8} {:>8} {:>7} {per_commit:>13.1} {commit_ms:>12.2} {:>17}",
            level.rt.len(),
            level.rt.len() as f64 / level.elapsed,
            percentile(&level.rt, 0.5),
            percentile(&level.rt, 0.99),
            wake,
            rss,
            threads,
            level.errors,
            format!("{server_cpu:.2}+{client_cpu:.2}")
        );
    }
    fleet.stop.store(true, Ordering::Relaxed);
    for t in fleet.threads {
        let _ = t.join();
    }
    println!(
        "phones answered {} challenges; {} long-polls ended at their wait and were renewed",
        fleet.answered.load(Ordering::Relaxed),
        fleet.repolls.load(Ordering::Relaxed)
    );
    drop(server);

    if args.argon2 {
        argon2_ratio(&args.bin, &dir.join("argon2"), cores, args.secs);
    }
    if std::env::var_os("LOADGEN_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Logins/s at the default Argon2 cost against Argon2 alone on every core.
fn argon2_ratio(bin: &Path, dir: &Path, cores: usize, secs: u64) {
    println!();
    println!("Argon2 at the default cost (argon2_memory_kib = 19456, argon2_iterations = 2):");
    let p = Arc::new(onepush::passwords::Passwords::new(19_456, 2).unwrap());
    let hash = p.hash("bench-pass-1").unwrap();
    let n = AtomicU64::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cores {
            s.spawn(|| {
                while t.elapsed() < Duration::from_secs(secs) {
                    assert!(p.verify(Some(&hash), "bench-pass-1"));
                    n.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let alone = n.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    println!("  Argon2 verify alone, {cores} threads: {alone:.1}/s");

    let server = start(bin, dir, "", "LOADGEN_SERVER_LOG");
    cli(bin, &server.config, &["operator", "add", "bench", "--password-stdin"], "bench-operator-1");
    let rp_key = cli(bin, &server.config, &["rp-key", "add", "bench"], "");
    let base = server.base.clone();
    let cookie = session(&base);
    let a = agent();
    let admin = vec![("Cookie", cookie)];
    call(
        &a,
        "POST",
        &format!("{base}/api/v1/admin/contracts"),
        &admin,
        Some(&json!({"contract_no": "1", "name": "Bench", "edition": "jweb"})),
    )
    .unwrap();
    call(
        &a,
        "POST",
        &format!("{base}/api/v1/admin/contracts/1/users"),
        &admin,
        Some(&json!({"user_id": "u", "name": "Bench", "role": "user", "password": PASSWORD})),
    )
    .unwrap();
    let n = AtomicU64::new(0);
    let bad = AtomicU64::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cores * 4 {
            s.spawn(|| {
                let a = agent();
                let auth = vec![("Authorization", format!("Bearer {rp_key}"))];
                let body = json!({"contract_no": "1", "user_id": "u", "password": PASSWORD});
                while t.elapsed() < Duration::from_secs(secs) {
                    match call(&a, "POST", &format!("{base}/api/v1/login"), &auth, Some(&body)) {
                        Ok(r) if r.json["result"] == "allow" => n.fetch_add(1, Ordering::Relaxed),
                        _ => bad.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    let logins = n.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    println!("  logins through onepush ({} client threads): {logins:.1}/s ({} errors)", cores * 4, bad.load(Ordering::Relaxed));
    println!("  ratio logins / Argon2 alone: {:.1}%", 100.0 * logins / alone);
}
