// The street office's page: log in (the console's login), then the stalls' violations and the
// residents' reports, each report's state and note saved in place. Every text from the server
// goes in as text, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const STATES = { new: "待处理", handled: "已处理", dismissed: "不予处理" };
const REFRESH_MS = 30000;
let csrf = "";

async function api(path, method = "GET", body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  try {
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    return { status: response.status, data };
  } catch (error) {
    return { status: 0, data: {} };
  }
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else if (key.includes("-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function facts(pairs) {
  const list = el("dl");
  for (const [term, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    list.append(el("dt", { textContent: term }), el("dd", { textContent: String(value) }));
  }
  return list;
}

function showLogin(message = "") {
  $("login-view").hidden = false;
  $("office-view").hidden = true;
  $("who-bar").hidden = true;
  $("login-error").textContent = message;
}

function showOffice(session) {
  csrf = session.csrf;
  $("who").textContent = session.name;
  $("time-zone").textContent = session.time_zone;
  $("login-view").hidden = true;
  $("office-view").hidden = false;
  $("who-bar").hidden = false;
  refresh();
}

async function start() {
  const { status, data } = await api("/v1/office/session");
  if (status === 200) showOffice(data);
  else if (status === 403) showLogin("此账号不是街道办账号。");
  else showLogin();
}

async function login(event) {
  event.preventDefault();
  $("login-button").disabled = true;
  const { status } = await api("/v1/console/login", "POST", {
    account: $("account").value.trim(), password: $("password").value,
  });
  $("login-button").disabled = false;
  if (status !== 200) {
    const why = { 0: "连不上服务器，请稍后再试。", 429: "失败次数过多，请稍后再试。" }[status];
    showLogin(why || "账号或密码不对。");
    return;
  }
  $("password").value = "";
  start();
}

async function logout() {
  await api("/v1/office/logout", "POST", {});
  showLogin();
}

function violationCard(item) {
  const where = item.stall_zone && item.stall_zone !== item.zone
    ? `${item.zone || "未知区域"}（登记区域：${item.stall_zone}）` : item.zone;
  const card = el("li", { class: "card violation", data: { id: item.id, stall: item.stall.id || "" } },
    el("h3", { textContent: item.stall.label }),
    el("p", { class: "reason", textContent: item.reason_words }),
    facts([
      ["区域", where],
      ["时间", item.time],
      ["扫码设备", item.scanner && `${item.scanner}${item.purpose_words ? `（${item.purpose_words}）` : ""}`],
      ["说明", item.forged ? "摊位码验签失败，摊位为码上所写，未经核实" : null],
    ]));
  if (item.stall.id) {
    const button = el("button", { class: "secondary history", type: "button", textContent: "摊位记录" });
    button.addEventListener("click", () => openHistory(item.stall.id));
    card.append(button);
  }
  return card;
}

function reportCard(item) {
  const card = el("li", { class: "card report", data: { id: String(item.id), state: item.state } },
    el("h3", { textContent: item.stall.label }),
    el("p", {}, el("span", { class: "state", textContent: STATES[item.state] || item.state })),
    facts([
      ["类别", item.category_words],
      ["区域", item.zone],
      ["评分", item.rating ? "★".repeat(item.rating) : null],
      ["时间", item.time],
    ]),
    el("p", { class: "words", textContent: item.text }));
  const select = el("select", { class: "state-select", "aria-label": "处理状态" });
  for (const [value, words] of Object.entries(STATES)) {
    select.append(el("option", { value, textContent: words, selected: value === item.state }));
  }
  const note = el("textarea", { class: "note", maxLength: 500, rows: 2, placeholder: "处理说明（可选）", value: item.note || "" });
  const save = el("button", { class: "save", type: "button", textContent: "保存" });
  const said = el("p", { class: "saved", role: "status" });
  if (item.state_by) said.textContent = `处理人：${item.state_by}`;
  save.addEventListener("click", async () => {
    save.disabled = true;
    const { status, data } = await api(`/v1/office/reports/${item.id}`, "POST", { state: select.value, note: note.value });
    save.disabled = false;
    if (status === 200) {
      card.replaceWith(reportCard(data.report));
    } else {
      said.textContent = `没有保存：${data.error || status}`;
    }
  });
  card.append(el("div", { class: "handling" }, select, note, save, said));
  const button = el("button", { class: "secondary history", type: "button", textContent: "摊位记录" });
  button.addEventListener("click", () => openHistory(item.stall.id));
  card.append(button);
  return card;
}

function fill(list, empty, count, items, make) {
  $(list).replaceChildren(...items.map(make));
  $(empty).hidden = items.length > 0;
  $(count).textContent = `（${items.length}）`;
}

async function refresh() {
  const [violations, reports] = await Promise.all([api("/v1/office/violations"), api("/v1/office/reports")]);
  if (violations.status === 401 || reports.status === 401) return showLogin("请重新登录。");
  if (violations.status !== 200 || reports.status !== 200) {
    $("office-error").textContent = "读取失败，请稍后刷新。";
    return;
  }
  $("office-error").textContent = "";
  fill("violation-list", "no-violations", "violation-count", violations.data.violations, violationCard);
  // A report being edited is not replaced under the officer's hands.
  if (!document.activeElement || !document.activeElement.closest("#report-list")) {
    fill("report-list", "no-reports", "report-count", reports.data.reports, reportCard);
  }
}

const ENTRY_WORDS = {
  violation: (entry) => `违规：${entry.reason_words}${entry.zone ? ` · ${entry.zone}` : ""}${entry.scanner ? ` · ${entry.scanner}` : ""}`,
  checkin: (entry) => `${entry.purpose_words}${entry.zone ? ` · ${entry.zone}` : ""}${entry.scanner ? ` · ${entry.scanner}` : ""}`,
  report: (entry) => `居民举报${entry.category_words ? `（${entry.category_words}）` : ""}：${entry.text} · ${STATES[entry.state] || entry.state}`,
};

async function openHistory(stallId) {
  const { status, data } = await api(`/v1/office/stalls/${encodeURIComponent(stallId)}`);
  if (status !== 200) {
    $("office-error").textContent = "读取摊位记录失败。";
    return;
  }
  const stall = data.stall;
  $("history-title").textContent = stall ? `${stall.name}${stall.number ? `（${stall.number}号）` : ""} · 摊位记录` : `摊位 ${stallId} · 记录`;
  $("history-facts").textContent = stall ? `登记区域：${stall.zone || "-"} · 经营时间：${stall.hours}` : "登记名单中没有此摊位";
  $("history-list").replaceChildren(...data.entries.map((entry) =>
    el("li", { class: entry.kind }, el("b", { textContent: entry.time }), " ", ENTRY_WORDS[entry.kind](entry))));
  $("history").hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("history-close").addEventListener("click", () => { $("history").hidden = true; });
  setInterval(() => { if (!$("office-view").hidden && $("history").hidden) refresh(); }, REFRESH_MS);
  start();
});
