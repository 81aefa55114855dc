//! The sweeper thread: closes due challenges (`expired` if the phone fetched
//! them, `undelivered` if not) and expires unbound tokens. It sleeps until
//! the earliest expiry in the index or `sweep_interval`, whichever is
//! sooner, so a challenge closes within milliseconds of `expires_at`.
//! Every 10 minutes it also logs the signed audit head (API.md: logged at
//! least every 10 minutes).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use crate::domain::{now_ms, Ms, SECOND};
use crate::service::App;

const AUDIT_HEAD_LOG_EVERY: Ms = 600 * SECOND;

#[allow(clippy::expect_used, reason = "started once at start: without this thread there is no service")]
pub fn spawn(app: Arc<App>, stop: Receiver<()>) -> std::thread::JoinHandle<()> {
    let mut log_head_at = 0;
    std::thread::Builder::new()
        .name("sweeper".into())
        .spawn(move || {
            // On a shared store one node sweeps at a time (SPEC R8).
            let mut lock = app.sweeper_lock();
            loop {
                let now = now_ms();
                if lock.as_mut().is_some_and(|l| !l.held()) {
                    // Another node sweeps: ask again at the next interval.
                    match stop.recv_timeout(Duration::from_millis(app.cfg().sweep_interval)) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        _ => return,
                    }
                }
                if now >= log_head_at {
                    app.log_audit_head();
                    log_head_at = now + AUDIT_HEAD_LOG_EVERY;
                }
                let next = match app.sweep(now) {
                    Ok((closed, next)) => {
                        if !closed.is_empty() {
                            log::debug!("sweeper closed {} challenges", closed.len());
                        }
                        next
                    }
                    Err(e) => {
                        log::error!("sweep failed: {e}");
                        None
                    }
                };
                let interval = app.cfg().sweep_interval;
                let sleep = next.map_or(interval, |at| at.saturating_sub(now_ms()).clamp(1, interval));
                match stop.recv_timeout(Duration::from_millis(sleep)) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        })
        .expect("spawning the sweeper")
}
