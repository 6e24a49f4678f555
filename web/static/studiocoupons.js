// @ts-check
// The studio's coupon panel: drop coupons in the room and follow how many are left.
import { $, $as, clock, describeError, formatDuration, parseMoney, setText, showResult } from "./lr.js";
import { couponTerms } from "./coupons.js";

/** @import { Rest } from "./lr.js" */
/** @import { CouponDrop } from "./types.js" */

export class CouponPanel {
  /**
   * @param {string} roomId
   * @param {() => Rest} rest
   */
  constructor(roomId, rest) {
    this.roomId = roomId;
    this.rest = rest;
    /** @type {CouponDrop | null} */
    this.drop = null;
    $as("#coupon-form", HTMLFormElement).addEventListener("submit", (event) => {
      event.preventDefault();
      this.dropCoupons();
    });
    const kind = $as("#coupon-kind", HTMLSelectElement);
    kind.addEventListener("change", () => {
      $("#coupon-off-field").hidden = kind.value !== "amount";
      $("#coupon-percent-field").hidden = kind.value !== "percent";
    });
    setInterval(() => this.tick(), 500);
  }

  async dropCoupons() {
    const percent = $as("#coupon-kind", HTMLSelectElement).value === "percent";
    const minSpend = parseMoney($as("#coupon-min-spend", HTMLInputElement).value);
    const off = parseMoney($as("#coupon-off", HTMLInputElement).value);
    if (minSpend === null || (!percent && off === null)) {
      showResult("#coupon-drop-result", "Write amounts like 5.00", false);
      return;
    }
    /** @type {Record<string, number>} */
    const body = {
      count: Number($as("#coupon-count", HTMLInputElement).value),
      min_spend_cents: minSpend,
      valid_s: Number($as("#coupon-valid", HTMLInputElement).value) * 60,
    };
    if (percent) body.percent_off = Number($as("#coupon-percent", HTMLInputElement).value);
    else body.off_cents = off || 0;
    try {
      /** @type {CouponDrop} */
      const drop = await this.rest().post(`/api/rooms/${encodeURIComponent(this.roomId)}/coupons`, body);
      this.show(drop);
      showResult("#coupon-drop-result", `Dropped ${drop.count} coupons: viewers can grab them now.`, true);
    } catch (error) {
      showResult("#coupon-drop-result", describeError(error), false);
    }
  }

  /** @param {CouponDrop | null | undefined} drop the room state's `coupon`, or the `coupon` push */
  show(drop) {
    if (!drop || drop.room !== this.roomId) return;
    this.drop = drop;
    $("#coupon-panel").hidden = false;
    setText("#coupon-drop-terms", couponTerms(drop));
    setText("#coupon-drop-left", `${drop.left} of ${drop.count} left`);
    this.tick();
  }

  tick() {
    const drop = this.drop;
    if (!drop) return;
    const left = drop.expires_at - clock.now();
    setText("#coupon-drop-status", drop.status === "live" && left > 0
      ? `Ends in ${formatDuration(left)}` : drop.status === "gone" ? "All grabbed" : "Ended");
  }
}
