// Anchor studio: camera and go-live, products and pin, flash sale form and panel, chat with
// moderation, live figures.
import {
  $, ackError, api, call, client, clock, connectSocket, describeError, formatCents,
  formatDuration, h, hideBanner, installGlobalErrorHandlers, isTokenError, pageToken, parseMoney,
  pathId, setText, showBanner, showError, storeToken,
} from "./lr.js";
import { publish } from "./watch.js";

const SCOPE = "studio";
const CHAT_KEEP = 200;
const FIGURES_REFRESH_MS = 5000;

const roomId = pathId();
const state = {
  rest: null, me: null, room: null, socket: null, products: [], pinned: null, sale: null,
  stream: null, pc: null, viewers: 0, figuresTimer: null,
};

// ------------------------------------------------------------------ sign-in

async function signIn(token) {
  const rest = client(token);
  let me;
  try {
    me = (await rest.get("/api/me")).user;
  } catch (error) {
    if (isTokenError(error.code)) {
      storeToken(SCOPE, null);
      askForToken(`Your anchor token was refused (${describeError(error)}). Paste a fresh one.`);
      return;
    }
    throw error;
  }
  if (me.role !== "anchor" && me.role !== "admin") {
    askForToken(`You are signed in as ${me.name} (${me.role}); the studio needs an anchor token.`);
    return;
  }
  const room = await rest.get(`/api/rooms/${encodeURIComponent(roomId)}`);
  if (room.anchor.id !== me.id && me.role !== "admin") {
    askForToken(`This room belongs to ${room.anchor.name}. Sign in with their anchor token.`);
    return;
  }
  Object.assign(state, { rest, me, room });
  storeToken(SCOPE, token);
  $("#signin").hidden = true;
  $("#studio").hidden = false;
  hideBanner();
  setText("#room-title", room.title);
  $("#viewer-link").href = `/r/${encodeURIComponent(roomId)}`;
  if (room.status !== "live") showBanner("This room has ended. Open a new room to go live again.", { kind: "notice" });
  await loadProducts();
  connect(token);
  // The figures of the room so far (also after a reload, sale or not); then `figures` pushes
  // follow orders, and a poll while a sale runs follows the viewers (conversion).
  refreshFigures();
  clearInterval(state.figuresTimer);
  state.figuresTimer = setInterval(() => state.sale && refreshFigures(), FIGURES_REFRESH_MS);
}

function askForToken(message) {
  $("#signin").hidden = false;
  $("#studio").hidden = true;
  if (message) showError(message);
}

// ------------------------------------------------------------------ socket

function connect(token) {
  const socket = connectSocket(token);
  state.socket = socket;
  socket.on("connect", async () => {
    const answer = await call(socket, "join", { room: roomId });
    if (!answer.ok) return showError(ackError(answer));
    hideBanner();
    const room = answer.room;
    state.room = room;
    clock.hint(room.server_time);
    $("#chat-log").replaceChildren();
    for (const message of room.chat || []) addChat(message);
    setViewers(room.viewers);
    state.pinned = room.pinned_product;
    renderProducts();
    $("#slow-mode").value = String(room.slow_mode_s || 0);
    if (room.sale !== undefined) onSale(room.sale);
    if (room.media) onMedia(room.media);
  });
  socket.on("disconnect", (reason) => {
    if (reason !== "io client disconnect") showBanner("Connection lost. Reconnecting…", { kind: "notice" });
  });
  socket.on("connect_error", (err) => {
    const code = err && err.data && err.data.code;
    if (isTokenError(code)) {
      socket.disconnect();
      storeToken(SCOPE, null);
      askForToken("Your anchor token was refused. Paste a fresh one.");
    } else {
      showBanner("Cannot reach the server. Retrying…", { kind: "notice" });
    }
  });
  socket.on("chat", (m) => m.room === roomId && addChat(m));
  socket.on("viewers", (d) => d.room === roomId && setViewers(d.count));
  socket.on("pinned", (d) => {
    if (d.room !== roomId) return;
    state.pinned = d.product && d.product.id;
    renderProducts();
  });
  socket.on("moderation", onModeration);
  socket.on("sale", (sale) => sale.room === roomId && onSale(sale));
  socket.on("stock", (s) => {
    if (!state.sale || s.sale !== state.sale.id) return;
    Object.assign(state.sale, { remaining: s.remaining, held: s.held, sold: s.sold, status: s.status });
    renderSale();
  });
  socket.on("media", (d) => d.room === roomId && onMedia(d));
  socket.on("figures", (f) => (!f.room || f.room === roomId) && renderFigures(f));
  socket.on("room", (d) => d.room === roomId && d.status === "ended"
    && showBanner("This room has ended.", { kind: "notice" }));
}

function setViewers(count) {
  state.viewers = count;
  setText("#viewer-count", count);
  setText("#fig-viewers", count);
}

// ------------------------------------------------------------------ products and pin

async function loadProducts() {
  const { products } = await state.rest.get("/api/products");
  state.products = products;
  state.pinned = state.room.pinned_product;
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
  const select = $("#sale-product");
  const chosen = select.value || state.pinned || "";
  select.replaceChildren(...state.products.map((p) =>
    h("option", { value: p.id }, `${p.title} (${formatCents(p.price_cents)})`)));
  if (chosen) select.value = chosen;
  fillDealPrice();
}

function fillDealPrice() {
  const product = state.products.find((p) => p.id === $("#sale-product").value);
  const input = $("#sale-deal");
  if (product && !input.dataset.touched) input.value = (product.price_cents / 100).toFixed(2);
}

async function pin(productId) {
  try {
    await state.rest.post(`/api/rooms/${encodeURIComponent(roomId)}/pin`, { product_id: productId });
    state.pinned = productId;
    renderProducts();
  } catch (error) {
    showError(error);
  }
}

async function addProduct(event) {
  event.preventDefault();
  const price = parseMoney($("#product-price").value);
  if (price === null || price < 1) return showError("Enter the price as a number, e.g. 1299.00.");
  try {
    const product = await state.rest.post("/api/products", {
      title: $("#product-title").value.trim(),
      category: $("#product-category").value.trim(),
      brand: $("#product-brand").value.trim() || undefined,
      price_cents: price,
    });
    state.products.unshift(product);
    renderProducts();
    $("#product-form").reset();
  } catch (error) {
    showError(error);
  }
}

// ------------------------------------------------------------------ flash sale

function onSale(sale) {
  if (sale && state.sale && sale.id !== state.sale.id && sale.starts_at < state.sale.starts_at) return;
  state.sale = sale;
  if (sale) clock.hint(sale.server_time);
  renderSale();
}

function saleStatus(sale) {
  const now = clock.now();
  if (sale.status === "ended" || now >= sale.ends_at) return "ended";
  if (now < sale.starts_at) return "scheduled";
  return sale.status === "sold_out" || sale.remaining <= 0 ? "sold_out" : "live";
}

function renderSale() {
  const sale = state.sale;
  $("#sale-panel").hidden = !sale;
  if (!sale) return;
  setText("#sale-title", sale.title);
  setText("#sale-status", saleStatus(sale).replace("_", " "));
  setText("#sale-remaining", sale.remaining);
  setText("#sale-held", sale.held);
  setText("#sale-sold", sale.sold);
  setText("#sale-price", formatCents(sale.price_cents));
  $("#sale-fill").style.width = `${sale.stock ? Math.round((100 * sale.remaining) / sale.stock) : 0}%`;
  $("#end-sale").disabled = saleStatus(sale) === "ended";
  tickSale();
}

function tickSale() {
  const sale = state.sale;
  if (!sale) return;
  const status = saleStatus(sale);
  const now = clock.now();
  setText("#sale-countdown", status === "scheduled" ? `starts in ${formatDuration(sale.starts_at - now)}`
    : status === "ended" ? "" : `ends in ${formatDuration(sale.ends_at - now)}`);
  if ($("#sale-status").textContent !== status.replace("_", " ")) renderSale();
}

function intField(selector) {
  const value = Number($(selector).value);
  return Number.isInteger(value) ? value : NaN;
}

async function startSale(event) {
  event.preventDefault();
  const price = parseMoney($("#sale-deal").value);
  if (price === null || price < 1) return setSaleResult("Enter the deal price as a number, e.g. 999.00.", false);
  const body = {
    product_id: $("#sale-product").value,
    stock: intField("#sale-stock"),
    price_cents: price,
    per_user_limit: intField("#sale-limit"),
    starts_in_s: intField("#sale-starts"),
    duration_s: intField("#sale-duration"),
    hold_s: intField("#sale-hold"),
  };
  if (Object.values(body).some((v) => Number.isNaN(v))) return setSaleResult("Fill every field with whole numbers.", false);
  if (!body.product_id) return setSaleResult("Add a product first.", false);
  try {
    const sale = await state.rest.post(`/api/rooms/${encodeURIComponent(roomId)}/sales`, body);
    onSale(sale);
    setSaleResult(body.starts_in_s ? `Sale scheduled: starts in ${body.starts_in_s} s.` : "Sale started.", true);
  } catch (error) {
    setSaleResult(describeError(error), false);
  }
}

async function endSale() {
  if (!state.sale) return;
  try {
    onSale(await state.rest.post(`/api/sales/${encodeURIComponent(state.sale.id)}/end`));
    setSaleResult("Sale ended.", true);
  } catch (error) {
    setSaleResult(describeError(error), false);
  }
}

function setSaleResult(text, ok) {
  const node = $("#sale-result");
  node.textContent = text;
  node.className = `result ${ok ? "ok" : "bad"}`;
}

// ------------------------------------------------------------------ figures

async function refreshFigures() {
  try {
    renderFigures(await state.rest.get(`/api/rooms/${encodeURIComponent(roomId)}/figures`));
    setText("#figures-status", "");
  } catch (error) {
    setText("#figures-status", `Figures unavailable: ${describeError(error)}`);
  }
}

function renderFigures(f) {
  setText("#fig-gmv", formatCents(f.gmv_cents));
  setText("#fig-orders", f.orders);
  setText("#fig-aov", formatCents(f.average_order_value_cents));
  setText("#fig-conversion", f.conversion === null || f.conversion === undefined
    ? "—" : `${(f.conversion * 100).toFixed(1)}%`);
}

// ------------------------------------------------------------------ chat and moderation

function addChat(message) {
  const log = $("#chat-log");
  const own = state.me && message.user.id === state.me.id;
  const actions = own ? null : h("span", { class: "actions" },
    h("button", { type: "button", title: "Mute for 5 minutes", dataset: { act: "mute" },
                  onclick: () => moderate("mod:mute", message.user, { duration_s: 300 }) }, "Mute"),
    h("button", { type: "button", class: "danger", title: "Remove from the room", dataset: { act: "ban" },
                  onclick: () => moderate("mod:ban", message.user) }, "Ban"));
  log.append(h("li", { class: "chat-line", dataset: { user: message.user.id } },
    h("span", { class: "who" }, message.user.name), h("span", { class: "text" }, message.text), actions));
  while (log.children.length > CHAT_KEEP) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

async function moderate(event, user, extra = {}) {
  const answer = await call(state.socket, event, { room: roomId, user: user.id, ...extra });
  if (!answer.ok) showError(ackError(answer));
}

function onModeration(event) {
  if (event.room !== roomId) return;
  const who = event.user ? nameOf(event.user) : "";
  const text = {
    muted: `${who} was muted until ${new Date(event.until).toLocaleTimeString()}.`,
    unmuted: `${who} can chat again.`,
    banned: `${who} was removed from the room.`,
    slow_mode: event.seconds ? `Slow mode: one message every ${event.seconds} s.` : "Slow mode is off.",
  }[event.action];
  if (text) {
    $("#chat-log").append(h("li", { class: "system" }, text));
    $("#chat-log").scrollTop = $("#chat-log").scrollHeight;
  }
  if (event.action === "slow_mode") $("#slow-mode").value = String(event.seconds);
}

function nameOf(userId) {
  const line = $(`#chat-log li[data-user="${CSS.escape(userId)}"] .who`);
  return line ? line.textContent : userId;
}

async function sendChat(event) {
  event.preventDefault();
  const input = $("#chat-input");
  const text = input.value.trim();
  if (!text) return;
  // Cleared as it is sent (see room.js): a refused message comes back to resend.
  input.value = "";
  const answer = await call(state.socket, "chat", { room: roomId, text });
  if (!answer.ok) {
    if (!input.value) input.value = text;
    showError(ackError(answer));
  }
}

async function setSlowMode() {
  const seconds = Number($("#slow-mode").value);
  const answer = await call(state.socket, "mod:slow", { room: roomId, seconds });
  if (!answer.ok) showError(ackError(answer));
}

// ------------------------------------------------------------------ camera and going live

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return showError("This browser cannot use the camera here. Open the studio over https or on localhost.");
  }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      audio: true,
    });
  } catch (error) {
    const hint = error && error.name === "NotAllowedError"
      ? "Allow the camera and microphone for this site, then press Start camera again."
      : "No usable camera or microphone was found. Plug one in and press Start camera again.";
    return showError(hint);
  }
  $("#preview").srcObject = state.stream;
  setText("#preview-overlay", "");
  $("#preview-overlay").hidden = true;
  $("#camera").disabled = true;
  $("#go-live").disabled = false;
}

async function goLive() {
  if (!state.stream) return;
  $("#go-live").disabled = true;
  setText("#live-state", "CONNECTING");
  try {
    state.pc = await publish(state.socket, roomId, state.stream, state.rest.token);
    state.pc.addEventListener("connectionstatechange", () => {
      if (state.pc && state.pc.connectionState === "failed") {
        showError("The live video connection failed. Press Go live to try again.");
        stopPublishing();
      }
    });
    $("#end-live").disabled = false;
    setLive(true);
  } catch (error) {
    setLive(false);
    $("#go-live").disabled = false;
    showError(`Could not go live: ${describeError(error)}`);
  }
}

async function endLive() {
  stopPublishing();
  const answer = await call(state.socket, "rtc:stop", { room: roomId });
  if (!answer.ok) showError(ackError(answer));
}

function stopPublishing() {
  if (state.pc) state.pc.close();
  state.pc = null;
  $("#end-live").disabled = true;
  $("#go-live").disabled = !state.stream;
  setLive(false);
}

function setLive(live) {
  setText("#live-state", live ? "LIVE" : "OFF AIR");
  $("#live-state").classList.toggle("live", live);
}

function onMedia(media) {
  setText("#media-health", media.live
    ? `${media.codec || ""} ${media.bitrate_kbps ?? "?"} kbps · ${media.fps ?? "?"} fps`.trim()
    : "");
}

async function closeRoom() {
  if (!window.confirm("Close this room? Viewers will see that the live has ended.")) return;
  try {
    if (state.pc) await endLive();
    await state.rest.post(`/api/rooms/${encodeURIComponent(roomId)}/end`);
    showBanner("Room closed.", { kind: "notice" });
  } catch (error) {
    showError(error);
  }
}

// ------------------------------------------------------------------ start

async function main() {
  installGlobalErrorHandlers();
  $("#signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("#signin-token").value.trim()).catch(showError);
  });
  $("#product-form").addEventListener("submit", addProduct);
  $("#sale-form").addEventListener("submit", startSale);
  $("#sale-product").addEventListener("change", () => { delete $("#sale-deal").dataset.touched; fillDealPrice(); });
  $("#sale-deal").addEventListener("input", () => { $("#sale-deal").dataset.touched = "1"; });
  $("#end-sale").addEventListener("click", endSale);
  $("#chat-form").addEventListener("submit", sendChat);
  $("#slow-mode").addEventListener("change", setSlowMode);
  $("#camera").addEventListener("click", startCamera);
  $("#go-live").addEventListener("click", goLive);
  $("#end-live").addEventListener("click", endLive);
  $("#close-room").addEventListener("click", closeRoom);
  setInterval(tickSale, 250);
  clock.sync().catch(() => {});
  const token = pageToken(SCOPE);
  if (!token) return askForToken();
  try {
    await signIn(token);
  } catch (error) {
    showError(error);
  }
}

main();
