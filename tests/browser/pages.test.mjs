// Browser tests of the pages, against the real binary, in headless Chromium.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { createECDH, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { startServer, launch, launchPersistent, cli, shot, provisionedApp, register, twoOtps, goto } from "./harness.mjs";

const C1 = "1000000001";

// A first Chromium start in a fresh machine can stall a page for seconds
// (seen twice in CI: one script request reached the server 16 s late).
// Pay that once here, untimed, so that it does not land inside a test.
before(async () => {
  const server = await startServer();
  const browser = await launch();
  try {
    const page = await (await browser.newContext()).newPage();
    for (const path of ["/register", "/app", "/admin", "/demo"]) {
      await page.goto(server.base + path, { timeout: 120000 });
    }
  } finally {
    await browser.close();
    server.proc.kill("SIGKILL");
  }
});

async function withWorld(extraConfig, fn) {
  const server = await startServer(extraConfig);
  const browser = await launch();
  try {
    await fn(server, browser);
  } finally {
    await browser.close();
    server.proc.kill("SIGKILL");
  }
}

async function demoLogin(page, base, user, password) {
  await goto(page, base + "/demo");
  await page.fill("#contract_no", C1);
  await page.fill("#user_id", user);
  await page.fill("#password", password);
  await page.click("#login button[type=submit]");
}

test("1. /app provisions and /register registers with its two OTPs", async () => {
  await withWorld("", async ({ base }, browser) => {
    const app = await provisionedApp(browser, base);
    assert.match(app.tokenId, /^ONEP[0-9]{8}$/);
    assert.match(await app.page.textContent("#otp"), /^[0-9]{6}$/);
    await shot(app.page, "1-app-provisioned");
    const reg = await register(browser, base, app, C1, "taro", "demo-pass-1");
    assert.ok((await reg.page.textContent("#done")).includes("登録が完了しました"));
    await shot(reg.page, "1-register-done");
    // A wrong check digit is flagged as it is typed, in the field.
    const p = await (await browser.newContext()).newPage();
    await goto(p, base + "/register");
    await p.fill("#contract_no", C1); await p.fill("#user_id", "hanako"); await p.fill("#password", "wrong-pass-1");
    await p.click("#step1 button[type=submit]");
    await p.fill("#token_id", "ONEP12345675");
    assert.equal(await p.getAttribute("#token_id", "aria-invalid"), "true");
    // An API error lands on its field, translated.
    await p.fill("#token_id", app.tokenId);
    const [a, b] = await twoOtps(app.page);
    await p.fill("#otp1", a); await p.fill("#otp2", b);
    await p.click("#step2 button[type=submit]");
    await p.waitForFunction(() => document.getElementById("password-err").textContent.length > 0);
    assert.ok((await p.textContent("#password-err")).includes("正しくありません"));
  });
});

test("2 and 3. /demo login is approved from /app; a transfer's lines appear on /app and are approved", async () => {
  await withWorld("", async ({ base }, browser) => {
    const app = await provisionedApp(browser, base);
    await register(browser, base, app, C1, "taro", "demo-pass-1");
    const bank = await (await browser.newContext()).newPage();
    await demoLogin(bank, base, "taro", "demo-pass-1");
    await bank.waitForSelector("#waiting:not(.hidden)");
    await app.page.waitForSelector("#challenge:not(.hidden)", { timeout: 30000 });
    assert.ok((await app.page.textContent("#ch-kind")).includes("ログイン"));
    // The demo bank uses number challenge: the bank shows the number, the
    // phone three choices, and approve waits for the right pick.
    const number = (await bank.textContent("#number")).trim();
    assert.match(number, /^[0-9]{2}$/);
    assert.ok(await app.page.isDisabled("#approve"));
    // The demo reports the browser as the client: its address and a summary of its user agent.
    const loginLines = await app.page.textContent("#ch-lines");
    assert.ok(loginLines.includes("接続元") && loginLines.includes("127.0.0.1") && loginLines.includes("Chrom"), loginLines);
    await shot(app.page, "2-app-login-challenge");
    await app.page.click(`#choices button:text-is("${number}")`);
    await app.page.click("#approve");
    await bank.waitForSelector("#dashboard:not(.hidden)", { timeout: 15000 });
    await shot(bank, "2-demo-dashboard");

    await bank.fill("#amount", "1250000");
    await bank.fill("#payee", "水戸商事株式会社");
    await bank.fill("#txpw", "demo-tx-1234");
    await bank.click("#transfer button[type=submit]");
    await app.page.waitForSelector("#challenge:not(.hidden)", { timeout: 30000 });
    const lines = await app.page.textContent("#ch-lines");
    assert.ok(lines.includes("1,250,000"), lines);
    assert.ok(lines.includes("水戸商事株式会社"), lines);
    await shot(app.page, "3-app-transfer-challenge");
    await app.page.click(`#choices button:text-is("${(await bank.textContent("#number")).trim()}")`);
    await app.page.click("#approve");
    await bank.waitForSelector("#done:not(.hidden)", { timeout: 15000 });
    assert.ok((await bank.textContent("#done-text")).includes("振込を受け付けました"));
    await shot(bank, "3-demo-transfer-done");
  });
});

test("4. rejection and timeout show their messages on /demo", async () => {
  await withWorld('challenge_ttl = "4s"', async ({ base }, browser) => {
    const app = await provisionedApp(browser, base);
    await register(browser, base, app, C1, "taro", "demo-pass-1");
    const bank = await (await browser.newContext()).newPage();
    await demoLogin(bank, base, "taro", "demo-pass-1");
    await app.page.waitForSelector("#challenge:not(.hidden)", { timeout: 30000 });
    await app.page.click("#reject");
    await bank.waitForFunction(() => document.getElementById("message").textContent.includes("拒否"), null, { timeout: 15000 });
    await shot(bank, "4-demo-rejected");
    // Timeout: nobody answers.
    await demoLogin(bank, base, "taro", "demo-pass-1");
    await bank.waitForFunction(() => document.getElementById("message").textContent.includes("時間内に承認されなかった"), null, { timeout: 20000 });
    await shot(bank, "4-demo-timeout");
    await app.page.waitForFunction(() => document.getElementById("state").textContent.length > 0, null, { timeout: 10000 });
  });
});

test("5. an operator signs in with the bootstrap code, suspends the user, and /demo shows the grace message", async () => {
  await withWorld("", async ({ base, code }, browser) => {
    assert.ok(code, "serve --demo printed a one-time operator code");
    const app = await provisionedApp(browser, base);
    await register(browser, base, app, C1, "taro", "demo-pass-1");
    const admin = await (await browser.newContext()).newPage();
    await goto(admin, base + "/admin");
    await admin.fill("#bt-code", code);
    await admin.fill("#bt-user", "alice");
    await admin.fill("#bt-pass", "operator-pass-1");
    await admin.click("#boot-form button[type=submit]");
    await admin.waitForSelector("#tabs:not(.hidden)");
    await shot(admin, "5-admin-dashboard");
    await admin.click("#tabs button[data-tab=contracts]");
    await admin.click(`button[data-open="${C1}"]`);
    await admin.click('tr[data-user="taro"] button');
    await admin.click('button[data-action="suspend"]');
    await admin.fill("#cf-reason", "customer asked by phone");
    await admin.fill("#cf-until", "2099-12-31");
    await shot(admin, "5-admin-confirm");
    await admin.click("#cf-ok");
    await admin.waitForFunction(() => document.querySelector('[data-field="adm.registration"]') && document.querySelector('[data-field="adm.registration"]').textContent.includes("一時停止"));
    await shot(admin, "5-admin-suspended");
    const bank = await (await browser.newContext()).newPage();
    await demoLogin(bank, base, "taro", "demo-pass-1");
    await bank.waitForSelector("#dashboard:not(.hidden)", { timeout: 15000 });
    assert.ok((await bank.textContent("#login-how")).includes("一時停止中"), await bank.textContent("#login-how"));
    await shot(bank, "5-demo-grace");
    // Deregistration revokes the token: /app says so at once.
    await admin.fill("#uf-contract", "1000000001");
    await admin.fill("#uf-user", "taro");
    await admin.click("#user-form button[type=submit]");
    await admin.click('button[data-action="deregister"]');
    await admin.fill("#cf-reason", "phone replaced");
    await admin.click("#cf-ok");
    await app.page.waitForSelector("#revoked:not(.hidden)", { timeout: 15000 });
    await shot(app.page, "5-app-revoked");
  });
});

test("6. the outage switch shows its notice on / and /notices", async () => {
  await withWorld("", async ({ base, code }, browser) => {
    const admin = await (await browser.newContext()).newPage();
    await goto(admin, base + "/admin");
    await admin.fill("#bt-code", code); await admin.fill("#bt-user", "alice"); await admin.fill("#bt-pass", "operator-pass-1");
    await admin.click("#boot-form button[type=submit]");
    await admin.waitForSelector("#tabs:not(.hidden)");
    await admin.click("#tabs button[data-tab=system]");
    // Suspension without a notice is refused in the page.
    await admin.click("#sys-on");
    assert.ok((await admin.textContent("#msg")).includes("お知らせが必要"));
    await admin.selectOption("#nt-kind", "outage");
    await admin.fill("#nt-title", "ワンプッシュ認証 障害のお知らせ");
    await admin.fill("#nt-body", "現在、ワンプッシュ認証をご利用いただけません。");
    await admin.click("#notice-form button[type=submit]");
    await admin.waitForFunction(() => document.querySelectorAll("#sys-notice option").length === 1);
    await admin.click("#sys-on");
    await admin.waitForFunction(() => document.getElementById("sys-state").textContent.includes("全体停止中"));
    await shot(admin, "6-admin-outage");
    const visitor = await (await browser.newContext()).newPage();
    for (const path of ["/", "/notices"]) {
      await goto(visitor, base + path);
      await visitor.waitForSelector("#suspended:not(.hidden)");
      await visitor.waitForFunction(() => document.getElementById("notices").textContent.includes("障害のお知らせ"));
      await shot(visitor, "6-outage" + path.replace("/", "-"));
    }
  });
});

test("7. the language switch turns every visible string to English, and is remembered", async () => {
  await withWorld("", async ({ base, code }, browser) => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    const japanese = /[\u3040-\u30ff\u4e00-\u9fff]/;
    for (const path of ["/", "/register", "/app", "/admin", "/demo", "/notices"]) {
      await goto(page, base + path);
      await page.waitForFunction(() => document.getElementById("lang-switch").textContent.length > 0);
      if (path === "/") {
        assert.match(await page.innerText("body"), japanese, "Japanese is the default");
        await page.click("#lang-switch");
      }
      await page.waitForTimeout(300);
      // Every visible string but the switch back ("日本語") and data (contract names).
      const text = (await page.innerText("body")).replace("日本語", "");
      assert.doesNotMatch(text, japanese, `${path} still shows Japanese: ${text.match(/.{0,20}[\u3040-\u30ff\u4e00-\u9fff].{0,20}/)}`);
      assert.equal(await page.getAttribute("html", "lang"), "en");
      await shot(page, "7-english" + (path === "/" ? "-home" : path.replace("/", "-")));
    }
    // The operator console, signed in, tab by tab.
    await goto(page, base + "/admin");
    await page.fill("#bt-code", code); await page.fill("#bt-user", "alice"); await page.fill("#bt-pass", "operator-pass-1");
    await page.click("#boot-form button[type=submit]");
    await page.waitForSelector("#tabs:not(.hidden)");
    for (const tab of ["dash", "contracts", "system", "audit"]) {
      await page.click(`#tabs button[data-tab=${tab}]`);
      await page.waitForTimeout(400);
      if (tab === "contracts") {
        await page.click('button[data-open="1000000001"]');
        await page.waitForSelector("#contract-detail:not(.hidden)");
      }
      // Contract names and audit details are data, not page strings.
      const text = (await page.innerText("body")).replace("日本語", "").replace(/デモ[^\s]*株式会社/g, "")
        .replace(/"[^"]*"/g, "");
      assert.doesNotMatch(text, japanese, `admin ${tab} still shows Japanese: ${text.match(/.{0,20}[\u3040-\u30ff\u4e00-\u9fff].{0,20}/)}`);
      await shot(page, "7-english-admin-" + tab);
    }
  });
});

// A subscription as a push service would give one (its own P-256 key and
// auth secret), for the page's PushManager: the browser vendor's push
// service is not reachable here (../shared/FACTS.md).
const FAKE_PUSH_HOST = "push.example.test";
function fakeSubscriptionScript() {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  const b64 = (b) => Buffer.from(b).toString("base64url");
  const sub = { endpoint: `https://${FAKE_PUSH_HOST}/wpush/` + b64(randomBytes(9)), keys: { p256dh: b64(ecdh.getPublicKey()), auth: b64(randomBytes(16)) } };
  return { sub, script: `(() => {
    // A real subscription outlives the page: so does this one (localStorage).
    const make = () => ({ endpoint: ${JSON.stringify(sub.endpoint)}, toJSON: () => (${JSON.stringify(sub)}), unsubscribe: async () => { localStorage.removeItem("fake-push"); return true; } });
    PushManager.prototype.subscribe = async function () { localStorage.setItem("fake-push", "1"); return make(); };
    PushManager.prototype.getSubscription = async function () { return localStorage.getItem("fake-push") ? make() : null; };
  })();` };
}

/** What the service worker has shown, read through the page. */
async function notifications(page) {
  return page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications())
    .map((n) => ({ title: n.title, body: n.body, tag: n.tag, actions: n.actions.map((a) => [a.action, a.title]) })));
}

test("8. /app installs, subscribes after the permission step, and its service worker shows and answers pushes", async () => {
  await withWorld(`push_allowed_hosts = ["${FAKE_PUSH_HOST}"]`, async (server, browser) => {
    const { base } = server;
    const rpKey = (await cli(server, "rp-key", "add", "bank")).trim();
    const rp = async (method, path, body) => {
      const r = await fetch(base + path, { method, headers: { Authorization: "Bearer " + rpKey, "Content-Type": "application/json" }, body: body && JSON.stringify(body) });
      return r.json();
    };
    const ctx = await launchPersistent();
    try {
      const fake = fakeSubscriptionScript();
      await ctx.addInitScript(fake.script);
      await ctx.grantPermissions(["notifications"], { origin: base });
      const page = ctx.pages()[0] || await ctx.newPage();
      const cdp = await ctx.newCDPSession(page);
      const registrations = [];
      cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => registrations.push(...e.registrations));
      await cdp.send("ServiceWorker.enable");
      await goto(page, base + "/app");
      await page.fill("#label", "Taro's Pixel");
      await page.click("#provision");
      await page.waitForSelector("#home:not(.hidden)");
      const app = { page, tokenId: await page.getAttribute("#token", "data-token-id") };
      assert.equal(await page.textContent("#device-name"), "Taro's Pixel");
      // The service worker is registered with a scope that covers /app, and
      // the page is installable (manifest, icons, worker).
      await page.evaluate(() => navigator.serviceWorker.ready);
      const scope = await page.evaluate(async () => (await navigator.serviceWorker.ready).scope);
      assert.equal(scope, base + "/app");
      let errors = null;
      for (let i = 0; i < 20; i++) {
        errors = (await cdp.send("Page.getInstallabilityErrors")).installabilityErrors;
        if (errors.length === 0) break;
        await page.waitForTimeout(250);
      }
      assert.deepEqual(errors, [], JSON.stringify(errors));
      const manifest = await (await fetch(base + "/static/app.webmanifest")).json();
      assert.deepEqual(manifest.icons.map((i) => i.sizes).sort(), ["192x192", "512x512", "512x512"]);
      // The permission step: the card offers it, the click subscribes and tells onepush.
      await page.waitForSelector("#enable-push:not(.hidden)");
      assert.ok((await page.textContent("#notify")).includes("ホーム画面に追加"), "the iOS step is named");
      await shot(page, "8-app-notifications-off");
      await page.click("#enable-push");
      await page.waitForFunction(() => document.getElementById("push-state").textContent.includes("通知が届きます"));
      const onServer = await page.evaluate(() => signed("GET", "/api/v1/device/push"));
      assert.deepEqual([onServer.status, onServer.body.kind, onServer.body.endpoint], [200, "webpush", fake.sub.endpoint]);
      await register(browser, base, app, C1, "taro", "demo-pass-1");

      const reg = registrations.find((r) => r.scopeURL === base + "/app" && !r.isDeleted);
      assert.ok(reg, JSON.stringify(registrations));
      const push = async (id, kind, expires) => cdp.send("ServiceWorker.deliverPushMessage",
        { origin: base, registrationId: reg.registrationId, data: JSON.stringify({ challenge_id: id, kind, expires_at: expires }) });
      const waitShown = async (tag) => {
        for (let i = 0; i < 40; i++) {
          const n = (await notifications(page)).find((x) => x.tag === tag);
          if (n) return n;
          await page.waitForTimeout(250);
        }
        assert.fail("no notification " + tag + ": " + JSON.stringify(await notifications(page)));
      };

      // A login through the bank's RP API (no number challenge): the
      // notification says what is asked, in Japanese, with the two actions.
      const login = async () => rp("POST", "/api/v1/login",
        { contract_no: C1, user_id: "taro", password: "demo-pass-1", client: { ip: "203.0.113.7", user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1" } });
      const first = await login();
      assert.equal(first.result, "challenge", JSON.stringify(first));
      await push(first.challenge_id, "login", first.expires_at);
      const ja = await waitShown("challenge-" + first.challenge_id);
      assert.equal(ja.title, "ログインの承認");
      for (const part of ["サービス", "契約番号: 1000000001", "利用者ID: taro", "接続元: 203.0.113.7", "Safari", "日時", "JST"]) assert.ok(ja.body.includes(part), part + " in " + ja.body);
      assert.deepEqual(ja.actions, [["approve", "承認"], ["reject", "拒否"]]);
      // The approve action signs in the service worker; the server accepts it.
      const [worker] = ctx.serviceWorkers();
      assert.ok(worker, "the worker runs");
      await worker.evaluate(async (tag) => {
        const [n] = await self.registration.getNotifications({ tag });
        self.dispatchEvent(new NotificationEvent("notificationclick", { notification: n, action: "approve" }));
      }, "challenge-" + first.challenge_id);
      let status = null;
      for (let i = 0; i < 40 && status !== "approved"; i++) {
        status = (await rp("GET", `/api/v1/challenges/${first.challenge_id}`)).status;
        if (status !== "approved") await page.waitForTimeout(250);
      }
      assert.equal(status, "approved");
      await waitShown("result-" + first.challenge_id);
      await page.waitForFunction(() => document.getElementById("history").textContent.includes("承認"));
      assert.ok((await page.textContent("#history")).includes("通知から"));

      // English: the app's language follows to the server's lines and to the notifications.
      await page.click("#lang-switch");
      // The app tells onepush (PUT /api/v1/device/settings) before the next login.
      await page.evaluate(() => langSync);
      assert.equal(await page.evaluate(() => dbGet("lang")), "en");
      const second = await login();
      await push(second.challenge_id, "login", second.expires_at);
      const en = await waitShown("challenge-" + second.challenge_id);
      assert.equal(en.title, "Approve login");
      for (const part of ["Service", "Contract: 1000000001", "User: taro", "Client: 203.0.113.7", "Time"]) assert.ok(en.body.includes(part), part + " in " + en.body);
      assert.deepEqual(en.actions, [["approve", "Approve"], ["reject", "Reject"]]);
      // Reject from the notification.
      await worker.evaluate(async (tag) => {
        const [n] = await self.registration.getNotifications({ tag });
        self.dispatchEvent(new NotificationEvent("notificationclick", { notification: n, action: "reject" }));
      }, "challenge-" + second.challenge_id);
      for (let i = 0; i < 40 && status !== "rejected"; i++) {
        status = (await rp("GET", `/api/v1/challenges/${second.challenge_id}`)).status;
        if (status !== "rejected") await page.waitForTimeout(250);
      }
      assert.equal(status, "rejected");

      // A transaction always opens the full display: no actions.
      const tx = await rp("POST", "/api/v1/approvals", { contract_no: C1, user_id: "taro", kind: "transaction", transaction_password: "demo-tx-1234",
        display: [["Amount", "JPY 1,250,000"], ["Payee", "Mito Trading Co."]] });
      assert.equal(tx.result, "challenge", JSON.stringify(tx));
      await push(tx.challenge_id, "transaction", tx.expires_at);
      const txn = await waitShown("challenge-" + tx.challenge_id);
      assert.equal(txn.title, "Approve transaction");
      assert.deepEqual(txn.actions, []);
      assert.ok(txn.body.includes("JPY 1,250,000") && txn.body.includes("Tap to"), txn.body);
      await rp("DELETE", `/api/v1/challenges/${tx.challenge_id}`, {});
      // A push for a request that has ended still shows a notification (iOS requires one).
      await push(tx.challenge_id, "transaction", tx.expires_at);
      for (let i = 0; i < 40; i++) {
        const n = (await notifications(page)).find((x) => x.tag === "challenge-" + tx.challenge_id && x.body.includes("already ended"));
        if (n) break;
        assert.ok(i < 39, "a notification for an ended request");
        await page.waitForTimeout(250);
      }
      // Back in Japanese, reopened: the device's name, notifications on, its recent decisions.
      await page.click("#lang-switch");
      await goto(page, base + "/app");
      await page.waitForFunction(() => document.getElementById("push-state").textContent.includes("通知が届きます"));
      await page.waitForFunction(() => document.querySelectorAll("#history li").length === 2);
      const history = await page.textContent("#history");
      assert.ok(history.includes("ログインの承認") && history.includes("拒否") && history.includes("（通知から）"), history);
      await shot(page, "8-app-home-notifications-on");
    } finally {
      await ctx.close();
    }
  });
});

// axe-core on every page, Japanese (the default) and English, phone-sized:
// no serious or critical violation.
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

async function axeViolations(page) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => axe.run(document, { resultTypes: ["violations"] }));
  return result.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
}

test("9. axe-core finds no serious or critical violation on any page, in either language", async () => {
  await withWorld("", async ({ base, code }, browser) => {
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await ctx.newPage();
    const found = [];
    const check = async (what) => {
      for (const v of await axeViolations(page)) found.push(`${what}: ${v}`);
    };
    for (const lang of ["ja", "en"]) {
      for (const path of ["/", "/register", "/app", "/admin", "/demo", "/notices"]) {
        await goto(page, base + path);
        await page.evaluate((l) => I18N.set(l), lang);
        await page.waitForTimeout(200);
        await check(`${path} (${lang})`);
      }
    }
    // The screens behind a step: /app set up with a request on screen, the
    // registration's second step, the operator console signed in.
    const app = await provisionedApp(browser, base);
    for (const v of await axeViolations(app.page)) found.push(`/app home: ${v}`);
    const reg = await register(browser, base, app, C1, "taro", "demo-pass-1");
    for (const v of await axeViolations(reg.page)) found.push(`/register done: ${v}`);
    const bank = await (await browser.newContext()).newPage();
    await demoLogin(bank, base, "taro", "demo-pass-1");
    await bank.waitForSelector("#waiting:not(.hidden)");
    for (const v of await axeViolations(bank)) found.push(`/demo waiting: ${v}`);
    await app.page.waitForSelector("#challenge:not(.hidden)", { timeout: 30000 });
    for (const v of await axeViolations(app.page)) found.push(`/app request: ${v}`);
    await goto(page, base + "/admin");
    await page.evaluate(() => I18N.set("ja"));
    await page.fill("#bt-code", code); await page.fill("#bt-user", "alice"); await page.fill("#bt-pass", "operator-pass-1");
    await page.click("#boot-form button[type=submit]");
    await page.waitForSelector("#tabs:not(.hidden)");
    for (const tab of ["dash", "contracts", "system", "audit"]) {
      await page.click(`#tabs button[data-tab=${tab}]`);
      await page.waitForTimeout(300);
      if (tab === "contracts") {
        await page.click('button[data-open="1000000001"]');
        await page.waitForSelector("#contract-detail:not(.hidden)");
      }
      for (const v of await axeViolations(page)) found.push(`/admin ${tab}: ${v}`);
    }
    assert.deepEqual(found, []);
  });
});

test("10. the operator console: the first operator's form in view, a translated cancel, readable history, only allowed actions, resume ends the outage notice", async () => {
  await withWorld("", async ({ base, code }, browser) => {
    // taro registers, logs in on /demo and approves on /app: his history has a login and its result.
    const app = await provisionedApp(browser, base);
    await register(browser, base, app, C1, "taro", "demo-pass-1");
    const bank = await (await browser.newContext()).newPage();
    await demoLogin(bank, base, "taro", "demo-pass-1");
    await app.page.waitForSelector("#challenge:not(.hidden)", { timeout: 30000 });
    await app.page.click(`#choices button:text-is("${(await bank.textContent("#number")).trim()}")`);
    await app.page.click("#approve");
    await bank.waitForSelector("#dashboard:not(.hidden)", { timeout: 15000 });

    const phone = { width: 390, height: 844 };
    const admin = await (await browser.newContext({ viewport: phone })).newPage();
    const shots = async (name) => {
      await shot(admin, name + "-phone");
      await admin.setViewportSize({ width: 1280, height: 900 });
      await shot(admin, name + "-desktop");
      await admin.setViewportSize(phone);
    };
    // No operator exists: the one-time code form is in view beside sign-in, nothing to expand.
    await goto(admin, base + "/admin");
    await admin.waitForSelector("#signin:not(.hidden)");
    assert.ok(await admin.isVisible("#signin-form") && await admin.isVisible("#boot-form") && await admin.isVisible("#bt-code"));
    assert.equal(await admin.locator("h1").count(), 1);
    await shots("10-admin-signin");
    await admin.fill("#bt-code", code); await admin.fill("#bt-user", "alice"); await admin.fill("#bt-pass", "operator-pass-1");
    await admin.click("#boot-form button[type=submit]");
    await admin.waitForSelector("#tabs:not(.hidden)");
    await admin.click("#tabs button[data-tab=contracts]");
    await admin.click(`button[data-open="${C1}"]`);
    await admin.click('tr[data-user="taro"] button');
    await admin.waitForSelector("#history tr[data-type=challenge_closed]");

    // An active user is offered what the state machine allows, and no more.
    const offered = async () => admin.$$eval("#user-detail button[data-action]", (bs) => bs.map((b) => b.dataset.action).sort());
    assert.deepEqual(await offered(), ["delete", "deregister", "stop", "suspend"]);
    // History in words: the login, its result and outcome; the raw names only inside the closed raw record.
    const row = async (type) => admin.innerText(`#history tr[data-type=${type}]`);
    assert.ok((await row("login")).includes("ログイン") && (await row("login")).includes("プッシュ送信"), await row("login"));
    const closed = await row("challenge_closed");
    for (const part of ["プッシュ認証の結果", "承認", "ログイン", "端末 " + app.tokenId]) assert.ok(closed.includes(part), part + " in " + closed);
    assert.ok((await row("registered")).includes("利用開始登録"));
    const visible = await admin.innerText("#user-detail");
    assert.doesNotMatch(visible, /challenge_closed|"status"/, visible);
    await admin.click("#history tr[data-type=challenge_closed] summary");
    assert.ok((await row("challenge_closed")).includes('"status": "approved"'), "the raw record is one click away");
    await shots("10-admin-history");

    // The confirmation's cancel button, in Japanese and in English; cancelling changes nothing.
    for (const [lang, cancel] of [["ja", "キャンセル"], ["en", "Cancel"]]) {
      await admin.click('button[data-action="suspend"]');
      await admin.waitForSelector("#confirm[open]");
      assert.equal((await admin.textContent("#cf-cancel")).trim(), cancel);
      await shots(`10-admin-confirm-${lang}`);
      await admin.click("#cf-cancel");
      await admin.waitForSelector("#confirm", { state: "hidden" });
      if (lang === "ja") await admin.click("#lang-switch");
    }
    assert.ok((await row("challenge_closed")).includes("Push request result") && (await row("challenge_closed")).includes("Approved"));
    assert.equal(await admin.textContent('[data-field="adm.registration"]'), "Active");
    await admin.click("#lang-switch");

    // Suspended, the same user is offered resume instead of suspend.
    await admin.click('button[data-action="suspend"]');
    await admin.fill("#cf-reason", "customer asked by phone");
    await admin.click("#cf-ok");
    await admin.waitForFunction(() => document.querySelector('[data-field="adm.registration"]').textContent.includes("一時停止"));
    assert.deepEqual(await offered(), ["delete", "deregister", "resume", "stop"]);
    const suspended = await row("user_suspended");
    for (const part of ["一時停止", "オペレーター alice", "customer asked by phone", "利用中 → 一時停止中"]) assert.ok(suspended.includes(part), part + " in " + suspended);

    // The audit tab: the same words, filtered by a translated type.
    await admin.click("#tabs button[data-tab=audit]");
    await admin.selectOption("#af-type", "user_suspended");
    await admin.click("#audit-form button[type=submit]");
    await admin.waitForFunction(() => document.querySelectorAll("#audit-table tbody tr").length === 1);
    assert.ok((await admin.innerText("#audit-table tbody")).includes("利用中 → 一時停止中"));
    await admin.selectOption("#af-type", "");
    await admin.click("#audit-form button[type=submit]");
    await admin.waitForFunction(() => document.querySelectorAll("#audit-table tbody tr").length > 5);
    assert.doesNotMatch(await admin.innerText("#audit-table"), /challenge_closed|contract_created/);
    await shots("10-admin-audit");

    // Outage on, then off: the notice that explained it leaves /notices.
    await admin.click("#tabs button[data-tab=system]");
    await admin.fill("#nt-title", "ワンプッシュ認証 障害のお知らせ");
    await admin.fill("#nt-body", "現在、ワンプッシュ認証をご利用いただけません。");
    await admin.click("#notice-form button[type=submit]");
    await admin.waitForFunction(() => document.querySelectorAll("#sys-notice option").length === 1);
    await admin.click("#sys-on");
    await admin.waitForSelector("#sys-off:visible");
    assert.ok(!(await admin.isVisible("#sys-on")), "only the switch that applies");
    const visitor = await (await browser.newContext()).newPage();
    await goto(visitor, base + "/notices");
    await visitor.waitForFunction(() => document.getElementById("notices").textContent.includes("障害のお知らせ"));
    await shots("10-admin-outage-on");
    await admin.click("#sys-off");
    await admin.waitForFunction(() => document.getElementById("sys-state").textContent.includes("通常運用"));
    await admin.waitForFunction(() => document.querySelectorAll("#sys-notice option").length === 0);
    await shots("10-admin-outage-off");
    await goto(visitor, base + "/notices");
    await visitor.waitForFunction(() => document.getElementById("notices").textContent.includes("お知らせはありません"));
    assert.ok(await visitor.isHidden("#suspended"));
    await shot(visitor, "10-notices-after-outage");
  });
});

test("11. the demo names a too-short password, and says how long to wait past the anti-fatigue limit", async () => {
  await withWorld("", async ({ base }, browser) => {
    const app = await provisionedApp(browser, base);
    await register(browser, base, app, C1, "taro", "demo-pass-1");
    const bank = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
    await demoLogin(bank, base, "taro", "short");
    await bank.waitForFunction(() => document.getElementById("message").textContent.includes("8文字以上"));
    // Five requests in the window, each superseding the last; the sixth is refused with the wait.
    for (let i = 0; i < 5; i++) {
      await demoLogin(bank, base, "taro", "demo-pass-1");
      await bank.waitForSelector("#waiting:not(.hidden)");
    }
    await demoLogin(bank, base, "taro", "demo-pass-1");
    await bank.waitForFunction(() => /[0-9]+分[0-9]+秒後/.test(document.getElementById("message").textContent));
    assert.match(await bank.textContent("#message"), /(9分5[0-9]|10分0)秒後/);
    await shot(bank, "11-demo-retry-after");
    await bank.click("#lang-switch");
    assert.match(await bank.textContent("#message"), /Try again in (9 min 5[0-9]|10 min 0) s/);
  });
});
