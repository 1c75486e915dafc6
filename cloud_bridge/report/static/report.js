"use strict";
// The readiness report page: the figures of /v1/report for the chosen month, with the console's
// session (log in at /console/ first); the charts are the central's own PNGs.

const NONE = "—";
const COLUMNS = [
  ["呼叫", (g) => g.calls.count],
  ["确认中位", (g) => duration(g.calls.acknowledge_median)],
  ["确认最长", (g) => duration(g.calls.acknowledge_worst)],
  ["到场中位", (g) => duration(g.calls.arrival_median)],
  ["到场最长", (g) => duration(g.calls.arrival_worst)],
  ["升级", (g) => g.calls.escalations],
  ["未确认", (g) => g.calls.unacknowledged],
  ["演练", (g) => g.drills.count, "drill"],
  ["演练确认中位", (g) => duration(g.drills.acknowledge_median), "drill"],
  ["演练未确认", (g) => g.drills.unacknowledged, "drill"],
  ["离线按钮", (g) => g.offline_buttons],
  ["离线小时", (g) => g.offline_hours],
  ["逾期探访", (g) => g.overdue_visits],
];

function duration(seconds) {
  if (seconds === null || seconds === undefined) return NONE;
  const whole = Math.round(seconds);
  const m = Math.floor(whole / 60), s = String(whole % 60).padStart(2, "0");
  return `${m}:${s}`;
}

function cell(tag, text, className) {
  const element = document.createElement(tag);
  element.textContent = String(text);
  if (className) element.className = className;
  return element;
}

function fill(table, header, rows) {
  table.replaceChildren();
  const head = table.insertRow();
  header.forEach(([text, className]) => head.append(cell("th", text, className)));
  rows.forEach((values) => {
    const row = table.insertRow();
    values.forEach(([text, className], index) => row.append(cell(index ? "td" : "th", text, className)));
  });
}

function groups(table, list) {
  fill(table, [["", ""], ...COLUMNS.map(([name, , c]) => [name, c])],
       list.map((g) => [[g.name, ""], ...COLUMNS.map(([, value, c]) => [value(g), c])]));
}

function say(text) {
  document.getElementById("notice").textContent = text;
}

async function show(month) {
  say("");
  const answer = await fetch(`/v1/report?month=${encodeURIComponent(month)}`,
                             { credentials: "same-origin" });
  const figures = document.getElementById("figures");
  if (answer.status === 401) {
    figures.hidden = true;
    say("请先登录管家控制台 (/console/)，再打开本页。");
    return;
  }
  const body = await answer.json();
  if (!answer.ok) {
    figures.hidden = true;
    say(body.error || `错误 ${answer.status}`);
    return;
  }
  groups(document.getElementById("buildings"), body.buildings);
  groups(document.getElementById("butlers"), body.butlers);
  const stalls = document.getElementById("stalls-section");
  stalls.hidden = body.stalls === null;
  if (body.stalls !== null) {
    fill(document.getElementById("stalls"), [["区域", ""], ["违规", ""]],
         body.stalls.map((z) => [[z.name, ""], [z.violations, ""]]));
  }
  const charts = document.getElementById("charts");
  charts.replaceChildren(...Object.entries(body.charts).map(([name, url]) => {
    const image = document.createElement("img");
    image.src = url;
    image.alt = name;
    image.dataset.chart = name;
    return image;
  }));
  const pdf = document.getElementById("pdf");
  pdf.href = body.pdf;
  pdf.hidden = false;
  if (!body.arrivals_recorded) say("本月尚无到场记录：到场时间显示为 —。");
  figures.hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("month");
  const now = new Date();
  input.value = new URLSearchParams(location.search).get("month")
    || `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
  document.getElementById("pick").addEventListener("submit", (event) => {
    event.preventDefault();
    show(input.value);
  });
  show(input.value);
});
