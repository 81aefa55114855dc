//! The demo bank's seed (`serve --demo`).

use super::*;

/// A demo user: contract, edition, user ID, role, password, transaction password.
pub type DemoUser = (&'static str, &'static str, &'static str, &'static str, &'static str, Option<&'static str>);

/// What `serve --demo` sets up, to print.
pub struct DemoSeed {
    pub users: Vec<DemoUser>,
}

pub const DEMO_USERS: &[DemoUser] = &[
    ("1000000001", "jweb", "taro", "user", "demo-pass-1", Some("demo-tx-1234")),
    ("1000000001", "jweb", "hanako", "service_admin", "demo-pass-2", Some("demo-tx-5678")),
    ("2000000002", "fx", "jiro", "admin", "demo-pass-3", None),
];

impl App {
    /// `serve --demo`: a JWEBOFFICE and an FX contract with users. Idempotent.
    pub fn seed_demo(&self, now: Ms) -> Result<DemoSeed> {
        let mut mine = self.store.read()?.demo_contracts()?;
        for (no, name, edition) in [("1000000001", "デモ商事株式会社", "jweb"), ("2000000002", "デモ外為株式会社", "fx")] {
            if self.store.read()?.contract(no)?.is_none() {
                self.create_contract(
                    "demo",
                    crate::service::NewContract { contract_no: no.into(), name: name.into(), edition: edition.into() },
                    now,
                )?;
                mine.push(no.to_string());
                let list = mine.clone();
                self.call(Durability::Durable, move |tx, _| tx.put_demo_contracts(&list))?;
            }
        }
        for (no, _, uid, role, pw, tx) in DEMO_USERS {
            // A bank's own contract with the same number is never touched.
            if !mine.iter().any(|m| m == no) {
                continue;
            }
            if self.store.read()?.user(no, uid)?.is_none() {
                let input = NewUser {
                    user_id: uid.to_string(),
                    name: uid.to_string(),
                    role: role.to_string(),
                    password: Password::new(pw.to_string()),
                    transaction_password: tx.map(|t| Password::new(t.to_string())),
                };
                self.create_user("demo", &ContractNo::parse("contract_no", no)?, input, now)?;
            }
        }
        Ok(DemoSeed { users: DEMO_USERS.iter().filter(|u| mine.iter().any(|m| m == u.0)).copied().collect() })
    }

    /// The contracts `--demo` created (their users' passwords are published).
    pub fn demo_contracts(&self) -> Result<Vec<String>> {
        self.store.read()?.demo_contracts()
    }
}
