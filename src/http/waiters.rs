//! Parked long-polls.
//!
//! A waiting RP or phone does not hold a worker thread: its `Exchange` is
//! parked here, on one thread that owns every parked request. It is answered
//! by the event that changes what it waits for (sent after the commit that
//! made the change), or at its deadline.
//!
//! No wake-up is lost between a request's look at the store and its park.
//! Events are sent after their commit, numbered in the order they are sent
//! (`Mailbox::event`), and the request takes the number sent so far
//! (`Mailbox::seen`) before it reads. An event numbered at or below that was
//! committed before the read and is in what it read; one numbered above is
//! either already in this thread's log of recent events when the park
//! arrives, and applied then, or arrives after the park and finds it. So a
//! park costs no store read here; only a park whose events have left the log
//! (a request held up for seconds) is re-checked against the store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::response::Exchange;
use crate::domain::{now_ms, rfc3339};
use crate::error::Error;
use crate::http::views::{device_view, rp_view};
use crate::service::{App, Event};

pub enum Msg {
    /// A push service answered 404 or 410: remove that subscription.
    PushGone { token_id: String, endpoint: String },
    /// `seen`: `Mailbox::seen` taken before the request read the challenge
    /// pending.
    ParkRp { challenge_id: crate::domain::ids::ChallengeId, rp: String, ex: Exchange, deadline: Instant, seen: u64 },
    /// `seen`: `Mailbox::seen` taken before the request found no challenge.
    ParkDevice { token_id: String, ex: Exchange, deadline: Instant, seen: u64 },
    /// An event and its number (`Mailbox::event`).
    Event(Event, u64),
    /// Another node's notifications may have been missed: look again at
    /// everything parked (shared store only). Numbered as events are: a park
    /// read before it looks again too (`Mailbox::recheck`).
    Recheck(u64),
    /// Answer everything parked, then acknowledge.
    Shutdown(Sender<()>),
}

/// The way into the waiter thread, for the request threads, the notifier
/// and the listener.
#[derive(Clone)]
pub struct Mailbox {
    tx: Sender<Msg>,
    /// Events sent so far. Numbered and sent under one lock, so the thread
    /// receives them in their numbers' order.
    events: Arc<(Mutex<()>, AtomicU64)>,
}

impl Mailbox {
    pub fn new() -> (Mailbox, Receiver<Msg>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (Mailbox { tx, events: Arc::new((Mutex::new(()), AtomicU64::new(0))) }, rx)
    }

    /// Sends anything but an event (those go through `event`).
    pub fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg);
    }

    /// Sends an event that a commit made, after that commit.
    pub fn event(&self, e: Event) {
        self.numbered(|n| Msg::Event(e, n));
    }

    /// Sends a message with the next number, in number order.
    fn numbered(&self, msg: impl FnOnce(u64) -> Msg) {
        let _order = crate::sync::lock(&self.events.0);
        let n = self.events.1.load(SeqCst) + 1;
        self.events.1.store(n, SeqCst);
        let _ = self.tx.send(msg(n));
    }

    /// Asks for a re-check of everything parked (another node's
    /// notifications may have been missed). Numbered like an event, so that
    /// a park whose read came before it looks again instead of trusting the
    /// log.
    pub fn recheck(&self) {
        self.numbered(Msg::Recheck);
    }

    /// The number of events sent so far: taken before a store read that a
    /// park relies on (see the module's comment).
    pub fn seen(&self) -> u64 {
        self.events.1.load(SeqCst)
    }
}

/// What the thread keeps of an event, for the parks that were read before it.
enum Logged {
    Closed(Box<crate::domain::challenge::Challenge>),
    Pending(String),
    Revoked(String),
}

/// The events of the last few seconds (at most `RECENT_MAX`), in number order.
struct Recent {
    log: VecDeque<(u64, Instant, Logged)>,
    /// The highest number dropped from the log.
    forgotten: u64,
}

const RECENT_MAX: usize = 4096;
const RECENT_FOR: Duration = Duration::from_secs(5);

/// What a device park finds in the log.
#[derive(Debug, PartialEq, Eq)]
enum ForDevice {
    Nothing,
    Pending,
    Revoked,
}

impl Recent {
    fn new() -> Recent {
        Recent { log: VecDeque::new(), forgotten: 0 }
    }

    fn record(&mut self, n: u64, e: Logged, now: Instant) {
        self.log.push_back((n, now, e));
        while let Some((first, at, _)) = self.log.front() {
            if self.log.len() <= RECENT_MAX && now.duration_since(*at) < RECENT_FOR {
                break;
            }
            self.forgotten = *first;
            self.log.pop_front();
        }
    }

    /// Whether every event numbered above `seen` is still in the log.
    fn knows_after(&self, seen: u64) -> bool {
        seen >= self.forgotten
    }

    /// A re-check numbered `n`: events may have been missed before it, so
    /// the parks read before it are told to look again.
    fn distrust_upto(&mut self, n: u64) {
        self.forgotten = self.forgotten.max(n);
    }

    fn after(&self, seen: u64) -> impl Iterator<Item = &Logged> {
        self.log.iter().rev().take_while(move |(n, ..)| *n > seen).map(|(_, _, e)| e)
    }

    /// The challenge `id` as an event numbered above `seen` closed it.
    fn closed_after(&self, seen: u64, id: &str) -> Option<&crate::domain::challenge::Challenge> {
        self.after(seen).find_map(|e| match e {
            Logged::Closed(c) if c.id == id => Some(&**c),
            _ => None,
        })
    }

    fn device_after(&self, seen: u64, token_id: &str) -> ForDevice {
        let mut found = ForDevice::Nothing;
        for e in self.after(seen) {
            match e {
                Logged::Revoked(t) if t == token_id => return ForDevice::Revoked,
                Logged::Pending(t) if t == token_id => found = ForDevice::Pending,
                _ => {}
            }
        }
        found
    }
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
    recent: Recent,
}

#[allow(clippy::expect_used, reason = "started once at start: without this thread there is no service")]
pub fn spawn(app: Arc<App>, rx: Receiver<Msg>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("waiters".into())
        .spawn(move || {
            let mut w = Waiters {
                app,
                rp: HashMap::new(),
                device: HashMap::new(),
                deadlines: BinaryHeap::new(),
                next_id: 0,
                recent: Recent::new(),
            };
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
            Msg::ParkRp { challenge_id, rp, ex, deadline, seen } => {
                if !self.recent.knows_after(seen) {
                    // Its events have left the log: look again.
                    return match self.app.challenge_for_rp(&rp, &challenge_id) {
                        Ok(c) if c.is_pending() => self.park(Side::Rp, challenge_id.to_string(), ex, deadline, Some(rp)),
                        Ok(c) => ex.json(200, &rp_view(&c)),
                        Err(e) => ex.error(&e),
                    };
                }
                match self.recent.closed_after(seen, &challenge_id) {
                    Some(c) => ex.json(200, &rp_view(c)),
                    None => self.park(Side::Rp, challenge_id.to_string(), ex, deadline, Some(rp)),
                }
            }
            Msg::ParkDevice { token_id, ex, deadline, seen } => {
                let found = match self.recent.knows_after(seen) {
                    true => self.recent.device_after(seen, &token_id),
                    // Look again, at the token too.
                    false => match self.app.token_revoked(&token_id) {
                        Ok(false) => ForDevice::Pending,
                        Ok(true) => ForDevice::Revoked,
                        Err(e) => return ex.error(&e),
                    },
                };
                match found {
                    ForDevice::Revoked => ex.error(&Error::TokenRevoked),
                    ForDevice::Pending => {
                        if let Some(ex) = deliver(&self.app, &token_id, ex) {
                            self.park(Side::Device, token_id, ex, deadline, None);
                        }
                    }
                    ForDevice::Nothing => self.park(Side::Device, token_id, ex, deadline, None),
                }
            }
            Msg::Event(Event::Closed(c, committed), n) => {
                for p in self.take(Side::Rp, &c.id) {
                    p.ex.json(200, &rp_view(&c));
                    self.app.metrics.wake_latency.observe(committed.elapsed());
                }
                self.recent.record(n, Logged::Closed(c), Instant::now());
            }
            Msg::Event(Event::Pending(token_id), n) => {
                for p in self.take(Side::Device, &token_id) {
                    if let Some(ex) = deliver(&self.app, &token_id, p.ex) {
                        ex.json(200, &device_list(vec![])); // cancelled meanwhile
                    }
                }
                self.recent.record(n, Logged::Pending(token_id), Instant::now());
            }
            Msg::Event(Event::TokenRevoked(token_id), n) => {
                for p in self.take(Side::Device, &token_id) {
                    p.ex.error(&Error::TokenRevoked);
                }
                self.recent.record(n, Logged::Revoked(token_id), Instant::now());
            }
            // Wake-ups go to their own threads; creations are only counted.
            Msg::Event(Event::Wake(_) | Event::Created(_), _) => {}
            Msg::PushGone { token_id, endpoint } => self.app.push_gone(token_id, endpoint),
            Msg::Recheck(n) => {
                self.recent.distrust_upto(n);
                self.recheck();
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::challenge::{Challenge, Status};

    fn closed(id: &str) -> Box<Challenge> {
        Box::new(Challenge { status: Status::Approved, decided_at: Some(1), ..crate::domain::challenge::test_pending(id, 0) })
    }

    #[test]
    fn a_park_sees_only_the_events_numbered_after_its_read() {
        let t0 = Instant::now();
        let mut r = Recent::new();
        r.record(1, Logged::Closed(closed("ch_a")), t0);
        r.record(2, Logged::Pending("T1".into()), t0);
        r.record(4, Logged::Closed(closed("ch_b")), t0);
        assert!(r.knows_after(0));
        // Read after event 1: what it closed is in the read, not re-applied.
        assert!(r.closed_after(1, "ch_a").is_none());
        assert!(r.closed_after(0, "ch_a").is_some_and(|c| c.status == Status::Approved));
        assert!(r.closed_after(3, "ch_b").is_some());
        assert!(r.closed_after(4, "ch_b").is_none());
        assert_eq!(r.device_after(1, "T1"), ForDevice::Pending);
        assert_eq!(r.device_after(2, "T1"), ForDevice::Nothing);
        assert_eq!(r.device_after(0, "T2"), ForDevice::Nothing);
        // A revocation outranks a new challenge, whatever their order.
        r.record(5, Logged::Revoked("T1".into()), t0);
        r.record(6, Logged::Pending("T1".into()), t0);
        assert_eq!(r.device_after(1, "T1"), ForDevice::Revoked);
        assert_eq!(r.device_after(5, "T1"), ForDevice::Pending);
    }

    #[test]
    fn a_park_whose_events_left_the_log_is_told_to_look_again() {
        let t0 = Instant::now();
        let mut r = Recent::new();
        for n in 1..=(RECENT_MAX as u64 + 10) {
            r.record(n, Logged::Pending(format!("T{n}")), t0);
        }
        assert_eq!(r.log.len(), RECENT_MAX);
        assert_eq!(r.forgotten, 10);
        assert!(!r.knows_after(9));
        assert!(r.knows_after(10));
        // By age too.
        let mut r = Recent::new();
        r.record(1, Logged::Pending("T1".into()), t0);
        r.record(2, Logged::Pending("T2".into()), t0 + RECENT_FOR + Duration::from_millis(1));
        assert_eq!(r.forgotten, 1);
        assert!(!r.knows_after(0));
        assert_eq!(r.device_after(1, "T2"), ForDevice::Pending);
        // A re-check: parks read before it look again, later ones need not.
        r.distrust_upto(7);
        assert!(!r.knows_after(6));
        assert!(r.knows_after(7));
        r.distrust_upto(3);
        assert!(!r.knows_after(6), "never lowered");
    }

    #[test]
    fn the_mailbox_numbers_events_in_the_order_it_sends_them() {
        let (m, rx) = Mailbox::new();
        assert_eq!(m.seen(), 0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        m.event(Event::Pending("T".into()));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.seen(), 2000);
        drop(m);
        let numbers: Vec<u64> = rx
            .iter()
            .map(|msg| match msg {
                Msg::Event(_, n) => n,
                _ => panic!("only events were sent"),
            })
            .collect();
        assert_eq!(numbers, (1..=2000).collect::<Vec<_>>());
    }
}
