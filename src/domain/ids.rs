//! Identifiers and secrets as validated newtypes.
//!
//! Parsing happens once, at the edge; after that an id is known to be well
//! formed. Secrets print as `***` and are wiped on drop.

use std::fmt;

use rand::RngExt;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Token ID (credential ID): prefix + 7 random digits + 1 Luhn digit over them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TokenId(String);

impl TokenId {
    /// Parses a token ID as people type it: spaces and hyphens are ignored,
    /// lower case is accepted. The prefix must be `prefix`, the check digit right.
    pub fn parse(input: &str, prefix: &str) -> Result<TokenId> {
        let cleaned: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).map(|c| c.to_ascii_uppercase()).collect();
        let bad = |why: &str| Error::bad_field("token_id", why);
        if cleaned.len() != prefix.len() + 8 || !cleaned.is_ascii() {
            return Err(bad(&format!("must be {} letters and 8 digits", prefix.len())));
        }
        let (head, digits) = cleaned.split_at(prefix.len());
        if head != prefix {
            return Err(bad(&format!("must start with {prefix}")));
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("must end with 8 digits"));
        }
        let (payload, check) = digits.split_at(7);
        if luhn_digit(payload) != check.as_bytes()[0] - b'0' {
            return Err(bad("check digit is wrong; please re-check the token ID"));
        }
        Ok(TokenId(cleaned))
    }

    pub fn generate(prefix: &str) -> TokenId {
        let mut rng = rand::rng();
        let payload: String = (0..7).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
        let check = luhn_digit(&payload);
        TokenId(format!("{prefix}{payload}{check}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.0)
    }
}

/// The Luhn check digit for a string of ASCII digits.
pub fn luhn_digit(payload: &str) -> u8 {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// `ch_` + 32 hex digits (128 random bits).
pub fn new_challenge_id() -> String {
    format!("ch_{}", random_hex(16))
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    data_encoding::HEXLOWER.encode(&buf)
}

pub fn random_b64(bytes: usize) -> String {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    rand::fill(&mut buf[..]);
    data_encoding::BASE64URL_NOPAD.encode(&buf)
}

/// Contract number: 1–20 of `[0-9A-Za-z]`.
pub fn check_contract_no(field: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::bad_field(field, "must be 1-20 letters or digits"));
    }
    Ok(())
}

/// User ID: 1–32 of `[0-9A-Za-z._-]`.
pub fn check_user_id(field: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(Error::bad_field(field, "must be 1-32 of letters, digits, '.', '_' or '-'"));
    }
    Ok(())
}

/// An identifier checked once, where it enters (a path segment or a JSON
/// field), and passed on typed so that no use case checks it again.
macro_rules! checked_id {
    ($(#[$doc:meta])* $name:ident, $check:expr, $missing:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks a value the client gives; the error names `field` (400).
            pub fn parse(field: &str, s: &str) -> Result<$name> {
                $check(field, s)?;
                Ok($name(s.to_string()))
            }

            /// A path segment that names a record: one that cannot be well
            /// formed names nothing, so it is 404 as an unknown one is.
            pub fn lookup(s: &str) -> Result<$name> {
                $name::parse("id", s).map_err(|_| Error::NotFound($missing.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

checked_id!(
    /// A contract number: 1–20 letters or digits.
    ContractNo,
    check_contract_no,
    "no such contract"
);
checked_id!(
    /// A user ID: 1–32 of `[0-9A-Za-z._-]`.
    UserId,
    check_user_id,
    "no such user"
);
checked_id!(
    /// A challenge ID as onepush makes them: `ch_` and 32 lowercase hex digits.
    ChallengeId,
    check_challenge_id,
    "no such challenge"
);

/// Challenge ID: `ch_` + 32 lowercase hex digits (`new_challenge_id`).
pub fn check_challenge_id(field: &str, s: &str) -> Result<()> {
    match s.strip_prefix("ch_") {
        Some(hex) if hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => Ok(()),
        _ => Err(Error::bad_field(field, "must be ch_ and 32 lowercase hex digits")),
    }
}

/// Free text: `min..=max` characters, no control characters.
pub fn check_text(field: &str, s: &str, min: usize, max: usize) -> Result<()> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(Error::bad_field(field, format!("must be {min}-{max} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::bad_field(field, "must not contain control characters"));
    }
    Ok(())
}

/// A password as received: 8–128 characters, no control characters.
/// `Debug` never shows it; the memory is wiped on drop.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl<'de> serde::Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(Password::new)
    }
}

impl Password {
    pub fn new(s: String) -> Password {
        Password(Zeroizing::new(s))
    }
    pub fn check(&self, field: &str) -> Result<()> {
        check_text(field, &self.0, 8, 128)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_matches_the_test_vectors() {
        for id in ["ONEP12345674", "ONEP00000000", "ONEP98765431", "ONEP55555551"] {
            assert!(TokenId::parse(id, "ONEP").is_ok(), "{id} should be valid");
        }
        for id in ["ONEP12345675", "ONEP00000001", "ONEP98765432", "ONEP55555552", "ONEP1234567", "ONE123456784", "onep12345674x"] {
            assert!(TokenId::parse(id, "ONEP").is_err(), "{id} should be invalid");
        }
    }

    #[test]
    fn token_id_parsing_is_tolerant() {
        assert_eq!(TokenId::parse("onep 1234-5674", "ONEP").unwrap().as_str(), "ONEP12345674");
        assert_eq!(TokenId::parse(" ONEP-1234-5674 ", "ONEP").unwrap().as_str(), "ONEP12345674");
        let e = TokenId::parse("ONEP12345675", "ONEP").unwrap_err();
        assert!(e.to_string().starts_with("token_id:"), "{e}");
    }

    #[test]
    fn generated_token_ids_parse() {
        for _ in 0..200 {
            let id = TokenId::generate("ONEP");
            assert_eq!(TokenId::parse(id.as_str(), "ONEP").unwrap(), id);
        }
        let id = TokenId::generate("BANK");
        assert!(TokenId::parse(id.as_str(), "BANK").is_ok());
        assert!(TokenId::parse(id.as_str(), "ONEP").is_err());
    }

    #[test]
    fn field_checks_name_the_field() {
        assert!(check_contract_no("contract_no", "1000000001").is_ok());
        assert!(check_contract_no("contract_no", "10-01").unwrap_err().to_string().contains("contract_no"));
        assert!(check_user_id("user_id", "taro.y_1-a").is_ok());
        assert!(check_user_id("user_id", "").is_err());
        assert!(check_user_id("user_id", &"a".repeat(33)).is_err());
        let id = new_challenge_id();
        assert_eq!(ChallengeId::lookup(&id).unwrap().as_str(), id);
        assert_eq!(ChallengeId::lookup("ch_1").unwrap_err(), Error::NotFound("no such challenge".into()));
        assert_eq!(ContractNo::lookup("10-01").unwrap_err(), Error::NotFound("no such contract".into()));
        assert!(ContractNo::parse("contract_no", "10-01").unwrap_err().to_string().contains("contract_no"));
        assert_eq!(&*UserId::parse("user_id", "taro").unwrap(), "taro");
        assert!(check_text("label", "ok", 1, 40).is_ok());
        assert!(check_text("label", "a\u{7}b", 1, 40).is_err());
        assert!(check_text("label", "\n", 1, 40).is_err());
        assert!(format!("{:?}", Password::new("secret123".into())).contains("***"));
    }
}
