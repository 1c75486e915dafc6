// The gateways (GET /v1/console/fleet): each community gateway, silent ones first, with when
// it was last heard, its software version, what waits in its outbox and for how long, and the
// buildings and buttons behind it. The tab shows only for an account the central answers.

import { api } from "./api.js";
import { span, text, when } from "./format.js";
import { node, patch } from "./views.js";

const REFRESH_MS = 30000;
const state = { gateways: [], failed: false, timer: null };
const $ = (id) => document.getElementById(id);

// Whether this account may see the fleet (and the gateways, when it may).
export async function probe() {
  const { status, data } = await api("/v1/console/fleet");
  if (status === 200) state.gateways = data.gateways || [];
  return status === 200;
}

export async function load(redraw) {
  const { status, data } = await api("/v1/console/fleet");
  if (status === 401) return false;
  state.failed = status !== 200;
  if (status === 200) state.gateways = data.gateways || [];
  redraw();
  return true;
}

// Kept fresh while shown: "last heard" is the one figure that changes without an event.
export function follow(shown, redraw) {
  clearInterval(state.timer);
  state.timer = shown ? setInterval(() => load(redraw), REFRESH_MS) : null;
}

function gatewayItem(gateway, now) {
  const item = node("li", `gateway${gateway.silent ? " silent" : ""}`);
  item.id = `gateway-${gateway.id}`;
  const head = node("div", "card-head");
  head.append(node("span", "gateway-id", gateway.id), node("span", "state", text(gateway.silent ? "gatewaySilentState" : "gatewayOk")));
  item.append(head);
  const facts = [];
  facts.push(gateway.last_heard ? text("lastHeard", when(gateway.last_heard), span(now - gateway.last_heard)) : text("neverHeard"));
  if (gateway.version) facts.push(text("version", gateway.version));
  if (gateway.outbox) facts.push(text("outbox", gateway.outbox.alert ?? 0, gateway.outbox.log ?? 0));
  if (gateway.oldest_alert_waiting_s) facts.push(text("oldestWaiting", span(gateway.oldest_alert_waiting_s)));
  if (typeof gateway.uptime_s === "number") facts.push(text("uptime", span(gateway.uptime_s)));
  const buildings = (gateway.buildings || []).map((building) => building.name || building.id).join("、");
  facts.push([buildings, typeof gateway.buttons === "number" ? text("buttons", gateway.buttons) : ""].filter(Boolean).join(" · "));
  const list = node("ul", "facts");
  for (const fact of facts.filter(Boolean)) list.append(node("li", null, fact));
  item.append(list);
  return item;
}

export function draw() {
  const now = Date.now() / 1000;
  const gateways = [...state.gateways].sort((a, b) => Number(b.silent) - Number(a.silent) || a.id.localeCompare(b.id));
  patch($("fleet-list"), gateways.map((gateway) => gatewayItem(gateway, now)));
  const empty = $("fleet-empty");
  empty.hidden = gateways.length > 0 && !state.failed;
  empty.textContent = text(state.failed ? "loadFailed" : "fleetEmpty");
}
