//! The reference authenticator: the phone app as a command-line program.
//!
//!   authenticator --server http://127.0.0.1:8080 --state phone.json provision --label "Taro's phone"
//!   authenticator --state phone.json otp          # token ID and the two codes to register with
//!   authenticator --state phone.json watch        # show challenges, answer from the keyboard
//!   authenticator --state phone.json watch --auto approve
//!   authenticator --state phone.json push --unifiedpush https://ntfy.bank.example/up/abc
//!   authenticator --state phone.json push         # the current push subscription
//!   authenticator --state phone.json push --delete
//!
//! Push (API.md, "Push to the phone"): `--unifiedpush URL` registers a
//! UnifiedPush endpoint with the signed `PUT /api/v1/device/push`
//! `{"kind": "unifiedpush", "endpoint": URL}` and prints the server's answer
//! (200 `{"kind", "endpoint"}`, or the error: the URL must be `https://`,
//! without a user or password, on a host `push_allowed_hosts` allows). Given
//! to `provision`, it is sent right after provisioning, once the state file
//! is saved; `provision --push-endpoint URL` instead puts the endpoint in the
//! provisioning request itself (`push_endpoint`). This program does not
//! receive pushes: `watch` still long-polls, and onepush POSTs
//! `{"challenge_id"}` to the endpoint when a challenge is created.
//!
//! The state file holds the Ed25519 key and the OTP secret; it is created
//! with mode 0600. Long-polls send `Connection: close`, so a waiting phone
//! holds no server thread.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use common::{agent, call, device_call};
use onepush::client::{now_secs, DeviceKey};
use onepush::domain::totp;
use serde_json::{json, Value};

struct State {
    server: String,
    token_id: String,
    key: DeviceKey,
    otp_secret: String,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: authenticator [--server URL] --state FILE provision [--label L] [--push-endpoint URL] [--unifiedpush URL]\n       \
         authenticator --state FILE otp\n       \
         authenticator --state FILE watch [--auto approve|reject] [--once]\n       \
         authenticator --state FILE push [--unifiedpush URL | --delete]\n\
         --push-endpoint URL  UnifiedPush endpoint sent in the provisioning request (push_endpoint)\n\
         --unifiedpush URL    UnifiedPush endpoint registered with PUT /api/v1/device/push (after provisioning,\n                     \
         or for a provisioned phone with `push`); the server's answer is printed\n\
         push                 without a flag shows the current subscription; --delete removes it"
    );
    ExitCode::from(2)
}

fn load(path: &PathBuf) -> Result<State, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let seed = data_encoding::BASE64URL_NOPAD
        .decode(v["seed"].as_str().unwrap_or("").as_bytes())
        .map_err(|_| "state file: bad seed".to_string())?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| "state file: bad seed".to_string())?;
    Ok(State {
        server: v["server"].as_str().unwrap_or("").to_string(),
        token_id: v["token_id"].as_str().unwrap_or("").to_string(),
        key: DeviceKey::from_seed(&seed),
        otp_secret: v["otp_secret"].as_str().unwrap_or("").to_string(),
    })
}

fn save(path: &PathBuf, s: &State) -> Result<(), String> {
    let v = json!({
        "server": s.server, "token_id": s.token_id, "otp_secret": s.otp_secret,
        "seed": data_encoding::BASE64URL_NOPAD.encode(&s.key.seed()),
    });
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e} (it must not exist yet)", path.display()))?;
    f.write_all(format!("{v:#}\n").as_bytes()).map_err(|e| e.to_string())
}

fn codes(s: &State) -> Result<(String, String, u64), String> {
    let secret = data_encoding::BASE32_NOPAD.decode(s.otp_secret.as_bytes()).map_err(|_| "bad OTP secret")?;
    let now = now_secs() as u64;
    let step = totp::step_at(now);
    Ok((totp::totp(&secret, step), totp::totp(&secret, step + 1), totp::PERIOD_SECS - now % totp::PERIOD_SECS))
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut take = |flag: &str| -> Option<String> {
        let i = args.iter().position(|a| a == flag)?;
        args.remove(i);
        (i < args.len()).then(|| args.remove(i))
    };
    let server = take("--server").unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let Some(state_path) = take("--state").map(PathBuf::from) else { return usage() };
    let label = take("--label");
    let push_endpoint = take("--push-endpoint");
    let unifiedpush = take("--unifiedpush");
    let auto = take("--auto");
    let once = args.iter().any(|a| a == "--once");
    let delete = args.iter().any(|a| a == "--delete");
    let result = match args.first().map(String::as_str) {
        Some("provision") => {
            provision(&server, &state_path, label.as_deref(), push_endpoint.as_deref()).and_then(|()| match &unifiedpush {
                Some(url) => load(&state_path)
                    .and_then(|s| push(&s, Some(url), false))
                    .map_err(|e| format!("{e}\nthe phone is provisioned; register an endpoint later with: push --unifiedpush URL")),
                None => Ok(()),
            })
        }
        Some("push") if delete && unifiedpush.is_some() => return usage(),
        Some("push") => load(&state_path).and_then(|s| push(&s, unifiedpush.as_deref(), delete)),
        Some("otp") => load(&state_path).and_then(|s| {
            let (a, b, left) = codes(&s)?;
            println!("token ID: {}", s.token_id);
            println!("OTP 1: {a}   OTP 2 (the next code): {b}   ({left} s left)");
            Ok(())
        }),
        Some("watch") => load(&state_path).and_then(|s| watch(&s, auto.as_deref(), once)),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authenticator: {e}");
            ExitCode::from(1)
        }
    }
}

fn provision(server: &str, path: &PathBuf, label: Option<&str>, push: Option<&str>) -> Result<(), String> {
    if path.exists() {
        return Err(format!("{} exists; this phone is provisioned already", path.display()));
    }
    let key = DeviceKey::generate();
    let r = call(&agent(), "POST", &format!("{server}/api/v1/device/provision"), &[], Some(&key.provision_body(label, push)))?;
    if r.status != 201 {
        return Err(format!("provisioning failed ({}): {}", r.status, r.json["error"]["message"]));
    }
    let s = State {
        server: server.to_string(),
        token_id: r.json["token_id"].as_str().unwrap_or("").to_string(),
        key,
        otp_secret: r.json["otp_secret"].as_str().unwrap_or("").to_string(),
    };
    save(path, &s)?;
    let id = &s.token_id;
    println!("token ID: {} {} {}", &id[..4], &id[4..8], &id[8..]);
    let (a, b, left) = codes(&s)?;
    println!("OTP 1: {a}   OTP 2 (the next code): {b}   ({left} s left)");
    println!("register at {server}/register with the token ID and the two codes");
    Ok(())
}

/// The phone's push subscription: registers a UnifiedPush endpoint
/// (`Some(url)`), removes the subscription (`delete`) or shows it; prints
/// the server's answer either way.
fn push(s: &State, unifiedpush: Option<&str>, delete: bool) -> Result<(), String> {
    let (method, body) = match (unifiedpush, delete) {
        (Some(url), _) => ("PUT", Some(json!({"kind": "unifiedpush", "endpoint": url}))),
        (None, true) => ("DELETE", None),
        (None, false) => ("GET", None),
    };
    let r = device_call(&agent(), &s.server, &s.key, &s.token_id, method, "/api/v1/device/push", body.as_ref())?;
    println!("{method} /api/v1/device/push: {} {}", r.status, r.json);
    match r.status {
        200 => {
            match r.json["kind"].as_str() {
                Some(kind) => println!("push subscription: {kind} {}", r.json["endpoint"].as_str().unwrap_or("?")),
                None => println!("push subscription: none"),
            }
            Ok(())
        }
        403 => Err("this token has been revoked; provision the phone again".into()),
        status => Err(format!("{method} /api/v1/device/push refused ({status}): {}", r.json["error"]["message"])),
    }
}

fn watch(s: &State, auto: Option<&str>, once: bool) -> Result<(), String> {
    if let Some(a) = auto {
        if a != "approve" && a != "reject" {
            return Err("--auto takes approve or reject".into());
        }
    }
    let a = agent();
    let stdin = std::io::stdin();
    println!("watching for challenges for {} (Ctrl-C to stop)", s.token_id);
    loop {
        let r = match device_call(&a, &s.server, &s.key, &s.token_id, "GET", "/api/v1/device/challenges?wait=30", None) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("network: {e}; retrying in 3 s");
                std::thread::sleep(Duration::from_secs(3));
                continue;
            }
        };
        match r.status {
            200 => {}
            403 => return Err("this token has been revoked; provision the phone again".into()),
            _ => return Err(format!("{}: {}", r.status, r.json["error"]["message"])),
        }
        for ch in r.json["challenges"].as_array().cloned().unwrap_or_default() {
            let id = ch["challenge_id"].as_str().unwrap_or("");
            let display: Vec<(String, String)> = serde_json::from_value(ch["display"].clone()).unwrap_or_default();
            if onepush::domain::sig::display_digest(&display) != ch["display_digest"].as_str().unwrap_or("") {
                eprintln!("challenge {id}: the lines do not match their digest; ignored");
                continue;
            }
            println!("\n== {} request, expires {} ==", ch["kind"].as_str().unwrap_or("?"), ch["expires_at"].as_str().unwrap_or("?"));
            for (label, value) in &display {
                println!("  {label}: {value}");
            }
            let choices: Vec<String> = serde_json::from_value(ch["number_choices"].clone()).unwrap_or_default();
            let (decision, number, fraud) = match auto {
                Some(d) => {
                    println!("  -> {d} (automatic)");
                    (d.to_string(), choices.first().cloned(), false)
                }
                None => {
                    if !choices.is_empty() {
                        println!("  number shown by the bank? choices: {}", choices.join(" / "));
                    }
                    print!(
                        "  approve? [y]es / [n]o / [f] not me (report fraud){}: ",
                        if choices.is_empty() { "" } else { " / or type the number" }
                    );
                    let _ = std::io::stdout().flush();
                    let mut line = String::new();
                    stdin.lock().read_line(&mut line).map_err(|e| e.to_string())?;
                    let line = line.trim();
                    match line {
                        "y" | "yes" => ("approve".to_string(), choices.first().cloned(), false),
                        "f" => ("reject".to_string(), None, true),
                        n if choices.iter().any(|c| c == n) => ("approve".to_string(), Some(n.to_string()), false),
                        _ => ("reject".to_string(), None, false),
                    }
                }
            };
            let body = s.key.answer_body(id, &s.token_id, &decision, number.as_deref(), &display, fraud);
            let path = format!("/api/v1/device/challenges/{id}/response");
            match device_call(&a, &s.server, &s.key, &s.token_id, "POST", &path, Some(&body)) {
                Ok(r) if r.status == 200 => println!("  result: {}", r.json["status"].as_str().unwrap_or("?")),
                Ok(r) => println!("  not accepted ({}): {}", r.status, r.json["error"]["message"]),
                Err(e) => println!("  network: {e}"),
            }
            if once {
                return Ok(());
            }
        }
    }
}
