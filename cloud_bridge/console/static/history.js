// The history: resolved alerts, newest first, found by resident, building, day and kind, 50
// at a time ("更多" follows the central's `next` cursor past any number), with how each was
// handled, and the same search as a CSV export.

import { api, query } from "./api.js";
import { text, word } from "./format.js";
import { card, patch } from "./views.js";

const PAGE = 50;
const KINDS = ["call", "fault", "visit", "stall"];
const state = { alerts: [], next: null, failed: false, loading: false, buildings: new Map() };
const $ = (id) => document.getElementById(id);

function filters() {
  return {
    q: $("history-q").value.trim(),
    building: $("history-building").value,
    day: $("history-day").value,
    kind: $("history-kind").value,
  };
}

const searching = () => Object.values(filters()).some(Boolean);

export function start(redraw) {
  $("history-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load(redraw);
  });
  $("history-form").addEventListener("input", drawExport);
  $("history-more").addEventListener("click", () => load(redraw, true));
  relabel();
}

export function reset() {
  state.alerts = [];
  state.next = null;
  state.failed = false;
  $("history-form").reset();
}

// The first page of the search in the form, or (more) the next one. False: the session ended.
export async function load(redraw, more = false) {
  if (state.loading) return true;
  state.loading = true;
  const params = { view: "history", ...filters(), limit: PAGE };
  if (more) params.before = state.next;
  const { status, data } = await api(`/v1/console/alerts?${query(params)}`);
  state.loading = false;
  if (status === 401) return false;
  state.failed = status !== 200;
  if (status === 200) {
    state.alerts = more ? [...state.alerts, ...data.alerts] : data.alerts;
    state.next = data.next || null;
    learn(data.alerts);
  }
  redraw();
  return true;
}

// An alert resolved while the page is open heads the unfiltered history at once.
export function resolvedLive(alert) {
  learn([alert]);
  if (searching()) return;
  state.alerts = [alert, ...state.alerts.filter((old) => old.id !== alert.id)];
}

// Buildings the butler has seen, for the building filter (the session names none).
export function learn(alerts) {
  let added = false;
  for (const alert of alerts) {
    const building = alert.building;
    if (building && building.id && !state.buildings.has(building.id)) {
      state.buildings.set(building.id, building.name || building.id);
      added = true;
    }
  }
  if (added) drawBuildings();
}

function drawBuildings() {
  const select = $("history-building");
  const chosen = select.value;
  const all = new Option(text("allBuildings"), "");
  const named = [...state.buildings].sort((a, b) => a[1].localeCompare(b[1], "zh-CN", { numeric: true }));
  select.replaceChildren(all, ...named.map(([id, name]) => new Option(name, id)));
  select.value = chosen;
}

export function relabel() {
  const select = $("history-kind");
  const chosen = select.value;
  select.replaceChildren(new Option(text("allKinds"), ""), ...KINDS.map((kind) => new Option(word("kinds", kind), kind)));
  select.value = chosen;
  $("history-q").placeholder = text("searchResident");
  $("history-q").setAttribute("aria-label", text("searchResident"));
  $("history-day").setAttribute("aria-label", text("day"));
  drawBuildings();
}

function drawExport() {
  const { q, building, day, kind } = filters();
  $("history-csv").href = `/v1/console/history.csv?${query({ q, building, day, kind })}`;
}

export function draw(ctx) {
  patch($("history-list"), state.alerts.map((alert) => card(alert, ctx, { history: true })));
  $("history-more").hidden = !state.next;
  const empty = $("history-empty");
  empty.hidden = state.alerts.length > 0 && !state.failed;
  empty.textContent = text(state.failed ? "loadFailed" : "emptyHistory");
  drawExport();
}
