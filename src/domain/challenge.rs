//! A push challenge and its state machine.
//!
//! A challenge is created `pending` and leaves that state exactly once:
//! answered (`approved`, `rejected`, `token_mismatch`), closed by time
//! (`expired` if the phone fetched it, `undelivered` if not), or `cancelled`.

use serde::{Deserialize, Serialize};

use super::Ms;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Login,
    Notice,
    Transaction,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Login, Kind::Notice, Kind::Transaction];
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::Notice => "notice",
            Kind::Transaction => "transaction",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Expired,
    Undelivered,
    TokenMismatch,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Approved,
        Status::Rejected,
        Status::Expired,
        Status::Undelivered,
        Status::TokenMismatch,
        Status::Cancelled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Undelivered => "undelivered",
            Status::TokenMismatch => "token_mismatch",
            Status::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

/// Why a challenge was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelCause {
    /// The RP cancelled it.
    Relying,
    /// A newer challenge for the same user replaced it (`max_pending_per_user`).
    Superseded,
    /// The account was stopped, deregistered or its token revoked.
    Account,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub id: String,
    /// Name of the RP key that created it; only that RP may see it.
    pub rp: String,
    pub kind: Kind,
    pub contract_no: String,
    pub user_id: String,
    pub token_id: String,
    pub display: Vec<(String, String)>,
    pub display_digest: String,
    pub number: Option<String>,
    pub number_choices: Option<Vec<String>>,
    pub status: Status,
    pub created_at: Ms,
    pub expires_at: Ms,
    pub delivered_at: Option<Ms>,
    pub decided_at: Option<Ms>,
    /// The token named by the answer (differs from `token_id` on a mismatch).
    pub answered_by: Option<String>,
    /// The device's signature over the answer: evidence of the decision.
    pub signature: Option<String>,
    pub report_fraud: bool,
    pub cancel_cause: Option<CancelCause>,
}

/// An answer from a device whose request signature and answer signature
/// have already been verified against the key of `token_id`.
#[derive(Debug, Clone)]
pub struct Answer<'a> {
    pub token_id: &'a str,
    pub decision: Decision,
    pub number: Option<&'a str>,
    pub report_fraud: bool,
    pub signature: &'a str,
}

impl Challenge {
    pub fn is_pending(&self) -> bool {
        self.status == Status::Pending
    }

    /// The status a pending challenge gets when its time runs out.
    fn timeout_status(&self) -> Status {
        if self.delivered_at.is_some() {
            Status::Expired
        } else {
            Status::Undelivered
        }
    }

    fn close(&mut self, status: Status, now: Ms) {
        debug_assert!(self.is_pending());
        self.status = status;
        self.decided_at = Some(now);
    }

    /// Marks the first fetch by the phone. Returns true if this call did it.
    pub fn mark_delivered(&mut self, now: Ms) -> bool {
        if self.is_pending() && self.delivered_at.is_none() {
            self.delivered_at = Some(now);
            true
        } else {
            false
        }
    }

    /// Closes a pending challenge whose time is up. Returns the new status.
    pub fn close_if_due(&mut self, now: Ms) -> Option<Status> {
        if self.is_pending() && now >= self.expires_at {
            let s = self.timeout_status();
            self.close(s, now);
            Some(s)
        } else {
            None
        }
    }

    pub fn cancel(&mut self, cause: CancelCause, now: Ms) -> Result<()> {
        if !self.is_pending() {
            return Err(Error::ChallengeClosed);
        }
        self.close(Status::Cancelled, now);
        self.cancel_cause = Some(cause);
        Ok(())
    }

    /// Applies a verified device answer (SPEC R2.5). A late answer closes the
    /// challenge by time and is refused as closed.
    pub fn answer(&mut self, a: &Answer<'_>, now: Ms) -> Result<Status> {
        if !self.is_pending() {
            return Err(Error::ChallengeClosed);
        }
        if self.close_if_due(now).is_some() {
            return Err(Error::ChallengeClosed);
        }
        let status = if a.token_id != self.token_id {
            Status::TokenMismatch
        } else {
            match a.decision {
                Decision::Reject => Status::Rejected,
                Decision::Approve => match &self.number {
                    Some(n) if a.number != Some(n.as_str()) => Status::Rejected,
                    _ => Status::Approved,
                },
            }
        };
        self.close(status, now);
        self.answered_by = Some(a.token_id.to_string());
        self.signature = Some(a.signature.to_string());
        self.report_fraud = a.report_fraud && status == Status::Rejected;
        Ok(status)
    }
}

/// The number challenge: the number the RP shows and the three choices the
/// phone offers (the right one among two distinct decoys, in random order).
pub fn number_challenge() -> (String, Vec<String>) {
    use rand::seq::SliceRandom;
    use rand::RngExt;
    let mut rng = rand::rng();
    let mut picks: Vec<u8> = Vec::with_capacity(3);
    while picks.len() < 3 {
        let n = rng.random_range(10..100u8);
        if !picks.contains(&n) {
            picks.push(n);
        }
    }
    let number = picks[0].to_string();
    picks.shuffle(&mut rng);
    (number, picks.iter().map(u8::to_string).collect())
}

/// A pending login challenge created at `created_at`, for unit tests.
#[cfg(test)]
pub(crate) fn test_pending(id: &str, created_at: Ms) -> Challenge {
    Challenge {
        id: id.into(),
        rp: "bank".into(),
        kind: Kind::Login,
        contract_no: "1".into(),
        user_id: "taro".into(),
        token_id: "ONEP12345674".into(),
        display: vec![],
        display_digest: String::new(),
        number: None,
        number_choices: None,
        status: Status::Pending,
        created_at,
        expires_at: created_at + 60_000,
        delivered_at: None,
        decided_at: None,
        answered_by: None,
        signature: None,
        report_fraud: false,
        cancel_cause: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Ms = 1_795_582_018_000;

    fn pending(number: Option<&str>) -> Challenge {
        Challenge { number: number.map(str::to_string), ..test_pending("ch_1", T0) }
    }

    fn answer(token: &str, decision: Decision, number: Option<&str>) -> Answer<'static> {
        Answer {
            token_id: Box::leak(token.to_string().into_boxed_str()),
            decision,
            number: number.map(|n| &*Box::leak(n.to_string().into_boxed_str())),
            report_fraud: false,
            signature: "sig",
        }
    }

    #[test]
    fn approve_and_reject() {
        let mut c = pending(None);
        assert_eq!(c.answer(&answer("ONEP12345674", Decision::Approve, None), T0 + 1).unwrap(), Status::Approved);
        assert_eq!(c.decided_at, Some(T0 + 1));
        assert_eq!(c.signature.as_deref(), Some("sig"));
        let mut c = pending(None);
        assert_eq!(c.answer(&answer("ONEP12345674", Decision::Reject, None), T0 + 1).unwrap(), Status::Rejected);
    }

    #[test]
    fn leaves_pending_exactly_once() {
        let mut c = pending(None);
        c.answer(&answer("ONEP12345674", Decision::Approve, None), T0 + 1).unwrap();
        assert_eq!(c.answer(&answer("ONEP12345674", Decision::Reject, None), T0 + 2), Err(Error::ChallengeClosed));
        assert_eq!(c.cancel(CancelCause::Relying, T0 + 2), Err(Error::ChallengeClosed));
        assert_eq!(c.close_if_due(T0 + 120_000), None);
        assert_eq!(c.status, Status::Approved);
    }

    #[test]
    fn token_mismatch_closes() {
        let mut c = pending(None);
        assert_eq!(c.answer(&answer("ONEP00000000", Decision::Approve, None), T0 + 1).unwrap(), Status::TokenMismatch);
        assert_eq!(c.answered_by.as_deref(), Some("ONEP00000000"));
    }

    #[test]
    fn number_challenge_wrong_pick_rejects() {
        let mut c = pending(Some("42"));
        assert_eq!(c.answer(&answer("ONEP12345674", Decision::Approve, Some("17")), T0).unwrap(), Status::Rejected);
        let mut c = pending(Some("42"));
        assert_eq!(c.answer(&answer("ONEP12345674", Decision::Approve, None), T0).unwrap(), Status::Rejected);
        let mut c = pending(Some("42"));
        assert_eq!(c.answer(&answer("ONEP12345674", Decision::Approve, Some("42")), T0).unwrap(), Status::Approved);
    }

    #[test]
    fn time_out_tells_delivered_from_undelivered() {
        let mut c = pending(None);
        assert_eq!(c.close_if_due(T0 + 59_999), None);
        assert_eq!(c.close_if_due(T0 + 60_000), Some(Status::Undelivered));
        let mut c = pending(None);
        assert!(c.mark_delivered(T0 + 5));
        assert!(!c.mark_delivered(T0 + 6));
        assert_eq!(c.delivered_at, Some(T0 + 5));
        assert_eq!(c.close_if_due(T0 + 60_000), Some(Status::Expired));
    }

    #[test]
    fn late_answer_is_refused_and_closes_by_time() {
        let mut c = pending(None);
        c.mark_delivered(T0);
        assert_eq!(c.answer(&answer("ONEP12345674", Decision::Approve, None), T0 + 60_000), Err(Error::ChallengeClosed));
        assert_eq!(c.status, Status::Expired);
    }

    #[test]
    fn cancel() {
        let mut c = pending(None);
        c.cancel(CancelCause::Superseded, T0 + 3).unwrap();
        assert_eq!(c.status, Status::Cancelled);
        assert_eq!(c.cancel_cause, Some(CancelCause::Superseded));
    }

    #[test]
    fn number_choices_contain_the_number_once() {
        for _ in 0..100 {
            let (n, choices) = number_challenge();
            assert_eq!(choices.len(), 3);
            assert_eq!(choices.iter().filter(|c| **c == n).count(), 1);
            assert!(choices.iter().all(|c| c.len() == 2));
        }
    }
}
