// /admin: the operator console. Sign-in and first-run bootstrap, dashboard,
// contracts and users with every SPEC R3 action (reason, confirmation, grace
// date), contract creation and cancellation, service-admin change, CSV
// import, system-wide suspension with its notice, notices, the audit log in
// readable rows (translated event, outcome, actor, reason, before → after,
// the raw record behind a disclosure).
"use strict";

I18N.extend({
  ja: {
    "adm.title": "ワンプッシュ認証 当行管理画面",
    "adm.signin": "サインイン",
    "adm.signout": "サインアウト",
    "adm.username": "オペレーター名",
    "adm.first_run": "初めて使うとき：最初のオペレーターを作成",
    "adm.first_run_text": "オペレーターがまだ1人もいないときは、ワンタイムコードで最初のオペレーターを作成します。既にいる場合はサインインしてください。",
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
    "adm.cancel": "キャンセル",
    "adm.reason_given": "理由",
    "adm.period": "掲載期間",
    "adm.fact": "{k}：{v}",
    "adm.sep": "・",
    "result.with": "{r}（{why}）",
    "adm.actions": "操作",
    "adm.event": "出来事",
    "adm.outcome": "結果",
    "adm.all_types": "すべて",
    "adm.raw": "記録データ（JSON）",
    "adm.history_note": "新しい順に最新{n}件",
    "adm.history_none": "記録はありません。",
    "adm.no_actions": "この状態で実行できる操作はありません。",
    "adm.code_where": "onepush serve が初回起動時に表示します（systemd 配下では <data_dir>/bootstrap.code に書き出されます）。オペレーターが1人もいない間だけ、既定で24時間有効です。",
    "adm.username_rule": "半角英数字と . _ - で32文字まで",
    "adm.password_rule": "8〜128文字",
    "adm.boot_conflict": "オペレーターが既に存在するか、ワンタイムコードが使用済みまたは期限切れです。サインインするか、onepush operator add で作成してください。",
    "adm.boot_bad_code": "ワンタイムコードが正しくありません。",
    "adm.signin_failed": "オペレーター名またはパスワードが正しくありません。",
    "adm.resume_hint": "再開すると、停止理由として掲載したお知らせの掲載を終了します。",
    "adm.sys_notice_is": "停止理由のお知らせ：{t}",
    "adm.operator": "オペレーター",
    "adm.change": "変更",
    "adm.ends": "掲載終了",
    "adm.notice_ended": "お知らせの掲載を終了：{t}",
    "adm.count": "{n}件",
    "adm.failures": "誤り{n}回",
    "adm.client": "接続元",
    "adm.via_import": "一括登録",
    "adm.editions": "サービス",
    "adm.yes": "はい",
    "adm.no": "いいえ",
    "actor.operator": "オペレーター {n}",
    "actor.system": "システム",
    "actor.rp": "銀行システム {n}",
    "actor.rp_user": "銀行システム {n}（利用者 {u}）",
    "actor.device": "端末 {n}",
    "actor.user": "利用者 {n}",
    "actor.cli": "コマンドライン",
    "actor.bootstrap": "初回起動コード",
    "actor.unknown": "不明なオペレーター",
    "audit.login": "ログイン",
    "audit.approval": "取引・届出の承認依頼",
    "audit.challenge_closed": "プッシュ認証の結果",
    "audit.challenges_purged": "古い認証要求の削除",
    "audit.fraud_report": "不正の報告",
    "audit.registered": "利用開始登録",
    "audit.registration_failed": "利用開始登録の失敗",
    "audit.token_provisioned": "トークンの発行",
    "audit.token_revoked": "トークンの失効",
    "audit.token_expired": "トークンの期限切れ",
    "audit.push_subscribed": "通知の受信開始",
    "audit.push_unsubscribed": "通知の受信停止",
    "audit.push_removed": "無効な通知先の削除",
    "audit.password_locked": "パスワードロック",
    "audit.user_created": "利用者の作成",
    "audit.user_deleted": "利用者の削除",
    "audit.user_suspended": "一時停止",
    "audit.user_resumed": "再開",
    "audit.user_deregistered": "登録解除",
    "audit.user_stopped": "利用停止",
    "audit.user_unstopped": "利用停止の解除",
    "audit.user_unlocked": "パスワードロック解除",
    "audit.contract_created": "契約の作成",
    "audit.contract_cancelled": "契約の解約",
    "audit.service_admin_changed": "サービス管理責任者の変更",
    "audit.system_changed": "全体停止の切替",
    "audit.notice_created": "お知らせの作成",
    "audit.notice_deleted": "お知らせの削除",
    "audit.operator_login": "オペレーターのサインイン",
    "audit.operator_added": "オペレーターの作成",
    "audit.operator_password_changed": "オペレーターのパスワード変更",
    "audit.operator_disabled": "オペレーターの無効化",
    "audit.operator_enabled": "オペレーターの有効化",
    "audit.operator_removed": "オペレーターの削除",
    "audit.rp_key_added": "RP APIキーの追加",
    "audit.rp_key_revoked": "RP APIキーの失効",
    "result.challenge": "プッシュ送信",
    "result.allow": "許可",
    "result.deny": "拒否",
    "result.ok": "成功",
    "result.failed": "失敗",
    "result.disabled": "無効化済み",
    "result.done": "完了",
    "gate.push": "プッシュ送信",
    "gate.push_not_registered": "スマートフォン未登録",
    "gate.push_suspended": "一時停止中の猶予期間",
    "gate.push_deregistered": "登録解除後の猶予期間",
    "gate.push_system_suspended": "全体停止中",
    "gate.push_not_required": "プッシュ不要の操作",
    "gate.bad_credentials": "ID・パスワード誤り",
    "gate.bad_transaction_password": "取引パスワード誤り",
    "gate.password_locked": "パスワードロック中",
    "gate.account_stopped": "利用停止中",
    "gate.contract_cancelled": "解約済み",
    "gate.registration_required": "登録が必要",
    "gate.too_many_challenges": "要求が多すぎる",
    "kind.login": "ログイン",
    "kind.notice": "届出",
    "kind.transaction": "取引",
    "cause.relying": "銀行システムが中止",
    "cause.superseded": "新しい要求に置き換え",
    "cause.account": "利用者の状態変更で中止",
    "sys.on": "全体停止中",
    "sys.off": "通常運用",
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
    "adm.first_run": "First start: create the first operator",
    "adm.first_run_text": "While there is no operator yet, create the first one with the one-time code. If there is one already, sign in instead.",
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
    "adm.cancel": "Cancel",
    "adm.reason_given": "Reason",
    "adm.period": "Period",
    "adm.fact": "{k}: {v}",
    "adm.sep": ", ",
    "result.with": "{r} ({why})",
    "adm.actions": "Actions",
    "adm.event": "Event",
    "adm.outcome": "Outcome",
    "adm.all_types": "All",
    "adm.raw": "Raw record (JSON)",
    "adm.history_note": "Latest {n}, newest first",
    "adm.history_none": "No entries.",
    "adm.no_actions": "No action is possible in this state.",
    "adm.code_where": "onepush serve prints it at its first start (under systemd it is written to <data_dir>/bootstrap.code instead). Valid only while no operator exists, 24 h by default.",
    "adm.username_rule": "Up to 32 letters, digits, '.', '_' or '-'",
    "adm.password_rule": "8 to 128 characters",
    "adm.boot_conflict": "An operator exists already, or the one-time code was used or has expired. Sign in, or create an operator with onepush operator add.",
    "adm.boot_bad_code": "The one-time code is wrong.",
    "adm.signin_failed": "The operator name or password is wrong.",
    "adm.resume_hint": "Resuming ends the notice that explained the suspension.",
    "adm.sys_notice_is": "Notice that explains it: {t}",
    "adm.operator": "Operator",
    "adm.change": "Change",
    "adm.ends": "Ends",
    "adm.notice_ended": "Notice ended: {t}",
    "adm.count": "{n}",
    "adm.failures": "{n} wrong in a row",
    "adm.client": "Client",
    "adm.via_import": "CSV import",
    "adm.editions": "Services",
    "adm.yes": "yes",
    "adm.no": "no",
    "actor.operator": "operator {n}",
    "actor.system": "system",
    "actor.rp": "bank system {n}",
    "actor.rp_user": "bank system {n} (user {u})",
    "actor.device": "phone {n}",
    "actor.user": "user {n}",
    "actor.cli": "command line",
    "actor.bootstrap": "one-time code",
    "actor.unknown": "unknown operator",
    "audit.login": "Login",
    "audit.approval": "Approval request (transaction or filing)",
    "audit.challenge_closed": "Push request result",
    "audit.challenges_purged": "Old requests purged",
    "audit.fraud_report": "Fraud reported",
    "audit.registered": "Registration",
    "audit.registration_failed": "Registration failed",
    "audit.token_provisioned": "Token provisioned",
    "audit.token_revoked": "Token revoked",
    "audit.token_expired": "Token expired",
    "audit.push_subscribed": "Notifications on",
    "audit.push_unsubscribed": "Notifications off",
    "audit.push_removed": "Dead push address removed",
    "audit.password_locked": "Password locked",
    "audit.user_created": "User created",
    "audit.user_deleted": "User deleted",
    "audit.user_suspended": "Suspended",
    "audit.user_resumed": "Resumed",
    "audit.user_deregistered": "Deregistered",
    "audit.user_stopped": "Stopped",
    "audit.user_unstopped": "Stop lifted",
    "audit.user_unlocked": "Password unlocked",
    "audit.contract_created": "Contract created",
    "audit.contract_cancelled": "Contract cancelled",
    "audit.service_admin_changed": "Service admin changed",
    "audit.system_changed": "System-wide suspension switched",
    "audit.notice_created": "Notice created",
    "audit.notice_deleted": "Notice deleted",
    "audit.operator_login": "Operator sign-in",
    "audit.operator_added": "Operator created",
    "audit.operator_password_changed": "Operator password changed",
    "audit.operator_disabled": "Operator disabled",
    "audit.operator_enabled": "Operator enabled",
    "audit.operator_removed": "Operator removed",
    "audit.rp_key_added": "RP API key added",
    "audit.rp_key_revoked": "RP API key revoked",
    "result.challenge": "Push sent",
    "result.allow": "Allowed",
    "result.deny": "Refused",
    "result.ok": "Succeeded",
    "result.failed": "Failed",
    "result.disabled": "disabled",
    "result.done": "Done",
    "gate.push": "push sent",
    "gate.push_not_registered": "no phone registered",
    "gate.push_suspended": "suspended, in grace",
    "gate.push_deregistered": "deregistered, in grace",
    "gate.push_system_suspended": "system-wide suspension",
    "gate.push_not_required": "push not required",
    "gate.bad_credentials": "wrong ID or password",
    "gate.bad_transaction_password": "wrong transaction password",
    "gate.password_locked": "password locked",
    "gate.account_stopped": "stopped",
    "gate.contract_cancelled": "contract cancelled",
    "gate.registration_required": "registration required",
    "gate.too_many_challenges": "too many requests",
    "kind.login": "Login",
    "kind.notice": "Filing",
    "kind.transaction": "Transaction",
    "cause.relying": "cancelled by the bank's system",
    "cause.superseded": "replaced by a newer request",
    "cause.account": "cancelled by an account change",
    "sys.on": "suspended",
    "sys.off": "normal",
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
const fmt = (key, args) => Object.entries(args || {}).reduce((s, [k, v]) => s.replace("{" + k + "}", () => String(v)), I18N.t(key));
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

/** A header row; an empty key is the action buttons' column (named for screen readers). */
function headRow(keys) {
  return el("thead", {}, el("tr", {}, ...keys.map((k) => (k
    ? el("th", { scope: "col", text: I18N.t(k) })
    : el("th", { scope: "col" }, el("span", { class: "visually-hidden", text: I18N.t("adm.actions") }))))));
}

/** A data table that turns into one block per row on a phone, each cell led by its column's name. */
function stackTable(head, rows) {
  const names = [...head.querySelectorAll("th")].map((th) => th.textContent);
  for (const tr of rows) [...tr.children].forEach((td, i) => { if (names[i]) td.dataset.label = names[i]; });
  return el("table", { class: "events" }, head, el("tbody", {}, ...rows));
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
  $("contract-list").replaceChildren(stackTable(headRow(["reg.contract_no", "adm.name", "adm.edition", "adm.status", ""]), rows));
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
    stackTable(headRow(["reg.user_id", "adm.name", "adm.role", "adm.registration", ""]), rows));
}

let userData = null;
const HISTORY_MAX = 100;

/** The newest HISTORY_MAX audit entries about one user, newest first (the API pages oldest first). */
async function userHistory(no, uid) {
  let events = [];
  let after = 0;
  for (let page = 0; page < 20; page++) {
    const q = new URLSearchParams({ limit: "1000", contract_no: no, user_id: uid });
    if (after) q.set("after", String(after));
    const h = await api("GET", "/api/v1/admin/audit?" + q);
    if (h.status !== 200) break;
    events = events.concat(h.body.events).slice(-HISTORY_MAX);
    if (h.body.next === null || h.body.next === undefined) break;
    after = h.body.next;
  }
  return events.reverse();
}

async function openUser(no, uid) {
  const c = await api("GET", "/api/v1/admin/contracts/" + encodeURIComponent(no));
  if (c.status !== 200) return fail(c);
  const u = c.body.users.find((x) => x.user_id === uid);
  if (!u) return fail({ status: 404, body: { error: { code: "not_found" } } });
  userData = { user: u, contractStatus: c.body.status, history: await userHistory(no, uid) };
  renderUser();
  $("user-detail").classList.remove("hidden");
  $("user-detail").scrollIntoView();
}

// SPEC R3 as src/domain/lifecycle.rs (TABLE) has it: the registration states
// each action starts from, and the flag it needs. The page offers only what
// these allow; the server stays the authority (409 invalid_transition).
const ALL_STATES = ["unregistered", "active", "suspended", "deregistered"];
const ACTION_RULES = [
  ["suspend", ["active"], "not_stopped"],
  ["resume", ["suspended"], "not_stopped"],
  ["deregister", ["active", "suspended"], null],
  ["stop", ALL_STATES, "not_stopped"],
  ["unstop", ALL_STATES, "stopped"],
  ["unlock", ALL_STATES, "locked"],
];

/** The actions a user's state allows; under a cancelled contract only unlock (accounts.rs operator_action). */
function allowedActions(u, contractStatus) {
  const holds = { not_stopped: !u.stopped, stopped: u.stopped, locked: u.password_locked };
  return ACTION_RULES
    .filter(([a, from, needs]) => from.includes(u.registration) && (needs === null || holds[needs]) && (a === "unlock" || contractStatus !== "cancelled"))
    .map(([a]) => a);
}

/** Whether an action leaves a grace period the operator may date (API.md: suspend, deregister, unstop). */
function takesGraceDate(a, u) {
  return a === "suspend" || a === "deregister" || (a === "unstop" && (u.registration === "suspended" || u.registration === "deregistered"));
}

function renderUser() {
  if (!userData || !userData.user) return;
  const u = userData.user;
  const flags = [u.password_locked ? I18N.t("adm.locked") : null, u.stopped ? I18N.t("adm.stopped") : null].filter(Boolean).join(I18N.t("adm.sep")) || "-";
  const dl = el("table", {}, el("tbody", {},
    ...[["reg.user_id", u.user_id], ["adm.role", I18N.t("role." + u.role)], ["adm.registration", I18N.t("state." + u.registration)],
        ["adm.token", u.token_id || "-"], ["adm.usable_until", time(u.usable_until)], ["adm.flags", flags]]
      .map(([k, v]) => el("tr", {}, el("th", { scope: "row", text: I18N.t(k) }), el("td", { text: v, "data-field": k })))));
  const actions = el("div", { class: "row-actions" });
  const allowed = allowedActions(u, userData.contractStatus);
  for (const a of allowed) {
    actions.append(el("button", { type: "button", class: a === "stop" || a === "deregister" ? "danger" : "secondary", "data-action": a, text: I18N.t("action." + a),
      onclick: () => confirmAction(I18N.t("action." + a), u.user_id, { until: takesGraceDate(a, u) },
        (reason, until) => api("POST", `/api/v1/admin/contracts/${u.contract_no}/users/${u.user_id}/${a}`, until ? { reason, usable_until: until } : { reason })) }));
  }
  actions.append(el("button", { type: "button", class: "danger", "data-action": "delete", text: I18N.t("adm.delete_user"),
    onclick: () => confirmAction(I18N.t("adm.delete_user"), u.user_id, { until: false },
      (reason) => api("DELETE", `/api/v1/admin/contracts/${u.contract_no}/users/${u.user_id}`, { reason })) }));
  const history = userData.history.length === 0
    ? el("p", { text: I18N.t("adm.history_none") })
    : el("table", { class: "events", id: "history" },
      headRow(["adm.at", "adm.event", "adm.outcome", "adm.actor", "adm.detail"]),
      el("tbody", {}, ...userData.history.map((ev) => eventRow(ev, false))));
  $("user-detail").replaceChildren(...[el("h2", { text: `${u.contract_no} / ${u.user_id}` }), dl,
    allowed.length === 0 ? el("p", { class: "hint", text: I18N.t("adm.no_actions") }) : null, actions,
    el("h3", { text: I18N.t("adm.history") }),
    userData.history.length ? el("p", { class: "hint", text: fmt("adm.history_note", { n: userData.history.length }) }) : null,
    history].filter(Boolean));
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
  let r;
  try {
    // The file's bytes as they are: the server reads UTF-8 (with or without a
    // BOM) and Shift_JIS, which file.text() would have garbled.
    const resp = await fetch("/api/v1/admin/import", { method: "POST", headers: { "Content-Type": "text/csv" }, body: file, credentials: "same-origin" });
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

/** Notices that are public now or will be: the ones that can explain a suspension. */
function openNotices() {
  const now = Date.now();
  return noticeData.filter((n) => !n.ends_at || new Date(n.ends_at).getTime() > now);
}

function renderSystem() {
  if (!sysData) return;
  const on = sysData.push_suspended;
  $("sys-state").textContent = I18N.t(on ? "adm.sys_on" : "adm.sys_off");
  $("sys-state").className = on ? "banner" : "";
  const linked = on && noticeData.find((n) => n.id === sysData.notice_id);
  if (linked) $("sys-state").append(el("br"), fmt("adm.sys_notice_is", { t: linked.title }));
  // Only the switch that applies: suspend (with its notice) while running, resume while suspended.
  $("sys-on-box").classList.toggle("hidden", on);
  $("sys-off-box").classList.toggle("hidden", !on);
  $("sys-notice").replaceChildren(...openNotices().map((n) => el("option", { value: n.id, text: `${n.title} (${I18N.t("notice.kind." + n.kind)})` })));
  $("notice-list").replaceChildren(noticeData.length === 0 ? el("p", { text: I18N.t("notices.none") }) : stackTable(
    headRow(["adm.kind", "adm.notice_title", "adm.lang", "adm.period", ""]),
    noticeData.map((n) => el("tr", { "data-notice": n.id },
      el("td", { text: I18N.t("notice.kind." + n.kind) }), el("td", { text: n.title }), el("td", { text: I18N.t("lang." + n.lang) }),
      el("td", { text: `${time(n.starts_at)} – ${n.ends_at ? time(n.ends_at) : ""}` }),
      el("td", {}, el("button", { type: "button", class: "secondary", text: I18N.t("adm.delete"), onclick: async () => {
        const r = await api("DELETE", "/api/v1/admin/notices/" + n.id);
        if (r.status !== 200) return fail(r);
        loadSystem();
      } }))))));
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

// Every type the server writes (NewEvent::new in src/service/*.rs); an
// unknown one still shows, by its raw name.
const AUDIT_TYPES = ["login", "approval", "challenge_closed", "fraud_report", "registered", "registration_failed",
  "token_provisioned", "token_revoked", "token_expired", "push_subscribed", "push_unsubscribed", "push_removed",
  "password_locked", "user_created", "user_deleted", "user_suspended", "user_resumed", "user_deregistered",
  "user_stopped", "user_unstopped", "user_unlocked", "contract_created", "contract_cancelled", "service_admin_changed",
  "system_changed", "notice_created", "notice_deleted", "challenges_purged", "operator_login", "operator_added",
  "operator_password_changed", "operator_disabled", "operator_enabled", "operator_removed", "rp_key_added", "rp_key_revoked"];

/** A translation, or `fallback` (the raw value) where the table has none. */
function tOr(key, fallback) {
  const t = I18N.t(key);
  return t === key ? fallback : t;
}

function typeLabel(type) {
  return tOr("audit." + type, type);
}

/** Who did it, in words: "operator:alice", "rp:bank/user:sa", "device:ONEP…", "system"… */
function actorText(a) {
  if (!a) return "-";
  if (a === "operator:?") return I18N.t("actor.unknown");
  for (const name of ["system", "cli", "bootstrap"]) if (a === name) return I18N.t("actor." + name);
  let m;
  if ((m = /^rp:([^/]+)\/user:(.+)$/.exec(a))) return fmt("actor.rp_user", { n: m[1], u: m[2] });
  if ((m = /^(operator|rp|device|user):(.+)$/.exec(a))) return fmt("actor." + m[1], { n: m[2] });
  return a;
}

/** A user's state as an audit entry records it: registration and flags. */
function stateText(s) {
  if (!s || !s.registration) return "-";
  return [tOr("state." + s.registration, s.registration), s.stopped ? I18N.t("adm.stopped") : null,
    s.password_locked ? I18N.t("adm.locked") : null].filter(Boolean).join(I18N.t("adm.sep"));
}

/**
 * One audit entry in words: its outcome (with a tone: ok, bad or none), the
 * reason an operator gave, the change (before → after), and other facts.
 */
function describe(ev) {
  const d = ev.detail || {};
  const r = { outcome: "", tone: "", reason: null, change: null, facts: [] };
  const fact = (key, v) => { if (v !== undefined && v !== null && v !== "") r.facts.push(fmt("adm.fact", { k: I18N.t(key), v })); };
  const noticeTitle = (id) => { const n = noticeData.find((x) => x.id === id); return n ? `${n.title} (${id})` : id; };
  switch (ev.type) {
    case "login":
    case "approval": {
      const res = tOr("result." + d.result, d.result || "-");
      r.outcome = d.result === "challenge" ? res : fmt("result.with", { r: res, why: tOr("gate." + d.reason, d.reason) });
      r.tone = d.result === "allow" ? "ok" : d.result === "deny" ? "bad" : "";
      if (d.kind) fact("adm.kind", tOr("kind." + d.kind, d.kind));
      fact("adm.client", d.client && d.client.ip);
      break;
    }
    case "challenge_closed":
      r.outcome = tOr("outcome." + d.status, d.status);
      r.tone = d.status === "approved" ? "ok" : (d.status === "rejected" || d.status === "token_mismatch") ? "bad" : "";
      fact("adm.kind", tOr("kind." + d.kind, d.kind));
      if (d.cancel_cause) fact("adm.outcome", tOr("cause." + d.cancel_cause, d.cancel_cause));
      fact("adm.token", d.token_id);
      break;
    case "fraud_report":
      r.outcome = tOr("kind." + d.kind, d.kind);
      r.tone = "bad";
      break;
    case "registered":
      r.outcome = I18N.t("result.done");
      r.tone = "ok";
      fact("adm.token", d.token_id);
      break;
    case "registration_failed":
      r.outcome = errorText(d.code);
      r.tone = "bad";
      fact("adm.token", d.token_id);
      break;
    case "token_provisioned":
      fact("adm.token", d.token_id);
      fact("adm.name", d.label);
      fact("adm.client", d.ip);
      break;
    case "token_revoked":
      r.reason = d.reason;
      fact("adm.token", d.token_id);
      break;
    case "token_expired":
    case "push_unsubscribed":
    case "push_removed":
      fact("adm.token", d.token_id);
      break;
    case "push_subscribed":
      fact("adm.token", d.token_id);
      fact("adm.kind", d.kind);
      break;
    case "password_locked":
      r.outcome = fmt("adm.failures", { n: d.failures });
      r.tone = "bad";
      break;
    case "user_created":
      fact("adm.name", d.name);
      fact("adm.role", tOr("role." + d.role, d.role));
      if (d.via) fact("adm.via_import", d.via);
      break;
    case "contract_created":
      fact("adm.name", d.name);
      fact("adm.edition", d.edition);
      break;
    case "service_admin_changed":
      r.reason = d.reason;
      r.change = `${d.before || "-"} → ${d.after || "-"}`;
      break;
    case "system_changed":
      r.change = `${I18N.t(d.before && d.before.push_suspended ? "sys.on" : "sys.off")} → ${I18N.t(d.after && d.after.push_suspended ? "sys.on" : "sys.off")}`;
      if (d.after && d.after.notice_id) fact("adm.notice_for", noticeTitle(d.after.notice_id));
      if (d.notice_ended) r.facts.push(fmt("adm.notice_ended", { t: noticeTitle(d.notice_ended.id) }));
      break;
    case "notice_created":
      fact("adm.kind", tOr("notice.kind." + d.kind, d.kind));
      fact("adm.notice_title", d.title);
      break;
    case "notice_deleted":
      fact("adm.notice_title", d.id);
      break;
    case "challenges_purged":
      r.outcome = fmt("adm.count", { n: d.count });
      break;
    case "operator_login":
      r.outcome = d.ok ? I18N.t("result.ok") : d.disabled ? fmt("result.with", { r: I18N.t("result.failed"), why: I18N.t("result.disabled") }) : I18N.t("result.failed");
      r.tone = d.ok ? "ok" : "bad";
      fact("adm.operator", d.username);
      break;
    case "operator_added":
    case "operator_password_changed":
    case "operator_disabled":
    case "operator_enabled":
    case "operator_removed":
      fact("adm.operator", d.operator);
      break;
    case "rp_key_added":
      fact("adm.name", d.name);
      fact("adm.editions", Array.isArray(d.editions) ? d.editions.join(", ") : d.editions);
      break;
    case "rp_key_revoked":
      fact("adm.name", d.name);
      break;
    default:
      // The user actions (user_suspended…) and anything alike: reason, before → after.
      if (typeof d.reason === "string") r.reason = d.reason;
      if (d.before && d.after && typeof d.before === "object") {
        r.outcome = stateText(d.after);
        r.change = `${stateText(d.before)} → ${stateText(d.after)}`;
        if (d.after.usable_until) fact("adm.usable_until", time(d.after.usable_until));
      }
  }
  return r;
}

/** A table row for an audit entry; `full` adds the number and the subject (the audit tab). */
function eventRow(ev, full) {
  const r = describe(ev);
  const detail = el("td", { "data-label": I18N.t("adm.detail") });
  if (r.reason) detail.append(el("p", { class: "reason", text: fmt("adm.fact", { k: I18N.t("adm.reason_given"), v: r.reason }) }));
  if (r.change) detail.append(el("p", { class: "change", text: fmt("adm.fact", { k: I18N.t("adm.change"), v: r.change }) }));
  for (const f of r.facts) detail.append(el("p", { class: "fact", text: f }));
  detail.append(el("details", { class: "raw" }, el("summary", { text: I18N.t("adm.raw") }),
    el("pre", { class: "detail", text: JSON.stringify(ev, null, 2) })));
  const cells = [
    full ? el("td", { text: String(ev.seq), "data-label": I18N.t("adm.seq") }) : null,
    el("td", { text: time(ev.at), "data-label": I18N.t("adm.at") }),
    el("td", { class: "ev-type", text: typeLabel(ev.type), "data-label": I18N.t("adm.event") }),
    el("td", { "data-label": I18N.t("adm.outcome") }, r.outcome ? el("span", { class: "tag " + r.tone, text: r.outcome }) : "-"),
    el("td", { text: actorText(ev.actor), title: ev.actor, "data-label": I18N.t("adm.actor") }),
    full ? el("td", { text: [ev.contract_no, ev.user_id].filter(Boolean).join(" / ") || "-", "data-label": I18N.t("adm.subject") }) : null,
    detail,
  ];
  return el("tr", { "data-type": ev.type }, ...cells.filter(Boolean));
}

let auditEvents = [];
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
  auditEvents = more ? auditEvents.concat(r.body.events) : r.body.events;
  renderAudit();
}

function renderAudit() {
  $("af-more").classList.toggle("hidden", auditNext === null);
  $("audit-table").querySelector("tbody").replaceChildren(...auditEvents.map((ev) => eventRow(ev, true)));
}

/** The type filter: every type, translated, sorted in the page's language. */
function renderTypeFilter() {
  const sel = $("af-type");
  const chosen = sel.value;
  const types = AUDIT_TYPES.map((t) => [t, typeLabel(t)]).sort((a, b) => a[1].localeCompare(b[1], I18N.lang()));
  sel.replaceChildren(el("option", { value: "", text: I18N.t("adm.all_types") }), ...types.map(([t, label]) => el("option", { value: t, text: label })));
  sel.value = chosen;
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
  renderTypeFilter();
  renderAudit();
});

document.addEventListener("DOMContentLoaded", async () => {
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => openTab(b.dataset.tab)));
  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await api("POST", "/api/v1/admin/session", { username: $("si-user").value.trim(), password: $("si-pass").value });
    if (r.status === 401) return say("adm.signin_failed", true);
    if (r.status !== 200) return fail(r);
    say(null);
    signedIn();
  });
  $("boot-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await api("POST", "/api/v1/admin/bootstrap", { code: $("bt-code").value.trim(), username: $("bt-user").value.trim(), password: $("bt-pass").value });
    if (r.status === 409) return say("adm.boot_conflict", true);
    if (r.status === 401) return say("adm.boot_bad_code", true);
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
  renderTypeFilter();
  const probe = await api("GET", "/api/v1/admin/system");
  if (probe.status === 200) signedIn(); else signedOut();
});
