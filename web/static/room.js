// @ts-check
// Viewer room: video, chat, viewer count, pinned product with badges, flash sale, checkout, orders.
import {
  $, $as, ackError, call, clock, connectSocket, describeError, formatCents, formatDuration,
  formatTimeOfDay, h, hideBanner, installGlobalErrorHandlers, newRequestId, pathId, setText,
  showBanner, showError, showResult,
} from "./lr.js";
import { AuctionPanel } from "./auction.js";
import { openBadge } from "./badges.js";
import { ChatLog, sendsChat, slowModeText } from "./chat.js";
import { CouponCard } from "./coupons.js";
import { LuckyCard } from "./luckycard.js";
import { Orders } from "./orders.js";
import {
  applyStock, countdownText, replacesSale, SALE_STATUS_TEXT, saleStatus, stockLeftWidth,
} from "./sale.js";
import { isTokenError, signInWithPhone, storeToken, viewerSession } from "./signin.js";
import { playReplay, VideoPath } from "./watch.js";

/** @import { Socket } from "socket.io-client" */
/**
 * @import { Ack, Badge, BuyAnswer, ModerationEvent, Product, Reservation, RoomState, Sale,
 *   SaleStatus, Session } from "./types.js"
 */

const SCOPE = "viewer";
/** @type {Partial<Record<string, string>>} */
const BUY_RESULT_TEXT = {
  sold_out: "Sold out: every unit is taken. Units come back if someone does not pay in time.",
  not_started: "The sale has not started yet. Wait for the countdown.",
  ended: "This sale has ended.",
  invalid: "That quantity is not allowed.",
  banned: "The host removed you from this room: you cannot buy here.",
};
/** @type {Record<SaleStatus, string>} */
const BUY_BUTTON_TEXT = {
  scheduled: "Starts soon", live: "Buy now", sold_out: "Sold out", ended: "Sale ended",
};
const MAX_QTY_CHOICES = 10;

const roomId = pathId();
const chat = new ChatLog($("#chat-log"));

/**
 * @typedef {object} RoomPage
 * @property {Session | null} session
 * @property {Socket | null} socket
 * @property {Promise<void> | null} joined the latest join, done once the room state is shown
 * @property {Product | null} product
 * @property {Sale | null} sale
 * @property {Reservation | null} reservation
 * @property {boolean} ended the room ended, or this viewer was removed from it
 * @property {boolean} replaying the replay was asked for (once)
 * @property {boolean} buying
 */
/** @type {RoomPage} */
const state = {
  session: null, socket: null, joined: null, product: null, sale: null, reservation: null,
  ended: false, replaying: false, buying: false,
};
/** @type {Orders | null} */
let orders = null;
/** @type {VideoPath | null} */
let watcher = null;
/** @type {LuckyCard | null} */
let lucky = null;
/** @type {CouponCard | null} */
let coupons = null;
/** @type {AuctionPanel | null} */
let auctions = null;

function token() {
  return state.session ? state.session.token : null;
}

function socket() {
  if (!state.socket) throw new Error("The live connection is not open yet.");
  return state.socket;
}

// ------------------------------------------------------------------ socket

/** @param {Session} session */
function connect(session) {
  const live = connectSocket(session.token);
  state.socket = live;
  live.on("connect", () => { state.joined = joinRoom(); });
  live.on("disconnect", (reason) => {
    if (reason !== "io client disconnect" && !state.ended) {
      showBanner("Connection lost. Reconnecting…", { kind: "notice" });
    }
  });
  live.on("connect_error", async (err) => {
    const code = /** @type {{data?: {code?: string}}} */ (err).data?.code;
    if (isTokenError(code)) {
      // Refused session: get a fresh guest session and try again once.
      live.disconnect();
      storeToken(SCOPE, null);
      try {
        state.session = await viewerSession(SCOPE);
        live.auth = { token: state.session.token };
        live.connect();
      } catch (error) {
        showError(error);
      }
    } else if (!live.active) {
      showError("Cannot connect to the live room. Reload the page to try again.");
    } else {
      showBanner("Cannot reach the live room. Retrying…", { kind: "notice" });
    }
  });
  live.on("chat", (message) => message.room === roomId && chat.add(message));
  live.on("viewers", (data) => data.room === roomId && setText("#viewer-count", data.count));
  live.on("pinned", (data) => data.room === roomId && renderProduct(data.product));
  live.on("moderation", onModeration);
  live.on("room", (data) => data.room === roomId && data.status === "ended" && onRoomEnded());
  live.on("sale", (sale) => sale.room === roomId && onSale(sale));
  live.on("stock", (update) => applyStock(state.sale, update) && renderSale());
  live.on("badges", onBadges);
  live.on("media", (data) => data.room === roomId && watcher && watcher.onLive(data));
  live.on("order", (order) => orders && orders.onPush(order));
  live.on("lucky", (bag) => lucky && lucky.show(bag));
  live.on("coupon", (drop) => coupons && coupons.show(drop));
  live.on("followers", (data) => lucky && lucky.onFollowers(data));
  live.on("auction", (push) => auctions && auctions.onPush(push));
}

async function joinRoom() {
  /** @type {Ack<{room: RoomState}>} */
  const answer = await call(socket(), "join", { room: roomId });
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

/** @param {RoomState} room */
function renderRoom(room) {
  clock.hint(room.server_time);
  document.title = `${room.title} — liveroom`;
  setText("#room-title", room.title);
  setText("#room-anchor", `with ${room.anchor.name}`);
  setText("#viewer-count", room.viewers);
  chat.replace(room.chat || []);
  renderProduct(room.pinned);
  if (room.sale !== undefined) onSale(room.sale);
  if (room.auction !== undefined && auctions) auctions.show(room.auction);
  if (watcher) watcher.onLive(room.media || null);
  if (coupons) {
    coupons.show(room.coupon);
    coupons.refresh().catch(() => {});
  }
  if (lucky) {
    lucky.show(room.lucky);
    lucky.showAnchor(room.anchor.id).catch(() => {});
  }
  if (room.status && room.status !== "live") onRoomEnded();
}

function onRoomEnded() {
  state.ended = true;
  setText("#room-status", "ENDED");
  $("#room-status").classList.remove("live");
  $as("#chat-input", HTMLInputElement).disabled = true;
  showBanner("This live has ended. Your orders stay below; find another live room on the home page.",
    { kind: "notice" });
  renderSale();
  if (auctions) auctions.roomEnded();
  if (watcher) watcher.stop("The live has ended.");
  // The video element is the replay's from now on: no late `media` push may reset it.
  watcher = null;
  if (!state.replaying) {
    state.replaying = true;
    playReplay(roomId, $as("#video", HTMLVideoElement), $("#video-overlay"), $("#chapters"))
      .then((found) => found && setText("#room-status", "REPLAY"))
      .catch(() => {});
  }
}

// ------------------------------------------------------------------ chat and moderation

/** @param {ModerationEvent} event */
function onModeration(event) {
  if (event.room !== roomId) return;
  const mine = state.session !== null && event.user === state.session.user.id;
  if (event.action === "slow_mode") {
    chat.system(slowModeText(event.seconds));
  } else if (mine && event.action === "muted") {
    showBanner(`The host muted you until ${formatTimeOfDay(Number(event.until))}.`, { kind: "notice" });
  } else if (mine && event.action === "unmuted") {
    showBanner("You can chat again.", { kind: "notice", autoHideMs: 4000 });
  } else if (mine && event.action === "banned") {
    onBanned();
  }
}

function onBanned() {
  state.ended = true;
  $as("#chat-input", HTMLInputElement).disabled = true;
  showError("The host removed you from this room. Find another live room on the home page.");
  if (watcher) watcher.stop("You were removed from this room.");
}

// ------------------------------------------------------------------ product and badges

/** @param {Product | null} product */
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

/** @param {Badge[]} badges */
function renderBadges(badges) {
  $("#badges").replaceChildren(...badges.map((badge) => h("li", {},
    h("button", {
      type: "button", class: `badge${badge.certificate ? " certified" : ""}`,
      dataset: { kind: badge.kind, certificate: badge.certificate || "" },
      onclick: () => openBadge(badge),
    }, badge.certificate ? `✓ ${badge.label}` : badge.label))));
}

/** @param {{product: string, badges?: Badge[]}} data */
function onBadges(data) {
  if (!state.product || data.product !== state.product.id) return;
  state.product.badges = data.badges || [];
  renderBadges(state.product.badges);
}

// ------------------------------------------------------------------ flash sale

/** @param {Sale | null} sale */
function onSale(sale) {
  if (replacesSale(sale, state.sale)) {
    state.sale = sale;
    if (sale) clock.hint(sale.server_time);
  }
  renderSale();
}

/** The sale's status as the page shows it: everything has ended once the room has. */
function shownStatus(/** @type {Sale} */ sale) {
  return state.ended ? "ended" : saleStatus(sale);
}

function renderSale() {
  const { sale, product } = state;
  const onThisProduct = Boolean(sale && product && sale.product === product.id);
  $("#sale").hidden = !onThisProduct;
  $("#no-sale").hidden = onThisProduct;
  if (product) {
    const dealPrice = sale !== null && onThisProduct && saleStatus(sale) !== "ended";
    setText("#product-price", formatCents(sale && dealPrice ? sale.price_cents : product.price_cents));
    $("#product-was").hidden = !dealPrice || (sale !== null && sale.price_cents === product.price_cents);
    setText("#product-was", formatCents(product.price_cents));
  }
  if (!sale || !onThisProduct) return;
  const status = shownStatus(sale);
  $("#stock-fill").style.width = stockLeftWidth(sale);
  const stockbar = $(".stockbar");
  stockbar.setAttribute("aria-valuemax", String(sale.stock));
  stockbar.setAttribute("aria-valuenow", String(sale.remaining));
  setText("#stock-text", `${sale.remaining} of ${sale.stock} left${sale.held ? ` · ${sale.held} in checkout` : ""}`);
  setText("#sale-limit", `Limit ${sale.per_user_limit} per person`);
  setText("#sale-state", SALE_STATUS_TEXT[status]);
  $("#sale-state").classList.toggle("live", status === "live");
  const qty = $as("#buy-qty", HTMLSelectElement);
  const choices = Math.max(1, Math.min(sale.per_user_limit, MAX_QTY_CHOICES));
  if (qty.options.length !== choices) {
    qty.replaceChildren(...Array.from({ length: choices }, (_, i) => h("option", { value: i + 1 }, i + 1)));
  }
  const buyButton = $as("#buy", HTMLButtonElement);
  buyButton.disabled = status !== "live" || state.buying;
  buyButton.textContent = BUY_BUTTON_TEXT[status];
  // Sign in during the countdown rather than after pressing Buy, when every second counts.
  $("#signin-open").hidden = status === "ended" || isBuyer();
  tickCountdown();
}

function tickCountdown() {
  const sale = state.sale;
  if (!sale || $("#sale").hidden) return;
  const status = shownStatus(sale);
  setText("#sale-countdown", countdownText(sale, status));
  // Crossing a boundary (start, end) changes the button without waiting for a push.
  if ((status === "live") === $as("#buy", HTMLButtonElement).disabled && !state.buying) renderSale();
}

// ------------------------------------------------------------------ buyer account

function isBuyer() {
  return Boolean(state.session && state.session.user.phone_verified);
}

/** Sign in with a phone (a buyer account), then rejoin as the account. Whether it worked. */
async function signInToBuy() {
  const session = await signInWithPhone(state.session);
  if (!session) return false;
  state.session = session;
  storeToken(SCOPE, session.token);
  await reconnectAs(session.token);
  return true;
}

/**
 * The room's connection again, as the account just signed in, joined before this resolves.
 * @param {string} newToken
 */
async function reconnectAs(newToken) {
  const live = socket();
  /** @type {Promise<void>} */
  const connected = new Promise((resolve) => { live.once("connect", () => resolve()); });
  live.disconnect();
  live.auth = { token: newToken };
  live.connect();
  await connected;
  await state.joined;
}

async function buy() {
  const sale = state.sale;
  if (!sale || state.buying) return;
  if (!isBuyer() && !(await signInToBuy())) return;
  state.buying = true;
  $as("#buy", HTMLButtonElement).disabled = true;
  showResult("#buy-result", "Reserving…", true);
  const qty = Number($as("#buy-qty", HTMLSelectElement).value) || 1;
  try {
    let requestId = newRequestId();
    for (let attempt = 0; attempt < 5; attempt += 1) {
      /** @type {Ack<BuyAnswer>} */
      const answer = await call(socket(), "buy", { sale: sale.id, qty, request_id: requestId }, 6000);
      if (answer.status === "verification_required") {
        if (state.session) state.session.user = { ...state.session.user, phone_verified: false };
        if (!(await signInToBuy())) return;
        continue;
      }
      if (answer.status === "rate_limited" || (!answer.ok && answer.error.code === "timeout")) {
        // Busy: wait as told and try again. A timed-out attempt keeps its id (never buys twice).
        showResult("#buy-result", "Many people are buying: retrying…", true);
        if (answer.status === "rate_limited") requestId = newRequestId();
        const waitMs = ackError(answer).retry_after_ms || 500;
        await new Promise((resolve) => { setTimeout(resolve, Math.min(waitMs, 3000)); });
        continue;
      }
      onBuyAnswer(answer, qty);
      return;
    }
    showResult("#buy-result", "The sale is very busy. Tap Buy now again.", false);
  } finally {
    state.buying = false;
    renderSale();
  }
}

/**
 * @param {Ack<BuyAnswer>} answer
 * @param {number} qty what was asked for
 */
function onBuyAnswer(answer, qty) {
  const sale = state.sale;
  if (typeof answer.remaining === "number" && sale && answer.sale === sale.id) {
    sale.remaining = answer.remaining;
  }
  if (answer.ok && answer.status === "reserved" && answer.reservation) {
    showResult("#buy-result", `Reserved ${answer.reservation.qty} × ${sale ? sale.title : "item"}. Complete checkout below.`, true);
    openCheckout(answer.reservation);
    return;
  }
  const text = answer.status === "limit_reached" && sale
    ? `Limit reached: at most ${sale.per_user_limit} per person (you asked for ${qty}).`
    : (answer.status && BUY_RESULT_TEXT[answer.status]) || describeError(ackError(answer));
  showResult("#buy-result", text, false);
}

// ------------------------------------------------------------------ checkout

/**
 * @param {Reservation} reservation
 * @param {string} [title] what is held (default: the flash sale's item)
 */
function openCheckout(reservation, title) {
  state.reservation = reservation;
  const sale = state.sale;
  $("#checkout").hidden = false;
  $("#checkout-summary").replaceChildren(
    h("strong", {}, `${reservation.qty} × ${title || (sale ? sale.title : "item")}`),
    h("span", { class: "muted" }, ` · ${formatCents(reservation.qty * reservation.price_cents)}`),
  );
  setText("#checkout-result", "");
  // Which coupon applies is the server's to decide: the page only says one will.
  const usable = coupons ? coupons.usable().length : 0;
  setText("#checkout-coupon", usable
    ? "Your best coupon for this room is applied when you place the order." : "");
  $as("#place-order", HTMLButtonElement).disabled = false;
  $("#checkout").scrollIntoView({ behavior: "smooth", block: "start" });
  const name = $as("#ship-name", HTMLInputElement);
  name.value ||= state.session ? state.session.user.name : "";
  tickHold();
}

function tickHold() {
  const reservation = state.reservation;
  if (!reservation || $("#checkout").hidden) return;
  const left = reservation.expires_at - clock.now();
  setText("#hold-countdown", formatDuration(left));
  if (left <= 0) {
    closeCheckout();
    showResult("#buy-result", "Your reservation expired and went back on sale. Tap Buy now to try again.", false);
  }
}

function closeCheckout() {
  state.reservation = null;
  $("#checkout").hidden = true;
}

/** @param {string} selector */
function typed(selector) {
  return $as(selector, HTMLInputElement).value.trim();
}

function paymentChoice() {
  const form = $as("#checkout-form", HTMLFormElement);
  const chosen = form.elements.namedItem("payment");
  return chosen instanceof RadioNodeList ? chosen.value : "cod";
}

/** @param {SubmitEvent} event */
async function placeOrder(event) {
  event.preventDefault();
  const reservation = state.reservation;
  if (!reservation || !orders) return;
  const placeButton = $as("#place-order", HTMLButtonElement);
  placeButton.disabled = true;
  showResult("#checkout-result", "Placing your order…", true);
  try {
    const order = await orders.checkout(reservation, {
      name: typed("#ship-name"), phone: typed("#ship-phone"), line1: typed("#ship-line1"),
      city: typed("#ship-city"),
    }, paymentChoice() === "cod" ? "cod"
      : { method: "online", card: $as("#card", HTMLInputElement).value.replace(/\s/g, "") });
    closeCheckout();
    const saved = order.discount_cents
      ? ` A coupon took ${formatCents(order.discount_cents)} off ${formatCents(order.subtotal_cents || 0)}.` : "";
    // The order's own method, not the form's: a checkout retried after an interruption returns
    // the order as it was first placed.
    if (order.payment_method === "cod") {
      showResult("#buy-result", `Order placed: pay ${formatCents(order.total_cents)} in cash when it arrives.${saved}`, true);
    } else if (order.status === "created") {
      // The provider decides later: the outcome comes with the `order` push (Orders.onPayment).
      showResult("#buy-result", `Order placed, awaiting payment: ${formatCents(order.total_cents)} `
        + `from your card. The result appears here in a moment.${saved}`, true);
    }
    if (coupons && order.coupon) coupons.refresh().catch(() => {});
  } catch (error) {
    placeButton.disabled = false;
    showResult("#checkout-result", describeError(error), false);
    const code = /** @type {{code?: string}} */ (error).code;
    if (code && ["hold_expired", "unknown_reservation", "hold_not_active"].includes(code)) closeCheckout();
  }
}

async function releaseHold() {
  const reservation = state.reservation;
  if (!reservation) return;
  const answer = await call(socket(), "release", { reservation: reservation.id });
  if (answer.ok || ["hold_not_active", "unknown_reservation"].includes(ackError(answer).code)) {
    closeCheckout();
    showResult("#buy-result", "You gave the item back.", true);
  } else {
    showResult("#checkout-result", describeError(ackError(answer)), false);
  }
}

// ------------------------------------------------------------------ start

async function main() {
  installGlobalErrorHandlers();
  const chatInput = $as("#chat-input", HTMLInputElement);
  sendsChat($as("#chat-form", HTMLFormElement), chatInput,
    (text) => call(socket(), "chat", { room: roomId, text }),
    async (err) => {
      if (err.code === "not_in_room") await joinRoom();
      showError(err);
    });
  $("#buy").addEventListener("click", buy);
  $("#signin-open").addEventListener("click", async () => {
    if (await signInToBuy()) renderSale();
  });
  const checkoutForm = $as("#checkout-form", HTMLFormElement);
  checkoutForm.addEventListener("submit", placeOrder);
  $("#release").addEventListener("click", releaseHold);
  checkoutForm.addEventListener("change", () => {
    const online = paymentChoice() === "online";
    $("#card-field").hidden = !online;
    $as("#card", HTMLInputElement).required = online;
  });
  auctions = new AuctionPanel(roomId, socket,
    async () => isBuyer() || signInToBuy(),
    (reservation, title) => {
      showResult("#bid-result", `${title} is held for you at your bid: complete checkout below.`, true);
      openCheckout(reservation, title);
    }, token);
  setInterval(() => { tickCountdown(); tickHold(); if (auctions) auctions.tick(); }, 250);
  try {
    state.session = await viewerSession(SCOPE);
    clock.sync().catch(() => {}); // room state's server_time is the fallback
    const ordersCard = $as("#orders-card", HTMLDetailsElement);
    const shown = new Orders(token, socket, (text, ok) => showResult("#buy-result", text, ok));
    orders = shown;
    $("#orders-refresh").addEventListener("click", () => shown.refresh());
    // WebRTC while seats are free, else LL-HLS; "low data" or `?hls=1` choose LL-HLS.
    watcher = new VideoPath({
      room: roomId, getSocket: socket, video: $as("#video", HTMLVideoElement),
      overlay: $("#video-overlay"), unmuteButton: $("#unmute"), indicator: $("#video-path"),
      lowDataButton: $as("#low-data", HTMLButtonElement), getToken: token,
      forceHls: new URLSearchParams(location.search).get("hls") === "1",
    });
    lucky = new LuckyCard(roomId, socket, () => state.session, signInToBuy, openCheckout);
    coupons = new CouponCard(roomId, socket, () => state.session, signInToBuy);
    connect(state.session);
    // Orders load when the section is opened (phones: keep the first screen light).
    ordersCard.addEventListener("toggle", () => ordersCard.open && shown.refresh());
  } catch (error) {
    showError(error);
  }
  setInterval(() => clock.sync().catch(() => {}), 60_000);
}

main();
