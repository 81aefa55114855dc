//! The shortest correct RP integration: login → wait → outcome.
//!
//!   rp_client --server http://127.0.0.1:8080 --key "$RP_KEY" --contract 1000000001 --user taro --password '...'
//!
//! Exit 0 when the login may proceed (approved, or allowed without push),
//! 1 when it must not.

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;

use common::{agent, call};
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let (Some(key), Some(contract), Some(user), Some(password)) = (arg("--key"), arg("--contract"), arg("--user"), arg("--password"))
    else {
        eprintln!("usage: rp_client [--server URL] --key RP_KEY --contract NO --user ID --password PW");
        return ExitCode::from(2);
    };
    let server = arg("--server").unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let a = agent();
    let auth = vec![("Authorization", format!("Bearer {key}"))];

    // 1. Ask onepush: it checks the password and pushes a challenge to the phone.
    let body = json!({"contract_no": contract, "user_id": user, "password": password,
                      "client": {"ip": "203.0.113.7", "user_agent": "rp_client"}});
    let r = match call(&a, "POST", &format!("{server}/api/v1/login"), &auth, Some(&body)) {
        Ok(r) if r.status == 200 => r,
        Ok(r) => {
            eprintln!("login refused by onepush ({}): {}", r.status, r.json["error"]["message"]);
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    match r.json["result"].as_str() {
        Some("allow") => {
            println!("allowed without push: {}", r.json["reason"].as_str().unwrap_or(""));
            return ExitCode::SUCCESS;
        }
        Some("deny") => {
            println!("denied: {}", r.json["reason"].as_str().unwrap_or(""));
            return ExitCode::from(1);
        }
        _ => {}
    }
    let id = r.json["challenge_id"].as_str().unwrap_or_default().to_string();
    match r.json["number"].as_str() {
        Some(n) => println!("approve on your phone, choosing the number {n}"),
        None => println!("approve on your phone"),
    }

    // 2. Wait for the outcome: each call returns as soon as it is decided, or after 30 s.
    let mut wait_h = auth.clone();
    wait_h.push(("Connection", "close".into()));
    loop {
        let r = match call(&a, "GET", &format!("{server}/api/v1/challenges/{id}?wait=30"), &wait_h, None) {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                eprintln!("{}: {}", r.status, r.json["error"]["message"]);
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        // 3. Only `approved` lets the login proceed.
        match r.json["status"].as_str() {
            Some("pending") => continue,
            Some("approved") => {
                println!("approved");
                return ExitCode::SUCCESS;
            }
            Some(other) => {
                println!("not approved: {other}");
                return ExitCode::from(1);
            }
            None => return ExitCode::from(1),
        }
    }
}
