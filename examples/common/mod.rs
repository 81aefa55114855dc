//! Helpers shared by the examples: HTTP with status codes as values (ureq),
//! and starting a server for the benchmarks.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct Resp {
    pub status: u16,
    pub json: Value,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(90)))
        .max_idle_connections_per_host(64)
        .build()
        .into()
}

pub fn call(agent: &ureq::Agent, method: &str, url: &str, headers: &[(&str, String)], body: Option<&Value>) -> Result<Resp, String> {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    let resp = match body {
        Some(v) => agent.run(b.header("Content-Type", "application/json").body(v.to_string()).map_err(|e| e.to_string())?),
        None => agent.run(b.body(()).map_err(|e| e.to_string())?),
    }
    .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().map_err(|e| e.to_string())?;
    Ok(Resp { status, json: serde_json::from_str(&text).unwrap_or(Value::Null) })
}

/// A signed device request (`Connection: close` on long-polls, so a parked
/// poll holds no server thread).
pub fn device_call(
    agent: &ureq::Agent,
    base: &str,
    key: &onepush::client::DeviceKey,
    token_id: &str,
    method: &str,
    path_and_query: &str,
    body: Option<&Value>,
) -> Result<Resp, String> {
    let path = path_and_query.split('?').next().unwrap_or("");
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers: Vec<(&str, String)> =
        key.headers(token_id, method, path, bytes.as_bytes(), onepush::client::now_secs()).into_iter().collect();
    if path_and_query.contains("wait=") {
        headers.push(("Connection", "close".into()));
    }
    call(agent, method, &format!("{base}{path_and_query}"), &headers, body)
}

/// A `onepush serve` started by a benchmark, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub config: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a management command against `config`; its standard output.
pub fn cli(bin: &Path, config: &Path, args: &[&str], stdin: &str) -> String {
    let mut c = Command::new(bin)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running onepush");
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "onepush {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Starts `bin serve` on port 0 with a fresh config in `dir` (benchmark
/// settings plus `extra`); its log goes to `dir/server.log` at the level in
/// the environment variable `log_env` (default warn).
pub fn start(bin: &Path, dir: &Path, extra: &str, log_env: &str) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("onepush.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nmax_wait = \"60s\"\nmax_challenges_per_window = 1000000\n\
             trusted_proxies = [\"127.0.0.1\"]\n{extra}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", std::env::var(log_env).unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("starting onepush; build it first with cargo build --release");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("server printed nothing").unwrap();
    let base = first.strip_prefix("onepush listening on ").expect("listening line").to_string();
    std::thread::spawn(move || for _ in lines {});
    Server { child, base, config }
}

/// The descriptor soft limit up to the hard one (thousands of connections).
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
