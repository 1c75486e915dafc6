// The language and the community's time zone the page speaks in, and the words and times it
// writes with them. Times always carry their date and are read in the community's zone (the
// session's `time_zone`), whatever zone the butler's phone is set to.

import { WORDS } from "./i18n.js";

const DEFAULT_ZONE = "Asia/Shanghai";
const settings = {
  lang: localStorage.getItem("mashang.lang") === "en" ? "en" : "zh",
  zone: DEFAULT_ZONE,
  dates: null, // an Intl.DateTimeFormat for the zone, made when first needed
};

export const language = () => settings.lang;

export function setLanguage(lang) {
  settings.lang = lang;
  localStorage.setItem("mashang.lang", lang);
}

export function setZone(zone) {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone || DEFAULT_ZONE });
    settings.zone = zone || DEFAULT_ZONE;
  } catch (_) {
    settings.zone = DEFAULT_ZONE; // a zone this browser does not know
  }
  settings.dates = null;
}

export function text(key, ...args) {
  const value = WORDS[settings.lang][key];
  return typeof value === "function" ? value(...args) : value;
}

export function word(table, key) {
  return (WORDS[settings.lang][table] || {})[key] || key || "";
}

export function phrase(table, key, ...args) {
  const value = (WORDS[settings.lang][table] || {})[key];
  return typeof value === "function" ? value(...args) : "";
}

function parts(seconds) {
  settings.dates ||= new Intl.DateTimeFormat("en-CA", {
    timeZone: settings.zone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
  const found = {};
  for (const part of settings.dates.formatToParts(new Date(seconds * 1000))) found[part.type] = part.value;
  return found;
}

// "2026-12-01 13:51" (unix seconds in, the community's wall clock out); with seconds on asking.
export function when(seconds, withSeconds = false) {
  if (!seconds) return "";
  const p = parts(seconds);
  const clock = `${p.hour}:${p.minute}${withSeconds ? `:${p.second}` : ""}`;
  return `${p.year}-${p.month}-${p.day} ${clock}`;
}

// The community's date of a moment, as an <input type="date"> and the history's `day` want it.
export function day(seconds) {
  const p = parts(seconds);
  return `${p.year}-${p.month}-${p.day}`;
}

// A duration in the largest two units: "2 天 3 小时", "5 分钟", "40 秒".
export function span(seconds) {
  const units = WORDS[settings.lang].span;
  let rest = Math.max(0, Math.round(seconds));
  const amounts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
    const amount = Math.floor(rest / size);
    rest -= amount * size;
    if (amount || (unit === "s" && !amounts.length)) amounts.push(`${amount} ${units[unit]}`);
  }
  return amounts.slice(0, 2).join(units.join);
}
