//! TOTP (RFC 6238): HMAC-SHA1 over the 30 s step counter, dynamic truncation
//! (RFC 4226 §5.3), 6 digits. The HMAC is the `hmac`/`sha1` crates'; this
//! file only holds the counter and truncation rules, and the window search
//! that registration needs.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

pub const PERIOD_SECS: u64 = 30;
pub const DIGITS: u32 = 6;
pub const SECRET_LEN: usize = 20;

/// The time step that `unix_secs` falls in.
pub fn step_at(unix_secs: u64) -> u64 {
    unix_secs / PERIOD_SECS
}

/// The HOTP value for `counter`, with `digits` digits (zero-padded).
#[allow(clippy::expect_used, reason = "HMAC takes a key of any length, so new_from_slice cannot fail")]
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin =
        (u32::from(h[offset] & 0x7f) << 24) | (u32::from(h[offset + 1]) << 16) | (u32::from(h[offset + 2]) << 8) | u32::from(h[offset + 3]);
    let value = bin % 10u32.pow(digits);
    format!("{value:0width$}", width = digits as usize)
}

/// The 6-digit TOTP for time step `step`.
pub fn totp(secret: &[u8], step: u64) -> String {
    hotp(secret, step, DIGITS)
}

/// Finds the step `t` for which `otp1` is the code of `t` and `otp2` the code
/// of `t + 1`, with `t` within `window` steps of `now_step` and strictly after
/// `last_used_step` (no replay). Returns `t + 1`, the last step consumed.
pub fn match_consecutive(secret: &[u8], otp1: &str, otp2: &str, now_step: u64, window: u64, last_used_step: Option<u64>) -> Option<u64> {
    if otp1 == otp2 {
        return None;
    }
    let first = now_step.saturating_sub(window);
    let mut found = None;
    // Every candidate is computed and compared in constant time, so the time
    // taken does not tell which step matched.
    for t in first..=now_step + window {
        let ok1 = totp(secret, t).as_bytes().ct_eq(otp1.as_bytes());
        let ok2 = totp(secret, t + 1).as_bytes().ct_eq(otp2.as_bytes());
        let fresh = last_used_step.is_none_or(|last| t > last);
        if bool::from(ok1 & ok2) && fresh && found.is_none() {
            found = Some(t + 1);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    /// RFC 6238 Appendix B, SHA-1 column (8 digits).
    #[test]
    fn rfc6238_appendix_b_sha1() {
        let cases = [
            (59u64, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ];
        for (t, want) in cases {
            assert_eq!(hotp(RFC_SECRET, step_at(t), 8), want, "at T={t}");
        }
    }

    /// test-vectors.json: the same secret in base32, 6 digits.
    #[test]
    fn shared_vectors_six_digits() {
        let secret = data_encoding::BASE32_NOPAD.decode(b"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        for (t, want) in [(59u64, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")] {
            assert_eq!(totp(&secret, step_at(t)), want);
        }
    }

    #[test]
    fn consecutive_codes_within_window_match_once() {
        let now = step_at(1_795_582_018);
        let (a, b) = (totp(RFC_SECRET, now - 1), totp(RFC_SECRET, now));
        assert_eq!(match_consecutive(RFC_SECRET, &a, &b, now, 2, None), Some(now));
        // Replay: the step was used.
        assert_eq!(match_consecutive(RFC_SECRET, &a, &b, now, 2, Some(now)), None);
        // Out of order.
        assert_eq!(match_consecutive(RFC_SECRET, &b, &a, now, 2, None), None);
        // Same code twice.
        assert_eq!(match_consecutive(RFC_SECRET, &a, &a, now, 2, None), None);
        // Outside the window.
        let (old1, old2) = (totp(RFC_SECRET, now - 4), totp(RFC_SECRET, now - 3));
        assert_eq!(match_consecutive(RFC_SECRET, &old1, &old2, now, 2, None), None);
        // Edge of the window (t = now + 2, t + 1 = now + 3) is accepted.
        let (f1, f2) = (totp(RFC_SECRET, now + 2), totp(RFC_SECRET, now + 3));
        assert_eq!(match_consecutive(RFC_SECRET, &f1, &f2, now, 2, None), Some(now + 3));
    }
}
