// The month's visits (GET /v1/console/visits?month=YYYY-MM): for each butler, the residents
// living alone in their buildings with the last visit, the visits in the month and the days
// since, the longest unvisited first. A butler sees their own list, the duty room everyone's.

import { api } from "./api.js";
import { day, text } from "./format.js";
import { node, patch } from "./views.js";

const state = { lists: [], failed: false };
const $ = (id) => document.getElementById(id);

export function start(redraw) {
  $("visits-month").addEventListener("change", () => load(redraw));
}

export function reset() {
  state.lists = [];
  state.failed = false;
  $("visits-month").value = "";
}

export async function load(redraw) {
  const month = $("visits-month");
  if (!month.value) month.value = day(Date.now() / 1000).slice(0, 7); // the community's month
  const { status, data } = await api(`/v1/console/visits?month=${encodeURIComponent(month.value)}`);
  if (status === 401) return false;
  state.failed = status !== 200;
  state.lists = status === 200 ? data.butlers || [] : [];
  redraw();
  return true;
}

function householdRow(row) {
  const item = node("li", `visit-row${row.last_visit_date ? "" : " never"}`);
  item.id = `visits-${row.household}`;
  const where = [row.building_name || row.building, row.room].filter(Boolean).join(" ");
  item.append(node("div", "name", [row.resident || text("household", row.household), where].filter(Boolean).join(" · ")));
  const facts = node("ul", "facts");
  facts.append(
    node("li", null, text("lastVisit", row.last_visit_date, row.days_since_visit)),
    node("li", null, text("visitsInMonth", row.visits)),
  );
  item.append(facts);
  return item;
}

function butlerList(list) {
  const item = node("li", "butler-visits");
  item.id = `visits-of-${list.butler}`;
  item.append(node("h3", null, text("visitsOf", list.name, list.households.length)));
  const rows = node("ul", "visit-rows");
  rows.append(...list.households.map(householdRow));
  item.append(rows);
  return item;
}

export function draw() {
  patch($("visits-lists"), state.lists.map(butlerList));
  const empty = $("visits-empty");
  empty.hidden = state.lists.some((list) => list.households.length) && !state.failed;
  empty.textContent = text(state.failed ? "loadFailed" : "visitsEmpty");
}
