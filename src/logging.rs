//! The log on stderr. Under systemd with stderr connected to the journal
//! (`$JOURNAL_STREAM` names stderr's device and inode), each line starts with
//! its sd-daemon priority (`<3>` error … `<7>` debug) so that journald stores
//! WARN and ERROR at their level, and carries no timestamp (the journal has
//! one). Anywhere else: a timestamp and the level in words.

use std::io::Write;

/// `<N>` for a level, as sd-daemon(3) defines them.
pub fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Whether `journal_stream` ("DEV:INODE") is the file `stderr` is.
pub fn is_journal(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let (Some(v), Some((dev, ino))) = (journal_stream, stderr) else { return false };
    let mut parts = v.trim().split(':').map(|p| p.parse::<u64>());
    matches!((parts.next(), parts.next(), parts.next()), (Some(Ok(d)), Some(Ok(i)), None) if d == dev && i == ino)
}

fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsFd;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Starts env_logger (`RUST_LOG`, default `info`) in the format for where
/// stderr goes.
pub fn init() {
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    let journal = std::env::var("JOURNAL_STREAM").ok();
    if is_journal(journal.as_deref(), stderr_identity()) {
        b.format(|buf, r| writeln!(buf, "<{}>{}: {}", priority(r.level()), r.target(), r.args()));
    } else {
        b.format_timestamp_millis();
    }
    b.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_is_recognised_by_device_and_inode_only() {
        assert!(is_journal(Some("8:1234"), Some((8, 1234))));
        assert!(!is_journal(Some("8:1234"), Some((8, 1235))), "stderr redirected elsewhere");
        assert!(!is_journal(None, Some((8, 1234))));
        assert!(!is_journal(Some("8"), Some((8, 1234))));
        assert!(!is_journal(Some("8:1234:5"), Some((8, 1234))));
        assert_eq!([log::Level::Error, log::Level::Warn, log::Level::Info, log::Level::Debug].map(priority), [3, 4, 6, 7]);
    }
}
