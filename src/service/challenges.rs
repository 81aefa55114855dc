//! Challenges after they are opened: delivered to the phone, answered with
//! its signature, cancelled by the RP, closed by the sweeper.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerInput {
    pub token_id: String,
    pub decision: String,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub report_fraud: bool,
    pub signature: String,
}

impl App {
    /// Stores a challenge that just left `pending`, audits it and tells waiters.
    pub(crate) fn record_closed(&self, tx: &mut WriteTx, events: &mut Vec<Event>, c: &Challenge, actor: &str) -> Result<()> {
        tx.put_challenge(c)?;
        let mut detail = json!({
            "challenge_id": c.id, "kind": c.kind.as_str(), "status": c.status.as_str(), "rp": c.rp,
            "token_id": c.token_id, "display_digest": c.display_digest,
            "delivered_at": c.delivered_at.map(rfc3339),
        });
        if let Some(sig) = &c.signature {
            detail["signature"] = json!(sig);
            detail["answered_by"] = json!(c.answered_by);
            detail["number"] = json!(c.number);
        }
        if let Some(cause) = c.cancel_cause {
            detail["cancel_cause"] = json!(cause);
        }
        tx.audit(NewEvent::new("challenge_closed", actor).user(&c.contract_no, &c.user_id).detail(detail))?;
        if c.report_fraud {
            tx.put_fraud_report(&crate::store::FraudReport {
                challenge_id: c.id.clone(),
                contract_no: c.contract_no.clone(),
                user_id: c.user_id.clone(),
                kind: c.kind.as_str().to_string(),
                reported_at: c.decided_at.unwrap_or(c.created_at),
            })?;
            tx.audit(
                NewEvent::new("fraud_report", actor)
                    .user(&c.contract_no, &c.user_id)
                    .detail(json!({"challenge_id": c.id, "kind": c.kind.as_str()})),
            )?;
        }
        events.push(Event::Closed(Box::new(c.clone()), Instant::now()));
        Ok(())
    }

    /// GET /api/v1/challenges/{id}: 404 for unknown ids and other RPs' challenges.
    pub fn challenge_for_rp(&self, rp: &str, id: &ChallengeId) -> Result<Challenge> {
        let r = self.store.read_latest()?;
        match r.challenge(id)? {
            Some(c) if c.rp == rp && self.rp_sees_contract(&r, rp, &c.contract_no)? => Ok(c),
            _ => Err(Error::NotFound("no such challenge".into())),
        }
    }

    /// DELETE /api/v1/challenges/{id}.
    pub fn cancel(self: &Arc<Self>, rp: String, id: ChallengeId, now: Ms, done: impl FnOnce(Result<Challenge>) + Send + 'static) {
        let app = self.clone();
        self.submit(
            Durability::Durable,
            move |tx, events| {
                let mut c = match tx.challenge(&id)? {
                    Some(c) if c.rp == rp && app.rp_sees_contract(tx, &rp, &c.contract_no)? => c,
                    _ => return Err(Error::NotFound("no such challenge".into())),
                };
                app.apply_delivered(&mut c);
                c.cancel(CancelCause::Relying, now)?;
                app.record_closed(tx, events, &c, &format!("rp:{rp}"))?;
                Ok(c)
            },
            done,
        );
    }

    /// Pending challenges of a token, for the phone. The first fetch marks
    /// them delivered. The mark only tells `expired` from `undelivered`, so
    /// it is kept in memory and written with the challenge when it closes: no
    /// store write on the way to the phone. (After a crash, a challenge that
    /// was fetched but never answered closes as `undelivered`.)
    ///
    /// On a shared store (SPEC R8) the challenge may close on another node,
    /// so the first fetch also writes the mark (a lazy write: bookkeeping).
    pub fn deliver(&self, token_id: &str, now: Ms) -> Result<Vec<Challenge>> {
        let mut list: Vec<Challenge> =
            self.store.read_latest()?.pending_for_token(token_id)?.into_iter().filter(|c| now < c.expires_at).collect();
        let mut fresh = Vec::new();
        {
            let mut marks = crate::sync::lock(&self.delivered);
            for c in &mut list {
                let at = *marks.entry(c.id.clone()).or_insert(now);
                if c.delivered_at.is_none() && at == now {
                    fresh.push(c.id.clone());
                }
                c.mark_delivered(at);
            }
        }
        if self.store.is_shared() && !fresh.is_empty() {
            self.writer.submit(
                Durability::Lazy,
                move |tx| {
                    for id in &fresh {
                        if let Some(mut c) = tx.challenge(id)?.filter(|c| c.is_pending() && c.delivered_at.is_none()) {
                            c.mark_delivered(now);
                            tx.put_challenge(&c)?;
                        }
                    }
                    Ok(())
                },
                |r| {
                    if let Err(e) = r {
                        log::warn!("writing a delivered mark failed: {e}");
                    }
                },
            );
        }
        Ok(list)
    }

    /// Of the parked requests: the challenges closed, and the tokens with a
    /// pending challenge (`Store::recheck`).
    pub fn recheck(&self, challenge_ids: &[String], token_ids: &[String], now: Ms) -> Result<(Vec<Challenge>, Vec<String>)> {
        self.store.recheck(challenge_ids, token_ids, now)
    }

    /// Applies the in-memory delivered mark to a challenge about to close.
    pub(crate) fn apply_delivered(&self, c: &mut Challenge) {
        if let Some(&at) = crate::sync::lock(&self.delivered).get(&c.id) {
            c.mark_delivered(at);
        }
    }

    /// POST /api/v1/device/challenges/{id}/response (SPEC R2.4, R2.5).
    pub fn answer(
        self: &Arc<Self>,
        caller: &Token,
        id: String,
        input: AnswerInput,
        now: Ms,
        done: impl FnOnce(Result<Status>) + Send + 'static,
    ) {
        let prepared = (|| {
            if input.token_id != caller.token_id {
                return Err(Error::bad_field("token_id", "must be the token that signs the request"));
            }
            let decision = match input.decision.as_str() {
                "approve" => Decision::Approve,
                "reject" => Decision::Reject,
                _ => return Err(Error::bad_field("decision", "must be approve or reject")),
            };
            if let Some(n) = &input.number {
                if n.len() != 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::bad_field("number", "must be two digits"));
                }
            }
            if input.report_fraud && decision != Decision::Reject {
                return Err(Error::bad_field("report_fraud", "goes with reject only"));
            }
            let c = self.store.read_latest()?.challenge(&id)?.ok_or_else(|| Error::NotFound("no such challenge".into()))?;
            if !c.is_pending() {
                return Err(Error::ChallengeClosed);
            }
            let key = self.device_key(&caller.public_key)?;
            let msg = sig::response_message(&id, &input.token_id, decision.as_str(), input.number.as_deref(), &c.display_digest);
            if !sig::verify(&key, &msg, &input.signature) {
                return Err(Error::BadSignature);
            }
            Ok(decision)
        })();
        let decision = match prepared {
            Ok(d) => d,
            Err(e) => return done(Err(e)),
        };
        let app = self.clone();
        let actor = format!("device:{}", caller.token_id);
        self.submit(
            Durability::Durable,
            move |tx, events| {
                let mut c = tx.challenge(&id)?.ok_or_else(|| Error::NotFound("no such challenge".into()))?;
                let answer = Answer {
                    token_id: &input.token_id,
                    decision,
                    number: input.number.as_deref(),
                    report_fraud: input.report_fraud,
                    signature: &input.signature,
                };
                app.apply_delivered(&mut c);
                let was_pending = c.is_pending();
                let result = c.answer(&answer, now);
                if was_pending && !c.is_pending() {
                    // Answered, or closed by time because the answer came late.
                    app.record_closed(tx, events, &c, &actor)?;
                }
                Ok((result, c))
            },
            {
                let app = self.clone();
                move |r: Result<(Result<Status>, Challenge)>| match r {
                    Ok((result, c)) => {
                        // The phone's decision (not a late answer closing it by time).
                        if result.is_ok() && !c.is_pending() && c.decided_at == Some(now) {
                            app.metrics.decision_latency.observe(std::time::Duration::from_millis(now.saturating_sub(c.created_at)));
                        }
                        done(result)
                    }
                    Err(e) => done(Err(e)),
                }
            },
        );
    }

    /// Closes every due challenge and expires unbound tokens past their TTL.
    /// Returns the closed challenges and the earliest remaining expiry.
    pub fn sweep(self: &Arc<Self>, now: Ms) -> Result<(Vec<Challenge>, Option<Ms>)> {
        let app = self.clone();
        let closed = self.call(Durability::Durable, move |tx, events| {
            let mut closed = Vec::new();
            for id in tx.due_challenges(now, 20_000)? {
                let Some(mut c) = tx.challenge(&id)? else { continue };
                app.apply_delivered(&mut c);
                if c.close_if_due(now).is_some() {
                    app.record_closed(tx, events, &c, "system")?;
                    closed.push(c);
                }
            }
            for id in tx.due_tokens(now, 1_000)? {
                let Some(mut t) = tx.token(&id)? else { continue };
                end_token(tx, events, &mut t, Ending::Expired, "provision_ttl: never registered", "system", now)?;
            }
            // Retention: closed challenges past challenge_retention go, a bounded
            // number per tick; their decisions stay in the audit log.
            let cutoff = now.saturating_sub(app.cfg().challenge_retention);
            let mut purged = 0u64;
            for id in tx.challenges_created_before(cutoff, 1_000)? {
                match tx.challenge(&id)? {
                    Some(c) if !c.is_pending() => {
                        tx.delete_challenge(&c)?;
                        purged += 1;
                    }
                    _ => {}
                }
            }
            if purged > 0 {
                tx.audit(NewEvent::new("challenges_purged", "system").detail(json!({"count": purged, "created_before": rfc3339(cutoff)})))?;
            }
            // Brute-force counts whose windows have passed.
            tx.purge_attempts(now.saturating_sub(RATE_WINDOW_MAX), 1_000)?;
            Ok(closed)
        })?;
        for c in &closed {
            self.metrics.sweeper_lag.observe(std::time::Duration::from_millis(now.saturating_sub(c.expires_at)));
        }
        let next = self.store.read_latest()?.earliest_expiry()?;
        Ok((closed, next))
    }
}
