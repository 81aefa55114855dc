//! # onepush — a push-authentication appliance
//!
//! A relying party (the bank's internet-banking server) asks onepush to
//! confirm a login or an approval; onepush creates a *challenge* for the
//! user's registered phone; the phone fetches it, the user presses Approve,
//! and the phone's Ed25519 signature over the challenge decides it.
//!
//! ## Architecture
//! ```text
//!  RP ──HTTP──┐                      ┌── waiters (one thread: parked long-polls)
//!  phone ─────┤ tiny_http ── http ───┤
//!  browser ───┘  workers    routes   └── service (use cases) ── writer ── store (redb)
//!                                              ▲                (one thread, group commit)
//!                               sweeper ───────┘
//! ```
//! - `domain`: pure rules (challenge and account state, TOTP, signatures),
//!   every time-dependent function takes `now`.
//! - `store`: the only module that imports redb; every table is in
//!   `store::tables`. All writes go through one writer thread, which commits
//!   whatever has queued in one transaction with one fsync, and only then
//!   answers: a decision is on disk before anyone hears of it.
//! - `service`: use cases = validation + domain rules + one write job + audit
//!   entries + events for the waiters, sent after the commit.
//! - `http`: parsing and limits, the single error→status mapping, and the
//!   waiter thread, which owns every parked long-poll so that 10,000 waiting
//!   phones cost no threads.
//! - `sweeper`: closes due challenges from an expiry index.
//! - `control`: management commands, run in-process or through the running
//!   server's Unix socket.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod client;
pub mod config;
pub mod control;
pub mod domain;
pub mod error;
pub mod http;
pub mod metrics;
pub mod passwords;
pub mod secrets;
pub mod service;
pub mod store;
pub mod sweeper;
pub mod sync;
pub mod wakeup;
