// The installed console's service worker (served at /console/sw.js, scope /console/).
//
// It keeps the page's shell (the page, its code, styles, sounds and icons) so that the app
// opens without a network and then says it is not connected. It never keeps an API answer:
// residents' names, rooms and phones live only in the page's memory, never in a cache. The
// shell is fetched from the network first, so a new console version is in use at once; the
// cache answers only when the network does not.
//
// It also shows the page's system notifications (registration.showNotification) and, when
// one is tapped, brings the console forward on that alert.
"use strict";

const CACHE = "mashang-console-shell-v1";
const ASSETS = "/console/assets/";
const SHELL = [
  "/console/",
  "/console/manifest.webmanifest",
  ...["app.css", "i18n.js", "format.js", "api.js", "actions.js", "notice.js", "views.js",
    "history.js", "fleet.js", "visits.js", "door.js", "app.js"].map((name) => ASSETS + name),
  ...["call.wav", "critical.wav", "fault.wav"].map((name) => `${ASSETS}sounds/${name}`),
  ...["icon-192.png", "icon-512.png", "maskable-512.png"].map((name) => `${ASSETS}icons/${name}`),
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!SHELL.includes(url.pathname)) return; // the API, the stream: the network's alone
  event.respondWith(fresh(event.request, url.pathname));
});

async function fresh(request, path) {
  const cache = await caches.open(CACHE);
  try {
    const answer = await fetch(request);
    // A sound asked for in ranges answers 206: only whole answers are kept.
    if (answer.status === 200) await cache.put(path, answer.clone());
    return answer;
  } catch (error) {
    const kept = await cache.match(path);
    if (kept) return kept;
    throw error;
  }
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const alertId = event.notification.data && event.notification.data.alert;
  event.waitUntil(showAlert(alertId));
});

async function showAlert(alertId) {
  const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const page = pages.find((client) => new URL(client.url).pathname.startsWith("/console/"));
  if (page) {
    page.postMessage({ type: "show-alert", alert: alertId });
    await page.focus();
  } else {
    await self.clients.openWindow(`/console/#alert-${encodeURIComponent(alertId || "")}`);
  }
}
