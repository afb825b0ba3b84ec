// The session and every call to the API.
//
// A login keeps its tokens in sessionStorage (gone with the tab, never in a cookie, so no
// request is authenticated unless this code adds the header). The access token lives 15
// minutes: it is refreshed a minute before it expires, and once more if a call meets a 401.
// An API key (a nice extra) is used as it is. Streams cannot send headers: they get the
// same credential in `?token=` (stats-service accepts it).

const STORE = "jobgate.dashboard.session";
const REFRESH_EARLY_MS = 60_000;

export class ApiError extends Error {
  constructor(status, code, message, requestId, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details || {};
  }

  /** One line for the page: the message, the code and the request id to quote. */
  describe() {
    const parts = [this.message];
    if (this.code) parts.push(`(${this.code}${this.status ? `, HTTP ${this.status}` : ""})`);
    if (this.requestId) parts.push(`request id ${this.requestId}`);
    return parts.join(" ");
  }
}

let session = load();
let refreshing = null;
let refreshTimer = null;
const listeners = new Set();

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE)) || null;
  } catch {
    return null;
  }
}

function save(next) {
  session = next;
  if (next) sessionStorage.setItem(STORE, JSON.stringify(next));
  else sessionStorage.removeItem(STORE);
  scheduleRefresh();
  for (const fn of listeners) fn(session);
}

/** Called with the new session (or null) whenever it changes. */
export function onSession(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function current() {
  return session;
}

export function isAdmin() {
  return session?.user?.role === "admin" && session?.admin === true;
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!session || session.method !== "jwt") return;
  const wait = Math.max(5_000, session.expiresAt - Date.now() - REFRESH_EARLY_MS);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), wait);
}

async function parseError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON: nginx or a proxy in between */
  }
  const err = body && typeof body.error === "object" && body.error ? body.error : {};
  const message =
    err.message ||
    (typeof body?.error === "string" ? body.error : null) ||
    (typeof body?.detail === "string" ? body.detail : null) ||
    response.statusText ||
    "Request failed";
  const requestId = err.request_id || response.headers.get("X-Request-ID");
  return new ApiError(response.status, err.code, message, requestId, err.details);
}

async function send(path, { method = "GET", body, headers = {}, auth = true } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (auth && session) {
    if (session.method === "key") init.headers["X-API-Key"] = session.apiKey;
    else init.headers.Authorization = `Bearer ${session.accessToken}`;
  }
  try {
    return await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, "NETWORK_ERROR", `The server cannot be reached (${exc.message})`);
  }
}

/** A call to the API: the parsed JSON body (and the response), or an ApiError. */
export async function request(path, options = {}) {
  let response = await send(path, options);
  if (response.status === 401 && options.auth !== false && session?.method === "jwt") {
    try {
      await refresh();
      response = await send(path, options);
    } catch {
      /* the refresh failed: the 401 stands */
    }
  }
  if (response.status === 401 && options.auth !== false && session) {
    logout({ remote: false, reason: "Your session has ended: log in again." });
  }
  if (!response.ok) throw await parseError(response);
  if (options.raw) return response;
  const body = response.status === 204 ? null : await response.json();
  return options.withResponse ? { body, response } : body;
}

export const get = (path, options) => request(path, options);
export const post = (path, body, options = {}) =>
  request(path, { ...options, method: "POST", body });

async function whoAmI() {
  return request("/api/v1/auth/me");
}

function fromTokens(tokens, previous = {}) {
  return {
    ...previous,
    method: "jwt",
    accessToken: tokens.access_token,
    refreshToken: tokens.refresh_token,
    expiresAt: Date.now() + (tokens.expires_in || 900) * 1000,
  };
}

export async function login(username, password) {
  const response = await send("/api/v1/auth/login", {
    method: "POST",
    body: { username, password },
    auth: false,
  });
  if (!response.ok) throw await parseError(response);
  const tokens = await response.json();
  session = fromTokens(tokens);
  const user = tokens.user || (await whoAmI());
  save({ ...session, user, admin: user.role === "admin" });
  return session;
}

export async function loginWithKey(apiKey) {
  session = { method: "key", apiKey };
  try {
    const user = await whoAmI();
    // An admin's key acts as admin only with the `admin` scope, which /auth/me does not
    // tell (it describes the user): ask a route only admins may read.
    let admin = false;
    if (user.role === "admin") {
      admin = await request("/api/v1/auth/users?limit=1").then(
        () => true,
        () => false,
      );
    }
    save({ ...session, user, admin });
  } catch (exc) {
    session = null;
    throw exc;
  }
  return session;
}

/** Rotate the refresh token for a new access token (one refresh at a time). */
export function refresh() {
  if (!session || session.method !== "jwt") return Promise.resolve(session);
  if (!refreshing) {
    const token = session.refreshToken;
    refreshing = (async () => {
      const response = await send("/api/v1/auth/refresh", {
        method: "POST",
        body: { refresh_token: token },
        auth: false,
      });
      if (!response.ok) throw await parseError(response);
      save(fromTokens(await response.json(), session));
      return session;
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** The credential a stream puts in `?token=`, fresh enough to pass the handshake. */
export async function streamToken() {
  if (!session) throw new ApiError(401, "UNAUTHORIZED", "Not logged in");
  if (session.method === "key") return session.apiKey;
  if (session.expiresAt - Date.now() < 30_000) await refresh();
  return session.accessToken;
}

export function logout({ remote = true, reason = null } = {}) {
  const old = session;
  if (remote && old?.method === "jwt" && old.refreshToken) {
    send("/api/v1/auth/logout", {
      method: "POST",
      body: { refresh_token: old.refreshToken },
    }).catch(() => {});
  }
  if (reason) sessionStorage.setItem(`${STORE}.reason`, reason);
  save(null);
}

/** Why the last session ended, once (shown on the login form). */
export function takeLogoutReason() {
  const reason = sessionStorage.getItem(`${STORE}.reason`);
  sessionStorage.removeItem(`${STORE}.reason`);
  return reason;
}

/** Download a protected file: fetch with the header, then hand the blob to the browser. */
export async function download(path, filename) {
  const response = await request(path, { raw: true, headers: { Accept: "*/*" } });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return blob.size;
}

scheduleRefresh();
