//! Two onepush nodes on one PostgreSQL database (SPEC R8), through the real
//! binaries: an RP on node A and the phone on node B, the state the single
//! node kept in memory shared, the sweeper taken over after kill -9.
//!
//! The cluster: `ONEPUSH_TEST_POSTGRES` when set (`.ci/run` starts one), else
//! a private one this binary starts with `.ci/pg-cluster` (Debian's
//! `postgresql` installed) and stops when its last test ends.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use common::*;
use onepush::client::now_secs;
use serde_json::json;

const C: &str = "1000000001";

struct Cluster {
    base: String,
    /// Set when this binary started the cluster (stopped on drop).
    dir: Option<PathBuf>,
}

impl Cluster {
    /// A cluster of its own in `dir` (`.ci/pg-cluster`), stopped on drop.
    fn private(dir: PathBuf) -> Cluster {
        let out = std::process::Command::new("bash").arg(".ci/pg-cluster").arg("start").arg(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "these tests need PostgreSQL: set ONEPUSH_TEST_POSTGRES or install Debian's postgresql ({})",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster { base: String::from_utf8_lossy(&out.stdout).trim().to_string(), dir: Some(dir) }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::process::Command::new("bash").arg(".ci/pg-cluster").arg("stop").arg(dir).status();
        }
    }
}

fn cluster() -> Arc<Cluster> {
    static CLUSTER: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    let mut slot = CLUSTER.lock().unwrap();
    if let Some(c) = slot.upgrade() {
        return c;
    }
    let c = Arc::new(match postgres_base() {
        Some(base) => Cluster { base, dir: None },
        None => Cluster::private(std::env::temp_dir().join(format!("onepush-nodes-pg-{}-{}", std::process::id(), now_secs()))),
    });
    *slot = Arc::downgrade(&c);
    c
}

/// Node A (a `World`: RP key, operator, session) on a new database, and the
/// database's URL.
fn node_a(c: &Cluster, extra: &str) -> (World, String) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let url = new_database(&c.base, &format!("nodes{}_{n}_{}", std::process::id(), now_secs()));
    (World::new(&format!("store = \"{url}\"\n{extra}")), url)
}

/// Another node on the same database, with node A's key files (every node
/// needs the same secret, audit and Web Push keys: README).
fn another_node(a: &Server, url: &str, extra: &str) -> Server {
    let dir = a.dir.with_file_name(format!("{}-b{}", a.dir.file_name().unwrap().to_string_lossy(), now_secs()));
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for key in ["secret.key", "audit.key", "vapid.key"] {
        std::fs::copy(a.dir.join("data").join(key), data.join(key)).unwrap();
    }
    let config = dir.join("onepush.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nstore = \"{url}\"\nargon2_memory_kib = 256\nargon2_iterations = 1\n{extra}\n",
            data.display()
        ),
    )
    .unwrap();
    let mut b = Server::adopt(dir, config);
    b.respawn();
    b
}

/// Node A with a registered phone, and node B beside it with the phone
/// talking to B.
fn phone_on_node_b(c: &Cluster) -> (World, String, Server, Phone) {
    let (w, url) = node_a(c, "");
    let mut phone = w.registered(C, "jweb", "taro");
    let b = another_node(&w.s, &url, "");
    phone.rebase(&b.base);
    (w, url, b, phone)
}

/// The phone's long-poll in the background (started 300 ms before this
/// returns): the challenges it got, and how long it waited.
fn poll_in_background(phone: &Phone) -> std::thread::JoinHandle<(Vec<serde_json::Value>, Duration)> {
    let phone = phone.clone();
    let polling = std::thread::spawn(move || {
        let t = Instant::now();
        (phone.poll(20), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    polling
}

#[test]
fn the_rp_on_one_node_and_the_phone_on_the_other_see_each_others_decisions_at_once() {
    let c = cluster();
    let (w, _, b, mut phone) = phone_on_node_b(&c);

    // The phone parks on B; the login on A reaches it through NOTIFY, well
    // before the 10 s re-check.
    let polling = poll_in_background(&phone);
    let id = w.login_challenge(C, "taro");
    let (list, took) = polling.join().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["challenge_id"], id.as_str());
    assert!(took < Duration::from_secs(3), "the phone on B heard of A's challenge after {took:?}");

    // The RP parks on A; the phone answers on B.
    let rp = {
        let (base, key, id) = (w.s.base.clone(), w.rp_key.clone(), id.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = request("GET", &format!("{base}/api/v1/challenges/{id}?wait=20"), &[("Authorization", format!("Bearer {key}"))], None);
            (r, t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(phone.answer(&list[0], "approve").status, 200);
    let (r, took) = rp.join().unwrap();
    assert_eq!(r.json["status"], "approved", "{}", r.text);
    assert!(took < Duration::from_secs(3), "the RP on A heard of B's decision after {took:?}");

    // Answered once, whichever node is asked.
    phone.rebase(&w.s.base);
    let again = phone.answer(&list[0], "reject");
    assert_eq!((again.status, again.code()), (409, "challenge_closed"), "{}", again.text);
    assert_eq!(request("GET", &b.url(&format!("/api/v1/challenges/{id}")), &w.rp(), None).json["status"], "approved");

    // One audit chain, written by both nodes.
    for node in [&w.s, &b] {
        let (code, out, err) = node.cli(&["audit", "verify"], None);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("audit log intact"), "{out}");
    }
}

#[test]
fn lockout_sessions_operators_and_the_anti_fatigue_window_are_shared() {
    let c = cluster();
    let (w, url) = node_a(&c, "max_challenges_per_window = 3\nmax_pending_per_user = 5");
    w.registered(C, "jweb", "taro");
    w.user(C, "jiro", "user");
    let b = another_node(&w.s, &url, "max_challenges_per_window = 3\nmax_pending_per_user = 5");
    let login = |s: &Server, uid: &str, password: &str| {
        request(
            "POST",
            &s.url("/api/v1/login"),
            &w.rp(),
            Some(json_body(&json!({"contract_no": C, "user_id": uid, "password": password, "client": {"ip": "203.0.113.7"}})).unwrap()),
        )
    };

    // Five wrong passwords, alternating nodes, lock the user on both.
    for i in 0..5 {
        let node = if i % 2 == 0 { &w.s } else { &b };
        assert_eq!(login(node, "jiro", "wrong-password").json["reason"], "bad_credentials");
    }
    for node in [&w.s, &b] {
        assert_eq!(login(node, "jiro", PASSWORD).json, json!({"result": "deny", "reason": "password_locked"}));
    }

    // The anti-fatigue window counts the logins of both nodes.
    for i in 0..3 {
        let node = if i % 2 == 0 { &b } else { &w.s };
        assert_eq!(login(node, "taro", PASSWORD).json["result"], "challenge");
    }
    for node in [&w.s, &b] {
        let r = login(node, "taro", PASSWORD);
        assert_eq!((r.json["result"].as_str(), r.json["reason"].as_str()), (Some("deny"), Some("too_many_challenges")), "{}", r.text);
    }

    // A session opened on A works on B, and signing out on B ends it on A.
    let admin = w.admin();
    assert_eq!(request("GET", &b.url("/api/v1/admin/contracts"), &admin, None).status, 200);
    assert_eq!(request("DELETE", &b.url("/api/v1/admin/session"), &admin, None).status / 100, 2);
    assert_eq!(request("GET", &w.s.url("/api/v1/admin/contracts"), &admin, None).status, 401);

    // An operator disabled through node B cannot sign in on A, and a session
    // made on A ends when B disables it.
    let r = w.s.post("/api/v1/admin/session", &[], &json!({"username": "alice", "password": "operator-pass-1"}));
    let cookie = vec![("Cookie", r.header("set-cookie").unwrap().split(';').next().unwrap().to_string())];
    assert_eq!(request("GET", &b.url("/api/v1/admin/contracts"), &cookie, None).status, 200);
    let (code, _, err) = b.cli(&["operator", "add", "bob", "--password-stdin"], Some("operator-pass-2\n"));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = b.cli(&["operator", "disable", "alice"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(request("GET", &w.s.url("/api/v1/admin/contracts"), &cookie, None).status, 401);
    let r = w.s.post("/api/v1/admin/session", &[], &json!({"username": "alice", "password": "operator-pass-1"}));
    assert_eq!(r.status, 401, "{}", r.text);
}

#[test]
fn one_bootstrap_code_for_every_node_spent_once() {
    let c = cluster();
    let url = new_database(&c.base, &format!("boot{}_{}", std::process::id(), now_secs()));
    let a = Server::start(&format!("store = \"{url}\""));
    let code = a.bootstrap_code.clone().expect("node A shows the code");
    let b = another_node(&a, &url, "");
    assert_eq!(b.bootstrap_code, None, "node B shows no second code while A's is valid");
    let body = |name: &str| json!({"code": code, "username": name, "password": "operator-pass-1"});
    let r = b.post("/api/v1/admin/bootstrap", &[], &body("alice"));
    assert_eq!(r.status / 100, 2, "A's code works on B: {}", r.text);
    let r = a.post("/api/v1/admin/bootstrap", &[], &body("mallory"));
    assert_eq!(r.status, 409, "spent on B, refused on A: {}", r.text);
}

#[test]
fn another_node_takes_over_the_sweeper_after_kill_9() {
    let c = cluster();
    let extra = "challenge_ttl = \"2s\"\nsweep_interval = \"200ms\"";
    let (mut w, url) = node_a(&c, extra);
    w.registered(C, "jweb", "taro");
    let mut b = another_node(&w.s, &url, extra);
    let sweeps = |s: &Server| s.log().contains("sweeper: this node");
    let a_sweeps = eventually("a node to take the sweeper lock", 10, || (sweeps(&w.s) || sweeps(&b)).then(|| sweeps(&w.s)));
    assert!(!(sweeps(&w.s) && sweeps(&b)), "one sweeper at a time");
    // kill -9 the sweeping node; the other one must expire the next challenge.
    let (survivor_is_a, rp) = if a_sweeps {
        w.s.kill();
        (false, &b)
    } else {
        b.kill();
        (true, &w.s)
    };
    let login = request(
        "POST",
        &rp.url("/api/v1/login"),
        &w.rp(),
        Some(json_body(&json!({"contract_no": C, "user_id": "taro", "password": PASSWORD, "client": {"ip": "203.0.113.7"}})).unwrap()),
    );
    assert_eq!(login.json["result"], "challenge", "{}", login.text);
    let id = login.json["challenge_id"].as_str().unwrap().to_string();
    let t = Instant::now();
    let status = eventually("the survivor to expire the challenge", 30, || {
        let r = request("GET", &rp.url(&format!("/api/v1/challenges/{id}")), &w.rp(), None);
        (r.json["status"] != "pending").then(|| r.json["status"].clone())
    });
    assert_eq!(status, "undelivered", "closed by the survivor's sweeper");
    assert!(sweeps(if survivor_is_a { &w.s } else { &b }), "the survivor took the lock");
    eprintln!("challenge closed {:?} after the login (ttl 2 s), by the surviving node", t.elapsed());
    if survivor_is_a {
        b.kill();
    } else {
        w.s.kill();
    }
}

#[test]
fn an_embedded_store_migrates_to_postgres_verified_and_serves_from_there() {
    let c = cluster();
    let mut w = World::new(EMBEDDED);
    let mut phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let list = phone.poll(5);
    assert_eq!(phone.answer(&list[0], "approve").status, 200);
    w.user(C, "jiro", "user");
    for _ in 0..2 {
        w.login(C, "jiro", "wrong-password");
    }
    let url = new_database(&c.base, &format!("migrate{}_{}", std::process::id(), now_secs()));

    let (code, _, err) = w.s.cli(&["migrate", "--to", &url], None);
    assert_eq!(code, 1, "refused while the server runs");
    assert!(err.contains("stop it first"), "{err}");
    w.s.kill();
    let (code, out, err) = w.s.cli(&["migrate", "--to", &url], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("migrated and verified"), "{out}");
    let (code, _, err) = w.s.cli(&["migrate", "--to", &url], None);
    assert_eq!(code, 1, "a second copy into the same database is refused");
    assert!(err.contains("not empty"), "{err}");

    // The same node, now on PostgreSQL: users, phones, decisions, failure
    // counts, operators and RP keys all came along.
    let config = std::fs::read_to_string(&w.s.config).unwrap().replace("store = \"\"", &format!("store = \"{url}\""));
    std::fs::write(&w.s.config, config).unwrap();
    w.s.respawn();
    phone.rebase(&w.s.base);
    assert_eq!(w.challenge(&id, 0).json["status"], "approved");
    let u = w.s.get(&format!("/api/v1/users/{C}/taro"), &w.rp());
    assert_eq!(
        (u.json["registration"].as_str(), u.json["token_id"].as_str()),
        (Some("active"), Some(phone.token_id.as_str())),
        "{}",
        u.text
    );
    let r = w.s.post("/api/v1/admin/session", &[], &json!({"username": "alice", "password": "operator-pass-1"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let id2 = w.login_challenge(C, "taro");
    let list = phone.poll(5);
    assert_eq!(list[0]["challenge_id"], id2.as_str());
    assert_eq!(phone.answer(&list[0], "reject").status, 200);
    assert_eq!(w.challenge(&id2, 0).json["status"], "rejected");
    let (code, out, err) = w.s.cli(&["audit", "verify"], None);
    assert_eq!(code, 0, "{out}{err}");
    // Three more wrong passwords lock the user: the two before the copy counted.
    for _ in 0..3 {
        w.login(C, "jiro", "wrong-password");
    }
    assert_eq!(w.login(C, "jiro", PASSWORD).json["reason"], "password_locked");
}

#[test]
fn a_notification_lost_while_the_listener_reconnects_is_made_good_by_the_recheck() {
    let c = cluster();
    let (w, url, b, phone) = phone_on_node_b(&c);
    let polling = poll_in_background(&phone);
    // Cut every listener's connection (A's and B's), then log in on A at
    // once: B is not listening when A's commit notifies.
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let cut = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN onepush'",
            &[],
        )
        .unwrap()
        .len();
    assert_eq!(cut, 2, "one listener per node");
    let id = w.login_challenge(C, "taro");
    let (list, took) = polling.join().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["challenge_id"], id.as_str());
    eprintln!("the phone parked on B got A's challenge after {took:?}, across a lost notification");
    eventually("B to log the reconnection", 5, || b.log().contains("listener lost its connection").then_some(()));
}

#[test]
fn no_read_snapshot_stays_open_once_a_node_idles() {
    let c = cluster();
    let (w, url) = node_a(&c, "");
    let phone = w.registered(C, "jweb", "taro");
    let id = w.login_challenge(C, "taro");
    let list = phone.poll(5);
    assert_eq!(phone.answer(&list[0], "approve").status, 200);
    assert_eq!(w.challenge(&id, 0).json["status"], "approved");
    // A read leaves its snapshot for the next use of its connection to
    // end; a connection idle for half a second has it ended, so none lives
    // long enough to hold back vacuum (the sweeper reads every second).
    std::thread::sleep(Duration::from_secs(2));
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    for _ in 0..30 {
        let old: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'onepush' \
                 AND state LIKE 'idle in transaction%' AND xact_start < now() - interval '2 seconds'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(old, 0, "a read snapshot open for more than 2 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_rp_key_revoked_on_one_node_is_refused_by_the_other_at_once() {
    let c = cluster();
    let (w, url) = node_a(&c, "");
    let b = another_node(&w.s, &url, "");
    let status = |s: &Server| request("GET", &s.url(&format!("/api/v1/users/{C}/nobody")), &w.rp(), None).status;
    // Both nodes have looked the key up (and node A caches it).
    assert_eq!((status(&w.s), status(&b)), (404, 404));
    let (code, _, err) = b.cli(&["rp-key", "revoke", "bank"], None);
    assert_eq!(code, 0, "{err}");
    let t = Instant::now();
    eventually("node A to refuse the revoked key", 5, || (status(&w.s) == 401).then_some(()));
    assert!(t.elapsed() < Duration::from_secs(2), "refused after {:?}: by the NOTIFY, not the 10 s re-check", t.elapsed());
    assert_eq!(status(&b), 401);
}

#[test]
fn a_token_revoked_on_one_node_is_refused_by_the_other_at_once() {
    let c = cluster();
    let (w, _url, _b, phone) = phone_on_node_b(&c);
    // Node B has looked the token up (and caches it).
    assert_eq!(phone.signed("GET", "/api/v1/device/challenges", None).status, 200);
    assert_eq!(phone.signed("GET", "/api/v1/device/challenges", None).status, 200);
    let r = w.s.post(&format!("/api/v1/admin/contracts/{C}/users/taro/deregister"), &w.admin(), &json!({"reason": "lost phone"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let t = Instant::now();
    eventually("node B to refuse the revoked token", 5, || {
        let r = phone.signed("GET", "/api/v1/device/challenges", None);
        (r.status == 403).then(|| assert_eq!(r.code(), "token_revoked", "{}", r.text))
    });
    assert!(t.elapsed() < Duration::from_secs(2), "refused after {:?}: by the NOTIFY, not the 10 s re-check", t.elapsed());
}

#[test]
fn after_a_database_restart_every_request_is_served() {
    // A cluster of its own: restarting the shared one would disturb the other tests.
    let dir = std::env::temp_dir().join(format!("onepush-restart-pg-{}-{}", std::process::id(), now_secs()));
    let pg = dir.join("pg");
    let cluster = Cluster::private(pg.clone());
    let url = new_database(&cluster.base, "restart");
    let w = World::new(&format!("store = \"{url}\""));
    let phone = w.registered(C, "jweb", "taro");
    let served = |when: &str| {
        for i in 0..10 {
            let r = w.login(C, "taro", PASSWORD);
            assert_eq!(r.status, 200, "login {i} {when}: {}", r.text);
            let r = phone.signed("GET", "/api/v1/device/challenges", None);
            assert_eq!(r.status, 200, "phone's fetch {i} {when}: {}", r.text);
            let r = w.s.get(&format!("/api/v1/users/{C}/taro"), &w.rp());
            assert_eq!(r.status, 200, "user look-up {i} {when}: {}", r.text);
        }
    };
    // The node's pool now holds idle connections, which the restart kills.
    served("before the restart");
    let restarted = std::process::Command::new("bash").arg(".ci/pg-cluster").arg("restart").arg(&pg).output().unwrap();
    assert!(restarted.status.success(), "{}", String::from_utf8_lossy(&restarted.stderr));
    // Not one failure: a pooled connection found dead is replaced at its first use.
    served("after the restart");
    assert_eq!(w.s.get("/healthz", &[]).status, 200);
    drop(w);
    drop(cluster);
}

#[test]
fn a_nodes_pooled_connections_are_capped_and_a_request_waits_for_one() {
    use onepush::store::pg::{Pool, POOL_MAX};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let c = cluster();
    let url = new_database(&c.base, &format!("cap{}_{}", std::process::id(), now_secs()));
    let pool = Pool::open(&url).unwrap();
    // POOL_MAX threads each hold a connection until `released` counts past them.
    let (held, released) = (Arc::new(std::sync::Barrier::new(POOL_MAX + 1)), Arc::new(AtomicUsize::new(0)));
    let holders: Vec<_> = (0..POOL_MAX)
        .map(|i| {
            let (pool, held, released) = (pool.clone(), held.clone(), released.clone());
            std::thread::spawn(move || {
                let conn = pool.get().unwrap();
                held.wait();
                while released.load(SeqCst) <= i {
                    std::thread::sleep(Duration::from_millis(10));
                }
                drop(conn);
            })
        })
        .collect();
    held.wait();
    assert_eq!(pool.connections(), POOL_MAX);
    let asked = Instant::now();
    let waiter = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let conn = pool.get().unwrap();
            drop(conn);
            asked.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(!waiter.is_finished(), "a request beyond the cap waits");
    assert_eq!(pool.connections(), POOL_MAX, "and no connection is opened for it");
    released.store(1, SeqCst);
    let waited = waiter.join().unwrap();
    assert!(waited >= Duration::from_millis(500), "served once one was given back, after {waited:?}");
    assert!(pool.connections() <= POOL_MAX);
    released.store(POOL_MAX, SeqCst);
    for h in holders {
        h.join().unwrap();
    }
}

#[test]
fn tls_to_the_database_is_verified_with_sslrootcert() {
    use std::os::unix::fs::PermissionsExt;
    // A cluster of its own: TLS on, with a certificate from a test CA.
    let dir = std::env::temp_dir().join(format!("onepush-tls-pg-{}-{}", std::process::id(), now_secs()));
    let cluster = Cluster::private(dir.join("pg"));
    let TestCa { ca_pem, leaf, leaf_key } = test_ca();
    let data = dir.join("pg").join("data");
    for (name, text) in [("server.crt", leaf.pem()), ("server.key", leaf_key.serialize_pem())] {
        let path = data.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            // The server runs as postgres (.ci/pg-cluster), which must own its key.
            let owner = std::fs::metadata(&data).unwrap();
            std::os::unix::fs::chown(&path, Some(std::os::unix::fs::MetadataExt::uid(&owner)), None).unwrap();
        }
    }
    let ca_file = dir.join("db-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let mut admin = postgres::Client::connect(&format!("{}/postgres", cluster.base), postgres::NoTls).unwrap();
    admin.batch_execute("ALTER SYSTEM SET ssl = on").unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let url = new_database(&cluster.base, "tls");

    // verify-full with the CA: served, over TLS.
    let s = Server::start(&format!("store = \"{url}?sslmode=verify-full&sslrootcert={}\"", ca_file.display()));
    assert_eq!(s.get("/healthz", &[]).status, 200);
    let over_tls: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = 'tls' AND application_name = 'onepush' AND ssl",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(over_tls >= 1, "onepush's connections use TLS");
    let plain: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = 'tls' AND application_name = 'onepush' AND NOT ssl",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(plain, 0, "and none without");
    drop(s);

    // Without the CA the certificate is not trusted: the start fails and says so.
    let cfg_dir = dir.join("untrusted");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let config = cfg_dir.join("onepush.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nstore = \"{url}?sslmode=require\"\n", cfg_dir.join("data").display()),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onepush")).args(["serve", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PostgreSQL") && err.to_lowercase().contains("certificate"), "{err}");
    drop(cluster);
}

#[test]
fn the_schema_is_migrated_by_a_server_never_by_a_read_only_command_and_a_newer_one_is_refused() {
    let c = cluster();
    let url = new_database(&c.base, &format!("schema{}_{}", std::process::id(), now_secs()));
    let mut s = Server::start(&format!("store = \"{url}\""));
    s.kill();
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let version = |db: &mut postgres::Client| -> i32 { db.query_one("SELECT max(version) FROM onepush_schema", &[]).unwrap().get(0) };
    let newest = version(&mut db);
    assert_eq!(newest, 2, "migrated at the first start (a new migration: undo it below instead)");

    // As if an older onepush (schema 1) had made it: audit verify reads, and
    // refuses, without migrating.
    db.batch_execute("DROP TABLE admin_sessions, bootstrap_code; DELETE FROM onepush_schema WHERE version = 2").unwrap();
    let (code, out, err) = s.cli(&["audit", "verify"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("start a server of this version first"), "{err}");
    assert_eq!(version(&mut db), newest - 1, "nothing migrated by a read-only command");
    s.respawn();
    assert_eq!(version(&mut db), newest, "the server migrates");
    let (code, out, err) = s.cli(&["audit", "verify"], None);
    assert_eq!(code, 0, "{out}{err}");
    s.kill();

    // A schema from a newer onepush: refused at start, named.
    db.batch_execute("INSERT INTO onepush_schema (version) VALUES (99)").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onepush")).args(["serve", "--config"]).arg(&s.config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("version 99, newer than this onepush knows"), "{err}");
}

#[test]
fn a_job_whose_statement_fails_does_not_take_its_batch_down_unnoticed() {
    use onepush::domain::account::{Contract, ContractStatus};
    use onepush::store::{Durability, Reader, Store};
    let c = cluster();
    let url = new_database(&c.base, &format!("batch{}_{}", std::process::id(), now_secs()));
    let store = Store::open_postgres(&url).unwrap();
    let w = store.writer();
    let contract = |no: &str| Contract {
        contract_no: no.into(),
        name: "Mito Trading".into(),
        edition: "jweb".into(),
        status: ContractStatus::Active,
        service_admin: None,
        created_at: 0,
        cancelled_at: None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    // A slow first job, so that the next two queue up into one batch.
    w.submit(
        Durability::Durable,
        |_| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        },
        |_| {},
    );
    let written = contract("A");
    let t = tx.clone();
    w.submit(Durability::Durable, move |tx| tx.put_contract(&written), move |r| t.send(("A", r.is_ok())).unwrap());
    // Fails in PostgreSQL without writing (a NUL in a text key), which
    // aborts the transaction that job A wrote in.
    let t = tx.clone();
    w.submit(Durability::Durable, |tx| tx.contracts_after("x\u{0}y", 1).map(|_| ()), move |r| t.send(("B", r.is_ok())).unwrap());
    let mut results: Vec<_> = (0..2).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    results.sort();
    assert_eq!(results, [("A", true), ("B", false)]);
    assert!(store.read().unwrap().contract("A").unwrap().is_some(), "what job A was told is committed is there");
}
