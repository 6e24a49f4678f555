// @ts-check
// Landing page: the live rooms with title, anchor, viewer count and pinned product.
import { $, api, formatCents, h, hideBanner, installGlobalErrorHandlers, showError } from "./lr.js";

/** @import { RoomState } from "./types.js" */

const REFRESH_MS = 10_000;

/** @param {RoomState} room */
function roomCard(room) {
  const pinned = room.pinned;
  return h("a", { class: "card room-card", href: `/r/${encodeURIComponent(room.id)}`,
                  dataset: { room: room.id } },
    h("div", { class: "row" },
      h("span", { class: "pill live" }, "LIVE"),
      h("span", { class: "pill viewers" }, `${room.viewers} watching`)),
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

installGlobalErrorHandlers();
refresh();
setInterval(refresh, REFRESH_MS);
