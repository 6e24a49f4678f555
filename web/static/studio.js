// @ts-check
// Anchor studio: camera and go-live, products and pin, flash sale form and panel, live auction
// form and panel, chat with moderation, live figures.
import {
  $, $as, ackError, call, clock, connectSocket, describeError, formatCents, formatDuration,
  formatTimeOfDay, h,
  hideBanner, installGlobalErrorHandlers, parseMoney, pathId, setText, showBanner, showError,
  showResult,
} from "./lr.js";
import { ChatLog, sendsChat, slowModeText } from "./chat.js";
import { applyStock, countdownText, replacesSale, saleStatus, stockLeftWidth } from "./sale.js";
import { isTokenError, StaffSignIn } from "./signin.js";
import { CouponPanel } from "./studiocoupons.js";
import { LuckyPanel } from "./studiolucky.js";
import { publish } from "./watch.js";

/** @import { Socket } from "socket.io-client" */
/** @import { Rest } from "./lr.js" */
/**
 * @import { Ack, Auction, AuctionPush, ChatMessage, Figures, Media, ModerationEvent, Product,
 *   RoomState, Sale, User } from "./types.js"
 */

const FIGURES_REFRESH_MS = 5000;
const MUTE_FOR_S = 300;

const roomId = pathId();

/**
 * @typedef {object} StudioPage
 * @property {Rest | null} rest
 * @property {User | null} me
 * @property {RoomState | null} room
 * @property {Socket | null} socket
 * @property {Product[]} products
 * @property {string | null} pinned the pinned product's id
 * @property {Sale | null} sale
 * @property {Auction | null} auction the room's newest auction
 * @property {MediaStream | null} stream the camera and microphone
 * @property {RTCPeerConnection | null} pc the broadcast
 * @property {ReturnType<typeof setInterval> | undefined} figuresTimer
 */
/** @type {StudioPage} */
const state = {
  rest: null, me: null, room: null, socket: null, products: [], pinned: null, sale: null,
  auction: null, stream: null, pc: null, figuresTimer: undefined,
};

const chat = new ChatLog($("#chat-log"), moderationButtons);
const luckyPanel = new LuckyPanel(roomId, rest);
const couponPanel = new CouponPanel(roomId, rest);
const signIn = new StaffSignIn({
  scope: "studio", roles: ["anchor", "admin"], tokenName: "anchor token", pageName: "the studio",
  content: $("#studio"), admit: admitToRoom, onSignedIn: openStudio,
});

function rest() {
  if (!state.rest) throw new Error("Sign in first.");
  return state.rest;
}

function socket() {
  if (!state.socket) throw new Error("The live connection is not open yet.");
  return state.socket;
}

// ------------------------------------------------------------------ sign-in

/**
 * The room's anchor (or an admin) may use its studio.
 * @param {Rest} client
 * @param {User} me
 * @returns {Promise<string | null>} why not
 */
async function admitToRoom(client, me) {
  /** @type {RoomState} */
  const room = await client.get(`/api/rooms/${encodeURIComponent(roomId)}`);
  if (room.anchor.id !== me.id && me.role !== "admin") {
    return `This room belongs to ${room.anchor.name}. Sign in with their anchor token.`;
  }
  Object.assign(state, { rest: client, me, room });
  return null;
}

/** Once signed in: the room, its products, the live connection and the figures. */
async function openStudio() {
  const room = state.room;
  if (!room) return;
  setText("#room-title", room.title);
  $as("#viewer-link", HTMLAnchorElement).href = `/r/${encodeURIComponent(roomId)}`;
  if (room.status !== "live") showBanner("This room has ended. Open a new room to go live again.", { kind: "notice" });
  await loadProducts();
  connect(rest().token);
  // The figures of the room so far (also after a reload, sale or not); then `figures` pushes
  // follow orders, and a poll while a sale runs follows the viewers (conversion).
  refreshFigures();
  clearInterval(state.figuresTimer);
  state.figuresTimer = setInterval(() => state.sale && refreshFigures(), FIGURES_REFRESH_MS);
}

// ------------------------------------------------------------------ socket

/** @param {string} token */
function connect(token) {
  const live = connectSocket(token);
  state.socket = live;
  live.on("connect", async () => {
    /** @type {Ack<{room: RoomState}>} */
    const answer = await call(live, "join", { room: roomId });
    if (!answer.ok) {
      showError(ackError(answer));
      return;
    }
    hideBanner();
    const room = answer.room;
    state.room = room;
    clock.hint(room.server_time);
    chat.replace(room.chat || []);
    setViewers(room.viewers);
    state.pinned = room.pinned_product;
    renderProducts();
    $as("#slow-mode", HTMLSelectElement).value = String(room.slow_mode_s || 0);
    if (room.sale !== undefined) onSale(room.sale);
    luckyPanel.show(room.lucky);
    couponPanel.show(room.coupon);
    if (room.auction !== undefined) onAuction(room.auction);
    if (room.media) onMedia(room.media);
  });
  live.on("disconnect", (reason) => {
    if (reason !== "io client disconnect") showBanner("Connection lost. Reconnecting…", { kind: "notice" });
  });
  live.on("connect_error", (err) => {
    const code = /** @type {{data?: {code?: string}}} */ (err).data?.code;
    if (isTokenError(code)) {
      live.disconnect();
      signIn.refused();
    } else {
      showBanner("Cannot reach the server. Retrying…", { kind: "notice" });
    }
  });
  live.on("chat", (message) => message.room === roomId && chat.add(message));
  live.on("viewers", (data) => data.room === roomId && setViewers(data.count));
  live.on("pinned", (data) => {
    if (data.room !== roomId) return;
    state.pinned = data.product && data.product.id;
    renderProducts();
  });
  live.on("moderation", onModeration);
  live.on("sale", (sale) => sale.room === roomId && onSale(sale));
  live.on("lucky", (bag) => luckyPanel.show(bag));
  live.on("coupon", (drop) => couponPanel.show(drop));
  live.on("stock", (update) => applyStock(state.sale, update) && renderSale());
  live.on("auction", (/** @type {AuctionPush} */ push) => push.room === roomId && onAuction(push));
  live.on("media", (media) => media.room === roomId && onMedia(media));
  live.on("figures", (figures) => (!figures.room || figures.room === roomId) && renderFigures(figures));
  live.on("room", (data) => data.room === roomId && data.status === "ended"
    && showBanner("This room has ended.", { kind: "notice" }));
}

/** @param {number} count */
function setViewers(count) {
  setText("#viewer-count", count);
  setText("#fig-viewers", count);
}

// ------------------------------------------------------------------ products and pin

async function loadProducts() {
  /** @type {{products: Product[]}} */
  const { products } = await rest().get("/api/products");
  state.products = products;
  state.pinned = state.room ? state.room.pinned_product : null;
  renderProducts();
}

function renderProducts() {
  $("#products").replaceChildren(...state.products.map((product) => {
    const pinned = product.id === state.pinned;
    return h("li", { class: "row", dataset: { product: product.id } },
      h("div", { class: "grow" },
        h("div", {}, h("strong", {}, product.title)),
        h("div", { class: "small muted" },
          `${formatCents(product.price_cents)} · ${product.category} · `, h("code", {}, product.id)),
        h("div", { class: "small" }, (product.badges || []).filter((b) => b.certificate)
          .map((b) => `✓ ${b.label}`).join(" · "))),
      h("button", {
        type: "button", class: pinned ? "" : "primary", disabled: pinned,
        onclick: () => pin(product.id),
      }, pinned ? "Pinned" : "Pin"));
  }));
  if (!state.products.length) {
    $("#products").append(h("li", { class: "muted" }, "No products yet: add one below."));
  }
  const select = $as("#sale-product", HTMLSelectElement);
  const chosen = select.value || state.pinned || "";
  select.replaceChildren(...state.products.map((p) =>
    h("option", { value: p.id }, `${p.title} (${formatCents(p.price_cents)})`)));
  if (chosen) select.value = chosen;
  const lot = $as("#auction-product", HTMLSelectElement);
  const lotChosen = lot.value || state.pinned || "";
  lot.replaceChildren(...state.products.map((p) => h("option", { value: p.id }, p.title)));
  if (lotChosen) lot.value = lotChosen;
  fillDealPrice();
  luckyPanel.products(state.products);
}

/** The deal price starts at the product's price, until the anchor types one. */
function fillDealPrice() {
  const product = state.products.find((p) => p.id === $as("#sale-product", HTMLSelectElement).value);
  const input = $as("#sale-deal", HTMLInputElement);
  if (product && !input.dataset.touched) input.value = (product.price_cents / 100).toFixed(2);
}

/** @param {string} productId */
async function pin(productId) {
  try {
    await rest().post(`/api/rooms/${encodeURIComponent(roomId)}/pin`, { product_id: productId });
    state.pinned = productId;
    renderProducts();
  } catch (error) {
    showError(error);
  }
}

/** @param {SubmitEvent} event */
async function addProduct(event) {
  event.preventDefault();
  const price = parseMoney($as("#product-price", HTMLInputElement).value);
  if (price === null || price < 1) {
    showError("Enter the price as a number, e.g. 1299.00.");
    return;
  }
  try {
    /** @type {Product} */
    const product = await rest().post("/api/products", {
      title: $as("#product-title", HTMLInputElement).value.trim(),
      category: $as("#product-category", HTMLInputElement).value.trim(),
      brand: $as("#product-brand", HTMLInputElement).value.trim() || undefined,
      price_cents: price,
    });
    state.products.unshift(product);
    renderProducts();
    $as("#product-form", HTMLFormElement).reset();
  } catch (error) {
    showError(error);
  }
}

// ------------------------------------------------------------------ flash sale

/** @param {Sale | null} sale */
function onSale(sale) {
  if (!replacesSale(sale, state.sale)) return;
  state.sale = sale;
  if (sale) clock.hint(sale.server_time);
  renderSale();
}

/** @param {Sale} sale the sale's status in the panel's words ("sold out") */
function statusText(sale) {
  return saleStatus(sale).replace("_", " ");
}

function renderSale() {
  const sale = state.sale;
  $("#sale-panel").hidden = !sale;
  if (!sale) return;
  setText("#sale-title", sale.title);
  setText("#sale-status", statusText(sale));
  setText("#sale-remaining", sale.remaining);
  setText("#sale-held", sale.held);
  setText("#sale-sold", sale.sold);
  setText("#sale-price", formatCents(sale.price_cents));
  $("#sale-fill").style.width = stockLeftWidth(sale);
  $as("#end-sale", HTMLButtonElement).disabled = saleStatus(sale) === "ended";
  tickSale();
}

function tickSale() {
  const sale = state.sale;
  if (!sale) return;
  setText("#sale-countdown", countdownText(sale, saleStatus(sale)));
  // Crossing a boundary (start, end) changes the panel without waiting for a push.
  if ($("#sale-status").textContent !== statusText(sale)) renderSale();
}

/** @param {string} selector a whole number typed in it, or NaN */
function wholeNumber(selector) {
  const value = Number($as(selector, HTMLInputElement).value);
  return Number.isInteger(value) ? value : NaN;
}

/** @param {SubmitEvent} event */
async function startSale(event) {
  event.preventDefault();
  const price = parseMoney($as("#sale-deal", HTMLInputElement).value);
  if (price === null || price < 1) {
    showResult("#sale-result", "Enter the deal price as a number, e.g. 999.00.", false);
    return;
  }
  const numbers = {
    stock: wholeNumber("#sale-stock"),
    price_cents: price,
    per_user_limit: wholeNumber("#sale-limit"),
    starts_in_s: wholeNumber("#sale-starts"),
    duration_s: wholeNumber("#sale-duration"),
    hold_s: wholeNumber("#sale-hold"),
  };
  if (Object.values(numbers).some((v) => Number.isNaN(v))) {
    showResult("#sale-result", "Fill every field with whole numbers.", false);
    return;
  }
  const productId = $as("#sale-product", HTMLSelectElement).value;
  if (!productId) {
    showResult("#sale-result", "Add a product first.", false);
    return;
  }
  try {
    onSale(await rest().post(`/api/rooms/${encodeURIComponent(roomId)}/sales`,
      { product_id: productId, ...numbers }));
    showResult("#sale-result", numbers.starts_in_s
      ? `Sale scheduled: starts in ${numbers.starts_in_s} s.` : "Sale started.", true);
  } catch (error) {
    showResult("#sale-result", describeError(error), false);
  }
}

async function endSale() {
  if (!state.sale) return;
  try {
    onSale(await rest().post(`/api/sales/${encodeURIComponent(state.sale.id)}/end`));
    showResult("#sale-result", "Sale ended.", true);
  } catch (error) {
    showResult("#sale-result", describeError(error), false);
  }
}

// ------------------------------------------------------------------ auction

/**
 * The room's newest auction: created here, read with the room, or pushed (a push carries what
 * moves; an older auction's news never hides a newer one).
 * @param {Auction | AuctionPush | null} auction
 */
function onAuction(auction) {
  if (!auction) {
    state.auction = null;
  } else if (state.auction && state.auction.id === auction.id) {
    Object.assign(state.auction, auction);
  } else if ("title" in auction) {
    state.auction = auction;
  } else if (!state.auction || auction.status !== "ended") {
    state.auction = /** @type {Auction} */ ({ title: "Auction", starts_at: 0, ...auction });
  }
  renderAuction();
}

function auctionStatus() {
  const auction = state.auction;
  if (!auction || auction.status === "ended" || clock.now() >= auction.ends_at) return "ended";
  return clock.now() < auction.starts_at ? "scheduled" : "live";
}

function renderAuction() {
  const auction = state.auction;
  $("#auction-panel").hidden = !auction;
  if (!auction) return;
  const status = auctionStatus();
  setText("#auction-title", auction.title);
  setText("#auction-status", { live: "Live", scheduled: "Starts soon", ended: "Ended" }[status]);
  $("#auction-status").classList.toggle("live", status === "live");
  setText("#auction-price", auction.bids ? formatCents(auction.price_cents) : "—");
  setText("#auction-bids", auction.bids);
  setText("#auction-leader", auction.leader_name || "—");
  $as("#stop-auction", HTMLButtonElement).disabled = status === "ended";
  tickAuction();
}

function tickAuction() {
  const auction = state.auction;
  if (!auction) return;
  const status = auctionStatus();
  setText("#auction-countdown", status === "live" ? `Ends in ${formatDuration(auction.ends_at - clock.now())}` : "");
  if (status === "ended" && !$as("#stop-auction", HTMLButtonElement).disabled) renderAuction();
}

/** @param {SubmitEvent} event */
async function startAuction(event) {
  event.preventDefault();
  const start = parseMoney($as("#auction-start", HTMLInputElement).value);
  if (start === null || start < 1) {
    showResult("#auction-result", "Enter the starting bid as a number, e.g. 100.00.", false);
    return;
  }
  const sudden = $as("#auction-sudden", HTMLInputElement).checked;
  const body = {
    product_id: $as("#auction-product", HTMLSelectElement).value,
    start_cents: start,
    duration_s: wholeNumber("#auction-duration"),
    extend_s: sudden ? null : wholeNumber("#auction-extend"),
    sudden_death: sudden,
  };
  if (!body.product_id) {
    showResult("#auction-result", "Add a product first.", false);
    return;
  }
  try {
    onAuction(await rest().post(`/api/rooms/${encodeURIComponent(roomId)}/auctions`, body));
    showResult("#auction-result", "Auction started.", true);
  } catch (error) {
    showResult("#auction-result", describeError(error), false);
  }
}

async function stopAuction() {
  if (!state.auction) return;
  try {
    onAuction(await rest().post(`/api/auctions/${encodeURIComponent(state.auction.id)}/end`));
    showResult("#auction-result", "Auction stopped.", true);
  } catch (error) {
    showResult("#auction-result", describeError(error), false);
  }
}

// ------------------------------------------------------------------ figures

async function refreshFigures() {
  try {
    renderFigures(await rest().get(`/api/rooms/${encodeURIComponent(roomId)}/figures`));
    setText("#figures-status", "");
  } catch (error) {
    setText("#figures-status", `Figures unavailable: ${describeError(error)}`);
  }
}

/** @param {Figures} figures */
function renderFigures(figures) {
  setText("#fig-gmv", formatCents(figures.gmv_cents));
  setText("#fig-orders", figures.orders);
  setText("#fig-aov", formatCents(figures.average_order_value_cents));
  setText("#fig-conversion", figures.conversion === null || figures.conversion === undefined
    ? "—" : `${(figures.conversion * 100).toFixed(1)}%`);
}

// ------------------------------------------------------------------ chat and moderation

/**
 * Mute and Ban on everyone's lines but the anchor's own.
 * @param {ChatMessage} message
 */
function moderationButtons(message) {
  if (state.me && message.user.id === state.me.id) return null;
  return h("span", { class: "actions" },
    h("button", { type: "button", title: "Mute for 5 minutes", dataset: { act: "mute" },
                  onclick: () => moderate("mod:mute", message.user.id, { duration_s: MUTE_FOR_S }) }, "Mute"),
    h("button", { type: "button", class: "danger", title: "Remove from the room", dataset: { act: "ban" },
                  onclick: () => moderate("mod:ban", message.user.id) }, "Ban"));
}

/**
 * @param {string} event
 * @param {string} userId
 * @param {Record<string, unknown>} [extra]
 */
async function moderate(event, userId, extra = {}) {
  const answer = await call(socket(), event, { room: roomId, user: userId, ...extra });
  if (!answer.ok) showError(ackError(answer));
}

/** @param {ModerationEvent} event */
function onModeration(event) {
  if (event.room !== roomId) return;
  const who = event.user ? chat.nameOf(event.user) || event.user : "";
  const text = {
    muted: `${who} was muted until ${formatTimeOfDay(Number(event.until))}.`,
    unmuted: `${who} can chat again.`,
    banned: `${who} was removed from the room.`,
    slow_mode: slowModeText(event.seconds),
  }[event.action];
  if (text) chat.system(text);
  if (event.action === "slow_mode") $as("#slow-mode", HTMLSelectElement).value = String(event.seconds);
}

async function setSlowMode() {
  const seconds = Number($as("#slow-mode", HTMLSelectElement).value);
  const answer = await call(socket(), "mod:slow", { room: roomId, seconds });
  if (!answer.ok) showError(ackError(answer));
}

// ------------------------------------------------------------------ camera and going live

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("This browser cannot use the camera here. Open the studio over https or on localhost.");
    return;
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      audio: true,
    });
  } catch (error) {
    const hint = error instanceof DOMException && error.name === "NotAllowedError"
      ? "Allow the camera and microphone for this site, then press Start camera again."
      : "No usable camera or microphone was found. Plug one in and press Start camera again.";
    showError(hint);
    return;
  }
  $as("#preview", HTMLVideoElement).srcObject = state.stream;
  setText("#preview-overlay", "");
  $("#preview-overlay").hidden = true;
  $as("#camera", HTMLButtonElement).disabled = true;
  $as("#go-live", HTMLButtonElement).disabled = false;
}

async function goLive() {
  if (!state.stream) return;
  const goLiveButton = $as("#go-live", HTMLButtonElement);
  goLiveButton.disabled = true;
  setText("#live-state", "CONNECTING");
  try {
    const pc = await publish(socket(), roomId, state.stream, rest().token);
    state.pc = pc;
    pc.addEventListener("connectionstatechange", () => {
      if (state.pc === pc && pc.connectionState === "failed") {
        showError("The live video connection failed. Press Go live to try again.");
        stopPublishing();
      }
    });
    $as("#end-live", HTMLButtonElement).disabled = false;
    setLive(true);
  } catch (error) {
    setLive(false);
    goLiveButton.disabled = false;
    showError(`Could not go live: ${describeError(error)}`);
  }
}

async function endLive() {
  stopPublishing();
  const answer = await call(socket(), "rtc:stop", { room: roomId });
  if (!answer.ok) showError(ackError(answer));
}

function stopPublishing() {
  if (state.pc) state.pc.close();
  state.pc = null;
  $as("#end-live", HTMLButtonElement).disabled = true;
  $as("#go-live", HTMLButtonElement).disabled = !state.stream;
  setLive(false);
}

/** @param {boolean} live */
function setLive(live) {
  setText("#live-state", live ? "LIVE" : "OFF AIR");
  $("#live-state").classList.toggle("live", live);
}

/** @param {Media} media */
function onMedia(media) {
  setText("#media-health", media.live
    ? `${media.codec || ""} ${media.bitrate_kbps ?? "?"} kbps · ${media.fps ?? "?"} fps`.trim()
    : "");
}

async function closeRoom() {
  if (!window.confirm("Close this room? Viewers will see that the live has ended.")) return;
  try {
    if (state.pc) await endLive();
    await rest().post(`/api/rooms/${encodeURIComponent(roomId)}/end`);
    showBanner("Room closed.", { kind: "notice" });
  } catch (error) {
    showError(error);
  }
}

// ------------------------------------------------------------------ start

async function main() {
  installGlobalErrorHandlers();
  $("#product-form").addEventListener("submit", addProduct);
  $("#sale-form").addEventListener("submit", startSale);
  const dealPrice = $as("#sale-deal", HTMLInputElement);
  $("#sale-product").addEventListener("change", () => { delete dealPrice.dataset.touched; fillDealPrice(); });
  dealPrice.addEventListener("input", () => { dealPrice.dataset.touched = "1"; });
  $("#end-sale").addEventListener("click", endSale);
  $("#auction-form").addEventListener("submit", startAuction);
  $("#stop-auction").addEventListener("click", stopAuction);
  sendsChat($as("#chat-form", HTMLFormElement), $as("#chat-input", HTMLInputElement),
    (text) => call(socket(), "chat", { room: roomId, text }), showError);
  $("#slow-mode").addEventListener("change", setSlowMode);
  $("#camera").addEventListener("click", startCamera);
  $("#go-live").addEventListener("click", goLive);
  $("#end-live").addEventListener("click", endLive);
  $("#close-room").addEventListener("click", closeRoom);
  setInterval(() => { tickSale(); tickAuction(); }, 250);
  clock.sync().catch(() => {});
  await signIn.start();
}

main();
