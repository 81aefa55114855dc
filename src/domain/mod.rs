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
    // jiff reads RFC 3339 whole: `Z` or an offset, with or without a fraction.
    let t: jiff::Timestamp = s.trim().parse().map_err(|_| {
        crate::error::Error::bad_field(field, "must be an RFC 3339 time like 2026-11-25T04:31:42Z or 2026-12-01T09:00:00+09:00")
    })?;
    let ms = t.as_millisecond();
    if ms < 0 {
        return Err(crate::error::Error::bad_field(field, "must be after 1970"));
    }
    Ok(ms as Ms)
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

    #[test]
    fn offsets_and_fractions_are_read_as_written() {
        let utc = super::parse_rfc3339("at", "2026-12-01T00:00:00Z").unwrap();
        for s in ["2026-12-01T09:00:00+09:00", "2026-12-01T09:00:00.000+09:00", "2026-11-30T19:00:00-05:00", "2026-12-01T00:00:00.000Z"] {
            assert_eq!(super::parse_rfc3339("at", s).unwrap(), utc, "{s}");
        }
        assert_eq!(super::parse_rfc3339("at", "2026-12-01T00:00:00.250Z").unwrap(), utc + 250);
        // No offset: which zone was meant cannot be known.
        assert!(super::parse_rfc3339("at", "2026-12-01T09:00:00").is_err());
        assert!(super::parse_rfc3339("at", "1969-12-31T23:59:59Z").is_err());
    }
}
