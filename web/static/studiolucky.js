// @ts-check
// The studio's lucky bag panel: announce a giveaway and follow its entries and result.
import { $, $as, clock, describeError, formatCents, formatDuration, h, setText, showResult } from "./lr.js";

/** @import { Rest } from "./lr.js" */
/** @import { LuckyBag, Product } from "./types.js" */

export class LuckyPanel {
  /**
   * @param {string} roomId
   * @param {() => Rest} rest
   */
  constructor(roomId, rest) {
    this.roomId = roomId;
    this.rest = rest;
    /** @type {LuckyBag | null} */
    this.bag = null;
    $as("#lucky-form", HTMLFormElement).addEventListener("submit", (event) => {
      event.preventDefault();
      this.announce();
    });
    const kind = $as("#lucky-kind", HTMLSelectElement);
    kind.addEventListener("change", () => this.showConditionFields());
    this.showConditionFields();
    setInterval(() => this.tick(), 500);
  }

  showConditionFields() {
    const kind = $as("#lucky-kind", HTMLSelectElement).value;
    $("#lucky-passphrase-field").hidden = kind !== "passphrase";
    $as("#lucky-passphrase", HTMLInputElement).required = kind === "passphrase";
    $("#lucky-minutes-field").hidden = kind !== "watched";
  }

  /** @param {Product[]} products the anchor's products */
  products(products) {
    const select = $as("#lucky-product", HTMLSelectElement);
    const chosen = select.value;
    select.replaceChildren(...products.map((p) =>
      h("option", { value: p.id }, `${p.title} (${formatCents(p.price_cents)})`)));
    if (chosen) select.value = chosen;
  }

  async announce() {
    const kind = $as("#lucky-kind", HTMLSelectElement).value;
    /** @type {Record<string, unknown>} */
    const condition = { kind };
    if (kind === "passphrase") condition.passphrase = $as("#lucky-passphrase", HTMLInputElement).value;
    if (kind === "watched") condition.minutes = Number($as("#lucky-minutes", HTMLInputElement).value);
    const body = {
      product_id: $as("#lucky-product", HTMLSelectElement).value,
      winners: Number($as("#lucky-winners", HTMLInputElement).value),
      draw_in_s: Number($as("#lucky-draw-in", HTMLInputElement).value) * 60,
      condition,
    };
    try {
      /** @type {LuckyBag} */
      const bag = await this.rest().post(`/api/rooms/${encodeURIComponent(this.roomId)}/lucky-bags`, body);
      this.show(bag);
      showResult("#lucky-announce-result", "Lucky bag announced: the commitment to its draw is published.", true);
    } catch (error) {
      showResult("#lucky-announce-result", describeError(error), false);
    }
  }

  /** @param {LuckyBag | null | undefined} bag the room state's `lucky`, or the `lucky` push */
  show(bag) {
    if (!bag || bag.room !== this.roomId) return;
    this.bag = bag;
    $("#lucky-panel").hidden = false;
    setText("#lucky-bag-title", `${bag.winners_count} × ${bag.title}`);
    setText("#lucky-bag-entries", `${bag.entries} entered`);
    setText("#lucky-bag-winners", bag.winners
      ? (bag.winners.length ? `Winners: ${bag.winners.map((w) => w.name || w.id).join(", ")}` : "Nobody entered.")
      : "");
    const check = $as("#lucky-bag-check", HTMLAnchorElement);
    check.href = `/lucky/${encodeURIComponent(bag.id)}`;
    check.hidden = bag.status !== "drawn";
    this.tick();
  }

  tick() {
    const bag = this.bag;
    if (!bag) return;
    setText("#lucky-bag-status", bag.status === "open"
      ? `Draw in ${formatDuration(bag.draw_at - clock.now())}` : bag.status === "drawing" ? "Drawing…" : "Drawn");
  }
}
