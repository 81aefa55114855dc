//! Use cases: provision, register, login, approve, deliver, answer, cancel,
//! sweep, and the operator and CLI actions.
//!
//! Each use case = input validation + domain rules + one job on the single
//! writer (one transaction, with its audit entries) + events for parked
//! waiters, sent only after the commit. Expensive work (Argon2, signature
//! checks) runs on the calling thread, before the job is queued, so the
//! writer only ever does store work.
//!
//! Asynchronous use cases take a `done` callback, called after the commit;
//! the HTTP layer passes one that answers the request, so no worker thread
//! waits for an fsync.
//!
//! The use cases live in one module per feature, each an `impl App` block:
//! `gate`, `challenges`, `devices`, `registration`, `accounts`, `notices`,
//! `operators`, `queries`, `demo`. This file holds the core they share: the
//! `App` with its locks, the write path (`submit`/`call`) and the one
//! after-commit hook through which every event passes.

mod accounts;
mod challenges;
mod demo;
mod devices;
mod gate;
mod import;
mod notices;
mod operators;
mod queries;
mod registration;
mod sessions;

use devices::{end_token, Ending};
use gate::Credentials;

pub use accounts::{ActionInput, CustomerDeregister, NewContract, NewUser, ReasonInput, ServiceAdminInput};
pub use challenges::AnswerInput;
pub use demo::{DemoSeed, DEMO_USERS};
pub use devices::{DeviceRequest, ProvisionInput, ProvisionOutput, PushInput, SettingsInput};
pub use gate::{check_display, ApprovalInput, ClientInfo, GateAnswer, LoginInput};
pub use notices::{NoticeInput, SystemInput};
pub use queries::{AuditQuery, Stats, DAY};
pub use registration::{RegistrationInput, RegistrationOutput};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{AuditEvent, NewEvent};
use crate::config::Config;
use crate::domain::account::{
    gate, AllowReason, Contract, ContractStatus, DenyReason, EditionPolicy, Gate, GateSettings, Lang, PushSubscription, Registration, Role,
    Token, User,
};
use crate::domain::challenge::{number_challenge, Answer, CancelCause, Challenge, Decision, Kind, Status};
use crate::domain::ids::{self, check_contract_no, check_text, check_user_id, ChallengeId, ContractNo, Password, TokenId, UserId};
use crate::domain::lifecycle::{self, Action, Plan};
use crate::domain::sig;
use crate::domain::totp;
use crate::domain::{now_ms, parse_rfc3339, rfc3339, Ms, SECOND};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::passwords::Passwords;
use crate::store::{Durability, Notice, Operator, Reader, RpKey, Store, SystemState, WriteTx, Writer};

/// Display lines: at most 12; label 1–40, value 1–200 characters.
pub const MAX_DISPLAY_LINES: usize = 12;

/// Registration attempts (successful ones included) per client address per
/// `REGISTRATION_RATE_WINDOW`, counted apart from provisioning (API.md).
pub const REGISTRATION_RATE_LIMIT: u32 = 20;

pub const REGISTRATION_RATE_WINDOW: Ms = 600 * SECOND;

/// The longest brute-force window: counts older than this are purged.
const RATE_WINDOW_MAX: Ms = 600 * SECOND;

/// Provisioning attempts per client address per `PROVISION_RATE_WINDOW`.
pub const PROVISION_RATE_LIMIT: u32 = 20;

pub const PROVISION_RATE_WINDOW: Ms = 600 * SECOND;

/// After `otp_max_failures` failed registrations a user waits this long.
pub const REGISTRATION_LOCKOUT: Ms = 900 * SECOND;

/// Admin sessions: 8 h absolute, 30 min idle.
pub const SESSION_MAX: Ms = 8 * 3600 * SECOND;

pub const SESSION_IDLE: Ms = 1800 * SECOND;

/// Where `serve` writes the one-time code when stdout is not a terminal.
pub const BOOTSTRAP_CODE_FILE: &str = "bootstrap.code";

/// Operator sign-in and bootstrap attempts per client address per window.
pub const SIGNIN_RATE_LIMIT: u32 = 20;

pub const SIGNIN_RATE_WINDOW: Ms = 600 * SECOND;

/// What parked waiters must hear, sent after the commit that caused it.
#[derive(Debug, Clone)]
pub enum Event {
    /// A challenge was created (counted by the after-commit hook only).
    Created(Kind),
    /// A challenge left `pending`; `at` is when its commit finished.
    Closed(Box<Challenge>, Instant),
    /// A token has (new) pending challenges.
    Pending(String),
    /// A token was revoked: its parked polls get 403 at once.
    TokenRevoked(String),
    /// A challenge for a token with a push endpoint: wake the phone.
    Wake(crate::wakeup::Wake),
}

pub type Notify = Arc<dyn Fn(Event) + Send + Sync>;

/// The one after-commit hook. Every event of a committed job passes here
/// once, whatever use case made it, and never for a job that was rolled back
/// or re-run: the counters, the delivered marks, then the parked waiters and
/// wake-ups (through `notify`). Nothing is counted or woken by hand.
struct AfterCommit {
    metrics: Arc<Metrics>,
    delivered: Arc<Mutex<HashMap<String, Ms>>>,
    notify: Notify,
}

impl AfterCommit {
    fn run(&self, events: Vec<Event>) {
        let committed = Instant::now();
        for e in events {
            match e {
                Event::Created(kind) => self.metrics.challenge_created(kind),
                Event::Closed(c, _) => {
                    self.metrics.challenge_closed(c.kind, c.status);
                    if c.report_fraud {
                        self.metrics.fraud_reports.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    crate::sync::lock(&self.delivered).remove(&c.id);
                    (self.notify)(Event::Closed(c, committed));
                }
                other => (self.notify)(other),
            }
        }
    }
}

/// What the other nodes' waiters must hear of an event (SPEC R8).
fn remote_of(e: &Event) -> Option<crate::store::pg::Remote> {
    use crate::store::pg::Remote;
    match e {
        Event::Closed(c, _) => Some(Remote::Closed(c.id.clone())),
        Event::Pending(token_id) => Some(Remote::Pending(token_id.clone())),
        Event::TokenRevoked(token_id) => Some(Remote::Revoked(token_id.clone())),
        Event::Created(_) | Event::Wake(_) => None,
    }
}

pub struct App {
    /// Replaced whole on SIGHUP (`reload`); read with `cfg()`.
    config: std::sync::RwLock<Arc<Config>>,
    store: Store,
    writer: Writer,
    pub metrics: Arc<Metrics>,
    pub passwords: Passwords,
    /// The Web Push key pair (its public half is `push-config`).
    vapid: Arc<crate::push::VapidKey>,
    pub secrets: crate::secrets::SecretBox,
    notify: Notify,
    /// Operator sessions and the one-time bootstrap code (SPEC R5.1):
    /// in memory, or shared by every node (`sessions::Sessions`).
    sessions: sessions::Sessions,
    /// Decoded device keys by their base64url text: decompressing an Ed25519
    /// point costs more than the verification's hash; the mapping never changes.
    keys: Mutex<HashMap<String, ed25519_dalek::VerifyingKey>>,
    /// RP key hash → RP name, for live keys. A revocation clears it: here
    /// (`revoke_rp_key`), or on another node sharing the store (its NOTIFY,
    /// or at the latest the next 10 s re-check: `on_remote`).
    /// The generation counts revocations, so a look-up that raced one is not cached.
    rp_cache: Mutex<(u64, HashMap<String, String>)>,
    /// challenge id → first fetch by the phone, for pending challenges.
    delivered: Arc<Mutex<HashMap<String, Ms>>>,
}

impl App {
    pub fn new(cfg: Config, store: Store, metrics: Arc<Metrics>, vapid: Arc<crate::push::VapidKey>, notify: Notify) -> Result<App> {
        let passwords = Passwords::new(cfg.argon2_memory_kib, cfg.argon2_iterations)?;
        let secrets = crate::secrets::SecretBox::load_or_create(&cfg.secret_key_file).map_err(Error::Internal)?;
        let (audit_key, _) = crate::audit::AuditKey::load_or_create(&cfg.audit_key_file).map_err(Error::Internal)?;
        let audit_public = audit_key.public();
        store.set_audit_key(audit_key)?;
        let writer = store.writer();
        let sessions = sessions::Sessions::new(store.shared());
        let app = App {
            config: std::sync::RwLock::new(Arc::new(cfg)),
            store,
            writer,
            metrics,
            vapid,
            passwords,
            secrets,
            notify,
            sessions,
            delivered: Arc::new(Mutex::new(HashMap::new())),
            keys: Mutex::new(HashMap::new()),
            rp_cache: Mutex::new((0, HashMap::new())),
        };
        app.check_audit_head(&audit_public, now_ms())?;
        Ok(app)
    }

    /// Queues a job whose events go to the waiters after its commit.
    pub(crate) fn submit<T, F, C>(&self, durability: Durability, mut f: F, done: C)
    where
        T: Send + 'static,
        F: FnMut(&mut WriteTx, &mut Vec<Event>) -> Result<T> + Send + 'static,
        C: FnOnce(Result<T>) + Send + 'static,
    {
        let hook = AfterCommit { metrics: self.metrics.clone(), delivered: self.delivered.clone(), notify: self.notify.clone() };
        self.writer.submit(
            durability,
            move |tx| {
                let mut events = Vec::new();
                let v = f(tx, &mut events)?;
                // The other nodes on a shared store hear of it at the commit.
                for e in &events {
                    if let Some(r) = remote_of(e) {
                        tx.publish(&r)?;
                    }
                }
                Ok((v, events))
            },
            move |r| match r {
                Ok((v, events)) => {
                    hook.run(events);
                    done(Ok(v))
                }
                Err(e) => done(Err(e)),
            },
        );
    }

    /// `submit`, waiting for the result (CLI, admin and sweeper paths).
    pub(crate) fn call<T, F>(&self, durability: Durability, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut WriteTx, &mut Vec<Event>) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.submit(durability, f, move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or_else(|_| Err(Error::Internal("the writer has stopped".into())))
    }

    /// The settings in force.
    pub fn cfg(&self) -> Arc<Config> {
        crate::sync::read(&self.config).clone()
    }

    /// SIGHUP: takes the settings that can change while serving, and says
    /// which of the others differ (they need a restart).
    pub fn reload(&self, new: Config) -> Vec<&'static str> {
        let mut guard = crate::sync::write(&self.config);
        let old = guard.clone();
        let mut kept = Vec::new();
        let mut next = new;
        if next.listen != old.listen {
            kept.push("listen");
            next.listen = old.listen;
        }
        if next.data_dir != old.data_dir {
            kept.push("data_dir");
            next.data_dir = old.data_dir.clone();
        }
        if next.token_prefix != old.token_prefix {
            kept.push("token_prefix");
            next.token_prefix = old.token_prefix.clone();
        }
        if (next.argon2_memory_kib, next.argon2_iterations) != (old.argon2_memory_kib, old.argon2_iterations) {
            kept.push("argon2_memory_kib/argon2_iterations");
            (next.argon2_memory_kib, next.argon2_iterations) = (old.argon2_memory_kib, old.argon2_iterations);
        }
        if next.secret_key_file != old.secret_key_file {
            kept.push("secret_key_file");
            next.secret_key_file = old.secret_key_file.clone();
        }
        if next.edge != old.edge {
            kept.push("header_timeout/body_timeout/keepalive_timeout/send_timeout/max_connections");
            next.edge = old.edge;
        }
        *guard = Arc::new(next);
        kept
    }

    pub(crate) fn edition(&self, name: &str) -> Result<EditionPolicy> {
        self.cfg()
            .editions
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("contract names edition {name:?}, which the config lacks")))
    }

    pub(super) fn gate_settings(&self, system_suspended: bool) -> GateSettings {
        GateSettings {
            system_suspended,
            require_registration: self.cfg().require_registration,
            max_challenges_per_window: self.cfg().max_challenges_per_window,
            challenge_window: self.cfg().challenge_window,
        }
    }

    /// What another node's commit means here: the event for the parked
    /// waiters, if any (a closed challenge is read back from the store).
    pub fn on_remote(&self, r: crate::store::pg::Remote) -> Option<Event> {
        use crate::store::pg::Remote;
        match r {
            Remote::Closed(id) => {
                crate::sync::lock(&self.delivered).remove(&id);
                match self.store.read_latest().and_then(|r| r.challenge(&id)) {
                    Ok(Some(c)) => Some(Event::Closed(Box::new(c), Instant::now())),
                    Ok(None) => None,
                    Err(e) => {
                        log::warn!("another node closed challenge {id}, and reading it failed: {e}");
                        None
                    }
                }
            }
            Remote::Pending(token_id) => Some(Event::Pending(token_id)),
            Remote::Revoked(token_id) => {
                // Also dropped by its `Changed`; this covers a node that publishes none.
                self.store.forget_cached("tokens", &token_id);
                Some(Event::TokenRevoked(token_id))
            }
            // A revocation on another node; a re-check also drops the caches,
            // so a lost notification keeps a revoked key at most that long.
            Remote::RpKeys => {
                self.forget_rp_keys();
                self.store.forget_all_cached();
                None
            }
            Remote::Changed(table, key) => {
                self.store.forget_cached(&table, &key);
                None
            }
            // (The record cache is renewed by the listener itself.)
            Remote::Recheck => {
                self.forget_rp_keys();
                None
            }
        }
    }

    /// On a shared store: hands every other node's change to `handle`.
    pub fn listen_to_other_nodes(&self, handle: impl Fn(crate::store::pg::Remote) + Send + 'static) {
        self.store.listen(handle);
    }

    /// On a shared store, the lock that lets one node's sweeper run.
    pub fn sweeper_lock(&self) -> Option<crate::store::pg::SweeperLock> {
        self.store.sweeper_lock()
    }

    pub fn store_is_shared(&self) -> bool {
        self.store.is_shared()
    }

    /// The RP name for an API key, or 401.
    pub fn rp_for_key(&self, key: &str) -> Result<String> {
        let hash = sig::sha256_hex(key.as_bytes());
        let generation = {
            let cache = crate::sync::lock(&self.rp_cache);
            if let Some(name) = cache.1.get(&hash) {
                return Ok(name.clone());
            }
            cache.0
        };
        let name =
            self.store.read_latest()?.rp_name_by_hash(&hash)?.ok_or_else(|| Error::Unauthorized("unknown or revoked API key".into()))?;
        let mut cache = crate::sync::lock(&self.rp_cache);
        if cache.0 == generation && cache.1.len() < 10_000 {
            cache.1.insert(hash, name.clone());
        }
        Ok(name)
    }

    /// Whether the RP `rp` may act on contracts of `edition` (API.md: an RP
    /// key may be scoped to editions). An RP without a key record (the demo
    /// bank) sees every edition.
    pub(crate) fn rp_sees(&self, r: &impl Reader, rp: &str, contract: &Contract) -> Result<bool> {
        if rp == crate::http::DEMO_RP {
            // The demo bank acts only on the contracts `--demo` created.
            return Ok(r.demo_contracts()?.contains(&contract.contract_no));
        }
        Ok(r.rp_key(rp)?.is_none_or(|k| k.sees(&contract.edition)))
    }

    /// Whether the RP may act on `contract_no` (an unknown contract: yes,
    /// so that the usual not-found answers follow).
    pub(super) fn rp_sees_contract(&self, r: &impl Reader, rp: &str, contract_no: &str) -> Result<bool> {
        match r.contract(contract_no)? {
            Some(c) => self.rp_sees(r, rp, &c),
            None => Ok(true),
        }
    }

    /// Counts one attempt of `kind` from `ip` against a brute-force limit.
    /// The count lives in the store and is committed before the attempt is
    /// served, so neither a restart nor a crash resets it (API.md).
    pub(super) fn rate_limit(&self, kind: &str, ip: IpAddr, limit: u32, window: Ms, now: Ms) -> Result<()> {
        let key = format!("{kind}/{ip}");
        match self.call(Durability::Durable, move |tx, _| tx.count_attempt(&key, limit, window, now))? {
            Ok(()) => Ok(()),
            Err(retry_ms) => Err(Error::RateLimited { retry_after_secs: retry_ms.div_ceil(SECOND).max(1) }),
        }
    }
}
