//! Management commands (`rp-key`, `operator`, `audit`), one implementation
//! for both ways of running them: in-process on the store when no server is
//! running, or through the running server's control socket
//! (`<data_dir>/control.sock`, mode 0600), since redb admits one process.
//!
//! The protocol is one JSON `Command` line in, one JSON `Output` line back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::ids::Password;
use crate::domain::{now_ms, rfc3339};
use crate::service::App;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    RpKeyAdd {
        name: String,
        editions: Vec<String>,
    },
    RpKeyList,
    RpKeyRevoke {
        name: String,
    },
    OperatorAdd {
        name: String,
        password: String,
    },
    OperatorPasswd {
        name: String,
        password: String,
    },
    OperatorList,
    OperatorDisable {
        name: String,
    },
    OperatorEnable {
        name: String,
    },
    OperatorRemove {
        name: String,
    },
    AuditVerify,
    AuditExport,
    /// Entries after `after` (at most 1,000), for `audit export --follow`.
    AuditAfter {
        after: u64,
    },
    Import {
        csv: String,
    },
    Backup {
        dest: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn ok(stdout: String) -> Output {
        Output { code: 0, stdout, stderr: String::new() }
    }
    fn fail(code: i32, msg: impl std::fmt::Display) -> Output {
        Output { code, stdout: String::new(), stderr: format!("onepush: {msg}\n") }
    }
}

/// Runs a command against the app. Exit codes: 0 done, 1 failure, 2 usage.
pub fn execute(app: &App, cmd: Command) -> Output {
    let now = now_ms();
    let usage_or_fail = |e: crate::error::Error| {
        let code = if matches!(e, crate::error::Error::BadRequest(_)) { 2 } else { 1 };
        Output::fail(code, e)
    };
    match cmd {
        Command::RpKeyAdd { name, editions } => match app.add_rp_key("cli", &name, &editions, now) {
            Ok(key) => Output::ok(format!("{key}\n")),
            Err(e) => usage_or_fail(e),
        },
        Command::RpKeyList => match app.rp_keys() {
            Ok(keys) => Output::ok(
                keys.iter()
                    .map(|k| {
                        let state = k.revoked_at.map_or("live".to_string(), |t| format!("revoked {}", rfc3339(t)));
                        let scope =
                            if k.editions.is_empty() { "every edition".to_string() } else { format!("editions {}", k.editions.join(",")) };
                        format!("{}\tcreated {}\t{state}\t{scope}\n", k.name, rfc3339(k.created_at))
                    })
                    .collect(),
            ),
            Err(e) => Output::fail(1, e),
        },
        Command::RpKeyRevoke { name } => match app.revoke_rp_key("cli", &name, now) {
            Ok(()) => Output::ok(format!("revoked {name}\n")),
            Err(e) => usage_or_fail(e),
        },
        Command::OperatorAdd { name, password } | Command::OperatorPasswd { name, password } if password.is_empty() => {
            let _ = name;
            Output::fail(2, "password: empty; give it on standard input")
        }
        Command::OperatorAdd { name, password } => match app.set_operator("cli", &name, &Password::new(password), true, now) {
            Ok(()) => Output::ok(format!("operator {name} added\n")),
            Err(e) => usage_or_fail(e),
        },
        Command::OperatorPasswd { name, password } => match app.set_operator("cli", &name, &Password::new(password), false, now) {
            Ok(()) => Output::ok(format!("password of {name} changed; its sessions ended\n")),
            Err(e) => usage_or_fail(e),
        },
        Command::OperatorList => match app.operators() {
            Ok(ops) => Output::ok(
                ops.iter()
                    .map(|o| {
                        let state = o.disabled_at.map_or("enabled".to_string(), |t| format!("disabled {}", rfc3339(t)));
                        let last = o.last_sign_in_at.map_or("no sign-in recorded".to_string(), |t| format!("last sign-in {}", rfc3339(t)));
                        format!("{}\tcreated {}\t{state}\t{last}\n", o.name, rfc3339(o.created_at))
                    })
                    .collect(),
            ),
            Err(e) => Output::fail(1, e),
        },
        Command::OperatorDisable { name } => match app.disable_operator("cli", &name, now) {
            Ok(()) => Output::ok(format!("operator {name} disabled; its sessions ended\n")),
            Err(e) => usage_or_fail(e),
        },
        Command::OperatorEnable { name } => match app.enable_operator("cli", &name, now) {
            Ok(()) => Output::ok(format!("operator {name} enabled\n")),
            Err(e) => usage_or_fail(e),
        },
        Command::OperatorRemove { name } => match app.remove_operator("cli", &name, now) {
            Ok(()) => Output::ok(format!("operator {name} removed; its sessions ended\n")),
            Err(e) => usage_or_fail(e),
        },
        Command::AuditVerify => verified(app.verify_audit()),
        Command::Import { csv } => match app.import_csv("cli", &csv, now) {
            Ok(Ok(n)) => Output::ok(format!("imported {n} users\n")),
            Ok(Err(errors)) => Output {
                code: 1,
                stdout: String::new(),
                stderr: errors.iter().map(|(line, m)| format!("line {line}: {m}\n")).collect::<String>()
                    + &format!("onepush: {} bad lines; nothing was imported\n", errors.len()),
            },
            Err(e) => Output::fail(1, e),
        },
        Command::Backup { dest } => match app.backup_to(std::path::Path::new(&dest)) {
            Ok(n) => Output::ok(format!(
                "backup written to {dest} ({n} records)\n\
                 the OTP secrets in it open only with the key file {key}, its audit log verifies only with\n\
                 the key file {audit}, and its Web Push subscriptions work only with {vapid}; none is in the backup:\n\
                 keep a copy of the three apart from the backups\n\
                 restore with: onepush restore {dest} (server stopped; the key files in place)\n",
                key = app.cfg().secret_key_file.display(),
                audit = app.cfg().audit_key_file.display(),
                vapid = app.cfg().vapid_key_file.display()
            )),
            Err(e) => Output::fail(
                1,
                match e {
                    crate::error::Error::Internal(d) => d,
                    other => other.to_string(),
                },
            ),
        },
        Command::AuditExport => match app.audit_export() {
            Ok(out) => Output::ok(out),
            Err(e) => Output::fail(1, e),
        },
        Command::AuditAfter { after } => match app.audit_lines_after(after, 1000) {
            Ok(out) => Output::ok(out),
            Err(e) => Output::fail(1, e),
        },
    }
}

fn verified(r: crate::error::Result<std::result::Result<u64, crate::audit::Broken>>) -> Output {
    match r {
        Ok(Ok(n)) => Output::ok(format!("audit log intact: {n} entries\n")),
        Ok(Err(b)) => Output::fail(1, format!("audit log broken at entry {}: {}", b.seq, b.why)),
        Err(e) => Output::fail(1, e),
    }
}

/// The audit commands when no server runs: read-only, with the key file as
/// it is (never made here), so that checking the log writes nothing to it.
/// `None` for the other commands.
pub fn execute_read_only(cfg: &crate::config::Config, cmd: &Command) -> Option<Output> {
    let store = || crate::store::Store::open_configured_read_only(cfg);
    match cmd {
        Command::AuditVerify => Some(match crate::audit::AuditKey::load(&cfg.audit_key_file) {
            Ok(key) => verified(store().and_then(|s| s.verify_audit(Some(&key.public())))),
            Err(e) => Output::fail(1, e),
        }),
        Command::AuditExport => Some(match store().and_then(|s| s.audit_export()) {
            Ok(out) => Output::ok(out),
            Err(e) => Output::fail(1, e),
        }),
        _ => None,
    }
}

/// Serves the control socket of a running server.
pub fn listen(app: Arc<App>, path: &Path) -> std::io::Result<std::thread::JoinHandle<()>> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new().name("control".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let app = app.clone();
            // One thread per command: commands are rare and some wait for a commit.
            let _ = std::thread::Builder::new().name("control-cmd".into()).spawn(move || serve_one(&app, conn));
        }
    })
}

fn serve_one(app: &App, conn: UnixStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let mut reader = BufReader::new(&conn);
    let out = match reader.read_line(&mut line) {
        Ok(_) => match serde_json::from_str::<Command>(&line) {
            Ok(cmd) => execute(app, cmd),
            Err(e) => Output::fail(2, format!("bad control request: {e}")),
        },
        Err(e) => Output::fail(1, e),
    };
    let mut w = &conn;
    let _ = w.write_all(serde_json::to_string(&out).unwrap_or_default().as_bytes());
    let _ = w.write_all(b"\n");
}

/// Sends a command to a running server. `None` if no server answers there.
pub fn send(path: &Path, cmd: &Command) -> Option<Output> {
    let conn = UnixStream::connect(path).ok()?;
    let mut w = &conn;
    w.write_all(serde_json::to_string(cmd).ok()?.as_bytes()).ok()?;
    w.write_all(b"\n").ok()?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}
