//! HTTP helpers shared by the examples (ureq with status codes as values).
#![allow(dead_code)]

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
