// The butler console: login, the open alerts kept live by server-sent events (calls first and
// loud, device faults grouped and quiet, visit reminders and stall matters apart), acknowledge
// and resolve delivered through any outage (actions.js), the history and the gateways. While
// the live stream is down the cards say they are stale, from when, and it reconnects.

import { Actions } from "./actions.js";
import { api, setCsrf } from "./api.js";
import * as door from "./door.js";
import * as fleet from "./fleet.js";
import { language, setLanguage, setZone, text, when } from "./format.js";
import * as history from "./history.js";
import * as notice from "./notice.js";
import * as visits from "./visits.js";
import { card, faultGroup, faultGroups, kindOf, noticeOf, patch, urgentFirst, waiting } from "./views.js";

const $ = (id) => document.getElementById(id);
const RECONNECT_MS = [1000, 2000, 5000, 10000];
const FOCUS_MS = 6000;
const TABS = ["open", "history", "visits", "fleet"];
const state = {
  me: null,
  open: new Map(),
  seen: new Set(), // alerts this page has rung or announced for already
  tab: "open",
  stream: null,
  live: false,
  lost: false, // the stream failed since the last snapshot: the cards may be stale
  freshAt: null, // until when the cards were known current (unix seconds)
  reconnects: 0,
  reconnectTimer: null,
  choosing: new Map(), // open resolve pickers, by card or group key
  doors: new Map(), // open door-code boxes, by alert id: { code, missing }
  expanded: new Set(), // fault groups whose list the butler opened
  focused: null,
};

const actions = new Actions({ landed: upsert, changed: render, loggedOut: showLogin });

const ctx = {
  job: (alertId) => actions.of(alertId),
  choosing: (key) => state.choosing.get(key),
  get focused() {
    return state.focused;
  },
  expanded: (key) => state.expanded.has(key),
  expand(key, open) {
    if (open) state.expanded.add(key);
    else state.expanded.delete(key);
  },
  acknowledge(ids) {
    for (const alertId of ids) actions.send(alertId, "acknowledge");
  },
  resolve(key, ids, reason, note) {
    const said = note.trim();
    const picker = state.choosing.get(key);
    if (reason === "other" && !said && picker) {
      picker.missing = true;
      return render();
    }
    state.choosing.delete(key);
    for (const alertId of ids) actions.send(alertId, "resolve", { reason, note: said });
  },
  choose(key, how) {
    if (how === null) state.choosing.delete(key);
    else state.choosing.set(key, { ...(state.choosing.get(key) || { note: "" }), other: how === "other", missing: false });
    render();
    if (how === "other") $(`note-${key}`).focus();
  },
  note(key, value) {
    state.choosing.get(key).note = value; // kept across redraws; no redraw while typing
  },
  cancel(ids) {
    for (const alertId of ids) actions.cancel(alertId);
  },
  door: (alertId) => state.doors.get(alertId),
  cameraReads: door.cameraReads(),
  openDoor(alertId) {
    state.doors.set(alertId, { code: "", missing: false });
    render();
    if (door.cameraReads()) ctx.look(alertId);
    else $(`door-${alertId}`)?.focus();
  },
  closeDoor(alertId) {
    door.close();
    state.doors.delete(alertId);
    render();
  },
  doorCode(alertId, value) {
    state.doors.get(alertId).code = value; // kept across redraws; no redraw while typing
  },
  arrive(alertId, code) {
    const box = state.doors.get(alertId);
    const said = (code || "").trim();
    if (!said) {
      if (box) box.missing = true;
      return render();
    }
    if (box) Object.assign(box, { code: said, missing: false });
    actions.send(alertId, "arrive", { code: said });
  },
  look(alertId) {
    door.look((found) => ctx.arrive(alertId, found)).then((looking) => {
      if (!looking) $(`door-${alertId}`)?.focus(); // no camera to be had: type it
    });
  },
};

// -- language --------------------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = language() === "zh" ? "zh-CN" : "en";
  for (const element of document.querySelectorAll("[data-i18n]")) element.textContent = text(element.dataset.i18n);
  $("lang").textContent = text("switchTo");
  $("lang").lang = language() === "zh" ? "en" : "zh-CN";
  notice.drawPrompt();
  history.relabel();
  render();
}

// -- sessions --------------------------------------------------------------------------------

async function start() {
  const { status, data } = await api("/v1/console/session");
  if (status === 200) enter(data);
  else if (status === 401) showLogin();
  else {
    // The central is away: say so (the shell may have come from the service worker's cache)
    // and try again, without asking for a password.
    if (!state.me) showUnreachable();
    reconnectLater();
  }
}

function showUnreachable() {
  $("stale").textContent = text("staleNever");
  $("stale").hidden = false;
}

function showLogin() {
  closeStream();
  actions.clear();
  Object.assign(state, { me: null, live: false, lost: false, freshAt: null, focused: null });
  state.open.clear();
  state.seen.clear();
  state.choosing.clear();
  state.doors.clear();
  door.close();
  state.expanded.clear();
  setCsrf(null);
  notice.setActive(false);
  history.reset();
  visits.reset();
  fleet.follow(false);
  showTab("open");
  $("alerts-view").hidden = true;
  $("stale").hidden = true;
  $("login-view").hidden = false;
  $("logout").hidden = true;
  $("tab-fleet").hidden = true;
  $("who").textContent = "";
  $("account").focus();
}

function enter(session) {
  if (session.home) {
    window.location.assign(session.home); // a street office account: its own view
    return;
  }
  state.me = session;
  setCsrf(session.csrf);
  setZone(session.time_zone);
  $("login-view").hidden = true;
  $("alerts-view").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = session.name;
  $("login-error").textContent = "";
  notice.setActive(true);
  connect();
  fleet.probe().then((allowed) => {
    $("tab-fleet").hidden = !allowed || !state.me;
  });
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
  if (status === 200) {
    $("password").value = "";
    return enter(data);
  }
  const why = { 0: "unreachable", 429: "loginLimited" }[status] || (status >= 500 ? "unreachable" : "loginFailed");
  $("login-error").textContent = text(why);
}

async function logout() {
  await api("/v1/console/logout", "POST", {});
  showLogin();
}

// -- live alerts -----------------------------------------------------------------------------

function closeStream() {
  clearTimeout(state.reconnectTimer);
  if (state.stream) state.stream.close();
  state.stream = null;
}

function connect() {
  closeStream();
  const stream = new EventSource("/v1/console/stream");
  stream.addEventListener("snapshot", (event) => {
    state.open = new Map(JSON.parse(event.data).map((alert) => [alert.id, alert]));
    Object.assign(state, { live: true, lost: false, reconnects: 0 });
    history.learn([...state.open.values()]);
    arrived([...state.open.values()]);
    actions.retryNow(); // the central is back: what waited for it goes now
    render();
    focusFromAddress();
  });
  stream.addEventListener("alert", (event) => upsert(JSON.parse(event.data)));
  // The session ended (logout elsewhere, a new password, a disabled account): the residents'
  // details leave the screen now, not after a reconnect.
  stream.addEventListener("ended", () => {
    closeStream();
    start();
  });
  stream.onerror = () => {
    if (state.stream !== stream) return;
    if (state.live) state.freshAt = Date.now() / 1000; // current until this moment
    Object.assign(state, { live: false, lost: true });
    render();
    // A network error: the browser reconnects by itself. Closed for good (an error answer,
    // the session ended): ask the central who we are, later, then connect again.
    if (stream.readyState === EventSource.CLOSED) reconnectLater();
  };
  state.stream = stream;
}

function reconnectLater() {
  closeStream();
  const wait = RECONNECT_MS[Math.min(state.reconnects, RECONNECT_MS.length - 1)];
  state.reconnects += 1;
  state.reconnectTimer = setTimeout(start, wait);
}

function upsert(alert) {
  const known = state.open.has(alert.id);
  if (alert.state === "resolved") {
    state.open.delete(alert.id);
    history.resolvedLive(alert);
  } else {
    state.open.set(alert.id, alert);
    history.learn([alert]);
  }
  if (!waiting(alert)) notice.retract(alert.id);
  if (alert.state !== "acknowledged") state.doors.delete(alert.id); // arrived, or no longer
  if (!known && alert.state !== "resolved") arrived([alert]);
  if ((alert.type || "").startsWith("gateway.") && state.tab === "fleet") fleet.load(render);
  render();
}

// New on this page: a call buzzes and, with the console not in front, shows a notification;
// a fault chimes (a gateway gone silent notifies too). The alarm itself follows render().
function arrived(alerts) {
  for (const alert of alerts) {
    if (state.seen.has(alert.id) || !waiting(alert)) continue;
    state.seen.add(alert.id);
    const kind = kindOf(alert);
    if (kind === "call") notice.buzz();
    if (kind === "fault") notice.chime();
    if (kind === "call" || (kind === "fault" && alert.priority === "critical")) {
      notice.announce({ id: alert.id, urgent: alert.priority === "critical", ...noticeOf(alert) });
    }
  }
}

// A tapped notification (or an address /console/#alert-ID) brings its alert into view.
function showAlert(alertId) {
  if (!alertId || !state.me) return;
  showTab("open");
  state.focused = alertId;
  render();
  const element = $(`alert-${alertId}`);
  if (element) element.scrollIntoView({ block: "center", behavior: "smooth" });
  setTimeout(() => {
    if (state.focused !== alertId) return;
    state.focused = null;
    render();
  }, FOCUS_MS);
}

function focusFromAddress() {
  const found = location.hash.match(/^#alert-(.+)$/);
  if (!found) return;
  window.history.replaceState(null, "", location.pathname);
  showAlert(decodeURIComponent(found[1]));
}

// -- tabs ------------------------------------------------------------------------------------

async function showTab(tab) {
  state.tab = tab;
  for (const name of TABS) {
    $(`tab-${name}`).classList.toggle("active", name === tab);
    $(`${name}-view`).hidden = name !== tab;
  }
  fleet.follow(tab === "fleet" && !!state.me, render);
  render();
  const loaded = { history, fleet, visits }[tab]?.load(render) ?? true;
  if (!(await loaded)) showLogin();
}

// -- drawing ---------------------------------------------------------------------------------

function render() {
  if (!state.me) return;
  const open = [...state.open.values()].sort(urgentFirst);
  const kinds = { call: [], fault: [], visit: [], stall: [] };
  for (const alert of open) (kinds[kindOf(alert)] || kinds.fault).push(alert);
  const calling = kinds.call.filter(waiting);
  document.title = `${calling.length ? `(${calling.length}) ` : ""}${text("title")}`;
  $("open-count").textContent = open.length ? String(open.length) : "";
  notice.ring(calling.length ? (calling.some((alert) => alert.priority === "critical") ? "critical" : "call") : null);
  notice.keepAwake(calling.length > 0);

  keepingFocus(() => {
    if (state.tab === "open") drawOpen(kinds);
    if (state.tab === "history") history.draw(ctx);
    if (state.tab === "fleet") fleet.draw();
    if (state.tab === "visits") visits.draw();
  });
  drawLive();
}

function drawOpen(kinds) {
  patch($("call-list"), kinds.call.map((alert) => card(alert, ctx)));
  $("empty").hidden = kinds.call.length > 0;
  patch($("fault-list"), faultGroups(kinds.fault).map((group) => faultGroup(group, ctx)));
  patch($("visit-list"), kinds.visit.map((alert) => card(alert, ctx)));
  patch($("stall-list"), kinds.stall.map((alert) => card(alert, ctx)));
  $("faults-section").hidden = !kinds.fault.length;
  $("visits-section").hidden = !kinds.visit.length;
  $("stalls-section").hidden = !kinds.stall.length;
  $("open-view").classList.toggle("has-quiet", kinds.fault.length + kinds.visit.length + kinds.stall.length > 0);
}

// A card that changed is drawn anew: a note or a door code being typed in it keeps its focus
// and caret.
function keepingFocus(draw) {
  const active = document.activeElement;
  const typing = active && (active.tagName === "TEXTAREA" || active.classList.contains("door-code")) && active.id ? [active.id, active.selectionStart] : null;
  draw();
  if (!typing) return;
  const again = $(typing[0]);
  if (!again) return;
  again.focus();
  again.setSelectionRange(typing[1], typing[1]);
}

function drawLive() {
  const badge = $("live");
  badge.dataset.i18n = state.live ? "live" : state.lost ? "offline" : "connecting";
  badge.textContent = text(badge.dataset.i18n);
  badge.classList.toggle("on", state.live);
  const stale = state.lost;
  $("stale").hidden = !stale;
  $("alerts-view").classList.toggle("stale", stale);
  if (stale) $("stale").textContent = state.freshAt ? text("stale", when(state.freshAt, true)) : text("staleNever");
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  for (const tab of TABS) $(`tab-${tab}`).addEventListener("click", () => showTab(tab));
  $("lang").addEventListener("click", () => {
    setLanguage(language() === "zh" ? "en" : "zh");
    applyLanguage();
  });
  window.addEventListener("online", () => actions.retryNow());
  notice.start(showAlert);
  history.start(render);
  visits.start(render);
  applyLanguage();
  start();
});
