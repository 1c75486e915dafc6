// How the console makes itself noticed: an alarm that repeats while a call waits for someone
// (a harsher one for a critical call), a chime for a device fault, a vibration where the phone
// has one, a system notification (through the service worker) when the console is not in
// front, and the screen kept on while a call waits. Browsers let a page make sounds and ask
// for notifications only from a tap: the prompt (#notice-prompt) is that tap, and any other
// tap after login unlocks the sounds too. The installed app's service worker is registered
// here; it also brings the console forward when a notification is tapped.

import { text } from "./format.js";

const ALARMS = { call: "sound-call", critical: "sound-critical" };
const CHIME = "sound-fault";
const ICON = "/console/assets/icons/icon-192.png";
const state = {
  unlocked: false, // sounds primed from a tap
  blocked: false, // the browser refused to play (no tap yet)
  ringing: null, // "call" | "critical" | null: the alarm wanted now
  active: false, // a butler is logged in: the prompt may show
  wakeWanted: false,
  wake: null, // the WakeLockSentinel held
  asking: false,
};

const $ = (id) => document.getElementById(id);
const inBackground = () => document.visibilityState !== "visible" || !document.hasFocus();

export function start(showAlert) {
  $("notice-prompt").addEventListener("click", unlock);
  // On click, not pointerdown: the prompt going away must not move the page under a finger
  // that is still down.
  document.addEventListener("click", primeSounds, true);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.wakeWanted) acquireWakeLock();
  });
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register("/console/sw.js", { scope: "/console/" }).catch(() => {
    // No worker (a browser without one, a private window): the console works, uninstalled.
  });
  navigator.serviceWorker.addEventListener("message", (event) => {
    if (event.data && event.data.type === "show-alert") showAlert(event.data.alert);
  });
}

// Logged in (true) or out: the prompt is for a butler at work only.
export function setActive(active) {
  state.active = active;
  if (!active) {
    ring(null);
    keepAwake(false);
  }
  drawPrompt();
}

export function drawPrompt() {
  const prompt = $("notice-prompt");
  const undecided = "Notification" in window && Notification.permission === "default";
  prompt.hidden = !state.active || (state.unlocked && !state.blocked && !undecided);
  prompt.textContent = text(state.blocked ? "noticeBlocked" : "noticePrompt");
  prompt.classList.toggle("urgent", state.blocked);
}

async function unlock() {
  primeSounds();
  if ("Notification" in window && Notification.permission === "default") {
    try {
      await Notification.requestPermission();
    } catch (_) {
      // an old Safari wants a callback; asking again from the next tap is fine
    }
  }
  drawPrompt();
}

// In the tap's own turn, each sound is started muted and stopped: iOS lets a page play an
// <audio> later only if it was started once from a gesture.
function primeSounds() {
  if (!state.active || (state.unlocked && !state.blocked)) return;
  state.unlocked = true;
  state.blocked = false;
  for (const [name, id] of [...Object.entries(ALARMS), ["chime", CHIME]]) {
    if (name === state.ringing) continue;
    const audio = $(id);
    audio.muted = true;
    audio
      .play()
      .then(() => {
        if (name !== state.ringing) {
          audio.pause();
          audio.currentTime = 0;
        }
      })
      .catch(() => {})
      .finally(() => {
        audio.muted = false;
      });
  }
  ring(state.ringing);
  drawPrompt();
}

// The alarm for the calls waiting now: "critical", "call" or null (silence).
export function ring(which) {
  state.ringing = which;
  for (const [name, id] of Object.entries(ALARMS)) {
    const audio = $(id);
    if (name !== which) {
      if (!audio.paused && !audio.muted) {
        audio.pause();
        audio.currentTime = 0;
      }
      continue;
    }
    if (!audio.paused && !audio.muted) continue;
    audio.muted = false;
    audio.play().then(
      () => {
        if (state.ringing !== name) audio.pause(); // silenced while starting
        if (state.blocked) {
          state.blocked = false;
          drawPrompt();
        }
      },
      () => {
        state.blocked = true;
        drawPrompt();
      },
    );
  }
}

export function chime() {
  const audio = $(CHIME);
  audio.currentTime = 0;
  audio.play().catch(() => {});
}

export function buzz() {
  if (navigator.vibrate) navigator.vibrate([300, 100, 300, 100, 300]);
}

// A system notification, only when the console is not in front (hidden, or another window
// or tab has the focus): the butler looking at the page needs no second message.
export async function announce({ id, title, body, urgent }) {
  if (!("Notification" in window) || Notification.permission !== "granted" || !inBackground()) return;
  const options = {
    body,
    tag: id,
    renotify: true,
    requireInteraction: urgent,
    icon: ICON,
    badge: ICON,
    lang: document.documentElement.lang,
    vibrate: [300, 100, 300],
    data: { alert: id },
  };
  const registration = await workerRegistration();
  try {
    if (registration) await registration.showNotification(title, options);
    else new Notification(title, options); // desktop browsers without the worker
  } catch (_) {
    // Denied meanwhile, or a phone that only notifies through a worker: the sound remains.
  }
}

// The alert was acknowledged or resolved: its notification no longer asks anything.
export async function retract(alertId) {
  const registration = await workerRegistration();
  if (!registration) return;
  for (const shown of await registration.getNotifications({ tag: alertId })) shown.close();
}

async function workerRegistration() {
  if (!("serviceWorker" in navigator)) return null;
  try {
    return (await navigator.serviceWorker.getRegistration("/console/")) || null;
  } catch (_) {
    return null;
  }
}

// The screen stays on while a call waits; a hidden page loses its lock, so it is asked for
// again when the page is shown. <html data-wake-lock> says how it stands.
export function keepAwake(wanted) {
  state.wakeWanted = wanted;
  if (wanted) acquireWakeLock();
  else if (state.wake) {
    const held = state.wake;
    state.wake = null;
    held.release().catch(() => {});
    markWakeLock("off");
  }
}

async function acquireWakeLock() {
  if (!("wakeLock" in navigator)) return markWakeLock("unsupported");
  if (state.wake || state.asking || document.visibilityState !== "visible") return;
  state.asking = true;
  try {
    const held = await navigator.wakeLock.request("screen");
    held.addEventListener("release", () => {
      if (state.wake !== held) return;
      state.wake = null;
      markWakeLock("off");
    });
    state.wake = held;
    markWakeLock("held");
    if (!state.wakeWanted) keepAwake(false); // the call was answered while asking
  } catch (_) {
    markWakeLock("refused"); // a battery saver, a browser policy
  } finally {
    state.asking = false;
  }
}

function markWakeLock(how) {
  document.documentElement.dataset.wakeLock = how;
}
