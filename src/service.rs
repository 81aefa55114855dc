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

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::NewEvent;
use crate::config::Config;
use crate::domain::account::{
    gate, AllowReason, Contract, ContractStatus, DenyReason, EditionPolicy, Gate, GateSettings, Registration, Role, Token, User,
};
use crate::domain::challenge::{number_challenge, Answer, CancelCause, Challenge, Decision, Kind, Status};
use crate::domain::ids::{self, check_contract_no, check_text, check_user_id, Password, TokenId};
use crate::domain::sig;
use crate::domain::totp;
use crate::domain::{now_ms, rfc3339, Ms, SECOND};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::passwords::Passwords;
use crate::store::{Durability, Operator, RawReader, Reader, RpKey, Store, WriteTx, Writer};

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
                    self.delivered.lock().expect("delivered lock poisoned").remove(&c.id);
                    (self.notify)(Event::Closed(c, committed));
                }
                other => (self.notify)(other),
            }
        }
    }
}
// ---------------------------------------------------------------- inputs

#[derive(Debug, Default, Clone, Deserialize)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    pub contract_no: String,
    pub user_id: String,
    pub password: Password,
    #[serde(default)]
    pub client: ClientInfo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    pub contract_no: String,
    pub user_id: String,
    pub kind: String,
    #[serde(default)]
    pub transaction_password: Option<Password>,
    pub display: Vec<(String, String)>,
    #[serde(default)]
    pub client: ClientInfo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionInput {
    pub public_key: String,
    pub proof: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub push_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationInput {
    pub contract_no: String,
    pub user_id: String,
    pub password: Password,
    pub token_id: String,
    pub otp1: String,
    pub otp2: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerInput {
    pub token_id: String,
    pub decision: String,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub report_fraud: bool,
    pub signature: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewContract {
    pub contract_no: String,
    pub name: String,
    pub edition: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub user_id: String,
    pub name: String,
    pub role: String,
    pub password: Password,
    #[serde(default)]
    pub transaction_password: Option<Password>,
}

/// The parts of a device request that its signature covers.
pub struct DeviceRequest<'a> {
    pub token_id: &'a str,
    /// `X-Onepush-Time`, unix seconds as sent.
    pub time: &'a str,
    pub signature: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
}

// ---------------------------------------------------------------- outputs

/// The answer to a login or approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum GateAnswer {
    Challenge {
        challenge_id: String,
        expires_at: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        number: Option<String>,
    },
    Allow {
        reason: AllowReason,
    },
    Deny {
        reason: DenyReason,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct ProvisionOutput {
    pub token_id: String,
    pub otp_secret: String,
    pub otp_algorithm: &'static str,
    pub otp_digits: u32,
    pub otp_period: u64,
    pub server_time: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegistrationOutput {
    pub registration: &'static str,
    pub token_id: String,
    pub registered_at: String,
}

/// A challenge as its RP sees it.
pub fn rp_view(c: &Challenge) -> serde_json::Value {
    json!({
        "challenge_id": c.id,
        "kind": c.kind.as_str(),
        "status": c.status.as_str(),
        "created_at": rfc3339(c.created_at),
        "expires_at": rfc3339(c.expires_at),
        "decided_at": c.decided_at.map(rfc3339),
    })
}

/// A challenge as the phone sees it.
pub fn device_view(c: &Challenge) -> serde_json::Value {
    json!({
        "challenge_id": c.id,
        "kind": c.kind.as_str(),
        "display": c.display,
        "display_digest": c.display_digest,
        "number_choices": c.number_choices,
        "created_at": rfc3339(c.created_at),
        "expires_at": rfc3339(c.expires_at),
    })
}

pub fn user_view(u: &User) -> serde_json::Value {
    json!({
        "contract_no": u.contract_no,
        "user_id": u.user_id,
        "name": u.name,
        "role": u.role,
        "registration": u.registration.as_str(),
        "token_id": u.token_id,
        "usable_until": u.usable_until.map(rfc3339),
        "password_locked": u.password_locked,
        "stopped": u.stopped,
    })
}

pub fn contract_view(c: &Contract) -> serde_json::Value {
    json!({
        "contract_no": c.contract_no,
        "name": c.name,
        "edition": c.edition,
        "status": c.status,
        "service_admin": c.service_admin,
        "created_at": rfc3339(c.created_at),
        "cancelled_at": c.cancelled_at.map(rfc3339),
    })
}

// ---------------------------------------------------------------- the app

struct Session {
    operator: String,
    created: Ms,
    last_seen: Ms,
}

pub struct App {
    /// Replaced whole on SIGHUP (`reload`); read with `cfg()`.
    config: std::sync::RwLock<Arc<Config>>,
    pub store: Store,
    pub writer: Writer,
    pub metrics: Arc<Metrics>,
    pub passwords: Passwords,
    pub secrets: crate::secrets::SecretBox,
    notify: Notify,
    sessions: Mutex<HashMap<String, Session>>,
    /// Decoded device keys by their base64url text: decompressing an Ed25519
    /// point costs more than the verification's hash; the mapping never changes.
    keys: Mutex<HashMap<String, ed25519_dalek::VerifyingKey>>,
    /// RP key hash → RP name, for live keys. Every change of RP keys goes
    /// through this process (`add_rp_key`, `revoke_rp_key`), which clears it.
    /// The generation counts revocations, so a look-up that raced one is not cached.
    rp_cache: Mutex<(u64, HashMap<String, String>)>,
    /// The one-time code that creates the first operator (SPEC R5.1), while
    /// none exists, and when it was made.
    bootstrap: Mutex<Option<(String, Ms)>>,
    /// challenge id → first fetch by the phone, for pending challenges.
    delivered: Arc<Mutex<HashMap<String, Ms>>>,
}

/// A login or approval, checked and ready for its write job.
struct GateRequest {
    /// "login" or "approval": the audit type and the metrics label.
    op: &'static str,
    rp: String,
    contract_no: String,
    user_id: String,
    kind: Kind,
    creds: Credentials,
    /// The lines of an approval; a login's are composed in `decide`.
    display: Option<Vec<(String, String)>>,
    client: ClientInfo,
}

/// How the password check went, decided before the job is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credentials {
    Unknown,
    Locked,
    Wrong,
    Right,
}

impl App {
    pub fn new(cfg: Config, store: Store, notify: Notify) -> Result<App> {
        let passwords = Passwords::new(cfg.argon2_memory_kib, cfg.argon2_iterations)?;
        let secrets = crate::secrets::SecretBox::load_or_create(&cfg.secret_key_file).map_err(Error::Internal)?;
        let (audit_key, audit_key_created) = crate::audit::AuditKey::load_or_create(&cfg.audit_key_file).map_err(Error::Internal)?;
        let audit_public = audit_key.public();
        store.set_audit_key(audit_key)?;
        let writer = store.writer();
        let app = App {
            config: std::sync::RwLock::new(Arc::new(cfg)),
            store,
            writer,
            metrics: Arc::new(Metrics::default()),
            passwords,
            secrets,
            notify,
            sessions: Mutex::new(HashMap::new()),
            bootstrap: Mutex::new(None),
            delivered: Arc::new(Mutex::new(HashMap::new())),
            keys: Mutex::new(HashMap::new()),
            rp_cache: Mutex::new((0, HashMap::new())),
        };
        app.check_audit_head(&audit_public, audit_key_created, now_ms())?;
        Ok(app)
    }

    /// Compares the signed audit head with the chain's end before anything
    /// is appended: the next append would sign over a cut or rewritten log,
    /// so what is found is logged and kept in the store, and `audit verify`
    /// goes on reporting it. A store from before signed heads gets its first
    /// one when its audit key is made.
    fn check_audit_head(&self, key: &ed25519_dalek::VerifyingKey, key_created: bool, now: Ms) -> Result<()> {
        let r = self.store.read()?;
        let last = r.audit_last()?;
        let head = r.audit_signed_head()?;
        let found = match (&head, &last) {
            (None, None) => return Ok(()),
            (None, Some(last)) if key_created => {
                let Some(k) = self.store.audit_key() else { return Ok(()) };
                let signed = k.sign(last.seq, &last.hash, rfc3339(now));
                drop(r);
                self.writer.call(Durability::Durable, move |tx| tx.put_audit_signed_head(&signed))?;
                log::info!("audit log: its head (entry {}) is now signed with the new audit key", last.seq);
                return Ok(());
            }
            (head, last) => {
                let at_head = match head {
                    Some(h) => r.audit_at(h.seq)?.map(|e| e.hash),
                    None => None,
                };
                crate::audit::check_head(last.as_ref().map_or(0, |e| e.seq), at_head.as_deref(), head.as_ref(), key)
            }
        };
        drop(r);
        if let Err(b) = found {
            log::error!("audit log broken at entry {}: {}; kept for `onepush audit verify`", b.seq, b.why);
            let record = crate::audit::HeadBreak { found_at: rfc3339(now), seq: b.seq, why: b.why };
            self.writer.call(Durability::Durable, move |tx| tx.put_audit_head_break(&record))?;
        }
        Ok(())
    }

    /// Logs the signed audit head, so the journal holds anchors that someone
    /// with write access to the store cannot rewrite (the sweeper calls this
    /// every 10 minutes).
    pub fn log_audit_head(&self) {
        let public = self.store.audit_key().map(|k| k.public_b64()).unwrap_or_default();
        match self.store.read().and_then(|r| r.audit_signed_head()) {
            Ok(Some(h)) => log::info!(
                "audit head: entry {} hash {} signed {} signature {} (audit public key {public})",
                h.seq,
                h.hash,
                h.signed_at,
                h.signature
            ),
            Ok(None) => log::info!("audit head: the log is empty (audit public key {public})"),
            Err(e) => log::error!("audit head: {e}"),
        }
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
        self.config.read().expect("config lock poisoned").clone()
    }

    /// SIGHUP: takes the settings that can change while serving, and says
    /// which of the others differ (they need a restart).
    pub fn reload(&self, new: Config) -> Vec<&'static str> {
        let mut guard = self.config.write().expect("config lock poisoned");
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

    fn gate_settings(&self, system_suspended: bool) -> GateSettings {
        GateSettings {
            system_suspended,
            require_registration: self.cfg().require_registration,
            max_challenges_per_window: self.cfg().max_challenges_per_window,
            challenge_window: self.cfg().challenge_window,
        }
    }

    // ------------------------------------------------------------ RP API

    /// The RP name for an API key, or 401.
    pub fn rp_for_key(&self, key: &str) -> Result<String> {
        let hash = sig::sha256_hex(key.as_bytes());
        let generation = {
            let cache = self.rp_cache.lock().expect("rp cache lock poisoned");
            if let Some(name) = cache.1.get(&hash) {
                return Ok(name.clone());
            }
            cache.0
        };
        let name = self.store.read()?.rp_name_by_hash(&hash)?.ok_or_else(|| Error::Unauthorized("unknown or revoked API key".into()))?;
        let mut cache = self.rp_cache.lock().expect("rp cache lock poisoned");
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
    fn rp_sees_contract(&self, r: &impl Reader, rp: &str, contract_no: &str) -> Result<bool> {
        match r.contract(contract_no)? {
            Some(c) => self.rp_sees(r, rp, &c),
            None => Ok(true),
        }
    }

    /// Counts one attempt of `kind` from `ip` against a brute-force limit.
    /// The count lives in the store and is committed before the attempt is
    /// served, so neither a restart nor a crash resets it (API.md).
    fn rate_limit(&self, kind: &str, ip: IpAddr, limit: u32, window: Ms, now: Ms) -> Result<()> {
        let key = format!("{kind}/{ip}");
        match self.call(Durability::Durable, move |tx, _| tx.count_attempt(&key, limit, window, now))? {
            Ok(()) => Ok(()),
            Err(retry_ms) => Err(Error::RateLimited { retry_after_secs: retry_ms.div_ceil(SECOND).max(1) }),
        }
    }

    /// A token's public key, decoded once.
    fn device_key(&self, public_key: &str) -> Result<ed25519_dalek::VerifyingKey> {
        if let Some(k) = self.keys.lock().expect("key cache lock poisoned").get(public_key) {
            return Ok(*k);
        }
        let k = sig::parse_public_key("public_key", public_key)?;
        let mut cache = self.keys.lock().expect("key cache lock poisoned");
        if cache.len() >= 100_000 {
            cache.clear();
        }
        cache.insert(public_key.to_string(), k);
        Ok(k)
    }

    fn check_credentials(&self, user: Option<&User>, password: &Password) -> Credentials {
        match user {
            None => {
                self.passwords.verify(None, password.expose());
                Credentials::Unknown
            }
            Some(u) if u.password_locked => Credentials::Locked,
            Some(u) => {
                if self.passwords.verify(Some(&u.password_hash), password.expose()) {
                    Credentials::Right
                } else {
                    Credentials::Wrong
                }
            }
        }
    }

    /// POST /api/v1/login (SPEC R2.1, R3).
    pub fn login(self: &Arc<Self>, rp: String, input: LoginInput, now: Ms, done: impl FnOnce(Result<GateAnswer>) + Send + 'static) {
        let prepared = (|| {
            check_contract_no("contract_no", &input.contract_no)?;
            check_user_id("user_id", &input.user_id)?;
            input.password.check("password")?;
            let client = check_client(&input.client)?;
            let r = self.store.read()?;
            // A contract outside the RP key's editions is as unknown to it.
            let user = match r.contract(&input.contract_no)? {
                Some(c) if self.rp_sees(&r, &rp, &c)? => r.user(&input.contract_no, &input.user_id)?,
                _ => None,
            };
            Ok((self.check_credentials(user.as_ref(), &input.password), client))
        })();
        let (creds, client) = match prepared {
            Ok(p) => p,
            Err(e) => return done(Err(e)),
        };
        let req = GateRequest {
            op: "login",
            rp,
            contract_no: input.contract_no,
            user_id: input.user_id,
            kind: Kind::Login,
            creds,
            display: None,
            client,
        };
        self.submit_gate(req, now, done);
    }

    /// POST /api/v1/approvals (SPEC R2.2).
    pub fn approve(self: &Arc<Self>, rp: String, input: ApprovalInput, now: Ms, done: impl FnOnce(Result<GateAnswer>) + Send + 'static) {
        let prepared = (|| {
            check_contract_no("contract_no", &input.contract_no)?;
            check_user_id("user_id", &input.user_id)?;
            let kind = match input.kind.as_str() {
                "notice" => Kind::Notice,
                "transaction" => Kind::Transaction,
                _ => return Err(Error::bad_field("kind", "must be notice or transaction")),
            };
            check_display(&input.display)?;
            let client = check_client(&input.client)?;
            if let Some(p) = &input.transaction_password {
                p.check("transaction_password")?;
            }
            let r = self.store.read()?;
            let contract = match r.contract(&input.contract_no)? {
                Some(c) if self.rp_sees(&r, &rp, &c)? => Some(c),
                _ => None,
            };
            let user = match &contract {
                Some(_) => r.user(&input.contract_no, &input.user_id)?,
                None => None,
            };
            let needs_password = match &contract {
                Some(c) => self.edition(&c.edition)?.needs_transaction_password(kind),
                None => input.transaction_password.is_some(),
            };
            let creds = match (&user, needs_password, &input.transaction_password) {
                (None, _, Some(p)) => {
                    self.passwords.verify(None, p.expose());
                    Credentials::Unknown
                }
                (None, _, None) => Credentials::Unknown,
                (Some(u), _, _) if u.password_locked => Credentials::Locked,
                (Some(_), true, None) => {
                    return Err(Error::bad_field("transaction_password", "is required for this kind in this contract's edition"))
                }
                (Some(u), true, Some(p)) => {
                    if self.passwords.verify(u.transaction_password_hash.as_deref(), p.expose()) {
                        Credentials::Right
                    } else {
                        Credentials::Wrong
                    }
                }
                (Some(_), false, _) => Credentials::Right,
            };
            Ok((kind, creds, client))
        })();
        let (kind, creds, client) = match prepared {
            Ok(p) => p,
            Err(e) => return done(Err(e)),
        };
        let req = GateRequest {
            op: "approval",
            rp,
            contract_no: input.contract_no,
            user_id: input.user_id,
            kind,
            creds,
            display: Some(input.display),
            client,
        };
        self.submit_gate(req, now, done);
    }

    /// The write job of a login or approval: `decide`, its audit entry
    /// (with the lines for an approval), and the count in `/metrics`.
    fn submit_gate(self: &Arc<Self>, req: GateRequest, now: Ms, done: impl FnOnce(Result<GateAnswer>) + Send + 'static) {
        let app = self.clone();
        let actor = format!("rp:{}", req.rp);
        let op = req.op;
        self.submit(
            Durability::Durable,
            move |tx, events| {
                let r = &req;
                let (answer, reason) =
                    app.decide(tx, events, &r.rp, &r.contract_no, &r.user_id, r.kind, r.creds, r.display.as_deref(), &r.client, now)?;
                let mut detail = json!({"result": answer_result(&answer), "reason": reason, "client": client_json(&r.client)});
                if let Some(lines) = &r.display {
                    detail["kind"] = json!(r.kind.as_str());
                    detail["display"] = json!(lines);
                }
                if let GateAnswer::Challenge { challenge_id, .. } = &answer {
                    detail["challenge_id"] = json!(challenge_id);
                }
                tx.audit(NewEvent::new(r.op, actor.clone()).user(&r.contract_no, &r.user_id).detail(detail))?;
                Ok(answer)
            },
            {
                let app = self.clone();
                move |r: Result<GateAnswer>| {
                    if let Ok(a) = &r {
                        app.count_decision(op, a);
                    }
                    done(r)
                }
            },
        );
    }

    fn count_decision(&self, op: &'static str, a: &GateAnswer) {
        match a {
            GateAnswer::Challenge { .. } => self.metrics.decision(op, "challenge", "push"),
            GateAnswer::Allow { reason } => self.metrics.decision(op, "allow", reason.as_str()),
            GateAnswer::Deny { reason } => self.metrics.decision(op, "deny", reason.as_str()),
        }
    }

    /// The shared body of login and approval, inside the write job: password
    /// counters, then `gate`, then the challenge. Returns the answer and its
    /// reason for the audit entry.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        tx: &mut WriteTx,
        events: &mut Vec<Event>,
        rp: &str,
        contract_no: &str,
        user_id: &str,
        kind: Kind,
        creds: Credentials,
        display: Option<&[(String, String)]>,
        client: &ClientInfo,
        now: Ms,
    ) -> Result<(GateAnswer, &'static str)> {
        let deny = |r: DenyReason| Ok((GateAnswer::Deny { reason: r }, r.as_str()));
        let wrong = if kind == Kind::Login { DenyReason::BadCredentials } else { DenyReason::BadTransactionPassword };
        let (Some(contract), Some(mut user)) = (tx.contract(contract_no)?, tx.user(contract_no, user_id)?) else {
            return deny(DenyReason::BadCredentials);
        };
        match creds {
            Credentials::Unknown => return deny(DenyReason::BadCredentials),
            Credentials::Locked => return deny(DenyReason::PasswordLocked),
            _ if user.password_locked => return deny(DenyReason::PasswordLocked),
            Credentials::Wrong => {
                let locked = user.password_failed(self.cfg().password_max_failures);
                tx.put_user(&user)?;
                if locked {
                    tx.audit(
                        NewEvent::new("password_locked", "system")
                            .user(contract_no, user_id)
                            .detail(json!({"failures": user.password_failures})),
                    )?;
                }
                return deny(wrong);
            }
            Credentials::Right => {}
        }
        let policy = self.edition(&contract.edition)?;
        let system = tx.system()?;
        let verdict = gate(&contract, &user, policy.push_for(kind), &self.gate_settings(system.push_suspended), now);
        if user.password_failures > 0 {
            user.password_ok();
            tx.put_user(&user)?;
        }
        match verdict {
            Gate::Deny(r) => deny(r),
            Gate::Allow(r) => Ok((GateAnswer::Allow { reason: r }, r.as_str())),
            Gate::Push => {
                let lines = match display {
                    Some(d) => d.to_vec(),
                    None => login_display(&contract, &user, client, now),
                };
                let c = self.open_challenge(tx, events, rp, kind, &mut user, lines, now)?;
                Ok((GateAnswer::Challenge { challenge_id: c.id.clone(), expires_at: rfc3339(c.expires_at), number: c.number }, "push"))
            }
        }
    }

    /// Creates a challenge for an active user, superseding older pending ones
    /// beyond `max_pending_per_user`.
    #[allow(clippy::too_many_arguments)]
    fn open_challenge(
        &self,
        tx: &mut WriteTx,
        events: &mut Vec<Event>,
        rp: &str,
        kind: Kind,
        user: &mut User,
        display: Vec<(String, String)>,
        now: Ms,
    ) -> Result<Challenge> {
        let token_id = user
            .token_id
            .clone()
            .ok_or_else(|| Error::Internal(format!("active user {}/{} has no token", user.contract_no, user.user_id)))?;
        let pending = tx.pending_for_token(&token_id)?;
        let excess = (pending.len() + 1).saturating_sub(self.cfg().max_pending_per_user as usize);
        for mut old in pending.into_iter().take(excess) {
            self.apply_delivered(&mut old);
            old.cancel(CancelCause::Superseded, now)?;
            self.record_closed(tx, events, &old, "system")?;
        }
        user.challenge_created(now, self.cfg().challenge_window, self.cfg().max_challenges_per_window);
        tx.put_user(user)?;
        let (number, number_choices) = if self.cfg().number_challenge {
            let (n, choices) = number_challenge();
            (Some(n), Some(choices))
        } else {
            (None, None)
        };
        let c = Challenge {
            id: ids::new_challenge_id(),
            rp: rp.to_string(),
            kind,
            contract_no: user.contract_no.clone(),
            user_id: user.user_id.clone(),
            token_id: token_id.clone(),
            display_digest: sig::display_digest(&display),
            display,
            number,
            number_choices,
            status: Status::Pending,
            created_at: now,
            expires_at: now + self.cfg().challenge_ttl,
            delivered_at: None,
            decided_at: None,
            answered_by: None,
            signature: None,
            report_fraud: false,
            cancel_cause: None,
        };
        tx.put_challenge(&c)?;
        events.push(Event::Created(kind));
        if let Some(endpoint) = tx.token(&token_id)?.and_then(|t| t.push_endpoint) {
            events.push(Event::Wake(crate::wakeup::Wake { endpoint, challenge_id: c.id.clone() }));
        }
        events.push(Event::Pending(token_id));
        Ok(c)
    }

    /// Stores a challenge that just left `pending`, audits it and tells waiters.
    pub(crate) fn record_closed(&self, tx: &mut WriteTx, events: &mut Vec<Event>, c: &Challenge, actor: &str) -> Result<()> {
        tx.put_challenge(c)?;
        let mut detail = json!({
            "challenge_id": c.id, "kind": c.kind.as_str(), "status": c.status.as_str(), "rp": c.rp,
            "token_id": c.token_id, "display_digest": c.display_digest,
            "delivered_at": c.delivered_at.map(rfc3339),
        });
        if let Some(sig) = &c.signature {
            detail["signature"] = json!(sig);
            detail["answered_by"] = json!(c.answered_by);
            detail["number"] = json!(c.number);
        }
        if let Some(cause) = c.cancel_cause {
            detail["cancel_cause"] = json!(cause);
        }
        tx.audit(NewEvent::new("challenge_closed", actor).user(&c.contract_no, &c.user_id).detail(detail))?;
        if c.report_fraud {
            tx.put_fraud_report(&crate::store::FraudReport {
                challenge_id: c.id.clone(),
                contract_no: c.contract_no.clone(),
                user_id: c.user_id.clone(),
                kind: c.kind.as_str().to_string(),
                reported_at: c.decided_at.unwrap_or(c.created_at),
            })?;
            tx.audit(
                NewEvent::new("fraud_report", actor)
                    .user(&c.contract_no, &c.user_id)
                    .detail(json!({"challenge_id": c.id, "kind": c.kind.as_str()})),
            )?;
        }
        events.push(Event::Closed(Box::new(c.clone()), Instant::now()));
        Ok(())
    }

    /// GET /api/v1/challenges/{id}: 404 for unknown ids and other RPs' challenges.
    pub fn challenge_for_rp(&self, rp: &str, id: &str) -> Result<Challenge> {
        let r = self.store.read()?;
        match r.challenge(id)? {
            Some(c) if c.rp == rp && self.rp_sees_contract(&r, rp, &c.contract_no)? => Ok(c),
            _ => Err(Error::NotFound("no such challenge".into())),
        }
    }

    /// DELETE /api/v1/challenges/{id}.
    pub fn cancel(self: &Arc<Self>, rp: String, id: String, now: Ms, done: impl FnOnce(Result<Challenge>) + Send + 'static) {
        let app = self.clone();
        self.submit(
            Durability::Durable,
            move |tx, events| {
                let mut c = match tx.challenge(&id)? {
                    Some(c) if c.rp == rp && app.rp_sees_contract(tx, &rp, &c.contract_no)? => c,
                    _ => return Err(Error::NotFound("no such challenge".into())),
                };
                app.apply_delivered(&mut c);
                c.cancel(CancelCause::Relying, now)?;
                app.record_closed(tx, events, &c, &format!("rp:{rp}"))?;
                Ok(c)
            },
            done,
        );
    }

    /// GET /api/v1/users/{contract_no}/{user_id}.
    pub fn user(&self, rp: &str, contract_no: &str, user_id: &str) -> Result<User> {
        check_contract_no("contract_no", contract_no)?;
        check_user_id("user_id", user_id)?;
        let r = self.store.read()?;
        if !self.rp_sees_contract(&r, rp, contract_no)? {
            return Err(Error::NotFound("no such user".into()));
        }
        r.user(contract_no, user_id)?.ok_or_else(|| Error::NotFound("no such user".into()))
    }

    // ------------------------------------------------------------ device API

    /// POST /api/v1/device/provision (SPEC R1.1).
    pub fn provision(
        self: &Arc<Self>,
        input: ProvisionInput,
        ip: IpAddr,
        now: Ms,
        done: impl FnOnce(Result<ProvisionOutput>) + Send + 'static,
    ) {
        let prepared = (|| {
            let key = sig::parse_public_key("public_key", &input.public_key)?;
            // One spelling per key, so that the index below finds a key however it was sent.
            if data_encoding::BASE64URL_NOPAD.encode(key.as_bytes()) != input.public_key {
                return Err(Error::bad_field("public_key", "must be base64url without padding"));
            }
            if !sig::verify(&key, &sig::provision_message(&input.public_key), &input.proof) {
                return Err(Error::bad_field("proof", "is not a valid signature of the provisioning message"));
            }
            if let Some(l) = &input.label {
                check_text("label", l, 1, 64)?;
            }
            if let Some(e) = &input.push_endpoint {
                check_push_endpoint(e)?;
            }
            self.rate_limit_provision(ip, now)?;
            Ok(())
        })();
        if let Err(e) = prepared {
            return done(Err(e));
        }
        let mut secret = vec![0u8; totp::SECRET_LEN];
        rand::fill(&mut secret[..]);
        let prefix = self.cfg().token_prefix.clone();
        let expires = now + self.cfg().provision_ttl;
        let app = self.clone();
        self.submit(
            Durability::Durable,
            move |tx, _| {
                // A public key is provisioned once: a captured provisioning
                // body cannot make a second token for the same phone key.
                if tx.token_by_public_key(&input.public_key)?.is_some() {
                    return Err(Error::Conflict("this public key is already provisioned".into()));
                }
                let mut token_id = TokenId::generate(&prefix);
                let mut tries = 0;
                while tx.token(token_id.as_str())?.is_some() {
                    tries += 1;
                    if tries > 20 {
                        return Err(Error::Internal("could not find a free token ID".into()));
                    }
                    token_id = TokenId::generate(&prefix);
                }
                let t = Token {
                    token_id: token_id.to_string(),
                    public_key: input.public_key.clone(),
                    otp_secret_sealed: app.secrets.seal(token_id.as_str().as_bytes(), &secret)?,
                    label: input.label.clone(),
                    push_endpoint: input.push_endpoint.clone(),
                    created_at: now,
                    provision_expires_at: expires,
                    bound_to: None,
                    bound_at: None,
                    revoked_at: None,
                    revoke_reason: None,
                    last_otp_step: None,
                    failures: 0,
                };
                tx.put_token(&t)?;
                tx.audit(
                    NewEvent::new("token_provisioned", format!("device:{token_id}"))
                        .detail(json!({"token_id": token_id.as_str(), "label": t.label, "ip": ip.to_string(),
                                       "push_endpoint": t.push_endpoint.is_some()})),
                )?;
                Ok(ProvisionOutput {
                    token_id: token_id.to_string(),
                    otp_secret: data_encoding::BASE32_NOPAD.encode(&secret),
                    otp_algorithm: "SHA1",
                    otp_digits: totp::DIGITS,
                    otp_period: totp::PERIOD_SECS,
                    server_time: rfc3339(now),
                })
            },
            {
                let metrics = self.metrics.clone();
                move |r: Result<ProvisionOutput>| {
                    if r.is_ok() {
                        metrics.provisioned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    done(r)
                }
            },
        );
    }

    fn rate_limit_provision(&self, ip: IpAddr, now: Ms) -> Result<()> {
        self.rate_limit("provision", ip, PROVISION_RATE_LIMIT, PROVISION_RATE_WINDOW, now)
    }

    /// Checks the signed headers of a device request (API.md "Signed device
    /// requests"). Returns the token.
    pub fn authenticate_device(&self, r: &DeviceRequest<'_>, now: Ms) -> Result<Token> {
        let unauthorized = |m: &str| Error::Unauthorized(m.to_string());
        let t: i64 = r.time.parse().map_err(|_| unauthorized("X-Onepush-Time must be unix seconds"))?;
        let skew = (t.saturating_mul(1000)).abs_diff(now as i64);
        if skew > 60 * SECOND {
            return Err(unauthorized("X-Onepush-Time is more than 60 s from server time"));
        }
        // An unknown token and a bad signature get the same answer, at the
        // same cost (a signature is checked either way): token IDs cannot be
        // probed (API.md).
        const INVALID: &str = "the token or the request signature is not valid";
        let message = sig::device_message(r.method, r.path, t, r.body);
        let Some(token) = self.store.read()?.token(r.token_id)? else {
            let _ = sig::verify(&sig::dummy_key(), &message, r.signature);
            return Err(unauthorized(INVALID));
        };
        let key = self.device_key(&token.public_key)?;
        if !sig::verify(&key, &message, r.signature) {
            return Err(unauthorized(INVALID));
        }
        if token.is_revoked() {
            return Err(Error::TokenRevoked);
        }
        Ok(token)
    }

    /// Pending challenges of a token, for the phone. The first fetch marks
    /// them delivered. The mark only tells `expired` from `undelivered`, so
    /// it is kept in memory and written with the challenge when it closes: no
    /// store write on the way to the phone. (After a crash, a challenge that
    /// was fetched but never answered closes as `undelivered`.)
    pub fn deliver(&self, token_id: &str, now: Ms) -> Result<Vec<Challenge>> {
        let mut list: Vec<Challenge> = self.store.read()?.pending_for_token(token_id)?.into_iter().filter(|c| now < c.expires_at).collect();
        let mut marks = self.delivered.lock().expect("delivered lock poisoned");
        for c in &mut list {
            let at = *marks.entry(c.id.clone()).or_insert(now);
            c.mark_delivered(at);
        }
        Ok(list)
    }

    /// Applies the in-memory delivered mark to a challenge about to close.
    pub(crate) fn apply_delivered(&self, c: &mut Challenge) {
        if let Some(&at) = self.delivered.lock().expect("delivered lock poisoned").get(&c.id) {
            c.mark_delivered(at);
        }
    }

    /// POST /api/v1/device/challenges/{id}/response (SPEC R2.4, R2.5).
    pub fn answer(
        self: &Arc<Self>,
        caller: &Token,
        id: String,
        input: AnswerInput,
        now: Ms,
        done: impl FnOnce(Result<Status>) + Send + 'static,
    ) {
        let prepared = (|| {
            if input.token_id != caller.token_id {
                return Err(Error::bad_field("token_id", "must be the token that signs the request"));
            }
            let decision = match input.decision.as_str() {
                "approve" => Decision::Approve,
                "reject" => Decision::Reject,
                _ => return Err(Error::bad_field("decision", "must be approve or reject")),
            };
            if let Some(n) = &input.number {
                if n.len() != 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::bad_field("number", "must be two digits"));
                }
            }
            if input.report_fraud && decision != Decision::Reject {
                return Err(Error::bad_field("report_fraud", "goes with reject only"));
            }
            let c = self.store.read()?.challenge(&id)?.ok_or_else(|| Error::NotFound("no such challenge".into()))?;
            if !c.is_pending() {
                return Err(Error::ChallengeClosed);
            }
            let key = self.device_key(&caller.public_key)?;
            let msg = sig::response_message(&id, &input.token_id, decision.as_str(), input.number.as_deref(), &c.display_digest);
            if !sig::verify(&key, &msg, &input.signature) {
                return Err(Error::BadSignature);
            }
            Ok(decision)
        })();
        let decision = match prepared {
            Ok(d) => d,
            Err(e) => return done(Err(e)),
        };
        let app = self.clone();
        let actor = format!("device:{}", caller.token_id);
        self.submit(
            Durability::Durable,
            move |tx, events| {
                let mut c = tx.challenge(&id)?.ok_or_else(|| Error::NotFound("no such challenge".into()))?;
                let answer = Answer {
                    token_id: &input.token_id,
                    decision,
                    number: input.number.as_deref(),
                    report_fraud: input.report_fraud,
                    signature: &input.signature,
                };
                app.apply_delivered(&mut c);
                let was_pending = c.is_pending();
                let result = c.answer(&answer, now);
                if was_pending && !c.is_pending() {
                    // Answered, or closed by time because the answer came late.
                    app.record_closed(tx, events, &c, &actor)?;
                }
                Ok((result, c))
            },
            {
                let app = self.clone();
                move |r: Result<(Result<Status>, Challenge)>| match r {
                    Ok((result, c)) => {
                        // The phone's decision (not a late answer closing it by time).
                        if result.is_ok() && !c.is_pending() && c.decided_at == Some(now) {
                            app.metrics.decision_latency.observe(std::time::Duration::from_millis(now.saturating_sub(c.created_at)));
                        }
                        done(result)
                    }
                    Err(e) => done(Err(e)),
                }
            },
        );
    }

    // ------------------------------------------------------------ registration

    /// POST /api/v1/registrations (SPEC R1.4–R1.7).
    pub fn register(
        self: &Arc<Self>,
        input: RegistrationInput,
        ip: IpAddr,
        now: Ms,
        done: impl FnOnce(Result<RegistrationOutput>) + Send + 'static,
    ) {
        let prepared = (|| {
            self.rate_limit("registration", ip, REGISTRATION_RATE_LIMIT, REGISTRATION_RATE_WINDOW, now)?;
            check_contract_no("contract_no", &input.contract_no)?;
            check_user_id("user_id", &input.user_id)?;
            input.password.check("password")?;
            let token_id = TokenId::parse(&input.token_id, &self.cfg().token_prefix)?;
            for (f, v) in [("otp1", &input.otp1), ("otp2", &input.otp2)] {
                if v.len() != 6 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::bad_field(f, "must be 6 digits"));
                }
            }
            let r = self.store.read()?;
            let user = match r.contract(&input.contract_no)? {
                Some(_) => r.user(&input.contract_no, &input.user_id)?,
                None => None,
            };
            // Registration checks the password of a locked account too: it
            // says `password_locked` only to the right one (API.md).
            let creds = match user.as_ref() {
                Some(u) if u.password_locked => match self.passwords.verify(Some(&u.password_hash), input.password.expose()) {
                    true => Credentials::Right,
                    false => Credentials::Wrong,
                },
                other => self.check_credentials(other, &input.password),
            };
            Ok((creds, token_id))
        })();
        let (creds, token_id) = match prepared {
            Ok(p) => p,
            Err(e) => return done(Err(e)),
        };
        let app = self.clone();
        let (contract_no, user_id, otp1, otp2) = (input.contract_no, input.user_id, input.otp1, input.otp2);
        self.submit(
            Durability::Durable,
            move |tx, events| app.register_job(tx, events, &contract_no, &user_id, token_id.as_str(), &otp1, &otp2, creds, now),
            {
                let app = self.clone();
                move |r: Result<Result<RegistrationOutput>>| {
                    let r = r.and_then(|inner| inner);
                    let counter = if r.is_ok() { &app.metrics.registrations } else { &app.metrics.registration_failures };
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    done(r)
                }
            },
        );
    }

    /// The registration job. Failures that must be counted are written and
    /// returned as the inner error, so their counters commit.
    #[allow(clippy::too_many_arguments)]
    fn register_job(
        &self,
        tx: &mut WriteTx,
        events: &mut Vec<Event>,
        contract_no: &str,
        user_id: &str,
        token_id: &str,
        otp1: &str,
        otp2: &str,
        creds: Credentials,
        now: Ms,
    ) -> Result<Result<RegistrationOutput>> {
        let actor = format!("user:{contract_no}/{user_id}");
        let mut token = tx.token(token_id)?;
        let contract = tx.contract(contract_no)?;
        let user = tx.user(contract_no, user_id)?;
        let failed = |tx: &mut WriteTx, events: &mut Vec<Event>, token: Option<&mut Token>, e: Error| {
            self.registration_failed(tx, events, &actor, contract_no, user_id, token_id, token, e, now)
        };
        // A wrong or unknown contract, user or password never counts against
        // the token (a stranger naming someone's token must not revoke it),
        // and a locked account says so only to the right password (API.md).
        let (mut user, contract) = match (contract, user, creds) {
            (Some(c), Some(u), Credentials::Right) if !u.password_locked => (u, c),
            (_, Some(u), Credentials::Right) if u.password_locked => return failed(tx, events, None, Error::PasswordLocked),
            (_, Some(mut u), Credentials::Wrong) => {
                if !u.password_locked {
                    let locked = u.password_failed(self.cfg().password_max_failures);
                    tx.put_user(&u)?;
                    if locked {
                        tx.audit(NewEvent::new("password_locked", "system").user(contract_no, user_id))?;
                    }
                }
                return failed(tx, events, None, Error::BadCredentials);
            }
            _ => return failed(tx, events, None, Error::BadCredentials),
        };
        user.password_ok();
        match self.try_bind(&contract, &mut user, token.as_mut(), otp1, otp2, now) {
            Ok(()) => {
                let token = token.ok_or_else(|| Error::Internal("bound a missing token".into()))?;
                tx.put_token(&token)?;
                tx.put_user(&user)?;
                tx.audit(
                    NewEvent::new("registered", actor.clone())
                        .user(contract_no, user_id)
                        .detail(json!({"token_id": token_id, "otp_step": token.last_otp_step})),
                )?;
                Ok(Ok(RegistrationOutput {
                    registration: Registration::Active.as_str(),
                    token_id: token_id.to_string(),
                    registered_at: rfc3339(now),
                }))
            }
            Err(e) => {
                if matches!(e, Error::TokenOrOtpMismatch) {
                    user.registration_failures = user.registration_failures.saturating_add(1);
                    user.last_registration_failure = Some(now);
                }
                // Keeps the password-failure reset and the registration counters.
                tx.put_user(&user)?;
                failed(tx, events, token.as_mut(), e)
            }
        }
    }

    /// A failed registration: counted on the token only for a token or code
    /// failure after the credentials were right (never for a wrong or
    /// unknown contract, user or password), audited, and returned as the
    /// inner error so the job commits.
    #[allow(clippy::too_many_arguments)]
    fn registration_failed(
        &self,
        tx: &mut WriteTx,
        events: &mut Vec<Event>,
        actor: &str,
        contract_no: &str,
        user_id: &str,
        token_id: &str,
        token: Option<&mut Token>,
        e: Error,
        now: Ms,
    ) -> Result<Result<RegistrationOutput>> {
        // Only failures after the credentials were right reach here with a token.
        if matches!(e, Error::TokenOrOtpMismatch) {
            self.count_token_failure(tx, events, token, now)?;
        }
        tx.audit(
            NewEvent::new("registration_failed", actor.to_string())
                .user(contract_no, user_id)
                .detail(json!({"token_id": token_id, "code": e.code()})),
        )?;
        Ok(Err(e))
    }

    /// The rules after a right password: contract, stop, one phone per user,
    /// rate, token state and the two OTPs. Changes `user` and `token` only on success.
    fn try_bind(&self, contract: &Contract, user: &mut User, token: Option<&mut Token>, otp1: &str, otp2: &str, now: Ms) -> Result<()> {
        user.check_can_register(contract)?;
        if user.registration_failures >= self.cfg().otp_max_failures {
            if let Some(last) = user.last_registration_failure {
                if now < last + REGISTRATION_LOCKOUT {
                    return Err(Error::RateLimited { retry_after_secs: (last + REGISTRATION_LOCKOUT - now).div_ceil(SECOND) });
                }
            }
        }
        let token = token.ok_or(Error::TokenOrOtpMismatch)?;
        if token.bound_to.is_some() && !token.is_revoked() {
            return Err(Error::TokenAlreadyBound);
        }
        if !token.open_for_registration(now) {
            return Err(Error::TokenOrOtpMismatch);
        }
        let secret = self.secrets.open(token.token_id.as_bytes(), &token.otp_secret_sealed)?;
        let step = totp::match_consecutive(&secret, otp1, otp2, totp::step_at(now / SECOND), self.cfg().otp_window, token.last_otp_step)
            .ok_or(Error::TokenOrOtpMismatch)?;
        token.last_otp_step = Some(step);
        token.bound_to = Some((user.contract_no.clone(), user.user_id.clone()));
        token.bound_at = Some(now);
        token.failures = 0;
        user.register(&token.token_id, now);
        Ok(())
    }

    fn count_token_failure(&self, tx: &mut WriteTx, events: &mut Vec<Event>, token: Option<&mut Token>, now: Ms) -> Result<()> {
        let Some(t) = token else { return Ok(()) };
        if !t.open_for_registration(now) {
            return Ok(());
        }
        t.failures = t.failures.saturating_add(1);
        if t.failures >= self.cfg().otp_max_failures {
            t.revoke("too many failed registrations", now);
            tx.audit(
                NewEvent::new("token_revoked", "system").detail(json!({"token_id": t.token_id, "reason": "too many failed registrations"})),
            )?;
            events.push(Event::TokenRevoked(t.token_id.clone()));
        }
        tx.put_token(t)
    }

    // ------------------------------------------------------------ sweeper

    /// Closes every due challenge and expires unbound tokens past their TTL.
    /// Returns the closed challenges and the earliest remaining expiry.
    pub fn sweep(self: &Arc<Self>, now: Ms) -> Result<(Vec<Challenge>, Option<Ms>)> {
        let app = self.clone();
        let closed = self.call(Durability::Durable, move |tx, events| {
            let mut closed = Vec::new();
            for id in tx.due_challenges(now, 20_000)? {
                let Some(mut c) = tx.challenge(&id)? else { continue };
                app.apply_delivered(&mut c);
                if c.close_if_due(now).is_some() {
                    app.record_closed(tx, events, &c, "system")?;
                    closed.push(c);
                }
            }
            for id in tx.due_tokens(now, 1_000)? {
                let Some(mut t) = tx.token(&id)? else { continue };
                t.revoke("provision_ttl: never registered", now);
                tx.put_token(&t)?;
                tx.audit(NewEvent::new("token_expired", "system").detail(json!({"token_id": t.token_id})))?;
                events.push(Event::TokenRevoked(t.token_id.clone()));
            }
            // Retention: closed challenges past challenge_retention go, a bounded
            // number per tick; their decisions stay in the audit log.
            let cutoff = now.saturating_sub(app.cfg().challenge_retention);
            let mut purged = 0u64;
            for id in tx.challenges_created_before(cutoff, 1_000)? {
                match tx.challenge(&id)? {
                    Some(c) if !c.is_pending() => {
                        tx.delete_challenge(&c)?;
                        purged += 1;
                    }
                    _ => {}
                }
            }
            if purged > 0 {
                tx.audit(NewEvent::new("challenges_purged", "system").detail(json!({"count": purged, "created_before": rfc3339(cutoff)})))?;
            }
            // Brute-force counts whose windows have passed.
            tx.purge_attempts(now.saturating_sub(RATE_WINDOW_MAX), 1_000)?;
            Ok(closed)
        })?;
        for c in &closed {
            self.metrics.sweeper_lag.observe(std::time::Duration::from_millis(now.saturating_sub(c.expires_at)));
        }
        let next = self.store.read()?.earliest_expiry()?;
        Ok((closed, next))
    }

    // ------------------------------------------------------------ operators

    /// Makes the one-time bootstrap code if no operator exists yet; `serve`
    /// shows it. It lives in memory only, is valid for `bootstrap_ttl`, and
    /// is gone once used or once any operator exists (API.md).
    pub fn bootstrap_code(&self, now: Ms) -> Result<Option<String>> {
        if self.store.read()?.operator_count()? > 0 {
            return Ok(None);
        }
        let raw = data_encoding::BASE32_NOPAD.encode(&{
            let mut b = [0u8; 10];
            rand::fill(&mut b[..]);
            b
        });
        let code = format!("{}-{}-{}-{}", &raw[..4], &raw[4..8], &raw[8..12], &raw[12..16]);
        *self.bootstrap.lock().expect("bootstrap lock poisoned") = Some((code.clone(), now));
        Ok(Some(code))
    }

    /// POST /api/v1/admin/bootstrap: the first operator, with the one-time code.
    /// Returns a session for the new operator.
    pub fn bootstrap(&self, code: &str, username: &str, password: &Password, ip: IpAddr, now: Ms) -> Result<String> {
        self.rate_limit("signin", ip, SIGNIN_RATE_LIMIT, SIGNIN_RATE_WINDOW, now)?;
        {
            let mut slot = self.bootstrap.lock().expect("bootstrap lock poisoned");
            // Any operator, however made (the CLI too), ends the code.
            if slot.is_some() && self.store.read()?.operator_count()? > 0 {
                *slot = None;
            }
            let Some((expected, made)) = slot.as_ref() else {
                return Err(Error::Conflict("an operator exists, or the one-time code was used; sign in instead".into()));
            };
            if now >= made.saturating_add(self.cfg().bootstrap_ttl) {
                *slot = None;
                return Err(Error::Conflict(
                    "the one-time code has expired; create an operator with: onepush operator add NAME --password-stdin".into(),
                ));
            }
            let ok = bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), code.trim().to_uppercase().as_bytes()));
            if !ok {
                return Err(Error::Unauthorized("the one-time code is wrong".into()));
            }
            // Validate before spending the code.
            check_user_id("username", username)?;
            password.check("password")?;
            *slot = None;
        }
        self.set_operator("bootstrap", username, password, true, now)?;
        // Counted once above, with the code: the sign-in that follows is not another attempt.
        self.sign_in(username, password, now)
    }

    /// POST /api/v1/admin/session: returns the session cookie value.
    pub fn admin_login(&self, username: &str, password: &Password, ip: IpAddr, now: Ms) -> Result<String> {
        self.rate_limit("signin", ip, SIGNIN_RATE_LIMIT, SIGNIN_RATE_WINDOW, now)?;
        self.sign_in(username, password, now)
    }

    /// Checks an operator's password, audits the attempt, opens a session.
    fn sign_in(&self, username: &str, password: &Password, now: Ms) -> Result<String> {
        let op = if username.is_empty() || username.len() > 64 { None } else { self.store.read()?.operator(username)? };
        let ok = self.passwords.verify(op.as_ref().map(|o| o.password_hash.as_str()), password.expose());
        let actor = format!("operator:{}", if op.is_some() { username } else { "?" });
        // The audit log is never purged: a stranger's name is kept to 64 characters.
        let name: String = username.chars().take(64).collect();
        let detail = json!({"username": name, "ok": ok});
        self.call(Durability::Durable, move |tx, _| {
            tx.audit(NewEvent::new("operator_login", actor.clone()).detail(detail.clone()))?;
            Ok(())
        })?;
        if !ok {
            return Err(Error::Unauthorized("username or password is wrong".into()));
        }
        let token = ids::random_b64(32);
        let mut s = self.sessions.lock().expect("session lock poisoned");
        s.retain(|_, v| now < v.created + SESSION_MAX && now < v.last_seen + SESSION_IDLE);
        s.insert(sig::sha256_hex(token.as_bytes()), Session { operator: username.to_string(), created: now, last_seen: now });
        Ok(token)
    }

    /// The operator behind a session cookie, or 401.
    pub fn admin_session(&self, token: &str, now: Ms) -> Result<String> {
        let key = sig::sha256_hex(token.as_bytes());
        let mut s = self.sessions.lock().expect("session lock poisoned");
        match s.get_mut(&key) {
            Some(v) if now < v.created + SESSION_MAX && now < v.last_seen + SESSION_IDLE => {
                v.last_seen = now;
                Ok(v.operator.clone())
            }
            Some(_) => {
                s.remove(&key);
                Err(Error::Unauthorized("session expired; sign in again".into()))
            }
            None => Err(Error::Unauthorized("sign in first".into())),
        }
    }

    pub fn admin_logout(&self, token: &str) {
        self.sessions.lock().expect("session lock poisoned").remove(&sig::sha256_hex(token.as_bytes()));
    }

    pub fn create_contract(&self, operator: &str, input: NewContract, now: Ms) -> Result<Contract> {
        check_contract_no("contract_no", &input.contract_no)?;
        check_text("name", &input.name, 1, 100)?;
        if !self.cfg().editions.contains_key(&input.edition) {
            let names: Vec<_> = self.cfg().editions.keys().cloned().collect();
            return Err(Error::bad_field("edition", format!("must be one of {}", names.join(", "))));
        }
        let actor = format!("operator:{operator}");
        self.call(Durability::Durable, move |tx, _| {
            if tx.contract(&input.contract_no)?.is_some() {
                return Err(Error::Conflict(format!("contract {} exists", input.contract_no)));
            }
            let c = Contract {
                contract_no: input.contract_no.clone(),
                name: input.name.clone(),
                edition: input.edition.clone(),
                status: ContractStatus::Active,
                service_admin: None,
                created_at: now,
                cancelled_at: None,
            };
            tx.put_contract(&c)?;
            tx.audit(
                NewEvent::new("contract_created", actor.clone())
                    .contract(&c.contract_no)
                    .detail(json!({"name": c.name, "edition": c.edition})),
            )?;
            Ok(c)
        })
    }

    pub fn create_user(&self, operator: &str, contract_no: &str, input: NewUser, now: Ms) -> Result<User> {
        check_contract_no("contract_no", contract_no)?;
        check_user_id("user_id", &input.user_id)?;
        check_text("name", &input.name, 1, 100)?;
        let role = Role::parse("role", &input.role)?;
        input.password.check("password")?;
        if let Some(p) = &input.transaction_password {
            p.check("transaction_password")?;
        }
        let password_hash = self.passwords.hash(input.password.expose())?;
        let tx_hash = input.transaction_password.as_ref().map(|p| self.passwords.hash(p.expose())).transpose()?;
        let actor = format!("operator:{operator}");
        let contract_no = contract_no.to_string();
        self.call(Durability::Durable, move |tx, _| {
            let mut contract = tx.contract(&contract_no)?.ok_or_else(|| Error::NotFound("no such contract".into()))?;
            contract.check_open()?;
            if tx.user(&contract_no, &input.user_id)?.is_some() {
                return Err(Error::Conflict(format!("user {} exists in contract {contract_no}", input.user_id)));
            }
            if role == Role::ServiceAdmin {
                if let Some(sa) = &contract.service_admin {
                    return Err(Error::Conflict(format!("the contract's service admin is {sa}; change it with service-admin")));
                }
            }
            let u = User::new(&contract_no, &input.user_id, &input.name, role, password_hash.clone(), tx_hash.clone(), now);
            if role == Role::ServiceAdmin {
                contract.service_admin = Some(u.user_id.clone());
                tx.put_contract(&contract)?;
            }
            tx.put_user(&u)?;
            tx.audit(
                NewEvent::new("user_created", actor.clone()).user(&contract_no, &u.user_id).detail(json!({"role": role, "name": u.name})),
            )?;
            Ok(u)
        })
    }

    /// `onepush operator add` / `passwd`.
    pub fn set_operator(&self, actor: &str, name: &str, password: &Password, create: bool, now: Ms) -> Result<()> {
        check_user_id("name", name)?;
        password.check("password")?;
        let hash = self.passwords.hash(password.expose())?;
        let (name, actor) = (name.to_string(), actor.to_string());
        self.call(Durability::Durable, move |tx, _| {
            let exists = tx.operator(&name)?.is_some();
            if create && exists {
                return Err(Error::Conflict(format!("operator {name} exists")));
            }
            if !create && !exists {
                return Err(Error::NotFound(format!("no operator {name}")));
            }
            tx.put_operator(&Operator { name: name.clone(), password_hash: hash.clone(), created_at: now })?;
            let kind = if create { "operator_added" } else { "operator_password_changed" };
            tx.audit(NewEvent::new(kind, actor.clone()).detail(json!({"operator": name})))?;
            Ok(())
        })?;
        if create {
            // The first operator exists: the one-time code has done its job.
            *self.bootstrap.lock().expect("bootstrap lock poisoned") = None;
            let _ = std::fs::remove_file(self.cfg().data_dir.join(BOOTSTRAP_CODE_FILE));
        }
        Ok(())
    }

    /// `onepush rp-key add NAME`: returns the key, which is stored only hashed.
    pub fn add_rp_key(&self, actor: &str, name: &str, editions: &[String], now: Ms) -> Result<String> {
        check_user_id("name", name)?;
        if name == crate::http::DEMO_RP {
            return Err(Error::bad_field("name", "\"demo\" is the demo bank's own RP name"));
        }
        for e in editions {
            self.edition(e).map_err(|_| Error::bad_field("--edition", format!("{e:?} is not an edition of the config")))?;
        }
        let editions = editions.to_vec();
        let key = format!("opk_{}", ids::random_b64(32));
        let hash = sig::sha256_hex(key.as_bytes());
        let (name, actor) = (name.to_string(), actor.to_string());
        self.call(Durability::Durable, move |tx, _| {
            if tx.rp_key(&name)?.is_some_and(|k| k.revoked_at.is_none()) {
                return Err(Error::Conflict(format!("RP key {name} exists; revoke it first")));
            }
            tx.put_rp_key(&RpKey {
                name: name.clone(),
                key_hash: hash.clone(),
                created_at: now,
                revoked_at: None,
                editions: editions.clone(),
            })?;
            tx.audit(NewEvent::new("rp_key_added", actor.clone()).detail(json!({"name": name, "editions": editions})))?;
            Ok(())
        })?;
        Ok(key)
    }

    pub fn revoke_rp_key(&self, actor: &str, name: &str, now: Ms) -> Result<()> {
        let (name, actor) = (name.to_string(), actor.to_string());
        self.call(Durability::Durable, move |tx, _| {
            let mut k =
                tx.rp_key(&name)?.filter(|k| k.revoked_at.is_none()).ok_or_else(|| Error::NotFound(format!("no live RP key {name}")))?;
            k.revoked_at = Some(now);
            tx.put_rp_key(&k)?;
            tx.audit(NewEvent::new("rp_key_revoked", actor.clone()).detail(json!({"name": name})))?;
            Ok(())
        })?;
        let mut cache = self.rp_cache.lock().expect("rp cache lock poisoned");
        cache.0 += 1;
        cache.1.clear();
        Ok(())
    }

    /// `onepush audit verify`: the number of events, or where the chain breaks.
    pub fn verify_audit(&self) -> Result<std::result::Result<u64, crate::audit::Broken>> {
        let key = self.store.audit_key().ok_or_else(|| Error::Internal("the store has no audit key".into()))?.public();
        self.store.verify_audit(&key)
    }
}

fn answer_result(a: &GateAnswer) -> &'static str {
    match a {
        GateAnswer::Challenge { .. } => "challenge",
        GateAnswer::Allow { .. } => "allow",
        GateAnswer::Deny { .. } => "deny",
    }
}

fn client_json(c: &ClientInfo) -> serde_json::Value {
    json!({"ip": c.ip, "user_agent": c.user_agent})
}

fn check_client(c: &ClientInfo) -> Result<ClientInfo> {
    if let Some(ip) = &c.ip {
        ip.parse::<IpAddr>().map_err(|_| Error::bad_field("client.ip", "must be an IP address"))?;
    }
    if let Some(ua) = &c.user_agent {
        check_text("client.user_agent", ua, 0, 512)?;
    }
    Ok(c.clone())
}

pub fn check_display(lines: &[(String, String)]) -> Result<()> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    if lines.is_empty() {
        return Err(Error::bad_field("display", "must have at least one line"));
    }
    if lines.len() > MAX_DISPLAY_LINES {
        return Err(Error::bad_field("display", format!("must have at most {MAX_DISPLAY_LINES} lines")));
    }
    for (i, (label, value)) in lines.iter().enumerate() {
        for (part, text, max) in [("label", label, 40), ("value", value, 200)] {
            let field = format!("display[{i}] {part}");
            check_text(&field, text, 1, max)?;
            // Bidi overrides and isolates, zero-width characters: they can make
            // the phone show something other than what is signed (API.md).
            if text.chars().any(|c| c.general_category() == GeneralCategory::Format) {
                return Err(Error::bad_field(&field, "must not contain Unicode format characters (bidi controls, zero-width)"));
            }
        }
    }
    Ok(())
}

fn check_push_endpoint(e: &str) -> Result<()> {
    check_text("push_endpoint", e, 1, 512)?;
    if !(e.starts_with("https://") || e.starts_with("http://")) || e.contains(char::is_whitespace) {
        return Err(Error::bad_field("push_endpoint", "must be an http(s) URL"));
    }
    Ok(())
}

/// The lines a login shows on the phone, composed by onepush.
fn login_display(contract: &Contract, user: &User, client: &ClientInfo, now: Ms) -> Vec<(String, String)> {
    let service = match contract.edition.as_str() {
        "jweb" => "JWEBOFFICE".to_string(),
        "fx" => "JWEBOFFICE 外為版".to_string(),
        other => other.to_string(),
    };
    vec![
        ("Service".into(), service),
        ("Contract".into(), contract.contract_no.clone()),
        ("User".into(), user.user_id.clone()),
        ("Client".into(), client.ip.clone().unwrap_or_else(|| "-".into())),
        ("Time".into(), rfc3339(now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::check_display;

    fn line(label: &str, value: &str) -> Vec<(String, String)> {
        vec![(label.to_string(), value.to_string())]
    }

    #[test]
    fn display_lines_refuse_format_characters_and_keep_japanese_text() {
        assert!(check_display(&line("振込先", "水戸商事株式会社")).is_ok());
        assert!(check_display(&line("金額", "１，２５０，０００円 👍 JPY 1,250,000")).is_ok());
        for cf in ['\u{202e}', '\u{202a}', '\u{2066}', '\u{2069}', '\u{200b}', '\u{200d}', '\u{feff}', '\u{00ad}', '\u{061c}'] {
            let e = check_display(&line("Payee", &format!("Mito{cf}Trading"))).unwrap_err();
            assert!(e.to_string().starts_with("display[0] value: must not contain Unicode format"), "{cf:?}: {e}");
            let e = check_display(&line(&format!("Pay{cf}ee"), "x")).unwrap_err();
            assert!(e.to_string().starts_with("display[0] label"), "{cf:?}: {e}");
        }
    }
}
