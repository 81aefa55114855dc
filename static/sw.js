// The web authenticator's service worker. Served from /sw.js and registered
// with the scope /app, so that it runs when /app is closed. For every push it
// shows a notification (iOS withdraws the permission of a worker that shows
// none): it fetches what is asked with a signed device request (the push
// carries only the challenge id, kind and expiry) and says it in the app's
// language. A login without number challenge may be approved or rejected from
// the notification's actions, signed here with the same non-extractable key;
// anything else opens /app, which shows the full request.
"use strict";
importScripts("/static/device.js");

const TEXT = {
  ja: {
    "login": "ログインの承認",
    "notice": "届出の承認",
    "transaction": "お取引の承認",
    "other": "承認依頼",
    "approve": "承認",
    "reject": "拒否",
    "open": "タップして内容を確認し、承認または拒否してください。",
    "pick": "タップしてアプリを開き、銀行の画面の数字を選んでください。",
    "closed": "この依頼は既に終了しています。",
    "unreachable": "依頼が届きました。タップしてアプリを開いてください。",
    "approved": "承認しました",
    "rejected": "拒否しました",
    "failed": "送信できませんでした。アプリを開いてください。"
  },
  en: {
    "login": "Approve login",
    "notice": "Approve filing",
    "transaction": "Approve transaction",
    "other": "Approval request",
    "approve": "Approve",
    "reject": "Reject",
    "open": "Tap to check the request and approve or reject it.",
    "pick": "Tap to open the app and pick the number the bank's screen shows.",
    "closed": "This request has already ended.",
    "unreachable": "A request arrived. Tap to open the app.",
    "approved": "Approved",
    "rejected": "Rejected",
    "failed": "Could not send. Please open the app."
  }
};

const ICON = "/static/icon-192.png";

async function texts() {
  return TEXT[(await dbGet("lang")) === "en" ? "en" : "ja"];
}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

/** The pending challenges, signed; one retry with the server's clock after a 401. */
async function pending(device) {
  let r = await deviceFetch(device, 0, "GET", "/api/v1/device/challenges");
  if (r.status === 401 && r.date) r = await deviceFetch(device, skewFrom(r), "GET", "/api/v1/device/challenges");
  return r.status === 200 ? { list: r.body.challenges, skew: skewFrom(r) } : null;
}

self.addEventListener("push", (event) => event.waitUntil(onPush(event)));

async function onPush(event) {
  let msg = {};
  try { msg = event.data ? event.data.json() : {}; } catch (_) { msg = {}; }
  const t = await texts();
  const device = await dbGet("state");
  const got = device ? await pending(device) : null;
  const c = got ? got.list.find((x) => x.challenge_id === msg.challenge_id) || null : null;
  const tag = "challenge-" + (msg.challenge_id || "unknown");
  if (!got) {
    // Offline or not set up: still say that something was asked.
    return self.registration.showNotification(t[msg.kind] || t.other, { body: t.unreachable, tag, icon: ICON, data: {} });
  }
  if (!c) {
    return self.registration.showNotification(t[msg.kind] || t.other, { body: t.closed, tag, icon: ICON, data: {} });
  }
  const quick = c.kind === "login" && !c.number_choices;
  const lines = c.display.map(([l, v]) => `${l}: ${v}`).join("\n");
  return self.registration.showNotification(t[c.kind] || t.other, {
    body: lines + "\n" + (c.number_choices ? t.pick : t.open),
    tag,
    icon: ICON,
    requireInteraction: true,
    timestamp: Date.parse(c.created_at),
    // What the actions sign: the lines shown above, and no more.
    data: { challenge: c, token_id: device.token_id, skew: got.skew },
    actions: quick ? [{ action: "approve", title: t.approve }, { action: "reject", title: t.reject }] : [],
  });
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(onClick(event.notification, event.action));
});

async function onClick(n, action) {
  const data = n.data || {};
  const c = data.challenge;
  if (c && c.kind === "login" && !c.number_choices && (action === "approve" || action === "reject")) {
    return answerFromNotification(data, c, action);
  }
  return openApp();
}

async function answerFromNotification(data, c, decision) {
  const t = await texts();
  const device = await dbGet("state");
  if (!device || device.token_id !== data.token_id) return openApp();
  const r = await answerChallenge(device, data.skew || 0, c, decision, null, false);
  let body;
  if (r.status === 200) {
    await recordDecision({ at: new Date().toISOString(), kind: c.kind, status: r.body.status, via: "notification" });
    body = r.body.status === "approved" ? t.approved : t.rejected;
  } else if (r.status === 409) {
    body = t.closed;
  } else {
    body = t.failed;
  }
  for (const w of await self.clients.matchAll({ type: "window" })) {
    w.postMessage({ type: "answered", challenge_id: c.challenge_id, status: r.status === 200 ? r.body.status : null });
  }
  return self.registration.showNotification(t[c.kind], { body, tag: "result-" + c.challenge_id, icon: ICON, data: {} });
}

async function openApp() {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const open = windows.find((w) => new URL(w.url).pathname === "/app");
  if (open) return open.focus();
  return self.clients.openWindow("/app");
}

// The push service replaced the subscription: subscribe again and tell onepush.
self.addEventListener("pushsubscriptionchange", (event) => event.waitUntil(resubscribe()));

async function resubscribe() {
  const device = await dbGet("state");
  if (!device) return;
  const sub = await subscribePush(self.registration);
  if (sub) await putSubscription(device, 0, sub);
}
