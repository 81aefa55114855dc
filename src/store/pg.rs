//! The PostgreSQL backend (SPEC R8, `store = "postgres://…"`): the same
//! records, indexes and write jobs as the embedded store, so that several
//! onepush nodes can serve from one database.
//!
//! - Schema: `migrations/postgres/*.sql`, applied at start under an advisory
//!   lock (two nodes starting together migrate once); a database with a newer
//!   schema than this binary knows is refused.
//! - Reads: `Store::read` is a `REPEATABLE READ, READ ONLY` transaction on a
//!   pooled connection: every getter sees one snapshot, as in redb.
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
use std::sync::{Arc, Mutex};

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use crate::error::{Error, Result};

/// The schema this binary knows, and how to reach it from an older one.
pub const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/postgres/0001_initial.sql"))];

/// Advisory lock keys (`pg_advisory_*`): onepush's own, "onep" + a number.
pub const WRITE_LOCK: i64 = 0x6f6e_6570_0000_0001;
pub const MIGRATE_LOCK: i64 = 0x6f6e_6570_0000_0002;

/// Idle connections kept for reads.
const IDLE: usize = 16;

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        // The server's message (and its SQLSTATE) when it sent one.
        match e.as_db_error() {
            Some(db) => Error::Internal(format!("store (postgres): {} ({})", db.message(), db.code().code())),
            None => Error::Internal(format!("store (postgres): {e}")),
        }
    }
}

/// A connection and its prepared statements (a statement prepared once per
/// connection: a query by text alone costs a second round trip).
pub struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    fn connect(url: &str) -> Result<Conn> {
        let client = Client::connect(url, NoTls)?;
        Ok(Conn { client, statements: HashMap::new() })
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

/// The node's connections to the database.
pub struct Pool {
    url: String,
    idle: Mutex<Vec<Conn>>,
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
        let pool = Arc::new(Pool { url: url.to_string(), idle: Mutex::new(Vec::new()) });
        let mut conn = pool.get()?;
        migrate(&mut conn)?;
        Ok(pool)
    }

    pub fn get(self: &Arc<Self>) -> Result<Pooled> {
        let idle = crate::sync::lock(&self.idle).pop();
        let conn = match idle {
            Some(c) if !c.client.is_closed() => c,
            _ => Conn::connect(&self.url).map_err(|e| match e {
                Error::Internal(m) => Error::Internal(format!("{m} (connecting to the store)")),
                other => other,
            })?,
        };
        Ok(Pooled { conn: Some(conn), pool: self.clone() })
    }

    /// A new connection outside the pool (the sweeper's lock, the listener).
    pub fn dedicated(&self) -> Result<Conn> {
        Conn::connect(&self.url)
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
        if let Some(c) = self.conn.take() {
            let mut idle = crate::sync::lock(&self.pool.idle);
            if !c.client.is_closed() && idle.len() < IDLE {
                idle.push(c);
            }
        }
    }
}

/// Applies the migrations this database has not had, once across nodes.
fn migrate(conn: &mut Conn) -> Result<()> {
    conn.batch("CREATE TABLE IF NOT EXISTS onepush_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")?;
    conn.client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])?;
    let done = (|| -> Result<()> {
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
}

impl PgTx {
    pub fn begin_read(pool: &Arc<Pool>) -> Result<PgTx> {
        let mut conn = pool.get()?;
        conn.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        Ok(PgTx { conn: RefCell::new(conn), open: true })
    }

    /// Begins a write batch: after this, no other node's batch runs until
    /// this one commits or rolls back.
    pub fn begin_write(pool: &Arc<Pool>, durable: bool) -> Result<PgTx> {
        let mut conn = pool.get()?;
        conn.batch(if durable { "BEGIN" } else { "BEGIN; SET LOCAL synchronous_commit = off" })?;
        let tx = PgTx { conn: RefCell::new(conn), open: true };
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        Ok(tx)
    }

    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        self.conn.get_mut().batch("COMMIT")
    }

    pub fn rollback(mut self) -> Result<()> {
        self.open = false;
        self.conn.get_mut().batch("ROLLBACK")
    }

    pub fn query(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.conn.borrow_mut().query(sql, params)
    }

    pub fn execute(&self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.conn.borrow_mut().execute(sql, params)
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
