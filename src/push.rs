//! Where push may go (API.md, "Push to the phone").
//!
//! Every endpoint a phone gives is checked when it is accepted (HTTPS, no
//! user or password, a host `push_allowed_hosts` allows) and again when a
//! message is sent (the host's addresses: a loopback, private or link-local
//! one only when that name or address is listed literally). Deliveries go
//! over TLS, trusting the system's CA store plus `push_ca_file`, through
//! `push_proxy` when set, and never follow a redirect.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http::Uri;

use crate::error::{Error, Result};

/// The public Web Push services, allowed when `push_allowed_hosts` is not set.
pub const DEFAULT_ALLOWED_HOSTS: &[&str] =
    &["fcm.googleapis.com", "*.push.apple.com", "updates.push.services.mozilla.com", "*.notify.windows.com"];

/// The hosts push may go to: names, `*.` suffixes (any subdomain depth, not
/// the name itself) and literal addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
    suffixes: Vec<String>,
    addresses: Vec<IpAddr>,
}

impl Default for AllowedHosts {
    fn default() -> AllowedHosts {
        let list: Vec<String> = DEFAULT_ALLOWED_HOSTS.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&list).unwrap_or(AllowedHosts { names: vec![], suffixes: vec![], addresses: vec![] })
    }
}

impl AllowedHosts {
    /// Parses `push_allowed_hosts`; the error names the bad entry.
    pub fn parse(list: &[String]) -> std::result::Result<AllowedHosts, String> {
        let mut hosts = AllowedHosts { names: vec![], suffixes: vec![], addresses: vec![] };
        for entry in list {
            let e = entry.trim().to_ascii_lowercase();
            let name_ok = |n: &str| {
                !n.is_empty()
                    && n.len() <= 253
                    && n.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            };
            if let Ok(ip) = e.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                hosts.addresses.push(ip);
            } else if let Some(rest) = e.strip_prefix("*.") {
                if !name_ok(rest) {
                    return Err(format!("{entry:?} is not a host name, *.suffix or address"));
                }
                hosts.suffixes.push(format!(".{rest}"));
            } else if name_ok(&e) {
                hosts.names.push(e);
            } else {
                return Err(format!("{entry:?} is not a host name, *.suffix or address"));
            }
        }
        Ok(hosts)
    }

    fn allows_name(&self, host: &str) -> bool {
        self.names.iter().any(|n| n == host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }

    fn listed_literally(&self, host: &str, ip: Option<IpAddr>) -> bool {
        self.names.iter().any(|n| n == host) || ip.is_some_and(|ip| self.addresses.contains(&ip))
    }

    /// The rule for an endpoint a phone gives (at provisioning and when it
    /// subscribes): `https://`, no user or password, a host this list allows.
    /// The error names `field`.
    pub fn check_endpoint(&self, field: &str, endpoint: &str) -> Result<()> {
        self.allowed_host(field, endpoint).map(|_| ())
    }

    /// `check_endpoint`, giving the host and port it allowed.
    fn allowed_host(&self, field: &str, endpoint: &str) -> Result<(String, u16)> {
        let bad = |why: &str| Error::bad_field(field, why);
        if endpoint.len() > 2048 || endpoint.contains(char::is_whitespace) {
            return Err(bad("must be an https URL of at most 2048 characters"));
        }
        let uri: Uri = endpoint.parse().map_err(|_| bad("must be an https URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("must be an https:// URL"));
        }
        let authority = uri.authority().ok_or_else(|| bad("must be an https URL with a host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not carry a user or password"));
        }
        let host = host_of(&uri).ok_or_else(|| bad("must be an https URL with a host"))?;
        let allowed = match host.parse::<IpAddr>() {
            Ok(ip) => self.addresses.contains(&ip),
            Err(_) => self.allows_name(&host),
        };
        if !allowed {
            return Err(bad(&format!("host {host} is not allowed by push_allowed_hosts")));
        }
        Ok((host, uri.port_u16().unwrap_or(443)))
    }

    /// At delivery: the endpoint's addresses, refused when the host is no
    /// longer allowed, or when one is loopback, private or link-local (or
    /// unspecified) and neither the name nor that address is listed literally.
    /// Through a proxy (`via_proxy`) the proxy resolves names, so only an
    /// address written in the endpoint is checked here.
    pub fn resolve(&self, endpoint: &str, via_proxy: bool) -> std::result::Result<Vec<SocketAddr>, String> {
        let (host, port) = self.allowed_host("endpoint", endpoint).map_err(|e| e.to_string())?;
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) if via_proxy => return Ok(vec![]),
            Err(_) => (host.as_str(), port).to_socket_addrs().map_err(|e| format!("{host}: {e}"))?.collect(),
        };
        if addrs.is_empty() {
            return Err(format!("{host}: no address"));
        }
        for a in &addrs {
            if is_internal(a.ip()) && !self.listed_literally(&host, Some(a.ip())) {
                return Err(format!("{host} resolves to {}, an internal address that push_allowed_hosts does not list", a.ip()));
            }
        }
        Ok(addrs)
    }
}

/// The host of an https URI, lower case, without brackets; `localhost` counts
/// as the loopback name it is.
fn host_of(uri: &Uri) -> Option<String> {
    let h = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    (!h.is_empty()).then_some(h)
}

/// Loopback, private, link-local, unspecified (and their IPv6 forms).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The HTTPS client of push deliveries: the system's CA store plus
/// `push_ca_file`, `push_proxy` when set, no redirects, short timeouts.
pub fn agent(ca_file: Option<&Path>, proxy: Option<&str>) -> std::result::Result<ureq::Agent, String> {
    let mut certs: Vec<ureq::tls::Certificate<'static>> = Vec::new();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        certs.push(ureq::tls::Certificate::from_der(c.as_ref()).to_owned());
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("push_ca_file: {}: {e}", path.display()))?;
        let before = certs.len();
        for c in ureq::tls::parse_pem(&pem) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = c {
                certs.push(c.to_owned());
            }
        }
        if certs.len() == before {
            return Err(format!("push_ca_file: {}: no PEM certificate in it", path.display()));
        }
    }
    if certs.is_empty() {
        log::warn!("push: no CA certificate found (system store empty and no push_ca_file): every delivery will fail");
    }
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs))).build();
    let proxy = match proxy {
        Some(p) => Some(ureq::Proxy::new(p).map_err(|e| format!("push_proxy: {p}: {e}"))?),
        None => None,
    };
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(proxy)
        .max_redirects(0)
        // One kept-alive connection per sender thread to the same push service.
        .max_idle_connections_per_host(crate::wakeup::THREADS)
        .max_idle_connections(4 * crate::wakeup::THREADS)
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into())
}

/// The Web Push (VAPID, RFC 8292) key pair: a P-256 private scalar kept in
/// `vapid_key_file` (32 bytes, 0600, made at first start).
pub struct VapidKey {
    private_b64: String,
    public: Vec<u8>,
    /// Signed headers per audience (a push service's origin), reused for
    /// `SIGNATURE_REUSE`: a JWT per message cost a third of the senders' CPU.
    signed: Mutex<HashMap<String, (Instant, web_push::VapidSignature)>>,
}

/// How long one signed VAPID JWT (valid 12 h) is reused for its audience.
pub const SIGNATURE_REUSE: Duration = Duration::from_secs(3600);
/// Audiences kept; more are signed afresh until the map is cleared.
const SIGNED_AUDIENCES: usize = 256;

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VapidKey(public {})", self.public_b64())
    }
}

impl VapidKey {
    /// Reads the key file, or makes it. A missing file while Web Push
    /// subscriptions exist is an error naming the file: a new key would
    /// silently break every subscription.
    pub fn load_or_create(path: &Path, subscriptions_exist: impl FnOnce() -> bool) -> std::result::Result<VapidKey, String> {
        if !path.exists() && subscriptions_exist() {
            return Err(format!(
                "{}: the Web Push key file is missing while Web Push subscriptions exist; restore it (a new key would break every subscription)",
                path.display()
            ));
        }
        let (secret, _) = crate::secrets::load_or_create_key(path, "Web Push (VAPID) key")?;
        p256::SecretKey::from_slice(&secret).map_err(|_| format!("{}: not a P-256 private key", path.display()))?;
        let private_b64 = crate::domain::sig::b64(&secret);
        let public = web_push::VapidSignatureBuilder::from_base64_no_sub(&private_b64)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .get_public_key();
        Ok(VapidKey { private_b64, public, signed: Mutex::new(HashMap::new()) })
    }

    /// The 65-byte uncompressed public key, base64url (`push-config`).
    pub fn public_b64(&self) -> String {
        crate::domain::sig::b64(&self.public)
    }

    /// `Authorization: vapid t=<JWT>, k=<key>` for `sub` (ES256, `aud` the
    /// endpoint's origin, `exp` 12 h ahead), signed at most once an hour per
    /// origin (`SIGNATURE_REUSE`), so a JWT sent has at least 11 h left.
    pub fn signature(&self, sub: &web_push::SubscriptionInfo, contact: &str) -> std::result::Result<web_push::VapidSignature, String> {
        self.signature_at(sub, contact, Instant::now())
    }

    fn signature_at(
        &self,
        sub: &web_push::SubscriptionInfo,
        contact: &str,
        now: Instant,
    ) -> std::result::Result<web_push::VapidSignature, String> {
        // The origin, port included when it is not 443 (web-push would drop it).
        let uri: Uri = sub.endpoint.parse().map_err(|_| "not a URL".to_string())?;
        let host = uri.host().ok_or("no host")?;
        let aud = match uri.port_u16() {
            Some(p) if p != 443 => format!("https://{host}:{p}"),
            _ => format!("https://{host}"),
        };
        if let Some((at, sig)) = crate::sync::lock(&self.signed).get(&aud) {
            if now.saturating_duration_since(*at) < SIGNATURE_REUSE {
                return Ok(sig.clone());
            }
        }
        let mut b = web_push::VapidSignatureBuilder::from_base64_no_sub(&self.private_b64).map_err(|e| e.to_string())?.add_sub_info(sub);
        b.add_claim("sub", contact);
        b.add_claim("aud", aud.clone());
        let sig = b.build().map_err(|e| e.to_string())?;
        let mut signed = crate::sync::lock(&self.signed);
        if signed.len() >= SIGNED_AUDIENCES {
            signed.clear();
        }
        signed.insert(aud, (now, sig.clone()));
        Ok(sig)
    }
}

/// Checks a Web Push subscription's keys: `p256dh` a 65-byte P-256 point,
/// `auth` 16 bytes, both base64url; the error names the field.
pub fn check_webpush_keys(p256dh: &str, auth: &str) -> Result<()> {
    let point = crate::domain::sig::unb64("p256dh", p256dh)?;
    if point.len() != 65 || p256::PublicKey::from_sec1_bytes(&point).is_err() {
        return Err(Error::bad_field("p256dh", "must be a 65-byte uncompressed P-256 point"));
    }
    if crate::domain::sig::unb64("auth", auth)?.len() != 16 {
        return Err(Error::bad_field("auth", "must be 16 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn endpoint_rules_name_the_field() {
        let h = AllowedHosts::default();
        assert_eq!(h.check_endpoint("endpoint", "https://fcm.googleapis.com/fcm/send/abc"), Ok(()));
        assert_eq!(h.check_endpoint("endpoint", "https://api.push.apple.com:443/3/device/x"), Ok(()), "port ignored");
        assert_eq!(h.check_endpoint("endpoint", "https://a.b.notify.windows.com/w/?token=x"), Ok(()), "any depth");
        for (bad, why) in [
            ("http://fcm.googleapis.com/x", "https://"),
            ("https://user:pw@fcm.googleapis.com/x", "user or password"),
            ("https://push.apple.com/x", "not allowed"),
            ("https://evil.example/fcm.googleapis.com", "not allowed"),
            ("https://127.0.0.1/up", "not allowed"),
            ("https://169.254.169.254/latest", "not allowed"),
            ("ftp://x", "https"),
            ("not a url", "https"),
        ] {
            let e = h.check_endpoint("endpoint", bad).unwrap_err().to_string();
            assert!(e.starts_with("endpoint") && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn suffixes_literals_and_internal_addresses() {
        let h = hosts(&["*.bank.example", "127.0.0.1", "ntfy.internal"]);
        assert!(h.check_endpoint("e", "https://up.bank.example/x").is_ok());
        assert!(h.check_endpoint("e", "https://a.b.bank.example/x").is_ok());
        assert!(h.check_endpoint("e", "https://bank.example/x").is_err(), "*. does not match the name itself");
        assert!(h.check_endpoint("e", "https://127.0.0.1:8443/up").is_ok(), "a literal address");
        assert!(h.resolve("https://127.0.0.1:8443/up", false).is_ok(), "listed literally: allowed although loopback");
        assert!(h.resolve("https://localhost/up", false).is_err(), "localhost is not listed");
        let local = hosts(&["*.bank.example", "10.0.0.8"]);
        assert!(local.resolve("https://10.0.0.8/up", true).is_ok());
        let by_name = hosts(&["up.internal.example"]);
        assert!(by_name.resolve("https://up.internal.example/x", true).is_ok(), "through a proxy the proxy resolves names");
        assert!(AllowedHosts::parse(&["bad host!".to_string()]).is_err());
        for ip in ["10.0.0.1", "192.168.1.1", "172.16.0.1", "169.254.169.254", "127.0.0.1", "::1", "fe80::1", "fd00::1", "0.0.0.0"] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2001:4860:4860::8888"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn vapid_signatures_are_reused_per_origin_for_an_hour() {
        let dir = std::env::temp_dir().join(format!("onepush-vapid-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let key = VapidKey::load_or_create(&dir.join("vapid.key"), || false).unwrap();
        let sub = |endpoint: &str| web_push::SubscriptionInfo::new(endpoint, "p", "a");
        let t0 = Instant::now();
        let a = key.signature_at(&sub("https://push.example.net/s/1"), "mailto:it@bank.example", t0).unwrap();
        let again = key.signature_at(&sub("https://push.example.net/s/2"), "mailto:it@bank.example", t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(a, again, "same origin within the hour: the same JWT");
        key.signature_at(&sub("https://push.example.net:8443/s/3"), "mailto:it@bank.example", t0).unwrap();
        assert_eq!(crate::sync::lock(&key.signed).len(), 2, "another port is another audience");
        let later = t0 + SIGNATURE_REUSE;
        key.signature_at(&sub("https://push.example.net/s/4"), "mailto:it@bank.example", later).unwrap();
        assert_eq!(crate::sync::lock(&key.signed)["https://push.example.net"].0, later, "signed afresh after an hour");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
