// /app: the web authenticator. An Ed25519 key made in WebCrypto (private
// part not extractable) and kept in IndexedDB; TOTP with WebCrypto HMAC-SHA1;
// Web Push through the service worker (sw.js) once the user allows
// notifications; signed long-polls for challenges while the page is open
// (the fallback); signed answers over the lines shown. Shared with the
// service worker: device.js.
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
    "app.unsupported": "このブラウザは Ed25519 (WebCrypto) に対応していません。",
    "app.device_name": "端末の名前",
    "app.no_name": "（名前なし）",
    "app.notify": "通知",
    "app.notify_text": "通知を許可すると、アプリを閉じていても承認依頼が届きます。ログインは通知から承認・拒否でき、お取引と届出はアプリで内容を確認してから承認します。",
    "app.enable_push": "通知を受け取る",
    "app.push_on": "この端末に通知が届きます。",
    "app.push_off": "通知はまだオフです。アプリを開いている間だけ依頼が表示されます。",
    "app.push_denied": "通知がブロックされています。ブラウザの設定でこのサイトの通知を許可してください。",
    "app.push_unsupported": "このブラウザは通知（Web Push）に対応していません。アプリを開いている間だけ依頼が表示されます。",
    "app.push_failed": "通知を設定できませんでした。通信環境を確認して、もう一度お試しください。",
    "app.push_refused": "この通知サービスは当行の設定で許可されていません。当行にお問い合わせください。",
    "app.ios_hint": "iPhone・iPad の場合：Safari の共有ボタンから「ホーム画面に追加」し、ホーム画面のアイコンから開いてから通知を許可してください。",
    "app.recent": "最近の操作（この端末）",
    "app.history_none": "まだ操作はありません。",
    "app.status.approved": "承認",
    "app.status.rejected": "拒否",
    "app.status.reported": "拒否・不正の報告",
    "app.via_notification": "（通知から）"
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
    "app.unsupported": "This browser does not support Ed25519 in WebCrypto.",
    "app.device_name": "Device name",
    "app.no_name": "(no name)",
    "app.notify": "Notifications",
    "app.notify_text": "With notifications allowed, requests reach you even when the app is closed. A login can be approved or rejected from the notification; transactions and filings open in the app so that you check them first.",
    "app.enable_push": "Turn on notifications",
    "app.push_on": "Notifications reach this device.",
    "app.push_off": "Notifications are off. Requests show only while the app is open.",
    "app.push_denied": "Notifications are blocked. Allow them for this site in the browser's settings.",
    "app.push_unsupported": "This browser does not support notifications (Web Push). Requests show only while the app is open.",
    "app.push_failed": "Notifications could not be set up. Check the connection and try again.",
    "app.push_refused": "The bank's settings do not allow this push service. Please contact the bank.",
    "app.ios_hint": "iPhone and iPad: in Safari, tap Share, then \"Add to Home Screen\", open the app from the Home Screen icon, then allow notifications.",
    "app.recent": "Recent decisions (this device)",
    "app.history_none": "No decisions yet.",
    "app.status.approved": "Approved",
    "app.status.rejected": "Rejected",
    "app.status.reported": "Rejected, fraud reported",
    "app.via_notification": "(from the notification)"
  }
});

const enc = new TextEncoder();
const $ = (id) => document.getElementById(id);

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

let device = null;      // {keys, token_id, otp_secret, label}, kept in IndexedDB (device.js)
let skew = 0;           // server time - local time, ms
let current = null;     // the challenge on screen
let pickedNumber = null;

function nowSecs() {
  return Math.floor((Date.now() + skew) / 1000);
}

/** A signed device request (device.js), with this page's clock skew. */
function signed(method, pathAndQuery, body) {
  return deviceFetch(device, skew, method, pathAndQuery, body);
}

function setState(key, bad) {
  const p = $("state");
  p.dataset.key = key || "";
  p.textContent = key ? I18N.t(key) : "";
  p.classList.toggle("bad", !!bad);
}

function show(section) {
  for (const id of ["setup", "home", "notify", "recent", "challenge", "revoked"]) $(id).classList.toggle("hidden", !section.includes(id));
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
  show(["home", "notify", "recent"]);
  setState(key, bad);
}

async function answer(decision, fraud) {
  if (!current) return;
  const c = current;
  const r = await answerChallenge(device, skew, c, decision, pickedNumber, fraud);
  if (r.status === 200) {
    const s = r.body.status;
    await recordDecision({ at: new Date().toISOString(), kind: c.kind, status: fraud ? "reported" : s, via: "app" });
    renderHistory();
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
    const r = await api("POST", "/api/v1/device/provision", { public_key: pk, proof, label, lang: I18N.lang() });
    if (r.status !== 201) { setState(r.status === 0 ? "err.network" : "err." + (r.body && r.body.error ? r.body.error.code : "other"), true); return; }
    device = { keys, token_id: r.body.token_id, otp_secret: r.body.otp_secret, label };
    skew = Date.parse(r.body.server_time) - Date.now();
    await dbPut("state", device);
    await dbPut("lang", I18N.lang());
    await dbPut("history", null);
    start();
  } catch (_) {
    setState("app.unsupported", true);
  } finally {
    $("provision").disabled = false;
  }
}

// ---- Notifications: the service worker, the permission step and the subscription.
let registration = null;
let pushState = null;   // the key of what the notifications card says

function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

function sayPush(key, bad) {
  pushState = key;
  $("push-state").textContent = I18N.t(key);
  $("push-state").classList.toggle("bad", !!bad);
}

/** Where notifications stand: asks nothing, only shows the step that is next. */
async function refreshPush() {
  if (!pushSupported()) { sayPush("app.push_unsupported", true); $("enable-push").classList.add("hidden"); return; }
  if (Notification.permission === "denied") { sayPush("app.push_denied", true); $("enable-push").classList.add("hidden"); return; }
  const sub = registration ? await registration.pushManager.getSubscription() : null;
  const server = await signed("GET", "/api/v1/device/push");
  if (server.status === 403) { revoked(); return; }
  const on = Notification.permission === "granted" && sub && server.status === 200 && server.body.endpoint === sub.endpoint;
  if (on) { sayPush("app.push_on", false); $("enable-push").classList.add("hidden"); return; }
  if (Notification.permission === "granted" && sub && server.status === 200) {
    // The server lost it (the push service answered 410) or holds an older one: send it again.
    const r = await putSubscription(device, skew, sub);
    if (r.status === 200) { sayPush("app.push_on", false); $("enable-push").classList.add("hidden"); return; }
  }
  sayPush("app.push_off", false);
  $("enable-push").classList.remove("hidden");
}

/** The permission step: asks, subscribes and tells onepush. */
async function enablePush() {
  $("enable-push").disabled = true;
  try {
    const permission = await Notification.requestPermission();
    if (permission !== "granted") { await refreshPush(); return; }
    registration = registration || await navigator.serviceWorker.ready;
    const sub = await subscribePush(registration);
    if (!sub) { sayPush("app.push_failed", true); return; }
    const r = await putSubscription(device, skew, sub);
    if (r.status === 200) { sayPush("app.push_on", false); $("enable-push").classList.add("hidden"); }
    else sayPush(r.status === 400 ? "app.push_refused" : "app.push_failed", true);
  } finally {
    $("enable-push").disabled = false;
  }
}

async function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  try {
    registration = await navigator.serviceWorker.register("/sw.js", { scope: "/app" });
  } catch (_) {
    registration = null;
  }
  navigator.serviceWorker.addEventListener("message", (e) => {
    // Answered from a notification: leave the request's screen.
    const m = e.data || {};
    if (m.type === "answered") {
      renderHistory();
      if (current && current.challenge_id === m.challenge_id) endChallenge(m.status === "approved" ? "app.approved" : m.status ? "app.rejected" : "app.closed", m.status !== "approved");
    }
  });
}

// ---- The device's own recent decisions (kept on the device, device.js).
async function renderHistory() {
  const list = (await dbGet("history")) || [];
  $("history-none").classList.toggle("hidden", list.length > 0);
  const fmt = new Intl.DateTimeFormat(I18N.lang() === "en" ? "en-GB" : "ja-JP", { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" });
  $("history").replaceChildren(...list.map((h) => el("li", {},
    el("span", { class: "when", text: fmt.format(new Date(h.at)) }), " ",
    el("span", { text: I18N.t("app.kind." + h.kind) }), " ",
    el("strong", { class: h.status === "approved" ? "ok" : "bad", text: I18N.t("app.status." + h.status) }),
    h.via === "notification" ? el("span", { class: "hint", text: " " + I18N.t("app.via_notification") }) : null)));
}

let langSync = Promise.resolve();  // the last language change on its way to the server

async function syncLang() {
  const lang = I18N.lang();
  if ((await dbGet("lang")) === lang) return;
  await dbPut("lang", lang);
  // The lines onepush composes (a login's) follow the app's language.
  if (device) await signed("PUT", "/api/v1/device/settings", { lang });
}

function start() {
  const t = device.token_id;
  $("token").textContent = `${t.slice(0, 4)} ${t.slice(4, 8)} ${t.slice(8)}`;
  $("token").dataset.tokenId = t;
  $("device-name").textContent = device.label || I18N.t("app.no_name");
  $("device-name").dataset.empty = device.label ? "" : "1";
  show(["home", "notify", "recent"]);
  setState("app.waiting", false);
  tick();
  renderHistory();
  registerWorker().then(refreshPush);
  pollLoop();
}

/** Set up again: the old token is gone, so is its push subscription. */
async function reset() {
  if (device) await signed("DELETE", "/api/v1/device/push");  // answered 403 once revoked: nothing to end then
  const sub = registration ? await registration.pushManager.getSubscription() : null;
  if (sub) await sub.unsubscribe();
  await dbPut("state", null);
  await dbPut("history", null);
  device = null;
  show(["setup"]);
}

document.addEventListener("i18n", () => {
  const k = $("state").dataset.key;
  if (k) $("state").textContent = I18N.t(k);
  if (pushState) $("push-state").textContent = I18N.t(pushState);
  if ($("device-name").dataset.empty === "1") $("device-name").textContent = I18N.t("app.no_name");
  renderChallenge();
  tick();
  if (device) { renderHistory(); langSync = syncLang(); }
});

document.addEventListener("DOMContentLoaded", async () => {
  $("provision").addEventListener("click", provision);
  $("approve").addEventListener("click", () => answer("approve", false));
  $("reject").addEventListener("click", () => answer("reject", false));
  $("fraud").addEventListener("click", () => answer("reject", true));
  $("enable-push").addEventListener("click", enablePush);
  $("reset").addEventListener("click", reset);
  setInterval(tick, 1000);
  device = await dbGet("state");
  if (device) start(); else show(["setup"]);
});
