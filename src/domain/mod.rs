//! Pure domain rules. Nothing here reads the clock, touches the store or
//! knows about HTTP: every function that depends on time takes `now`
//! (milliseconds since the Unix epoch).

pub mod account;
pub mod challenge;
pub mod ids;
pub mod lifecycle;
pub mod sig;
pub mod totp;

/// Milliseconds since the Unix epoch.
pub type Ms = u64;

pub const SECOND: Ms = 1000;

/// `2026-11-25T04:31:42Z`
pub fn rfc3339(ms: Ms) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// Parses an RFC 3339 UTC time into milliseconds.
pub fn parse_rfc3339(field: &str, s: &str) -> crate::error::Result<Ms> {
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|_| crate::error::Error::bad_field(field, "must be an RFC 3339 time like 2026-11-25T04:31:42Z"))?;
    let d = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| crate::error::Error::bad_field(field, "must be after 1970"))?;
    Ok(d.as_millis() as Ms)
}

/// The wall clock, read only at the edges (handlers, sweeper).
pub fn now_ms() -> Ms {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Ms).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_round_trip() {
        let ms = super::parse_rfc3339("at", "2026-11-25T04:31:42Z").unwrap();
        assert_eq!(super::rfc3339(ms), "2026-11-25T04:31:42Z");
        assert!(super::parse_rfc3339("at", "yesterday").unwrap_err().to_string().starts_with("at:"));
    }
}
