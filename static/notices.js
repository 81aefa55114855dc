// Current notices and the system status, for / and /notices.
"use strict";

function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  return d.toLocaleString(I18N.lang() === "ja" ? "ja-JP" : "en-GB", { timeZone: "Asia/Tokyo" });
}

let noticeData = [];

function renderNotices() {
  const box = document.getElementById("notices");
  if (!box) return;
  box.replaceChildren();
  if (noticeData.length === 0) {
    box.append(el("p", { "data-i18n": "notices.none", text: I18N.t("notices.none") }));
    return;
  }
  for (const n of noticeData) {
    const meta = el("p", { class: "meta" },
      I18N.t("notice.kind." + n.kind) + " · " + I18N.t("notices.from") + " " + fmtTime(n.starts_at) +
      (n.ends_at ? " · " + I18N.t("notices.until") + " " + fmtTime(n.ends_at) : ""));
    box.append(el("article", { class: "card notice", "data-kind": n.kind, lang: n.lang },
      el("h3", { text: n.title }), meta, el("p", { text: n.body })));
  }
}

async function loadNotices() {
  const [n, s] = await Promise.all([api("GET", "/api/v1/notices"), api("GET", "/api/v1/status")]);
  if (n.status === 200) noticeData = n.body.notices;
  if (s.status === 200) document.getElementById("suspended").classList.toggle("hidden", !s.body.push_suspended);
  renderNotices();
  const demo = document.getElementById("demo-link");
  if (demo) {
    try { demo.classList.toggle("hidden", (await fetch("/demo")).status !== 200); } catch (_) { /* offline */ }
  }
}

document.addEventListener("i18n", renderNotices);
document.addEventListener("DOMContentLoaded", loadNotices);
