// /register: Art. 4. Step 1 contract, user and password; step 2 token ID
// (tolerant, Luhn checked as it is typed) and two consecutive OTPs.
"use strict";

const TOKEN_PREFIX_LEN = 4;

/** Upper case, without spaces and hyphens: what the server accepts too. */
function cleanToken(s) {
  return s.replace(/[\s-]/g, "").toUpperCase();
}

function luhnDigit(digits) {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 0) { d *= 2; if (d > 9) d -= 9; }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

function tokenValid(s) {
  const t = cleanToken(s);
  if (!/^[A-Z]{4}[0-9]{8}$/.test(t)) return false;
  const digits = t.slice(TOKEN_PREFIX_LEN);
  return luhnDigit(digits.slice(0, 7)) === digits.charCodeAt(7) - 48;
}

const fieldErrors = {};

function setError(field, key, raw) {
  fieldErrors[field] = key ? { key, raw } : null;
  const p = document.getElementById(field + "-err");
  if (p) p.textContent = key ? (raw || I18N.t(key)) : "";
  const input = document.getElementById(field);
  if (input) input.setAttribute("aria-invalid", key ? "true" : "false");
}

function rerenderErrors() {
  for (const [field, e] of Object.entries(fieldErrors)) if (e) setError(field, e.key, e.raw);
  checkToken();
}

function checkToken() {
  const input = document.getElementById("token_id");
  const p = document.getElementById("token_id-err");
  const v = input.value;
  if (!v) { p.textContent = ""; p.className = "field-error"; return; }
  const ok = tokenValid(v);
  p.textContent = I18N.t(ok ? "reg.token_ok" : "reg.token_bad");
  p.className = ok ? "field-error ok" : "field-error";
  input.setAttribute("aria-invalid", ok ? "false" : "true");
}

/** Which field an API error belongs on. */
function fieldFor(code, message) {
  const named = (message || "").split(":")[0];
  if (["contract_no", "user_id", "password", "token_id", "otp1", "otp2"].includes(named)) return named;
  switch (code) {
    case "bad_credentials": return "password";
    case "token_already_bound": return "token_id";
    case "token_or_otp_mismatch": return "otp2";
    default: return null;
  }
}

function showApiError(body) {
  const code = body && body.error ? body.error.code : "other";
  const message = body && body.error ? body.error.message : "";
  const field = fieldFor(code, message);
  const formErr = document.getElementById("form-error");
  formErr.textContent = "";
  if (field) {
    if (["contract_no", "user_id", "password"].includes(field)) showStep(1);
    setError(field, "err." + code);
    document.getElementById(field).focus();
  } else {
    formErr.textContent = errorText(code);
  }
}

function showStep(n) {
  document.getElementById("step1").classList.toggle("hidden", n !== 1);
  document.getElementById("step2").classList.toggle("hidden", n !== 2);
}

function requireFields(fields) {
  let ok = true;
  for (const f of fields) {
    const v = document.getElementById(f).value.trim();
    if (!v) { setError(f, "reg.required"); ok = false; } else setError(f, null);
  }
  return ok;
}

document.addEventListener("DOMContentLoaded", () => {
  document.addEventListener("i18n", rerenderErrors);
  document.getElementById("token_id").addEventListener("input", checkToken);
  document.getElementById("back").addEventListener("click", () => showStep(1));
  document.getElementById("step1").addEventListener("submit", (e) => {
    e.preventDefault();
    if (requireFields(["contract_no", "user_id", "password"])) {
      showStep(2);
      document.getElementById("token_id").focus();
    }
  });
  document.getElementById("step2").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!requireFields(["token_id", "otp1", "otp2"])) return;
    if (!tokenValid(document.getElementById("token_id").value)) { checkToken(); return; }
    const v = (id) => document.getElementById(id).value.trim();
    const r = await api("POST", "/api/v1/registrations", {
      contract_no: v("contract_no"), user_id: v("user_id"), password: document.getElementById("password").value,
      token_id: v("token_id"), otp1: v("otp1"), otp2: v("otp2"),
    });
    if (r.status === 201) {
      document.getElementById("step2").classList.add("hidden");
      document.getElementById("done").classList.remove("hidden");
      document.getElementById("form-error").textContent = "";
    } else {
      showApiError(r.body);
    }
  });
});
