//! The PostgreSQL backend (SPEC R8, `store = "postgres://…"`): the same
//! records, indexes and write jobs as the embedded store, so that several
//! onepush nodes can serve from one database.
//!
//! - Schema: `migrations/postgres/*.sql`, applied at start under an advisory
//!   lock (two nodes starting together migrate once); a database with a newer
//!   schema than this binary knows is refused.
//! - Reads: `Store::read` is a `REPEATABLE READ, READ ONLY` transaction on a
//!   pooled connection: every getter sees one snapshot, as in redb.
//!   `Store::read_latest`, for the requests' own look-ups, runs each getter
//!   as one statement outside any transaction, and reads contracts, RP keys
//!   and tokens through the node's `RecordCache`.
//! - Writes: each node keeps its single batching writer. A batch is one
//!   `READ COMMITTED` transaction that first takes a transaction-level
//!   advisory lock (`WRITE_LOCK`), so the batches of every node run one after
//!   another, exactly as one writer's would: the rules a job checks before
//!   writing hold across nodes, and the audit chain (read under the lock)
//!   stays one chain. A batch holds the lock only until its commit, and
//!   batching shares that commit between the jobs of a node.
//! - Lazy jobs (the delivered mark) commit with `synchronous_commit = off`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use crate::domain::Ms;
use crate::error::{Error, Result};

/// The schema this binary knows, and how to reach it from an older one.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_initial.sql")),
    (2, include_str!("../../migrations/postgres/0002_shared_sessions.sql")),
];

/// Advisory lock keys (`pg_advisory_*`): onepush's own, "onep" + a number.
pub const WRITE_LOCK: i64 = 0x6f6e_6570_0000_0001;
pub const MIGRATE_LOCK: i64 = 0x6f6e_6570_0000_0002;

/// Idle connections kept for reads.
const IDLE: usize = 16;

/// Pooled connections a node keeps at most (idle or in use; its listener's
/// and sweeper's come on top): every node shares PostgreSQL's
/// `max_connections`. A request that finds them all in use waits for one,
/// up to `POOL_WAIT`, then gets 503. The writer never waits (one connection
/// more at most), nor does a thread that already holds one (it would wait
/// for itself).
pub const POOL_MAX: usize = 24;
const POOL_WAIT: Duration = Duration::from_secs(10);

thread_local! {
    /// Pooled connections this thread holds (`Pool::get_raw`).
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        // The server's message (and its SQLSTATE) when it sent one.
        match e.as_db_error() {
            Some(db) => Error::Internal(format!("store (postgres): {} ({})", db.message(), db.code().code())),
            None => {
                // With its causes: "error performing TLS handshake: … certificate verify failed".
                let mut m = format!("store (postgres): {e}");
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    m.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                Error::Internal(m)
            }
        }
    }
}

/// A connection and its prepared statements (a statement prepared once per
/// connection: a query by text alone costs a second round trip).
pub struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// The pool's count of its connections, while this one exists.
    _counted: Option<Arc<()>>,
    /// A read snapshot is still open on it: a read's end is not sent on its
    /// own but with the next use's first command (one round trip fewer per
    /// read), or by `Pool::tidy` once the connection has idled.
    in_read: bool,
}

/// How the connections are secured, from the URL's libpq `sslmode` and
/// `sslrootcert` (the driver knows neither `verify-ca`/`verify-full` nor
/// `sslrootcert`, so they are taken out of the URL here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslWanted {
    Disable,
    /// TLS when the server offers it (libpq's default), verified when used.
    Prefer,
    Require,
    /// The certificate chain, not the host name.
    VerifyCa,
    VerifyFull,
}

/// The driver's config and the TLS wanted, from a `store` URL.
pub fn parse_url(url: &str) -> std::result::Result<(postgres::Config, SslWanted, Option<std::path::PathBuf>), String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut wanted, mut root) = (SslWanted::Prefer, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => {
                wanted = match v {
                    "disable" => SslWanted::Disable,
                    "allow" | "prefer" => SslWanted::Prefer,
                    "require" => SslWanted::Require,
                    "verify-ca" => SslWanted::VerifyCa,
                    "verify-full" => SslWanted::VerifyFull,
                    other => return Err(format!("sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full")),
                }
            }
            Some(("sslrootcert", v)) => root = Some(std::path::PathBuf::from(v)),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    let mut config: postgres::Config = url.parse().map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    config.ssl_mode(match wanted {
        SslWanted::Disable => postgres::config::SslMode::Disable,
        SslWanted::Prefer => postgres::config::SslMode::Prefer,
        _ => postgres::config::SslMode::Require,
    });
    Ok((config, wanted, root))
}

/// The TLS connector for `wanted`: the system's CA store plus `root` (PEM,
/// one or more certificates). Whenever TLS is used the server's certificate
/// is verified, and its name too except with `verify-ca`: stricter than
/// libpq's `prefer`/`require`, which check nothing.
fn connector(
    wanted: SslWanted,
    root: Option<&std::path::Path>,
) -> std::result::Result<Option<postgres_native_tls::MakeTlsConnector>, String> {
    if wanted == SslWanted::Disable {
        return Ok(None);
    }
    let mut b = native_tls::TlsConnector::builder();
    if let Some(path) = root {
        let pem = std::fs::read_to_string(path).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
        let mut found = 0;
        for block in pem.split_inclusive("-----END CERTIFICATE-----").filter(|b| b.contains("-----BEGIN CERTIFICATE-----")) {
            let cert =
                native_tls::Certificate::from_pem(block.trim().as_bytes()).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            b.add_root_certificate(cert);
            found += 1;
        }
        if found == 0 {
            return Err(format!("sslrootcert {}: no PEM certificate in it", path.display()));
        }
    }
    if wanted == SslWanted::VerifyCa {
        b.danger_accept_invalid_hostnames(true);
    }
    let tls = b.build().map_err(|e| format!("TLS to the database: {e}"))?;
    Ok(Some(postgres_native_tls::MakeTlsConnector::new(tls)))
}

impl Conn {
    fn connect(url: &str, tls: Option<&postgres_native_tls::MakeTlsConnector>, counted: Option<Arc<()>>) -> Result<Conn> {
        let (mut config, _, _) = parse_url(url).map_err(|e| Error::Internal(format!("store: {e}")))?;
        // A peer that vanishes without closing (a frozen node, a cut
        // network) is found in about 25 s (10 s idle, then 3 probes 5 s
        // apart), not the system's 2 hours; the URL may set its own.
        if !url.contains("keepalives_idle") {
            config.keepalives_idle(Duration::from_secs(10));
        }
        if !url.contains("keepalives_interval") {
            config.keepalives_interval(Duration::from_secs(5));
        }
        if !url.contains("keepalives_retries") {
            config.keepalives_retries(3);
        }
        // An unreachable database fails a request in seconds, not minutes.
        if !url.contains("connect_timeout") {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("onepush");
        if config.get_password().is_none() {
            if let Some(password) = pgpass_password(&config, std::env::var_os("PGPASSFILE").map(std::path::PathBuf::from)) {
                config.password(password);
            }
        }
        let client = match tls {
            Some(tls) => config.connect(tls.clone())?,
            None => config.connect(NoTls)?,
        };
        Ok(Conn { client, statements: HashMap::new(), _counted: counted, in_read: false })
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let s = self.statement(sql)?;
        Ok(self.client.query(&s, params)?)
    }

    pub fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let s = self.statement(sql)?;
        Ok(self.client.execute(&s, params)?)
    }

    pub fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql)?)
    }
}

/// The password for `config` from a libpq password file (`PGPASSFILE`, else
/// `~/.pgpass`): the first line whose host, port, database and user match
/// (`*` matches anything; `\:` and `\\` escape). libpq's rule: a file
/// readable by group or others is ignored.
fn pgpass_password(config: &postgres::Config, file: Option<std::path::PathBuf>) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let file = file.or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    let meta = std::fs::metadata(&file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        log::warn!("store: {} is readable by others; ignored (chmod 0600 it)", file.display());
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or_default();
    let db = config.get_dbname().unwrap_or(user);
    pgpass_lookup(&text, [host.as_str(), port.as_str(), db, user])
}

fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        // Split on unescaped ':' and unescape.
        let mut fields = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => fields.last_mut()?.extend(chars.next()),
                ':' => fields.push(String::new()),
                c => fields.last_mut()?.push(c),
            }
        }
        if fields.len() == 5 && fields.iter().zip(wanted).all(|(f, w)| f == "*" || f == w) {
            return fields.pop();
        }
    }
    None
}

/// The node's connections to the database.
pub struct Pool {
    url: String,
    /// Made once: loading the system's CA store per connection costs.
    tls: Option<postgres_native_tls::MakeTlsConnector>,
    idle: Mutex<Vec<(Conn, Instant)>>,
    /// Signalled when a pooled connection is given back.
    freed: std::sync::Condvar,
    /// One more strong count per pooled connection in existence (`Conn::_counted`).
    live: Arc<()>,
    pub cache: RecordCache,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        write!(f, "Pool(postgres)")
    }
}

impl Pool {
    /// Connects, and brings the schema up to this binary's version.
    pub fn open(url: &str) -> Result<Arc<Pool>> {
        let pool = Pool::connect(url)?;
        let mut conn = pool.get()?;
        migrate(&mut conn)?;
        drop(conn);
        Ok(pool)
    }

    /// Connects without changing anything: the schema must already be this
    /// binary's (the read-only commands, `audit verify` and `audit export`).
    pub fn open_read_only(url: &str) -> Result<Arc<Pool>> {
        let pool = Pool::connect(url)?;
        let newest = MIGRATIONS.last().map_or(0, |m| m.0);
        let current: i32 = {
            let mut c = pool.get()?;
            let exists = !c.query("SELECT 1 FROM pg_tables WHERE tablename = 'onepush_schema'", &[])?.is_empty();
            if exists {
                c.query("SELECT coalesce(max(version), 0) FROM onepush_schema", &[])?.first().map_or(0, |r| r.get(0))
            } else {
                0
            }
        };
        if current != newest {
            return Err(Error::Conflict(format!(
                "the database's onepush schema is version {current}, this onepush's is {newest}: start a server of this version first (it migrates), then run this again"
            )));
        }
        Ok(pool)
    }

    fn connect(url: &str) -> Result<Arc<Pool>> {
        let (_, wanted, root) = parse_url(url).map_err(|e| Error::Internal(format!("store: {e}")))?;
        let tls = connector(wanted, root.as_deref()).map_err(|e| Error::Internal(format!("store: {e}")))?;
        Ok(Arc::new(Pool {
            url: url.to_string(),
            tls,
            idle: Mutex::new(Vec::new()),
            freed: std::sync::Condvar::new(),
            live: Arc::new(()),
            cache: RecordCache::default(),
        }))
    }

    /// A connection outside any transaction.
    pub fn get(self: &Arc<Self>) -> Result<Pooled> {
        self.first_use(false, |c| {
            if c.in_read {
                c.batch("ROLLBACK")?;
                c.in_read = false;
            }
            Ok(())
        })
    }

    /// A connection on which `begin` succeeded. A pooled connection may be
    /// dead without knowing it (the database restarted): if `begin` fails on
    /// one, it is thrown away and `begin` tried once on a new connection
    /// (nothing was done on the first).
    fn first_use(self: &Arc<Self>, writer: bool, begin: impl Fn(&mut Pooled) -> Result<()>) -> Result<Pooled> {
        let mut conn = self.get_raw(writer)?;
        match begin(&mut conn) {
            Ok(()) => Ok(conn),
            Err(first) => {
                conn.conn.take();
                let mut fresh = self.fresh()?;
                if let Err(e) = begin(&mut fresh) {
                    fresh.conn.take();
                    log::warn!("store: a pooled connection failed ({first}), and a new one too");
                    return Err(e);
                }
                Ok(fresh)
            }
        }
    }

    /// A new connection, never a pooled one (after a pooled one failed: the
    /// others may be as dead, the database having restarted).
    fn fresh(self: &Arc<Self>) -> Result<Pooled> {
        Ok(self.wrap(Conn::connect(&self.url, self.tls.as_ref(), Some(self.live.clone()))?))
    }

    /// A connection handed to this thread.
    fn wrap(self: &Arc<Self>, c: Conn) -> Pooled {
        HELD.with(|h| h.set(h.get() + 1));
        Pooled { conn: Some(c), pool: self.clone() }
    }

    /// Pooled connections in existence, idle or in use.
    pub fn connections(&self) -> usize {
        Arc::strong_count(&self.live) - 1
    }

    /// A connection outside any transaction, preferring one that holds no
    /// read snapshot (which would cost a round trip to end).
    fn get_clean(self: &Arc<Self>) -> Result<Pooled> {
        let clean = {
            let mut idle = crate::sync::lock(&self.idle);
            idle.iter().rposition(|(c, _)| !c.in_read).map(|i| idle.remove(i).0)
        };
        match clean {
            Some(c) if !c.client.is_closed() => Ok(self.wrap(c)),
            _ => self.get(),
        }
    }

    /// A connection that may still hold a read snapshot (`Conn::in_read`):
    /// an idle one, or a new one while fewer than `POOL_MAX` exist, or the
    /// first given back within `POOL_WAIT` (the `writer`, and a thread that
    /// holds one already, never wait).
    fn get_raw(self: &Arc<Self>, writer: bool) -> Result<Pooled> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut idle = crate::sync::lock(&self.idle);
        loop {
            if let Some((c, _)) = idle.pop() {
                if c.client.is_closed() {
                    continue;
                }
                drop(idle);
                return Ok(self.wrap(c));
            }
            if self.connections() < POOL_MAX || writer || HELD.with(|h| h.get()) > 0 {
                drop(idle);
                let c = Conn::connect(&self.url, self.tls.as_ref(), Some(self.live.clone())).map_err(|e| match e {
                    Error::Internal(m) => Error::Internal(format!("{m} (connecting to the store)")),
                    other => other,
                })?;
                return Ok(self.wrap(c));
            }
            let now = Instant::now();
            if now >= deadline {
                log::warn!("store: all {POOL_MAX} connections to the database stayed in use for {POOL_WAIT:?}; answering 503");
                return Err(Error::Overloaded);
            }
            // A short step: a connection dropped outside `Pooled` frees its
            // place without a signal.
            idle = match self.freed.wait_timeout(idle, (deadline - now).min(Duration::from_millis(50))) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Ends the read snapshots of connections idle for more than a moment,
    /// so that no snapshot holds back PostgreSQL's vacuum (the listener
    /// calls this every second).
    pub fn tidy(self: &Arc<Self>) {
        let stale: Vec<Conn> = {
            let mut idle = crate::sync::lock(&self.idle);
            let (stale, fresh): (Vec<_>, Vec<_>) =
                idle.drain(..).partition(|(c, at)| c.in_read && at.elapsed() >= Duration::from_millis(500));
            *idle = fresh;
            stale.into_iter().map(|(c, _)| c).collect()
        };
        for mut c in stale {
            if c.batch("ROLLBACK").is_ok() {
                c.in_read = false;
                drop(self.wrap(c));
            }
        }
        self.freed.notify_all();
    }

    /// A new connection outside the pool (the sweeper's lock, the listener).
    pub fn dedicated(&self) -> Result<Conn> {
        Conn::connect(&self.url, self.tls.as_ref(), None)
    }
}

/// A node's copies of the records its requests look up on their own, again
/// and again, and that change seldom: contracts, RP keys and tokens (read
/// through `Store::read_latest` only, never in a write job, whose rules read
/// the database under the write lock).
///
/// A commit on this node drops what it changed once it has committed; one on
/// another node is dropped when its NOTIFY arrives (`Remote::Changed`).
/// The cache serves only while the listener hears the other nodes: it opens
/// when the listener has connected, is emptied and renewed at each of its
/// re-checks (every 10 s), and closes (empty, serving nothing) when the
/// listener loses its connection or misses two re-checks. A look-up that
/// began before a drop does not put back what it read.
#[derive(Default)]
pub struct RecordCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    /// Bumped by every drop: a look-up stores what it read only if none
    /// happened since it began.
    generation: u64,
    /// Table → key → record.
    records: HashMap<&'static str, HashMap<String, Vec<u8>>>,
    /// Serving until then (None: closed, the listener is not connected).
    open_until: Option<Instant>,
}

/// The tables `RecordCache` keeps.
pub fn cached(table: &str) -> Option<&'static str> {
    match table {
        "contracts" => Some("contracts"),
        "rp_keys" => Some("rp_keys"),
        "tokens" => Some("tokens"),
        _ => None,
    }
}

/// At most this many records are kept; then the cache starts again.
const CACHE_MAX: usize = 20_000;

impl RecordCache {
    /// The record, or the generation to hand to `keep` after reading it.
    pub fn get(&self, table: &'static str, key: &str) -> std::result::Result<Vec<u8>, u64> {
        let mut inner = crate::sync::lock(&self.inner);
        if inner.open_until.is_some_and(|until| Instant::now() >= until) {
            // The listener has not renewed it: what another node changed may
            // not have reached this one.
            inner.open_until = None;
            inner.generation += 1;
            inner.records.clear();
        }
        match inner.records.get(table).and_then(|t| t.get(key)) {
            Some(v) => Ok(v.clone()),
            None => Err(inner.generation),
        }
    }

    /// Keeps a record read from the database, unless something was dropped
    /// since `generation`.
    pub fn keep(&self, generation: u64, table: &'static str, key: &str, value: &[u8]) {
        let mut inner = crate::sync::lock(&self.inner);
        if inner.generation != generation || inner.open_until.is_none_or(|until| Instant::now() >= until) {
            return;
        }
        if inner.records.values().map(HashMap::len).sum::<usize>() >= CACHE_MAX {
            inner.records.clear();
        }
        inner.records.entry(table).or_default().insert(key.to_string(), value.to_vec());
    }

    pub fn forget(&self, table: &'static str, key: &str) {
        let mut inner = crate::sync::lock(&self.inner);
        inner.generation += 1;
        if let Some(t) = inner.records.get_mut(table) {
            t.remove(key);
        }
    }

    pub fn forget_all(&self) {
        let mut inner = crate::sync::lock(&self.inner);
        inner.generation += 1;
        inner.records.clear();
    }

    /// Empties the cache and lets it serve for `period` (the listener, at
    /// each re-check; `None`: closed).
    pub fn renew(&self, period: Option<Duration>) {
        let mut inner = crate::sync::lock(&self.inner);
        inner.generation += 1;
        inner.records.clear();
        inner.open_until = period.map(|p| Instant::now() + p);
    }
}

/// A connection taken from the pool, given back when dropped (unless broken).
pub struct Pooled {
    conn: Option<Conn>,
    pool: Arc<Pool>,
}

impl std::ops::Deref for Pooled {
    type Target = Conn;
    #[allow(clippy::expect_used, reason = "set until drop")]
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("a pooled connection")
    }
}

impl std::ops::DerefMut for Pooled {
    #[allow(clippy::expect_used, reason = "set until drop")]
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("a pooled connection")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        HELD.with(|h| h.set(h.get().saturating_sub(1)));
        if let Some(c) = self.conn.take() {
            let mut idle = crate::sync::lock(&self.pool.idle);
            if !c.client.is_closed() && idle.len() < IDLE {
                idle.push((c, Instant::now()));
            } else {
                drop(idle);
                drop(c);
            }
        }
        self.pool.freed.notify_one();
    }
}

/// Applies the migrations this database has not had, once across nodes.
fn migrate(conn: &mut Conn) -> Result<()> {
    // The lock first: two nodes creating the table at once can collide.
    conn.client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])?;
    let done = (|| -> Result<()> {
        conn.batch(
            "CREATE TABLE IF NOT EXISTS onepush_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )?;
        let current: i32 = conn.client.query_one("SELECT coalesce(max(version), 0) FROM onepush_schema", &[])?.get(0);
        let newest = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > newest {
            return Err(Error::Conflict(format!(
                "the database's onepush schema is version {current}, newer than this onepush knows ({newest}): run the newer onepush, or restore a dump made for this one"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let mut t = conn.client.transaction()?;
            t.batch_execute(sql)?;
            t.execute("INSERT INTO onepush_schema (version) VALUES ($1)", &[version])?;
            t.commit()?;
            log::info!("store: PostgreSQL schema migrated to version {version}");
        }
        Ok(())
    })();
    let _ = conn.client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK]);
    done
}

/// A transaction on a pooled connection: a read snapshot, or a write batch.
/// Rolled back when dropped unless committed.
pub struct PgTx {
    conn: RefCell<Pooled>,
    open: bool,
    /// No transaction: each statement on its own sees the latest commit,
    /// and the cached tables are read through the pool's cache
    /// (`begin_latest`).
    latest: Option<Arc<Pool>>,
    /// A statement failed: PostgreSQL has aborted the transaction, and its
    /// COMMIT would silently roll back (`failed()`, checked by the writer).
    failed: std::cell::Cell<bool>,
}

impl PgTx {
    /// A read snapshot. It ends when the connection is next used (see
    /// `Conn::in_read`): a read-only transaction has nothing to commit.
    pub fn begin_read(pool: &Arc<Pool>) -> Result<PgTx> {
        let begin = |conn: &mut Pooled| {
            let sql = if conn.in_read {
                "ROLLBACK; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            } else {
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            };
            conn.batch(sql)
        };
        let conn = pool.first_use(false, begin)?;
        let mut tx = PgTx { conn: RefCell::new(conn), open: false, latest: None, failed: Default::default() };
        tx.conn.get_mut().in_read = true;
        Ok(tx)
    }

    /// Reads without a transaction: each statement runs on its own and sees
    /// what was committed when it ran (no round trip to begin or end, and
    /// no snapshot across statements: see `Store::read_latest`).
    pub fn begin_latest(pool: &Arc<Pool>) -> Result<PgTx> {
        let conn = pool.get_clean()?;
        Ok(PgTx { conn: RefCell::new(conn), open: false, latest: Some(pool.clone()), failed: Default::default() })
    }

    /// A record by key (`table` is one of `record_sql`'s), through the
    /// cache when this reads the latest and the table is cached.
    pub fn get_record(&self, table: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let sql = record_sql(table)?.get;
        let (Some(pool), Some(table)) = (&self.latest, cached(table)) else {
            return Ok(self.query(sql, &[&key])?.first().map(|r| r.get::<_, Vec<u8>>(0)));
        };
        let generation = match pool.cache.get(table, key) {
            Ok(hit) => return Ok(Some(hit)),
            Err(generation) => generation,
        };
        let found = self.query(sql, &[&key])?.first().map(|r| r.get::<_, Vec<u8>>(0));
        if let Some(v) = &found {
            pool.cache.keep(generation, table, key, v);
        }
        Ok(found)
    }

    /// Begins a write batch: after this, no other node's batch runs until
    /// this one commits or rolls back.
    ///
    /// A node that stops in the middle of its batch (frozen, cut off) would
    /// hold every node's writes: the server ends such a session after 5 s
    /// idle inside the transaction, which frees the lock.
    pub fn begin_write(pool: &Arc<Pool>, durable: bool) -> Result<PgTx> {
        let begin = |conn: &mut Pooled| {
            // One round trip: the end of a read left open, the transaction,
            // its settings and the lock (the constant is WRITE_LOCK).
            let sql = format!(
                "{}BEGIN; SET LOCAL idle_in_transaction_session_timeout = '5s';{} SELECT pg_advisory_xact_lock({WRITE_LOCK})",
                if conn.in_read { "ROLLBACK; " } else { "" },
                if durable { "" } else { " SET LOCAL synchronous_commit = off;" }
            );
            conn.in_read = false;
            conn.batch(&sql)
        };
        let conn = pool.first_use(true, begin)?;
        Ok(PgTx { conn: RefCell::new(conn), open: true, latest: None, failed: Default::default() })
    }

    /// Whether a statement of this transaction failed.
    pub fn failed(&self) -> bool {
        self.failed.get()
    }

    pub fn commit(mut self) -> Result<()> {
        if self.failed.get() {
            return Err(Error::Internal("store (postgres): a statement of this transaction failed; rolled back".into()));
        }
        self.open = false;
        self.conn.get_mut().batch("COMMIT")
    }

    pub fn rollback(mut self) -> Result<()> {
        self.open = false;
        self.conn.get_mut().batch("ROLLBACK")
    }

    pub fn query(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let mut conn = self.conn.borrow_mut();
        let r = conn.query(sql, params);
        if r.is_err() && self.latest.is_some() && conn.client.is_closed() {
            // A pooled connection that died idle (the database restarted):
            // a statement on its own is simply run again on a new one.
            let mut fresh = conn.pool.fresh()?;
            let again = fresh.query(sql, params);
            *conn = fresh;
            return again;
        }
        self.failed.set(self.failed.get() || r.is_err());
        r
    }

    pub fn execute(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let r = self.conn.borrow_mut().execute(sql, params);
        self.failed.set(self.failed.get() || r.is_err());
        r
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.open {
            let conn = self.conn.get_mut();
            if conn.batch("ROLLBACK").is_err() {
                // Unknown state: never give this connection to another.
                conn.conn.take();
            }
        }
    }
}

/// A key or count as PostgreSQL's bigint (the store's are far below 2^63).
pub fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn unbig(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The SQL of the record tables, by the embedded store's table name: a
/// closed list, so no name from outside ever reaches a statement.
pub struct RecordSql {
    pub get: &'static str,
    pub range: &'static str,
    /// The range with its start excluded (a start key ending in NUL, which PostgreSQL text cannot hold).
    pub range_after: &'static str,
    pub count: &'static str,
    pub put: &'static str,
    pub delete: &'static str,
}

macro_rules! record_sql {
    ($($name:literal),*) => {
        pub fn record_sql(table: &str) -> Result<&'static RecordSql> {
            match table {
                $($name => {
                    static SQL: RecordSql = RecordSql {
                        get: concat!("SELECT rec FROM ", $name, " WHERE k = $1"),
                        range: concat!("SELECT k, rec FROM ", $name, " WHERE k >= $1 AND k < $2 ORDER BY k LIMIT $3"),
                        range_after: concat!("SELECT k, rec FROM ", $name, " WHERE k > $1 AND k < $2 ORDER BY k LIMIT $3"),
                        count: concat!("SELECT count(*) FROM ", $name),
                        put: concat!("INSERT INTO ", $name, " (k, rec) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET rec = excluded.rec"),
                        delete: concat!("DELETE FROM ", $name, " WHERE k = $1"),
                    };
                    Ok(&SQL)
                })*
                other => Err(Error::Internal(format!("store (postgres): no table {other}"))),
            }
        }
    };
}
record_sql!("contracts", "users", "tokens", "challenges", "rp_keys", "operators", "notices", "meta");

/// The (time, id) indexes the sweeper and the statistics read, by the
/// embedded store's index name.
pub fn due_sql(index: &str) -> Result<&'static str> {
    Ok(match index {
        "challenge_expiry" => "SELECT k FROM challenges WHERE pending AND expires_at <= $1 ORDER BY expires_at, k LIMIT $2",
        "provision_expiry" => "SELECT k FROM tokens WHERE provision_expires_at <= $1 ORDER BY provision_expires_at, k LIMIT $2",
        "challenges_by_time" => "SELECT k FROM challenges WHERE created_at <= $1 ORDER BY created_at, k LIMIT $2",
        other => return Err(Error::Internal(format!("store (postgres): no index {other}"))),
    })
}

/// This process among the nodes: messages it published itself are not
/// handled again when they come back.
pub fn node_id() -> &'static str {
    static NODE: OnceLock<String> = OnceLock::new();
    NODE.get_or_init(|| crate::domain::ids::random_hex(8))
}

/// The channel every node LISTENs on.
pub const CHANNEL: &str = "onepush";

/// What another node's commit changed (its `WriteTx::publish` messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// A challenge left `pending`.
    Closed(String),
    /// A token has new pending challenges.
    Pending(String),
    /// A token was revoked.
    Revoked(String),
    /// RP keys changed (cached look-ups are dropped).
    RpKeys,
    /// A record of a cached table (`cached`) changed: (table, key).
    Changed(String, String),
    /// Notifications may have been missed (the listener reconnected) or a
    /// re-check is due: look again at everything parked.
    Recheck,
}

impl Remote {
    pub fn message(&self) -> String {
        let node = node_id();
        match self {
            Remote::Closed(id) => format!("{node} closed {id}"),
            Remote::Pending(t) => format!("{node} pending {t}"),
            Remote::Revoked(t) => format!("{node} revoked {t}"),
            Remote::RpKeys => format!("{node} rpkeys -"),
            Remote::Changed(table, key) => format!("{node} changed {table} {key}"),
            Remote::Recheck => format!("{node} recheck -"),
        }
    }

    /// Another node's message; None for this node's own and for unknown ones.
    pub fn parse(message: &str) -> Option<Remote> {
        let mut parts = message.splitn(3, ' ');
        let (node, kind, arg) = (parts.next()?, parts.next()?, parts.next()?.to_string());
        if node == node_id() {
            return None;
        }
        Some(match kind {
            "closed" => Remote::Closed(arg),
            "pending" => Remote::Pending(arg),
            "revoked" => Remote::Revoked(arg),
            "rpkeys" => Remote::RpKeys,
            "changed" => {
                let (table, key) = arg.split_once(' ')?;
                Remote::Changed(table.to_string(), key.to_string())
            }
            "recheck" => Remote::Recheck,
            _ => return None,
        })
    }
}

/// How often parked requests are re-checked even without a notification:
/// what a lost one can cost at most.
pub const RECHECK: Duration = Duration::from_secs(10);

/// Listens for the other nodes' commits on a dedicated connection, for
/// ever, reconnecting after a failure (then `Remote::Recheck`, since
/// notifications sent meanwhile are lost).
#[allow(clippy::expect_used, reason = "started once at start: without it other nodes' decisions wait for the re-check")]
pub fn listen(pool: Arc<Pool>, handle: impl Fn(Remote) + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("pg-listen".into())
        .spawn(move || loop {
            match pool.dedicated().and_then(|mut c| {
                c.batch(&format!("LISTEN {CHANNEL}"))?;
                Ok(c)
            }) {
                Ok(mut conn) => {
                    pool.cache.renew(Some(2 * RECHECK));
                    handle(Remote::Recheck);
                    let mut checked = Instant::now();
                    loop {
                        let next = conn.client.notifications().timeout_iter(Duration::from_secs(1)).next();
                        match next {
                            Ok(Some(n)) => {
                                if let Some(r) = Remote::parse(n.payload()) {
                                    handle(r);
                                }
                            }
                            Ok(None) => {}
                            Err(e) => {
                                log::warn!("store: the PostgreSQL listener lost its connection ({e}); reconnecting");
                                pool.cache.renew(None);
                                break;
                            }
                        }
                        pool.tidy();
                        if checked.elapsed() >= RECHECK {
                            // Also proves the connection alive (a query on a dead one fails).
                            if conn.batch("SELECT 1").is_err() {
                                log::warn!("store: the PostgreSQL listener's connection is gone; reconnecting");
                                pool.cache.renew(None);
                                break;
                            }
                            pool.cache.renew(Some(2 * RECHECK));
                            handle(Remote::Recheck);
                            checked = Instant::now();
                        }
                    }
                }
                Err(e) => {
                    log::warn!("store: cannot listen for other nodes' commits: {e:?}; retrying in 1 s");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        })
        .expect("spawning the PostgreSQL listener")
}

/// One sweeper among the nodes: a session-level advisory lock on a
/// dedicated connection, taken over by another node when this one dies
/// (its session ends with its socket, or with the keepalives).
pub struct SweeperLock {
    pool: Arc<Pool>,
    /// Kept between ticks, holding the lock or asking for it.
    conn: Option<Conn>,
    holding: bool,
}

impl SweeperLock {
    pub const KEY: i64 = 0x6f6e_6570_0000_0003;

    pub fn new(pool: Arc<Pool>) -> SweeperLock {
        SweeperLock { pool, conn: None, holding: false }
    }

    /// Whether this node may sweep now: holds the lock, or has just taken it.
    pub fn held(&mut self) -> bool {
        if let Some(c) = &mut self.conn {
            if self.holding && c.batch("SELECT 1").is_ok() {
                return true;
            }
            if self.holding {
                log::warn!("sweeper: lost the connection that held the sweeper lock");
                self.conn = None;
                self.holding = false;
            }
        }
        if self.conn.is_none() {
            // A session that goes quiet for 30 s (this node frozen) is ended
            // by the server, which frees the lock for another node.
            self.conn = self.pool.dedicated().and_then(|mut c| c.batch("SET idle_session_timeout = '30s'").map(|()| c)).ok();
        }
        let Some(c) = &mut self.conn else { return false };
        match c.client.query_one("SELECT pg_try_advisory_lock($1)", &[&Self::KEY]) {
            Ok(row) if row.get::<_, bool>(0) => {
                log::info!("sweeper: this node ({}) sweeps", node_id());
                self.holding = true;
                true
            }
            Ok(_) => false,
            Err(_) => {
                self.conn = None;
                false
            }
        }
    }
}

/// What a single node keeps in memory and several nodes share in the
/// database (migration 2): operator sessions and the bootstrap code.
/// Statements run on their own (autocommit), outside the writer.
#[derive(Clone)]
pub struct Shared(pub(crate) Arc<Pool>);

/// An operator session as found.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionFound {
    Valid(String),
    Expired,
    Unknown,
}

/// How an offered bootstrap code went.
#[derive(Debug, PartialEq, Eq)]
pub enum CodeTaken {
    Taken,
    Wrong,
    Expired,
    /// No code (used, or never made).
    Absent,
}

impl Shared {
    /// Opens a session (`key`: the cookie's SHA-256) and drops expired ones.
    pub fn session_open(&self, key: &str, operator: &str, now: Ms, max: Ms, idle: Ms) -> Result<()> {
        let mut c = self.0.get()?;
        c.execute(
            "DELETE FROM admin_sessions WHERE created_at <= $1 OR last_seen <= $2",
            &[&big(now.saturating_sub(max)), &big(now.saturating_sub(idle))],
        )?;
        c.execute(
            "INSERT INTO admin_sessions (k, operator, created_at, last_seen) VALUES ($1, $2, $3, $3)",
            &[&key, &operator, &big(now)],
        )?;
        Ok(())
    }

    /// The session's operator, its last use set to `now`.
    pub fn session_check(&self, key: &str, now: Ms, max: Ms, idle: Ms) -> Result<SessionFound> {
        let mut c = self.0.get()?;
        let rows = c.query(
            "UPDATE admin_sessions SET last_seen = $2 WHERE k = $1 AND created_at > $3 AND last_seen > $4 RETURNING operator",
            &[&key, &big(now), &big(now.saturating_sub(max)), &big(now.saturating_sub(idle))],
        )?;
        if let Some(r) = rows.first() {
            return Ok(SessionFound::Valid(r.get(0)));
        }
        Ok(match c.execute("DELETE FROM admin_sessions WHERE k = $1", &[&key])? {
            0 => SessionFound::Unknown,
            _ => SessionFound::Expired,
        })
    }

    pub fn session_end(&self, key: &str) -> Result<()> {
        self.0.get()?.execute("DELETE FROM admin_sessions WHERE k = $1", &[&key])?;
        Ok(())
    }

    pub fn sessions_end_of(&self, operator: &str) -> Result<()> {
        self.0.get()?.execute("DELETE FROM admin_sessions WHERE operator = $1", &[&operator])?;
        Ok(())
    }

    /// Stores this node's new code unless another node's is still valid;
    /// true if this one stands.
    pub fn bootstrap_offer(&self, code_hash: &str, now: Ms, ttl: Ms) -> Result<bool> {
        let n = self.0.get()?.execute(
            "INSERT INTO bootstrap_code (one, code_hash, made_at) VALUES (true, $1, $2) \
             ON CONFLICT (one) DO UPDATE SET code_hash = excluded.code_hash, made_at = excluded.made_at \
             WHERE bootstrap_code.made_at <= $3",
            &[&code_hash, &big(now), &big(now.saturating_sub(ttl))],
        )?;
        Ok(n == 1)
    }

    /// Spends the code if `code_hash` is it and it is still valid: one
    /// DELETE, so two nodes cannot both accept it.
    pub fn bootstrap_take(&self, code_hash: &str, now: Ms, ttl: Ms) -> Result<CodeTaken> {
        let mut c = self.0.get()?;
        let taken =
            c.execute("DELETE FROM bootstrap_code WHERE code_hash = $1 AND made_at > $2", &[&code_hash, &big(now.saturating_sub(ttl))])?;
        if taken == 1 {
            return Ok(CodeTaken::Taken);
        }
        let rows = c.query("SELECT made_at FROM bootstrap_code", &[])?;
        Ok(match rows.first().map(|r| unbig(r.get(0))) {
            None => CodeTaken::Absent,
            Some(made) if now >= made.saturating_add(ttl) => CodeTaken::Expired,
            Some(_) => CodeTaken::Wrong,
        })
    }

    pub fn bootstrap_clear(&self) -> Result<()> {
        self.0.get()?.execute("DELETE FROM bootstrap_code", &[])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_matches_as_libpq_does() {
        let text = "# comment\ndb.bank.example:5432:other:onepush:nope\n*:5432:onepush:onepush:pa\\:ss\\\\w\nlocalhost:*:*:*:local\n";
        assert_eq!(pgpass_lookup(text, ["db.bank.example", "5432", "onepush", "onepush"]).as_deref(), Some("pa:ss\\w"));
        assert_eq!(pgpass_lookup(text, ["db.bank.example", "5432", "other", "onepush"]).as_deref(), Some("nope"));
        assert_eq!(pgpass_lookup(text, ["localhost", "6543", "x", "y"]).as_deref(), Some("local"));
        assert_eq!(pgpass_lookup(text, ["db.bank.example", "6543", "onepush", "onepush"]), None);
    }

    #[test]
    fn libpq_sslmodes_and_sslrootcert_are_taken_out_of_the_url() {
        let (c, wanted, root) = parse_url(
            "postgres://onepush@db.bank.example:6432/onepush?sslmode=verify-full&sslrootcert=/etc/onepush/db-ca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!((wanted, root.as_deref()), (SslWanted::VerifyFull, Some(std::path::Path::new("/etc/onepush/db-ca.pem"))));
        assert_eq!((c.get_ssl_mode(), c.get_dbname(), c.get_ports()), (postgres::config::SslMode::Require, Some("onepush"), &[6432][..]));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)), "other parameters are kept");
        assert_eq!(parse_url("postgres://h/db").unwrap().1, SslWanted::Prefer, "libpq's default");
        assert_eq!(parse_url("postgres://h/db?sslmode=disable").unwrap().1, SslWanted::Disable);
        assert_eq!(parse_url("postgres://h/db?sslmode=verify-ca").unwrap().1, SslWanted::VerifyCa);
        assert!(parse_url("postgres://h/db?sslmode=always").unwrap_err().contains("sslmode=always"));
    }

    #[test]
    fn messages_to_other_nodes_round_trip_and_our_own_are_ignored() {
        let ours = Remote::Closed("CH1".into()).message();
        assert_eq!(Remote::parse(&ours), None, "this node's own message");
        let theirs = ours.replacen(node_id(), "othernode", 1);
        assert_eq!(Remote::parse(&theirs), Some(Remote::Closed("CH1".into())));
        assert_eq!(Remote::parse("othernode pending ONEP1"), Some(Remote::Pending("ONEP1".into())));
        assert_eq!(Remote::parse("othernode unknown x"), None);
        assert_eq!(Remote::parse("garbage"), None);
        let changed = Remote::Changed("rp_keys".into(), "bank one".into()).message().replacen(node_id(), "othernode", 1);
        assert_eq!(Remote::parse(&changed), Some(Remote::Changed("rp_keys".into(), "bank one".into())), "a key may hold a space");
        assert_eq!(Remote::parse("othernode changed tokens"), None);
    }

    #[test]
    fn the_cache_never_keeps_what_was_read_before_a_drop() {
        let cache = RecordCache::default();
        let Err(g) = cache.get("tokens", "T1") else { panic!("empty at first") };
        cache.keep(g, "tokens", "T1", b"v1");
        assert!(cache.get("tokens", "T1").is_err(), "closed until the listener connects");
        cache.renew(Some(Duration::from_secs(20)));
        let Err(g) = cache.get("tokens", "T1") else { panic!("still empty") };
        cache.keep(g, "tokens", "T1", b"v1");
        assert_eq!(cache.get("tokens", "T1"), Ok(b"v1".to_vec()));
        assert!(cache.get("contracts", "T1").is_err(), "tables apart");
        // A look-up began, a commit changed the record and dropped it, the
        // look-up's (older) read arrives: not kept.
        cache.forget("tokens", "T1");
        let Err(g) = cache.get("tokens", "T1") else { panic!("dropped") };
        cache.forget("tokens", "T2");
        cache.keep(g, "tokens", "T1", b"v1");
        assert!(cache.get("tokens", "T1").is_err());
        let Err(g) = cache.get("tokens", "T1") else { panic!("still not kept") };
        cache.keep(g, "tokens", "T1", b"v2");
        cache.forget_all();
        assert!(cache.get("tokens", "T1").is_err());
        // The listener lost its connection: closed, and nothing is kept.
        let Err(g) = cache.get("tokens", "T1") else { panic!("empty") };
        cache.renew(None);
        cache.keep(g + 1, "tokens", "T1", b"v3");
        assert!(cache.get("tokens", "T1").is_err());
        // Not renewed in time: it closes by itself.
        cache.renew(Some(Duration::from_millis(30)));
        let Err(g) = cache.get("tokens", "T1") else { panic!("empty") };
        cache.keep(g, "tokens", "T1", b"v4");
        assert_eq!(cache.get("tokens", "T1"), Ok(b"v4".to_vec()));
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get("tokens", "T1").is_err(), "expired");
        assert_eq!(cached("tokens"), Some("tokens"));
        assert_eq!(cached("users"), None, "users change at every login: never cached");
    }
}
