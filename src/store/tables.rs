//! Every redb table of onepush, in one place.
//!
//! Records are `store::codec` bytes (a version byte, then JSON). Index tables
//! carry no value; they are written in the same transaction as the record
//! they index, by the `WriteTx::put_*` method of that record, and nowhere else.

use redb::TableDefinition;

/// contract_no → `Contract`. Written by operator actions.
pub const CONTRACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("contracts");

/// "contract_no/user_id" → `User`. '/' cannot occur in either part, so a
/// contract's users are the key range "contract_no/" .. "contract_no0".
/// Written by operator actions, login/approval (counters), registration.
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");

/// token_id → `Token`. Written by provisioning, registration, revocation.
pub const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");

/// challenge_id → `Challenge`. Written by login/approval, delivery, answers,
/// cancellation and the sweeper.
pub const CHALLENGES: TableDefinition<&str, &[u8]> = TableDefinition::new("challenges");

/// (expires_at ms, challenge_id) → (), pending challenges only. The sweeper
/// reads the range up to now, so a tick costs the number of due challenges.
pub const CHALLENGE_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("challenge_expiry");

/// (token_id, created_at ms, challenge_id) → (), pending challenges only, by
/// token and age: what a phone fetches, and `max_pending_per_user`.
pub const TOKEN_PENDING: TableDefinition<(&str, u64, &str), ()> = TableDefinition::new("token_pending");

/// (provision_expires_at ms, token_id) → (), unbound and unrevoked tokens only.
pub const PROVISION_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("provision_expiry");

/// Ed25519 public key (base64url, as provisioned) → token_id, for every
/// token ever provisioned: a public key is provisioned once. Written by
/// `WriteTx::put_token`.
pub const TOKEN_KEYS: TableDefinition<&str, &str> = TableDefinition::new("token_keys");

/// "kind/address" → (window start ms, attempts): brute-force limits (sign-in,
/// bootstrap, registration, provisioning), kept here so that a restart does
/// not reset them. Written by `WriteTx::count_attempt`.
pub const RATE_LIMITS: TableDefinition<&str, (u64, u32)> = TableDefinition::new("rate_limits");

/// (window start ms, "kind/address") → (): `RATE_LIMITS` by age, for purging.
pub const RATE_LIMITS_BY_START: TableDefinition<(u64, &str), ()> = TableDefinition::new("rate_limits_by_start");

/// RP key name → `RpKey`. Written by `onepush rp-key`.
pub const RP_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("rp_keys");

/// SHA-256 hex of an RP key → RP key name, for live keys only.
pub const RP_KEY_HASHES: TableDefinition<&str, &str> = TableDefinition::new("rp_key_hashes");

/// operator name → `Operator`. Written by `onepush operator`, the bootstrap
/// and each successful sign-in (its time).
pub const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("operators");

/// seq → `AuditEvent`, append-only and hash-chained. Written by every use case.
pub const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// name → bytes: "system" (push suspension).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// notice id → `Notice`. Written by operators.
pub const NOTICES: TableDefinition<&str, &[u8]> = TableDefinition::new("notices");

/// (contract_no, user_id or "", seq) → (): audit events by their subject,
/// written with the event, for the audit search by contract and user.
pub const AUDIT_BY_SUBJECT: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("audit_by_subject");

/// (created_at ms, challenge_id) → (): every challenge by creation time, for
/// the operator statistics of the last 24 hours.
pub const CHALLENGES_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("challenges_by_time");

/// (reported_at ms, challenge_id) → `FraudReport`: rejections the user marked
/// "this wasn't me", surfaced to operators.
pub const FRAUD_REPORTS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("fraud_reports");
