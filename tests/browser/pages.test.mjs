// Browser tests of the pages, against the real binary, in headless Chromium.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { startServer, launch, shot, provisionedApp, register, twoOtps, goto } from "./harness.mjs";

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
    await shot(app.page, "2-app-login-challenge");
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
    await admin.click("#signin summary");
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
    await admin.click("#signin summary");
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
    await page.click("#signin summary");
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
