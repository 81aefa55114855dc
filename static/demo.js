// /demo: a small internet-banking site. Its server side is onepush's demo
// RP ("demo"), which calls the same use cases as the RP API: login → wait
// for the phone → dashboard → transfer → approval on the phone → done.
"use strict";

I18N.extend({
  ja: {
    "demo.title": "デモ インターネットバンキング",
    "demo.explain": "ワンプッシュ認証のデモです。serve --demo が表示した契約番号・利用者IDでログインし、/app で承認してください。",
    "demo.login": "ログイン",
    "demo.login_button": "ログイン",
    "demo.approve_on_phone": "スマートフォンの専用アプリで「承認」を押してください",
    "demo.number": "アプリでこの数字を選んでください：",
    "demo.cancel": "中止する",
    "demo.welcome": "ようこそ",
    "demo.transfer": "振込",
    "demo.amount": "金額（円）",
    "demo.payee": "振込先",
    "demo.txpw": "取引パスワード",
    "demo.send": "振込を実行",
    "demo.sa_title": "サービス管理責任者メニュー",
    "demo.sa_text": "利用者のワンプッシュ認証の登録を解除します（機種変更・退職時など）。",
    "demo.target": "解除する利用者ID",
    "demo.deregister": "登録を解除",
    "demo.deregistered": "利用者 {u} のワンプッシュ認証の登録を解除しました。",
    "demo.logout": "ログアウト",
    "demo.back": "戻る",
    "demo.transfer_done": "振込を受け付けました。",
    "demo.amount_line": "金額",
    "demo.payee_line": "振込先",
    "demo.yen": "円",
    "demo.how.push": "ワンプッシュ認証でログインしました。",
    "reason.approved": "承認されました。",
    "reason.rejected": "スマートフォンで拒否されたため、中止しました。",
    "reason.expired": "時間内に承認されなかったため、中止しました。",
    "reason.undelivered": "スマートフォンに届かなかったため、中止しました。",
    "reason.token_mismatch": "登録と異なる端末から応答があったため、中止しました。",
    "reason.cancelled": "中止されました。",
    "reason.push_not_registered": "ワンプッシュ認証が未登録のため、パスワードのみでログインしました。",
    "reason.push_suspended": "ワンプッシュ認証が一時停止中のため、パスワードのみで受け付けました（猶予期間内）。",
    "reason.push_deregistered": "ワンプッシュ認証の登録が解除されたため、パスワードのみで受け付けました（猶予期間内）。",
    "reason.push_system_suspended": "システム障害によりワンプッシュ認証を停止中のため、パスワードのみで受け付けました。",
    "reason.push_not_required": "このお取引にワンプッシュ認証は不要です。",
    "reason.bad_credentials": "契約番号・利用者ID・パスワードのいずれかが正しくありません。",
    "reason.bad_transaction_password": "取引パスワードが正しくありません。",
    "reason.password_locked": "パスワード誤りが規定回数に達したため、ご利用いただけません。",
    "reason.account_stopped": "ご利用が停止されています（端末の紛失等）。",
    "reason.contract_cancelled": "ご契約は解約されています。",
    "reason.registration_required": "ワンプッシュ認証の利用開始登録が必要です（猶予期間が終了しました）。",
    "reason.too_many_challenges": "短時間に認証要求が多すぎます。しばらくしてからお試しください。",
    "demo.bad.password": "パスワードは8文字以上128文字以下です。入力内容をご確認ください。",
    "demo.bad.transaction_password": "取引パスワードは8文字以上128文字以下です。",
    "demo.bad.contract_no": "契約番号は半角の英数字20文字以内で入力してください。",
    "demo.bad.user_id": "利用者IDは半角の英数字と . _ - の32文字以内で入力してください。",
    "demo.retry_min": "短時間に認証要求が多すぎます。{m}分{s}秒後にもう一度お試しください。",
    "demo.retry_sec": "短時間に認証要求が多すぎます。{s}秒後にもう一度お試しください。"
  },
  en: {
    "demo.title": "Demo internet banking",
    "demo.explain": "A demo of one-push authentication. Log in with a contract and user that serve --demo printed, and approve in /app.",
    "demo.login": "Log in",
    "demo.login_button": "Log in",
    "demo.approve_on_phone": "Press Approve in the authenticator app on your phone",
    "demo.number": "Pick this number in the app:",
    "demo.cancel": "Cancel",
    "demo.welcome": "Welcome",
    "demo.transfer": "Transfer",
    "demo.amount": "Amount (JPY)",
    "demo.payee": "Payee",
    "demo.txpw": "Transaction password",
    "demo.send": "Send",
    "demo.sa_title": "Service administrator",
    "demo.sa_text": "End a user's one-push registration (phone replaced, user left).",
    "demo.target": "User ID to deregister",
    "demo.deregister": "Deregister",
    "demo.deregistered": "The one-push registration of {u} has ended.",
    "demo.logout": "Log out",
    "demo.back": "Back",
    "demo.transfer_done": "The transfer has been accepted.",
    "demo.amount_line": "Amount",
    "demo.payee_line": "Payee",
    "demo.yen": "JPY",
    "demo.how.push": "Logged in with one-push authentication.",
    "reason.approved": "Approved.",
    "reason.rejected": "Stopped: it was rejected on the phone.",
    "reason.expired": "Stopped: it was not approved in time.",
    "reason.undelivered": "Stopped: it never reached the phone.",
    "reason.token_mismatch": "Stopped: an answer came from a device other than the registered one.",
    "reason.cancelled": "Cancelled.",
    "reason.push_not_registered": "Logged in with the password alone: one-push is not registered.",
    "reason.push_suspended": "Accepted on the password alone: one-push is suspended (grace period).",
    "reason.push_deregistered": "Accepted on the password alone: one-push was deregistered (grace period).",
    "reason.push_system_suspended": "Accepted on the password alone: one-push is suspended during an outage.",
    "reason.push_not_required": "This operation does not need one-push.",
    "reason.bad_credentials": "The contract number, user ID or password is wrong.",
    "reason.bad_transaction_password": "The transaction password is wrong.",
    "reason.password_locked": "Locked after too many wrong passwords.",
    "reason.account_stopped": "Your use is stopped (lost phone).",
    "reason.contract_cancelled": "The contract has been cancelled.",
    "reason.registration_required": "Please register for one-push authentication (the grace period is over).",
    "reason.too_many_challenges": "Too many requests in a short time. Please try again later.",
    "demo.bad.password": "The password is 8 to 128 characters long. Please check what you entered.",
    "demo.bad.transaction_password": "The transaction password is 8 to 128 characters long.",
    "demo.bad.contract_no": "The contract number is at most 20 letters or digits.",
    "demo.bad.user_id": "The user ID is at most 32 letters, digits, '.', '_' or '-'.",
    "demo.retry_min": "Too many requests in a short time. Try again in {m} min {s} s.",
    "demo.retry_sec": "Too many requests in a short time. Try again in {s} s."
  }
});

const $ = (id) => document.getElementById(id);
/** The message key for a failed call: the field a 400 names, when the page has words for it. */
function errorKey(r) {
  const err = r.body && r.body.error;
  if (!err) return "err.network";
  if (err.code === "bad_request") {
    const field = String(err.message || "").split(":")[0];
    if (I18N.t("demo.bad." + field) !== "demo.bad." + field) return "demo.bad." + field;
  }
  return "err." + err.code;
}

let session = null;       // {contract_no, user_id, role}
let waitingFor = null;    // challenge id
let expiresAt = 0;
let messageKey = null;
let messageArgs = {};

function say(key, bad, args) {
  messageKey = key;
  messageArgs = args || {};
  let text = key ? I18N.t(key) : "";
  for (const [k, v] of Object.entries(messageArgs)) text = text.replace("{" + k + "}", v);
  $("message").textContent = text;
  $("message").className = bad ? "bad" : "ok";
}

function show(id) {
  for (const s of ["login", "waiting", "dashboard", "done"]) $(s).classList.toggle("hidden", s !== id);
}

/** Waits for the phone; resolves to the final status. */
async function waitFor(id, expires) {
  waitingFor = id;
  expiresAt = Date.parse(expires);
  show("waiting");
  while (waitingFor === id) {
    const r = await api("GET", `/demo/api/challenges/${id}?wait=20`);
    if (r.status !== 200) return "cancelled";
    if (r.body.status !== "pending") { waitingFor = null; return r.body.status; }
  }
  return "cancelled";
}

async function gate(answer, after) {
  if (!answer) { say("err.network", true); return false; }
  if (answer.result === "deny" && answer.retry_after) {
    // The anti-fatigue window (API.md `retry_after`): say how long to wait.
    const m = Math.floor(answer.retry_after / 60), sec = answer.retry_after % 60;
    say(m > 0 ? "demo.retry_min" : "demo.retry_sec", true, { m: String(m), s: String(sec) });
    return false;
  }
  if (answer.result === "deny") { say("reason." + answer.reason, true); return false; }
  if (answer.result === "allow") { say("reason." + answer.reason, false); return after(answer.reason); }
  $("number-box").classList.toggle("hidden", !answer.number);
  $("number").textContent = answer.number || "";
  const status = await waitFor(answer.challenge_id, answer.expires_at);
  if (status === "approved") return after("push");
  say("reason." + status, true);
  return false;
}

async function login(e) {
  e.preventDefault();
  say(null);
  const body = { contract_no: $("contract_no").value.trim(), user_id: $("user_id").value.trim(), password: $("password").value };
  const r = await api("POST", "/demo/api/login", body);
  if (r.status !== 200) { say(errorKey(r), true); show("login"); return; }
  const ok = await gate(r.body, async (how) => {
    const u = await api("GET", `/demo/api/users/${encodeURIComponent(body.contract_no)}/${encodeURIComponent(body.user_id)}`);
    session = { contract_no: body.contract_no, user_id: body.user_id, role: u.body ? u.body.role : "user" };
    $("who").textContent = body.user_id;
    $("login-how").dataset.how = how;
    $("login-how").textContent = how === "push" ? I18N.t("demo.how.push") : I18N.t("reason." + how);
    $("admin-form").classList.toggle("hidden", !["service_admin", "admin"].includes(session.role));
    show("dashboard");
    return true;
  });
  if (!ok) show("login");
  else say(null); // the dashboard says how the login was accepted
}

async function transfer(e) {
  e.preventDefault();
  say(null);
  const amount = $("amount").value.trim(), payee = $("payee").value.trim();
  const body = {
    contract_no: session.contract_no, user_id: session.user_id, kind: "transaction",
    display: [[I18N.t("demo.amount_line"), `${Number(amount).toLocaleString("ja-JP")} ${I18N.t("demo.yen")}`], [I18N.t("demo.payee_line"), payee]],
  };
  if ($("txpw").value) body.transaction_password = $("txpw").value;
  const r = await api("POST", "/demo/api/approvals", body);
  if (r.status !== 200) { say(errorKey(r), true); return; }
  const ok = await gate(r.body, () => {
    $("done-text").textContent = I18N.t("demo.transfer_done");
    $("done-text").dataset.key = "demo.transfer_done";
    show("done");
    return true;
  });
  if (!ok) show("dashboard");
}

async function deregister(e) {
  e.preventDefault();
  const target = $("target").value.trim();
  const r = await api("POST", `/demo/api/users/${encodeURIComponent(session.contract_no)}/${encodeURIComponent(target)}/deregister`,
    { actor_user_id: session.user_id, reason: "deregistered by the service admin (demo)" });
  if (r.status === 200) say("demo.deregistered", false, { u: target });
  else say(errorKey(r), true);
}

document.addEventListener("i18n", () => {
  if (messageKey) say(messageKey, $("message").className === "bad", messageArgs);
  const how = $("login-how").dataset.how;
  if (how) $("login-how").textContent = how === "push" ? I18N.t("demo.how.push") : I18N.t("reason." + how);
  const dk = $("done-text").dataset.key;
  if (dk) $("done-text").textContent = I18N.t(dk);
});

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", login);
  $("transfer").addEventListener("submit", transfer);
  $("admin-form").addEventListener("submit", deregister);
  $("logout").addEventListener("click", () => { session = null; say(null); show("login"); });
  $("again").addEventListener("click", () => { say(null); show("dashboard"); });
  $("cancel").addEventListener("click", async () => {
    const id = waitingFor;
    waitingFor = null;
    if (id) await api("DELETE", `/demo/api/challenges/${id}`);
    say("reason.cancelled", true);
    show(session ? "dashboard" : "login");
  });
  setInterval(() => {
    if (waitingFor) $("left").textContent = I18N.t("app.seconds_left").replace("{n}", String(Math.max(0, Math.ceil((expiresAt - Date.now()) / 1000))));
  }, 500);
  show("login");
});
