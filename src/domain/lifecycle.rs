//! Operator and customer actions on a user (SPEC R3), as one table-driven
//! state machine. `plan` decides, from the user's registration state and
//! flags, whether an action is allowed and what it changes; it changes
//! nothing itself. The service applies the plan and its cascades (token
//! revocation, pending challenges cancelled) in one transaction.

use serde::{Deserialize, Serialize};

use super::account::{Registration, User};
use super::Ms;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Suspend,
    Resume,
    Deregister,
    Stop,
    Unstop,
    Unlock,
}

impl Action {
    pub const ALL: [Action; 6] = [Action::Suspend, Action::Resume, Action::Deregister, Action::Stop, Action::Unstop, Action::Unlock];

    pub fn parse(s: &str) -> Result<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| Error::NotFound(format!("no action {s:?} (suspend, resume, deregister, stop, unstop, unlock)")))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::Deregister => "deregister",
            Action::Stop => "stop",
            Action::Unstop => "unstop",
            Action::Unlock => "unlock",
        }
    }
}

/// Which registration states an action starts from, and where it leaves the user.
#[derive(Debug, Clone, Copy)]
enum To {
    /// Registration becomes this.
    Reg(Registration),
    /// Registration stays as it is.
    Same,
}

/// What must hold of a flag for the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    NotStopped,
    Stopped,
    Locked,
}

struct Row {
    action: Action,
    from: &'static [Registration],
    needs: Needs,
    to: To,
    /// The phone's registration ends: token revoked, `usable_until` set.
    ends_registration: bool,
    /// Pending challenges are cancelled (push is off for this user now).
    cancels_pending: bool,
}

use Registration::{Active, Deregistered, Suspended, Unregistered};

/// SPEC R3. Stop is allowed from every state: a lost phone is reported
/// whatever the registration; it ends an active or suspended registration.
const TABLE: &[Row] = &[
    Row {
        action: Action::Suspend,
        from: &[Active],
        needs: Needs::NotStopped,
        to: To::Reg(Suspended),
        ends_registration: false,
        cancels_pending: true,
    },
    Row {
        action: Action::Resume,
        from: &[Suspended],
        needs: Needs::NotStopped,
        to: To::Reg(Active),
        ends_registration: false,
        cancels_pending: false,
    },
    Row {
        action: Action::Deregister,
        from: &[Active, Suspended],
        needs: Needs::Nothing,
        to: To::Reg(Deregistered),
        ends_registration: true,
        cancels_pending: true,
    },
    Row {
        action: Action::Stop,
        from: &[Active, Suspended],
        needs: Needs::NotStopped,
        to: To::Reg(Deregistered),
        ends_registration: true,
        cancels_pending: true,
    },
    Row {
        action: Action::Stop,
        from: &[Unregistered, Deregistered],
        needs: Needs::NotStopped,
        to: To::Same,
        ends_registration: false,
        cancels_pending: true,
    },
    Row {
        action: Action::Unstop,
        from: &[Unregistered, Active, Suspended, Deregistered],
        needs: Needs::Stopped,
        to: To::Same,
        ends_registration: false,
        cancels_pending: false,
    },
    Row {
        action: Action::Unlock,
        from: &[Unregistered, Active, Suspended, Deregistered],
        needs: Needs::Locked,
        to: To::Same,
        ends_registration: false,
        cancels_pending: false,
    },
];

/// What an allowed action does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub action: Action,
    pub before: Registration,
    pub after: Registration,
    /// Revoke the user's token (and record `usable_until`).
    pub revoke_token: bool,
    pub cancel_pending: bool,
}

/// Decides an action for a user; `invalid_transition` when the state does not allow it.
pub fn plan(user: &User, action: Action) -> Result<Plan> {
    let holds = |n: Needs| match n {
        Needs::Nothing => true,
        Needs::NotStopped => !user.stopped,
        Needs::Stopped => user.stopped,
        Needs::Locked => user.password_locked,
    };
    let row = TABLE.iter().find(|r| r.action == action && r.from.contains(&user.registration) && holds(r.needs)).ok_or_else(|| {
        Error::InvalidTransition(format!(
            "{} is not allowed for a user who is {}{}{}",
            action.as_str(),
            user.registration.as_str(),
            if user.stopped { ", stopped" } else { "" },
            if user.password_locked { ", password-locked" } else { "" },
        ))
    })?;
    Ok(Plan {
        action,
        before: user.registration,
        after: match row.to {
            To::Reg(r) => r,
            To::Same => user.registration,
        },
        revoke_token: row.ends_registration && user.token_id.is_some(),
        cancel_pending: row.cancels_pending,
    })
}

/// Applies a plan to the user record. `usable_until` is the grace date of a
/// suspension, deregistration or unstop (the operator's, or now + grace_period).
pub fn apply(user: &mut User, p: &Plan, usable_until: Ms) {
    user.registration = p.after;
    match p.action {
        Action::Suspend | Action::Deregister => user.usable_until = Some(usable_until),
        Action::Resume => user.usable_until = None,
        Action::Stop => {
            user.stopped = true;
            if p.after == Registration::Deregistered && p.before != Registration::Deregistered {
                user.usable_until = Some(usable_until);
            }
        }
        Action::Unstop => {
            user.stopped = false;
            // A stop ended the registration without grace; unstop gives the
            // grace a deregistration gives (API.md: usable_until honoured).
            if matches!(user.registration, Registration::Deregistered | Registration::Suspended) {
                user.usable_until = Some(usable_until);
            }
        }
        Action::Unlock => {
            user.password_locked = false;
            user.password_failures = 0;
        }
    }
    if p.revoke_token {
        user.token_id = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::account::tests::user;

    /// Every (state, stopped, locked) × action: allowed or invalid_transition,
    /// and where an allowed one leaves the user.
    #[test]
    fn every_state_and_action() {
        use Action::*;
        /// (registration, stopped, locked) → the actions allowed and the registration after each.
        type Case = ((Registration, bool, bool), &'static [(Action, Registration)]);
        let expected: &[Case] = &[
            ((Unregistered, false, false), &[(Stop, Unregistered)]),
            ((Unregistered, false, true), &[(Stop, Unregistered), (Unlock, Unregistered)]),
            ((Unregistered, true, false), &[(Unstop, Unregistered)]),
            ((Unregistered, true, true), &[(Unstop, Unregistered), (Unlock, Unregistered)]),
            ((Active, false, false), &[(Suspend, Suspended), (Deregister, Deregistered), (Stop, Deregistered)]),
            ((Active, false, true), &[(Suspend, Suspended), (Deregister, Deregistered), (Stop, Deregistered), (Unlock, Active)]),
            ((Active, true, false), &[(Deregister, Deregistered), (Unstop, Active)]),
            ((Active, true, true), &[(Deregister, Deregistered), (Unstop, Active), (Unlock, Active)]),
            ((Suspended, false, false), &[(Resume, Active), (Deregister, Deregistered), (Stop, Deregistered)]),
            ((Suspended, false, true), &[(Resume, Active), (Deregister, Deregistered), (Stop, Deregistered), (Unlock, Suspended)]),
            ((Suspended, true, false), &[(Deregister, Deregistered), (Unstop, Suspended)]),
            ((Suspended, true, true), &[(Deregister, Deregistered), (Unstop, Suspended), (Unlock, Suspended)]),
            ((Deregistered, false, false), &[(Stop, Deregistered)]),
            ((Deregistered, false, true), &[(Stop, Deregistered), (Unlock, Deregistered)]),
            ((Deregistered, true, false), &[(Unstop, Deregistered)]),
            ((Deregistered, true, true), &[(Unstop, Deregistered), (Unlock, Deregistered)]),
        ];
        for ((reg, stopped, locked), allowed) in expected {
            for action in Action::ALL {
                let mut u = user(*reg);
                u.stopped = *stopped;
                u.password_locked = *locked;
                u.token_id = matches!(reg, Active | Suspended).then(|| "ONEP12345674".to_string());
                let got = plan(&u, action);
                match allowed.iter().find(|(a, _)| *a == action) {
                    Some((_, after)) => {
                        let p = got.unwrap_or_else(|e| panic!("{reg:?} stopped={stopped} locked={locked} {action:?}: {e}"));
                        assert_eq!(p.after, *after, "{reg:?} {action:?}");
                        assert_eq!(p.revoke_token, matches!(action, Deregister | Stop) && matches!(reg, Active | Suspended));
                    }
                    None => assert!(
                        matches!(got, Err(Error::InvalidTransition(_))),
                        "{reg:?} stopped={stopped} locked={locked} {action:?} should be refused, got {got:?}"
                    ),
                }
            }
        }
    }

    #[test]
    fn apply_sets_grace_flags_and_token() {
        let now = 1_795_582_018_000;
        let mut u = user(Active);
        u.token_id = Some("ONEP12345674".into());
        let p = plan(&u, Action::Suspend).unwrap();
        apply(&mut u, &p, now + 5);
        assert_eq!((u.registration, u.usable_until, u.token_id.is_some()), (Suspended, Some(now + 5), true));
        let p = plan(&u, Action::Resume).unwrap();
        apply(&mut u, &p, now);
        assert_eq!((u.registration, u.usable_until), (Active, None));
        let p = plan(&u, Action::Stop).unwrap();
        apply(&mut u, &p, now + 9);
        assert!(u.stopped && u.token_id.is_none());
        assert_eq!(u.registration, Deregistered);
        let p = plan(&u, Action::Unstop).unwrap();
        apply(&mut u, &p, now);
        assert!(!u.stopped);
        u.password_locked = true;
        u.password_failures = 5;
        let p = plan(&u, Action::Unlock).unwrap();
        apply(&mut u, &p, now);
        assert_eq!((u.password_locked, u.password_failures), (false, 0));
    }
}
