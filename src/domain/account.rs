//! Contracts, users, tokens and the rules that decide a login or approval.
//!
//! `gate` is SPEC R3's table in one function: given a user whose password
//! was right, it says whether onepush pushes, allows without push, or denies.

use serde::{Deserialize, Serialize};

use super::challenge::Kind;
use super::Ms;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
    ServiceAdmin,
}

impl Role {
    pub fn parse(field: &str, s: &str) -> Result<Role> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            "service_admin" => Ok(Role::ServiceAdmin),
            _ => Err(Error::bad_field(field, "must be user, admin or service_admin")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    Unregistered,
    Active,
    Suspended,
    Deregistered,
}

impl Registration {
    pub const ALL: [Registration; 4] =
        [Registration::Unregistered, Registration::Active, Registration::Suspended, Registration::Deregistered];
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Unregistered => "unregistered",
            Registration::Active => "active",
            Registration::Suspended => "suspended",
            Registration::Deregistered => "deregistered",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractStatus {
    Active,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    pub contract_no: String,
    pub name: String,
    pub edition: String,
    pub status: ContractStatus,
    pub service_admin: Option<String>,
    pub created_at: Ms,
    pub cancelled_at: Option<Ms>,
}

impl Contract {
    /// The one rule for operators' changes under a contract: none once it
    /// is cancelled (409 `invalid_transition`, as for any change the state
    /// does not allow). Customers meet the same state as 403
    /// `contract_cancelled` at registration and as a login's deny reason.
    pub fn check_open(&self) -> Result<()> {
        match self.status {
            ContractStatus::Cancelled => Err(Error::InvalidTransition("the contract is cancelled".into())),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub contract_no: String,
    pub user_id: String,
    pub name: String,
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub transaction_password_hash: Option<String>,
    pub registration: Registration,
    pub token_id: Option<String>,
    pub registered_at: Option<Ms>,
    pub usable_until: Option<Ms>,
    /// Wrong login or transaction passwords in a row.
    pub password_failures: u32,
    pub password_locked: bool,
    pub stopped: bool,
    /// Failed registration attempts since the last success, and when the last one was.
    pub registration_failures: u32,
    pub last_registration_failure: Option<Ms>,
    /// Creation times of recent challenges, for `max_challenges_per_window`.
    pub recent_challenges: Vec<Ms>,
    pub created_at: Ms,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub token_id: String,
    /// Ed25519 public key, base64url.
    pub public_key: String,
    /// The 20-byte TOTP secret, sealed by `secrets::SecretBox` (token ID as AAD).
    pub otp_secret_sealed: Vec<u8>,
    pub label: Option<String>,
    pub push_endpoint: Option<String>,
    pub created_at: Ms,
    /// Unbound tokens expire at this time (`provision_ttl`).
    pub provision_expires_at: Ms,
    /// `(contract_no, user_id)` once registered.
    pub bound_to: Option<(String, String)>,
    pub bound_at: Option<Ms>,
    pub revoked_at: Option<Ms>,
    pub revoke_reason: Option<String>,
    /// The last OTP step accepted; no step up to it is accepted again.
    pub last_otp_step: Option<u64>,
    /// Failed registration attempts naming this token.
    pub failures: u32,
    /// The language of the lines onepush composes for this phone.
    #[serde(default)]
    pub lang: Lang,
    /// Where this phone is pushed (`push_endpoint` is the older form of an
    /// UnifiedPush one; `subscription()` reads both).
    #[serde(default)]
    pub push: Option<PushSubscription>,
}

/// A phone's one push subscription (API.md, "Push to the phone").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PushSubscription {
    /// RFC 8030/8291/8292: `p256dh` (65-byte P-256 point) and `auth` (16 bytes), base64url.
    Webpush {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
    Unifiedpush {
        endpoint: String,
    },
}

impl PushSubscription {
    pub fn kind(&self) -> &'static str {
        match self {
            PushSubscription::Webpush { .. } => "webpush",
            PushSubscription::Unifiedpush { .. } => "unifiedpush",
        }
    }
    pub fn endpoint(&self) -> &str {
        match self {
            PushSubscription::Webpush { endpoint, .. } | PushSubscription::Unifiedpush { endpoint } => endpoint,
        }
    }
}

/// A phone's language: Japanese unless it asks for English.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Ja,
    En,
}

impl Lang {
    pub fn parse(field: &str, s: &str) -> Result<Lang> {
        match s {
            "ja" => Ok(Lang::Ja),
            "en" => Ok(Lang::En),
            _ => Err(Error::bad_field(field, "must be ja or en")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }
}

impl Token {
    /// The phone's push subscription, whichever form stored it.
    pub fn subscription(&self) -> Option<PushSubscription> {
        self.push.clone().or_else(|| self.push_endpoint.clone().map(|endpoint| PushSubscription::Unifiedpush { endpoint }))
    }

    /// Replaces (or with `None` removes) the subscription.
    pub fn set_subscription(&mut self, s: Option<PushSubscription>) {
        self.push = s;
        self.push_endpoint = None;
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    pub fn revoke(&mut self, reason: &str, now: Ms) {
        if self.revoked_at.is_none() {
            self.revoked_at = Some(now);
            self.revoke_reason = Some(reason.to_string());
        }
    }

    /// Usable for registration: not revoked, not bound, not past its provisioning TTL.
    pub fn open_for_registration(&self, now: Ms) -> bool {
        !self.is_revoked() && self.bound_to.is_none() && now < self.provision_expires_at
    }
}

/// An edition (本サービス): which operations need push and a transaction password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditionPolicy {
    pub push_on_login: bool,
    pub push_on_notice: bool,
    pub push_on_transaction: bool,
    pub transaction_password_for: Vec<Kind>,
    pub deregister_roles: Vec<Role>,
}

impl EditionPolicy {
    /// JWEBOFFICE: push everywhere; filings and transactions need the transaction password.
    pub fn jweb() -> EditionPolicy {
        EditionPolicy {
            push_on_login: true,
            push_on_notice: true,
            push_on_transaction: true,
            transaction_password_for: vec![Kind::Notice, Kind::Transaction],
            deregister_roles: vec![Role::ServiceAdmin],
        }
    }

    /// JWEBOFFICE 外為版: push at login and for filings (no transaction password); none for transactions.
    pub fn fx() -> EditionPolicy {
        EditionPolicy {
            push_on_login: true,
            push_on_notice: true,
            push_on_transaction: false,
            transaction_password_for: vec![],
            deregister_roles: vec![Role::ServiceAdmin, Role::Admin],
        }
    }

    pub fn push_for(&self, kind: Kind) -> bool {
        match kind {
            Kind::Login => self.push_on_login,
            Kind::Notice => self.push_on_notice,
            Kind::Transaction => self.push_on_transaction,
        }
    }

    pub fn needs_transaction_password(&self, kind: Kind) -> bool {
        self.transaction_password_for.contains(&kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowReason {
    PushNotRegistered,
    PushSuspended,
    PushDeregistered,
    PushSystemSuspended,
    PushNotRequired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    BadCredentials,
    BadTransactionPassword,
    PasswordLocked,
    AccountStopped,
    ContractCancelled,
    RegistrationRequired,
    TooManyChallenges,
}

impl AllowReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AllowReason::PushNotRegistered => "push_not_registered",
            AllowReason::PushSuspended => "push_suspended",
            AllowReason::PushDeregistered => "push_deregistered",
            AllowReason::PushSystemSuspended => "push_system_suspended",
            AllowReason::PushNotRequired => "push_not_required",
        }
    }
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::BadCredentials => "bad_credentials",
            DenyReason::BadTransactionPassword => "bad_transaction_password",
            DenyReason::PasswordLocked => "password_locked",
            DenyReason::AccountStopped => "account_stopped",
            DenyReason::ContractCancelled => "contract_cancelled",
            DenyReason::RegistrationRequired => "registration_required",
            DenyReason::TooManyChallenges => "too_many_challenges",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Push,
    Allow(AllowReason),
    Deny(DenyReason),
}

/// What the system-wide settings and the config say, for `gate`.
#[derive(Debug, Clone, Copy)]
pub struct GateSettings {
    pub system_suspended: bool,
    pub require_registration: bool,
    pub max_challenges_per_window: u32,
    pub challenge_window: Ms,
}

/// SPEC R3 after the password checks: contract → stopped → edition policy →
/// registration state → system suspension → anti-fatigue window.
pub fn gate(contract: &Contract, user: &User, push_wanted: bool, s: &GateSettings, now: Ms) -> Gate {
    if contract.status == ContractStatus::Cancelled {
        return Gate::Deny(DenyReason::ContractCancelled);
    }
    if user.stopped {
        return Gate::Deny(DenyReason::AccountStopped);
    }
    if !push_wanted {
        return Gate::Allow(AllowReason::PushNotRequired);
    }
    let in_grace = user.usable_until.is_some_and(|until| now < until);
    match user.registration {
        Registration::Unregistered if s.require_registration => Gate::Deny(DenyReason::RegistrationRequired),
        Registration::Unregistered => Gate::Allow(AllowReason::PushNotRegistered),
        Registration::Suspended if in_grace => Gate::Allow(AllowReason::PushSuspended),
        Registration::Deregistered if in_grace => Gate::Allow(AllowReason::PushDeregistered),
        Registration::Suspended | Registration::Deregistered => Gate::Deny(DenyReason::RegistrationRequired),
        Registration::Active if s.system_suspended => Gate::Allow(AllowReason::PushSystemSuspended),
        Registration::Active => {
            let since = now.saturating_sub(s.challenge_window);
            let recent = user.recent_challenges.iter().filter(|&&t| t > since).count();
            if recent >= s.max_challenges_per_window as usize {
                Gate::Deny(DenyReason::TooManyChallenges)
            } else {
                Gate::Push
            }
        }
    }
}

impl User {
    /// A new user: unregistered, no flags.
    pub fn new(
        contract_no: &str,
        user_id: &str,
        name: &str,
        role: Role,
        password_hash: String,
        transaction_password_hash: Option<String>,
        now: Ms,
    ) -> User {
        User {
            contract_no: contract_no.to_string(),
            user_id: user_id.to_string(),
            name: name.to_string(),
            role,
            password_hash,
            transaction_password_hash,
            registration: Registration::Unregistered,
            token_id: None,
            registered_at: None,
            usable_until: None,
            password_failures: 0,
            password_locked: false,
            stopped: false,
            registration_failures: 0,
            last_registration_failure: None,
            recent_challenges: vec![],
            created_at: now,
        }
    }

    /// Counts a wrong login or transaction password. Returns true when this
    /// failure locked the account.
    pub fn password_failed(&mut self, max_failures: u32) -> bool {
        self.password_failures = self.password_failures.saturating_add(1);
        if !self.password_locked && self.password_failures >= max_failures {
            self.password_locked = true;
            return true;
        }
        false
    }

    pub fn password_ok(&mut self) {
        self.password_failures = 0;
    }

    /// How long until the anti-fatigue window lets this user's next challenge
    /// through (API.md `retry_after`): the moment enough of the recent ones
    /// have left the window. Zero when one may be created now.
    pub fn challenge_retry_after(&self, now: Ms, window: Ms, max: u32) -> Ms {
        let since = now.saturating_sub(window);
        let mut recent: Vec<Ms> = self.recent_challenges.iter().copied().filter(|&t| t > since).collect();
        if recent.len() < max as usize {
            return 0;
        }
        recent.sort_unstable();
        // With `max` allowed, the one that must leave is the (len - max)th oldest.
        recent[recent.len() - max as usize] + window - now
    }

    /// Records a challenge creation. Keeps only those inside the window, and
    /// at most `max` of them (the newest): that is all `gate` needs to count.
    pub fn challenge_created(&mut self, now: Ms, window: Ms, max: u32) {
        let since = now.saturating_sub(window);
        self.recent_challenges.retain(|&t| t > since);
        self.recent_challenges.push(now);
        let excess = self.recent_challenges.len().saturating_sub(max as usize);
        self.recent_challenges.drain(..excess);
    }

    /// Registration is refused for: cancelled contract, stopped account,
    /// a user who already has a phone (SPEC R1.5).
    pub fn check_can_register(&self, contract: &Contract) -> Result<()> {
        if contract.status == ContractStatus::Cancelled {
            return Err(Error::ContractCancelled);
        }
        if self.stopped {
            return Err(Error::AccountStopped);
        }
        if matches!(self.registration, Registration::Active | Registration::Suspended) {
            return Err(Error::AlreadyRegistered);
        }
        Ok(())
    }

    /// Binds a token: push is active at once (Art. 4.2).
    pub fn register(&mut self, token_id: &str, now: Ms) {
        self.registration = Registration::Active;
        self.token_id = Some(token_id.to_string());
        self.registered_at = Some(now);
        self.usable_until = None;
        self.registration_failures = 0;
        self.last_registration_failure = None;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const NOW: Ms = 1_795_582_018_000;
    const DAY: Ms = 86_400_000;

    pub fn contract() -> Contract {
        Contract {
            contract_no: "1000000001".into(),
            name: "Mito Trading".into(),
            edition: "jweb".into(),
            status: ContractStatus::Active,
            service_admin: None,
            created_at: NOW - DAY,
            cancelled_at: None,
        }
    }

    pub fn user(reg: Registration) -> User {
        let mut u = User::new("1000000001", "taro", "Taro", Role::User, String::new(), None, NOW - DAY);
        u.registration = reg;
        u
    }

    fn settings() -> GateSettings {
        GateSettings { system_suspended: false, require_registration: false, max_challenges_per_window: 5, challenge_window: 600_000 }
    }

    #[test]
    fn registration_states_decide_login() {
        let c = contract();
        let s = settings();
        assert_eq!(gate(&c, &user(Registration::Active), true, &s, NOW), Gate::Push);
        assert_eq!(gate(&c, &user(Registration::Unregistered), true, &s, NOW), Gate::Allow(AllowReason::PushNotRegistered));
        let strict = GateSettings { require_registration: true, ..s };
        assert_eq!(gate(&c, &user(Registration::Unregistered), true, &strict, NOW), Gate::Deny(DenyReason::RegistrationRequired));
        for (reg, reason) in
            [(Registration::Suspended, AllowReason::PushSuspended), (Registration::Deregistered, AllowReason::PushDeregistered)]
        {
            let mut u = user(reg);
            u.usable_until = Some(NOW + DAY);
            assert_eq!(gate(&c, &u, true, &s, NOW), Gate::Allow(reason));
            u.usable_until = Some(NOW);
            assert_eq!(gate(&c, &u, true, &s, NOW), Gate::Deny(DenyReason::RegistrationRequired));
            u.usable_until = None;
            assert_eq!(gate(&c, &u, true, &s, NOW), Gate::Deny(DenyReason::RegistrationRequired));
        }
    }

    #[test]
    fn flags_come_before_registration() {
        let mut c = contract();
        let mut u = user(Registration::Active);
        u.stopped = true;
        assert_eq!(gate(&c, &u, true, &settings(), NOW), Gate::Deny(DenyReason::AccountStopped));
        c.status = ContractStatus::Cancelled;
        assert_eq!(gate(&c, &u, true, &settings(), NOW), Gate::Deny(DenyReason::ContractCancelled));
    }

    #[test]
    fn system_suspension_and_policy() {
        let c = contract();
        let s = GateSettings { system_suspended: true, ..settings() };
        assert_eq!(gate(&c, &user(Registration::Active), true, &s, NOW), Gate::Allow(AllowReason::PushSystemSuspended));
        assert_eq!(gate(&c, &user(Registration::Active), false, &settings(), NOW), Gate::Allow(AllowReason::PushNotRequired));
    }

    #[test]
    fn anti_fatigue_window() {
        let c = contract();
        let mut u = user(Registration::Active);
        for i in 0..5 {
            assert_eq!(gate(&c, &u, true, &settings(), NOW + i), Gate::Push);
            u.challenge_created(NOW + i, 600_000, 5);
        }
        assert_eq!(gate(&c, &u, true, &settings(), NOW + 10), Gate::Deny(DenyReason::TooManyChallenges));
        // Only the newest `max` are kept, however many are recorded.
        u.challenge_created(NOW + 11, 600_000, 5);
        assert_eq!(u.recent_challenges.len(), 5);
        assert_eq!(u.recent_challenges[0], NOW + 1);
        // Ten minutes after the first, one slot is free again.
        assert_eq!(gate(&c, &u, true, &settings(), NOW + 600_002), Gate::Push);
    }

    #[test]
    fn retry_after_is_when_the_oldest_counted_challenge_leaves_the_window() {
        let mut u = user(Registration::Active);
        assert_eq!(u.challenge_retry_after(NOW, 600_000, 5), 0);
        for i in 0..5 {
            u.challenge_created(NOW + i * 1000, 600_000, 5);
        }
        // Full at NOW + 10 s: the first (NOW) leaves at NOW + 600 s.
        assert_eq!(u.challenge_retry_after(NOW + 10_000, 600_000, 5), 590_000);
        // Just before it leaves, 1 ms; at that moment, free.
        assert_eq!(u.challenge_retry_after(NOW + 599_999, 600_000, 5), 1);
        assert_eq!(u.challenge_retry_after(NOW + 600_000, 600_000, 5), 0);
        assert_eq!(gate(&contract(), &u, true, &settings(), NOW + 600_000), Gate::Push);
        // A lower limit than was recorded under: the window must drop two.
        assert_eq!(u.challenge_retry_after(NOW + 10_000, 600_000, 3), 602_000 - 10_000);
    }

    #[test]
    fn password_lock_after_max_failures() {
        let mut u = user(Registration::Active);
        for _ in 0..4 {
            assert!(!u.password_failed(5));
        }
        assert!(u.password_failed(5));
        assert!(u.password_locked);
        assert!(!u.password_failed(5), "locking is reported once");
    }

    #[test]
    fn who_may_register() {
        let c = contract();
        assert!(user(Registration::Unregistered).check_can_register(&c).is_ok());
        assert!(user(Registration::Deregistered).check_can_register(&c).is_ok());
        assert_eq!(user(Registration::Active).check_can_register(&c), Err(Error::AlreadyRegistered));
        assert_eq!(user(Registration::Suspended).check_can_register(&c), Err(Error::AlreadyRegistered));
        let mut u = user(Registration::Unregistered);
        u.stopped = true;
        assert_eq!(u.check_can_register(&c), Err(Error::AccountStopped));
        let mut cc = contract();
        cc.status = ContractStatus::Cancelled;
        assert_eq!(user(Registration::Unregistered).check_can_register(&cc), Err(Error::ContractCancelled));
        let mut u = user(Registration::Deregistered);
        u.usable_until = Some(NOW + DAY);
        u.register("ONEP12345674", NOW);
        assert_eq!(u.registration, Registration::Active);
        assert_eq!(u.usable_until, None);
    }
}
