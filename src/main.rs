//! `onepush`: arguments → config → store, service, HTTP, sweeper; exit codes
//! 0 done, 1 failure, 2 usage or config error.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};

use onepush::config::{Config, Found, Overrides};
use onepush::control::{self, Command};
use onepush::service::App;
use onepush::store::Store;
use onepush::{http, sweeper};

#[derive(Parser)]
#[command(
    name = "onepush",
    version,
    about = "Push-authentication appliance",
    long_about = "onepush confirms every login and approval of an internet-banking service with one Approve on the user's registered phone (Ed25519). One binary: an embedded store, the HTTP API and pages, a sweeper and the push senders.",
    after_help = "The config file is --config, else $ONEPUSH_CONFIG, else /etc/onepush/onepush.toml when it exists, else the built-in defaults (data in ./onepush-data, listening on 127.0.0.1:8080); every command says on stderr which it used. Management commands talk to a running server through its control socket, or work on the data directory when none runs. Exit status: 0 done, 1 failure, 2 usage or config error."
)]
struct Cli {
    /// TOML config file (else $ONEPUSH_CONFIG, else /etc/onepush/onepush.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the appliance.
    Serve {
        /// Address to listen on (overrides `listen`).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Seed demo contracts and users and serve the demo bank at /demo.
        #[arg(long)]
        demo: bool,
    },
    /// RP API keys.
    #[command(subcommand)]
    RpKey(RpKeyCmd),
    /// Operator accounts.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The config file.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Create users from a CSV file (all or nothing), as the admin import.
    Import { file: PathBuf },
    /// Write a consistent copy of the store to DEST (works while serving).
    Backup { dest: PathBuf },
    /// Replace the store with the backup SRC (the server must be stopped).
    Restore { src: PathBuf },
    /// Copy the embedded store into an empty PostgreSQL database and verify
    /// the copy (record counts, the audit chain); the server must be stopped.
    Migrate {
        /// The PostgreSQL database, as `store` takes it (postgres://user@host/db).
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Print the man page (roff) on standard output.
    #[command(hide = true)]
    Man,
}

#[derive(Subcommand)]
enum RpKeyCmd {
    /// Create a key; it is printed once, alone on its line.
    Add {
        name: String,
        /// Scope the key to an edition's contracts (repeatable); without it
        /// the key covers every edition.
        #[arg(long = "edition", value_name = "EDITION")]
        editions: Vec<String>,
    },
    /// Every key with its state and the editions it covers.
    List,
    Revoke {
        name: String,
    },
}

#[derive(Subcommand)]
enum OperatorCmd {
    /// Create an operator; the password is read from standard input.
    Add {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Change an operator's password (read from standard input); ends its sessions.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Every operator: created, enabled or disabled (since when), last sign-in.
    List,
    /// Refuse the operator's sign-in and end its sessions at once.
    Disable { name: String },
    /// Let a disabled operator sign in again.
    Enable { name: String },
    /// Delete the operator and end its sessions; the audit log keeps its name.
    /// Disable and remove refuse the last enabled operator.
    Remove { name: String },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain and its signed head: exit 0 intact, 1 broken
    /// (naming the first bad entry, or the entries cut off).
    Verify {
        /// Check an export instead of the store, with only this public key
        /// (as `audit public-key` prints it).
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
        /// The export to check with --public-key (default: standard input).
        #[arg(requires = "public_key")]
        export: Option<PathBuf>,
    },
    /// Print every event as a JSON line, then the signed head.
    Export {
        /// Keep running and print each new event as it is written (for a
        /// SIEM); needs the running server. No signed-head line.
        #[arg(long)]
        follow: bool,
        /// With --follow: start after this entry (default: from the first).
        #[arg(long, value_name = "SEQ", requires = "follow", default_value_t = 0)]
        after: u64,
    },
    /// Print the public key that checks the signed heads.
    PublicKey,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate the config file, naming every bad key with its line.
    Check,
}

/// How to run onepush again, for the hints it prints: `cargo run` users have
/// no `onepush` on their PATH.
fn invocation() -> String {
    let exe = std::env::args().next().unwrap_or_default();
    let built = ["target/release/", "target/debug/"].iter().find(|d| exe.contains(*d));
    match built {
        Some(d) if d.contains("release") => "cargo run --release --".into(),
        Some(_) => "cargo run --".into(),
        None => "onepush".into(),
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    onepush::logging::init();
    let cli = Cli::parse();
    let listen = match &cli.command {
        Cmd::Serve { listen, .. } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides { listen, data_dir: cli.data.clone() };
    if let Cmd::Man = cli.command {
        return man();
    }
    let found =
        Found::discover(cli.config.as_deref(), std::env::var_os("ONEPUSH_CONFIG"), std::path::Path::new(onepush::config::SYSTEM_CONFIG));
    if let Cmd::Serve { .. } = cli.command {
        // Through the log: under journald it carries its priority like every other line.
        log::info!("{found}");
    } else {
        eprintln!("onepush: {found}");
    }
    if let (Cmd::Config(ConfigCmd::Check), Some(path)) = (&cli.command, found.path()) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("onepush: config: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        let errors = onepush::config::check_text(&text);
        if !errors.is_empty() {
            for e in &errors {
                eprintln!("onepush: config: {}: {e}", path.display());
            }
            return ExitCode::from(2);
        }
    }
    let cfg = match Config::load(found.path(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("onepush: config: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Cmd::Serve { demo, .. } => serve(cfg, demo, found.path().map(|p| p.to_path_buf()), overrides),
        Cmd::Man => man(),
        Cmd::Config(ConfigCmd::Check) => {
            println!("config ok: listen {}, data {}", cfg.listen, cfg.data_dir.display());
            if cfg.push_contact == onepush::config::DEFAULT_PUSH_CONTACT {
                eprintln!("onepush: warning: push_contact is the default {}; set it to the bank's contact (push services may refuse Web Push from an unknown one)", cfg.push_contact);
            }
            ExitCode::SUCCESS
        }
        Cmd::RpKey(c) => manage(
            &cfg,
            match c {
                RpKeyCmd::Add { name, editions } => Command::RpKeyAdd { name, editions },
                RpKeyCmd::List => Command::RpKeyList,
                RpKeyCmd::Revoke { name } => Command::RpKeyRevoke { name },
            },
        ),
        Cmd::Operator(c) => {
            let (name, create) = match c {
                OperatorCmd::Add { name, .. } => (name, true),
                OperatorCmd::Passwd { name, .. } => (name, false),
                OperatorCmd::List => return manage(&cfg, Command::OperatorList),
                OperatorCmd::Disable { name } => return manage(&cfg, Command::OperatorDisable { name }),
                OperatorCmd::Enable { name } => return manage(&cfg, Command::OperatorEnable { name }),
                OperatorCmd::Remove { name } => return manage(&cfg, Command::OperatorRemove { name }),
            };
            let mut password = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut password) {
                eprintln!("onepush: reading the password: {e}");
                return ExitCode::from(1);
            }
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            manage(&cfg, if create { Command::OperatorAdd { name, password } } else { Command::OperatorPasswd { name, password } })
        }
        Cmd::Import { file } => match std::fs::read(&file) {
            // Decoded here, as the HTTP import decodes a body (UTF-8, or Shift_JIS): the server is sent text.
            Ok(bytes) => match App::import_file_text(&bytes) {
                Ok(csv) => manage(&cfg, Command::Import { csv }),
                Err(lines) => {
                    lines.iter().for_each(|(line, m)| eprintln!("line {line}: {m}"));
                    eprintln!("onepush: {}: {} bad lines; nothing was imported", file.display(), lines.len());
                    ExitCode::from(1)
                }
            },
            Err(e) => {
                eprintln!("onepush: {}: {e}", file.display());
                ExitCode::from(1)
            }
        },
        Cmd::Backup { dest } => {
            // The server process writes the file, so give it an absolute path.
            let dest = std::path::absolute(&dest).unwrap_or(dest);
            manage(&cfg, Command::Backup { dest: dest.to_string_lossy().into_owned() })
        }
        Cmd::Restore { src } => restore(&cfg, &src),
        Cmd::Migrate { to } => migrate(&cfg, &to),
        Cmd::Audit(AuditCmd::Verify { public_key: None, .. }) => manage(&cfg, Command::AuditVerify),
        Cmd::Audit(AuditCmd::Verify { public_key: Some(key), export }) => verify_export(&key, export.as_deref()),
        Cmd::Audit(AuditCmd::Export { follow: false, .. }) => manage(&cfg, Command::AuditExport),
        Cmd::Audit(AuditCmd::Export { follow: true, after }) => follow_audit(&cfg, after),
        Cmd::Audit(AuditCmd::PublicKey) => match onepush::audit::AuditKey::load(&cfg.audit_key_file) {
            Ok(k) => {
                println!("{}", k.public_b64());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("onepush: {e}");
                ExitCode::from(1)
            }
        },
    }
}

/// `audit verify --public-key K [EXPORT]`: checks an export without the
/// store or the private key.
fn verify_export(key: &str, export: Option<&std::path::Path>) -> ExitCode {
    let key = match onepush::audit::parse_public_key(key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("onepush: --public-key: {e}");
            return ExitCode::from(2);
        }
    };
    let mut text = String::new();
    let read = match export {
        Some(p) if p != std::path::Path::new("-") => std::fs::read_to_string(p).map(|t| text = t),
        _ => std::io::stdin().read_to_string(&mut text).map(|_| ()),
    };
    if let Err(e) = read {
        eprintln!("onepush: {}: {e}", export.map_or("standard input".into(), |p| p.display().to_string()));
        return ExitCode::from(1);
    }
    match onepush::audit::verify_export(&text, &key) {
        Ok(n) => {
            println!("audit export intact: {n} entries, signed head verified");
            ExitCode::SUCCESS
        }
        Err(b) => {
            eprintln!("onepush: audit log broken at entry {}: {}", b.seq, b.why);
            ExitCode::from(1)
        }
    }
}

/// Runs a management command through the running server, or in-process.
/// `audit export --follow`: new entries as they are written, through the
/// running server's control socket (opening the store here would lock the
/// server out of it). Waits while no server answers; ends when stdout closes.
fn follow_audit(cfg: &Config, mut after: u64) -> ExitCode {
    use std::io::Write;
    let mut waiting = false;
    loop {
        match control::send(&cfg.control_socket(), &Command::AuditAfter { after }) {
            Some(out) if out.code == 0 => {
                waiting = false;
                if let Some(last) = out.stdout.lines().last() {
                    let seq = serde_json::from_str::<serde_json::Value>(last).ok().and_then(|v| v["seq"].as_u64());
                    let Some(seq) = seq else {
                        eprintln!("onepush: audit follow: an entry without seq");
                        return ExitCode::from(1);
                    };
                    after = seq;
                    let mut stdout = std::io::stdout().lock();
                    if stdout.write_all(out.stdout.as_bytes()).and_then(|()| stdout.flush()).is_err() {
                        return ExitCode::SUCCESS;
                    }
                    if out.stdout.lines().count() >= 1000 {
                        continue;
                    }
                }
            }
            Some(out) => {
                eprint!("{}", out.stderr);
                return ExitCode::from(out.code.clamp(1, 255) as u8);
            }
            None if !waiting => {
                eprintln!("onepush: audit follow: no server answers at {}; waiting for it", cfg.control_socket().display());
                waiting = true;
            }
            None => {}
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `onepush man`: the man page, from the same definition as the parser.
fn man() -> ExitCode {
    let mut out = std::io::stdout().lock();
    match clap_mangen::Man::new(Cli::command()).render(&mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onepush: man: {e}");
            ExitCode::from(1)
        }
    }
}

fn manage(cfg: &Config, cmd: Command) -> ExitCode {
    let out = match control::send(&cfg.control_socket(), &cmd) {
        Some(out) => out,
        None => {
            if cfg.store.is_none() && !cfg.store_path().exists() && !matches!(cmd, Command::RpKeyAdd { .. } | Command::OperatorAdd { .. }) {
                eprintln!("onepush: no store at {}", cfg.store_path().display());
                return ExitCode::from(1);
            }
            if let Some(out) = control::execute_read_only(cfg, &cmd) {
                out
            } else {
                match open_app(cfg, Arc::default(), Arc::new(|_| {})) {
                    Ok(app) => control::execute(&app, cmd),
                    Err(e) => {
                        eprintln!("onepush: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
        }
    };
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    ExitCode::from(out.code.clamp(0, 255) as u8)
}

/// `onepush migrate --to URL`: the embedded store of `data_dir`, verified,
/// copied in one transaction into an empty PostgreSQL database, and the copy
/// verified (every table's count, the audit chain against the audit key).
/// The embedded store is left as it was.
fn migrate(cfg: &Config, to: &str) -> ExitCode {
    let fail = |m: String| {
        eprintln!("onepush: migrate: {m}");
        ExitCode::from(1)
    };
    if cfg.store.is_some() {
        return fail("the config already names a PostgreSQL store (store = …); migrate copies the embedded store of data_dir".into());
    }
    let url = match onepush::config::check_store_url(to) {
        Ok(url) => url,
        Err(e) => return fail(e.0.replacen("store:", "--to:", 1)),
    };
    if control::send(&cfg.control_socket(), &Command::AuditVerify).is_some() {
        return fail(format!("a server is running on {}; stop it first (nothing may change during the copy)", cfg.data_dir.display()));
    }
    if !cfg.store_path().exists() {
        return fail(format!("no store at {}", cfg.store_path().display()));
    }
    let key = match onepush::audit::AuditKey::load(&cfg.audit_key_file) {
        Ok(k) => k.public(),
        Err(e) => return fail(format!("the audit key is needed to verify the copy: {e}")),
    };
    let source = match Store::open(&cfg.store_path()) {
        Ok(s) => s,
        Err(e) => return fail(format!("{}: {e:?}", cfg.store_path().display())),
    };
    let entries = match source.verify_audit(Some(&key)) {
        Ok(Ok(n)) => n,
        Ok(Err(b)) => return fail(format!("the embedded store's audit log is broken at entry {}: {}; nothing copied", b.seq, b.why)),
        Err(e) => return fail(format!("{e:?}")),
    };
    let target = match Store::open_postgres(&url) {
        Ok(t) => t,
        Err(e) => return fail(format!("the PostgreSQL database: {e:?}")),
    };
    let copied = match source.copy_to(&target) {
        Ok(c) => c,
        // A lost connection during the COMMIT leaves the outcome unknown: say so.
        Err(onepush::error::Error::Conflict(m)) => return fail(format!("nothing copied: {m}")),
        Err(e) => {
            return fail(format!("the copy failed ({e:?}); if the database now holds records, drop and recreate it before trying again"))
        }
    };
    let there = match target.counts() {
        Ok(c) => c,
        Err(e) => return fail(format!("counting the copy: {e:?}")),
    };
    for ((table, n), (_, m)) in copied.iter().zip(&there) {
        if n != m {
            return fail(format!("the copy differs: {table}: {n} in the embedded store, {m} in PostgreSQL"));
        }
    }
    match target.verify_audit(Some(&key)) {
        Ok(Ok(n)) if n == entries => {}
        Ok(Ok(n)) => return fail(format!("the copy's audit log has {n} entries, the embedded store's {entries}")),
        Ok(Err(b)) => return fail(format!("the copy's audit log is broken at entry {}: {}", b.seq, b.why)),
        Err(e) => return fail(format!("{e:?}")),
    }
    for (table, n) in &copied {
        println!("  {table:<14} {n}");
    }
    println!("migrated and verified: every count equal, audit log intact in PostgreSQL ({entries} entries)");
    println!(
        "next: set store = \"…\" (this URL) in the config of every node, copy secret.key, audit.key and vapid.key from {} into each node's data_dir, and start the nodes; {} is left as it was",
        cfg.data_dir.display(),
        cfg.store_path().display()
    );
    ExitCode::SUCCESS
}

/// Replaces the store with a backup: refused while a server uses the data
/// directory; the backup must open and its audit chain verify first. The
/// store it replaces is kept beside it.
fn restore(cfg: &Config, src: &std::path::Path) -> ExitCode {
    if cfg.store.is_some() {
        eprintln!(
            "onepush: the store is in PostgreSQL (store = …): restore it with PostgreSQL's tools (pg_restore from a pg_dump, or a base backup with WAL); onepush restore replaces an embedded store only"
        );
        return ExitCode::from(1);
    }
    if control::send(&cfg.control_socket(), &Command::AuditVerify).is_some() {
        eprintln!("onepush: a server is running on {}; stop it before restoring", cfg.data_dir.display());
        return ExitCode::from(1);
    }
    let fail = |m: String| {
        eprintln!("onepush: {m}");
        ExitCode::from(1)
    };
    // The backup's audit head is signed with the key of the server that made
    // it (a backup from before signed heads has none and needs none).
    let key = onepush::audit::AuditKey::load(&cfg.audit_key_file).map(|k| k.public());
    // Check the backup on its own first.
    let check = match Store::open(src) {
        Ok(store) => match store.verify_audit(key.as_ref().ok()) {
            Err(onepush::error::Error::Internal(m)) if key.is_err() => {
                return fail(format!(
                    "{}: {m}; restoring needs the audit key file of the server that made the backup at {} (with its secret key file)",
                    src.display(),
                    cfg.audit_key_file.display()
                ))
            }
            Ok(Ok(n)) => n,
            Ok(Err(b)) => return fail(format!("{}: audit log broken at entry {}: {}", src.display(), b.seq, b.why)),
            Err(e) => return fail(format!("{}: {e:?}", src.display())),
        },
        Err(e) => return fail(format!("{}: {e:?}", src.display())),
    };
    let target = cfg.store_path();
    if target.exists() {
        // Taking the store's lock proves nobody else holds it.
        if let Err(e) = Store::open(&target) {
            return fail(format!("{}: {e:?}", target.display()));
        }
        let kept = target.with_extension(format!("redb.before-restore-{}", onepush::domain::now_ms() / 1000));
        if let Err(e) = std::fs::rename(&target, &kept) {
            return fail(format!("{}: {e}", target.display()));
        }
        println!("the replaced store is kept as {}", kept.display());
    }
    if let Err(e) = std::fs::create_dir_all(&cfg.data_dir).and_then(|()| std::fs::copy(src, &target).map(|_| ())) {
        return fail(format!("{}: {e}", target.display()));
    }
    restrict(&target, 0o600);
    match open_app(cfg, Arc::default(), Arc::new(|_| {})).and_then(|app| app.verify_audit().map_err(|e| format!("{e:?}"))) {
        Ok(Ok(n)) => {
            println!("restored {} ({check} audit entries); audit log intact: {n} entries", src.display());
            ExitCode::SUCCESS
        }
        Ok(Err(b)) => fail(format!("restored store: audit log broken at entry {}: {}", b.seq, b.why)),
        Err(e) => fail(e),
    }
}

fn open_app(cfg: &Config, metrics: Arc<onepush::metrics::Metrics>, notify: onepush::service::Notify) -> Result<App, String> {
    let (store, vapid) = open_store(cfg)?;
    App::new(cfg.clone(), store, metrics, vapid, notify).map_err(|e| format!("{e:?}"))
}

/// The store, and the VAPID key (made at first start, refused when missing
/// while Web Push subscriptions exist).
fn open_store(cfg: &Config) -> Result<(Store, Arc<onepush::push::VapidKey>), String> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
    restrict(&cfg.data_dir, 0o700);
    let store = Store::open_configured(cfg).map_err(|e| match e {
        onepush::error::Error::Conflict(m) => m,
        onepush::error::Error::Internal(m) if cfg.store.is_some() => format!("opening the PostgreSQL store: {m}"),
        other => format!("opening the store: {other:?}"),
    })?;
    if cfg.store.is_none() {
        restrict(&cfg.store_path(), 0o600);
    }
    let vapid = onepush::push::VapidKey::load_or_create(&cfg.vapid_key_file, || {
        store.read().and_then(|r| onepush::store::Reader::any_webpush_subscription(&r)).unwrap_or(true)
    })?;
    Ok((store, Arc::new(vapid)))
}

fn restrict(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        log::warn!("could not set mode {mode:o} on {}: {e}", path.display());
    }
}

/// glibc gives each thread that allocates its own arena; with tiny_http's
/// connection threads that multiplies the resident memory for no gain here.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt before any thread exists only tunes the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // A fixed threshold: glibc otherwise raises it to the largest block
        // freed so far, and the Argon2 blocks (MiBs each, on every login)
        // then come from the heap, which fragments and does not shrink.
        // Measured with 10,000 phones on Web Push (loadgen): server RSS
        // 860 MB after setup without this line.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Lets one process hold many parked connections (two descriptors each).
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Type=notify: tells systemd the service is ready, and, when the unit has
/// WatchdogSec, pings the watchdog only while the store and the writer answer
/// (an empty durable write job), so a wedged writer gets the service restarted.
fn systemd_ready(app: Arc<onepush::service::App>) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let Some(every) = sd_notify::watchdog_enabled() else { return };
    let _ = std::thread::Builder::new().name("watchdog".into()).spawn(move || loop {
        std::thread::sleep(every / 2);
        if app.healthy() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            log::error!("watchdog: the store does not answer");
        }
    });
}

/// SIGTERM, SIGINT and SIGHUP are handled by one thread with sigwait; they
/// are blocked in every thread (the mask is inherited), so set this first.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain signal-set manipulation on a zeroed set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Writes `text` to a new 0600 file at `path` (replacing an old code file,
/// never following a symlink).
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = onepush::secrets::create_private(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Each connection takes two descriptors: raise the soft limit to the hard
/// one, and say so at start when the cap on
/// connections cannot be reached before the process runs out of them (the
/// packaged unit sets LimitNOFILE=65536 for the default 20,000).
fn raise_descriptor_limit(max_connections: usize) {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return;
    }
    // The soft limit is often 1,024 outside systemd: take what the hard one allows.
    if r.rlim_cur < r.rlim_max {
        let raised = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
        // SAFETY: setrlimit reads a live rlimit; raising the soft limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            r = raised;
        }
    }
    let needed = (max_connections as u64).saturating_mul(2).saturating_add(64);
    if r.rlim_cur < needed {
        log::warn!(
            "max_connections = {max_connections} needs about {needed} file descriptors, the limit is {}: raise LimitNOFILE (ulimit -n) or lower max_connections",
            r.rlim_cur
        );
    }
}

/// SIGHUP reloads what can change while serving; SIGTERM/SIGINT answer every
/// parked request, let the writer finish, and exit 0.
fn handle_signals(
    set: libc::sigset_t,
    http: Arc<http::Http>,
    server: Arc<tiny_http::Server>,
    workers: usize,
    config_path: Option<PathBuf>,
    overrides: Overrides,
) {
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: sigwait on a valid set that is blocked in this thread.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        if sig == libc::SIGHUP {
            match Config::load(config_path.as_deref(), &overrides) {
                Ok(new) => {
                    let kept = http.app.reload(new);
                    if kept.is_empty() {
                        log::info!("SIGHUP: settings reloaded");
                    } else {
                        log::warn!("SIGHUP: settings reloaded, except {} (they need a restart)", kept.join(", "));
                    }
                }
                Err(e) => log::error!("SIGHUP: config not reloaded: {e}"),
            }
            continue;
        }
        log::info!("shutting down (signal {sig})");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let started = std::time::Instant::now();
        http.shutting_down.store(true, std::sync::atomic::Ordering::SeqCst);
        for _ in 0..workers {
            server.unblock();
        }
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        http.waiters.send(http::waiters::Msg::Shutdown(ack_tx));
        let _ = ack_rx.recv_timeout(std::time::Duration::from_secs(3));
        // Everything queued before this empty job is committed when it returns.
        let _ = http.app.flush();
        log::info!("stopped in {} ms", started.elapsed().as_millis());
        std::process::exit(0);
    });
    if let Err(e) = spawned {
        log::error!("no signal thread: {e}");
    }
}

fn serve(cfg: Config, demo: bool, config_path: Option<PathBuf>, overrides: Overrides) -> ExitCode {
    if demo && !cfg.listen.ip().is_loopback() {
        // The demo publishes its users' passwords and an RP without a key.
        eprintln!("onepush: --demo listens on loopback only (127.0.0.1 or ::1), not on {}", cfg.listen);
        return ExitCode::from(2);
    }
    let signals = block_signals();
    raise_fd_limit();
    let (wtx, wrx) = http::waiters::Mailbox::new();
    let notify_tx = wtx.clone();
    let metrics = Arc::new(onepush::metrics::Metrics::default());
    let push_agent = match onepush::push::agent(cfg.push_ca_file.as_deref(), cfg.push_proxy.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("onepush: {e}");
            return ExitCode::from(2);
        }
    };
    let (store, vapid) = match open_store(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("onepush: {e}");
            return ExitCode::from(1);
        }
    };
    // A push service that answers 404 or 410: the waiter thread queues the
    // subscription's removal (it never waits for the commit).
    let gone_tx = wtx.clone();
    let gone: onepush::wakeup::Gone = Arc::new(move |token_id, endpoint| {
        gone_tx.send(http::waiters::Msg::PushGone { token_id, endpoint });
    });
    let sender = onepush::wakeup::Sender {
        agent: push_agent,
        hosts: cfg.push_hosts.clone(),
        via_proxy: cfg.push_proxy.is_some(),
        vapid: vapid.clone(),
        contact: cfg.push_contact.clone(),
        gone,
    };
    let wakeups = onepush::wakeup::Wakeups::start(metrics.clone(), sender);
    let notify: onepush::service::Notify = Arc::new(move |ev| match ev {
        onepush::service::Event::Wake(w) => wakeups.send(w),
        other => notify_tx.event(other),
    });
    let app = match App::new(cfg.clone(), store, metrics, vapid, notify) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("onepush: {e:?}");
            return ExitCode::from(1);
        }
    };
    if cfg.push_contact == onepush::config::DEFAULT_PUSH_CONTACT {
        log::warn!("push_contact is the default {}: set it, push services may refuse Web Push from an unknown contact", cfg.push_contact);
    }
    let listener = match http::bind(cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("onepush: cannot listen on {}: {e}", cfg.listen);
            return ExitCode::from(1);
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    raise_descriptor_limit(cfg.edge.max_connections);
    let limits = http::limits(&cfg.edge, app.metrics.clone());
    let server = match tiny_http::Server::from_listener_with_limits(listener, None, limits) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("onepush: {e}");
            return ExitCode::from(1);
        }
    };
    {
        let server = Arc::downgrade(&server);
        let _ = app.metrics.open_connections.set(Box::new(move || server.upgrade().map_or(0, |s| s.num_connections())));
    }
    let _waiters = http::waiters::spawn(app.clone(), wrx);
    if app.store_is_shared() {
        // Other nodes' decisions and new challenges wake the waiters parked here.
        let (to_waiters, app2) = (wtx.clone(), app.clone());
        app.listen_to_other_nodes(move |r| {
            let recheck = r == onepush::store::pg::Remote::Recheck;
            match app2.on_remote(r) {
                Some(event) => to_waiters.event(event),
                None if recheck => to_waiters.recheck(),
                None => {}
            }
        });
    }
    let (_stop_sweeper, stop_rx) = std::sync::mpsc::channel::<()>();
    let _sweeper = sweeper::spawn(app.clone(), stop_rx);
    if let Err(e) = control::listen(app.clone(), &cfg.control_socket()) {
        eprintln!("onepush: control socket {}: {e}", cfg.control_socket().display());
        return ExitCode::from(1);
    }

    println!("onepush listening on http://{addr}");
    println!("  data directory: {}", cfg.data_dir.display());
    println!("  pages:          http://{addr}/  /register  /app  /admin  /notices");
    println!("  API reference:  http://{addr}/api/openapi.json");
    if !demo {
        if let Ok(list) = app.demo_contracts() {
            if !list.is_empty() {
                log::warn!(
                    "the store holds the demo contracts {} whose users' passwords are published; cancel them (POST /api/v1/admin/contracts/NO/cancel) unless this is a demo",
                    list.join(", ")
                );
            }
        }
    }
    if demo {
        match app.seed_demo(onepush::domain::now_ms()) {
            Ok(seed) => {
                println!("  demo bank:      http://{addr}/demo   (authenticator: http://{addr}/app)");
                for (no, edition, uid, role, pw, tx) in &seed.users {
                    let tx = tx.map(|t| format!(", transaction password {t}")).unwrap_or_default();
                    println!("    {edition:4} contract {no}  user {uid} ({role})  password {pw}{tx}");
                }
            }
            Err(e) => {
                eprintln!("onepush: demo: {e:?}");
                return ExitCode::from(1);
            }
        }
    }
    let (operators, rp_keys) = app.operator_and_live_key_counts().unwrap_or((0, 0));
    if operators == 0 {
        if let Ok(Some(code)) = app.bootstrap_code(onepush::domain::now_ms()) {
            use std::io::IsTerminal;
            let ttl = humantime::format_duration(std::time::Duration::from_secs(cfg.bootstrap_ttl / 1000));
            if std::io::stdout().is_terminal() {
                println!("  no operator yet. One-time code for the first operator (valid {ttl}): {code}");
            } else {
                // Not a terminal (systemd): the journal keeps what is printed, so the code goes to a 0600 file.
                let path = cfg.data_dir.join(onepush::service::BOOTSTRAP_CODE_FILE);
                match write_private(&path, &format!("{code}\n")) {
                    Ok(()) => {
                        println!("  no operator yet. One-time code for the first operator (valid {ttl}) written to {}", path.display());
                        log::info!("the one-time operator code is in {}", path.display());
                    }
                    Err(e) => log::error!("cannot write the one-time operator code to {}: {e}", path.display()),
                }
            }
            println!("    use it at http://{addr}/admin, or POST /api/v1/admin/bootstrap {{\"code\", \"username\", \"password\"}},");
            println!("    or create one with: printf '%s' 'PASSWORD' | {} operator add NAME --password-stdin", invocation());
        }
    }
    if rp_keys == 0 {
        println!("  no RP key yet:   {} rp-key add NAME   (prints the key once)", invocation());
    }
    // An empty line ends the banner (scripts read up to it).
    println!();
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let workers = std::env::var("ONEPUSH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()).max(2) * 4);
    let httpx = Arc::new(http::Http { app, waiters: wtx, shutting_down: AtomicBool::new(false), demo });
    handle_signals(signals, httpx.clone(), server.clone(), workers, config_path, overrides);
    systemd_ready(httpx.app.clone());
    match http::run_workers(httpx.clone(), server, workers) {
        Ok(()) => {
            // The workers stopped for a shutdown: the signal thread answers the
            // parked requests, waits for the writer and exits.
            while httpx.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            ExitCode::SUCCESS
        }
        Err(why) => {
            log::error!("{why}; exiting so that the service manager restarts onepush");
            ExitCode::from(1)
        }
    }
}
