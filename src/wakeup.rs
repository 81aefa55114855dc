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

use crate::domain::account::PushSubscription;
use crate::domain::{now_ms, Ms};
use crate::metrics::Metrics;
use crate::push::{AllowedHosts, VapidKey};

pub const QUEUE: usize = 10_000;
/// Sender threads: a send waits mostly on the push service, so more threads
/// than cores keep one slow answer from holding the messages behind it.
pub const THREADS: usize = 8;
pub const ATTEMPTS: u32 = 3;

/// A push message to send: a challenge was created for a token with a subscription.
#[derive(Debug, Clone)]
pub struct Wake {
    pub token_id: String,
    pub subscription: PushSubscription,
    pub challenge_id: String,
    pub kind: &'static str,
    pub expires_at: Ms,
}

/// Told when a push service answers 404 or 410: the subscription is gone.
pub type Gone = Arc<dyn Fn(String, String) + Send + Sync>;

/// What every sender thread shares.
pub struct Sender {
    pub agent: ureq::Agent,
    pub hosts: AllowedHosts,
    /// Names are resolved by the proxy, not here.
    pub via_proxy: bool,
    pub vapid: Arc<VapidKey>,
    /// The VAPID `sub`.
    pub contact: String,
    pub gone: Gone,
}

#[derive(Clone)]
pub struct Wakeups {
    tx: SyncSender<Wake>,
    metrics: Arc<Metrics>,
}

impl Wakeups {
    pub fn start(metrics: Arc<Metrics>, sender: Sender) -> Wakeups {
        let (tx, rx) = sync_channel::<Wake>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let sender = Arc::new(sender);
        for i in 0..THREADS {
            let (rx, sender, metrics) = (rx.clone(), sender.clone(), metrics.clone());
            let _ = std::thread::Builder::new().name(format!("wakeup-{i}")).spawn(move || run(&rx, &sender, &metrics));
        }
        Wakeups { tx, metrics }
    }

    /// Queues a message; a full queue counts as a failure.
    pub fn send(&self, w: Wake) {
        let kind = w.subscription.kind();
        match self.tx.try_send(w) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.wakeup_failures.fetch_add(1, Relaxed);
                self.metrics.push_outcome(kind, "dropped");
            }
        }
    }
}

/// How one attempt went.
enum Attempt {
    Sent,
    Gone,
    /// Retrying will not change it (a redirect, another 4xx, a bad subscription).
    Refused(String),
    /// 429, 5xx, a network error: retried while the challenge is pending.
    Retry(String),
}

fn run(rx: &Mutex<Receiver<Wake>>, s: &Sender, metrics: &Metrics) {
    loop {
        let next = crate::sync::lock(rx).recv();
        let Ok(w) = next else { return };
        let kind = w.subscription.kind();
        let outcome = deliver(s, &w);
        let (label, ok) = match &outcome {
            Attempt::Sent => ("sent", true),
            Attempt::Gone => {
                (s.gone)(w.token_id.clone(), w.subscription.endpoint().to_string());
                ("gone", false)
            }
            Attempt::Refused(why) => {
                log::warn!("push for challenge {} refused: {why}", w.challenge_id);
                ("refused", false)
            }
            Attempt::Retry(why) if why == "expired" => ("expired", false),
            Attempt::Retry(why) => {
                log::warn!("push for challenge {} not delivered: {why}", w.challenge_id);
                ("failed", false)
            }
        };
        metrics.push_outcome(kind, label);
        if ok {
            metrics.wakeups_sent.fetch_add(1, Relaxed);
        } else {
            metrics.wakeup_failures.fetch_add(1, Relaxed);
        }
    }
}

/// Sends with retries and backoff while the challenge is pending.
fn deliver(s: &Sender, w: &Wake) -> Attempt {
    if let Err(why) = s.hosts.resolve(w.subscription.endpoint(), s.via_proxy) {
        return Attempt::Refused(why);
    }
    let mut last = Attempt::Retry("not tried".into());
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            let wait = Duration::from_millis(250 << attempt);
            let left = w.expires_at.saturating_sub(now_ms());
            if left <= wait.as_millis() as Ms {
                return Attempt::Retry("expired".into());
            }
            std::thread::sleep(wait);
        }
        let ttl = (w.expires_at.saturating_sub(now_ms()) / 1000).max(1);
        last = match &w.subscription {
            PushSubscription::Webpush { endpoint, p256dh, auth } => send_webpush(s, w, endpoint, p256dh, auth, ttl),
            PushSubscription::Unifiedpush { endpoint } => {
                let body = serde_json::json!({"challenge_id": w.challenge_id}).to_string();
                let r = s
                    .agent
                    .post(endpoint)
                    .header("Content-Type", "application/json")
                    .header("TTL", ttl.to_string())
                    .header("Urgency", "high")
                    .send(body.as_bytes());
                judge(r)
            }
        };
        if !matches!(last, Attempt::Retry(_)) {
            return last;
        }
    }
    last
}

/// RFC 8030/8291/8292: the payload (`{"challenge_id", "kind", "expires_at"}`,
/// never the lines) encrypted with aes128gcm for the subscription's keys,
/// signed with the VAPID key (`aud` the endpoint's origin, `sub` push_contact).
fn send_webpush(s: &Sender, w: &Wake, endpoint: &str, p256dh: &str, auth: &str, ttl: Ms) -> Attempt {
    let info = web_push::SubscriptionInfo::new(endpoint, p256dh, auth);
    let payload =
        serde_json::json!({"challenge_id": w.challenge_id, "kind": w.kind, "expires_at": crate::domain::rfc3339(w.expires_at)}).to_string();
    let signature = match s.vapid.signature(&info, &s.contact) {
        Ok(sig) => sig,
        Err(e) => return Attempt::Refused(format!("VAPID signature: {e}")),
    };
    let mut b = web_push::WebPushMessageBuilder::new(&info);
    b.set_payload(web_push::ContentEncoding::Aes128Gcm, payload.as_bytes());
    b.set_ttl(u32::try_from(ttl).unwrap_or(u32::MAX));
    b.set_urgency(web_push::Urgency::High);
    b.set_vapid_signature(signature);
    let message = match b.build() {
        Ok(m) => m,
        Err(e) => return Attempt::Refused(format!("the subscription's keys: {e}")),
    };
    let Some(p) = message.payload else { return Attempt::Refused("no payload".into()) };
    let mut req = s
        .agent
        .post(endpoint)
        .header("TTL", message.ttl.to_string())
        .header("Urgency", "high")
        .header("Content-Encoding", p.content_encoding.to_str())
        .header("Content-Type", "application/octet-stream");
    for (k, v) in &p.crypto_headers {
        req = req.header(*k, v.as_str());
    }
    judge(req.send(&p.content[..]))
}

fn judge(r: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Attempt {
    match r {
        Ok(r) if r.status().is_success() => Attempt::Sent,
        Ok(r) if r.status() == 404 || r.status() == 410 => Attempt::Gone,
        Ok(r) if r.status() == 429 || r.status().is_server_error() => Attempt::Retry(format!("answered {}", r.status())),
        // A redirect (never followed) or another 4xx will not get better by retrying.
        Ok(r) => Attempt::Refused(format!("answered {}", r.status())),
        Err(e) => Attempt::Retry(e.to_string()),
    }
}
