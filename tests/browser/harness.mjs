// Starts the real onepush binary (release build) for a browser test, and
// Chromium through playwright-core. Loopback only; every wait is bounded.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

export const ROOT = resolve(import.meta.dirname, "../..");
export const ARTIFACTS = join(ROOT, "target", "browser-artifacts");
mkdirSync(ARTIFACTS, { recursive: true });

/** Starts `onepush serve --demo`; resolves {base, code, proc, lines}. */
export async function startServer(extraConfig = "") {
  const dir = mkdtempSync(join(tmpdir(), "onepush-browser-"));
  const config = join(dir, "onepush.toml");
  writeFileSync(config, `listen = "127.0.0.1:0"\ndata_dir = "${join(dir, "data")}"\nargon2_memory_kib = 1024\nargon2_iterations = 1\n${extraConfig}\n`);
  // The server's log is kept with the screenshots, for a failure's diagnosis.
  const log = openSync(join(ARTIFACTS, `server-${Date.now()}-${process.pid}.log`), "w");
  const proc = spawn(join(ROOT, "target/release/onepush"), ["serve", "--demo", "--config", config], {
    stdio: ["ignore", "pipe", log],
    env: { ...process.env, RUST_LOG: "info" },
  });
  const lines = [];
  await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("server did not start: " + lines.join("\n"))), 20000);
    let buf = "";
    proc.stdout.on("data", (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        if (line === "") { clearTimeout(timer); ok(); }
      }
    });
    proc.on("exit", (c) => fail(new Error("server exited " + c)));
  });
  const base = lines[0].replace("onepush listening on ", "").trim();
  // Not a terminal: the one-time code is written to a 0600 file, not printed.
  const codeLine = lines.find((l) => l.includes("One-time code for the first operator"));
  let code = null;
  if (codeLine && codeLine.includes(" written to ")) {
    code = readFileSync(codeLine.split(" written to ").pop().trim(), "utf8").trim();
  } else if (codeLine) {
    code = codeLine.split(": ").pop().trim();
  }
  return { base, code, proc, lines, dir, config };
}

/**
 * Chromium with a profile directory: installability and service workers are
 * checked only outside incognito (../shared/FACTS.md), and a plain
 * `browser.newContext()` is incognito.
 */
export async function launchPersistent(viewport) {
  const dir = mkdtempSync(join(tmpdir(), "onepush-profile-"));
  return chromium.launchPersistentContext(dir, {
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
    viewport: viewport || { width: 390, height: 844 },
  });
}

/** `onepush CLI...` against the test server's config; resolves to stdout. */
export async function cli(server, ...args) {
  const { execFileSync } = await import("node:child_process");
  return execFileSync(join(ROOT, "target/release/onepush"), [...args, "--config", server.config], { encoding: "utf8" });
}

export async function launch() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
  });
}

/**
 * page.goto, tried twice, and a retry is printed. The hangs once seen here
 * (a script request answered only when the browser closed) came from
 * tiny_http's thread pool queueing a burst of new connections behind one
 * idle thread; that is fixed (vendor/PATCHES.md) and tested in tests/api.rs.
 * The retry stays as a guard; the server log in the artifacts shows what the
 * server did meanwhile.
 */
export async function goto(page, url) {
  try {
    await page.goto(url, { timeout: 15000 });
  } catch (e) {
    console.error(`retrying navigation to ${url}: ${e.message.split("\n")[0]}`);
    await page.goto(url, { timeout: 45000 });
  }
}

export async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, name + ".png"), fullPage: true });
}

/** An /app page provisioned in its own context; returns {page, tokenId}. */
export async function provisionedApp(browser, base) {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await ctx.newPage();
  await goto(page, base + "/app");
  await page.click("#provision");
  await page.waitForSelector("#home:not(.hidden)");
  const tokenId = await page.getAttribute("#token", "data-token-id");
  return { ctx, page, tokenId };
}

/** The current and the next OTP, from the app page's own TOTP code. */
export async function twoOtps(appPage) {
  return appPage.evaluate(async () => {
    const step = Math.floor(nowSecs() / 30);
    return [await totp(step), await totp(step + 1)];
  });
}

/** Registers the app's token for a demo user through /register. */
export async function register(browser, base, app, contract, user, password) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await goto(page, base + "/register");
  await page.fill("#contract_no", contract);
  await page.fill("#user_id", user);
  await page.fill("#password", password);
  await page.click("#step1 button[type=submit]");
  // Lower case with spaces: the page tolerates it, as the server does.
  await page.fill("#token_id", app.tokenId.toLowerCase().replace(/^(.{4})(.{4})/, "$1 $2-"));
  const [otp1, otp2] = await twoOtps(app.page);
  await page.fill("#otp1", otp1);
  await page.fill("#otp2", otp2);
  await page.click("#step2 button[type=submit]");
  await page.waitForSelector("#done:not(.hidden)", { timeout: 10000 });
  return { ctx, page };
}
