// @ts-check
// The viewer room's lucky bag card and follow button: enter (with the passphrase when asked),
// the live entry count, the result with a "check this draw" link, a winner's prize checkout.
import {
  $, $as, ackError, api, call, clock, describeError, formatDuration, h, setText, showResult,
} from "./lr.js";

/** @import { Socket } from "socket.io-client" */
/** @import { Ack, AnchorProfile, FollowState, LuckyBag, Reservation, Session } from "./types.js" */

/** @type {Record<string, string>} */
const CONDITION_TEXT = {
  passphrase: "Type the passphrase the host says in the stream.",
  follower: "For followers of the host.",
  watched: "For viewers who watched for a while.",
};

export class LuckyCard {
  /**
   * @param {string} roomId
   * @param {() => Socket} socket
   * @param {() => Session | null} session
   * @param {() => Promise<boolean>} signIn signs a guest in with a phone; false if they stop
   * @param {(prize: Reservation) => void} checkout opens the checkout of a hold
   */
  constructor(roomId, socket, session, signIn, checkout) {
    this.roomId = roomId;
    this.socket = socket;
    this.session = session;
    this.signIn = signIn;
    this.checkout = checkout;
    /** @type {LuckyBag | null} */
    this.bag = null;
    /** @type {string | null} */
    this.anchor = null;
    $as("#lucky-form", HTMLFormElement).addEventListener("submit", (event) => {
      event.preventDefault();
      this.enter();
    });
    $("#follow").addEventListener("click", () => this.toggleFollow());
    setInterval(() => this.tick(), 500);
  }

  /** @returns {string | null} */
  token() {
    const session = this.session();
    return session ? session.token : null;
  }

  /**
   * The room's anchor is known: show their follower count and the follow button.
   * @param {string} anchorId
   */
  async showAnchor(anchorId) {
    this.anchor = anchorId;
    /** @type {AnchorProfile} */
    const profile = await api("GET", `/api/anchors/${encodeURIComponent(anchorId)}`,
      { token: this.token() });
    this.renderFollow(profile.followers, profile.following === true);
  }

  /**
   * @param {number} count
   * @param {boolean | null} following null: unchanged
   */
  renderFollow(count, following) {
    setText("#follower-count", count);
    const button = $as("#follow", HTMLButtonElement);
    if (following !== null) {
      button.dataset.following = following ? "yes" : "no";
      button.textContent = following ? "Following" : "Follow";
    }
    button.hidden = false;
  }

  /** @param {{anchor: string, count: number}} data the `followers` push */
  onFollowers(data) {
    if (data.anchor === this.anchor) this.renderFollow(data.count, null);
  }

  async toggleFollow() {
    if (!this.anchor) return;
    const session = this.session();
    if (!session || !session.user.phone_verified) {
      if (!await this.signIn()) return;
    }
    const following = $as("#follow", HTMLButtonElement).dataset.following === "yes";
    try {
      /** @type {FollowState} */
      const state = await api(following ? "DELETE" : "POST",
        `/api/anchors/${encodeURIComponent(this.anchor)}/follow`, { token: this.token() });
      this.renderFollow(state.followers, state.following);
    } catch (error) {
      showResult("#lucky-result", describeError(error), false);
    }
  }

  /** @param {LuckyBag | null | undefined} bag the room state's `lucky`, or the `lucky` push */
  show(bag) {
    if (!bag || bag.room !== this.roomId) return;
    const drawnNow = bag.status === "drawn" && (!this.bag || this.bag.status !== "drawn"
      || this.bag.id !== bag.id);
    this.bag = bag;
    $("#lucky").hidden = false;
    setText("#lucky-title", `${bag.winners_count} × ${bag.title}${bag.units_each > 1 ? ` (${bag.units_each} each)` : ""}`);
    setText("#lucky-condition", CONDITION_TEXT[bag.condition.kind]
      + (bag.condition.minutes ? ` (${bag.condition.minutes} min)` : ""));
    setText("#lucky-entries", `${bag.entries} entered`);
    $("#lucky-passphrase-field").hidden = bag.condition.kind !== "passphrase";
    $("#lucky-form").hidden = bag.status !== "open";
    const check = $as("#lucky-check", HTMLAnchorElement);
    check.href = `/lucky/${encodeURIComponent(bag.id)}`;
    check.hidden = bag.status !== "drawn";
    if (bag.status === "drawn") {
      const names = (bag.winners || []).map((w) => w.name || w.id);
      setText("#lucky-winners", names.length ? `Winners: ${names.join(", ")}` : "Nobody entered.");
      if (drawnNow) this.fetchMine();
    } else {
      setText("#lucky-winners", "");
    }
    this.tick();
  }

  tick() {
    const bag = this.bag;
    if (!bag) return;
    const text = bag.status === "open"
      ? `Draw in ${formatDuration(bag.draw_at - clock.now())}`
      : bag.status === "drawing" ? "Drawing…" : "Drawn";
    setText("#lucky-countdown", text);
  }

  /** A winner's prize, from the server (its hold and expiry). */
  async fetchMine() {
    const bag = this.bag;
    const token = this.token();
    if (!bag || !token) return;
    /** @type {LuckyBag} */
    const mine = await api("GET", `/api/lucky-bags/${encodeURIComponent(bag.id)}`, { token });
    const prize = mine.you && mine.you.prize;
    if (prize) {
      showResult("#lucky-result", "You won! Give your address to get it (free).", true);
      $("#lucky-claim").hidden = false;
      $("#lucky-claim").onclick = () => {
        this.checkout(prize);
        $("#checkout-summary").replaceChildren(h("strong", {}, `${prize.qty} × ${bag.title}`),
          h("span", { class: "muted" }, " · free (lucky bag prize)"));
      };
    } else if (mine.you && mine.you.entered) {
      showResult("#lucky-result", "Not this time. Thanks for taking part!", false);
    }
  }

  async enter() {
    const bag = this.bag;
    if (!bag) return;
    const session = this.session();
    if (!session || !session.user.phone_verified) {
      if (!await this.signIn()) return;
    }
    /** @type {{lucky_bag: string, passphrase?: string}} */
    const payload = { lucky_bag: bag.id };
    if (bag.condition.kind === "passphrase") {
      payload.passphrase = $as("#lucky-passphrase", HTMLInputElement).value;
    }
    /** @type {Ack<{entries: number}>} */
    const answer = await call(this.socket(), "lucky:enter", payload);
    if (answer.ok) {
      showResult("#lucky-result", "You are in the draw. Good luck!", true);
      setText("#lucky-entries", `${answer.entries} entered`);
    } else {
      const err = ackError(answer);
      showResult("#lucky-result", err.code === "already_entered"
        ? "You are already in the draw." : describeError(err), err.code === "already_entered");
    }
  }
}
