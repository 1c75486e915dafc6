// Drawing the alerts: a call's loud card, the quiet cards of visits and stall matters, device
// faults folded into one line per building (or per gateway), the resolve reasons, and what an
// action in flight is going through. Plain DOM; every value from the server goes in as text,
// never as HTML. What a drawing needs from the page comes in `ctx`:
//   job(id)             the action in flight for an alert (actions.js), or null
//   choosing(key)       the resolve picker open for a card or group: {other, note, missing}
//   focused             the alert id a tapped notification points at
//   expanded(key), expand(key, open)   a fault group's list, opened by the butler
//   acknowledge(ids), resolve(key, ids, reason, note), choose(key, how), note(key, text),
//   cancel(ids)                                       (key: the card's or group's picker)
//   door(id)            the door-code box open on an acknowledged call: {code, missing}
//   openDoor(id), closeDoor(id), doorCode(id, text), arrive(id, code), look(id), cameraReads

import { phrase, text, when, word } from "./format.js";

// Until every central says `kind`, the category tells it.
const KIND_OF_CATEGORY = { help: "call", gap: "call", offline: "fault", battery: "fault",
  gateway: "fault", silent: "fault", visit: "visit", stall: "stall" };
export const kindOf = (alert) => alert.kind || KIND_OF_CATEGORY[alert.category] || "fault";
// About a gateway itself (gateway.silent, gateway.outbox_replaced…), not one of its buttons.
const aboutGateway = (alert) => Boolean(alert.gateway) || (alert.type || "").startsWith("gateway.");

const RANK = { critical: 3, high: 2, normal: 1, low: 0 };
export const waiting = (alert) => alert.state === "raised" || alert.state === "notified";
export const urgentFirst = (a, b) => RANK[b.priority] - RANK[a.priority] || b.raised_at - a.raised_at;
const REASONS = ["arrived", "mistaken", "phoned", "other"];

export function node(tag, className, content) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (content !== undefined && content !== null) element.textContent = String(content);
  return element;
}

// Redraws replace only what changed: a card under the butler's finger when another alert
// arrives stays the same element, so the tap lands (and a note being typed stays put).
export function patch(list, fresh) {
  const before = new Map([...list.children].map((child) => [child.id, child]));
  const kept = fresh.map((made) => {
    const old = made.id && before.get(made.id);
    return old && old.outerHTML === made.outerHTML ? old : made;
  });
  if (kept.length === list.children.length && kept.every((made, i) => made === list.children[i])) return;
  list.replaceChildren(...kept);
}

function button(className, label, onClick) {
  const element = node("button", className, label);
  element.type = "button";
  element.addEventListener("click", onClick);
  return element;
}

// -- what an alert says ----------------------------------------------------------------------

function who(alert) {
  const kind = kindOf(alert);
  if (kind === "visit" && !(alert.resident && alert.resident.name) && alert.device_id) {
    return text("household", alert.device_id.replace(/^household:/, ""));
  }
  if (alert.resident) return alert.resident.name;
  if (kind === "stall") return text("scanner", alert.device_id || "");
  return `${text("unregistered")} ${alert.device_id || ""}`.trim();
}

function place(alert) {
  return [alert.building && alert.building.name, alert.resident && alert.resident.room].filter(Boolean).join(" ");
}

function gatewayLine(alert) {
  const facts = alert.gateway || {};
  const names = (facts.buildings || []).map((building) => building.name || building.id).join("、");
  return text("gatewayBehind", names, facts.buttons);
}

// The words of a system notification for an alert: what, then who and where.
export function noticeOf(alert) {
  if (aboutGateway(alert)) {
    return { title: text("gatewaySilent", alert.gateway_id || alert.device_id), body: gatewayLine(alert) };
  }
  return {
    title: `${word("category", alert.category)} · ${word("priority", alert.priority)}`,
    body: [who(alert), place(alert)].filter(Boolean).join(" · "),
  };
}

function facts(alert) {
  const found = [];
  if (alert.category === "help") {
    found.push([word("action", alert.action), text("presses", alert.presses)].filter(Boolean).join(" · "));
  }
  if (aboutGateway(alert)) found.push(gatewayLine(alert));
  if (alert.reason) found.push(word("reason", alert.reason));
  if (typeof alert.battery === "number") found.push(text("battery", alert.battery));
  if (alert.escalations > 0 && waiting(alert)) found.push(text("escalations", alert.escalations));
  // 待探访: the last visit (its date in the community's zone) and the days past due.
  if (alert.visit) found.push(text("lastVisit", alert.visit.last_visit_date, alert.visit.days_since_visit), text("daysOverdue", alert.visit.days_overdue));
  found.push(text(kindOf(alert) === "visit" ? "remindedAt" : "raisedAt", when(alert.raised_at)));
  if (alert.acknowledged_at) found.push(text("acknowledgedBy", alert.acknowledged_by, when(alert.acknowledged_at)));
  if (alert.on_site_at) found.push(text("onSiteBy", alert.on_site_by || "", when(alert.on_site_at)));
  if (alert.arrive_by) found.push(text("arriveBy", when(alert.arrive_by)));
  if (alert.resolved_at) found.push(text("resolvedBy", alert.resolved_by, when(alert.resolved_at)));
  if (alert.resolve_reason) found.push(text("resolvedHow", word("reasons", alert.resolve_reason), alert.resolve_note));
  const list = node("ul", "facts");
  for (const fact of found) list.append(node("li", null, fact));
  return list;
}

// -- actions in flight -----------------------------------------------------------------------

function jobLine(ids, ctx) {
  const jobs = ids.map(ctx.job).filter(Boolean);
  if (!jobs.length) return null;
  const job = jobs.find((one) => one.problem) || jobs[0];
  const problem = job.problem;
  let says = text("sending");
  if (problem && problem.kind === "refused") says = text("refused", problem.error || text("unknownError"));
  else if (problem && problem.kind === "server") says = text("retryingServer", problem.status, job.attempts);
  else if (problem) says = text("retryingNetwork", job.attempts);
  if (jobs.length > 1 && problem) says += text("groupPending", jobs.length);
  const line = node("div", `job ${problem ? `job-${problem.kind}` : "job-sending"}`);
  line.setAttribute("role", "status");
  line.append(node("span", "job-text", says));
  if (problem) {
    const refused = problem.kind === "refused";
    line.append(button("link job-cancel", text(refused ? "dismiss" : "cancel"), () => ctx.cancel(ids)));
  }
  return line;
}

const busy = (ids, ctx) =>
  ids.some((id) => {
    const job = ctx.job(id);
    return job && !(job.problem && job.problem.kind === "refused");
  });

// -- resolving, with a reason ----------------------------------------------------------------

function picker(key, ids, ctx) {
  const open = ctx.choosing(key);
  const box = node("div", "picker");
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", text("howResolved"));
  box.append(node("p", "picker-title", text("howResolved")));
  const reasons = node("div", "reasons");
  for (const reason of REASONS) {
    const choose = reason === "other" ? () => ctx.choose(key, "other") : () => ctx.resolve(key, ids, reason, "");
    const choice = button(`reason reason-${reason}`, word("reasons", reason), choose);
    if (reason === "other" && open.other) choice.classList.add("chosen");
    reasons.append(choice);
  }
  box.append(reasons);
  if (open.other) {
    const note = node("textarea", "note");
    note.id = `note-${key}`;
    note.rows = 2;
    note.maxLength = 500;
    note.placeholder = text("notePlaceholder");
    note.value = open.note;
    note.addEventListener("input", () => ctx.note(key, note.value));
    box.append(note);
    if (open.missing) box.append(node("p", "error", text("noteNeeded")));
  }
  const row = node("div", "picker-actions");
  if (open.other) row.append(button("primary confirm-other", text("confirm"), () => ctx.resolve(key, ids, "other", ctx.choosing(key).note)));
  row.append(button("cancel-resolve", text("cancel"), () => ctx.choose(key, null)));
  box.append(row);
  return box;
}

function actions(key, ids, ctx, { acknowledgeLabel, acknowledgeIds, resolveLabel, loud }) {
  if (ctx.choosing(key)) return picker(key, ids, ctx);
  const row = node("div", "actions");
  const disabled = busy(ids, ctx);
  if (acknowledgeIds.length) {
    const ack = button(`acknowledge ${loud ? "primary" : "quiet"}`, acknowledgeLabel, () => ctx.acknowledge(acknowledgeIds));
    ack.disabled = disabled;
    row.append(ack);
  }
  const resolve = button("resolve", resolveLabel, () => ctx.choose(key, "open"));
  resolve.disabled = disabled;
  row.append(resolve);
  return row;
}

// -- at the door -----------------------------------------------------------------------------

// An acknowledged call: "我已到达 · 扫码" opens the camera where the phone reads QR codes, and
// a box for the code's text in any case (typed, pasted, or read by another app).
function door(alert, ctx) {
  const open = ctx.door(alert.id);
  const disabled = busy([alert.id], ctx);
  if (!open) {
    const arrive = button("arrive primary", text("arrive"), () => ctx.openDoor(alert.id));
    arrive.disabled = disabled;
    const row = node("div", "door");
    row.append(arrive);
    return row;
  }
  const box = node("div", "door door-open");
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", text("doorTitle"));
  box.append(node("p", "picker-title", text("doorTitle")));
  if (ctx.cameraReads) box.append(button("door-look", text("doorCamera"), () => ctx.look(alert.id)));
  const entry = node("input", "door-code");
  entry.id = `door-${alert.id}`;
  entry.type = "text";
  entry.autocomplete = "off";
  entry.spellcheck = false;
  entry.placeholder = text("doorPlaceholder");
  entry.setAttribute("aria-label", text("doorPlaceholder"));
  entry.value = open.code;
  entry.addEventListener("input", () => ctx.doorCode(alert.id, entry.value));
  entry.addEventListener("keydown", (event) => {
    if (event.key === "Enter") ctx.arrive(alert.id, entry.value);
  });
  box.append(entry);
  if (open.missing) box.append(node("p", "error", text("doorMissing")));
  const row = node("div", "picker-actions");
  const send = button("primary door-send", text("doorSend"), () => ctx.arrive(alert.id, ctx.door(alert.id).code));
  send.disabled = disabled;
  row.append(send, button("door-cancel", text("cancel"), () => ctx.closeDoor(alert.id)));
  box.append(row);
  return box;
}

// -- cards -----------------------------------------------------------------------------------

// One alert: a call loud, a visit or stall matter quiet, any of them in history (no actions).
export function card(alert, ctx, { history = false } = {}) {
  const kind = kindOf(alert);
  const loud = kind === "call";
  const item = node("li", `card k-${kind} p-${alert.priority} s-${alert.state}${loud ? " loud" : " quiet"}`);
  item.id = `${history ? "history" : "alert"}-${alert.id}`;
  item.dataset.state = alert.state;
  item.dataset.kind = kind;
  if (ctx.focused === alert.id) item.classList.add("focused");

  const head = node("div", "card-head");
  head.append(
    node("span", "badge", `${word("category", alert.category)} · ${word("priority", alert.priority)}`),
    node("span", "state", word("state", alert.state)),
  );
  // A drill is acknowledged like a real call, and must never be taken for one.
  if (alert.drill) head.prepend(node("span", "drill", text("drill")));
  item.append(head, node("div", "name", who(alert)));
  if (place(alert)) item.append(node("div", "place", place(alert)));
  if (alert.resident && alert.resident.phone) {
    const phone = node("a", "phone", `${text("call")} ${alert.resident.phone}`);
    phone.href = `tel:${alert.resident.phone}`;
    item.append(phone);
  }
  item.append(facts(alert));
  if (history || alert.state === "resolved") return item;

  const line = jobLine([alert.id], ctx);
  if (line) item.append(line);
  if (loud && alert.state === "acknowledged" && alert.arrival_expected) item.append(door(alert, ctx));
  item.append(
    actions(alert.id, [alert.id], ctx, {
      acknowledgeLabel: text(loud ? "acknowledge" : "acknowledgeQuiet"),
      acknowledgeIds: waiting(alert) ? [alert.id] : [],
      resolveLabel: text("resolve"),
      loud,
    }),
  );
  return item;
}

// -- device faults, grouped ------------------------------------------------------------------

// One group per building for button faults, one per gateway for a gateway's own: a building's
// power cut is one line ("3号楼：10 个按钮离线") and one action, not ten red cards.
export function faultGroups(alerts) {
  const groups = new Map();
  for (const alert of alerts) {
    const key = aboutGateway(alert)
      ? `gateway:${alert.gateway_id || alert.device_id || alert.id}`
      : `building:${(alert.building && alert.building.id) || ""}`;
    if (!groups.has(key)) groups.set(key, { key, alerts: [] });
    groups.get(key).alerts.push(alert);
  }
  const sorted = [...groups.values()].map((group) => ({ ...group, alerts: group.alerts.sort(urgentFirst) }));
  return sorted.sort((a, b) => urgentFirst(a.alerts[0], b.alerts[0]));
}

function groupTitle(group) {
  const first = group.alerts[0];
  if (aboutGateway(first)) {
    const id = first.gateway_id || first.device_id;
    return text(first.type === "gateway.silent" ? "gatewaySilent" : "gatewayFault", id);
  }
  const counts = new Map();
  for (const alert of group.alerts) counts.set(alert.category, (counts.get(alert.category) || 0) + 1);
  const said = [...counts].map(([category, n]) => phrase("faultCount", category, n) || text("faultOther", word("category", category), n));
  return text("groupTitle", (first.building && first.building.name) || text("noBuilding"), said);
}

function faultRow(alert, ctx) {
  const row = node("li", `fault-row s-${alert.state}`);
  row.id = `alert-${alert.id}`;
  row.dataset.state = alert.state;
  if (ctx.focused === alert.id) row.classList.add("focused");
  const said = [alert.device_id, alert.resident ? `${alert.resident.name} ${alert.resident.room || ""}`.trim() : null,
    word("category", alert.category), alert.reason ? word("reason", alert.reason) : null,
    typeof alert.battery === "number" ? text("battery", alert.battery) : null,
    aboutGateway(alert) ? gatewayLine(alert) : null,
    when(alert.raised_at), alert.state === "acknowledged" ? word("state", alert.state) : null];
  row.textContent = said.filter(Boolean).join(" · ");
  return row;
}

export function faultGroup(group, ctx) {
  const ids = group.alerts.map((alert) => alert.id);
  const unacknowledged = group.alerts.filter(waiting).map((alert) => alert.id);
  const item = node("li", `group p-${group.alerts[0].priority}${unacknowledged.length ? " s-raised" : " s-acknowledged"}`);
  item.id = `group-${group.key}`;
  item.dataset.group = group.key;
  const head = node("div", "group-head");
  head.append(node("span", "group-title", groupTitle(group)));
  if (!unacknowledged.length) head.append(node("span", "state", word("state", "acknowledged")));
  item.append(head);
  const more = node("details", "group-more");
  more.open = ctx.expanded(group.key) || group.alerts.some((alert) => alert.id === ctx.focused);
  more.addEventListener("toggle", () => ctx.expand(group.key, more.open));
  more.append(node("summary", null, text("groupShow", ids.length)));
  const rows = node("ul", "group-rows");
  rows.append(...group.alerts.map((alert) => faultRow(alert, ctx)));
  more.append(rows);
  item.append(more);
  const line = jobLine(ids, ctx);
  if (line) item.append(line);
  item.append(
    actions(`group:${group.key}`, ids, ctx, {
      acknowledgeLabel: text("groupAcknowledge", unacknowledged.length),
      acknowledgeIds: unacknowledged,
      resolveLabel: text("groupResolve", ids.length),
      loud: false,
    }),
  );
  return item;
}
