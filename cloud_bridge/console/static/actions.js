// A butler's acknowledge, arrival or resolve, delivered whatever the network does. One job per alert:
// sent at once; when the central cannot be reached or answers 5xx, said on the card and sent
// again with a growing wait until it lands or the butler cancels; when the central refuses it
// (4xx), said why (its `error`) and not sent again. A 409 after a lost answer is no refusal:
// the alert may already be where the butler wanted it (the first try landed, or a colleague
// was quicker), which a fresh look at the alert tells.

import { api } from "./api.js";

const FIRST_WAIT_MS = 1000;
const LONGEST_WAIT_MS = 10000;
const DONE = { acknowledge: ["acknowledged", "arrived", "resolved"], arrive: ["arrived", "resolved"], resolve: ["resolved"] };

export class Actions {
  // landed(alert): the central's answer; changed(): redraw; loggedOut(): the session ended.
  constructor({ landed, changed, loggedOut }) {
    this.jobs = new Map();
    this.landed = landed;
    this.changed = changed;
    this.loggedOut = loggedOut;
  }

  of(alertId) {
    return this.jobs.get(alertId) || null;
  }

  send(alertId, action, body = {}) {
    this.drop(alertId);
    const job = { alertId, action, body, attempts: 0, sending: false, problem: null, timer: null };
    this.jobs.set(alertId, job);
    this.attempt(job);
  }

  // The butler gave up on it (a retried action) or has read why it was refused.
  cancel(alertId) {
    this.drop(alertId);
    this.changed();
  }

  // Now, not at the next wait's end: the stream is back, or the browser says it is online.
  retryNow() {
    for (const job of this.jobs.values()) {
      if (job.timer !== null) {
        clearTimeout(job.timer);
        this.attempt(job);
      }
    }
  }

  clear() {
    for (const alertId of [...this.jobs.keys()]) this.drop(alertId);
  }

  drop(alertId) {
    const job = this.jobs.get(alertId);
    if (job && job.timer !== null) clearTimeout(job.timer);
    this.jobs.delete(alertId);
  }

  async attempt(job) {
    job.timer = null;
    job.attempts += 1;
    job.sending = true;
    this.changed();
    const path = `/v1/console/alerts/${encodeURIComponent(job.alertId)}/${job.action}`;
    const { status, data } = await api(path, "POST", job.body);
    job.sending = false;
    if (this.jobs.get(job.alertId) !== job) return; // cancelled, or replaced, meanwhile
    if (status === 200 && data && data.alert) return this.land(job, data.alert);
    if (status === 401) {
      this.clear();
      return this.loggedOut();
    }
    if (status === 409 && (await this.alreadyDone(job))) return;
    if (status >= 400 && status < 500) {
      job.problem = { kind: "refused", status, error: data && data.error };
    } else {
      job.problem = { kind: status ? "server" : "network", status };
      const wait = Math.min(LONGEST_WAIT_MS, FIRST_WAIT_MS * 2 ** (job.attempts - 1));
      job.timer = setTimeout(() => this.attempt(job), wait);
    }
    this.changed();
  }

  async alreadyDone(job) {
    const { status, data } = await api(`/v1/console/alerts/${encodeURIComponent(job.alertId)}`);
    if (status !== 200 || !data || !data.alert || !DONE[job.action].includes(data.alert.state)) return false;
    this.land(job, data.alert);
    return true;
  }

  land(job, alert) {
    this.jobs.delete(job.alertId);
    this.landed(alert);
  }
}
