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
 * What both streams share: a fresh token before each opening, a growing pause between
 * reopenings, and a stop. `connect(token)` opens the stream; the stream calls `opened()` when
 * it is up and `retry()` when it is gone for good.
 */
function reconnecting(connect, onState) {
  let started = false;
  let stopped = false;
  let wait = MIN_WAIT_MS;
  let timer = null;

  async function open() {
    if (stopped) return;
    onState(started ? "reconnecting" : "connecting");
    started = true;
    let token;
    try {
      token = await streamToken();
    } catch {
      onState("closed");
      return;
    }
    if (!stopped) connect(token);
  }

  return {
    start: open,
    get stopped() {
      return stopped;
    },
    opened() {
      wait = MIN_WAIT_MS;
      onState("live");
    },
    retry() {
      onState("reconnecting");
      timer = setTimeout(open, wait);
      wait = Math.min(wait * 2, MAX_WAIT_MS);
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/**
 * A WebSocket that comes back: `onMessage(object)` for each JSON message, `onState(state)`
 * with "connecting" | "live" | "reconnecting" | "closed". `close()` ends it for good.
 * `done(message, closeEvent)` may say a normal close is final (a finished job's stream).
 */
export function liveSocket(path, { params = {}, onMessage, onState = () => {}, done } = {}) {
  let socket = null;
  const link = reconnecting((token) => {
    const ws = new WebSocket(wsUrl(path, { ...params, token }));
    socket = ws;
    ws.addEventListener("open", () => link.opened());
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
      if (link.stopped || ws !== socket) return;
      if (done && done(event)) {
        onState("closed");
        return;
      }
      link.retry();
    });
  }, onState);

  link.start();
  return {
    close() {
      link.stop();
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
  let last = lastEventId;
  const link = reconnecting((token) => {
    const url = new URL(`/api/v1/jobs/${encodeURIComponent(jobId)}/events`, window.location.href);
    url.searchParams.set("token", token);
    url.searchParams.set("last_event_id", String(last));
    const es = new EventSource(url.toString());
    source = es;
    es.addEventListener("open", () => link.opened());
    const handle = (name) => (event) => {
      if (event.lastEventId) last = Number(event.lastEventId) || last;
      let data = null;
      try {
        data = JSON.parse(event.data);
      } catch {
        /* keep null */
      }
      if (name === "end") {
        link.stop();
        es.close();
        onState("closed");
      }
      onEvent(name, data, event.lastEventId);
    };
    for (const name of [...names, "end"]) es.addEventListener(name, handle(name));
    es.addEventListener("error", () => {
      if (link.stopped || es !== source) return;
      if (es.readyState === EventSource.CLOSED) link.retry();
      else onState("reconnecting");
    });
  }, onState);

  link.start();
  return {
    close() {
      link.stop();
      if (source) source.close();
      onState("closed");
    },
  };
}
