// Message tables, one per language. Every visible string of every page is
// here; markup carries only keys (data-i18n, data-i18n-placeholder,
// data-i18n-aria-label, data-i18n-title). Japanese is the default; the choice
// is remembered in localStorage.
"use strict";

const MESSAGES = {
  ja: {
    "lang.switch": "English",
    "site.name": "ワンプッシュ認証",
    "site.tagline": "スマートフォンの「承認」ボタンを1回押すだけで、ログインとお取引を確認します。",
    "nav.home": "ホーム",
    "nav.register": "利用開始登録",
    "nav.app": "認証アプリ（Web版）",
    "nav.admin": "当行管理画面",
    "nav.notices": "お知らせ",
    "nav.demo": "デモ（インターネットバンキング）",
    "nav.api": "API リファレンス",
    "home.links": "ページ一覧",
    "home.notices": "現在のお知らせ",
    "notices.title": "お知らせ",
    "notices.none": "現在お知らせはありません。",
    "notices.from": "掲載開始",
    "notices.until": "掲載終了",
    "notice.kind.outage": "障害",
    "notice.kind.maintenance": "メンテナンス",
    "notice.kind.terms": "規定改定",
    "notice.kind.info": "お知らせ",
    "status.suspended": "現在、ワンプッシュ認証を一時停止しています。パスワードのみでログインできます。",
    "reg.title": "ワンプッシュ認証 利用開始登録",
    "reg.step1": "ステップ1：ご契約者情報",
    "reg.step2": "ステップ2：専用アプリの情報",
    "reg.contract_no": "契約番号",
    "reg.user_id": "利用者ID",
    "reg.password": "ログインパスワード",
    "reg.next": "次へ",
    "reg.back": "戻る",
    "reg.token_id": "トークンID",
    "reg.token_hint": "専用アプリに表示された12桁（英字4桁＋数字8桁）。空白・ハイフン・小文字も可。",
    "reg.token_ok": "チェックディジットOK",
    "reg.token_bad": "トークンIDが正しくありません（チェックディジット不一致）",
    "reg.otp1": "ワンタイムパスワード1",
    "reg.otp2": "ワンタイムパスワード2",
    "reg.otp_hint": "アプリに表示された現在のワンタイムパスワードを入力し、表示が切り替わるのを待って次のワンタイムパスワードを入力してください。",
    "reg.submit": "登録する",
    "reg.done": "登録が完了しました。ワンプッシュ認証は直ちにご利用いただけます。",
    "reg.required": "入力してください",
    "app.time_left": "残り時間",
    "app.seconds_left": "あと{n}秒",
    "err.bad_credentials": "契約番号・利用者ID・ログインパスワードのいずれかが正しくありません。",
    "err.password_locked": "パスワード誤りが規定回数に達したため、ご利用を停止しています。当行までご連絡ください。",
    "err.account_stopped": "ご利用が停止されています。当行までご連絡ください。",
    "err.contract_cancelled": "ご契約は解約されています。",
    "err.already_registered": "この利用者は既にスマートフォンを登録済みです（1利用者につき1台）。",
    "err.token_already_bound": "このトークンIDは既に他の利用者に登録されています。",
    "err.token_or_otp_mismatch": "トークンIDまたはワンタイムパスワードが一致しません。連続する2つのワンタイムパスワードを入力してください。",
    "err.rate_limited": "試行回数が多すぎます。しばらくしてから再度お試しください。",
    "err.bad_request": "入力内容に誤りがあります。",
    "err.unauthorized": "認証に失敗しました。",
    "err.network": "通信できません。ネットワークを確認してください。",
    "err.internal": "システムエラーが発生しました。",
    "err.other": "エラーが発生しました。"
  },
  en: {
    "lang.switch": "日本語",
    "site.name": "One-push authentication",
    "site.tagline": "One press of Approve on your phone confirms every login and transaction.",
    "nav.home": "Home",
    "nav.register": "Registration",
    "nav.app": "Authenticator (web)",
    "nav.admin": "Bank administration",
    "nav.notices": "Notices",
    "nav.demo": "Demo (internet banking)",
    "nav.api": "API reference",
    "home.links": "Pages",
    "home.notices": "Current notices",
    "notices.title": "Notices",
    "notices.none": "There are no notices at present.",
    "notices.from": "From",
    "notices.until": "Until",
    "notice.kind.outage": "Outage",
    "notice.kind.maintenance": "Maintenance",
    "notice.kind.terms": "Change of terms",
    "notice.kind.info": "Information",
    "status.suspended": "One-push authentication is suspended at present. You can log in with your password alone.",
    "reg.title": "Register for one-push authentication",
    "reg.step1": "Step 1: your contract",
    "reg.step2": "Step 2: your authenticator app",
    "reg.contract_no": "Contract number",
    "reg.user_id": "User ID",
    "reg.password": "Login password",
    "reg.next": "Next",
    "reg.back": "Back",
    "reg.token_id": "Token ID",
    "reg.token_hint": "The 12 characters the app shows (4 letters, 8 digits). Spaces, hyphens and lower case are fine.",
    "reg.token_ok": "Check digit OK",
    "reg.token_bad": "This token ID is not valid (check digit)",
    "reg.otp1": "One-time password 1",
    "reg.otp2": "One-time password 2",
    "reg.otp_hint": "Enter the code the app shows now, wait for it to change, then enter the next code.",
    "reg.submit": "Register",
    "reg.done": "Registration complete. One-push authentication is active now.",
    "reg.required": "Required",
    "app.time_left": "Time left",
    "app.seconds_left": "{n} s left",
    "err.bad_credentials": "The contract number, user ID or login password is wrong.",
    "err.password_locked": "Locked after too many wrong passwords. Please contact the bank.",
    "err.account_stopped": "Your use is stopped. Please contact the bank.",
    "err.contract_cancelled": "The contract has been cancelled.",
    "err.already_registered": "This user already has a registered phone (one phone per user).",
    "err.token_already_bound": "This token ID is registered to another user.",
    "err.token_or_otp_mismatch": "The token ID or one-time passwords do not match. Enter two consecutive codes.",
    "err.rate_limited": "Too many attempts. Please try again later.",
    "err.bad_request": "Please check what you entered.",
    "err.unauthorized": "Authentication failed.",
    "err.network": "Cannot reach the server. Check your network.",
    "err.internal": "A system error occurred.",
    "err.other": "An error occurred."
  }
};

const I18N = {
  lang() {
    const l = localStorage.getItem("onepush.lang");
    return l === "en" ? "en" : "ja";
  },
  t(key) {
    const table = MESSAGES[I18N.lang()];
    return table[key] !== undefined ? table[key] : (MESSAGES.ja[key] !== undefined ? MESSAGES.ja[key] : key);
  },
  /** Adds page tables: I18N.extend({ja: {...}, en: {...}}). */
  extend(tables) {
    for (const l of Object.keys(tables)) Object.assign(MESSAGES[l], tables[l]);
  },
  apply(root) {
    const r = root || document;
    document.documentElement.lang = I18N.lang();
    r.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = I18N.t(el.dataset.i18n); });
    r.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = I18N.t(el.dataset.i18nPlaceholder); });
    r.querySelectorAll("[data-i18n-aria-label]").forEach((el) => { el.setAttribute("aria-label", I18N.t(el.dataset.i18nAriaLabel)); });
    r.querySelectorAll("[data-i18n-title]").forEach((el) => { el.title = I18N.t(el.dataset.i18nTitle); });
    const title = document.querySelector("meta[name=i18n-title]");
    if (title) document.title = I18N.t(title.content);
    document.dispatchEvent(new CustomEvent("i18n"));
  },
  set(lang) {
    localStorage.setItem("onepush.lang", lang);
    I18N.apply();
  }
};

/** The error message key for an API error code. */
function errorText(code) {
  const key = "err." + code;
  const t = I18N.t(key);
  return t === key ? I18N.t("err.other") : t;
}

/** fetch + JSON; resolves to {status, body}; network failures give status 0. */
async function api(method, path, body, headers) {
  const init = { method, headers: Object.assign({}, headers || {}), credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    const r = await fetch(path, init);
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    return { status: r.status, body: data };
  } catch (_) {
    return { status: 0, body: { error: { code: "network", message: "network" } } };
  }
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

document.addEventListener("DOMContentLoaded", () => {
  const sw = document.getElementById("lang-switch");
  if (sw) sw.addEventListener("click", () => I18N.set(I18N.lang() === "ja" ? "en" : "ja"));
  I18N.apply();
});
