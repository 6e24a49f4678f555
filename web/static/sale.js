// @ts-check
// A flash sale as the pages show it (viewer room and studio): its status by the server clock,
// the countdown, which of two sales to show, and the `stock` push applied to it.
import { clock, formatDuration } from "./lr.js";

/** @import { Sale, SaleStatus, StockUpdate } from "./types.js" */

/** @type {Record<SaleStatus, string>} */
export const SALE_STATUS_TEXT = {
  scheduled: "Starts soon", live: "Flash sale", sold_out: "Sold out", ended: "Sale ended",
};

/**
 * The sale's status at `now` on the server clock: a push may lag the countdown, so a sale past
 * its start or end is treated as started or ended without waiting for it.
 * @param {Sale} sale
 * @param {number} [now]
 * @returns {SaleStatus}
 */
export function saleStatus(sale, now = clock.now()) {
  if (sale.status === "ended" || now >= sale.ends_at) return "ended";
  if (now < sale.starts_at) return "scheduled";
  if (sale.status === "sold_out" || sale.remaining <= 0) return "sold_out";
  return "live";
}

/**
 * "Starts in 0:07" before the start, "Ends in 1:59" while it runs, nothing once it has ended.
 * @param {Sale} sale
 * @param {SaleStatus} status
 * @param {number} [now]
 */
export function countdownText(sale, status, now = clock.now()) {
  if (status === "scheduled") return `Starts in ${formatDuration(sale.starts_at - now)}`;
  if (status === "ended") return "";
  return `Ends in ${formatDuration(sale.ends_at - now)}`;
}

/**
 * Whether `incoming` (a `sale` push or the room state's sale; null: no sale) takes the place of
 * the sale shown: the same sale updated, or a newer one. A room's older sale arriving late
 * never hides its newest.
 * @param {Sale | null} incoming
 * @param {Sale | null} shown
 */
export function replacesSale(incoming, shown) {
  return !incoming || !shown || incoming.id === shown.id || incoming.starts_at >= shown.starts_at;
}

/**
 * Apply a `stock` push to the sale it is about; whether it was.
 * @param {Sale | null} sale
 * @param {StockUpdate} update
 */
export function applyStock(sale, update) {
  if (!sale || update.sale !== sale.id) return false;
  Object.assign(sale, {
    remaining: update.remaining, held: update.held, sold: update.sold, status: update.status,
  });
  return true;
}

/**
 * The share of the stock still to be had, as a CSS width ("40%").
 * @param {Sale} sale
 */
export function stockLeftWidth(sale) {
  return `${sale.stock ? Math.round((100 * sale.remaining) / sale.stock) : 0}%`;
}
