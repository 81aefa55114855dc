//! # onepush — a push-authentication appliance
//!
//! A relying party (the bank's internet-banking server) asks onepush to
//! confirm a login or an approval; onepush creates a *challenge* for the
//! user's registered phone; the phone fetches it, the user presses Approve,
//! and the phone's Ed25519 signature over the challenge decides it.
//!
//! ## Architecture
//! ```text
//!  RP ──HTTP──┐                        ┌── waiters (one thread: parked long-polls)
//!  phone ─────┤ tiny_http ── http ─────┤
//!  browser ───┘  workers    ROUTES     └── service ──── store ── writer (one thread,
//!                           views          │  ▲          Reader     group commit) ── redb
//!                                          │  └ sweeper  WriteTx
//!                             after-commit hook ──► metrics, waiters, wake-ups
//! ```
//! - `domain`: pure rules (challenge and account state, the lifecycle state
//!   machine, TOTP, signatures) and the typed ids (`ContractNo`, `UserId`,
//!   `ChallengeId`, `TokenId`), checked once where they enter. Every
//!   time-dependent function takes `now`.
//! - `store`: the only module that imports redb. The use cases see named
//!   reads (`Reader`) and writes (`WriteTx`), one read snapshot and one atomic
//!   write job; its module doc maps each to a SQL transaction for a second
//!   backend. All writes go through one writer thread, which commits whatever
//!   has queued in one transaction with one fsync, signs the audit head, and
//!   only then answers: a decision is on disk before anyone hears of it.
//! - `service`: the use cases, one module per feature (`gate`, `challenges`,
//!   `devices`, `registration`, `accounts`, `notices`, `operators`,
//!   `queries`, `demo`), each an `impl App` block that owns its rules once.
//!   A use case is validation, domain rules, one write job with its audit
//!   entries, and events; every event passes the one after-commit hook
//!   (counters, delivered marks, waiters, wake-ups). The store is private
//!   to it.
//! - `http`: the one route table (`routes::ROUTES`: method, path, body kind,
//!   and a handler whose type says who may call it), parsing and limits, the
//!   JSON views of the wire (`views`), the single error→status mapping, and
//!   the waiter thread, which owns every parked long-poll so that 10,000
//!   waiting phones cost no threads.
//! - `sweeper`: closes due challenges from an expiry index and logs the signed
//!   audit head every 10 minutes.
//! - `control`: management commands, run in-process or through the running
//!   server's Unix socket.
//! - `audit`: the hash chain, its signed head and their verification.
//! - `sync`: locks that keep their data after a panic elsewhere.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod client;
pub mod config;
pub mod control;
pub mod domain;
pub mod error;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod passwords;
pub mod push;
pub mod secrets;
pub mod service;
pub mod store;
pub mod sweeper;
pub mod sync;
pub mod wakeup;
