//! Configuration: the TOML file (every key optional, unknown keys refused),
//! then command-line overrides, then validation into `Config`.
//!
//! `RawConfig` is what the file may say; `Config` is what onepush runs with.
//! Durations are written like `60s`, `10min`, `30days` (humantime).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::account::{EditionPolicy, Role};
use crate::domain::challenge::Kind;
use crate::domain::Ms;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub trusted_proxies: Option<Vec<String>>,
    pub challenge_ttl: Option<String>,
    pub max_wait: Option<String>,
    pub sweep_interval: Option<String>,
    pub grace_period: Option<String>,
    pub provision_ttl: Option<String>,
    pub challenge_retention: Option<String>,
    pub token_prefix: Option<String>,
    pub otp_window: Option<u64>,
    pub otp_max_failures: Option<u32>,
    pub password_max_failures: Option<u32>,
    pub require_registration: Option<bool>,
    pub number_challenge: Option<bool>,
    pub max_pending_per_user: Option<u32>,
    pub max_challenges_per_window: Option<u32>,
    pub challenge_window: Option<String>,
    pub argon2_memory_kib: Option<u32>,
    pub argon2_iterations: Option<u32>,
    pub secret_key_file: Option<PathBuf>,
    pub audit_key_file: Option<PathBuf>,
    pub header_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub send_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub bootstrap_ttl: Option<String>,
    pub display_timezone: Option<String>,
    pub push_allowed_hosts: Option<Vec<String>>,
    pub push_proxy: Option<String>,
    pub push_ca_file: Option<PathBuf>,
    pub push_contact: Option<String>,
    pub vapid_key_file: Option<PathBuf>,
    pub store: Option<String>,
    #[serde(default)]
    pub editions: BTreeMap<String, RawEdition>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdition {
    pub push_on_login: Option<bool>,
    pub push_on_notice: Option<bool>,
    pub push_on_transaction: Option<bool>,
    pub transaction_password_for: Option<Vec<String>>,
    pub deregister_roles: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub trusted_proxies: Vec<IpAddr>,
    pub challenge_ttl: Ms,
    pub max_wait: Ms,
    pub sweep_interval: Ms,
    pub grace_period: Ms,
    pub provision_ttl: Ms,
    /// Closed challenges older than this are deleted (their decisions stay in the audit log).
    pub challenge_retention: Ms,
    pub token_prefix: String,
    pub otp_window: u64,
    pub otp_max_failures: u32,
    pub password_max_failures: u32,
    pub require_registration: bool,
    pub number_challenge: bool,
    pub max_pending_per_user: u32,
    pub max_challenges_per_window: u32,
    pub challenge_window: Ms,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    /// The key that seals OTP secrets; default `<data_dir>/secret.key`.
    pub secret_key_file: PathBuf,
    /// The key that signs the audit head; default `<data_dir>/audit.key`.
    pub audit_key_file: PathBuf,
    pub editions: BTreeMap<String, EditionPolicy>,
    /// The HTTP edge (API.md, "HTTP edge limits"); fixed at start.
    pub edge: EdgeLimits,
    /// How long the one-time operator code of a store without operators is valid.
    pub bootstrap_ttl: Ms,
    /// The time zone of the times in the lines a phone shows (IANA name).
    pub display_timezone: jiff::tz::TimeZone,
    /// Where push may go (`push_allowed_hosts`; the public Web Push services by default).
    pub push_hosts: crate::push::AllowedHosts,
    /// An HTTP proxy (CONNECT) for push deliveries.
    pub push_proxy: Option<String>,
    /// `store = "postgres://…"`: the state in PostgreSQL (SPEC R8); None:
    /// the embedded file in `data_dir`.
    pub store: Option<String>,
    /// CA certificates (PEM) trusted for push deliveries besides the system's.
    pub push_ca_file: Option<PathBuf>,
    /// The VAPID `sub`: `mailto:` or `https:`.
    pub push_contact: String,
    /// The Web Push (VAPID) key pair; default `<data_dir>/vapid.key`.
    pub vapid_key_file: PathBuf,
}

/// The HTTP edge's timeouts and connection cap (API.md, Conventions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Ms,
    /// From the end of the headers to the end of the body.
    pub body_timeout: Ms,
    /// An idle keep-alive connection is closed after this.
    pub keepalive_timeout: Ms,
    /// A client that reads none of a response for this long is disconnected
    /// (an extension of API.md's table).
    pub send_timeout: Ms,
    /// Open connections, parked long-polls included; past it 503 at accept.
    pub max_connections: usize,
}

/// A config problem, naming the key.
/// The VAPID contact while none is configured (`config check` warns).
pub const DEFAULT_PUSH_CONTACT: &str = "mailto:onepush@localhost";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        RawConfig::parse(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    pub fn parse(text: &str) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.message().to_string()))
    }
}

fn duration(key: &str, v: &Option<String>, default: &str) -> Result<Ms, ConfigError> {
    let text = v.as_deref().unwrap_or(default);
    let d: Duration =
        humantime::parse_duration(text).map_err(|e| ConfigError(format!("{key}: {e} (write durations like 60s, 10min, 30days)")))?;
    // Every duration is added to "now" somewhere and written as a date: keep
    // it far from year 9999, where RFC 3339 formatting stops.
    if d > MAX_DURATION {
        return Err(ConfigError(format!("{key}: {text} is too long (at most 100 years)")));
    }
    Ok(d.as_millis() as Ms)
}

/// The longest duration a config key takes.
const MAX_DURATION: Duration = Duration::from_secs(100 * 366 * 86_400);

fn kind(key: &str, s: &str) -> Result<Kind, ConfigError> {
    match s {
        "login" => Ok(Kind::Login),
        "notice" => Ok(Kind::Notice),
        "transaction" => Ok(Kind::Transaction),
        _ => Err(ConfigError(format!("{key}: unknown kind {s:?} (login, notice, transaction)"))),
    }
}

/// Where the package installs the config; used when neither `--config` nor
/// `$ONEPUSH_CONFIG` names one (API.md).
pub const SYSTEM_CONFIG: &str = "/etc/onepush/onepush.toml";

/// Which config file a command uses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Flag(PathBuf),
    Env(PathBuf),
    System(PathBuf),
    /// No file: the built-in defaults.
    Defaults,
}

impl Found {
    /// `--config`, else `$ONEPUSH_CONFIG`, else `/etc/onepush/onepush.toml`
    /// when it exists, else the built-in defaults.
    pub fn discover(flag: Option<&Path>, env: Option<std::ffi::OsString>, system: &Path) -> Found {
        if let Some(p) = flag {
            return Found::Flag(p.to_path_buf());
        }
        if let Some(v) = env.filter(|v| !v.is_empty()) {
            return Found::Env(PathBuf::from(v));
        }
        if system.exists() {
            return Found::System(system.to_path_buf());
        }
        Found::Defaults
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            Found::Flag(p) | Found::Env(p) | Found::System(p) => Some(p),
            Found::Defaults => None,
        }
    }
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Found::Flag(p) => write!(f, "config {} (--config)", p.display()),
            Found::Env(p) => write!(f, "config {} ($ONEPUSH_CONFIG)", p.display()),
            Found::System(p) => write!(f, "config {}", p.display()),
            Found::Defaults => write!(f, "no config file ({SYSTEM_CONFIG} absent): the built-in defaults"),
        }
    }
}

/// `config check`: every bad key with its line, not only the first. A key is
/// checked alone (its type, then its value), then the file as a whole (the
/// rules that tie keys together).
pub fn check_text(text: &str) -> Vec<String> {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let at = e.span().map(|s| format!("line {}: ", line_of(text, s.start))).unwrap_or_default();
            return vec![format!("{at}{}", e.message().trim())];
        }
    };
    let mut found = Vec::new();
    let mut check = |path: Vec<&str>, alone: toml::Table| {
        let key = path.join(".");
        let checked = RawConfig::deserialize(alone).map_err(|e| {
            // serde lists every known key after an unknown one: too long for a line.
            let m = e.message().trim();
            ConfigError(format!("{key}: {}", m.split(", expected one of").next().unwrap_or(m)))
        });
        if let Err(e) = checked.and_then(|raw| Config::build(raw, &Overrides::default())) {
            found.push((locate(text, &path), e.0));
        }
    };
    for (key, value) in &table {
        // An edition's keys are checked one by one too, each at its own line.
        if let (Some(editions), "editions") = (value.as_table(), key.as_str()) {
            for (name, edition) in editions {
                let entries: Vec<(String, toml::Value)> = match edition.as_table() {
                    Some(t) if !t.is_empty() => t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    _ => vec![],
                };
                if entries.is_empty() {
                    let mut alone = toml::Table::new();
                    alone.insert(key.clone(), toml::Value::Table([(name.clone(), edition.clone())].into_iter().collect()));
                    check(vec![key, name], alone);
                }
                for (k, v) in entries {
                    let one: toml::Table = [(k.clone(), v)].into_iter().collect();
                    let mut alone = toml::Table::new();
                    alone.insert(key.clone(), toml::Value::Table([(name.clone(), toml::Value::Table(one))].into_iter().collect()));
                    check(vec![key, name, &k], alone);
                }
            }
            continue;
        }
        let mut alone = toml::Table::new();
        alone.insert(key.clone(), value.clone());
        check(vec![key], alone);
    }
    found.sort_by_key(|(line, _)| *line);
    let mut errors: Vec<String> = found.into_iter().map(|(line, e)| line.map(|n| format!("line {n}: {e}")).unwrap_or(e)).collect();
    if errors.is_empty() {
        if let Err(e) = RawConfig::parse(text).and_then(|raw| Config::build(raw, &Overrides::default())) {
            errors.push(e.0);
        }
    }
    errors
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// The line where the key `path` is set: `a.b = …` at the top, `b = …`
/// under `[a]`, a `[a.b]` table; else the first line under it.
fn locate(text: &str, path: &[&str]) -> Option<usize> {
    let dotted = |s: &str| -> Vec<String> { s.split('.').map(|p| p.trim().trim_matches('"').trim_matches('\'').to_string()).collect() };
    let mut table: Vec<String> = Vec::new();
    let mut under = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        let full = if let Some(header) = l.strip_prefix('[') {
            table = dotted(header.trim_start_matches('[').split(']').next().unwrap_or(""));
            table.clone()
        } else if let Some((k, _)) = l.split_once('=').filter(|_| !l.starts_with('#')) {
            table.iter().cloned().chain(dotted(k)).collect()
        } else {
            continue;
        };
        if full.len() == path.len() && full.iter().zip(path).all(|(a, b)| a == b) {
            return Some(i + 1);
        }
        if under.is_none() && full.len() > path.len() && full.iter().zip(path).all(|(a, b)| a == b) {
            under = Some(i + 1);
        }
    }
    under
}

impl Config {
    /// Defaults only: what `onepush serve` runs with and no file.
    #[allow(clippy::expect_used, reason = "the built-in defaults are valid; the unit tests build them")]
    pub fn defaults() -> Config {
        Config::build(RawConfig::default(), &Overrides::default()).expect("the defaults are valid")
    }

    pub fn load(path: Option<&Path>, o: &Overrides) -> Result<Config, ConfigError> {
        let raw = match path {
            Some(p) => RawConfig::from_file(p)?,
            None => RawConfig::default(),
        };
        Config::build(raw, o)
    }

    pub fn build(raw: RawConfig, o: &Overrides) -> Result<Config, ConfigError> {
        let listen_text = o.listen.clone().or(raw.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen =
            listen_text.parse().map_err(|_| ConfigError(format!("listen: {listen_text:?} is not an address like 127.0.0.1:8080")))?;
        let trusted_proxies = raw
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|s| s.parse().map_err(|_| ConfigError(format!("trusted_proxies: {s:?} is not an IP address"))))
            .collect::<Result<Vec<_>, _>>()?;
        let positive = |key: &str, v: Ms| {
            if v == 0 {
                Err(ConfigError(format!("{key}: must be more than zero")))
            } else {
                Ok(v)
            }
        };
        let token_prefix = raw.token_prefix.unwrap_or_else(|| "ONEP".into());
        if token_prefix.len() != 4 || !token_prefix.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ConfigError("token_prefix: must be 4 upper-case letters".into()));
        }
        let count = |key: &str, v: Option<u32>, default: u32| match v.unwrap_or(default) {
            0 => Err(ConfigError(format!("{key}: must be at least 1"))),
            n => Ok(n),
        };
        let argon2_memory_kib = raw.argon2_memory_kib.unwrap_or(19_456);
        if !(8..=4_194_304).contains(&argon2_memory_kib) {
            return Err(ConfigError("argon2_memory_kib: must be 8..=4194304".into()));
        }
        let argon2_iterations = count("argon2_iterations", raw.argon2_iterations, 2)?;
        let otp_window = raw.otp_window.unwrap_or(2);
        if otp_window > 10 {
            return Err(ConfigError("otp_window: must be 0..=10 steps".into()));
        }

        let mut editions = BTreeMap::new();
        editions.insert("jweb".to_string(), EditionPolicy::jweb());
        editions.insert("fx".to_string(), EditionPolicy::fx());
        for (name, e) in raw.editions {
            if name.is_empty() || name.len() > 20 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(ConfigError(format!("editions.{name}: edition names are 1-20 letters, digits or '_'")));
            }
            let base = editions.get(&name).cloned().unwrap_or_else(EditionPolicy::jweb);
            let key = |k: &str| format!("editions.{name}.{k}");
            let policy = EditionPolicy {
                push_on_login: e.push_on_login.unwrap_or(base.push_on_login),
                push_on_notice: e.push_on_notice.unwrap_or(base.push_on_notice),
                push_on_transaction: e.push_on_transaction.unwrap_or(base.push_on_transaction),
                transaction_password_for: match e.transaction_password_for {
                    Some(v) => v.iter().map(|s| kind(&key("transaction_password_for"), s)).collect::<Result<_, _>>()?,
                    None => base.transaction_password_for,
                },
                deregister_roles: match e.deregister_roles {
                    Some(v) => v
                        .iter()
                        .map(|s| Role::parse(&key("deregister_roles"), s).map_err(|e| ConfigError(e.to_string())))
                        .collect::<Result<_, _>>()?,
                    None => base.deregister_roles,
                },
            };
            editions.insert(name, policy);
        }

        let data_dir = o.data_dir.clone().or(raw.data_dir).unwrap_or_else(|| PathBuf::from("./onepush-data"));
        Ok(Config {
            listen,
            secret_key_file: raw.secret_key_file.unwrap_or_else(|| data_dir.join("secret.key")),
            audit_key_file: raw.audit_key_file.unwrap_or_else(|| data_dir.join("audit.key")),
            vapid_key_file: raw.vapid_key_file.clone().unwrap_or_else(|| data_dir.join("vapid.key")),
            data_dir,
            trusted_proxies,
            challenge_ttl: positive("challenge_ttl", duration("challenge_ttl", &raw.challenge_ttl, "60s")?)?,
            max_wait: duration("max_wait", &raw.max_wait, "30s")?,
            sweep_interval: positive("sweep_interval", duration("sweep_interval", &raw.sweep_interval, "1s")?)?,
            grace_period: duration("grace_period", &raw.grace_period, "30days")?,
            provision_ttl: positive("provision_ttl", duration("provision_ttl", &raw.provision_ttl, "7days")?)?,
            challenge_retention: positive("challenge_retention", duration("challenge_retention", &raw.challenge_retention, "90days")?)?,
            token_prefix,
            otp_window,
            otp_max_failures: count("otp_max_failures", raw.otp_max_failures, 5)?,
            password_max_failures: count("password_max_failures", raw.password_max_failures, 5)?,
            require_registration: raw.require_registration.unwrap_or(false),
            number_challenge: raw.number_challenge.unwrap_or(false),
            max_pending_per_user: count("max_pending_per_user", raw.max_pending_per_user, 1)?,
            max_challenges_per_window: count("max_challenges_per_window", raw.max_challenges_per_window, 5)?,
            challenge_window: positive("challenge_window", duration("challenge_window", &raw.challenge_window, "10min")?)?,
            argon2_memory_kib,
            argon2_iterations,
            editions,
            bootstrap_ttl: positive("bootstrap_ttl", duration("bootstrap_ttl", &raw.bootstrap_ttl, "24h")?)?,
            push_hosts: match &raw.push_allowed_hosts {
                Some(list) => crate::push::AllowedHosts::parse(list).map_err(|e| ConfigError(format!("push_allowed_hosts: {e}")))?,
                None => crate::push::AllowedHosts::default(),
            },
            push_proxy: match &raw.push_proxy {
                Some(p) if p.starts_with("http://") && p.len() > 7 && !p.contains(char::is_whitespace) => Some(p.clone()),
                Some(p) => {
                    return Err(ConfigError(format!(
                        "push_proxy: {p:?} is not an http:// proxy URL (for example http://proxy.bank.example:8080)"
                    )))
                }
                None => None,
            },
            store: match raw.store.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(url) => Some(check_store_url(url)?),
            },
            push_ca_file: raw.push_ca_file.clone(),
            push_contact: match raw.push_contact.as_deref().unwrap_or(DEFAULT_PUSH_CONTACT) {
                c if (c.starts_with("mailto:") && c.len() > 7 || c.starts_with("https://") && c.len() > 8)
                    && !c.contains(char::is_whitespace) =>
                {
                    c.to_string()
                }
                c => return Err(ConfigError(format!("push_contact: {c:?} must be a mailto: or https: URL"))),
            },
            display_timezone: {
                let name = raw.display_timezone.as_deref().unwrap_or("Asia/Tokyo");
                jiff::tz::TimeZone::get(name)
                    .map_err(|_| ConfigError(format!("display_timezone: {name} is not an IANA time zone (for example Asia/Tokyo)")))?
            },
            edge: EdgeLimits {
                header_timeout: positive("header_timeout", duration("header_timeout", &raw.header_timeout, "10s")?)?,
                body_timeout: positive("body_timeout", duration("body_timeout", &raw.body_timeout, "10s")?)?,
                keepalive_timeout: positive("keepalive_timeout", duration("keepalive_timeout", &raw.keepalive_timeout, "75s")?)?,
                send_timeout: positive("send_timeout", duration("send_timeout", &raw.send_timeout, "10s")?)?,
                max_connections: match raw.max_connections.unwrap_or(20_000) {
                    0 => return Err(ConfigError("max_connections: must be at least 1".into())),
                    n => n,
                },
            },
        })
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("onepush.redb")
    }

    pub fn control_socket(&self) -> PathBuf {
        self.data_dir.join("control.sock")
    }
}

/// `store`: a libpq URL (`postgres://user@host:port/db?…`), parsed as the
/// driver will parse it, with libpq's `sslmode` (disable, prefer, require,
/// verify-ca, verify-full) and `sslrootcert` (a PEM file that must be
/// readable now).
pub fn check_store_url(url: &str) -> Result<String, ConfigError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError(
            "store: must be empty (the embedded store) or a postgres:// URL, for example postgres://onepush@db.bank.example/onepush".into(),
        ));
    }
    let (_, _, root) = crate::store::pg::parse_url(url).map_err(|e| ConfigError(format!("store: {e}")))?;
    if let Some(path) = root {
        std::fs::metadata(&path).map_err(|e| ConfigError(format!("store: sslrootcert {}: {e}", path.display())))?;
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_every_bad_key_with_its_line() {
        let text = "listen = \"127.0.0.1:8080\"\n# a comment\nchallenge_ttl = \"soon\"\ncolour = \"blue\"\nmax_wait = \"20s\"\ntrusted_proxies = [\"nginx\"]\n\n[editions.jweb]\npush_for = [\"lunch\"]\n";
        let errors = check_text(text);
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with("line 3: challenge_ttl:"), "{errors:#?}");
        assert_eq!(errors[1], "line 4: colour: unknown field `colour`");
        assert!(errors[2].starts_with("line 6: trusted_proxies:"), "{errors:#?}");
        assert_eq!(errors[3], "line 9: editions.jweb.push_for: unknown field `push_for`");
        assert!(check_text("listen = \"127.0.0.1:9\"\n").is_empty());
        // Dotted and quoted keys, a second edition, a comment after a header.
        let text = "'listen' = \"x\"\neditions.fx.push_on_login = \"yes\"\n[editions.jweb] # ours\npush_on_login = true\n[editions.fx2]\ncolour = 1\n";
        let errors = check_text(text);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("line 1: listen:"), "{errors:#?}");
        assert!(errors[1].starts_with("line 2: editions.fx.push_on_login:"), "{errors:#?}");
        assert!(errors[2].starts_with("line 6: editions.fx2.colour:"), "{errors:#?}");
        let syntax = check_text("a = 1\nlisten = \n");
        assert!(syntax.len() == 1 && syntax[0].starts_with("line 2: "), "{syntax:?}");
    }

    #[test]
    fn the_config_is_found_by_flag_then_environment_then_the_system_file() {
        let dir = std::env::temp_dir().join(format!("onepush-found-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let system = dir.join("onepush.toml");
        let (flag, env) = (Path::new("/x/flag.toml"), Some(std::ffi::OsString::from("/x/env.toml")));
        assert_eq!(Found::discover(Some(flag), env.clone(), &system), Found::Flag(flag.into()));
        assert_eq!(Found::discover(None, env, &system), Found::Env("/x/env.toml".into()));
        assert_eq!(Found::discover(None, Some("".into()), &system), Found::Defaults);
        std::fs::write(&system, "").unwrap();
        assert_eq!(Found::discover(None, None, &system), Found::System(system.clone()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::defaults();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./onepush-data"));
        assert_eq!(c.challenge_ttl, 60_000);
        assert_eq!(c.max_wait, 30_000);
        assert_eq!(c.grace_period, 30 * 86_400_000);
        assert_eq!(c.provision_ttl, 7 * 86_400_000);
        assert_eq!((c.otp_window, c.otp_max_failures, c.password_max_failures), (2, 5, 5));
        assert_eq!((c.max_pending_per_user, c.max_challenges_per_window, c.challenge_window), (1, 5, 600_000));
        assert_eq!((c.argon2_memory_kib, c.argon2_iterations), (19_456, 2));
        assert_eq!(c.editions["jweb"], EditionPolicy::jweb());
        assert_eq!(c.editions["fx"], EditionPolicy::fx());
        assert_eq!(
            c.edge,
            EdgeLimits {
                header_timeout: 10_000,
                body_timeout: 10_000,
                keepalive_timeout: 75_000,
                send_timeout: 10_000,
                max_connections: 20_000
            }
        );
    }

    #[test]
    fn durations_are_bounded_so_that_no_date_overflows() {
        for key in ["grace_period", "challenge_retention", "provision_ttl", "challenge_ttl", "header_timeout"] {
            let raw = RawConfig::parse(&format!("{key} = \"10000years\"")).unwrap();
            let e = Config::build(raw, &Overrides::default()).unwrap_err();
            assert!(e.0.starts_with(key) && e.0.contains("too long"), "{e}");
        }
        let raw = RawConfig::parse("grace_period = \"99years\"").unwrap();
        assert!(Config::build(raw, &Overrides::default()).is_ok());
    }

    #[test]
    fn every_key_parses() {
        let raw = RawConfig::parse(
            r#"
            listen = "127.0.0.1:9000"
            data_dir = "/var/lib/onepush"
            trusted_proxies = ["127.0.0.1", "::1"]
            challenge_ttl = "90s"
            max_wait = "20s"
            sweep_interval = "500ms"
            grace_period = "14days"
            provision_ttl = "1day"
            token_prefix = "BANK"
            otp_window = 1
            otp_max_failures = 3
            password_max_failures = 4
            require_registration = true
            number_challenge = true
            max_pending_per_user = 2
            max_challenges_per_window = 10
            challenge_window = "5min"
            argon2_memory_kib = 1024
            argon2_iterations = 1
            header_timeout = "5s"
            body_timeout = "3s"
            keepalive_timeout = "30s"
            send_timeout = "4s"
            max_connections = 500
            [editions.fx]
            push_on_transaction = true
            transaction_password_for = ["transaction"]
            deregister_roles = ["service_admin"]
            "#,
        )
        .unwrap();
        let c = Config::build(raw, &Overrides::default()).unwrap();
        assert_eq!(c.challenge_ttl, 90_000);
        assert_eq!(c.sweep_interval, 500);
        assert_eq!(c.token_prefix, "BANK");
        assert_eq!(
            c.edge,
            EdgeLimits { header_timeout: 5_000, body_timeout: 3_000, keepalive_timeout: 30_000, send_timeout: 4_000, max_connections: 500 }
        );
        assert!(c.editions["fx"].push_on_transaction);
        assert_eq!(c.editions["fx"].deregister_roles, vec![Role::ServiceAdmin]);
        assert_eq!(c.trusted_proxies.len(), 2);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = RawConfig::parse("listne = \"x\"").unwrap_err();
        assert!(e.0.contains("listne"), "{e}");
        let e = RawConfig::parse("[editions.fx]\npush_on_lgin = true").unwrap_err();
        assert!(e.0.contains("push_on_lgin"), "{e}");
        for (text, key) in [
            ("challenge_ttl = \"soon\"", "challenge_ttl"),
            ("listen = \"nowhere\"", "listen"),
            ("token_prefix = \"onep\"", "token_prefix"),
            ("trusted_proxies = [\"proxy\"]", "trusted_proxies"),
            ("[editions.fx]\ntransaction_password_for = [\"wire\"]", "editions.fx.transaction_password_for"),
        ] {
            let e = Config::build(RawConfig::parse(text).unwrap(), &Overrides::default()).unwrap_err();
            assert!(e.0.starts_with(key), "{text}: {e}");
        }
    }
}

#[cfg(test)]
mod packaged_default {
    use super::*;

    /// packaging/onepush.toml documents every key: uncommented, it parses
    /// and gives the defaults.
    #[test]
    fn the_packaged_config_documents_every_key_with_its_default() {
        let text = include_str!("../packaging/onepush.toml");
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# ").or((!l.starts_with('#')).then_some(l)))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let raw = RawConfig::parse(&uncommented).unwrap();
        for key in [
            "listen",
            "data_dir",
            "trusted_proxies",
            "challenge_ttl",
            "max_wait",
            "sweep_interval",
            "grace_period",
            "provision_ttl",
            "token_prefix",
            "otp_window",
            "otp_max_failures",
            "password_max_failures",
            "require_registration",
            "number_challenge",
            "max_pending_per_user",
            "max_challenges_per_window",
            "challenge_window",
            "argon2_memory_kib",
            "argon2_iterations",
            "secret_key_file",
            "audit_key_file",
            "challenge_retention",
            "header_timeout",
            "body_timeout",
            "keepalive_timeout",
            "send_timeout",
            "max_connections",
            "bootstrap_ttl",
            "display_timezone",
            "push_allowed_hosts",
            "push_proxy",
            "push_ca_file",
            "push_contact",
            "vapid_key_file",
            "store",
        ] {
            assert!(uncommented.contains(&format!("{key} = ")), "packaging/onepush.toml lacks {key}");
        }
        let c = Config::build(raw, &Overrides::default()).unwrap();
        let d = Config::defaults();
        assert_eq!((c.challenge_ttl, c.grace_period, c.argon2_memory_kib), (d.challenge_ttl, d.grace_period, d.argon2_memory_kib));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/onepush"), "the package keeps data in the state directory");
        assert_eq!(c.editions, d.editions);
        assert_eq!(c.edge, d.edge);
    }
}
