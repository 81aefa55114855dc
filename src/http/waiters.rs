//! Parked long-polls.
//!
//! A waiting RP or phone does not hold a worker thread: its `Exchange` is
//! parked here, on one thread that owns every parked request. It is answered
//! by the event that changes what it waits for (sent after the commit that
//! made the change), or at its deadline.
//!
//! Parking re-checks the store on this thread. Events are sent after their
//! commit and every message arrives on one channel, so an event that races a
//! park is either seen by the re-check or arrives after the park: no wake-up
//! is lost.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::response::Exchange;
use crate::domain::{now_ms, rfc3339};
use crate::error::Error;
use crate::http::views::{device_view, rp_view};
use crate::service::{App, Event};

pub enum Msg {
    /// A push service answered 404 or 410: remove that subscription.
    PushGone {
        token_id: String,
        endpoint: String,
    },
    ParkRp {
        challenge_id: crate::domain::ids::ChallengeId,
        rp: String,
        ex: Exchange,
        deadline: Instant,
    },
    ParkDevice {
        token_id: String,
        ex: Exchange,
        deadline: Instant,
    },
    Event(Event),
    /// Another node's notifications may have been missed: look again at
    /// everything parked (shared store only).
    Recheck,
    /// Answer everything parked, then acknowledge.
    Shutdown(Sender<()>),
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Rp,
    Device,
}

struct Parked {
    id: u64,
    ex: Exchange,
    /// The RP name, for the answer at the deadline.
    rp: Option<String>,
}

struct Waiters {
    app: Arc<App>,
    rp: HashMap<String, Vec<Parked>>,
    device: HashMap<String, Vec<Parked>>,
    deadlines: BinaryHeap<Reverse<(Instant, u64, Side, String)>>,
    next_id: u64,
}

#[allow(clippy::expect_used, reason = "started once at start: without this thread there is no service")]
pub fn spawn(app: Arc<App>, rx: Receiver<Msg>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("waiters".into())
        .spawn(move || {
            let mut w = Waiters { app, rp: HashMap::new(), device: HashMap::new(), deadlines: BinaryHeap::new(), next_id: 0 };
            w.run(&rx);
        })
        .expect("spawning the waiter thread")
}

/// Answers a device poll with its pending challenges (marking them
/// delivered); gives the exchange back when there are none.
pub fn deliver(app: &App, token_id: &str, ex: Exchange) -> Option<Exchange> {
    match app.deliver(token_id, now_ms()) {
        Ok(list) if list.is_empty() => Some(ex),
        Ok(list) => {
            ex.json(200, &device_list(list.iter().map(device_view).collect()));
            None
        }
        Err(e) => {
            ex.error(&e);
            None
        }
    }
}

pub fn device_list(challenges: Vec<serde_json::Value>) -> serde_json::Value {
    json!({"server_time": rfc3339(now_ms()), "challenges": challenges})
}

impl Waiters {
    fn run(&mut self, rx: &Receiver<Msg>) {
        loop {
            let timeout = match self.deadlines.peek() {
                Some(Reverse((at, ..))) => at.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            match rx.recv_timeout(timeout) {
                Ok(Msg::Shutdown(ack)) => {
                    self.answer_all();
                    let _ = ack.send(());
                    // Keep answering late arrivals until every sender is gone.
                }
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.answer_all();
                    return;
                }
            }
            self.expire(Instant::now());
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::ParkRp { challenge_id, rp, ex, deadline } => match self.app.challenge_for_rp(&rp, &challenge_id) {
                Ok(c) if c.is_pending() => self.park(Side::Rp, challenge_id.to_string(), ex, deadline, Some(rp)),
                Ok(c) => ex.json(200, &rp_view(&c)),
                Err(e) => ex.error(&e),
            },
            Msg::ParkDevice { token_id, ex, deadline } => {
                if let Some(ex) = deliver(&self.app, &token_id, ex) {
                    self.park(Side::Device, token_id, ex, deadline, None);
                }
            }
            Msg::Event(Event::Closed(c, committed)) => {
                for p in self.take(Side::Rp, &c.id) {
                    p.ex.json(200, &rp_view(&c));
                    self.app.metrics.wake_latency.observe(committed.elapsed());
                }
            }
            Msg::Event(Event::Pending(token_id)) => {
                for p in self.take(Side::Device, &token_id) {
                    if let Some(ex) = deliver(&self.app, &token_id, p.ex) {
                        ex.json(200, &device_list(vec![])); // cancelled meanwhile
                    }
                }
            }
            Msg::Event(Event::TokenRevoked(token_id)) => {
                for p in self.take(Side::Device, &token_id) {
                    p.ex.error(&Error::TokenRevoked);
                }
            }
            // Wake-ups go to their own threads; creations are only counted.
            Msg::Event(Event::Wake(_) | Event::Created(_)) => {}
            Msg::PushGone { token_id, endpoint } => self.app.push_gone(token_id, endpoint),
            Msg::Recheck => self.recheck(),
            Msg::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    /// Answers the parked requests whose answer changed without an event
    /// reaching this node (another node's notification lost): one look at
    /// the store for all of them.
    fn recheck(&mut self) {
        let ids: Vec<String> = self.rp.keys().cloned().collect();
        let tokens: Vec<String> = self.device.keys().cloned().collect();
        if ids.is_empty() && tokens.is_empty() {
            return;
        }
        let (closed, pending) = match self.app.recheck(&ids, &tokens, now_ms()) {
            Ok(found) => found,
            Err(e) => {
                log::warn!("re-checking the parked requests failed: {e}");
                return;
            }
        };
        for c in closed {
            for p in self.take(Side::Rp, &c.id) {
                p.ex.json(200, &rp_view(&c));
            }
        }
        for token_id in pending {
            for p in self.take(Side::Device, &token_id) {
                if let Some(ex) = deliver(&self.app, &token_id, p.ex) {
                    ex.json(200, &device_list(vec![]));
                }
            }
        }
    }

    fn map(&mut self, side: Side) -> &mut HashMap<String, Vec<Parked>> {
        match side {
            Side::Rp => &mut self.rp,
            Side::Device => &mut self.device,
        }
    }

    fn gauge(&self, side: Side) -> &std::sync::atomic::AtomicI64 {
        match side {
            Side::Rp => &self.app.metrics.parked_rp,
            Side::Device => &self.app.metrics.parked_device,
        }
    }

    fn park(&mut self, side: Side, key: String, ex: Exchange, deadline: Instant, rp: Option<String>) {
        self.next_id += 1;
        let id = self.next_id;
        self.deadlines.push(Reverse((deadline, id, side, key.clone())));
        self.map(side).entry(key).or_default().push(Parked { id, ex, rp });
        self.gauge(side).fetch_add(1, Relaxed);
    }

    fn take(&mut self, side: Side, key: &str) -> Vec<Parked> {
        let v = self.map(side).remove(key).unwrap_or_default();
        self.gauge(side).fetch_sub(v.len() as i64, Relaxed);
        v
    }

    /// Answers requests whose deadline has passed with what is true now.
    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((at, ..))) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id, side, key))) = self.deadlines.pop() else { break };
            let map = self.map(side);
            let Some(list) = map.get_mut(&key) else { continue };
            let Some(pos) = list.iter().position(|p| p.id == id) else { continue };
            let p = list.swap_remove(pos);
            if list.is_empty() {
                map.remove(&key);
            }
            self.gauge(side).fetch_sub(1, Relaxed);
            self.answer_now(side, &key, p);
        }
    }

    fn answer_now(&self, side: Side, key: &str, p: Parked) {
        match side {
            Side::Rp => match crate::domain::ids::ChallengeId::lookup(key)
                .and_then(|id| self.app.challenge_for_rp(p.rp.as_deref().unwrap_or(""), &id))
            {
                Ok(c) => p.ex.json(200, &rp_view(&c)),
                Err(e) => p.ex.error(&e),
            },
            Side::Device => p.ex.json(200, &device_list(vec![])),
        }
    }

    fn answer_all(&mut self) {
        for side in [Side::Rp, Side::Device] {
            let all: Vec<(String, Vec<Parked>)> = self.map(side).drain().collect();
            for (key, list) in all {
                self.gauge(side).fetch_sub(list.len() as i64, Relaxed);
                for p in list {
                    self.answer_now(side, &key, p);
                }
            }
        }
        self.deadlines.clear();
    }
}
