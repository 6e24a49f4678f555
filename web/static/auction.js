// @ts-check
// A live auction as the viewer room shows it: price, leader, bids, the moving end, and a bid
// field pre-filled with the next valid amount (from the server: the page keeps no increment
// table).
import {
  $, $as, ackError, api, call, clock, describeError, formatCents, formatDuration, newRequestId,
  parseMoney, setText, showResult,
} from "./lr.js";

/** @import { Socket } from "socket.io-client" */
/** @import { Ack, Auction, AuctionPush, BidAnswer, Reservation } from "./types.js" */

/** @type {Partial<Record<BidAnswer["status"], string>>} */
const BID_RESULT_TEXT = {
  leading: "You are leading.",
  outbid: "Someone bid higher at the same moment. The next valid bid is filled in.",
  too_low: "Too low: someone bid first. The next valid bid is filled in.",
  already_leading: "You are leading already: wait until someone outbids you.",
  not_started: "The auction has not started yet.",
  ended: "The auction has ended.",
  banned: "The host removed you from this room: you cannot bid here.",
  not_in_room: "Rejoining the room… tap Bid again.",
  invalid: "Enter an amount such as 125.50.",
};

/** @param {number} cents */
function amountText(cents) {
  return (cents / 100).toFixed(2);
}

export class AuctionPanel {
  /**
   * @param {string} roomId
   * @param {() => Socket} socket
   * @param {() => Promise<boolean>} ensureBuyer signs in with a phone if needed; whether it can bid
   * @param {(reservation: Reservation, title: string) => void} onOffer the unit is held for us
   * @param {() => string | null} token the viewer's, to find a unit held for them
   */
  constructor(roomId, socket, ensureBuyer, onOffer, token) {
    this.roomId = roomId;
    this.socket = socket;
    this.token = token;
    this.ensureBuyer = ensureBuyer;
    this.onOffer = onOffer;
    /** @type {Auction | null} */
    this.auction = null;
    this.bidding = false;
    this.ended = false;
    $("#bid").addEventListener("click", () => this.bid());
  }

  /** @param {Auction | null | undefined} auction the room state's */
  show(auction) {
    this.auction = auction || null;
    if (auction) this.fill(auction.min_next_cents);
    this.render();
    if (auction && auction.status === "ended") this.findHold(auction);
  }

  /**
   * A unit held for this viewer (won while the page was away, or a second chance): offered
   * again, so the checkout is one tap away after a reload.
   * @param {Auction} auction
   */
  async findHold(auction) {
    const token = this.token();
    if (!token) return;
    try {
      /** @type {Auction} */
      const mine = await api("GET", `/api/auctions/${encodeURIComponent(auction.id)}`, { token });
      if (mine.reservation) this.onOffer(mine.reservation, mine.title);
    } catch {
      // Nothing to offer: the room's state still shows the result.
    }
  }

  /** @param {AuctionPush} push */
  onPush(push) {
    if (push.room !== this.roomId) return;
    if (push.offer && push.reservation) {
      const title = this.auction && this.auction.id === push.id ? this.auction.title : "auction lot";
      this.onOffer(push.reservation, title);
    }
    if (!this.auction || this.auction.id !== push.id) {
      if (push.status === "ended") return; // an older auction's news
      this.auction = /** @type {Auction} */ ({ title: "Auction", starts_at: 0, ...push });
      this.load(push.id);
    } else {
      Object.assign(this.auction, push);
    }
    const input = $as("#bid-amount", HTMLInputElement);
    const typed = parseMoney(input.value);
    if (typed === null || typed < push.min_next_cents) this.fill(push.min_next_cents);
    this.render();
  }

  /**
   * The whole auction (its title, its rules), read once when a push first names it.
   * @param {string} id
   */
  async load(id) {
    try {
      /** @type {Auction} */
      const auction = await api("GET", `/api/auctions/${encodeURIComponent(id)}`);
      if (this.auction && this.auction.id === id) {
        // What moved since the push came stays: the read may be older than a later push.
        const m = this.auction;
        this.auction = m.bids > auction.bids || m.ends_at > auction.ends_at ? {
          ...auction, status: m.status, price_cents: m.price_cents, bids: m.bids,
          min_next_cents: m.min_next_cents, leader_name: m.leader_name, ends_at: m.ends_at,
        } : auction;
        this.render();
      }
    } catch {
      // The push is enough to bid; the title comes with the next room state.
    }
  }

  roomEnded() {
    this.ended = true;
    this.render();
  }

  /** @param {number} cents */
  fill(cents) {
    $as("#bid-amount", HTMLInputElement).value = amountText(cents);
  }

  status() {
    const auction = this.auction;
    if (!auction) return "ended";
    if (this.ended || auction.status === "ended" || clock.now() >= auction.ends_at) return "ended";
    if (clock.now() < auction.starts_at) return "scheduled";
    return "live";
  }

  render() {
    const auction = this.auction;
    $("#auction").hidden = !auction;
    if (!auction) return;
    const status = this.status();
    setText("#auction-title", auction.title);
    setText("#auction-state", { live: "Live auction", scheduled: "Starts soon", ended: "Auction ended" }[status]);
    $("#auction-state").classList.toggle("live", status === "live");
    setText("#auction-price", auction.bids ? formatCents(auction.price_cents) : `Starts at ${formatCents(auction.min_next_cents)}`);
    setText("#auction-leader", auction.leader_name
      ? `${status === "ended" ? "Won by" : "Leading:"} ${auction.leader_name} · ${auction.bids} bid${auction.bids === 1 ? "" : "s"}`
      : "No bids yet");
    setText("#auction-next", status === "live" ? `Next bid at least ${formatCents(auction.min_next_cents)}` : "");
    $as("#bid", HTMLButtonElement).disabled = status !== "live" || this.bidding;
    $as("#bid-amount", HTMLInputElement).disabled = status !== "live";
    this.tick();
  }

  tick() {
    const auction = this.auction;
    if (!auction) return;
    const status = this.status();
    const text = status === "live" ? `Ends in ${formatDuration(auction.ends_at - clock.now())}`
      : status === "scheduled" ? `Starts in ${formatDuration(auction.starts_at - clock.now())}` : "";
    setText("#auction-countdown", text);
    if (status === "ended" && !$as("#bid", HTMLButtonElement).disabled) this.render();
  }

  async bid() {
    const auction = this.auction;
    if (!auction || this.bidding) return;
    const amount = parseMoney($as("#bid-amount", HTMLInputElement).value);
    if (amount === null) {
      showResult("#bid-result", BID_RESULT_TEXT.invalid || "", false);
      return;
    }
    if (!(await this.ensureBuyer())) return;
    this.bidding = true;
    this.render();
    showResult("#bid-result", "Bidding…", true);
    try {
      /** @type {Ack<BidAnswer>} */
      const answer = await call(this.socket(), "bid",
        { auction: auction.id, amount_cents: amount, request_id: newRequestId() }, 6000);
      if (typeof answer.min_next_cents === "number") {
        Object.assign(auction, { min_next_cents: answer.min_next_cents });
        if (typeof answer.price_cents === "number") auction.price_cents = answer.price_cents;
        if (typeof answer.ends_at === "number") auction.ends_at = answer.ends_at;
        this.fill(answer.min_next_cents);
      }
      const text = answer.status && BID_RESULT_TEXT[answer.status];
      showResult("#bid-result", text || describeError(ackError(answer)), answer.ok === true);
    } finally {
      this.bidding = false;
      this.render();
    }
  }
}
