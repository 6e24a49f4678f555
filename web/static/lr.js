// Shared helpers of the liveroom pages: tokens, REST, Socket.IO, server clock, money, errors.
// Plain ES module, no build step. Pages load /assets/socket.io.min.js first (global `io`).
// Rule: text that came from a user or the server is put in the page with textContent only.

const TOKEN_PREFIX = "liveroom.token.";

// ---------------------------------------------------------------- DOM

/** Build an element. String children become text nodes, never HTML. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function setText(selector, text) {
  const node = typeof selector === "string" ? $(selector) : selector;
  if (node) node.textContent = text;
}

// ---------------------------------------------------------------- errors

const HINTS = {
  network: "Cannot reach the server. Check your connection and try again.",
  timeout: "The server did not answer in time. Check your connection and try again.",
  unauthorized: "Your session is missing or was refused. Open the page again with a valid link.",
  token_expired: "Your session has expired. Open the page again with a fresh link.",
  token_bad_signature: "This sign-in link is not valid for this server.",
  token_malformed: "This sign-in link is damaged. Copy it again in full.",
  forbidden: "You are not allowed to do that here.",
  banned: "The host removed you from this room.",
  room_ended: "This live has ended.",
  rate_limited: "Too many requests at once. Wait a moment and try again.",
};

export class ApiError extends Error {
  constructor(code, message, status = 0, extra = {}) {
    super(message || HINTS[code] || "Something went wrong. Try again.");
    this.code = code;
    this.status = status;
    Object.assign(this, extra);
  }
}

/** A message a person can act on, from an ApiError, an ack error or anything thrown. */
export function describeError(error) {
  if (!error) return "Something went wrong. Try again.";
  const code = error.code;
  const message = error.message || "";
  if (code === "slow_mode" && error.retry_after_ms) {
    return `Slow mode is on: you can send again in ${Math.ceil(error.retry_after_ms / 1000)} s.`;
  }
  if (code && HINTS[code] && (!message || code === "network" || code === "timeout")) {
    return HINTS[code];
  }
  return message || HINTS[code] || "Something went wrong. Try again.";
}

let bannerTimer = null;

/** Show an error (or notice) in the page banner; it stays until dismissed unless `autoHideMs`. */
export function showBanner(text, { kind = "error", autoHideMs = 0 } = {}) {
  let banner = $("#banner");
  if (!banner) {
    banner = h("div", { id: "banner", role: "alert", hidden: true });
    document.body.prepend(banner);
  }
  banner.replaceChildren(
    h("span", { class: "banner-text" }, text),
    h("button", { type: "button", class: "banner-close", "aria-label": "Dismiss",
                  onclick: hideBanner }, "×"),
  );
  banner.className = `banner banner-${kind}`;
  banner.hidden = false;
  clearTimeout(bannerTimer);
  if (autoHideMs) bannerTimer = setTimeout(hideBanner, autoHideMs);
}

export function showError(error) {
  showBanner(typeof error === "string" ? error : describeError(error));
}

export function hideBanner() {
  const banner = $("#banner");
  if (banner) banner.hidden = true;
}

/** No silent failures: anything unexpected reaches the person as a banner. */
export function installGlobalErrorHandlers() {
  window.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    showError(event.reason instanceof ApiError ? event.reason
      : "Something went wrong on this page. Reload it to try again.");
  });
  window.addEventListener("error", () => {
    showError("Something went wrong on this page. Reload it to try again.");
  });
}

// ---------------------------------------------------------------- tokens

/** The token of this page's `#token=...` link, taken out of the address bar (screenshots,
 * shared links), and not stored: the caller decides whether to adopt it. */
export function linkToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return decodeURIComponent(match[1]);
}

/** The stored token of this page's scope, or null. */
export function storedToken(scope) {
  return localStorage.getItem(TOKEN_PREFIX + scope);
}

/** The token for an anchor's or inspector's page (`scope`): a `#token=...` link signs in at
 * once (these links are the sign-in), else the stored one. Viewer pages never do this: see
 * room.js, where a link's token needs the person's confirmation. */
export function pageToken(scope) {
  const offered = linkToken();
  if (offered) localStorage.setItem(TOKEN_PREFIX + scope, offered);
  return storedToken(scope);
}

export function storeToken(scope, token) {
  if (token) localStorage.setItem(TOKEN_PREFIX + scope, token);
  else localStorage.removeItem(TOKEN_PREFIX + scope);
}

export function isTokenError(code) {
  return code === "unauthorized" || (typeof code === "string" && code.startsWith("token_"));
}

// ---------------------------------------------------------------- REST

export async function api(method, path, { token = null, body = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("network");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(err.code || `http_${response.status}`,
      err.message || `The server answered ${response.status}. Try again.`, response.status,
      { retry_after_ms: data && data.retry_after_ms });
  }
  return data;
}

/** A REST client bound to one token. */
export function client(token) {
  return {
    token,
    get: (path) => api("GET", path, { token }),
    post: (path, body = {}) => api("POST", path, { token, body }),
  };
}

/** A guest session for a first-time viewer. */
export async function guestSession(name) {
  const guestName = name || `Guest ${1000 + randomInt(9000)}`;
  return api("POST", "/api/session", { body: { name: guestName } });
}

// ---------------------------------------------------------------- Socket.IO

export function connectSocket(token) {
  if (typeof io !== "function") {
    throw new ApiError("client_missing",
      "The live connection library did not load. Reload the page.");
  }
  return io(location.origin, {
    auth: { token }, transports: ["websocket"], reconnectionDelayMax: 5000,
  });
}

/** Emit with an ack; always resolves to `{ok: ...}` (a timeout becomes an error answer). */
export function call(socket, event, data, timeoutMs = 8000) {
  return new Promise((resolve) => {
    socket.timeout(timeoutMs).emit(event, data, (err, answer) => {
      if (err) resolve({ ok: false, error: { code: "timeout", message: HINTS.timeout } });
      else resolve(answer || { ok: false, error: { code: "internal_error" } });
    });
  });
}

/** The error object of a refused ack, with `retry_after_ms` folded in. */
export function ackError(answer) {
  const err = (answer && answer.error) || { code: "internal_error" };
  return { ...err, retry_after_ms: err.retry_after_ms ?? (answer && answer.retry_after_ms) };
}

// ---------------------------------------------------------------- server clock

/** The server's clock, as seen from here: `clock.now()` is server milliseconds. */
export const clock = {
  offsetMs: 0,
  measured: false,
  now() {
    return Date.now() + this.offsetMs;
  },
  /** Adopt a `server_time` seen in a payload unless a round-trip measurement is known. */
  hint(serverTime) {
    if (!this.measured && Number.isFinite(serverTime)) this.offsetMs = serverTime - Date.now();
  },
  async sync() {
    const sentAt = Date.now();
    const { server_time: serverTime } = await api("GET", "/api/time");
    const receivedAt = Date.now();
    // The server read its clock about half-way through the round trip.
    this.offsetMs = serverTime - Math.round((sentAt + receivedAt) / 2);
    this.measured = true;
    return this.offsetMs;
  },
};

// ---------------------------------------------------------------- formatting

export const CURRENCY = "¥";

/** Integer cents as money text, e.g. 129900 -> "¥1,299.00" (integer arithmetic only). */
export function formatCents(cents) {
  const value = Math.trunc(Number(cents) || 0);
  const sign = value < 0 ? "-" : "";
  const abs = Math.abs(value);
  const units = Math.floor(abs / 100).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${sign}${CURRENCY}${units}.${String(abs % 100).padStart(2, "0")}`;
}

/** Money typed by a person ("12", "12.5", "1,299.00") as integer cents, or null. */
export function parseMoney(text) {
  const clean = String(text).trim().replace(/[,\s]/g, "").replace(CURRENCY, "");
  const match = /^(\d{1,9})(?:\.(\d{0,2}))?$/.exec(clean);
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] || "").padEnd(2, "0"));
}

/** Milliseconds as "1:05:09" / "4:09" / "0:07". */
export function formatDuration(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

export function formatTime(ms) {
  return new Date(ms).toLocaleString();
}

export function randomInt(limit) {
  const buffer = new Uint32Array(1);
  crypto.getRandomValues(buffer);
  return buffer[0] % limit;
}

/** A unique id for one attempt (works outside secure contexts, unlike randomUUID). */
export function newRequestId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The `{id}` part of `/r/{id}`-style paths. */
export function pathId() {
  const parts = location.pathname.split("/").filter(Boolean);
  return decodeURIComponent(parts[parts.length - 1] || "");
}
