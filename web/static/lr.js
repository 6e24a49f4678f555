// @ts-check
// Shared helpers of the liveroom pages: DOM, errors, REST, Socket.IO, the server clock, money and
// time. Sign-in is in signin.js, sales in sale.js, chat in chat.js.
// Plain ES module, no build step. Pages that talk Socket.IO load /assets/socket.io.min.js first
// (global `io`). Rule: text that came from a user or the server goes in with textContent only.

/** @import { Socket } from "socket.io-client" */
/** @import { Ack, ErrorInfo } from "./types.js" */

// ---------------------------------------------------------------- DOM

/** @typedef {Node | string | number | boolean | null | undefined} Leaf */
/** @typedef {Leaf | Leaf[] | Leaf[][]} Child a child node, or a list of them */

/**
 * Build an element. String children become text nodes, never HTML. Attributes: `on<event>`
 * functions become listeners, `dataset` an object of data attributes, `true` an empty
 * attribute; `null`, `undefined` and `false` leave the attribute out.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown> | null} [attrs]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), /** @type {EventListener} */ (value));
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * The element `selector` names; throws when the page has none (its markup and script disagree).
 * @param {string} selector
 * @param {ParentNode} [root]
 * @returns {HTMLElement}
 */
export function $(selector, root = document) {
  return $as(selector, HTMLElement, root);
}

/**
 * The element `selector` names, of the given type (`$as("#qty", HTMLSelectElement)`); throws
 * when it is missing or of another type.
 * @template {Element} E
 * @param {string} selector
 * @param {{new (): E, prototype: E}} type
 * @param {ParentNode} [root]
 * @returns {E}
 */
export function $as(selector, type, root = document) {
  const node = root.querySelector(selector);
  if (!(node instanceof type)) throw new Error(`The page has no ${type.name} ${selector}`);
  return node;
}

/**
 * Set the text of an element (or of the one `selector` names, if the page has it).
 * @param {string | HTMLElement} target
 * @param {string | number} text
 */
export function setText(target, text) {
  const node = typeof target === "string" ? document.querySelector(target) : target;
  if (node) node.textContent = String(text);
}

/**
 * A request's outcome in a `.result` line: green when `ok`, red when not.
 * @param {string | HTMLElement} target
 * @param {string} text
 * @param {boolean} ok
 */
export function showResult(target, text, ok) {
  const node = typeof target === "string" ? $(target) : target;
  node.textContent = text;
  node.classList.add("result");
  node.classList.toggle("ok", ok);
  node.classList.toggle("bad", !ok);
}

// ---------------------------------------------------------------- errors

/** @type {Record<string, string>} */
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

/** A refused request (HTTP or ack) or a failure to reach the server, with the server's code. */
export class ApiError extends Error {
  /**
   * @param {string} code
   * @param {string} [message]
   * @param {number} [status] the HTTP status (0: none)
   * @param {{retry_after_ms?: number}} [extra]
   */
  constructor(code, message, status = 0, extra = {}) {
    super(message || HINTS[code] || "Something went wrong. Try again.");
    this.code = code;
    this.status = status;
    this.retry_after_ms = extra.retry_after_ms;
  }
}

/**
 * A message a person can act on, from an ApiError, an ack error or anything thrown.
 * @param {unknown} error
 * @returns {string}
 */
export function describeError(error) {
  if (!error) return "Something went wrong. Try again.";
  const { code, message = "", retry_after_ms: retryAfterMs } =
    /** @type {Partial<ErrorInfo>} */ (typeof error === "object" ? error : { message: String(error) });
  if (code === "slow_mode" && retryAfterMs) {
    return `Slow mode is on: you can send again in ${Math.ceil(retryAfterMs / 1000)} s.`;
  }
  if (code && HINTS[code] && (!message || code === "network" || code === "timeout")) {
    return HINTS[code];
  }
  return message || (code && HINTS[code]) || "Something went wrong. Try again.";
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let bannerTimer;

/**
 * Show an error (or notice) in the page banner; it stays until dismissed unless `autoHideMs`.
 * @param {string} text
 * @param {{kind?: "error" | "notice", autoHideMs?: number}} [options]
 */
export function showBanner(text, { kind = "error", autoHideMs = 0 } = {}) {
  let banner = document.getElementById("banner");
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

/** @param {unknown} error a message, or anything `describeError` reads */
export function showError(error) {
  showBanner(typeof error === "string" ? error : describeError(error));
}

export function hideBanner() {
  const banner = document.getElementById("banner");
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

// ---------------------------------------------------------------- REST

/**
 * One REST call: the JSON answer, or an ApiError with the server's code (`network` when the
 * server could not be reached).
 * @param {string} method
 * @param {string} path
 * @param {{token?: string | null, body?: unknown}} [options]
 * @returns {Promise<any>} the decoded JSON (its shape is the endpoint's, see types.js)
 */
export async function api(method, path, { token = null, body = undefined } = {}) {
  /** @type {Record<string, string>} */
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

/**
 * A REST client bound to one token.
 * @typedef {object} Rest
 * @property {string} token
 * @property {(path: string) => Promise<any>} get
 * @property {(path: string, body?: unknown) => Promise<any>} post
 */

/**
 * @param {string} token
 * @returns {Rest}
 */
export function client(token) {
  return {
    token,
    get: (path) => api("GET", path, { token }),
    post: (path, body = {}) => api("POST", path, { token, body }),
  };
}

// ---------------------------------------------------------------- Socket.IO

/**
 * The page's live connection, signed in with `token` (websocket only, as the server expects).
 * @param {string} token
 * @returns {Socket}
 */
export function connectSocket(token) {
  if (typeof io !== "function") {
    throw new ApiError("client_missing",
      "The live connection library did not load. Reload the page.");
  }
  return io(location.origin, {
    auth: { token }, transports: ["websocket"], reconnectionDelayMax: 5000,
  });
}

/**
 * Emit with an ack; always resolves to an answer (a timeout becomes an error answer).
 * @template [T={}]
 * @param {Socket} socket
 * @param {string} event
 * @param {unknown} data
 * @param {number} [timeoutMs]
 * @returns {Promise<Ack<T>>}
 */
export function call(socket, event, data, timeoutMs = 8000) {
  return new Promise((resolve) => {
    socket.timeout(timeoutMs).emit(event, data, (/** @type {Error | null} */ err,
      /** @type {Ack<T> | undefined} */ answer) => {
      if (err) resolve({ ok: false, error: { code: "timeout", message: HINTS.timeout } });
      else resolve(answer || { ok: false, error: { code: "internal_error" } });
    });
  });
}

/**
 * The error of a refused ack, with `retry_after_ms` folded in.
 * @param {{ok: boolean, error?: ErrorInfo, retry_after_ms?: number} | null | undefined} answer
 * @returns {ErrorInfo}
 */
export function ackError(answer) {
  const err = (answer && answer.error) || { code: "internal_error" };
  return { ...err, retry_after_ms: err.retry_after_ms ?? (answer ? answer.retry_after_ms : undefined) };
}

// ---------------------------------------------------------------- server clock

/** The server's clock, as seen from here: `clock.now()` is server milliseconds. */
export const clock = {
  offsetMs: 0,
  measured: false,
  now() {
    return Date.now() + this.offsetMs;
  },
  /**
   * Adopt a `server_time` seen in a payload unless a round-trip measurement is known.
   * @param {number | undefined} serverTime
   */
  hint(serverTime) {
    if (!this.measured && Number.isFinite(serverTime)) this.offsetMs = Number(serverTime) - Date.now();
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

// ---------------------------------------------------------------- money and time

export const CURRENCY = "¥";

/**
 * Integer cents as money text, e.g. 129900 -> "¥1,299.00" (integer arithmetic only).
 * @param {number} cents
 */
export function formatCents(cents) {
  const value = Math.trunc(Number(cents) || 0);
  const sign = value < 0 ? "-" : "";
  const abs = Math.abs(value);
  const units = Math.floor(abs / 100).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${sign}${CURRENCY}${units}.${String(abs % 100).padStart(2, "0")}`;
}

/**
 * Money typed by a person ("12", "12.5", "1,299.00") as integer cents, or null.
 * @param {string} text
 * @returns {number | null}
 */
export function parseMoney(text) {
  const clean = String(text).trim().replace(/[,\s]/g, "").replace(CURRENCY, "");
  const match = /^(\d{1,9})(?:\.(\d{0,2}))?$/.exec(clean);
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] || "").padEnd(2, "0"));
}

/**
 * Milliseconds as "1:05:09" / "4:09" / "0:07" (whole seconds, rounded up).
 * @param {number} ms
 */
export function formatDuration(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

/**
 * A moment as date and time, in the person's locale.
 * @param {number} ms
 */
export function formatTime(ms) {
  return new Date(ms).toLocaleString();
}

/**
 * A moment of today as a time of day, in the person's locale.
 * @param {number} ms
 */
export function formatTimeOfDay(ms) {
  return new Date(ms).toLocaleTimeString();
}

// ---------------------------------------------------------------- ids

/** @param {number} limit */
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
