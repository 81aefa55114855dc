//! Devices: provisioning a phone's key and OTP secret, and authenticating
//! its signed requests (one 401 for an unknown token and a bad signature).

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionInput {
    pub public_key: String,
    pub proof: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub push_endpoint: Option<String>,
    /// `ja` (default) or `en`: the language of the lines composed for it.
    #[serde(default)]
    pub lang: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushInput {
    pub kind: String,
    pub endpoint: String,
    #[serde(default)]
    pub p256dh: Option<String>,
    #[serde(default)]
    pub auth: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    pub lang: String,
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

#[derive(Debug, Clone, Serialize)]
pub struct ProvisionOutput {
    pub token_id: String,
    pub otp_secret: String,
    pub otp_algorithm: &'static str,
    pub otp_digits: u32,
    pub otp_period: u64,
    pub server_time: String,
}

impl App {
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
                self.cfg().push_hosts.check_endpoint("push_endpoint", e)?;
            }
            let lang = input.lang.as_deref().map(|l| Lang::parse("lang", l)).transpose()?.unwrap_or_default();
            self.rate_limit_provision(ip, now)?;
            Ok(lang)
        })();
        let lang = match prepared {
            Ok(lang) => lang,
            Err(e) => return done(Err(e)),
        };
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
                    push_endpoint: None,
                    created_at: now,
                    provision_expires_at: expires,
                    bound_to: None,
                    bound_at: None,
                    revoked_at: None,
                    revoke_reason: None,
                    last_otp_step: None,
                    failures: 0,
                    lang,
                    push: input.push_endpoint.clone().map(|endpoint| PushSubscription::Unifiedpush { endpoint }),
                };
                tx.put_token(&t)?;
                tx.audit(
                    NewEvent::new("token_provisioned", format!("device:{token_id}"))
                        .detail(json!({"token_id": token_id.as_str(), "label": t.label, "ip": ip.to_string(),
                                       "push_endpoint": t.push.is_some()})),
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

    pub(super) fn rate_limit_provision(&self, ip: IpAddr, now: Ms) -> Result<()> {
        self.rate_limit("provision", ip, PROVISION_RATE_LIMIT, PROVISION_RATE_WINDOW, now)
    }

    /// Checks the signed headers of a device request (API.md "Signed device
    /// requests"). Returns the token.
    /// PUT /api/v1/device/settings: the phone's language; lines composed
    /// after it use it.
    pub fn set_device_settings(&self, caller: &Token, input: SettingsInput) -> Result<Lang> {
        let lang = Lang::parse("lang", &input.lang)?;
        let token_id = caller.token_id.clone();
        self.call(Durability::Durable, move |tx, _| {
            let mut t = live_token(tx, &token_id)?;
            if t.lang != lang {
                t.lang = lang;
                tx.put_token(&t)?;
            }
            Ok(lang)
        })
    }

    /// `GET /api/v1/device/push-config`.
    pub fn vapid_public_key(&self) -> String {
        self.vapid.public_b64()
    }

    /// `PUT /api/v1/device/push`: the phone's one subscription, replacing
    /// any earlier one; every endpoint rule of API.md applies.
    pub fn set_push(&self, caller: &Token, input: PushInput, now: Ms) -> Result<PushSubscription> {
        let sub = match input.kind.as_str() {
            "webpush" => {
                let (Some(p256dh), Some(auth)) = (input.p256dh, input.auth) else {
                    return Err(Error::bad_field("p256dh", "and auth are required for webpush"));
                };
                self.cfg().push_hosts.check_endpoint("endpoint", &input.endpoint)?;
                crate::push::check_webpush_keys(&p256dh, &auth)?;
                PushSubscription::Webpush { endpoint: input.endpoint, p256dh, auth }
            }
            "unifiedpush" => {
                if input.p256dh.is_some() || input.auth.is_some() {
                    return Err(Error::bad_field("p256dh", "and auth go with webpush only"));
                }
                self.cfg().push_hosts.check_endpoint("endpoint", &input.endpoint)?;
                PushSubscription::Unifiedpush { endpoint: input.endpoint }
            }
            _ => return Err(Error::bad_field("kind", "must be webpush or unifiedpush")),
        };
        let (token_id, stored) = (caller.token_id.clone(), sub.clone());
        self.call(Durability::Durable, move |tx, _| {
            let mut t = live_token(tx, &token_id)?;
            t.set_subscription(Some(stored.clone()));
            tx.put_token(&t)?;
            tx.audit(
                NewEvent::new("push_subscribed", format!("device:{token_id}"))
                    .detail(json!({"token_id": token_id, "kind": stored.kind(), "endpoint": stored.endpoint(), "at": rfc3339(now)})),
            )?;
            Ok(())
        })?;
        Ok(sub)
    }

    /// `DELETE /api/v1/device/push`.
    pub fn delete_push(&self, caller: &Token) -> Result<()> {
        let token_id = caller.token_id.clone();
        self.call(Durability::Durable, move |tx, _| {
            let mut t = tx.token(&token_id)?.ok_or(Error::TokenRevoked)?;
            if t.subscription().is_some() {
                t.set_subscription(None);
                tx.put_token(&t)?;
                tx.audit(NewEvent::new("push_unsubscribed", format!("device:{token_id}")).detail(json!({"token_id": token_id})))?;
            }
            Ok(())
        })
    }

    /// A push service answered 404 or 410: the subscription is removed
    /// (audited `push_removed`) unless the phone has replaced it meanwhile.
    pub fn push_gone(&self, token_id: String, endpoint: String) {
        self.writer.submit(
            Durability::Durable,
            move |tx| {
                let Some(mut t) = tx.token(&token_id)? else { return Ok(()) };
                if t.subscription().is_some_and(|s| s.endpoint() == endpoint) {
                    t.set_subscription(None);
                    tx.put_token(&t)?;
                    tx.audit(
                        NewEvent::new("push_removed", "system")
                            .detail(json!({"token_id": token_id, "endpoint": endpoint, "why": "the push service answered 404 or 410"})),
                    )?;
                }
                Ok(())
            },
            |r: Result<()>| {
                if let Err(e) = r {
                    log::error!("removing a gone push subscription: {e}");
                }
            },
        );
    }

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
        let Some(token) = self.store.read_latest()?.token(r.token_id)? else {
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

    /// Whether a token can no longer be used (revoked, or gone): for a
    /// phone's poll about to park, whose token was read before the events
    /// the park will apply (`http::waiters`).
    pub fn token_revoked(&self, token_id: &str) -> Result<bool> {
        Ok(self.store.read_latest()?.token(token_id)?.is_none_or(|t| t.is_revoked()))
    }

    /// A token's public key, decoded once.
    pub(super) fn device_key(&self, public_key: &str) -> Result<ed25519_dalek::VerifyingKey> {
        if let Some(k) = crate::sync::lock(&self.keys).get(public_key) {
            return Ok(*k);
        }
        let k = sig::parse_public_key("public_key", public_key)?;
        let mut cache = crate::sync::lock(&self.keys);
        if cache.len() >= 100_000 {
            cache.clear();
        }
        cache.insert(public_key.to_string(), k);
        Ok(k)
    }
}

/// The caller's token as it is now in the store: a change to a token that was
/// revoked since its request was authenticated is refused.
fn live_token(tx: &WriteTx, token_id: &str) -> Result<Token> {
    match tx.token(token_id)? {
        Some(t) if !t.is_revoked() => Ok(t),
        _ => Err(Error::TokenRevoked),
    }
}

/// How a token ends: revoked (by an action or by failures), or expired unbound.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    Revoked,
    Expired,
}

/// The one way a token ends: revoked in the store, audited
/// (`token_revoked` with its reason, or `token_expired`), and its parked
/// polls told after the commit.
pub(super) fn end_token(
    tx: &mut WriteTx,
    events: &mut Vec<Event>,
    t: &mut Token,
    how: Ending,
    reason: &str,
    actor: &str,
    now: Ms,
) -> Result<()> {
    t.revoke(reason, now);
    tx.put_token(t)?;
    let event = match how {
        Ending::Revoked => NewEvent::new("token_revoked", actor).detail(json!({"token_id": t.token_id, "reason": reason})),
        Ending::Expired => NewEvent::new("token_expired", actor).detail(json!({"token_id": t.token_id})),
    };
    tx.audit(event)?;
    events.push(Event::TokenRevoked(t.token_id.clone()));
    Ok(())
}
