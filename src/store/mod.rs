//! The store: the only module that imports redb.
//!
//! `Store::read` gives a snapshot (`ReadTx`); every write goes through the
//! single writer thread (`writer::Writer`) as a job on a `WriteTx`, so
//! decisions from many request threads share one fsync. Typed getters live on
//! the `Reader` trait, shared by both transaction kinds.
//!
//! ## The interface the use cases see
//!
//! The service layer uses only what is named for its needs, never a table:
//! records by key (`contract`, `user`, `token`, `challenge`, `operator`,
//! `rp_key`, `notice`, `system`), the indexes it queries (`pending_for_token`,
//! `token_by_public_key`, `rp_name_by_hash`, `users_of`, `contracts_after`,
//! `due_challenges`, `due_tokens`, `earliest_expiry`, `challenges_created_before`,
//! `challenge_ids_since`, `audit_seqs_about`, `fraud_reports_since`), the audit
//! log (`audit`, `audit_after`, `audit_at`, `audit_last`, the signed head), the
//! brute-force counts (`count_attempt`, `purge_attempts`), one atomic write job
//! (`Writer::submit`/`call`) and one read snapshot (`Store::read`).
//! `RawReader` holds the redb primitives behind `Reader`'s provided methods;
//! nothing outside this module uses it.
//!
//! A second backend (PostgreSQL, SPEC R8) fills the same interface:
//! - `Store::read` → a `REPEATABLE READ, READ ONLY` transaction: every getter
//!   in one snapshot, as a redb read transaction gives.
//! - a write job → one `READ COMMITTED` transaction that locks what it
//!   changes (`SELECT … FOR UPDATE` on the user, token or challenge row a job
//!   reads before writing), so two nodes' jobs on one record serialise as the
//!   single writer serialises them here; `COMMIT` before the completion
//!   runs, as `commit_batch` does. A job's failure after writing is a
//!   `ROLLBACK` of that job alone (a savepoint per job, when batched).
//! - each `put_*` → `INSERT … ON CONFLICT (key) DO UPDATE`; `delete_*` →
//!   `DELETE`; records stay JSON (`jsonb`) with the indexed fields as columns.
//! - each index → a B-tree index on those columns (`expires_at` for the
//!   sweeper, `(token_id, created_at)` for pending challenges, the public
//!   key, the RP key hash, `(contract_no, user_id, seq)` for the audit).
//! - `audit` → the chain's end read with `SELECT … FOR UPDATE` on a one-row
//!   head table (or a transaction-level advisory lock), so appends from every
//!   node form one chain; the signed head is written in the same transaction.
//! - `count_attempt` → `INSERT … ON CONFLICT DO UPDATE SET count = count + 1
//!   RETURNING count`, shared by every node.

pub mod codec;
pub mod pg;
pub mod tables;
mod write;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditKey, HeadBreak, NewEvent, SignedHead, GENESIS};
use crate::domain::account::{Contract, Token, User};
use crate::domain::challenge::Challenge;
use crate::domain::{rfc3339, Ms};
use crate::error::{Error, Result};
use tables::*;

pub use writer::{Durability, Writer};

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self { Error::Internal(format!("store: {e}")) }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);

/// An RP API key, stored as the SHA-256 of the key (keys are 256 random bits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpKey {
    pub name: String,
    pub key_hash: String,
    pub created_at: Ms,
    pub revoked_at: Option<Ms>,
    /// The editions whose contracts this key sees; empty: every edition.
    #[serde(default)]
    pub editions: Vec<String>,
}

impl RpKey {
    /// True when a contract of `edition` is within this key's reach.
    pub fn sees(&self, edition: &str) -> bool {
        self.editions.is_empty() || self.editions.iter().any(|e| e == edition)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub name: String,
    pub password_hash: String,
    pub created_at: Ms,
    /// Set by `onepush operator disable`: no sign-in, no session, until enabled.
    #[serde(default)]
    pub disabled_at: Option<Ms>,
    /// The last successful sign-in (records from before it was kept: none).
    #[serde(default)]
    pub last_sign_in_at: Option<Ms>,
}

impl Operator {
    pub fn enabled(&self) -> bool {
        self.disabled_at.is_none()
    }
}

/// A notice (お知らせ): outage, maintenance, change of terms, information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub lang: String,
    pub starts_at: Ms,
    pub ends_at: Option<Ms>,
    pub created_at: Ms,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudReport {
    pub challenge_id: String,
    pub contract_no: String,
    pub user_id: String,
    pub kind: String,
    pub reported_at: Ms,
}

/// System-wide settings changed at run time by operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemState {
    pub push_suspended: bool,
    pub notice_id: Option<String>,
}

pub fn user_key(contract_no: &str, user_id: &str) -> String {
    format!("{contract_no}/{user_id}")
}

/// What the store reports on start and for `/metrics`.
#[derive(Debug, Clone)]
pub struct Stats {
    pub file_bytes: u64,
}

#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Signs the audit head in every commit that appends, once set.
    audit_key: Arc<std::sync::OnceLock<AuditKey>>,
}

/// Where the state lives: the embedded file, or PostgreSQL (SPEC R8).
#[derive(Clone)]
pub(crate) enum Backend {
    Redb { db: Arc<Database>, path: std::path::PathBuf },
    Pg(Arc<pg::Pool>),
}

impl Store {
    /// Opens (or creates) the store file. Fails if another process holds it.
    pub fn open(path: &Path) -> Result<Store> {
        // redb's page cache counts in RSS; 16 MiB holds the hot records of
        // tens of thousands of users.
        let db = match Database::builder().set_cache_size(16 << 20).create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(Error::Conflict(format!("{} is in use by another onepush process", path.display())))
            }
            Err(e) => return Err(e.into()),
        };
        let txn = db.begin_write()?;
        {
            txn.open_table(CONTRACTS)?;
            txn.open_table(USERS)?;
            txn.open_table(TOKENS)?;
            txn.open_table(CHALLENGES)?;
            txn.open_table(CHALLENGE_EXPIRY)?;
            txn.open_table(TOKEN_PENDING)?;
            txn.open_table(PROVISION_EXPIRY)?;
            txn.open_table(RP_KEYS)?;
            txn.open_table(RP_KEY_HASHES)?;
            // The public-key index came after the tokens of an older store: fill it once.
            let mut keys = txn.open_table(TOKEN_KEYS)?;
            if keys.len()? == 0 {
                for item in txn.open_table(TOKENS)?.iter()? {
                    let (id, bytes) = item?;
                    let t: Token = codec::decode(bytes.value())?;
                    keys.insert(t.public_key.as_str(), id.value())?;
                }
            }
            drop(keys);
            txn.open_table(RATE_LIMITS)?;
            txn.open_table(RATE_LIMITS_BY_START)?;
            txn.open_table(OPERATORS)?;
            txn.open_table(AUDIT)?;
            txn.open_table(META)?;
            txn.open_table(NOTICES)?;
            txn.open_table(AUDIT_BY_SUBJECT)?;
            txn.open_table(CHALLENGES_BY_TIME)?;
            txn.open_table(FRAUD_REPORTS)?;
        }
        txn.commit()?;
        Ok(Store { backend: Backend::Redb { db: Arc::new(db), path: path.to_path_buf() }, audit_key: Arc::default() })
    }

    /// Connects to PostgreSQL (`store = "postgres://…"`) and migrates its
    /// schema to this version; several nodes may open the same database.
    pub fn open_postgres(url: &str) -> Result<Store> {
        Ok(Store { backend: Backend::Pg(pg::Pool::open(url)?), audit_key: Arc::default() })
    }

    /// The store `cfg` names, for commands that only read: on PostgreSQL
    /// nothing is migrated (an older schema is refused instead).
    pub fn open_configured_read_only(cfg: &crate::config::Config) -> Result<Store> {
        match &cfg.store {
            Some(url) => Ok(Store { backend: Backend::Pg(pg::Pool::open_read_only(url)?), audit_key: Arc::default() }),
            None => Store::open(&cfg.store_path()),
        }
    }

    /// The store `cfg` names: PostgreSQL when `store` is set, else the file in `data_dir`.
    pub fn open_configured(cfg: &crate::config::Config) -> Result<Store> {
        match &cfg.store {
            Some(url) => Store::open_postgres(url),
            None => Store::open(&cfg.store_path()),
        }
    }

    /// True when the state is in PostgreSQL (several nodes may share it).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Pg(_))
    }

    /// On PostgreSQL: hands every other node's published change to `handle`
    /// (and a `Recheck` now and then). Nothing on the embedded store.
    pub fn listen(&self, handle: impl Fn(pg::Remote) + Send + 'static) {
        if let Backend::Pg(pool) = &self.backend {
            pg::listen(pool.clone(), handle);
        }
    }

    /// For a re-check of everything parked (SPEC R8, after a lost
    /// notification): which of `challenge_ids` are closed, and which of
    /// `token_ids` have a pending challenge not expired at `now`, in one
    /// snapshot and, on PostgreSQL, two statements whatever the numbers.
    pub fn recheck(&self, challenge_ids: &[String], token_ids: &[String], now: Ms) -> Result<(Vec<Challenge>, Vec<String>)> {
        let r = self.read()?;
        match &r.backend {
            ReadBackend::Pg(pg) => {
                let closed = pg
                    .query("SELECT rec FROM challenges WHERE k = ANY($1) AND NOT pending", &[&challenge_ids])?
                    .iter()
                    .map(|row| codec::decode(row.get::<_, &[u8]>(0)))
                    .collect::<Result<Vec<Challenge>>>()?;
                let tokens = pg
                    .query(
                        "SELECT DISTINCT token_id FROM challenges WHERE pending AND expires_at > $2 AND token_id = ANY($1)",
                        &[&token_ids, &pg::big(now)],
                    )?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                Ok((closed, tokens))
            }
            ReadBackend::Redb(_) => {
                let mut closed = Vec::new();
                for id in challenge_ids {
                    closed.extend(r.challenge(id)?.filter(|c| !c.is_pending()));
                }
                let mut tokens = Vec::new();
                for t in token_ids {
                    if r.pending_for_token(t)?.iter().any(|c| now < c.expires_at) {
                        tokens.push(t.clone());
                    }
                }
                Ok((closed, tokens))
            }
        }
    }

    /// Drops this node's copy of a record another node changed
    /// (`pg::Remote::Changed`; PostgreSQL only).
    pub fn forget_cached(&self, table: &str, key: &str) {
        if let (Backend::Pg(pool), Some(table)) = (&self.backend, pg::cached(table)) {
            pool.cache.forget(table, key);
        }
    }

    /// Drops every cached record (a re-check: notifications may have been missed).
    pub fn forget_all_cached(&self) {
        if let Backend::Pg(pool) = &self.backend {
            pool.cache.forget_all();
        }
    }

    /// On PostgreSQL, the sessions and bootstrap code every node shares.
    pub fn shared(&self) -> Option<pg::Shared> {
        match &self.backend {
            Backend::Pg(pool) => Some(pg::Shared(pool.clone())),
            Backend::Redb { .. } => None,
        }
    }

    /// On PostgreSQL, the lock that lets one node sweep at a time.
    pub fn sweeper_lock(&self) -> Option<pg::SweeperLock> {
        match &self.backend {
            Backend::Pg(pool) => Some(pg::SweeperLock::new(pool.clone())),
            Backend::Redb { .. } => None,
        }
    }

    /// A read snapshot: every getter sees the same committed state.
    pub fn read(&self) -> Result<ReadTx> {
        Ok(match &self.backend {
            Backend::Redb { db, .. } => ReadTx { backend: ReadBackend::Redb(db.begin_read()?) },
            Backend::Pg(pool) => ReadTx { backend: ReadBackend::Pg(pg::PgTx::begin_read(pool)?) },
        })
    }

    /// Reads for the request paths that look up records on their own (a
    /// challenge, a token, a contract and its RP key): each getter sees at
    /// least what was committed when the reader was made, but two getters
    /// may see different commits. On PostgreSQL each getter is one
    /// statement outside any transaction (no round trips to begin and end
    /// one); the embedded store gives a snapshot, which is as fresh.
    ///
    /// Never for anything that needs two reads to agree: such a rule is
    /// checked in a write job, which reads under the write lock.
    pub fn read_latest(&self) -> Result<ReadTx> {
        Ok(match &self.backend {
            Backend::Redb { db, .. } => ReadTx { backend: ReadBackend::Redb(db.begin_read()?) },
            Backend::Pg(pool) => ReadTx { backend: ReadBackend::Pg(pg::PgTx::begin_latest(pool)?) },
        })
    }

    /// Starts the single writer thread.
    pub fn writer(&self) -> Writer {
        Writer::start(self.backend.clone(), self.audit_key.clone())
    }

    /// From now on, every commit that appends to the audit log also stores
    /// the new head signed with `key`. Set once; a second key is refused.
    pub fn set_audit_key(&self, key: AuditKey) -> Result<()> {
        self.audit_key.set(key).map_err(|_| Error::Internal("the store already has an audit key".into()))
    }

    pub fn audit_key(&self) -> Option<&AuditKey> {
        self.audit_key.get()
    }

    /// Copies every table, as of one read transaction, into a new store file
    /// at `dest`: a consistent backup while the server keeps serving.
    /// Returns the number of records copied.
    ///
    /// The copy holds the password hashes: it is created 0600 whatever the
    /// umask, as a new file (`O_EXCL`: never through a symlink, never over an
    /// existing file), under a temporary name in the same directory, and
    /// linked to `dest` only when complete.
    pub fn backup_to(&self, dest: &Path) -> Result<u64> {
        let Backend::Redb { db, .. } = &self.backend else {
            return Err(Error::BadRequest(
                "the store is in PostgreSQL: back it up with PostgreSQL's tools (pg_dump, or base backups with WAL archiving), not onepush backup".into(),
            ));
        };
        if dest.symlink_metadata().is_ok() {
            return Err(Error::Conflict(format!("{} exists; choose a new file", dest.display())));
        }
        let name = dest.file_name().ok_or_else(|| Error::BadRequest(format!("{}: not a file name", dest.display())))?;
        let partial = dest.with_file_name(format!(
            ".{}.{}.{}.partial",
            name.to_string_lossy(),
            std::process::id(),
            crate::domain::ids::random_b64(6)
        ));
        let file = crate::secrets::create_private(&partial).map_err(|e| Error::Internal(format!("backup: {}: {e}", partial.display())))?;
        let n = Self::copy_into(db, file, &partial);
        let linked = n.as_ref().map_err(Clone::clone).and_then(|_| {
            // link(2) never replaces: a file or symlink put at `dest` meanwhile is refused.
            std::fs::hard_link(&partial, dest).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::Conflict(format!("{} exists; choose a new file", dest.display())),
                _ => Error::Internal(format!("backup: {e}")),
            })
        });
        let _ = std::fs::remove_file(&partial);
        linked?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        n
    }

    fn copy_into(db: &Database, file: std::fs::File, partial: &Path) -> Result<u64> {
        let backend = redb::backends::FileBackend::new(file).map_err(|e| Error::Internal(format!("backup: {}: {e}", partial.display())))?;
        let out =
            Database::builder().create_with_backend(backend).map_err(|e| Error::Internal(format!("backup: {}: {e}", partial.display())))?;
        let r = db.begin_read()?;
        let mut w = out.begin_write()?;
        w.set_durability(redb::Durability::Immediate)?;
        let mut n = 0u64;
        macro_rules! copy {
            ($($def:expr),*) => {$({
                let src = r.open_table($def)?;
                let mut dst = w.open_table($def)?;
                for item in src.iter()? {
                    let (k, v) = item?;
                    dst.insert(k.value(), v.value())?;
                    n += 1;
                }
            })*};
        }
        copy!(
            CONTRACTS,
            USERS,
            TOKENS,
            CHALLENGES,
            CHALLENGE_EXPIRY,
            TOKEN_PENDING,
            PROVISION_EXPIRY,
            RP_KEYS,
            RP_KEY_HASHES,
            TOKEN_KEYS,
            OPERATORS,
            AUDIT,
            META,
            NOTICES,
            AUDIT_BY_SUBJECT,
            CHALLENGES_BY_TIME,
            FRAUD_REPORTS
        );
        w.commit()?;
        drop(out);
        Ok(n)
    }

    /// `onepush migrate --to`: copies every record of this embedded store,
    /// as of one read snapshot, into `target` (an empty store) in one
    /// transaction, through the target's own write methods so that its
    /// indexes are made as its writes make them. Audit entries keep their
    /// place and hash. Returns the number of records per table.
    pub fn copy_to(&self, target: &Store) -> Result<Vec<(String, u64)>> {
        let Backend::Redb { db, .. } = &self.backend else {
            return Err(Error::BadRequest("migrate copies from the embedded store".into()));
        };
        let snapshot = Arc::new(self.snapshot(db)?);
        let counts = snapshot.counts();
        let writer = target.writer();
        let s = snapshot.clone();
        writer.call(Durability::Durable, move |tx| {
            let mut records = 0;
            for table in RECORD_TABLES {
                records += tx.count(table)?;
            }
            if records > 0 || tx.audit_last()?.is_some() || !tx.fraud_reports_since(0)?.is_empty() {
                return Err(Error::Conflict("the target store is not empty: migrate into a new, empty database".into()));
            }
            for (table, rows) in &s.records {
                for (k, v) in rows {
                    match table.name() {
                        "tokens" => tx.put_token(&codec::decode(v)?)?,
                        "challenges" => tx.put_challenge(&codec::decode(v)?)?,
                        "rp_keys" => tx.put_rp_key(&codec::decode(v)?)?,
                        _ => tx.put_bytes(*table, k, v)?,
                    }
                }
            }
            for rec in &s.audit {
                tx.import_audit(&codec::decode(rec)?, rec)?;
            }
            for rec in &s.fraud {
                tx.put_fraud_report(&codec::decode(rec)?)?;
            }
            for (k, start, count) in &s.attempts {
                tx.import_attempts(k, *start, *count)?;
            }
            Ok(())
        })?;
        Ok(counts)
    }

    /// Every record of the embedded store in one read transaction.
    fn snapshot(&self, db: &Database) -> Result<Snapshot> {
        let r = db.begin_read()?;
        let mut records = Vec::new();
        for table in RECORD_TABLES {
            records.push((table, r.range_bytes(table, "", "\u{10FFFF}", usize::MAX)?));
        }
        let audit = r.audit_bytes(0, usize::MAX)?;
        let fraud = r.fraud_since(0)?;
        let mut attempts = Vec::new();
        for item in r.open_table(RATE_LIMITS)?.iter()? {
            let (k, v) = item?;
            let (start, count) = v.value();
            attempts.push((k.value().to_string(), start, count));
        }
        Ok(Snapshot { records, audit, fraud, attempts })
    }

    /// The number of records per table, as `Snapshot::counts` names them
    /// (`onepush migrate` compares the copy's with the original's).
    pub fn counts(&self) -> Result<Vec<(String, u64)>> {
        let r = self.read()?;
        let mut out = Vec::new();
        for table in RECORD_TABLES {
            out.push((table.name().to_string(), r.count(table)?));
        }
        // The chain has no gap (`audit verify` checks it): its last seq is its length.
        out.push(("audit".to_string(), r.audit_last()?.map_or(0, |e| e.seq)));
        out.push(("fraud_reports".to_string(), r.fraud_since(0)?.len() as u64));
        Ok(out)
    }

    /// Checks the audit log in one snapshot, without writing: the chain,
    /// then its signed head against `key` (an edited entry, a cut-off end, a
    /// recomputed chain, entries the key never signed), then any break an
    /// earlier start found. The number of entries, or where it breaks.
    /// `key` may be missing only for a store from before signed heads.
    pub fn verify_audit(&self, key: Option<&ed25519_dalek::VerifyingKey>) -> Result<std::result::Result<u64, crate::audit::Broken>> {
        use crate::audit::Broken;
        let r = self.read()?;
        let mut after = 0;
        let mut all = Vec::new();
        loop {
            let page = r.audit_bytes(after, 10_000)?;
            if page.is_empty() {
                break;
            }
            for b in page {
                after += 1;
                all.push(codec::decode::<AuditEvent>(&b).map_err(|e| Broken { seq: after, why: e.to_string() }));
            }
        }
        let head = r.audit_signed_head()?;
        let found = r.audit_head_break()?;
        if head.is_none() && !r.audit_signing_started()? {
            // From before signed heads: only the chain can be checked (the
            // first start of this version signs its head).
            return Ok(crate::audit::verify(all));
        }
        let key = key.ok_or_else(|| Error::Internal("its audit head is signed: the audit key file that signed it is needed".into()))?;
        Ok(crate::audit::verify_signed(all, head.as_ref(), key).and_then(|n| match found {
            Some(b) => Err(Broken { seq: b.seq, why: format!("{} (found at the start of {})", b.why, b.found_at) }),
            None => Ok(n),
        }))
    }

    /// `onepush audit export`: every entry as a JSON line, oldest first, then
    /// the head signed in the same snapshot, so that the export can be
    /// checked elsewhere with only the public key.
    pub fn audit_export(&self) -> Result<String> {
        let r = self.read()?;
        let mut out = String::new();
        let mut after = 0;
        loop {
            let page = r.audit_after(after, 10_000)?;
            if page.is_empty() {
                break;
            }
            for e in page {
                after = e.seq;
                out.push_str(&serde_json::to_string(&e).map_err(|e| Error::Internal(e.to_string()))?);
                out.push('\n');
            }
        }
        if let Some(signed_head) = r.audit_signed_head()? {
            let line = crate::audit::ExportLine::Head { signed_head };
            out.push_str(&serde_json::to_string(&line).map_err(|e| Error::Internal(e.to_string()))?);
            out.push('\n');
        }
        Ok(out)
    }

    /// Up to `limit` audit entries after `after`, as `audit export` writes
    /// them (one JSON line each), for `audit export --follow`.
    pub fn audit_lines_after(&self, after: u64, limit: usize) -> Result<String> {
        let mut out = String::new();
        for e in self.read()?.audit_after(after, limit)? {
            out.push_str(&serde_json::to_string(&e).map_err(|e| Error::Internal(e.to_string()))?);
            out.push('\n');
        }
        Ok(out)
    }

    /// The file's size, or the PostgreSQL database's.
    pub fn stats(&self) -> Stats {
        let file_bytes = match &self.backend {
            Backend::Redb { path, .. } => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            Backend::Pg(pool) => pool
                .get()
                .and_then(|mut c| c.query("SELECT pg_database_size(current_database())", &[]))
                .ok()
                .and_then(|rows| rows.first().map(|r| pg::unbig(r.get(0))))
                .unwrap_or(0),
        };
        Stats { file_bytes }
    }

    /// The embedded database, for tests that tamper with it.
    #[cfg(test)]
    pub(crate) fn redb_for_test(&self) -> &Database {
        match &self.backend {
            Backend::Redb { db, .. } => db,
            Backend::Pg(_) => panic!("not an embedded store"),
        }
    }
}

/// The record tables (key → encoded record) that `onepush migrate` copies.
const RECORD_TABLES: [redb::TableDefinition<&str, &[u8]>; 8] = [CONTRACTS, USERS, TOKENS, CHALLENGES, RP_KEYS, OPERATORS, NOTICES, META];

/// A record table and its records (key, encoded record).
type TableRows = (redb::TableDefinition<'static, &'static str, &'static [u8]>, Vec<(String, Vec<u8>)>);

/// An embedded store's records as of one read transaction.
struct Snapshot {
    records: Vec<TableRows>,
    audit: Vec<Vec<u8>>,
    fraud: Vec<Vec<u8>>,
    attempts: Vec<(String, Ms, u32)>,
}

impl Snapshot {
    fn counts(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self.records.iter().map(|(t, rows)| (t.name().to_string(), rows.len() as u64)).collect();
        out.push(("audit".to_string(), self.audit.len() as u64));
        out.push(("fraud_reports".to_string(), self.fraud.len() as u64));
        out
    }
}

pub struct ReadTx {
    backend: ReadBackend,
}

#[allow(clippy::large_enum_variant, reason = "one per request, on its thread's stack")]
enum ReadBackend {
    Redb(ReadTransaction),
    Pg(pg::PgTx),
}

pub struct WriteTx {
    pub(crate) backend: WriteBackend,
    /// Set by every put/remove: a job that fails after writing poisons its batch.
    pub(crate) dirty: bool,
    now: Ms,
    /// The last audit event's (seq, hash), read once per transaction.
    audit_head: Option<(u64, String)>,
    /// Whether this transaction appended to the audit log (its head is signed then).
    audit_appended: bool,
    /// Messages for the other nodes (PostgreSQL), sent with the commit.
    published: Vec<String>,
    /// Records of the cached tables this transaction changed (PostgreSQL):
    /// dropped from this node's cache after the commit.
    pub(crate) changed: Vec<(&'static str, String)>,
}

#[allow(clippy::large_enum_variant, reason = "one per batch, on the writer thread's stack")]
pub(crate) enum WriteBackend {
    Redb(WriteTransaction),
    Pg(pg::PgTx),
}

/// The primitives behind `Reader`'s methods, implemented once per backend
/// (for both redb transaction kinds by `impl_redb_reader!`, and for
/// PostgreSQL below). Tables are named by their redb definitions; the
/// PostgreSQL backend maps each name to its table. Not part of the
/// interface: only this module calls them.
#[doc(hidden)]
pub trait RawReader {
    fn get_bytes(&self, table: redb::TableDefinition<&str, &[u8]>, key: &str) -> Result<Option<Vec<u8>>>;
    /// Records with keys in `[from, to)`, at most `limit`.
    fn range_bytes(&self, table: redb::TableDefinition<&str, &[u8]>, from: &str, to: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>>;
    /// The pending challenges of a token, oldest first.
    fn pending_bytes(&self, token_id: &str) -> Result<Vec<Vec<u8>>>;
    /// Audit events with seq > after, at most limit.
    fn audit_bytes(&self, after: u64, limit: usize) -> Result<Vec<Vec<u8>>>;
    fn count(&self, table: redb::TableDefinition<&str, &[u8]>) -> Result<u64>;
    fn audit_bytes_at(&self, seq: u64) -> Result<Option<Vec<u8>>>;
    fn audit_last_bytes(&self) -> Result<Option<Vec<u8>>>;
    fn fraud_since(&self, since: Ms) -> Result<Vec<Vec<u8>>>;
    fn raw_token_by_public_key(&self, public_key: &str) -> Result<Option<String>>;
    fn raw_rp_name_by_hash(&self, key_hash: &str) -> Result<Option<String>>;
    fn raw_earliest_expiry(&self) -> Result<Option<Ms>>;
    fn raw_audit_seqs_about(&self, contract_no: &str, user_id: Option<&str>) -> Result<Vec<u64>>;
    fn raw_challenge_ids_since(&self, since: Ms) -> Result<Vec<String>>;
    fn raw_pending_count(&self) -> Result<u64>;
}

macro_rules! impl_redb_reader {
    ($ty:ty) => {
        impl RawReader for $ty {
            fn get_bytes(&self, table: redb::TableDefinition<&str, &[u8]>, key: &str) -> Result<Option<Vec<u8>>> {
                let t = self.open_table(table)?;
                let v = t.get(key)?.map(|v| v.value().to_vec());
                Ok(v)
            }
            fn range_bytes(
                &self,
                table: redb::TableDefinition<&str, &[u8]>,
                from: &str,
                to: &str,
                limit: usize,
            ) -> Result<Vec<(String, Vec<u8>)>> {
                let t = self.open_table(table)?;
                let mut out = Vec::new();
                for item in t.range(from..to)?.take(limit) {
                    let (k, v) = item?;
                    out.push((k.value().to_string(), v.value().to_vec()));
                }
                Ok(out)
            }
            fn pending_bytes(&self, token_id: &str) -> Result<Vec<Vec<u8>>> {
                let t = self.open_table(TOKEN_PENDING)?;
                let records = self.open_table(CHALLENGES)?;
                let mut out = Vec::new();
                for item in t.range((token_id, 0u64, "")..=(token_id, u64::MAX, "\u{10FFFF}"))? {
                    let (k, _) = item?;
                    let id = k.value().2;
                    let v = records.get(id)?.ok_or_else(|| Error::Internal(format!("index names missing challenge {id}")))?;
                    out.push(v.value().to_vec());
                }
                Ok(out)
            }
            fn audit_bytes(&self, after: u64, limit: usize) -> Result<Vec<Vec<u8>>> {
                let t = self.open_table(AUDIT)?;
                let mut out = Vec::new();
                for item in t.range(after.saturating_add(1)..)?.take(limit) {
                    let (_, v) = item?;
                    out.push(v.value().to_vec());
                }
                Ok(out)
            }
            fn audit_last_bytes(&self) -> Result<Option<Vec<u8>>> {
                let v = self.open_table(AUDIT)?.last()?.map(|(_, v)| v.value().to_vec());
                Ok(v)
            }
            fn count(&self, table: redb::TableDefinition<&str, &[u8]>) -> Result<u64> {
                Ok(self.open_table(table)?.len()?)
            }
            fn audit_bytes_at(&self, seq: u64) -> Result<Option<Vec<u8>>> {
                let t = self.open_table(AUDIT)?;
                let v = t.get(seq)?.map(|v| v.value().to_vec());
                Ok(v)
            }
            fn fraud_since(&self, since: Ms) -> Result<Vec<Vec<u8>>> {
                let t = self.open_table(FRAUD_REPORTS)?;
                let mut out = Vec::new();
                for item in t.range((since, "")..)? {
                    out.push(item?.1.value().to_vec());
                }
                Ok(out)
            }
            fn raw_token_by_public_key(&self, public_key: &str) -> Result<Option<String>> {
                let t = self.open_table(TOKEN_KEYS)?;
                let v = t.get(public_key)?.map(|v| v.value().to_string());
                Ok(v)
            }
            fn raw_rp_name_by_hash(&self, key_hash: &str) -> Result<Option<String>> {
                let t = self.open_table(RP_KEY_HASHES)?;
                let v = t.get(key_hash)?.map(|v| v.value().to_string());
                Ok(v)
            }
            fn raw_earliest_expiry(&self) -> Result<Option<Ms>> {
                let t = self.open_table(CHALLENGE_EXPIRY)?;
                let v = t.first()?.map(|(k, _)| k.value().0);
                Ok(v)
            }
            fn raw_audit_seqs_about(&self, contract_no: &str, user_id: Option<&str>) -> Result<Vec<u64>> {
                let t = self.open_table(AUDIT_BY_SUBJECT)?;
                let mut out = Vec::new();
                let range = match user_id {
                    Some(u) => t.range((contract_no, u, 0u64)..=(contract_no, u, u64::MAX))?,
                    None => t.range((contract_no, "", 0u64)..=(contract_no, "\u{10FFFF}", u64::MAX))?,
                };
                for item in range {
                    out.push(item?.0.value().2);
                }
                out.sort_unstable();
                Ok(out)
            }
            fn raw_challenge_ids_since(&self, since: Ms) -> Result<Vec<String>> {
                let t = self.open_table(CHALLENGES_BY_TIME)?;
                let mut out = Vec::new();
                for item in t.range((since, "")..)? {
                    out.push(item?.0.value().1.to_string());
                }
                Ok(out)
            }
            fn raw_pending_count(&self) -> Result<u64> {
                Ok(self.open_table(CHALLENGE_EXPIRY)?.len()?)
            }
        }
    };
}
impl_redb_reader!(ReadTransaction);
impl_redb_reader!(WriteTransaction);

fn strings(rows: Vec<postgres::Row>) -> Vec<String> {
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

fn first_bytes(rows: Vec<postgres::Row>) -> Option<Vec<u8>> {
    rows.first().map(|r| r.get::<_, Vec<u8>>(0))
}

impl RawReader for pg::PgTx {
    fn get_bytes(&self, table: redb::TableDefinition<&str, &[u8]>, key: &str) -> Result<Option<Vec<u8>>> {
        self.get_record(table.name(), key)
    }
    fn range_bytes(&self, table: redb::TableDefinition<&str, &[u8]>, from: &str, to: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>> {
        let sql = pg::record_sql(table.name())?;
        // "key\0": the first key after `key` (the embedded store's way to page).
        let rows = match from.strip_suffix('\0') {
            Some(after) => self.query(sql.range_after, &[&after, &to, &pg::limit(limit)])?,
            None => self.query(sql.range, &[&from, &to, &pg::limit(limit)])?,
        };
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
    fn pending_bytes(&self, token_id: &str) -> Result<Vec<Vec<u8>>> {
        let rows = self.query("SELECT rec FROM challenges WHERE pending AND token_id = $1 ORDER BY created_at, k", &[&token_id])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
    fn audit_bytes(&self, after: u64, limit: usize) -> Result<Vec<Vec<u8>>> {
        let rows = self.query("SELECT rec FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2", &[&pg::big(after), &pg::limit(limit)])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
    fn count(&self, table: redb::TableDefinition<&str, &[u8]>) -> Result<u64> {
        let rows = self.query(pg::record_sql(table.name())?.count, &[])?;
        Ok(rows.first().map_or(0, |r| pg::unbig(r.get(0))))
    }
    fn audit_bytes_at(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        Ok(first_bytes(self.query("SELECT rec FROM audit WHERE seq = $1", &[&pg::big(seq)])?))
    }
    fn audit_last_bytes(&self) -> Result<Option<Vec<u8>>> {
        Ok(first_bytes(self.query("SELECT rec FROM audit ORDER BY seq DESC LIMIT 1", &[])?))
    }
    fn fraud_since(&self, since: Ms) -> Result<Vec<Vec<u8>>> {
        let rows =
            self.query("SELECT rec FROM fraud_reports WHERE reported_at >= $1 ORDER BY reported_at, challenge_id", &[&pg::big(since)])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
    fn raw_token_by_public_key(&self, public_key: &str) -> Result<Option<String>> {
        Ok(strings(self.query("SELECT k FROM tokens WHERE public_key = $1", &[&public_key])?).pop())
    }
    fn raw_rp_name_by_hash(&self, key_hash: &str) -> Result<Option<String>> {
        Ok(strings(self.query("SELECT k FROM rp_keys WHERE live_hash = $1", &[&key_hash])?).pop())
    }
    fn raw_earliest_expiry(&self) -> Result<Option<Ms>> {
        let rows = self.query("SELECT expires_at FROM challenges WHERE pending ORDER BY expires_at LIMIT 1", &[])?;
        Ok(rows.first().map(|r| pg::unbig(r.get(0))))
    }
    fn raw_audit_seqs_about(&self, contract_no: &str, user_id: Option<&str>) -> Result<Vec<u64>> {
        let rows = match user_id {
            Some(u) => self.query("SELECT seq FROM audit WHERE contract_no = $1 AND user_id = $2 ORDER BY seq", &[&contract_no, &u])?,
            None => self.query("SELECT seq FROM audit WHERE contract_no = $1 ORDER BY seq", &[&contract_no])?,
        };
        Ok(rows.iter().map(|r| pg::unbig(r.get(0))).collect())
    }
    fn raw_challenge_ids_since(&self, since: Ms) -> Result<Vec<String>> {
        Ok(strings(self.query("SELECT k FROM challenges WHERE created_at >= $1 ORDER BY created_at, k", &[&pg::big(since)])?))
    }
    fn raw_pending_count(&self) -> Result<u64> {
        let rows = self.query("SELECT count(*) FROM challenges WHERE pending", &[])?;
        Ok(rows.first().map_or(0, |r| pg::unbig(r.get(0))))
    }
}

/// Forwards every primitive to the transaction's backend.
macro_rules! delegate_reader {
    ($ty:ty, $raw:ident) => {
        impl RawReader for $ty {
            fn get_bytes(&self, table: redb::TableDefinition<&str, &[u8]>, key: &str) -> Result<Option<Vec<u8>>> {
                self.$raw().get_bytes(table, key)
            }
            fn range_bytes(
                &self,
                table: redb::TableDefinition<&str, &[u8]>,
                from: &str,
                to: &str,
                limit: usize,
            ) -> Result<Vec<(String, Vec<u8>)>> {
                self.$raw().range_bytes(table, from, to, limit)
            }
            fn pending_bytes(&self, token_id: &str) -> Result<Vec<Vec<u8>>> {
                self.$raw().pending_bytes(token_id)
            }
            fn audit_bytes(&self, after: u64, limit: usize) -> Result<Vec<Vec<u8>>> {
                self.$raw().audit_bytes(after, limit)
            }
            fn count(&self, table: redb::TableDefinition<&str, &[u8]>) -> Result<u64> {
                self.$raw().count(table)
            }
            fn audit_bytes_at(&self, seq: u64) -> Result<Option<Vec<u8>>> {
                self.$raw().audit_bytes_at(seq)
            }
            fn audit_last_bytes(&self) -> Result<Option<Vec<u8>>> {
                self.$raw().audit_last_bytes()
            }
            fn fraud_since(&self, since: Ms) -> Result<Vec<Vec<u8>>> {
                self.$raw().fraud_since(since)
            }
            fn raw_token_by_public_key(&self, public_key: &str) -> Result<Option<String>> {
                self.$raw().raw_token_by_public_key(public_key)
            }
            fn raw_rp_name_by_hash(&self, key_hash: &str) -> Result<Option<String>> {
                self.$raw().raw_rp_name_by_hash(key_hash)
            }
            fn raw_earliest_expiry(&self) -> Result<Option<Ms>> {
                self.$raw().raw_earliest_expiry()
            }
            fn raw_audit_seqs_about(&self, contract_no: &str, user_id: Option<&str>) -> Result<Vec<u64>> {
                self.$raw().raw_audit_seqs_about(contract_no, user_id)
            }
            fn raw_challenge_ids_since(&self, since: Ms) -> Result<Vec<String>> {
                self.$raw().raw_challenge_ids_since(since)
            }
            fn raw_pending_count(&self) -> Result<u64> {
                self.$raw().raw_pending_count()
            }
        }
        impl Reader for $ty {}
    };
}

impl ReadTx {
    fn raw(&self) -> &dyn RawReader {
        match &self.backend {
            ReadBackend::Redb(t) => t,
            ReadBackend::Pg(t) => t,
        }
    }
}

impl WriteTx {
    fn raw(&self) -> &dyn RawReader {
        match &self.backend {
            WriteBackend::Redb(t) => t,
            WriteBackend::Pg(t) => t,
        }
    }
}
delegate_reader!(ReadTx, raw);
delegate_reader!(WriteTx, raw);

fn get<T: serde::de::DeserializeOwned>(
    r: &(impl RawReader + ?Sized),
    table: redb::TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>> {
    r.get_bytes(table, key)?.map(|b| codec::decode(&b)).transpose()
}

/// Typed reads, available on both transaction kinds.
pub trait Reader: RawReader {
    /// The token a public key was provisioned for.
    fn token_by_public_key(&self, public_key: &str) -> Result<Option<String>> {
        self.raw_token_by_public_key(public_key)
    }
    fn rp_name_by_hash(&self, key_hash: &str) -> Result<Option<String>> {
        self.raw_rp_name_by_hash(key_hash)
    }
    fn earliest_expiry(&self) -> Result<Option<Ms>> {
        self.raw_earliest_expiry()
    }
    /// Audit seqs about a contract (and a user of it), ascending.
    fn audit_seqs_about(&self, contract_no: &str, user_id: Option<&str>) -> Result<Vec<u64>> {
        self.raw_audit_seqs_about(contract_no, user_id)
    }
    fn challenge_ids_since(&self, since: Ms) -> Result<Vec<String>> {
        self.raw_challenge_ids_since(since)
    }
    fn pending_count(&self) -> Result<u64> {
        self.raw_pending_count()
    }
    fn contract(&self, contract_no: &str) -> Result<Option<Contract>> {
        get(self, CONTRACTS, contract_no)
    }
    fn user(&self, contract_no: &str, user_id: &str) -> Result<Option<User>> {
        get(self, USERS, &user_key(contract_no, user_id))
    }
    fn token(&self, token_id: &str) -> Result<Option<Token>> {
        get(self, TOKENS, token_id)
    }
    fn challenge(&self, id: &str) -> Result<Option<Challenge>> {
        get(self, CHALLENGES, id)
    }
    fn operator(&self, name: &str) -> Result<Option<Operator>> {
        get(self, OPERATORS, name)
    }
    fn rp_key(&self, name: &str) -> Result<Option<RpKey>> {
        get(self, RP_KEYS, name)
    }
    /// The contracts `serve --demo` created (its pages act on these only).
    /// The audit head as last signed with the audit key.
    fn audit_signed_head(&self) -> Result<Option<SignedHead>> {
        get(self, META, "audit_signed_head")
    }
    /// Whether this store's audit head has been signed since signing began
    /// (a store from before it has entries and no head, and is signed once).
    fn audit_signing_started(&self) -> Result<bool> {
        Ok(self.get_bytes(META, "audit_signing_started")?.is_some())
    }
    /// What a start found wrong with the signed head, if anything.
    fn audit_head_break(&self) -> Result<Option<HeadBreak>> {
        get(self, META, "audit_head_break")
    }
    fn audit_last(&self) -> Result<Option<AuditEvent>> {
        self.audit_last_bytes()?.map(|b| codec::decode(&b)).transpose()
    }
    fn demo_contracts(&self) -> Result<Vec<String>> {
        Ok(get(self, META, "demo_contracts")?.unwrap_or_default())
    }
    fn system(&self) -> Result<SystemState> {
        Ok(get(self, META, "system")?.unwrap_or_default())
    }
    fn operator_count(&self) -> Result<u64> {
        self.count(OPERATORS)
    }
    /// Every operator, by name.
    fn operators(&self) -> Result<Vec<Operator>> {
        self.range_bytes(OPERATORS, "", "\u{10FFFF}", usize::MAX)?.iter().map(|(_, b)| codec::decode(b)).collect()
    }
    /// Pending challenges of a token, oldest first.
    fn pending_for_token(&self, token_id: &str) -> Result<Vec<Challenge>> {
        self.pending_bytes(token_id)?.iter().map(|b| codec::decode(b)).collect()
    }
    /// Whether any token holds a Web Push subscription (checked at start,
    /// before a missing VAPID key file could be replaced by a new key).
    fn any_webpush_subscription(&self) -> Result<bool> {
        let mut from = String::new();
        loop {
            let page = self.range_bytes(TOKENS, &from, "\u{10FFFF}", 1_000)?;
            let Some((last, _)) = page.last() else { return Ok(false) };
            for (_, b) in &page {
                let t: Token = codec::decode(b)?;
                if matches!(t.push, Some(crate::domain::account::PushSubscription::Webpush { .. })) {
                    return Ok(true);
                }
            }
            from = format!("{last}\0");
        }
    }
    fn rp_keys(&self) -> Result<Vec<RpKey>> {
        self.range_bytes(RP_KEYS, "", "\u{10FFFF}", usize::MAX)?.iter().map(|(_, b)| codec::decode(b)).collect()
    }
    fn users_of(&self, contract_no: &str) -> Result<Vec<User>> {
        let from = format!("{contract_no}/");
        let to = format!("{contract_no}0"); // '0' follows '/' in ASCII
        self.range_bytes(USERS, &from, &to, usize::MAX)?.iter().map(|(_, b)| codec::decode(b)).collect()
    }
    fn notices(&self) -> Result<Vec<Notice>> {
        self.range_bytes(NOTICES, "", "\u{10FFFF}", usize::MAX)?.iter().map(|(_, b)| codec::decode(b)).collect()
    }
    fn notice(&self, id: &str) -> Result<Option<Notice>> {
        get(self, NOTICES, id)
    }
    /// Contracts after `after` in contract-number order.
    fn contracts_after(&self, after: &str, limit: usize) -> Result<Vec<Contract>> {
        let from = format!("{after}\u{0}");
        let from = if after.is_empty() { "" } else { from.as_str() };
        self.range_bytes(CONTRACTS, from, "\u{10FFFF}", limit)?.iter().map(|(_, b)| codec::decode(b)).collect()
    }
    fn audit_at(&self, seq: u64) -> Result<Option<AuditEvent>> {
        self.audit_bytes_at(seq)?.map(|b| codec::decode(&b)).transpose()
    }
    fn fraud_reports_since(&self, since: Ms) -> Result<Vec<FraudReport>> {
        self.fraud_since(since)?.iter().map(|b| codec::decode(b)).collect()
    }
    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>> {
        self.audit_bytes(after, limit)?.iter().map(|b| codec::decode(b)).collect()
    }
}
