//! Benchmark: complete push round trips against a real `onepush serve`.
//!
//! It starts the release binary on a temp data directory, creates users and
//! registers one simulated phone per user, and drives round trips
//!   RP login → phone gets the challenge → signed approve → RP sees approved
//! at each concurrency level. How a phone gets the challenge (`--push`):
//! - `parked` (the default): the idle phones are parked on the device
//!   long-poll (`Connection: close`), which the server answers at once.
//! - `webpush`: every phone has a Web Push subscription
//!   (`PUT /api/v1/device/push`) to an HTTPS push receiver that loadgen runs
//!   on 127.0.0.1 with its own test CA (given to the server as `push_ca_file`,
//!   with `push_allowed_hosts = ["127.0.0.1"]`). The receiver answers 201,
//!   decrypts the message (RFC 8291 aes128gcm) and hands the `challenge_id`
//!   to the phone, which fetches its challenges with a signed GET (no wait)
//!   and answers. It also prints the push latency: from the RP's login
//!   request being sent until the receiver has read the push.
//!
//! Where the state lives (`--store`, `--nodes`):
//! - `--store redb` (the default): one node on the embedded store.
//! - `--store postgres`: the node(s) on a new database in a PostgreSQL
//!   cluster: `$ONEPUSH_TEST_POSTGRES` (a base URL such as
//!   postgres://postgres@127.0.0.1:5432) when set, else a private cluster
//!   started with `.ci/pg-cluster` in the temp directory and stopped at exit.
//! - `--nodes 2` (postgres only): two nodes on that database with the same
//!   key files, and a private nginx on 127.0.0.1 (a child process with its
//!   own config, pid and logs in the temp directory) balancing both
//!   (round robin, keep-alive upstream connections). The RP's logins and
//!   parked outcome GETs go through nginx, which tags each response with the
//!   node that served it; phone `i` parks on and answers to node `i % 2`
//!   directly. So about half the RP waits are parked on the node the phone
//!   does not answer to, and are woken by the other node's commit through
//!   LISTEN/NOTIFY: the cross-node wake.
//!
//! It prints round trips/s, p50/p99 round-trip latency, p99 wake latency
//! (from the servers' histogram: decision committed → parked RP waiter
//! answered for a waiter on the deciding node; for one woken by another
//! node's commit, from the NOTIFY read back to answered), the wake latency
//! loadgen sees itself (the phone's answer 200 received → the RP's parked
//! GET returned), same-node and cross-node apart, server RSS and threads,
//! and CPU per round trip (server, loadgen, PostgreSQL, nginx). Then it
//! compares logins/s at the default Argon2 cost with Argon2 alone.
//!
//!   cargo build --release --examples
//!   target/release/examples/loadgen --phones 10000 --levels 1,8,32 --secs 8 --no-argon2
//!   target/release/examples/loadgen --phones 10000 --levels 1,8,32 --secs 8 --no-argon2 --push webpush
//!   target/release/examples/loadgen --phones 2000 --levels 1,8,32 --secs 8 --no-argon2 --store postgres --nodes 2
//!
//! `--help` lists every flag. Every loop is bounded in count and time;
//! traffic goes to 127.0.0.1 only (and to `$ONEPUSH_TEST_POSTGRES`).

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{agent, call, cli, device_call, raise_fd_limit, start, Server};
use onepush::client::{now_secs, registration_otps, DeviceKey};
use onepush::domain::sig::b64;
use serde_json::{json, Value};

const PASSWORD: &str = "bench-pass-1";

const USAGE: &str = "\
usage: loadgen [--phones N] [--levels 1,8,32] [--secs N] [--bin PATH] [--no-argon2] [--push parked|webpush]
               [--store redb|postgres] [--nodes 1|2]
  --phones N       simulated phones, one user each (default 1000; at least the largest level, at most 12000)
  --levels LIST    RP concurrency levels, comma-separated (default 1,8,32)
  --secs N         seconds per level (default 10; 1 to 120)
  --bin PATH       the onepush binary to start (default target/release/onepush)
  --no-argon2      skip the comparison of logins/s at the default Argon2 cost with Argon2 alone
  --workers N      threads that act for the phones once a challenge reaches them (decrypt, fetch, sign,
                   answer); default 8 with --push parked, the largest level (at least 8) with webpush
  --push MODE      how a phone learns of its challenge:
                     parked   (default) every phone waits on GET /api/v1/device/challenges?wait=N
                     webpush  every phone subscribes (PUT /api/v1/device/push, kind webpush) to an HTTPS
                              push receiver loadgen runs on 127.0.0.1 (its own test CA, passed to the
                              server as push_ca_file; push_allowed_hosts = [\"127.0.0.1\"]); on a push the
                              phone fetches its challenges (signed GET, no wait) and answers. Adds the push
                              latency p50/p99: RP login request sent -> receiver has read the push.
  --store STORE    redb (default): the embedded store. postgres: store = \"postgres://...\" on a new database
                   in the cluster at $ONEPUSH_TEST_POSTGRES (a base URL, postgres://user@host:port), or, when
                   that is unset, in a private cluster started by .ci/pg-cluster in the temp dir (stopped at exit)
  --nodes N        1 (default) or 2 (needs --store postgres): two onepush nodes on the same database and key
                   files, behind a private nginx on 127.0.0.1 (round robin, keep-alive upstream connections).
                   The RPs' logins and parked outcome GETs go through nginx (the throughput figure); phone i
                   parks on and answers to node i % 2 directly. nginx tags each response with the node that
                   served it, so an RP GET parked on the node the phone does not answer to is a cross-node wake.
  -h, --help       this text
columns: wake p99 ms      from the servers' histogram (summed over the nodes): decision committed -> parked RP
                          waiter answered on the deciding node; for a waiter woken by another node's commit it
                          starts only when the NOTIFY has been read and the challenge read back
         same/cross wake  p50/p99 ms (and count) measured by loadgen: the phone's answer (200) received -> the
                          RP's parked GET returned, for RP GETs served by the phone's node (same) or by the other
                          node (cross, woken through LISTEN/NOTIFY). Can be below 0: the RP's answer may reach
                          loadgen before the phone's 200 does
         CPU ms/trip      per round trip: server(s) + loadgen [+ PostgreSQL (the whole cluster) [+ nginx]]
         others, load1    cores busy with everything else on the machine during the level (other processes,
                          interrupts, steal: another benchmark or a build makes the figures incomparable), and the
                          1-minute load average after it
environment: LOADGEN_SERVER_LOG=LEVEL (the servers' logs, in the temp dir), LOADGEN_KEEP=1 (keep the temp dir),
             ONEPUSH_TEST_POSTGRES=postgres://user@host:port (an existing cluster for --store postgres)";

/// How the simulated phones learn of a challenge (`--push`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Parked on the device long-poll.
    Parked,
    /// Woken by a Web Push message to loadgen's own receiver.
    Webpush,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Parked => "parked",
            Mode::Webpush => "webpush",
        }
    }
}

struct Args {
    phones: usize,
    levels: Vec<usize>,
    secs: u64,
    bin: PathBuf,
    argon2: bool,
    mode: Mode,
    /// Phone worker threads; 0 for the mode's default.
    workers: usize,
    /// `--store postgres`.
    postgres: bool,
    /// onepush nodes (2: behind nginx).
    nodes: usize,
}

fn usage_error(why: &str) -> ! {
    eprintln!("loadgen: {why}\n{USAGE}");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        phones: 1000,
        levels: vec![1, 8, 32],
        secs: 10,
        bin: PathBuf::from("target/release/onepush"),
        argon2: true,
        mode: Mode::Parked,
        workers: 0,
        postgres: false,
        nodes: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage_error(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--phones" => a.phones = val().parse().unwrap_or_else(|_| usage_error("--phones N")),
            "--levels" => {
                a.levels =
                    val().split(',').map(|s| s.parse().ok().filter(|&c| c > 0).unwrap_or_else(|| usage_error("--levels 1,8,32"))).collect()
            }
            "--secs" => a.secs = val().parse().unwrap_or_else(|_| usage_error("--secs N")),
            "--bin" => a.bin = PathBuf::from(val()),
            "--no-argon2" => a.argon2 = false,
            "--workers" => {
                a.workers = val().parse().ok().filter(|&w| (1..=256).contains(&w)).unwrap_or_else(|| usage_error("--workers 1..256"))
            }
            "--push" => {
                a.mode = match val().as_str() {
                    "parked" => Mode::Parked,
                    "webpush" => Mode::Webpush,
                    other => usage_error(&format!("--push takes parked or webpush, not {other:?}")),
                }
            }
            "--store" => {
                a.postgres = match val().as_str() {
                    "redb" => false,
                    "postgres" => true,
                    other => usage_error(&format!("--store takes redb or postgres, not {other:?}")),
                }
            }
            "--nodes" => a.nodes = val().parse().ok().filter(|n| (1..=2).contains(n)).unwrap_or_else(|| usage_error("--nodes 1 or 2")),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => usage_error(&format!("unknown flag {other}")),
        }
    }
    if a.nodes > 1 && !a.postgres {
        usage_error("--nodes 2 needs --store postgres (nodes share their state in the database)");
    }
    a.secs = a.secs.clamp(1, 120);
    a.phones = a.phones.clamp(*a.levels.iter().max().unwrap_or(&1), 12_000);
    if a.workers == 0 {
        // Parked: as it always was. Web Push: real phones act in parallel, so
        // no RP thread should wait for another's phone to get a turn.
        a.workers = match a.mode {
            Mode::Parked => 8,
            Mode::Webpush => a.levels.iter().copied().max().unwrap_or(8).max(8),
        };
    }
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

/// CPU seconds of process `pid` and its children: the live ones (a
/// PostgreSQL backend per connection, nginx's workers) and those it has
/// reaped.
fn tree_cpu(pid: u32) -> f64 {
    let fields = |p: &str| -> Vec<String> {
        let s = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        s.rsplit_once(')').map(|(_, r)| r.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks = |f: &[String], i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let own = fields(&pid.to_string());
    // utime, stime, and the reaped children's cutime, cstime.
    let mut total = ticks(&own, 11) + ticks(&own, 12) + ticks(&own, 13) + ticks(&own, 14);
    let parent = pid.to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let f = fields(&name);
        if f.get(1) == Some(&parent) {
            total += ticks(&f, 11) + ticks(&f, 12);
        }
    }
    total / hz
}

/// The machine's busy CPU seconds (all cores, every process) from /proc/stat.
fn machine_busy_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = s.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = f.iter().take(8).enumerate().filter(|(k, _)| *k != 3 && *k != 4).map(|(_, v)| v).sum();
    // SAFETY: sysconf has no preconditions.
    busy / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The 1-minute load average.
fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().next().unwrap_or("-").to_string()
}

/// Each node's value, joined with '+' ("81+80").
fn per_node(values: impl Iterator<Item = u64>) -> String {
    values.map(|v| v.to_string()).collect::<Vec<_>>().join("+")
}

/// A counter or gauge summed over the nodes.
fn metric_sum(bases: &[String], name: &str) -> f64 {
    bases.iter().map(|b| metric(b, name)).sum()
}

/// A histogram summed over the nodes (every node has the same buckets).
fn histogram_sum(bases: &[String], name: &str) -> Vec<(f64, u64)> {
    let mut sum: Vec<(f64, u64)> = Vec::new();
    for b in bases {
        let h = histogram(b, name);
        if sum.is_empty() {
            sum = h;
        } else {
            for ((_, s), (_, c)) in sum.iter_mut().zip(h) {
                *s += c;
            }
        }
    }
    sum
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

/// Creates `n` users and registers a phone for each, on 4 threads; with
/// `push`, each phone also subscribes to loadgen's push receiver. The phones
/// come back in user order: `phones[i]` is user `u{i}`.
fn setup(base: &str, cookie: &str, n: usize, push: Option<&Pushes>) -> Vec<PhoneId> {
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
                    if let Some(push) = push {
                        let body = push.subscription(i);
                        let r = device_call(&a, base, &key, &token_id, "PUT", "/api/v1/device/push", Some(&body)).unwrap();
                        assert_eq!((r.status, r.json["kind"].as_str()), (200, Some("webpush")), "{}", r.json);
                    }
                    out.lock().unwrap().push((i, PhoneId { key, token_id, user_id: uid }));
                }
            });
        }
    });
    let mut out = out.into_inner().unwrap();
    out.sort_unstable_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, p)| p).collect()
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

/// The wake latency as loadgen sees it, per phone: when the phone's answer
/// got its 200 and when the RP's parked GET returned; whichever thread
/// notes the second of the two records the difference, once, as a same-node
/// or a cross-node wake.
struct Wakes {
    epoch: Instant,
    /// ns since `epoch` plus 1; 0 while not yet.
    answered: Vec<AtomicU64>,
    returned: Vec<AtomicU64>,
    /// Whether the RP's GET was served by a node other than the phone's.
    cross: Vec<AtomicBool>,
    /// Recorded for this round already.
    done: Vec<AtomicBool>,
    same_ms: Mutex<Vec<f64>>,
    cross_ms: Mutex<Vec<f64>>,
}

impl Wakes {
    fn new(n: usize) -> Wakes {
        Wakes {
            epoch: Instant::now(),
            answered: (0..n).map(|_| AtomicU64::new(0)).collect(),
            returned: (0..n).map(|_| AtomicU64::new(0)).collect(),
            cross: (0..n).map(|_| AtomicBool::new(false)).collect(),
            done: (0..n).map(|_| AtomicBool::new(true)).collect(),
            same_ms: Mutex::new(Vec::new()),
            cross_ms: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    /// A new round for phone `i`: called by its RP thread before the login.
    fn reset(&self, i: usize) {
        self.answered[i].store(0, Ordering::SeqCst);
        self.returned[i].store(0, Ordering::SeqCst);
        self.done[i].store(false, Ordering::SeqCst);
    }

    /// Phone `i`'s answer got its 200.
    fn answered(&self, i: usize) {
        self.answered[i].store(self.now(), Ordering::SeqCst);
        self.settle(i);
    }

    /// Phone `i`'s RP saw the outcome, from the phone's node or another.
    fn returned(&self, i: usize, cross: bool) {
        self.cross[i].store(cross, Ordering::SeqCst);
        self.returned[i].store(self.now(), Ordering::SeqCst);
        self.settle(i);
    }

    fn settle(&self, i: usize) {
        let (a, r) = (self.answered[i].load(Ordering::SeqCst), self.returned[i].load(Ordering::SeqCst));
        if a == 0 || r == 0 || self.done[i].swap(true, Ordering::SeqCst) {
            return;
        }
        let ms = (r as f64 - a as f64) / 1e6;
        let list = if self.cross[i].load(Ordering::SeqCst) { &self.cross_ms } else { &self.same_ms };
        list.lock().unwrap().push(ms);
    }

    /// "p50/p99 (count)" of the same-node and the cross-node wakes since the last call.
    fn take(&self) -> (String, String) {
        let show = |m: &Mutex<Vec<f64>>| {
            let mut l = std::mem::take(&mut *m.lock().unwrap());
            if l.is_empty() {
                return "-".to_string();
            }
            l.sort_by(|a, b| a.total_cmp(b));
            format!("{:.2}/{:.2} ({})", percentile(&l, 0.5), percentile(&l, 0.99), l.len())
        };
        (show(&self.same_ms), show(&self.cross_ms))
    }
}

/// Approves each of `challenges` as phone `i`, signed over its lines.
fn answer_all(a: &ureq::Agent, base: &str, i: usize, p: &PhoneId, challenges: Vec<Value>, answered: &AtomicU64, wakes: &Wakes) {
    for ch in challenges {
        let id = ch["challenge_id"].as_str().unwrap_or("");
        let display: Vec<(String, String)> = serde_json::from_value(ch["display"].clone()).unwrap_or_default();
        let body = p.key.answer_body(id, &p.token_id, "approve", None, &display, false);
        let path = format!("/api/v1/device/challenges/{id}/response");
        if let Ok(r) = device_call(a, base, &p.key, &p.token_id, "POST", &path, Some(&body)) {
            if r.status == 200 {
                wakes.answered(i);
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Phone `i` parks on and answers to node `i % bases.len()`.
fn start_fleet(bases: &[String], phones: Arc<Vec<PhoneId>>, workers: usize, wakes: Arc<Wakes>) -> Fleet {
    let bases: Arc<Vec<String>> = Arc::new(bases.to_vec());
    let addr_of = |i: usize, bases: &[String]| bases[i % bases.len()].trim_start_matches("http://").to_string();
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
        let (work_rx, rearm_tx, wake_w, phones, stop, answered, bases, wakes) = (
            work_rx.clone(),
            rearm_tx.clone(),
            wake_w.clone(),
            phones.clone(),
            stop.clone(),
            answered.clone(),
            bases.clone(),
            wakes.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let a = agent();
            while !stop.load(Ordering::Relaxed) {
                let job = work_rx.lock().unwrap().recv_timeout(Duration::from_millis(100));
                let Ok((i, challenges)) = job else { continue };
                let p = &phones[i];
                answer_all(&a, &bases[i % bases.len()], i, p, challenges, &answered, &wakes);
                let _ = rearm_tx.send((i, park(&addr_of(i, &bases), p, i)));
                let _ = (&*wake_w).write_all(b"x");
            }
        }));
    }
    {
        let (phones, stop, repolls, bases) = (phones.clone(), stop.clone(), repolls.clone(), bases.clone());
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
            let mut socks: Vec<Option<TcpStream>> = phones.iter().enumerate().map(|(i, p)| park(&addr_of(i, &bases), p, i)).collect();
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
                        let s = park(&addr_of(i, &bases), &phones[i], i);
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

/// A phone's Web Push subscription keys: the receiving side of RFC 8291.
struct PushKeys {
    components: ece::EcKeyComponents,
    auth: [u8; 16],
}

/// Loadgen's Web Push receiver (`--push webpush`) and what it shares with
/// the setup and the RP threads.
struct Pushes {
    /// `https://127.0.0.1:PORT`; phone `i` subscribes with `{base}/push/{i}`.
    base: String,
    addr: std::net::SocketAddr,
    epoch: Instant,
    /// Per phone (user number): when the RP sent its latest login request,
    /// in ns since `epoch`, plus 1; 0 before any.
    sent_at: Vec<AtomicU64>,
    /// Per phone: its subscription's private key and auth secret, set by `subscription`.
    keys: Vec<OnceLock<PushKeys>>,
    /// Push latencies (ms) measured since they were last taken.
    latencies: Mutex<Vec<f64>>,
    /// Push messages read, whatever they held.
    received: AtomicU64,
    /// Messages for no known phone, or that did not decrypt to a `challenge_id`.
    undecryptable: AtomicU64,
    /// TLS connections the server opened to the receiver.
    connections: AtomicU64,
    stop: AtomicBool,
}

impl Pushes {
    /// Phone `i`'s `PUT /api/v1/device/push` body, with a key pair of its
    /// own. Each phone gets its own P-256 key pair and auth secret, as real
    /// ones do: with ece's OpenSSL backend a pair takes tens of microseconds,
    /// well under a second for 12,000 phones on the setup threads, so there
    /// is no need to share one (the server would not mind if they did).
    fn subscription(&self, i: usize) -> Value {
        let (pair, auth) = ece::generate_keypair_and_auth_secret().expect("a P-256 key pair");
        let p256dh = b64(&pair.pub_as_raw().expect("the public key"));
        let _ = self.keys[i].set(PushKeys { components: pair.raw_components().expect("the key pair"), auth });
        json!({"kind": "webpush", "endpoint": format!("{}/push/{i}", self.base), "p256dh": p256dh, "auth": b64(&auth)})
    }

    /// Called by the RP thread just before it sends phone `i`'s login.
    fn mark_sent(&self, i: usize) {
        self.sent_at[i].store(self.epoch.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
    }

    fn take_latencies(&self) -> Vec<f64> {
        let mut l = std::mem::take(&mut *self.latencies.lock().unwrap());
        l.sort_by(|a, b| a.total_cmp(b));
        l
    }

    /// Stops accepting (the connection threads end when the server goes).
    fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A push as read by the receiver: the phone it is for and its encrypted body.
type Handoff = (usize, Vec<u8>);

/// Starts the HTTPS push receiver on 127.0.0.1 with its own test CA (written
/// to `dir/push-ca.pem`). Each message read is timed, answered 201 and
/// handed (phone, encrypted body) to the phones, which decrypt it. One
/// thread per connection, keep-alive: the server's sender threads keep their
/// connections open, and the receiver does no crypto but TLS.
/// Returns the receiver and the config lines that let the server push to it.
fn start_receiver(dir: &Path, n: usize, handoff: mpsc::Sender<Handoff>) -> (Arc<Pushes>, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&leaf_key, &ca).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let ca_file = dir.join("push-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()))
            .unwrap(),
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("push receiver socket");
    let addr = l.local_addr().unwrap();
    let pushes = Arc::new(Pushes {
        base: format!("https://{addr}"),
        addr,
        epoch: Instant::now(),
        sent_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
        keys: (0..n).map(|_| OnceLock::new()).collect(),
        latencies: Mutex::new(Vec::new()),
        received: AtomicU64::new(0),
        undecryptable: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let p = pushes.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            if p.stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok(c) = conn else { continue };
            p.connections.fetch_add(1, Ordering::Relaxed);
            let (tls, p, handoff) = (tls.clone(), p.clone(), handoff.clone());
            std::thread::spawn(move || serve_pushes(tls, c, &p, &handoff));
        }
    });
    let config = format!(
        "push_allowed_hosts = [\"127.0.0.1\"]\npush_ca_file = \"{}\"\npush_contact = \"mailto:loadgen@localhost\"\n",
        ca_file.display()
    );
    (pushes, config)
}

/// One TLS connection from the server's push sender: requests one after
/// the other (keep-alive), each with a `Content-Length` body.
fn serve_pushes(tls: Arc<rustls::ServerConfig>, tcp: TcpStream, pushes: &Pushes, handoff: &mpsc::Sender<Handoff>) {
    let _ = tcp.set_nodelay(true);
    // Bounded: the server's idle pooled connections close long before this.
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(conn) = rustls::ServerConnection::new(tls) else { return };
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut buf: Vec<u8> = Vec::with_capacity(16384);
    let mut chunk = [0u8; 16384];
    let mut served = 0u64;
    loop {
        // (where the body starts, where the request ends), once the head is in.
        let mut framing: Option<(usize, usize)> = None;
        loop {
            if framing.is_none() {
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let len = String::from_utf8_lossy(&buf[..at])
                        .lines()
                        .find_map(|l| {
                            l.split_once(':')
                                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                                .map(|(_, v)| v.trim().parse::<usize>())
                        })
                        .and_then(Result::ok)
                        .unwrap_or(0);
                    framing = Some((at + 4, at + 4 + len));
                }
            }
            if framing.is_some_and(|(_, end)| buf.len() >= end) {
                break;
            }
            if buf.len() > 1 << 20 {
                return;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let read_at = pushes.epoch.elapsed().as_nanos() as u64;
        let Some((body_at, end)) = framing else { return };
        let head = String::from_utf8_lossy(&buf[..body_at]).into_owned();
        let body = buf[body_at..end].to_vec();
        buf.drain(..end);
        served += 1;
        let close = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close"))
        });
        // Answer first, as a push service does: the server's sender is not kept waiting for the phone.
        let reply = format!(
            "HTTP/1.1 201 Created\r\nLocation: /message/{served}\r\nContent-Length: 0\r\n{}\r\n",
            if close { "Connection: close\r\n" } else { "" }
        );
        if s.write_all(reply.as_bytes()).and_then(|_| s.flush()).is_err() {
            return;
        }
        pushes.received.fetch_add(1, Ordering::Relaxed);
        let phone = head.split_whitespace().nth(1).and_then(|p| p.strip_prefix("/push/")).and_then(|i| i.parse::<usize>().ok());
        match phone.filter(|&i| i < pushes.sent_at.len()) {
            Some(i) => {
                let sent = pushes.sent_at[i].load(Ordering::Relaxed);
                if sent > 0 {
                    let ms = read_at.saturating_sub(sent - 1) as f64 / 1e6;
                    pushes.latencies.lock().unwrap().push(ms);
                }
                let _ = handoff.send((i, body));
            }
            None => {
                pushes.undecryptable.fetch_add(1, Ordering::Relaxed);
            }
        }
        if close {
            return;
        }
    }
}

/// The `challenge_id` in phone `i`'s Web Push message (RFC 8291 aes128gcm).
fn decrypt_push(pushes: &Pushes, i: usize, body: &[u8]) -> Option<String> {
    let keys = pushes.keys.get(i)?.get()?;
    let plain = ece::decrypt(&keys.components, &keys.auth, body).ok()?;
    let v: Value = serde_json::from_slice(&plain).ok()?;
    Some(v["challenge_id"].as_str()?.to_string())
}

/// The Web Push phones: no connection while idle; `workers` threads take
/// what the receiver read, decrypt it, fetch the phone's challenges (signed
/// GET, no wait, keep-alive) and answer them. `repolls` counts the pushes
/// whose fetch did not find their challenge.
fn start_push_phones(
    bases: &[String],
    phones: Arc<Vec<PhoneId>>,
    pushes: Arc<Pushes>,
    handoff: mpsc::Receiver<Handoff>,
    workers: usize,
    wakes: Arc<Wakes>,
) -> Fleet {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let repolls = Arc::new(AtomicU64::new(0));
    let handoff = Arc::new(Mutex::new(handoff));
    let threads = (0..workers)
        .map(|_| {
            let (handoff, phones, pushes, stop, answered, repolls, bases, wakes) = (
                handoff.clone(),
                phones.clone(),
                pushes.clone(),
                stop.clone(),
                answered.clone(),
                repolls.clone(),
                bases.to_vec(),
                wakes.clone(),
            );
            std::thread::spawn(move || {
                let a = agent();
                while !stop.load(Ordering::Relaxed) {
                    let job = handoff.lock().unwrap().recv_timeout(Duration::from_millis(100));
                    let Ok((i, body)) = job else { continue };
                    let Some(challenge_id) = decrypt_push(&pushes, i, &body) else {
                        pushes.undecryptable.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let p = &phones[i];
                    let base = &bases[i % bases.len()];
                    let challenges = match device_call(&a, base, &p.key, &p.token_id, "GET", "/api/v1/device/challenges", None) {
                        Ok(r) if r.status == 200 => r.json["challenges"].as_array().cloned().unwrap_or_default(),
                        _ => Vec::new(),
                    };
                    if !challenges.iter().any(|c| c["challenge_id"] == challenge_id.as_str()) {
                        repolls.fetch_add(1, Ordering::Relaxed);
                    }
                    answer_all(&a, base, i, p, challenges, &answered, &wakes);
                }
            })
        })
        .collect();
    Fleet { answered, repolls, stop, threads }
}

struct Level {
    rt: Vec<f64>,
    elapsed: f64,
    errors: u64,
}

/// The header nginx adds to every response: the node that served it.
const UPSTREAM_HEADER: &str = "x-loadgen-upstream";

/// `call`, plus the node (index in `nodes`) that served the request: the one
/// nginx names in `UPSTREAM_HEADER`, or the only one.
fn call_tagged(a: &ureq::Agent, url: &str, headers: &[(&str, String)], nodes: &[String]) -> Result<(common::Resp, Option<usize>), String> {
    let mut b = ureq::http::Request::builder().method("GET").uri(url);
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    let resp = a.run(b.body(()).map_err(|e| e.to_string())?).map_err(|e| format!("GET {url}: {e}"))?;
    let node = if nodes.len() == 1 {
        Some(0)
    } else {
        // "127.0.0.1:PORT", or a list when nginx tried more than one: the last served.
        let upstream = resp.headers().get(UPSTREAM_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        let last = upstream.rsplit(',').next().unwrap_or("").trim();
        nodes.iter().position(|n| !last.is_empty() && n.trim_start_matches("http://") == last)
    };
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().map_err(|e| e.to_string())?;
    Ok((common::Resp { status, json: serde_json::from_str(&text).unwrap_or(Value::Null) }, node))
}

/// `c` RP threads for `secs`, each logging in the users of its share of the
/// fleet in turn, at `base` (a node, or nginx before the `nodes`), and
/// waiting for the outcome there. With `push`, each notes when it sent a
/// phone's login (for the push latency); `wakes` gets when the outcome came
/// and from which side.
#[allow(clippy::too_many_arguments)]
fn drive(
    base: &str,
    nodes: &[String],
    rp_key: &str,
    phones: &[PhoneId],
    c: usize,
    secs: u64,
    push: Option<&Pushes>,
    wakes: &Wakes,
) -> Level {
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
                let mine_users: Vec<usize> = (0..phones.len()).skip(t).step_by(c).collect();
                let mut mine = Vec::new();
                let mut k = 0;
                while started.elapsed() < Duration::from_secs(secs) {
                    let i = mine_users[k % mine_users.len()];
                    let p = &phones[i];
                    k += 1;
                    let t0 = Instant::now();
                    let body = json!({"contract_no": "1", "user_id": p.user_id, "password": PASSWORD, "client": {"ip": "203.0.113.7"}});
                    wakes.reset(i);
                    if let Some(push) = push {
                        push.mark_sent(i);
                    }
                    let r = match call(&a, "POST", &format!("{base}/api/v1/login"), &auth, Some(&body)) {
                        Ok(r) if r.json["result"] == "challenge" => r,
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let id = r.json["challenge_id"].as_str().unwrap_or("").to_string();
                    match call_tagged(&a, &format!("{base}/api/v1/challenges/{id}?wait=10"), &wait_h, nodes) {
                        Ok((r, node)) if r.json["status"] == "approved" => {
                            mine.push(t0.elapsed().as_secs_f64() * 1000.0);
                            if let Some(node) = node {
                                wakes.returned(i, node != i % nodes.len());
                            }
                        }
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

/// The PostgreSQL cluster of `--store postgres` and the database loadgen
/// made in it.
struct Pg {
    /// postgres://user@host:port
    base: String,
    /// Set when loadgen started the cluster: stopped on drop. Otherwise the
    /// database is dropped.
    dir: Option<PathBuf>,
    db: String,
    /// The postmaster, when it runs on this machine (for the cluster's CPU).
    postmaster: Option<u32>,
}

impl Pg {
    /// `$ONEPUSH_TEST_POSTGRES`, or a private cluster in `dir`; a new database in it.
    fn start(dir: &Path) -> Pg {
        let (base, own) = match std::env::var("ONEPUSH_TEST_POSTGRES").ok().filter(|v| !v.is_empty()) {
            Some(base) => (base.trim_end_matches('/').to_string(), None),
            None => {
                let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/pg-cluster");
                let out = std::process::Command::new("bash").arg(&script).arg("start").arg(dir).output().expect("running .ci/pg-cluster");
                assert!(
                    out.status.success(),
                    "--store postgres needs a cluster: set ONEPUSH_TEST_POSTGRES or install Debian's postgresql ({})",
                    String::from_utf8_lossy(&out.stderr)
                );
                (String::from_utf8_lossy(&out.stdout).trim().to_string(), Some(dir.to_path_buf()))
            }
        };
        let db = format!("loadgen_{}_{}", std::process::id(), now_secs());
        let mut pg = Pg { base, dir: own, db, postmaster: None };
        let mut c = postgres::Client::connect(&format!("{}/postgres", pg.base), postgres::NoTls).expect("the PostgreSQL cluster answers");
        c.batch_execute(&format!("CREATE DATABASE {}", pg.db)).expect("CREATE DATABASE");
        // The checkpointer's parent is the postmaster; on another machine, no such process here.
        let checkpointer: Option<i32> =
            c.query_opt("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'", &[]).ok().flatten().map(|r| r.get(0));
        pg.postmaster = checkpointer.and_then(|pid| {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            s.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
        });
        pg
    }

    fn url(&self) -> String {
        format!("{}/{}", self.base, self.db)
    }

    fn cpu(&self) -> f64 {
        self.postmaster.map_or(0.0, tree_cpu)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        match &self.dir {
            Some(dir) => {
                let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/pg-cluster");
                let _ = std::process::Command::new("bash").arg(script).arg("stop").arg(dir).status();
            }
            None if std::env::var_os("LOADGEN_KEEP").is_none() => {
                if let Ok(mut c) = postgres::Client::connect(&format!("{}/postgres", self.base), postgres::NoTls) {
                    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db));
                }
            }
            None => {}
        }
    }
}

/// A private nginx (`--nodes 2`): Debian's binary as a child process in the
/// foreground, with its own config, pid and logs in a temp directory.
struct Nginx {
    child: std::process::Child,
    base: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would leave them).
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts nginx on 127.0.0.1 (a free port) in front of `nodes`: round
/// robin, keep-alive upstream connections, a read timeout above any
/// long-poll, and the serving node in `UPSTREAM_HEADER`.
fn start_nginx(dir: &Path, nodes: &[String]) -> Nginx {
    std::fs::create_dir_all(dir).unwrap();
    let servers: String = nodes.iter().map(|n| format!("        server {};\n", n.trim_start_matches("http://"))).collect();
    let d = dir.display();
    for attempt in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let conf = format!(
            "worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/nginx-error.log warn;\n\
             worker_rlimit_nofile 20000;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n\
             \x20   access_log off;\n\
             \x20   client_body_temp_path {d}/body;\n\
             \x20   proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   upstream onepush {{\n\
             {servers}\
             \x20       keepalive 64;\n\
             \x20       keepalive_requests 1000000;\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{\n\
             \x20           proxy_pass http://onepush;\n\
             \x20           proxy_http_version 1.1;\n\
             \x20           proxy_set_header Connection \"\";\n\
             \x20           proxy_set_header Host $host;\n\
             \x20           proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
             \x20           proxy_read_timeout 90s;\n\
             \x20           proxy_send_timeout 90s;\n\
             \x20           add_header X-Loadgen-Upstream $upstream_addr always;\n\
             \x20       }}\n\
             \x20   }}\n\
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let stderr = std::fs::File::create(dir.join("nginx.stderr")).unwrap();
        let child = std::process::Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(format!("{d}/"))
            .args(["-e", &format!("{d}/nginx-error.log"), "-g", "daemon off;"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting nginx (Debian's nginx package)");
        let mut ngx = Nginx { child, base: format!("http://127.0.0.1:{port}") };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = ngx.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("nginx.stderr")).unwrap_or_default()
                    + &std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default();
                eprintln!("loadgen: nginx exited ({status}) on attempt {}: {}", attempt + 1, log.trim());
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return ngx;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("nginx did not start; see {d}")
}

/// Node `k` of `--nodes 2` after the first: its own data_dir with the first
/// node's key files (every node needs the same secret, audit and VAPID keys).
fn another_node(bin: &Path, first: &Path, dir: &Path, extra: &str) -> Server {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for key in ["secret.key", "audit.key", "vapid.key"] {
        let from = first.join("data").join(key);
        if from.exists() {
            std::fs::copy(&from, data.join(key)).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        }
    }
    start(bin, dir, extra, "LOADGEN_SERVER_LOG")
}

fn main() {
    let args = parse_args();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    raise_fd_limit();
    let dir = std::env::temp_dir().join(format!("onepush-loadgen-{}", std::process::id()));
    println!(
        "onepush loadgen: {} phones (--push {}, {} phone worker threads), concurrency {:?}, {} s per level, {cores} cores",
        args.phones,
        args.mode.name(),
        args.workers,
        args.levels,
        args.secs
    );
    println!("Argon2 for the round trips: argon2_memory_kib = 1024, argon2_iterations = 1 (benchmark setting, not the default)");

    let rt_dir = dir.join("roundtrip");
    std::fs::create_dir_all(&rt_dir).unwrap();
    // Dropped last of all (after the nodes): the cluster stopped or the database dropped.
    let pg = args.postgres.then(|| Pg::start(&dir.join("pg")));
    if let Some(pg) = &pg {
        let own = if pg.dir.is_some() { "a private cluster (.ci/pg-cluster)" } else { "$ONEPUSH_TEST_POSTGRES" };
        println!("store: PostgreSQL, database {} in {own} at {}", pg.db, pg.base);
    } else {
        println!("store: redb (embedded)");
    }
    let (handoff_tx, handoff_rx) = mpsc::channel();
    let (pushes, push_config) = match args.mode {
        Mode::Parked => (None, String::new()),
        Mode::Webpush => {
            let (p, config) = start_receiver(&rt_dir, args.phones, handoff_tx);
            println!("push: Web Push (aes128gcm + VAPID) to loadgen's HTTPS receiver at {}/push/<phone>", p.base);
            (Some(p), config)
        }
    };
    let store_line = pg.as_ref().map_or(String::new(), |pg| format!("store = \"{}\"\n", pg.url()));
    let extra = format!("argon2_memory_kib = 1024\nargon2_iterations = 1\n{store_line}{push_config}");
    let first = start(&args.bin, &rt_dir, &extra, "LOADGEN_SERVER_LOG");
    let config = first.config.clone();
    let rp_key = cli(&args.bin, &config, &["rp-key", "add", "bench"], "");
    cli(&args.bin, &config, &["operator", "add", "bench", "--password-stdin"], "bench-operator-1");
    let mut servers = vec![first];
    for k in 1..args.nodes {
        servers.push(another_node(&args.bin, &rt_dir, &dir.join(format!("node{k}")), &extra));
    }
    let nodes: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
    let nginx = (args.nodes > 1).then(|| start_nginx(&dir.join("nginx"), &nodes));
    let rp_base = nginx.as_ref().map_or(nodes[0].clone(), |n| n.base.clone());
    if let Some(n) = &nginx {
        println!(
            "nodes: {} on the same database and key files, behind nginx at {} (round robin, keep-alive upstreams)",
            nodes.join(" and "),
            n.base
        );
        println!("  RP logins and outcome GETs through nginx; phone i parks on and answers to node i % {} directly", nodes.len());
    }
    let base = nodes[0].clone();
    let cookie = session(&base);
    let t = Instant::now();
    let phones = setup(&base, &cookie, args.phones, pushes.as_deref());
    let subscribed = if pushes.is_some() { " and subscribed to Web Push" } else { "" };
    println!("setup: {} users and phones registered{subscribed} in {:.1} s", phones.len(), t.elapsed().as_secs_f64());

    let phones = Arc::new(phones);
    let wakes = Arc::new(Wakes::new(phones.len()));
    let rss_threads = || {
        let st: Vec<(u64, u64)> = pids.iter().map(|&p| proc_status(p)).collect();
        (per_node(st.iter().map(|s| s.0)), per_node(st.iter().map(|s| s.1)))
    };
    let fleet = match args.mode {
        Mode::Parked => {
            let fleet = start_fleet(&nodes, phones.clone(), args.workers, wakes.clone());
            let t = Instant::now();
            loop {
                let parked = metric_sum(&nodes, "onepush_parked_requests{side=\"device\"}") as usize;
                if parked >= phones.len() || t.elapsed() > Duration::from_secs(60) {
                    let (rss, threads) = rss_threads();
                    println!("parked: {parked} phones on the device long-poll; server RSS {rss} MB, {threads} threads");
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            fleet
        }
        Mode::Webpush => {
            let fleet =
                start_push_phones(&nodes, phones.clone(), pushes.clone().expect("the receiver"), handoff_rx, args.workers, wakes.clone());
            let (rss, threads) = rss_threads();
            println!("idle: {} phones with a Web Push subscription, none connected; server RSS {rss} MB, {threads} threads", phones.len());
            println!("push p50/p99 ms: from the RP sending the login request until loadgen's receiver has read the whole Web Push POST.");
            println!("  An upper bound on commit -> push service: it also holds the login's own handling and commit before the send.");
            fleet
        }
    };

    let cpu_legend = match (&pg, &nginx) {
        (None, _) => "server+loadgen",
        (Some(_), None) => "server+loadgen+PostgreSQL",
        (Some(_), Some(_)) => "servers+loadgen+PostgreSQL+nginx",
    };
    println!("wake p99: the servers' histogram; same/cross wake p50/p99 ms (count): phone's 200 received -> RP's parked GET returned,");
    println!("  RP GET on the phone's node (same) or on the other node (cross, woken through LISTEN/NOTIFY); CPU ms/trip: {cpu_legend};");
    println!("  others: cores busy with every other process on the machine during the level; load1: the 1-minute load average after it");
    if pg.as_ref().is_some_and(|p| p.postmaster.is_none()) {
        println!("  (the PostgreSQL cluster's CPU is not on this machine: counted as 0)");
    }
    let push_cols = pushes.as_ref().map_or(String::new(), |_| format!(" {:>12} {:>12} {:>8}", "push p50 ms", "push p99 ms", "pushes"));
    println!();
    println!(
        "{:>11} {:>9} {:>9} {:>9} {:>9} {:>11} {:>22} {:>22} {:>9} {:>9} {:>7} {:>11} {:>9} {:>23} {:>6} {:>6}{push_cols}",
        "concurrency",
        "trips",
        "trips/s",
        "p50 ms",
        "p99 ms",
        "wake p99 ms",
        "same wake p50/p99 (n)",
        "cross wake p50/p99 (n)",
        "RSS MB",
        "threads",
        "errors",
        "jobs/commit",
        "commit ms",
        "CPU ms/trip",
        "others",
        "load1"
    );
    let cpu_now = || {
        let servers: f64 = pids.iter().map(|p| cpu_secs(&p.to_string())).sum();
        let db = pg.as_ref().map_or(0.0, Pg::cpu);
        let ngx = nginx.as_ref().map_or(0.0, |n| tree_cpu(n.child.id()));
        [servers, cpu_secs("self"), db, ngx]
    };
    const STORE_STATS: [&str; 3] = ["onepush_store_commits_total", "onepush_store_jobs_total", "onepush_store_commit_seconds_sum"];
    for &c in &args.levels {
        let before = histogram_sum(&nodes, "onepush_wake_latency_seconds");
        let cpu0 = cpu_now();
        let machine0 = (machine_busy_secs(), Instant::now());
        let stats0 = STORE_STATS.map(|m| metric_sum(&nodes, m));
        if let Some(p) = &pushes {
            p.take_latencies();
        }
        wakes.take();
        let level = drive(&rp_base, &nodes, &rp_key, &phones, c, args.secs, pushes.as_deref(), &wakes);
        // The last rounds' phone answers are still being read.
        std::thread::sleep(Duration::from_millis(200));
        let push_cols = pushes.as_ref().map_or(String::new(), |p| {
            let l = p.take_latencies();
            format!(" {:>12.2} {:>12.2} {:>8}", percentile(&l, 0.5), percentile(&l, 0.99), l.len())
        });
        let (same, cross) = wakes.take();
        let after = histogram_sum(&nodes, "onepush_wake_latency_seconds");
        let stats1 = STORE_STATS.map(|m| metric_sum(&nodes, m));
        let commits = (stats1[0] - stats0[0]).max(1.0);
        let per_commit = (stats1[1] - stats0[1]) / commits;
        let commit_ms = (stats1[2] - stats0[2]) * 1000.0 / commits;
        let trips = level.rt.len().max(1) as f64;
        let cpu1 = cpu_now();
        // Cores busy with everything else on the machine meanwhile (another benchmark, a build).
        let ours: f64 = (0..4).map(|k| cpu1[k] - cpu0[k]).sum();
        let others = ((machine_busy_secs() - machine0.0 - ours) / machine0.1.elapsed().as_secs_f64()).max(0.0);
        let per_trip: Vec<String> = (0..4).map(|k| format!("{:.2}", (cpu1[k] - cpu0[k]) * 1000.0 / trips)).collect();
        let shown = match (&pg, &nginx) {
            (None, _) => 2,
            (Some(_), None) => 3,
            (Some(_), Some(_)) => 4,
        };
        let (rss, threads) = rss_threads();
        let wake = hist_quantile(&before, &after, 0.99).map_or("-".into(), |v| format!("{:.2}", v * 1000.0));
        println!(
            "{c:>11} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>11} {same:>22} {cross:>22} {rss:>9} {threads:>9} {:>7} {per_commit:>11.1} {commit_ms:>9.2} {:>23} {others:>6.2} {:>6}{push_cols}",
            level.rt.len(),
            level.rt.len() as f64 / level.elapsed,
            percentile(&level.rt, 0.5),
            percentile(&level.rt, 0.99),
            wake,
            level.errors,
            per_trip[..shown].join("+"),
            load1()
        );
    }
    fleet.stop.store(true, Ordering::Relaxed);
    for t in fleet.threads {
        let _ = t.join();
    }
    match &pushes {
        None => println!(
            "phones answered {} challenges; {} long-polls ended at their wait and were renewed",
            fleet.answered.load(Ordering::Relaxed),
            fleet.repolls.load(Ordering::Relaxed)
        ),
        Some(p) => {
            println!(
                "phones answered {} challenges; receiver read {} pushes over {} TLS connections ({} undecryptable); \
                 {} fetches after a push did not find its challenge",
                fleet.answered.load(Ordering::Relaxed),
                p.received.load(Ordering::Relaxed),
                p.connections.load(Ordering::Relaxed),
                p.undecryptable.load(Ordering::Relaxed),
                fleet.repolls.load(Ordering::Relaxed)
            );
            let outcomes: Vec<String> = nodes
                .iter()
                .flat_map(|base| {
                    let body = ureq::get(format!("{base}/metrics"))
                        .call()
                        .ok()
                        .and_then(|r| r.into_body().read_to_string().ok())
                        .unwrap_or_default();
                    body.lines().filter(|l| l.starts_with("onepush_push_total{")).map(|l| format!("{base}: {l}")).collect::<Vec<_>>()
                })
                .collect();
            println!("server: {}", if outcomes.is_empty() { "no push counted".to_string() } else { outcomes.join(", ") });
            p.shutdown();
        }
    }
    // nginx, then the nodes, then the cluster (or the database).
    drop(nginx);
    drop(servers);
    drop(pg);

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
