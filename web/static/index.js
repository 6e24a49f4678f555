// @ts-check
// Landing page: the live rooms with title, anchor, followers, viewer count and pinned product;
// with a viewer session on this browser, live follower counts and news of followed anchors
// going live.
import {
  $, api, connectSocket, formatCents, h, hideBanner, installGlobalErrorHandlers, showBanner,
  showError,
} from "./lr.js";
import { storedToken } from "./signin.js";

/** @import { RoomState } from "./types.js" */

const REFRESH_MS = 10_000;
// The viewer pages' token scope (room.js): a viewer who has been in a room is known here.
const VIEWER_SCOPE = "viewer";

/** @param {number} count */
function followersText(count) {
  return `${count} follower${count === 1 ? "" : "s"}`;
}

/** @param {RoomState} room */
function roomCard(room) {
  const pinned = room.pinned;
  return h("a", { class: "card room-card", href: `/r/${encodeURIComponent(room.id)}`,
                  dataset: { room: room.id } },
    h("div", { class: "row" },
      h("span", { class: "pill live" }, "LIVE"),
      h("span", { class: "pill viewers" }, `${room.viewers} watching`),
      h("span", { class: "pill followers", dataset: { anchor: room.anchor.id } },
        followersText(room.followers ?? 0))),
    h("strong", { class: "room-title" }, room.title),
    h("span", { class: "muted anchor" }, `with ${room.anchor.name}`),
    pinned
      ? h("span", { class: "pinned" }, `Now selling: ${pinned.title} · ${formatCents(pinned.price_cents)}`)
      : h("span", { class: "pinned muted" }, "No product pinned yet"),
  );
}

async function refresh() {
  try {
    /** @type {{rooms: RoomState[]}} */
    const { rooms } = await api("GET", "/api/rooms");
    $("#rooms").replaceChildren(...rooms.map(roomCard));
    $("#rooms-status").textContent = rooms.length
      ? `${rooms.length} room${rooms.length === 1 ? "" : "s"} live`
      : "No one is live right now. Check back soon.";
    hideBanner();
  } catch (error) {
    showError(error);
    $("#rooms-status").textContent = "Could not load the live rooms; retrying…";
  }
}

/** Live pushes for a viewer this browser knows: follower counts, and followed anchors going live. */
function listen() {
  const token = storedToken(VIEWER_SCOPE);
  if (!token) return;
  const live = connectSocket(token);
  live.on("connect", () => live.emit("landing:open", {}, () => {}));
  live.on("connect_error", () => live.disconnect()); // a stale token: the list still refreshes
  live.on("followers", (/** @type {{anchor: string, count: number}} */ data) => {
    for (const pill of document.querySelectorAll(".pill.followers")) {
      if (pill instanceof HTMLElement && pill.dataset.anchor === data.anchor) {
        pill.textContent = followersText(data.count);
      }
    }
  });
  live.on("live", (/** @type {{anchor_name: string, title: string}} */ news) => {
    // After the list's refresh, which hides the banner of a failed one.
    refresh().then(() => showBanner(
      `${news.anchor_name}, whom you follow, just went live: ${news.title}`, { kind: "notice" }));
  });
}

installGlobalErrorHandlers();
refresh();
listen();
setInterval(refresh, REFRESH_MS);
