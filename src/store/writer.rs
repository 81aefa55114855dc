//! The single writer: group commit for every change onepush makes.
//!
//! Request threads, the sweeper and the waiter thread hand jobs to one writer
//! thread. It runs whatever has queued up in one redb transaction, commits it
//! with one fsync (when any job needs durability), and only then calls each
//! job's completion, which answers the client. So a decision is on disk
//! before anyone is told of it, and under load many decisions share a fsync.
//!
//! A job must do its checks before its first write. A job that fails after
//! writing would leave a partial change, so its whole batch is rolled back
//! and re-run without it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Instant;

use super::{Backend, WriteBackend, WriteTx};
use crate::audit::AuditKey;
use crate::domain::now_ms;
use crate::error::{Error, Result};
use crate::metrics::WriterStats;

const MAX_BATCH: usize = 512;

/// Whether the job's effect must be on disk before its completion runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Decisions, registrations, anything a client is told of.
    Durable,
    /// Bookkeeping that may be lost in a crash (the delivered mark); made
    /// durable by the next durable commit.
    Lazy,
}

trait Job: Send {
    fn durability(&self) -> Durability;
    /// Runs the job; returns false if it failed.
    fn run(&mut self, tx: &mut WriteTx) -> bool;
    /// The job panicked in its last run.
    fn panicked(&self) -> bool;
    /// Marks the job failed for good (it failed after writing).
    fn drop_from_batch(&mut self);
    fn is_dropped(&self) -> bool;
    fn finish(self: Box<Self>, committed: Result<()>);
}

struct FnJob<T, F, C> {
    durability: Durability,
    f: F,
    done: Option<C>,
    out: Option<Result<T>>,
    dropped: bool,
    panicked: bool,
}

impl<T, F, C> Job for FnJob<T, F, C>
where
    T: Send,
    F: FnMut(&mut WriteTx) -> Result<T> + Send,
    C: FnOnce(Result<T>) + Send,
{
    fn durability(&self) -> Durability {
        self.durability
    }
    fn run(&mut self, tx: &mut WriteTx) -> bool {
        // A job that panics fails alone: its request gets 500 and the batch
        // is re-run without it, so one bad input cannot stop every later write.
        let out = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.f)(tx))) {
            Ok(out) => out,
            Err(_) => {
                self.panicked = true;
                log::error!("a write job panicked; its request fails and its batch is re-run without it");
                Err(Error::Internal("a write job panicked".into()))
            }
        };
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }
    fn panicked(&self) -> bool {
        self.panicked
    }
    fn drop_from_batch(&mut self) {
        self.dropped = true;
    }
    fn is_dropped(&self) -> bool {
        self.dropped
    }
    fn finish(mut self: Box<Self>, committed: Result<()>) {
        let out = match (committed, self.out.take()) {
            (Ok(()), Some(out)) => out,
            (Ok(()), None) => Err(Error::Internal("job did not run".into())),
            (Err(e), _) => Err(e),
        };
        if let Some(done) = self.done.take() {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(out))).is_err() {
                log::error!("a write job's completion panicked");
            }
        }
    }
}

#[derive(Clone)]
pub struct Writer {
    tx: Sender<Box<dyn Job>>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    #[allow(clippy::expect_used, reason = "started once per store: without this thread nothing is written")]
    pub(super) fn start(backend: Backend, audit_key: Arc<OnceLock<AuditKey>>) -> Writer {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let stats = Arc::new(WriterStats::default());
        let s = stats.clone();
        thread::Builder::new().name("writer".into()).spawn(move || run(&backend, &audit_key, &rx, &s)).expect("spawning the writer thread");
        Writer { tx, stats }
    }

    /// Queues `f`; after the commit, `done` gets its result. `f` may run more
    /// than once (when a batch is re-run), so it must not consume its captures.
    pub fn submit<T, F, C>(&self, durability: Durability, f: F, done: C)
    where
        T: Send + 'static,
        F: FnMut(&mut WriteTx) -> Result<T> + Send + 'static,
        C: FnOnce(Result<T>) + Send + 'static,
    {
        let job: Box<dyn Job> = Box::new(FnJob { durability, f, done: Some(done), out: None, dropped: false, panicked: false });
        if let Err(mpsc::SendError(job)) = self.tx.send(job) {
            job.finish(Err(Error::Internal("the writer has stopped".into())));
        }
    }

    /// Runs `f` and waits for the commit. Never call this from a completion.
    pub fn call<T, F>(&self, durability: Durability, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut WriteTx) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(durability, f, move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or_else(|_| Err(Error::Internal("the writer has stopped".into())))
    }
}

fn run(backend: &Backend, audit_key: &OnceLock<AuditKey>, rx: &Receiver<Box<dyn Job>>, stats: &WriterStats) {
    // The end of the audit chain, carried from commit to commit: only this
    // thread writes to an embedded store, so it never has to be read back.
    // (On PostgreSQL other nodes append too: read under the batch's lock.)
    let mut audit_head = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let committed = commit_batch(backend, audit_key.get(), &mut batch, &mut audit_head);
        stats.commit_time.observe(started.elapsed());
        stats.commits.fetch_add(1, Relaxed);
        stats.jobs.fetch_add(batch.len() as u64, Relaxed);
        if let Err(e) = &committed {
            stats.failed_batches.fetch_add(1, Relaxed);
            log::error!("write batch of {} failed: {e}", batch.len());
        }
        for job in batch {
            job.finish(committed.clone());
        }
    }
    log::debug!("writer stopped");
}

/// A new write transaction: on PostgreSQL it waits for every other node's
/// batch to end (`pg::PgTx::begin_write`).
fn begin(backend: &Backend, durable: bool, audit_head: &Option<(u64, String)>) -> Result<WriteTx> {
    Ok(match backend {
        Backend::Redb { db, .. } => {
            let mut txn = db.begin_write()?;
            txn.set_durability(if durable { redb::Durability::Immediate } else { redb::Durability::None })?;
            WriteTx::new(WriteBackend::Redb(txn), now_ms(), audit_head.clone())
        }
        Backend::Pg(pool) => WriteTx::new(WriteBackend::Pg(super::pg::PgTx::begin_write(pool, durable)?), now_ms(), None),
    })
}

fn abort(tx: WriteTx) -> Result<()> {
    match tx.backend {
        WriteBackend::Redb(txn) => Ok(txn.abort()?),
        WriteBackend::Pg(pg) => pg.rollback(),
    }
}

fn commit(tx: WriteTx) -> Result<()> {
    match tx.backend {
        WriteBackend::Redb(txn) => Ok(txn.commit()?),
        WriteBackend::Pg(pg) => pg.commit(),
    }
}

fn commit_batch(
    backend: &Backend,
    audit_key: Option<&AuditKey>,
    batch: &mut [Box<dyn Job>],
    audit_head: &mut Option<(u64, String)>,
) -> Result<()> {
    let durable = batch.iter().any(|j| j.durability() == Durability::Durable);
    loop {
        let mut tx = begin(backend, durable, audit_head)?;
        let mut poisoned = None;
        for (i, job) in batch.iter_mut().enumerate() {
            if job.is_dropped() {
                continue;
            }
            tx.dirty = false;
            // On PostgreSQL a failed statement aborts the whole transaction,
            // written or not: the batch is re-run without that job.
            if !job.run(&mut tx) && (tx.dirty || job.panicked() || tx.failed()) {
                poisoned = Some(i);
                break;
            }
        }
        match poisoned {
            Some(i) => {
                log::warn!("a write job failed after writing; re-running its batch without it");
                abort(tx)?;
                batch[i].drop_from_batch();
            }
            None => {
                if let Some(key) = audit_key {
                    if let Err(e) = tx.sign_audit_head(key) {
                        abort(tx)?;
                        return Err(e);
                    }
                }
                if let Err(e) = tx.notify_all() {
                    abort(tx)?;
                    return Err(e);
                }
                let head = tx.audit_head.take();
                let changed = std::mem::take(&mut tx.changed);
                let committed = commit(tx);
                // After the commit, whatever its outcome: a look-up from now
                // on reads what was committed.
                if let Backend::Pg(pool) = backend {
                    for (table, key) in &changed {
                        pool.cache.forget(table, key);
                    }
                }
                if let Err(e) = committed {
                    *audit_head = None;
                    return Err(e);
                }
                if head.is_some() && matches!(backend, Backend::Redb { .. }) {
                    *audit_head = head;
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::tests::contract;
    use crate::store::{Reader, Store};

    /// A store in a new temporary directory (removed by the test).
    fn temp_store() -> (std::path::PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!("onepush-writer-{}", crate::domain::ids::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("t.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn attempts_are_counted_per_window_and_purged_after_it() {
        let (dir, store) = temp_store();
        let w = store.writer();
        let count =
            |now: crate::domain::Ms| w.call(Durability::Durable, move |t| t.count_attempt("signin/203.0.113.7", 2, 1_000, now)).unwrap();
        assert_eq!(count(0), Ok(()));
        assert_eq!(count(100), Ok(()));
        assert_eq!(count(400), Err(600), "the third in the window waits for its end");
        assert_eq!(count(1_000), Ok(()), "a new window");
        assert_eq!(w.call(Durability::Durable, |t| t.purge_attempts(1_000, 10)).unwrap(), 0, "the live window stays");
        assert_eq!(w.call(Durability::Durable, |t| t.purge_attempts(1_001, 10)).unwrap(), 1);
        assert_eq!(count(1_100), Ok(()), "purged: counted from zero again");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_older_store_gets_its_public_key_index_at_open() {
        let (dir, store) = temp_store();
        let token = crate::domain::account::Token {
            token_id: "ONEP12345674".into(),
            public_key: "k".repeat(43),
            otp_secret_sealed: vec![],
            label: None,
            push_endpoint: None,
            created_at: 0,
            provision_expires_at: 1,
            bound_to: None,
            bound_at: None,
            revoked_at: None,
            revoke_reason: None,
            last_otp_step: None,
            failures: 0,
            lang: Default::default(),
            push: None,
        };
        store.writer().call(Durability::Durable, move |t| t.put_token(&token)).unwrap();
        // As a store from before the index: the token without its entry.
        {
            let txn = store.redb_for_test().begin_write().unwrap();
            txn.open_table(crate::store::tables::TOKEN_KEYS).unwrap().remove("k".repeat(43).as_str()).unwrap();
            txn.commit().unwrap();
        }
        assert_eq!(store.read().unwrap().token_by_public_key(&"k".repeat(43)).unwrap(), None);
        drop(store);
        let store = Store::open(&dir.join("t.redb")).unwrap();
        assert_eq!(store.read().unwrap().token_by_public_key(&"k".repeat(43)).unwrap().as_deref(), Some("ONEP12345674"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_job_failing_after_writing_leaves_nothing_and_spares_its_batch() {
        let (dir, store) = temp_store();
        let w = store.writer();
        let (tx, rx) = mpsc::channel();
        let mut a = contract();
        a.contract_no = "A".into();
        let mut b = contract();
        b.contract_no = "B".into();
        let mut c = contract();
        c.contract_no = "C".into();
        for (rec, fail) in [(a, false), (b, true), (c, false)] {
            let tx = tx.clone();
            w.submit(
                Durability::Durable,
                move |t| {
                    t.put_contract(&rec)?;
                    if fail {
                        return Err(Error::Conflict("late failure".into()));
                    }
                    Ok(())
                },
                move |r| tx.send(r).unwrap(),
            );
        }
        let results: Vec<_> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
        let r = store.read().unwrap();
        assert!(r.contract("A").unwrap().is_some());
        assert!(r.contract("B").unwrap().is_none(), "the failed job's write must be rolled back");
        assert!(r.contract("C").unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_job_that_panics_fails_alone_and_the_writer_goes_on() {
        let (dir, store) = temp_store();
        let w = store.writer();
        let (tx, rx) = mpsc::channel();
        for (name, panics) in [("A", false), ("B", true), ("C", false)] {
            let tx = tx.clone();
            let mut rec = contract();
            rec.contract_no = name.into();
            w.submit(
                Durability::Durable,
                move |t| {
                    t.put_contract(&rec)?;
                    if panics {
                        panic!("a bug in a use case");
                    }
                    Ok(())
                },
                move |r| tx.send(r.is_ok()).unwrap(),
            );
        }
        let mut results: Vec<bool> = (0..3).map(|_| rx.recv().unwrap()).collect();
        results.sort();
        assert_eq!(results, [false, true, true]);
        // Later writes still commit.
        let mut d = contract();
        d.contract_no = "D".into();
        w.call(Durability::Durable, move |t| t.put_contract(&d)).unwrap();
        let r = store.read().unwrap();
        assert!(r.contract("B").unwrap().is_none(), "the panicking job's write is rolled back");
        assert!(r.contract("A").unwrap().is_some() && r.contract("C").unwrap().is_some() && r.contract("D").unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
