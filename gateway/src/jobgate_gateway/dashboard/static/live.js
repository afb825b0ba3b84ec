// Live streams from stats-service, through the same origin (the edge routes /ws/ and
// /api/v1/jobs/<id>/events there). Browsers cannot set headers on either, so the credential
// goes in `?token=`. Both reconnect by themselves with a growing pause, with a fresh token
// (an access token expires after 15 minutes; an open stream stays open past that).

import { streamToken } from "./api.js";

const MIN_WAIT_MS = 1000;
const MAX_WAIT_MS = 15000;

function wsUrl(path, params) {
  const url = new URL(path, window.location.href);
  url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url.toString();
}

/**
 * A WebSocket that comes back: `onMessage(object)` for each JSON message, `onState(state)`
 * with "connecting" | "live" | "reconnecting" | "closed". `close()` ends it for good.
 * `done(message, closeEvent)` may say a normal close is final (a finished job's stream).
 */
export function liveSocket(path, { params = {}, onMessage, onState = () => {}, done } = {}) {
  let socket = null;
  let stopped = false;
  let wait = MIN_WAIT_MS;
  let timer = null;

  async function open() {
    if (stopped) return;
    onState(socket ? "reconnecting" : "connecting");
    let token;
    try {
      token = await streamToken();
    } catch {
      onState("closed");
      return;
    }
    if (stopped) return;
    const ws = new WebSocket(wsUrl(path, { ...params, token }));
    socket = ws;
    ws.addEventListener("open", () => {
      wait = MIN_WAIT_MS;
      onState("live");
    });
    ws.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      onMessage(message);
    });
    ws.addEventListener("close", (event) => {
      if (stopped || ws !== socket) return;
      if (done && done(event)) {
        onState("closed");
        return;
      }
      onState("reconnecting");
      timer = setTimeout(open, wait);
      wait = Math.min(wait * 2, MAX_WAIT_MS);
    });
  }

  open();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000);
      onState("closed");
    },
  };
}

/**
 * A job's Server-Sent Events after `lastEventId`: `onEvent(name, data, id)` for each; ends
 * on the server's `end` event. The browser resumes a dropped connection by itself (with
 * Last-Event-ID); when it gives up (a refused handshake: an expired token) we reopen with
 * a fresh token from the last id seen.
 */
export function jobEvents(jobId, { lastEventId = 0, names = [], onEvent, onState = () => {} }) {
  let source = null;
  let stopped = false;
  let last = lastEventId;
  let wait = MIN_WAIT_MS;
  let timer = null;

  async function open() {
    if (stopped) return;
    onState(source ? "reconnecting" : "connecting");
    let token;
    try {
      token = await streamToken();
    } catch {
      onState("closed");
      return;
    }
    if (stopped) return;
    const url = new URL(`/api/v1/jobs/${encodeURIComponent(jobId)}/events`, window.location.href);
    url.searchParams.set("token", token);
    url.searchParams.set("last_event_id", String(last));
    const es = new EventSource(url.toString());
    source = es;
    es.addEventListener("open", () => {
      wait = MIN_WAIT_MS;
      onState("live");
    });
    const handle = (name) => (event) => {
      if (event.lastEventId) last = Number(event.lastEventId) || last;
      let data = null;
      try {
        data = JSON.parse(event.data);
      } catch {
        /* keep null */
      }
      if (name === "end") {
        stopped = true;
        es.close();
        onState("closed");
      }
      onEvent(name, data, event.lastEventId);
    };
    for (const name of [...names, "end"]) es.addEventListener(name, handle(name));
    es.addEventListener("error", () => {
      if (stopped || es !== source) return;
      if (es.readyState === EventSource.CLOSED) {
        onState("reconnecting");
        timer = setTimeout(open, wait);
        wait = Math.min(wait * 2, MAX_WAIT_MS);
      } else {
        onState("reconnecting");
      }
    });
  }

  open();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      if (source) source.close();
      onState("closed");
    },
  };
}
