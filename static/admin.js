// /admin: the operator console. Sign-in and first-run bootstrap, dashboard,
// contracts and users with every SPEC R3 action (reason, confirmation, grace
// date), contract creation and cancellation, service-admin change, CSV
// import, system-wide suspension with its notice, notices, the audit log.
"use strict";

I18N.extend({
  ja: {
    "adm.title": "ワンプッシュ認証 当行管理画面",
    "adm.signin": "サインイン",
    "adm.signout": "サインアウト",
    "adm.username": "オペレーター名",
    "adm.first_run": "初回起動（オペレーター未作成）",
    "adm.first_run_text": "serve が表示したワンタイムコードで最初のオペレーターを作成します。",
    "adm.code": "ワンタイムコード",
    "adm.create_operator": "オペレーターを作成",
    "adm.dashboard": "ダッシュボード",
    "adm.contracts": "契約・利用者",
    "adm.system": "一時停止・お知らせ",
    "adm.audit": "監査ログ",
    "adm.users_by_state": "利用者（登録状態別）",
    "adm.pending": "応答待ちの認証",
    "adm.outcomes": "過去24時間の認証結果",
    "adm.fraud": "不正の報告（過去24時間）",
    "adm.fraud_alert": "不正の報告：契約 {c} 利用者 {u}（{k}、{t}）",
    "adm.no_alerts": "アラートはありません。",
    "adm.locked": "パスワードロック",
    "adm.stopped": "利用停止",
    "adm.search": "契約番号・契約名で検索",
    "adm.search_button": "検索",
    "adm.find_user": "利用者を開く",
    "edition.jweb": "JWEBOFFICE (jweb)",
    "edition.fx": "JWEBOFFICE 外為版 (fx)",
    "lang.ja": "日本語",
    "lang.en": "英語",
    "outcome.pending": "応答待ち",
    "outcome.approved": "承認",
    "outcome.rejected": "拒否",
    "outcome.expired": "期限切れ",
    "outcome.undelivered": "未配信",
    "outcome.token_mismatch": "トークン不一致",
    "outcome.cancelled": "中止",
    "adm.open": "開く",
    "adm.name": "名称",
    "adm.edition": "サービス",
    "adm.status": "状態",
    "adm.users": "利用者",
    "adm.role": "権限",
    "adm.registration": "登録状態",
    "adm.token": "トークンID",
    "adm.usable_until": "利用可能期限（猶予）",
    "adm.flags": "フラグ",
    "adm.history": "履歴（監査ログ）",
    "adm.new_contract": "契約の作成",
    "adm.create": "作成",
    "adm.created": "作成しました。",
    "adm.cancel_contract": "契約を解約",
    "adm.change_sa": "サービス管理責任者の変更",
    "adm.new_service_admin": "新しいサービス管理責任者の利用者ID",
    "adm.delete_user": "利用者を削除",
    "adm.import": "利用者の一括登録（CSV）",
    "adm.import_hint": "列：contract_no,user_id,name,role,password,transaction_password。1行でも誤りがあれば何も登録しません。",
    "adm.csv_file": "CSVファイル",
    "adm.import_button": "取り込む",
    "adm.imported": "{n}件を登録しました。",
    "adm.import_errors": "誤りがあるため登録しませんでした：",
    "adm.line": "{n}行目",
    "adm.suspension": "ワンプッシュ認証の全体停止（障害時）",
    "adm.sys_on": "現在：全体停止中（パスワードのみで受付）",
    "adm.sys_off": "現在：通常運用",
    "adm.notice_for": "停止理由のお知らせ",
    "adm.suspend_push": "全体停止する",
    "adm.resume_push": "再開する",
    "adm.need_notice": "全体停止にはお知らせが必要です。先にお知らせを作成してください。",
    "adm.new_notice": "お知らせの作成",
    "adm.kind": "種別",
    "adm.lang": "言語",
    "adm.notice_title": "件名",
    "adm.notice_body": "本文",
    "adm.delete": "削除",
    "adm.type": "種類",
    "adm.more": "さらに表示",
    "adm.seq": "番号",
    "adm.at": "日時",
    "adm.actor": "実行者",
    "adm.subject": "対象",
    "adm.detail": "詳細",
    "adm.reason": "理由（必須）",
    "adm.confirm": "実行する",
    "adm.confirm_title": "{a}：{u}",
    "adm.done": "実行しました。",
    "action.suspend": "一時停止",
    "action.resume": "再開",
    "action.deregister": "登録解除",
    "action.stop": "利用停止（紛失・盗難）",
    "action.unstop": "利用停止の解除",
    "action.unlock": "パスワードロック解除",
    "state.unregistered": "未登録",
    "state.active": "利用中",
    "state.suspended": "一時停止中",
    "state.deregistered": "登録解除",
    "status.active": "有効",
    "status.cancelled": "解約済み",
    "role.user": "利用者",
    "role.admin": "管理者",
    "role.service_admin": "サービス管理責任者",
    "err.invalid_transition": "現在の状態ではこの操作はできません。",
    "err.conflict": "既に存在するか、競合しています。",
    "err.not_found": "見つかりません。",
    "err.forbidden": "権限がありません。"
  },
  en: {
    "adm.title": "One-push administration",
    "adm.signin": "Sign in",
    "adm.signout": "Sign out",
    "adm.username": "Operator name",
    "adm.first_run": "First start (no operator yet)",
    "adm.first_run_text": "Create the first operator with the one-time code that serve printed.",
    "adm.code": "One-time code",
    "adm.create_operator": "Create operator",
    "adm.dashboard": "Dashboard",
    "adm.contracts": "Contracts and users",
    "adm.system": "Suspension and notices",
    "adm.audit": "Audit log",
    "adm.users_by_state": "Users by registration",
    "adm.pending": "Challenges pending",
    "adm.outcomes": "Challenges, last 24 h",
    "adm.fraud": "Fraud reports, last 24 h",
    "adm.fraud_alert": "Fraud report: contract {c}, user {u} ({k}, {t})",
    "adm.no_alerts": "No alerts.",
    "adm.locked": "Password locked",
    "adm.stopped": "Stopped",
    "adm.search": "Search by contract number or name",
    "adm.search_button": "Search",
    "adm.find_user": "Open a user",
    "edition.jweb": "JWEBOFFICE (jweb)",
    "edition.fx": "JWEBOFFICE FX edition (fx)",
    "lang.ja": "Japanese",
    "lang.en": "English",
    "outcome.pending": "Pending",
    "outcome.approved": "Approved",
    "outcome.rejected": "Rejected",
    "outcome.expired": "Expired",
    "outcome.undelivered": "Undelivered",
    "outcome.token_mismatch": "Token mismatch",
    "outcome.cancelled": "Cancelled",
    "adm.open": "Open",
    "adm.name": "Name",
    "adm.edition": "Service",
    "adm.status": "Status",
    "adm.users": "Users",
    "adm.role": "Role",
    "adm.registration": "Registration",
    "adm.token": "Token ID",
    "adm.usable_until": "Usable until (grace)",
    "adm.flags": "Flags",
    "adm.history": "History (audit log)",
    "adm.new_contract": "New contract",
    "adm.create": "Create",
    "adm.created": "Created.",
    "adm.cancel_contract": "Cancel contract",
    "adm.change_sa": "Change service admin",
    "adm.new_service_admin": "User ID of the new service admin",
    "adm.delete_user": "Delete user",
    "adm.import": "Import users (CSV)",
    "adm.import_hint": "Columns: contract_no,user_id,name,role,password,transaction_password. One bad line and nothing is imported.",
    "adm.csv_file": "CSV file",
    "adm.import_button": "Import",
    "adm.imported": "{n} users created.",
    "adm.import_errors": "Nothing was imported because of these lines:",
    "adm.line": "line {n}",
    "adm.suspension": "System-wide suspension of push (outage)",
    "adm.sys_on": "Now: push suspended (passwords alone accepted)",
    "adm.sys_off": "Now: normal operation",
    "adm.notice_for": "Notice that explains it",
    "adm.suspend_push": "Suspend push",
    "adm.resume_push": "Resume push",
    "adm.need_notice": "Suspension needs a notice. Create one first.",
    "adm.new_notice": "New notice",
    "adm.kind": "Kind",
    "adm.lang": "Language",
    "adm.notice_title": "Title",
    "adm.notice_body": "Text",
    "adm.delete": "Delete",
    "adm.type": "Type",
    "adm.more": "More",
    "adm.seq": "No.",
    "adm.at": "Time",
    "adm.actor": "Actor",
    "adm.subject": "Subject",
    "adm.detail": "Detail",
    "adm.reason": "Reason (required)",
    "adm.confirm": "Confirm",
    "adm.confirm_title": "{a}: {u}",
    "adm.done": "Done.",
    "action.suspend": "Suspend",
    "action.resume": "Resume",
    "action.deregister": "Deregister",
    "action.stop": "Stop (lost or stolen phone)",
    "action.unstop": "Lift stop",
    "action.unlock": "Unlock password",
    "state.unregistered": "Unregistered",
    "state.active": "Active",
    "state.suspended": "Suspended",
    "state.deregistered": "Deregistered",
    "status.active": "Active",
    "status.cancelled": "Cancelled",
    "role.user": "User",
    "role.admin": "Admin",
    "role.service_admin": "Service admin",
    "err.invalid_transition": "The current state does not allow this.",
    "err.conflict": "It exists already, or conflicts.",
    "err.not_found": "Not found.",
    "err.forbidden": "Not allowed."
  }
});

const $ = (id) => document.getElementById(id);
const fmt = (key, args) => Object.entries(args || {}).reduce((s, [k, v]) => s.replace("{" + k + "}", v), I18N.t(key));
let tab = "dash";
let rerender = [];          // functions that redraw translated content
let auditNext = null;
let msg = null;

function say(key, bad, args) {
  msg = key ? { key, bad, args } : null;
  $("msg").textContent = key ? fmt(key, args) : "";
  $("msg").className = bad ? "bad" : "ok";
}

function fail(r) {
  say(r.status === 0 ? "err.network" : "err." + (r.body && r.body.error ? r.body.error.code : "other"), true);
  if (r.status === 401) signedOut();
}

function time(s) {
  return s ? new Date(s).toLocaleString(I18N.lang() === "ja" ? "ja-JP" : "en-GB", { timeZone: "Asia/Tokyo" }) : "-";
}

function signedOut() {
  $("signin").classList.remove("hidden");
  $("tabs").classList.add("hidden");
  $("signout").classList.add("hidden");
  document.querySelectorAll(".tab").forEach((t) => t.classList.add("hidden"));
}

function signedIn() {
  $("signin").classList.add("hidden");
  $("tabs").classList.remove("hidden");
  $("signout").classList.remove("hidden");
  openTab(tab);
}

function openTab(name) {
  tab = name;
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("hidden", t.id !== name));
  document.querySelectorAll("#tabs button").forEach((b) => b.setAttribute("aria-current", b.dataset.tab === name ? "page" : "false"));
  if (name === "dash") loadDashboard();
  if (name === "contracts") search();
  if (name === "system") loadSystem();
  if (name === "audit") loadAudit(false);
}

// ---------------------------------------------------------------- dashboard

let dashData = null;
async function loadDashboard() {
  const r = await api("GET", "/api/v1/admin/stats");
  if (r.status !== 200) return fail(r);
  dashData = r.body;
  renderDashboard();
}

function renderDashboard() {
  if (!dashData) return;
  const d = dashData;
  const stat = (label, value, extra) => el("div", { class: "stat" }, el("span", { text: label }), el("strong", { text: String(value), ...(extra || {}) }));
  const box = $("dash");
  box.replaceChildren();
  const alerts = el("div", { class: "card", id: "alerts" }, el("h2", { text: I18N.t("adm.fraud") }));
  if (d.fraud_reports.length === 0) alerts.append(el("p", { text: I18N.t("adm.no_alerts") }));
  for (const f of d.fraud_reports) {
    alerts.append(el("p", { class: "alert", role: "alert", text: fmt("adm.fraud_alert", { c: f.contract_no, u: f.user_id, k: f.kind, t: time(f.reported_at) }) }));
  }
  if (d.push_suspended) box.append(el("p", { class: "banner", text: I18N.t("adm.sys_on") }));
  box.append(alerts);
  const users = el("div", { class: "stats" });
  for (const [s, n] of Object.entries(d.users.by_registration)) users.append(stat(I18N.t("state." + s), n, { "data-state": s }));
  users.append(stat(I18N.t("adm.locked"), d.users.password_locked), stat(I18N.t("adm.stopped"), d.users.stopped));
  box.append(el("div", { class: "card" }, el("h2", { text: I18N.t("adm.users_by_state") }), users));
  const outcomes = el("div", { class: "stats" }, stat(I18N.t("adm.pending"), d.pending, { id: "pending-count" }));
  for (const [s, n] of Object.entries(d.challenges_last_24h)) outcomes.append(stat(I18N.t("outcome." + s), n));
  box.append(el("div", { class: "card" }, el("h2", { text: I18N.t("adm.outcomes") }), outcomes));
}

// ---------------------------------------------------------------- contracts and users

let contractsData = [];
async function search(e) {
  if (e) e.preventDefault();
  const r = await api("GET", "/api/v1/admin/contracts?limit=100&q=" + encodeURIComponent($("q").value.trim()));
  if (r.status !== 200) return fail(r);
  contractsData = r.body.contracts;
  renderContracts();
}

function renderContracts() {
  const rows = contractsData.map((c) => el("tr", {},
    el("td", { text: c.contract_no }), el("td", { text: c.name }), el("td", { text: c.edition }),
    el("td", { text: I18N.t("status." + c.status) }),
    el("td", {}, el("button", { type: "button", class: "secondary", "data-open": c.contract_no, text: I18N.t("adm.open"), onclick: () => openContract(c.contract_no) }))));
  $("contract-list").replaceChildren(el("table", {},
    el("thead", {}, el("tr", {}, ...["reg.contract_no", "adm.name", "adm.edition", "adm.status", ""].map((k) => el("th", { text: k ? I18N.t(k) : "" })))),
    el("tbody", {}, ...rows)));
}

let contractData = null;
async function openContract(no) {
  const r = await api("GET", "/api/v1/admin/contracts/" + encodeURIComponent(no));
  if (r.status !== 200) return fail(r);
  contractData = r.body;
  renderContract();
  $("contract-detail").classList.remove("hidden");
}

function renderContract() {
  const c = contractData;
  if (!c) return;
  const rows = c.users.map((u) => el("tr", { "data-user": u.user_id },
    el("td", { text: u.user_id }), el("td", { text: u.name }), el("td", { text: I18N.t("role." + u.role) }),
    el("td", { text: I18N.t("state." + u.registration) }),
    el("td", {}, el("button", { type: "button", class: "secondary", text: I18N.t("adm.open"), onclick: () => openUser(c.contract_no, u.user_id) }))));
  const actions = el("div", { class: "row-actions" });
  if (c.status === "active") {
    actions.append(
      el("button", { type: "button", class: "secondary", text: I18N.t("adm.change_sa"), onclick: () => confirmAction(I18N.t("adm.change_sa"), c.contract_no, { until: false, user: true },
        (reason, _u, newUser) => api("POST", `/api/v1/admin/contracts/${c.contract_no}/service-admin`, { user_id: newUser, reason })) }),
      el("button", { type: "button", class: "danger", text: I18N.t("adm.cancel_contract"), onclick: () => confirmAction(I18N.t("adm.cancel_contract"), c.contract_no, { until: false },
        (reason) => api("POST", `/api/v1/admin/contracts/${c.contract_no}/cancel`, { reason })) }));
  }
  $("contract-detail").replaceChildren(
    el("h2", { text: `${c.contract_no} ${c.name}` }),
    el("p", { text: `${c.edition} · ${I18N.t("status." + c.status)}` }), actions,
    el("h3", { text: I18N.t("adm.users") }),
    el("table", {}, el("thead", {}, el("tr", {}, ...["reg.user_id", "adm.name", "adm.role", "adm.registration", ""].map((k) => el("th", { text: k ? I18N.t(k) : "" })))), el("tbody", {}, ...rows)));
}

let userData = null;
async function openUser(no, uid) {
  const c = await api("GET", "/api/v1/admin/contracts/" + encodeURIComponent(no));
  if (c.status !== 200) return fail(c);
  const u = c.body.users.find((x) => x.user_id === uid);
  if (!u) return fail({ status: 404, body: { error: { code: "not_found" } } });
  const h = await api("GET", `/api/v1/admin/audit?limit=200&contract_no=${encodeURIComponent(no)}&user_id=${encodeURIComponent(uid)}`);
  userData = { user: u, history: h.status === 200 ? h.body.events : [] };
  renderUser();
  $("user-detail").classList.remove("hidden");
  $("user-detail").scrollIntoView();
}

function renderUser() {
  if (!userData || !userData.user) return;
  const u = userData.user;
  const flags = [u.password_locked ? I18N.t("adm.locked") : null, u.stopped ? I18N.t("adm.stopped") : null].filter(Boolean).join(", ") || "-";
  const dl = el("table", {}, el("tbody", {},
    ...[["reg.user_id", u.user_id], ["adm.role", I18N.t("role." + u.role)], ["adm.registration", I18N.t("state." + u.registration)],
        ["adm.token", u.token_id || "-"], ["adm.usable_until", time(u.usable_until)], ["adm.flags", flags]]
      .map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: I18N.t(k) }), el("td", { text: v, "data-field": k })))));
  const actions = el("div", { class: "row-actions" });
  for (const a of ["suspend", "resume", "deregister", "stop", "unstop", "unlock"]) {
    actions.append(el("button", { type: "button", class: a === "stop" || a === "deregister" ? "danger" : "secondary", "data-action": a, text: I18N.t("action." + a),
      onclick: () => confirmAction(I18N.t("action." + a), u.user_id, { until: a === "suspend" || a === "deregister" },
        (reason, until) => api("POST", `/api/v1/admin/contracts/${u.contract_no}/users/${u.user_id}/${a}`, until ? { reason, usable_until: until } : { reason })) }));
  }
  actions.append(el("button", { type: "button", class: "danger", text: I18N.t("adm.delete_user"),
    onclick: () => confirmAction(I18N.t("adm.delete_user"), u.user_id, { until: false },
      (reason) => api("DELETE", `/api/v1/admin/contracts/${u.contract_no}/users/${u.user_id}`, { reason })) }));
  const hist = el("table", {}, el("tbody", {}, ...userData.history.map((e) => el("tr", {},
    el("td", { text: time(e.at) }), el("td", { text: e.type }), el("td", { text: e.actor }), el("td", { text: (e.detail && e.detail.reason) || "" })))));
  $("user-detail").replaceChildren(el("h2", { text: `${u.contract_no} / ${u.user_id}` }), dl, actions, el("h3", { text: I18N.t("adm.history") }), hist);
}

/** The confirmation dialog: a reason is required; optional grace date or user. */
function confirmAction(label, subject, opts, run) {
  const d = $("confirm");
  $("confirm-title").textContent = fmt("adm.confirm_title", { a: label, u: subject });
  $("cf-reason").value = "";
  $("cf-reason-err").textContent = "";
  $("cf-until").value = "";
  $("cf-user").value = "";
  $("cf-until-box").classList.toggle("hidden", !opts.until);
  $("cf-user-box").classList.toggle("hidden", !opts.user);
  $("cf-ok").onclick = async (e) => {
    e.preventDefault();
    const reason = $("cf-reason").value.trim();
    if (!reason) { $("cf-reason-err").textContent = I18N.t("reg.required"); $("cf-reason").focus(); return; }
    const until = $("cf-until").value ? new Date($("cf-until").value + "T23:59:59+09:00").toISOString().replace(/\.\d+Z$/, "Z") : null;
    d.close();
    const r = await run(reason, until, $("cf-user").value.trim());
    if (r.status !== 200) return fail(r);
    say("adm.done", false);
    if (contractData) await openContract(contractData.contract_no);
    if (userData && userData.user && !opts.user) await openUser(userData.user.contract_no, userData.user.user_id).catch(() => {});
  };
  $("cf-cancel").onclick = () => d.close();
  d.showModal();
  $("cf-reason").focus();
}

async function createContract(e) {
  e.preventDefault();
  const r = await api("POST", "/api/v1/admin/contracts", { contract_no: $("nc-no").value.trim(), name: $("nc-name").value.trim(), edition: $("nc-edition").value });
  if (r.status !== 201) return fail(r);
  say("adm.created", false);
  search();
}

let importResult = null;
async function importCsv(e) {
  e.preventDefault();
  const file = $("csv").files[0];
  if (!file) return;
  const text = await file.text();
  let r;
  try {
    const resp = await fetch("/api/v1/admin/import", { method: "POST", headers: { "Content-Type": "text/csv" }, body: text, credentials: "same-origin" });
    r = { status: resp.status, body: await resp.json() };
  } catch (_) { r = { status: 0, body: null }; }
  if (r.status !== 200 && !(r.body && r.body.errors)) return fail(r);
  importResult = r.body;
  renderImport();
}

function renderImport() {
  if (!importResult) return;
  const box = $("import-result");
  if (importResult.errors.length === 0) {
    box.replaceChildren(el("p", { class: "ok", text: fmt("adm.imported", { n: importResult.created }) }));
  } else {
    box.replaceChildren(el("p", { class: "bad", text: I18N.t("adm.import_errors") }),
      el("ul", { id: "import-errors" }, ...importResult.errors.map((x) => el("li", { text: `${fmt("adm.line", { n: x.line })}: ${x.message}` }))));
  }
}

// ---------------------------------------------------------------- system and notices

let sysData = null, noticeData = [];
async function loadSystem() {
  const [s, n] = await Promise.all([api("GET", "/api/v1/admin/system"), api("GET", "/api/v1/admin/notices")]);
  if (s.status !== 200) return fail(s);
  sysData = s.body;
  noticeData = n.status === 200 ? n.body.notices : [];
  renderSystem();
}

function renderSystem() {
  if (!sysData) return;
  $("sys-state").textContent = I18N.t(sysData.push_suspended ? "adm.sys_on" : "adm.sys_off");
  $("sys-state").className = sysData.push_suspended ? "banner" : "";
  $("sys-notice").replaceChildren(...noticeData.map((n) => el("option", { value: n.id, text: `${n.title} (${I18N.t("notice.kind." + n.kind)})` })));
  $("notice-list").replaceChildren(el("table", {}, el("tbody", {}, ...noticeData.map((n) => el("tr", {},
    el("td", { text: I18N.t("notice.kind." + n.kind) }), el("td", { text: n.title }), el("td", { text: n.lang }),
    el("td", { text: `${time(n.starts_at)} – ${n.ends_at ? time(n.ends_at) : ""}` }),
    el("td", {}, el("button", { type: "button", class: "secondary", text: I18N.t("adm.delete"), onclick: async () => {
      const r = await api("DELETE", "/api/v1/admin/notices/" + n.id);
      if (r.status !== 200) return fail(r);
      loadSystem();
    } })))))));
}

async function setSuspended(on) {
  const id = $("sys-notice").value;
  if (on && !id) { say("adm.need_notice", true); return; }
  const r = await api("PUT", "/api/v1/admin/system", on ? { push_suspended: true, notice_id: id } : { push_suspended: false });
  if (r.status !== 200) return fail(r);
  say("adm.done", false);
  loadSystem();
}

async function createNotice(e) {
  e.preventDefault();
  const iso = (v) => (v ? new Date(v + ":00+09:00").toISOString().replace(/\.\d+Z$/, "Z") : undefined);
  const body = { kind: $("nt-kind").value, lang: $("nt-lang").value, title: $("nt-title").value.trim(), body: $("nt-body").value };
  if ($("nt-start").value) body.starts_at = iso($("nt-start").value);
  if ($("nt-end").value) body.ends_at = iso($("nt-end").value);
  const r = await api("POST", "/api/v1/admin/notices", body);
  if (r.status !== 201) return fail(r);
  say("adm.created", false);
  $("nt-title").value = "";
  $("nt-body").value = "";
  loadSystem();
}

// ---------------------------------------------------------------- audit

async function loadAudit(more, e) {
  if (e) e.preventDefault();
  const q = new URLSearchParams({ limit: "100" });
  for (const [id, name] of [["af-contract", "contract_no"], ["af-user", "user_id"], ["af-type", "type"]]) {
    if ($(id).value.trim()) q.set(name, $(id).value.trim());
  }
  if (more && auditNext !== null) q.set("after", String(auditNext));
  const r = await api("GET", "/api/v1/admin/audit?" + q);
  if (r.status !== 200) return fail(r);
  auditNext = r.body.next;
  $("af-more").classList.toggle("hidden", auditNext === null);
  const body = $("audit-table").querySelector("tbody");
  const rows = r.body.events.map((ev) => el("tr", {},
    el("td", { text: String(ev.seq) }), el("td", { text: time(ev.at) }), el("td", { text: ev.type }), el("td", { text: ev.actor }),
    el("td", { text: [ev.contract_no, ev.user_id].filter(Boolean).join(" / ") }),
    el("td", {}, el("pre", { class: "detail", text: JSON.stringify(ev.detail) }))));
  if (more) body.append(...rows); else body.replaceChildren(...rows);
}

// ---------------------------------------------------------------- start

document.addEventListener("i18n", () => {
  if (msg) say(msg.key, msg.bad, msg.args);
  renderDashboard();
  if (contractsData.length) renderContracts();
  renderContract();
  renderUser();
  renderImport();
  renderSystem();
});

document.addEventListener("DOMContentLoaded", async () => {
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => openTab(b.dataset.tab)));
  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await api("POST", "/api/v1/admin/session", { username: $("si-user").value.trim(), password: $("si-pass").value });
    if (r.status !== 200) return fail(r);
    say(null);
    signedIn();
  });
  $("boot-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await api("POST", "/api/v1/admin/bootstrap", { code: $("bt-code").value.trim(), username: $("bt-user").value.trim(), password: $("bt-pass").value });
    if (r.status !== 201) return fail(r);
    say("adm.created", false);
    signedIn();
  });
  $("signout").addEventListener("click", async () => { await api("DELETE", "/api/v1/admin/session"); signedOut(); });
  $("search-form").addEventListener("submit", search);
  $("user-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const no = $("uf-contract").value.trim(), uid = $("uf-user").value.trim();
    if (!no || !uid) return;
    await openContract(no);
    await openUser(no, uid);
  });
  $("new-contract").addEventListener("submit", createContract);
  $("import-form").addEventListener("submit", importCsv);
  $("sys-on").addEventListener("click", () => setSuspended(true));
  $("sys-off").addEventListener("click", () => setSuspended(false));
  $("notice-form").addEventListener("submit", createNotice);
  $("audit-form").addEventListener("submit", (e) => loadAudit(false, e));
  $("af-more").addEventListener("click", () => loadAudit(true));
  const probe = await api("GET", "/api/v1/admin/system");
  if (probe.status === 200) signedIn(); else signedOut();
});
