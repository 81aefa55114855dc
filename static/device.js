// The web authenticator's device side, shared by the page (/app, app.js) and
// its service worker (/sw.js): the key and token kept in IndexedDB, signed
// device requests, signed answers and the local history of decisions. No DOM
// here: the service worker has none.
"use strict";

const DEVICE_ENC = new TextEncoder();

function b64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256hex(text) {
  return hex(await crypto.subtle.digest("SHA-256", DEVICE_ENC.encode(text)));
}

// ---- IndexedDB, one store "device" with three records:
//   "state"   {keys (CryptoKey pair, private part not extractable), token_id, otp_secret, label}
//   "lang"    "ja" | "en", the language the app was last shown in (for notifications)
//   "history" the newest decisions, [{at, kind, status, via}], at most HISTORY_MAX
const HISTORY_MAX = 10;

function deviceDb() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open("onepush", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("device");
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

async function dbGet(key) {
  const d = await deviceDb();
  return new Promise((resolve) => {
    const q = d.transaction("device").objectStore("device").get(key);
    q.onsuccess = () => resolve(q.result === undefined ? null : q.result);
    q.onerror = () => resolve(null);
  });
}

async function dbPut(key, value) {
  const d = await deviceDb();
  return new Promise((resolve, reject) => {
    const t = d.transaction("device", "readwrite");
    if (value === null) t.objectStore("device").delete(key); else t.objectStore("device").put(value, key);
    t.oncomplete = () => resolve();
    t.onerror = () => reject(t.error);
  });
}

async function recordDecision(entry) {
  const list = (await dbGet("history")) || [];
  list.unshift(entry);
  await dbPut("history", list.slice(0, HISTORY_MAX));
}

/**
 * A signed device request (API.md "Signed device requests"). `skew` is the
 * server's clock minus ours, in ms. Resolves to {status, body, date}; a
 * network failure gives status 0.
 */
async function deviceFetch(device, skew, method, pathAndQuery, body) {
  const path = pathAndQuery.split("?")[0];
  const text = body === undefined ? "" : JSON.stringify(body);
  const t = Math.floor((Date.now() + skew) / 1000);
  const msg = `onepush-device-v1\n${method}\n${path}\n${t}\n${await sha256hex(text)}`;
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, device.keys.privateKey, DEVICE_ENC.encode(msg));
  const headers = { "X-Onepush-Token": device.token_id, "X-Onepush-Time": String(t), "X-Onepush-Signature": b64url(sig) };
  const init = { method, headers };
  if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = text; }
  try {
    const r = await fetch(pathAndQuery, init);
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    return { status: r.status, body: data, date: r.headers.get("Date") };
  } catch (_) {
    return { status: 0, body: null, date: null };
  }
}

/** The server's clock minus ours (ms), from a response's Date header or body. */
function skewFrom(r) {
  const server = r.body && r.body.server_time ? Date.parse(r.body.server_time) : (r.date ? Date.parse(r.date) : NaN);
  return Number.isNaN(server) ? 0 : server - Date.now();
}

/**
 * Answers a challenge: signs `onepush-response-v1` over the lines that were
 * shown (their digest) and posts it. Resolves to the server's answer.
 */
async function answerChallenge(device, skew, c, decision, number, fraud) {
  const digest = await sha256hex(c.display.map(([l, v]) => `${l}\t${v}\n`).join(""));
  const n = decision === "approve" && c.number_choices ? number : null;
  const msg = `onepush-response-v1\n${c.challenge_id}\n${device.token_id}\n${decision}\n${n || ""}\n${digest}`;
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, device.keys.privateKey, DEVICE_ENC.encode(msg));
  const body = { token_id: device.token_id, decision, number: n, report_fraud: !!fraud, signature: b64url(sig) };
  return deviceFetch(device, skew, "POST", `/api/v1/device/challenges/${c.challenge_id}/response`, body);
}

function unb64url(s) {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
}

/** Subscribes `registration` to Web Push with onepush's VAPID key; null if it cannot. */
async function subscribePush(registration) {
  try {
    const existing = await registration.pushManager.getSubscription();
    if (existing) return existing;
    const r = await fetch("/api/v1/device/push-config");
    const cfg = await r.json();
    return await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: unb64url(cfg.vapid_public_key) });
  } catch (_) {
    return null;
  }
}

/** Tells onepush where to push (PUT /api/v1/device/push). */
async function putSubscription(device, skew, sub) {
  const j = sub.toJSON();
  const strip = (s) => String(s || "").replace(/=+$/, "");
  return deviceFetch(device, skew, "PUT", "/api/v1/device/push",
    { kind: "webpush", endpoint: j.endpoint, p256dh: strip(j.keys && j.keys.p256dh), auth: strip(j.keys && j.keys.auth) });
}
