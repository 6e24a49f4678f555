// Viewer room: video, chat, viewer count, pinned product with badges, flash sale, checkout, orders.
import {
  $, ackError, api, call, clock, connectSocket, describeError, formatCents, formatDuration,
  guestSession, h, hideBanner, installGlobalErrorHandlers, isTokenError, linkToken, newRequestId,
  pathId, setText, showBanner, showError, storedToken, storeToken,
} from "./lr.js";
import { openBadge } from "./badges.js";
import { Orders } from "./orders.js";
import { Watcher } from "./watch.js";

const SCOPE = "viewer";
const CHAT_KEEP = 200;
const BUY_RESULT_TEXT = {
  sold_out: "Sold out: every unit is taken. Units come back if someone does not pay in time.",
  not_started: "The sale has not started yet. Wait for the countdown.",
  ended: "This sale has ended.",
  invalid: "That quantity is not allowed.",
  banned: "The host removed you from this room: you cannot buy here.",
};
const ROLE_MARKS = { anchor: "HOST", admin: "ADMIN", inspector: "INSPECTOR" };

const roomId = pathId();
const state = {
  token: null, user: null, socket: null, room: null, product: null, sale: null,
  reservation: null, ended: false, buying: false,
};
let orders = null;
let watcher = null;

// ------------------------------------------------------------------ session

/** Who a token belongs to, or null when the server refuses it. */
async function whoIs(token) {
  try {
    return (await api("GET", "/api/me", { token })).user;
  } catch (error) {
    if (isTokenError(error.code)) return null;
    throw error;
  }
}

/** A link with `#token=` would make this browser buy as whoever made the link (who then sees
 * the address typed at checkout), so it signs in only once the person says so. */
async function adoptLinkToken() {
  const offered = linkToken();
  if (!offered || offered === storedToken(SCOPE)) return;
  const [offeredUser, currentUser] = await Promise.all([
    whoIs(offered), storedToken(SCOPE) ? whoIs(storedToken(SCOPE)) : null]);
  if (!offeredUser) return;
  const dialog = $("#switch-dialog");
  setText("#switch-name", offeredUser.name);
  setText("#switch-name-again", offeredUser.name);
  setText("#switch-kind", offeredUser.phone_verified ? "a buyer account" : "a guest session");
  setText("#switch-stay", currentUser ? `Stay as ${currentUser.name}` : "Stay a new guest");
  const choice = await new Promise((resolve) => {
    $("#switch-accept").onclick = () => resolve(true);
    $("#switch-stay").onclick = () => resolve(false);
    dialog.oncancel = () => resolve(false);
    dialog.showModal();
  });
  dialog.close();
  if (choice) storeToken(SCOPE, offered);
}

async function ensureSession() {
  await adoptLinkToken();
  state.token = storedToken(SCOPE);
  if (state.token) {
    try {
      state.user = (await api("GET", "/api/me", { token: state.token })).user;
      return;
    } catch (error) {
      if (!isTokenError(error.code)) throw error;
      storeToken(SCOPE, null); // an old guest session: start a new one
    }
  }
  const session = await guestSession();
  state.token = session.token;
  state.user = session.user;
  storeToken(SCOPE, state.token);
}

// ------------------------------------------------------------------ socket

function connect() {
  const socket = connectSocket(state.token);
  state.socket = socket;
  socket.on("connect", () => { state.joined = joinRoom(); });
  socket.on("disconnect", (reason) => {
    if (reason !== "io client disconnect" && !state.ended) {
      showBanner("Connection lost. Reconnecting…", { kind: "notice" });
    }
  });
  socket.on("connect_error", async (err) => {
    const code = err && err.data && err.data.code;
    if (isTokenError(code)) {
      // Refused session: get a fresh guest session and try again once.
      socket.disconnect();
      storeToken(SCOPE, null);
      try {
        await ensureSession();
        socket.auth = { token: state.token };
        socket.connect();
      } catch (error) {
        showError(error);
      }
    } else if (!socket.active) {
      showError("Cannot connect to the live room. Reload the page to try again.");
    } else {
      showBanner("Cannot reach the live room. Retrying…", { kind: "notice" });
    }
  });
  socket.on("chat", (message) => message.room === roomId && addChat(message));
  socket.on("viewers", (data) => data.room === roomId && setText("#viewer-count", data.count));
  socket.on("pinned", (data) => data.room === roomId && renderProduct(data.product));
  socket.on("moderation", onModeration);
  socket.on("room", (data) => data.room === roomId && data.status === "ended" && onRoomEnded());
  socket.on("sale", (sale) => sale.room === roomId && onSale(sale));
  socket.on("stock", onStock);
  socket.on("badges", onBadges);
  socket.on("media", (data) => data.room === roomId && watcher && watcher.onLive(data));
  socket.on("order", (order) => orders && orders.onPush(order));
}

async function joinRoom() {
  const answer = await call(state.socket, "join", { room: roomId });
  if (!answer.ok) {
    const err = ackError(answer);
    if (err.code === "room_ended") onRoomEnded();
    else if (err.code === "banned") onBanned();
    else if (err.code === "unknown_room") showError("This room does not exist. Pick a live room on the home page.");
    else showError(err);
    return;
  }
  hideBanner();
  renderRoom(answer.room);
}

// ------------------------------------------------------------------ room

function renderRoom(room) {
  state.room = room;
  clock.hint(room.server_time);
  document.title = `${room.title} — liveroom`;
  setText("#room-title", room.title);
  setText("#room-anchor", `with ${room.anchor.name}`);
  setText("#viewer-count", room.viewers);
  $("#chat-log").replaceChildren();
  for (const message of room.chat || []) addChat(message);
  renderProduct(room.pinned);
  if (room.sale !== undefined) onSale(room.sale);
  if (watcher) watcher.onLive(room.media);
  if (room.status && room.status !== "live") onRoomEnded();
}

function onRoomEnded() {
  state.ended = true;
  setText("#room-status", "ENDED");
  $("#room-status").classList.remove("live");
  $("#chat-input").disabled = true;
  showBanner("This live has ended. Your orders stay below; find another live room on the home page.",
    { kind: "notice" });
  renderSale();
  if (watcher) watcher.stop("The live has ended.");
}

// ------------------------------------------------------------------ chat

function addChat(message) {
  const log = $("#chat-log");
  const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  // Who is the host comes from the server's role for the speaker, never from the name.
  const mark = ROLE_MARKS[message.user.role];
  log.append(h("li", { class: "chat-line" },
    mark ? h("span", { class: `role role-${message.user.role}` }, mark) : "",
    h("span", { class: "who" }, message.user.name), h("span", { class: "text" }, message.text)));
  while (log.children.length > CHAT_KEEP) log.firstElementChild.remove();
  if (nearBottom) log.scrollTop = log.scrollHeight;
}

function addSystemLine(text) {
  const log = $("#chat-log");
  log.append(h("li", { class: "system" }, text));
  log.scrollTop = log.scrollHeight;
}

function onModeration(event) {
  if (event.room !== roomId) return;
  const mine = state.user && event.user === state.user.id;
  if (event.action === "slow_mode") {
    addSystemLine(event.seconds ? `Slow mode: one message every ${event.seconds} s.` : "Slow mode is off.");
  } else if (mine && event.action === "muted") {
    showBanner(`The host muted you until ${new Date(event.until).toLocaleTimeString()}.`, { kind: "notice" });
  } else if (mine && event.action === "unmuted") {
    showBanner("You can chat again.", { kind: "notice", autoHideMs: 4000 });
  } else if (mine && event.action === "banned") {
    onBanned();
  }
}

function onBanned() {
  state.ended = true;
  $("#chat-input").disabled = true;
  showError("The host removed you from this room. Find another live room on the home page.");
  if (watcher) watcher.stop("You were removed from this room.");
}

async function sendChat(event) {
  event.preventDefault();
  const input = $("#chat-input");
  const text = input.value.trim();
  if (!text) return;
  // Cleared as it is sent, so a next message typed before the answer is not wiped by it; a
  // refused one comes back to resend (unless something new was typed meanwhile).
  input.value = "";
  const answer = await call(state.socket, "chat", { room: roomId, text });
  if (!answer.ok) {
    if (!input.value) input.value = text;
    const err = ackError(answer);
    if (err.code === "not_in_room") await joinRoom();
    showError(err);
  }
}

// ------------------------------------------------------------------ product and badges

function renderProduct(product) {
  state.product = product || null;
  $("#product").hidden = !product;
  $("#no-product").hidden = Boolean(product);
  if (!product) return;
  setText("#product-title", product.title);
  setText("#product-brand", product.brand && product.brand !== "unbranded" ? product.brand : "");
  renderBadges(product.badges || []);
  renderSale();
}

function renderBadges(badges) {
  $("#badges").replaceChildren(...badges.map((badge) => h("li", {},
    h("button", {
      type: "button", class: `badge${badge.certificate ? " certified" : ""}`,
      dataset: { kind: badge.kind, certificate: badge.certificate || "" },
      onclick: () => openBadge(badge),
    }, badge.certificate ? `✓ ${badge.label}` : badge.label))));
}

function onBadges(data) {
  if (!state.product || data.product !== state.product.id) return;
  state.product.badges = data.badges || [];
  renderBadges(state.product.badges);
}

// ------------------------------------------------------------------ flash sale

function onSale(sale) {
  if (!sale) {
    state.sale = null;
  } else if (!state.sale || sale.id === state.sale.id || sale.starts_at >= state.sale.starts_at) {
    clock.hint(sale.server_time);
    state.sale = sale;
  }
  renderSale();
}

function onStock(update) {
  if (!state.sale || update.sale !== state.sale.id) return;
  Object.assign(state.sale, {
    remaining: update.remaining, held: update.held, sold: update.sold, status: update.status,
  });
  renderSale();
}

/** The sale's status as of now by the server clock (pushes may lag the countdown). */
function saleStatus(sale) {
  const now = clock.now();
  if (sale.status === "ended" || now >= sale.ends_at) return "ended";
  if (now < sale.starts_at) return "scheduled";
  if (sale.status === "sold_out" || sale.remaining <= 0) return "sold_out";
  return "live";
}

function renderSale() {
  const sale = state.sale;
  const product = state.product;
  const onThisProduct = sale && product && sale.product === product.id;
  $("#sale").hidden = !onThisProduct;
  $("#no-sale").hidden = Boolean(onThisProduct);
  if (product) {
    const dealPrice = onThisProduct && saleStatus(sale) !== "ended";
    setText("#product-price", formatCents(dealPrice ? sale.price_cents : product.price_cents));
    $("#product-was").hidden = !dealPrice || sale.price_cents === product.price_cents;
    setText("#product-was", formatCents(product.price_cents));
  }
  if (!onThisProduct) return;
  const status = state.ended ? "ended" : saleStatus(sale);
  const pct = sale.stock ? Math.round((100 * sale.remaining) / sale.stock) : 0;
  $("#stock-fill").style.width = `${pct}%`;
  $(".stockbar").setAttribute("aria-valuemax", String(sale.stock));
  $(".stockbar").setAttribute("aria-valuenow", String(sale.remaining));
  setText("#stock-text", `${sale.remaining} of ${sale.stock} left${sale.held ? ` · ${sale.held} in checkout` : ""}`);
  setText("#sale-limit", `Limit ${sale.per_user_limit} per person`);
  const labels = { scheduled: "Starts soon", live: "Flash sale", sold_out: "Sold out", ended: "Sale ended" };
  setText("#sale-state", labels[status]);
  $("#sale-state").classList.toggle("live", status === "live");
  const qty = $("#buy-qty");
  const max = Math.max(1, Math.min(sale.per_user_limit, 10));
  if (qty.options.length !== max) {
    qty.replaceChildren(...Array.from({ length: max }, (_, i) => h("option", { value: i + 1 }, i + 1)));
  }
  const buy = $("#buy");
  buy.disabled = status !== "live" || state.buying;
  buy.textContent = { scheduled: "Starts soon", live: "Buy now", sold_out: "Sold out", ended: "Sale ended" }[status];
  // Sign in during the countdown rather than after pressing Buy, when every second counts.
  $("#signin-open").hidden = status === "ended" || Boolean(state.user && state.user.phone_verified);
  tickCountdown();
}

function tickCountdown() {
  const sale = state.sale;
  if (!sale || $("#sale").hidden) return;
  const now = clock.now();
  const status = state.ended ? "ended" : saleStatus(sale);
  if (status === "scheduled") setText("#sale-countdown", `Starts in ${formatDuration(sale.starts_at - now)}`);
  else if (status === "ended") setText("#sale-countdown", "");
  else setText("#sale-countdown", `Ends in ${formatDuration(sale.ends_at - now)}`);
  // Crossing a boundary (start, end) changes the button without waiting for a push.
  const buy = $("#buy");
  if ((status === "live") === buy.disabled && !state.buying) renderSale();
}

function setResult(selector, text, ok) {
  const node = $(selector);
  node.textContent = text;
  node.className = `result ${ok ? "ok" : "bad"}`;
}

// ------------------------------------------------------------------ buyer account

/** Sign in with a one-time code sent to the person's phone (a buyer account: flash-sale
 * limits count people, and a guest session is free to make). Resolves to whether it worked. */
async function signInToBuy() {
  const dialog = $("#signin-dialog");
  $("#signin-phone-form").hidden = false;
  $("#signin-code-form").hidden = true;
  $("#signin-demo").hidden = true;
  setResult("#signin-result", "", true);
  let phone = null;
  const signedIn = new Promise((resolve) => {
    $("#signin-cancel").onclick = () => resolve(false);
    dialog.oncancel = () => resolve(false);
    $("#signin-phone-form").onsubmit = async (event) => {
      event.preventDefault();
      try {
        const sent = await api("POST", "/api/accounts/otp", { body: { phone: $("#signin-phone").value } });
        phone = sent.phone;
        $("#signin-phone-form").hidden = true;
        $("#signin-code-form").hidden = false;
        setResult("#signin-result", `Code sent to ${sent.phone}.`, true);
        if (sent.code) {
          // A demo or test server says the code instead of texting it.
          $("#signin-code").value = sent.code;
          setText("#signin-demo", `Demo server: your code is ${sent.code}.`);
          $("#signin-demo").hidden = false;
        }
        $("#signin-code").focus();
      } catch (error) {
        setResult("#signin-result", describeError(error), false);
      }
    };
    $("#signin-code-form").onsubmit = async (event) => {
      event.preventDefault();
      try {
        // The guest token goes along: the room counts the guest and the account as one viewer.
        const session = await api("POST", "/api/accounts/verify", {
          token: state.token,
          body: { phone, code: $("#signin-code").value.trim(), name: state.user ? state.user.name : undefined } });
        state.token = session.token;
        state.user = session.user;
        storeToken(SCOPE, session.token);
        resolve(true);
      } catch (error) {
        setResult("#signin-result", describeError(error), false);
      }
    };
  });
  dialog.showModal();
  const ok = await signedIn;
  dialog.close();
  if (ok) await reconnectAs(state.token);
  return ok;
}

/** The room's connection again, as the account just signed in, joined before this resolves. */
async function reconnectAs(token) {
  const socket = state.socket;
  const connected = new Promise((resolve) => socket.once("connect", resolve));
  socket.disconnect();
  socket.auth = { token };
  socket.connect();
  await connected;
  await state.joined;
}

async function buy() {
  const sale = state.sale;
  if (!sale || state.buying) return;
  if (!state.user || !state.user.phone_verified) {
    if (!(await signInToBuy())) return;
  }
  state.buying = true;
  $("#buy").disabled = true;
  setResult("#buy-result", "Reserving…", true);
  const qty = Number($("#buy-qty").value) || 1;
  try {
    let requestId = newRequestId();
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const answer = await call(state.socket, "buy", { sale: sale.id, qty, request_id: requestId }, 6000);
      if (answer.status === "verification_required") {
        state.user = { ...state.user, phone_verified: false };
        if (!(await signInToBuy())) return;
        continue;
      }
      if (answer.status === "rate_limited" || (answer.error && answer.error.code === "timeout")) {
        // Busy: wait as told and try again. A timed-out attempt keeps its id (never buys twice).
        setResult("#buy-result", "Many people are buying: retrying…", true);
        if (answer.status === "rate_limited") requestId = newRequestId();
        await new Promise((r) => setTimeout(r, Math.min(answer.retry_after_ms || ackError(answer).retry_after_ms || 500, 3000)));
        continue;
      }
      onBuyAnswer(answer, qty);
      return;
    }
    setResult("#buy-result", "The sale is very busy. Tap Buy now again.", false);
  } finally {
    state.buying = false;
    renderSale();
  }
}

function onBuyAnswer(answer, qty) {
  if (typeof answer.remaining === "number" && state.sale && answer.sale === state.sale.id) {
    state.sale.remaining = answer.remaining;
  }
  if (answer.ok && answer.status === "reserved") {
    setResult("#buy-result", `Reserved ${answer.reservation.qty} × ${state.sale.title}. Complete checkout below.`, true);
    openCheckout(answer.reservation);
    return;
  }
  if (answer.status === "limit_reached") {
    setResult("#buy-result", `Limit reached: at most ${state.sale.per_user_limit} per person (you asked for ${qty}).`, false);
  } else if (BUY_RESULT_TEXT[answer.status]) {
    setResult("#buy-result", BUY_RESULT_TEXT[answer.status], false);
  } else {
    setResult("#buy-result", describeError(ackError(answer)), false);
  }
}

// ------------------------------------------------------------------ checkout

function openCheckout(reservation) {
  state.reservation = reservation;
  const sale = state.sale;
  $("#checkout").hidden = false;
  $("#checkout-summary").replaceChildren(
    h("strong", {}, `${reservation.qty} × ${sale ? sale.title : "item"}`),
    h("span", { class: "muted" }, ` · ${formatCents(reservation.qty * reservation.price_cents)}`),
  );
  setText("#checkout-result", "");
  $("#place-order").disabled = false;
  $("#checkout").scrollIntoView({ behavior: "smooth", block: "start" });
  $("#ship-name").value ||= state.user ? state.user.name : "";
  tickHold();
}

function tickHold() {
  const reservation = state.reservation;
  if (!reservation || $("#checkout").hidden) return;
  const left = reservation.expires_at - clock.now();
  setText("#hold-countdown", formatDuration(left));
  if (left <= 0) {
    closeCheckout();
    setResult("#buy-result", "Your reservation expired and went back on sale. Tap Buy now to try again.", false);
  }
}

function closeCheckout() {
  state.reservation = null;
  $("#checkout").hidden = true;
}

async function placeOrder(event) {
  event.preventDefault();
  const reservation = state.reservation;
  if (!reservation) return;
  const form = $("#checkout-form");
  const payment = form.elements.payment.value;
  $("#place-order").disabled = true;
  setResult("#checkout-result", "Placing your order…", true);
  try {
    const order = await orders.checkout(reservation, {
      name: $("#ship-name").value.trim(),
      phone: $("#ship-phone").value.trim(),
      line1: $("#ship-line1").value.trim(),
      city: $("#ship-city").value.trim(),
    }, payment === "cod" ? "cod" : { method: "online", card: $("#card").value.replace(/\s/g, "") });
    closeCheckout();
    // The order's own method, not the form's: a checkout retried after an interruption returns
    // the order as it was first placed.
    if (order.payment_method === "cod") {
      setResult("#buy-result", `Order placed: pay ${formatCents(order.total_cents)} in cash when it arrives.`, true);
    } else if (order.status === "created") {
      // The provider decides later: the outcome comes with the `order` push (Orders.onPayment).
      setResult("#buy-result", `Order placed, awaiting payment: ${formatCents(order.total_cents)} `
        + "from your card. The result appears here in a moment.", true);
    }
  } catch (error) {
    $("#place-order").disabled = false;
    setResult("#checkout-result", describeError(error), false);
    if (["hold_expired", "unknown_reservation", "hold_not_active"].includes(error.code)) closeCheckout();
  }
}

async function releaseHold() {
  const reservation = state.reservation;
  if (!reservation) return;
  const answer = await call(state.socket, "release", { reservation: reservation.id });
  if (answer.ok || ["hold_not_active", "unknown_reservation"].includes(ackError(answer).code)) {
    closeCheckout();
    setResult("#buy-result", "You gave the item back.", true);
  } else {
    setResult("#checkout-result", describeError(ackError(answer)), false);
  }
}

// ------------------------------------------------------------------ start

async function main() {
  installGlobalErrorHandlers();
  $("#chat-form").addEventListener("submit", sendChat);
  $("#buy").addEventListener("click", buy);
  $("#signin-open").addEventListener("click", async () => {
    if (await signInToBuy()) renderSale();
  });
  $("#checkout-form").addEventListener("submit", placeOrder);
  $("#release").addEventListener("click", releaseHold);
  $("#checkout-form").addEventListener("change", () => {
    const online = $("#checkout-form").elements.payment.value === "online";
    $("#card-field").hidden = !online;
    $("#card").required = online;
  });
  setInterval(() => { tickCountdown(); tickHold(); }, 250);
  try {
    await ensureSession();
    clock.sync().catch(() => {}); // room state's server_time is the fallback
    orders = new Orders(() => state.token, () => state.socket,
      (text, ok) => setResult("#buy-result", text, ok));
    $("#orders-refresh").addEventListener("click", () => orders.refresh());
    watcher = new Watcher(roomId, () => state.socket, $("#video"), $("#video-overlay"), $("#unmute"),
      () => state.token);
    connect();
    // Orders load when the section is opened (phones: keep the first screen light).
    $("#orders-card").addEventListener("toggle", () => $("#orders-card").open && orders.refresh());
  } catch (error) {
    showError(error);
  }
  setInterval(() => clock.sync().catch(() => {}), 60_000);
}

main();
