// /app: the web authenticator. An Ed25519 key made in WebCrypto (private
// part not extractable) and kept in IndexedDB; TOTP with WebCrypto HMAC-SHA1;
// signed long-polls for challenges; signed answers over the lines shown.
"use strict";

I18N.extend({
  ja: {
    "app.title": "ワンプッシュ認証アプリ",
    "app.setup": "このブラウザを認証アプリとして設定",
    "app.setup_text": "このブラウザで鍵を作成し、トークンIDとワンタイムパスワードを発行します。鍵はこの端末から取り出せません。",
    "app.label": "端末の名前（任意）",
    "app.provision": "設定する",
    "app.token_id": "トークンID",
    "app.otp": "ワンタイムパスワード",
    "app.register_hint": "利用開始登録では、このトークンIDと、続けて表示される2つのワンタイムパスワードを入力します。",
    "app.waiting": "承認依頼を待っています…",
    "app.offline": "通信できません。再接続しています…",
    "app.revoked": "このトークンは無効になりました（登録解除・利用停止など）。再度設定してください。",
    "app.provision_again": "もう一度設定する",
    "app.kind.login": "ログインの承認",
    "app.kind.notice": "届出の承認",
    "app.kind.transaction": "お取引の承認",
    "app.pick_number": "銀行の画面に表示された数字を選んでください",
    "app.approve": "承認",
    "app.reject": "拒否",
    "app.not_me": "心当たりがない（不正の報告）",
    "app.approved": "承認しました。",
    "app.rejected": "拒否しました。",
    "app.reported": "拒否し、当行に報告しました。",
    "app.expired": "時間切れです。この依頼は無効になりました。",
    "app.closed": "この依頼は既に終了しています。",
    "app.unsupported": "このブラウザは Ed25519 (WebCrypto) に対応していません。"
  },
  en: {
    "app.title": "One-push authenticator",
    "app.setup": "Set up this browser as your authenticator",
    "app.setup_text": "This browser makes a key and receives a token ID and one-time passwords. The key cannot leave this device.",
    "app.label": "Device name (optional)",
    "app.provision": "Set up",
    "app.token_id": "Token ID",
    "app.otp": "One-time password",
    "app.register_hint": "To register, enter this token ID and two consecutive one-time passwords.",
    "app.waiting": "Waiting for requests…",
    "app.offline": "Cannot reach the server. Reconnecting…",
    "app.revoked": "This token is no longer valid (deregistered or stopped). Set up again.",
    "app.provision_again": "Set up again",
    "app.kind.login": "Approve login",
    "app.kind.notice": "Approve filing",
    "app.kind.transaction": "Approve transaction",
    "app.pick_number": "Pick the number the bank's screen shows",
    "app.approve": "Approve",
    "app.reject": "Reject",
    "app.not_me": "This wasn't me (report fraud)",
    "app.approved": "Approved.",
    "app.rejected": "Rejected.",
    "app.reported": "Rejected and reported to the bank.",
    "app.expired": "Time is up. This request is no longer valid.",
    "app.closed": "This request has already ended.",
    "app.unsupported": "This browser does not support Ed25519 in WebCrypto."
  }
});

const enc = new TextEncoder();
const $ = (id) => document.getElementById(id);

function b64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256hex(text) {
  return hex(await crypto.subtle.digest("SHA-256", enc.encode(text)));
}

function base32decode(s) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0, value = 0;
  const out = [];
  for (const c of s.replace(/=+$/, "")) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) { out.push((value >>> (bits - 8)) & 255); bits -= 8; }
  }
  return new Uint8Array(out);
}

// ---- IndexedDB: one record holding the key pair (CryptoKey objects) and token.
function db() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open("onepush", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("device");
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
async function load() {
  const d = await db();
  return new Promise((resolve) => {
    const q = d.transaction("device").objectStore("device").get("state");
    q.onsuccess = () => resolve(q.result || null);
    q.onerror = () => resolve(null);
  });
}
async function save(state) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction("device", "readwrite");
    if (state) t.objectStore("device").put(state, "state"); else t.objectStore("device").delete("state");
    t.oncomplete = () => resolve();
    t.onerror = () => reject(t.error);
  });
}

let device = null;      // {keys, token_id, otp_secret}
let skew = 0;           // server time - local time, ms
let current = null;     // the challenge on screen
let pickedNumber = null;

async function sign(text) {
  return b64url(await crypto.subtle.sign({ name: "Ed25519" }, device.keys.privateKey, enc.encode(text)));
}

function nowSecs() {
  return Math.floor((Date.now() + skew) / 1000);
}

/** A signed device request (API.md "Signed device requests"). */
async function signed(method, pathAndQuery, body) {
  const path = pathAndQuery.split("?")[0];
  const text = body === undefined ? "" : JSON.stringify(body);
  const t = nowSecs();
  const msg = `onepush-device-v1\n${method}\n${path}\n${t}\n${await sha256hex(text)}`;
  const headers = { "X-Onepush-Token": device.token_id, "X-Onepush-Time": String(t), "X-Onepush-Signature": await sign(msg) };
  const init = { method, headers };
  if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = text; }
  try {
    const r = await fetch(pathAndQuery, init);
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    return { status: r.status, body: data };
  } catch (_) {
    return { status: 0, body: null };
  }
}

function setState(key, bad) {
  const p = $("state");
  p.dataset.key = key || "";
  p.textContent = key ? I18N.t(key) : "";
  p.classList.toggle("bad", !!bad);
}

function show(section) {
  for (const id of ["setup", "home", "challenge", "revoked"]) $(id).classList.toggle("hidden", !section.includes(id));
}

async function totp(step) {
  const key = await crypto.subtle.importKey("raw", base32decode(device.otp_secret), { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  const counter = new DataView(new ArrayBuffer(8));
  counter.setUint32(0, Math.floor(step / 2 ** 32));
  counter.setUint32(4, step >>> 0);
  const h = new Uint8Array(await crypto.subtle.sign("HMAC", key, counter.buffer));
  const o = h[h.length - 1] & 15;
  const bin = ((h[o] & 127) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1000000).padStart(6, "0");
}

async function tick() {
  if (device) {
    const t = nowSecs();
    $("otp").textContent = await totp(Math.floor(t / 30));
    $("otp-left").textContent = I18N.t("app.seconds_left").replace("{n}", String(30 - (t % 30)));
  }
  if (current) {
    const left = Math.max(0, Math.ceil((Date.parse(current.expires_at) - Date.now() - skew) / 1000));
    $("ch-left").textContent = I18N.t("app.seconds_left").replace("{n}", String(left));
    if (left === 0) endChallenge("app.expired", true);
  }
}

function renderChallenge() {
  if (!current) return;
  $("ch-kind").textContent = I18N.t("app.kind." + current.kind);
  const body = $("ch-lines").querySelector("tbody");
  body.replaceChildren(...current.display.map(([l, v]) => el("tr", {}, el("th", { scope: "row", text: l }), el("td", { text: v }))));
  const choices = $("choices");
  choices.querySelectorAll("button").forEach((b) => b.remove());
  choices.classList.toggle("hidden", !current.number_choices);
  for (const n of current.number_choices || []) {
    choices.append(el("button", { type: "button", class: "secondary", "aria-pressed": String(pickedNumber === n), text: n, onclick: () => { pickedNumber = n; renderChallenge(); } }));
  }
  $("approve").disabled = !!current.number_choices && pickedNumber === null;
}

function endChallenge(key, bad) {
  current = null;
  pickedNumber = null;
  show(["home"]);
  setState(key, bad);
}

async function answer(decision, fraud) {
  if (!current) return;
  const c = current;
  const digest = await sha256hex(c.display.map(([l, v]) => `${l}\t${v}\n`).join(""));
  const number = decision === "approve" && c.number_choices ? pickedNumber : null;
  const msg = `onepush-response-v1\n${c.challenge_id}\n${device.token_id}\n${decision}\n${number || ""}\n${digest}`;
  const body = { token_id: device.token_id, decision, number, report_fraud: !!fraud, signature: await sign(msg) };
  const r = await signed("POST", `/api/v1/device/challenges/${c.challenge_id}/response`, body);
  if (r.status === 200) {
    const s = r.body.status;
    endChallenge(s === "approved" ? "app.approved" : fraud ? "app.reported" : "app.rejected", s !== "approved");
  } else if (r.status === 403) {
    revoked();
  } else if (r.status === 409) {
    endChallenge("app.closed", true);
  } else if (r.status === 0) {
    setState("app.offline", true);
  } else {
    endChallenge("err.other", true);
  }
}

function revoked() {
  current = null;
  show(["revoked"]);
  setState("", false);
}

async function pollLoop() {
  let backoff = 1000;
  while (device) {
    if (current) { await new Promise((r) => setTimeout(r, 500)); continue; }
    const r = await signed("GET", "/api/v1/device/challenges?wait=25");
    if (r.status === 200) {
      backoff = 1000;
      skew = Date.parse(r.body.server_time) - Date.now();
      const c = r.body.challenges[0];
      if (c) {
        current = c;
        pickedNumber = null;
        show(["challenge"]);
        setState("", false);
        renderChallenge();
        tick();
        $("approve").focus();
      } else if (($("state").dataset.key || "") === "app.offline") {
        setState("app.waiting", false);
      }
    } else if (r.status === 403) {
      revoked();
      return;
    } else {
      setState("app.offline", true);
      await new Promise((res) => setTimeout(res, backoff));
      backoff = Math.min(backoff * 2, 15000);
    }
  }
}

async function provision() {
  $("provision").disabled = true;
  try {
    const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    const pk = b64url(await crypto.subtle.exportKey("raw", keys.publicKey));
    const proof = b64url(await crypto.subtle.sign({ name: "Ed25519" }, keys.privateKey, enc.encode("onepush-provision-v1\n" + pk)));
    const label = $("label").value.trim() || null;
    const r = await api("POST", "/api/v1/device/provision", { public_key: pk, proof, label });
    if (r.status !== 201) { setState(r.status === 0 ? "err.network" : "err." + (r.body && r.body.error ? r.body.error.code : "other"), true); return; }
    device = { keys, token_id: r.body.token_id, otp_secret: r.body.otp_secret };
    skew = Date.parse(r.body.server_time) - Date.now();
    await save(device);
    start();
  } catch (_) {
    setState("app.unsupported", true);
  } finally {
    $("provision").disabled = false;
  }
}

function start() {
  const t = device.token_id;
  $("token").textContent = `${t.slice(0, 4)} ${t.slice(4, 8)} ${t.slice(8)}`;
  $("token").dataset.tokenId = t;
  show(["home"]);
  setState("app.waiting", false);
  tick();
  pollLoop();
}

document.addEventListener("i18n", () => {
  const k = $("state").dataset.key;
  if (k) $("state").textContent = I18N.t(k);
  renderChallenge();
  tick();
});

document.addEventListener("DOMContentLoaded", async () => {
  $("provision").addEventListener("click", provision);
  $("approve").addEventListener("click", () => answer("approve", false));
  $("reject").addEventListener("click", () => answer("reject", false));
  $("fraud").addEventListener("click", () => answer("reject", true));
  $("reset").addEventListener("click", async () => { await save(null); device = null; show(["setup"]); });
  setInterval(tick, 1000);
  device = await load();
  if (device) start(); else show(["setup"]);
});
