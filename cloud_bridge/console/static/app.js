// The butler console: login, the open alerts kept live by server-sent events, acknowledge and
// resolve, the history. Plain DOM; every value from the server goes in as text, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const RANK = { critical: 3, high: 2, normal: 1, low: 0 };
  const state = {
    lang: localStorage.getItem("mashang.lang") === "en" ? "en" : "zh",
    me: null,
    csrf: null,
    open: new Map(),
    history: [],
    tab: "open",
    stream: null,
  };

  const text = (key, ...args) => {
    const value = window.I18N[state.lang][key];
    return typeof value === "function" ? value(...args) : value;
  };
  const word = (table, key) => (window.I18N[state.lang][table] || {})[key] || key || "";
  const clock = (seconds) =>
    seconds ? new Date(seconds * 1000).toLocaleTimeString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false }) : "";

  function node(tag, className, content) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (content !== undefined && content !== null) element.textContent = String(content);
    return element;
  }

  async function api(path, method = "GET", body = undefined) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
    const response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    return { status: response.status, data };
  }

  // -- language ------------------------------------------------------------------------------

  function applyLanguage() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    for (const element of document.querySelectorAll("[data-i18n]")) {
      element.textContent = text(element.dataset.i18n);
    }
    $("lang").textContent = text("switchTo");
    $("lang").lang = state.lang === "zh" ? "en" : "zh-CN";
    render();
  }

  // -- sessions ------------------------------------------------------------------------------

  async function start() {
    const { status, data } = await api("/v1/console/session");
    if (status === 200) enter(data);
    else showLogin();
  }

  function showLogin() {
    if (state.stream) state.stream.close();
    state.stream = null;
    state.me = state.csrf = null;
    state.open.clear();
    $("alerts-view").hidden = true;
    $("login-view").hidden = false;
    $("logout").hidden = true;
    $("who").textContent = "";
    $("account").focus();
  }

  function enter(session) {
    state.me = session;
    state.csrf = session.csrf;
    $("login-view").hidden = true;
    $("alerts-view").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = session.name;
    $("login-error").textContent = "";
    connect();
    render();
  }

  async function login(event) {
    event.preventDefault();
    $("login-button").disabled = true;
    const { status, data } = await api("/v1/console/login", "POST", {
      account: $("account").value.trim(),
      password: $("password").value,
    });
    $("login-button").disabled = false;
    $("password").value = "";
    if (status === 200) enter(data);
    else $("login-error").textContent = text(status === 429 ? "loginLimited" : "loginFailed");
  }

  async function logout() {
    await api("/v1/console/logout", "POST", {});
    showLogin();
  }

  // -- live alerts ---------------------------------------------------------------------------

  function connect() {
    if (state.stream) state.stream.close();
    const stream = new EventSource("/v1/console/stream");
    stream.addEventListener("snapshot", (event) => {
      state.open = new Map(JSON.parse(event.data).map((alert) => [alert.id, alert]));
      setLive(true);
      render();
    });
    stream.addEventListener("alert", (event) => upsert(JSON.parse(event.data)));
    stream.onerror = () => {
      setLive(false);
      // Closed for good (the session ended): ask the server who we are before trying again.
      if (stream.readyState === EventSource.CLOSED) setTimeout(start, 1000);
    };
    state.stream = stream;
  }

  function setLive(live) {
    const badge = $("live");
    badge.dataset.i18n = live ? "live" : "offline";
    badge.textContent = text(badge.dataset.i18n);
    badge.classList.toggle("on", live);
  }

  function upsert(alert) {
    const isNew = !state.open.has(alert.id) && alert.state !== "resolved";
    if (alert.state === "resolved") {
      state.open.delete(alert.id);
      state.history = [alert, ...state.history.filter((old) => old.id !== alert.id)];
    } else {
      state.open.set(alert.id, alert);
    }
    if (isNew && RANK[alert.priority] >= RANK.high && navigator.vibrate) navigator.vibrate([300, 100, 300]);
    render();
  }

  async function act(alert, action, button) {
    button.disabled = true;
    const { status, data } = await api(`/v1/console/alerts/${encodeURIComponent(alert.id)}/${action}`, "POST", {});
    if (status === 200) upsert(data.alert);
    else if (status === 401) showLogin();
    else {
      button.disabled = false;
      window.alert(text("failed"));
    }
  }

  async function showTab(tab) {
    state.tab = tab;
    $("tab-open").classList.toggle("active", tab === "open");
    $("tab-history").classList.toggle("active", tab === "history");
    if (tab === "history") {
      const { status, data } = await api("/v1/console/alerts?view=history");
      if (status === 401) return showLogin();
      if (status === 200) state.history = data.alerts;
    }
    render();
  }

  // -- drawing -------------------------------------------------------------------------------

  function card(alert) {
    const item = node("li", `card p-${alert.priority} s-${alert.state}`);
    item.id = `alert-${alert.id}`;
    item.dataset.state = alert.state;

    const head = node("div", "card-head");
    head.append(
      node("span", "badge", `${word("category", alert.category)} · ${word("priority", alert.priority)}`),
      node("span", "state", word("state", alert.state)),
    );
    item.append(head);

    const resident = alert.resident;
    item.append(node("div", "name", resident ? resident.name : `${text("unregistered")} ${alert.device_id}`));
    const place = [alert.building && alert.building.name, resident && resident.room].filter(Boolean).join(" ");
    if (place) item.append(node("div", "place", place));
    if (resident && resident.phone) {
      const phone = node("a", "phone", `${text("call")} ${resident.phone}`);
      phone.href = `tel:${resident.phone}`;
      item.append(phone);
    }

    const facts = [];
    if (alert.category === "help") {
      facts.push([word("action", alert.action), text("presses", alert.presses)].filter(Boolean).join(" · "));
    }
    if (alert.reason) facts.push(word("reason", alert.reason));
    if (typeof alert.battery === "number") facts.push(text("battery", alert.battery));
    if (alert.escalations > 0 && alert.state !== "acknowledged") facts.push(text("escalations", alert.escalations));
    facts.push(text("raisedAt", clock(alert.raised_at)));
    if (alert.acknowledged_at) facts.push(text("acknowledgedBy", alert.acknowledged_by, clock(alert.acknowledged_at)));
    if (alert.resolved_at) facts.push(text("resolvedBy", alert.resolved_by, clock(alert.resolved_at)));
    const list = node("ul", "facts");
    for (const fact of facts) list.append(node("li", null, fact));
    item.append(list);

    if (alert.state !== "resolved") {
      const actions = node("div", "actions");
      if (alert.state === "raised" || alert.state === "notified") {
        const ack = node("button", "primary acknowledge", text("acknowledge"));
        ack.type = "button";
        ack.addEventListener("click", () => act(alert, "acknowledge", ack));
        actions.append(ack);
      }
      const resolve = node("button", "resolve", text("resolve"));
      resolve.type = "button";
      resolve.addEventListener("click", () => act(alert, "resolve", resolve));
      actions.append(resolve);
      item.append(actions);
    }
    return item;
  }

  function render() {
    if (!state.me) return;
    const open = [...state.open.values()].sort(
      (a, b) => RANK[b.priority] - RANK[a.priority] || b.raised_at - a.raised_at,
    );
    const waiting = open.filter((alert) => alert.state === "raised" || alert.state === "notified").length;
    document.title = `${waiting ? `(${waiting}) ` : ""}${text("title")}`;
    $("open-count").textContent = open.length ? String(open.length) : "";
    const showing = state.tab === "open" ? open : state.history;
    $("open-list").hidden = state.tab !== "open";
    $("history-list").hidden = state.tab !== "history";
    $(state.tab === "open" ? "open-list" : "history-list").replaceChildren(...showing.map(card));
    $("empty").hidden = showing.length > 0;
    $("empty").textContent = text(state.tab === "open" ? "emptyOpen" : "emptyHistory");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    $("tab-open").addEventListener("click", () => showTab("open"));
    $("tab-history").addEventListener("click", () => showTab("history"));
    $("lang").addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      localStorage.setItem("mashang.lang", state.lang);
      applyLanguage();
    });
    applyLanguage();
    start();
  });
})();
