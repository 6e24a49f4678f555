// @ts-check
// The viewer room's coupon card and wallet: the room's newest drop (its terms and how many are
// left, live), the Grab button, and the buyer's coupons (GET /api/coupons).
import {
  $, $as, ackError, api, call, clock, describeError, formatCents, formatDuration, h, newRequestId,
  setText, showResult,
} from "./lr.js";

/** @import { Socket } from "socket.io-client" */
/** @import { Ack, Coupon, CouponDrop, GrabAnswer, Session } from "./types.js" */

/**
 * What a coupon takes off, as the server published its terms.
 * @param {{off_cents: number | null, percent_off: number | null, min_spend_cents: number}} terms
 * @returns {string}
 */
export function couponTerms(terms) {
  const off = terms.off_cents ? `${formatCents(terms.off_cents)} off` : `${terms.percent_off}% off`;
  return terms.min_spend_cents ? `${off} orders of ${formatCents(terms.min_spend_cents)} or more` : off;
}

/** @type {Record<string, string>} */
const GRAB_TEXT = {
  gone: "All coupons have been grabbed.",
  expired: "This coupon drop has ended.",
  already_grabbed: "You already have this coupon: it is in your wallet.",
  banned: "You cannot take part in this room.",
  not_in_room: "Join the room to grab coupons.",
};

export class CouponCard {
  /**
   * @param {string} roomId
   * @param {() => Socket} socket
   * @param {() => Session | null} session
   * @param {() => Promise<boolean>} signIn signs a guest in with a phone; false if they stop
   */
  constructor(roomId, socket, session, signIn) {
    this.roomId = roomId;
    this.socket = socket;
    this.session = session;
    this.signIn = signIn;
    /** @type {CouponDrop | null} */
    this.drop = null;
    /** @type {Coupon[]} */
    this.wallet = [];
    this.grabbing = false;
    $("#coupon-grab").addEventListener("click", () => this.grab());
    setInterval(() => this.tick(), 500);
  }

  /** @param {CouponDrop | null | undefined} drop the room state's `coupon`, or the `coupon` push */
  show(drop) {
    if (!drop || drop.room !== this.roomId) return;
    if (this.drop && this.drop.id !== drop.id && drop.server_time < this.drop.server_time) return;
    this.drop = drop;
    $("#coupon").hidden = false;
    setText("#coupon-terms", couponTerms(drop));
    setText("#coupon-left", drop.status === "live" ? `${drop.left} of ${drop.count} left` : "");
    this.render();
  }

  render() {
    const drop = this.drop;
    if (!drop) return;
    const mine = this.wallet.some((c) => c.drop === drop.id);
    const button = $as("#coupon-grab", HTMLButtonElement);
    button.disabled = this.grabbing || mine || drop.status !== "live";
    button.textContent = mine ? "Grabbed" : drop.status === "gone" ? "All grabbed"
      : drop.status === "expired" ? "Ended" : "Grab coupon";
    this.tick();
  }

  tick() {
    const drop = this.drop;
    if (!drop || drop.status !== "live") {
      setText("#coupon-countdown", "");
      return;
    }
    const left = drop.expires_at - clock.now();
    setText("#coupon-countdown", left > 0 ? `Ends in ${formatDuration(left)}` : "Ended");
  }

  async grab() {
    const drop = this.drop;
    if (!drop || this.grabbing) return;
    this.grabbing = true;
    this.render();
    const requestId = newRequestId();
    try {
      for (let tries = 0; tries < 5; tries += 1) {
        /** @type {Ack<GrabAnswer>} */
        const answer = await call(this.socket(), "coupon:grab", { drop: drop.id, request_id: requestId });
        if (answer.ok) {
          showResult("#coupon-result", `Coupon grabbed: ${couponTerms(answer.coupon || drop)}. `
            + "It is applied at checkout.", true);
          await this.refresh();
          return;
        }
        const code = ackError(answer).code;
        if (code === "verification_required") {
          if (!(await this.signIn())) return;
          continue;
        }
        if (code === "rate_limited") {
          await new Promise((resolve) => { setTimeout(resolve, ackError(answer).retry_after_ms || 500); });
          continue;
        }
        showResult("#coupon-result", GRAB_TEXT[code] || describeError(ackError(answer)), code === "already_grabbed");
        if (code === "already_grabbed") await this.refresh();
        return;
      }
    } catch (error) {
      showResult("#coupon-result", describeError(error), false);
    } finally {
      this.grabbing = false;
      this.render();
    }
  }

  /** The buyer's coupons, from the server. */
  async refresh() {
    const session = this.session();
    if (!session || !session.user.phone_verified) return;
    /** @type {{coupons: Coupon[]}} */
    const answer = await api("GET", "/api/coupons", { token: session.token });
    this.wallet = answer.coupons;
    const list = $("#wallet-list");
    list.replaceChildren(...this.wallet.map((c) => h("li", { "data-state": c.state || "" },
      h("span", { class: "grow" }, couponTerms(c)),
      h("span", { class: "pill" }, c.state === "used" ? "used" : c.state === "expired" ? "expired"
        : `valid ${formatDuration(c.expires_at - clock.now())}`))));
    $("#wallet").hidden = this.wallet.length === 0;
    this.render();
  }

  /** @returns {Coupon[]} the buyer's coupons usable now on this room's sales */
  usable() {
    return this.wallet.filter((c) => c.room === this.roomId && c.state === "unused");
  }
}
