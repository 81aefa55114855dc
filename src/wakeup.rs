//! UnifiedPush-style wake-ups: when a challenge is created for a token that
//! has a `push_endpoint`, a small POST (`{"challenge_id"}`, never the lines)
//! tells the phone to poll. Sent from their own threads through a bounded
//! queue, with short timeouts and bounded retries: a slow or dead endpoint
//! never delays the RP, it only counts as a failure in `/metrics`. Each goes
//! over HTTPS through `push::agent`, and only to an address `push::AllowedHosts`
//! accepts at the time of sending.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::push::AllowedHosts;

pub const QUEUE: usize = 10_000;
pub const THREADS: usize = 4;
pub const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct Wake {
    pub endpoint: String,
    pub challenge_id: String,
}

#[derive(Clone)]
pub struct Wakeups {
    tx: SyncSender<Wake>,
    metrics: Arc<Metrics>,
}

impl Wakeups {
    /// `agent` from `push::agent`; `hosts` checks each address before sending.
    pub fn start(metrics: Arc<Metrics>, agent: ureq::Agent, hosts: AllowedHosts, via_proxy: bool) -> Wakeups {
        let (tx, rx) = sync_channel::<Wake>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let hosts = Arc::new(hosts);
        for i in 0..THREADS {
            let (rx, agent, metrics, hosts) = (rx.clone(), agent.clone(), metrics.clone(), hosts.clone());
            let _ = std::thread::Builder::new().name(format!("wakeup-{i}")).spawn(move || run(&rx, &agent, &hosts, via_proxy, &metrics));
        }
        Wakeups { tx, metrics }
    }

    /// Queues a wake-up; a full queue counts as a failure.
    pub fn send(&self, w: Wake) {
        match self.tx.try_send(w) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.wakeup_failures.fetch_add(1, Relaxed);
            }
        }
    }
}

fn run(rx: &Mutex<Receiver<Wake>>, agent: &ureq::Agent, hosts: &AllowedHosts, via_proxy: bool, metrics: &Metrics) {
    loop {
        let next = crate::sync::lock(rx).recv();
        let Ok(w) = next else { return };
        if let Err(why) = hosts.resolve(&w.endpoint, via_proxy) {
            metrics.wakeup_failures.fetch_add(1, Relaxed);
            log::warn!("wake-up for challenge {} not sent: {why}", w.challenge_id);
            continue;
        }
        let body = serde_json::json!({"challenge_id": w.challenge_id}).to_string();
        let mut delivered = false;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(250 << attempt));
            }
            match agent.post(&w.endpoint).header("Content-Type", "application/json").send(body.as_bytes()) {
                Ok(r) if r.status().is_success() => {
                    delivered = true;
                    break;
                }
                // A 4xx, or a redirect (never followed), will not get better by retrying.
                Ok(r) if r.status().is_client_error() || r.status().is_redirection() => break,
                _ => {}
            }
        }
        if delivered {
            metrics.wakeups_sent.fetch_add(1, Relaxed);
        } else {
            metrics.wakeup_failures.fetch_add(1, Relaxed);
            log::warn!("wake-up for challenge {} not delivered", w.challenge_id);
        }
    }
}
