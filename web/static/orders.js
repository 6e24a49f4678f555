// @ts-check
// Checkout and "My orders" on the viewer page: online payments, and the after-sales requests
// (return, refund without return, counterfeit claim, warranty). What an order allows, and until
// when, is the server's word (`order.actions`): the page offers those actions and no others, and
// keeps none of the rules (windows, categories, payouts) that decide them.
import {
  $, $as, ackError, ApiError, api, call, clock, describeError, formatCents, formatTime, h,
} from "./lr.js";

/** @import { Socket } from "socket.io-client" */
/**
 * @import { Ack, Claim, ErrorInfo, Order, OrderAction, OrderActionName, OrderDetail, OrderStatus,
 *   Payment } from "./types.js"
 */

/** @type {Record<OrderStatus, string>} */
const STATUS_TEXT = {
  created: "Awaiting payment", paid: "Paid", confirmed: "Confirmed: pay cash on delivery",
  shipped: "Shipped", delivered: "Delivered", completed: "Completed", cancelled: "Cancelled",
  return_requested: "Return requested", returned: "Returned", refunded: "Refunded",
};

const MS_PER_DAY = 24 * 3600 * 1000; // a unit for "3 days" left, not a window
const NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
  "nine", "ten", "eleven", "twelve"];

/**
 * The action of `order` named `name`, if the server lists it.
 * @param {Order} order
 * @param {OrderActionName} name
 * @returns {OrderAction | undefined}
 */
function actionOf(order, name) {
  return (order.actions || []).find((action) => action.name === name);
}

/**
 * "3 days" left until the action's deadline on the server clock ("" without one).
 * @param {OrderAction} action
 */
function timeLeft(action) {
  if (action.until === null) return "";
  const days = Math.max(1, Math.ceil((action.until - clock.now()) / MS_PER_DAY));
  return days === 1 ? "1 day" : `${days} days`;
}

/**
 * What a return offers, for its button and for advice: "7 days, free pickup".
 * @param {OrderAction} action
 */
function returnTerms(action) {
  return [timeLeft(action), "free pickup"].filter(Boolean).join(", ");
}

/**
 * How many times the price a counterfeit claim pays, in words ("ten"), from the server's
 * `compensation_cents`; null when it is not a small whole multiple.
 * @param {OrderAction} action
 * @param {Order} order
 * @returns {string | null}
 */
function timesThePrice(action, order) {
  const times = (action.compensation_cents ?? 0) / order.total_cents;
  return NUMBER_WORDS[times] ?? null;
}

/**
 * How the page presents an after-sales action: its button, the REST path under
 * /api/orders/{id}/, whether the request needs a description of the problem (`reason`), and
 * what its deadline is called.
 * @typedef {object} AfterSales
 * @property {"return" | "refund_no_return" | "counterfeit" | "warranty"} name
 * @property {string} path
 * @property {boolean} reason
 * @property {(action: OrderAction, order: Order) => string} label
 * @property {string} deadline
 */

/**
 * The after-sales actions the page offers when the server lists them, in this order.
 * @type {AfterSales[]}
 */
const AFTER_SALES = [
  { name: "return", path: "return", reason: false, deadline: "Return",
    label: (action) => `Return (${returnTerms(action)})` },
  { name: "refund_no_return", path: "refund-no-return", reason: false,
    deadline: "Refund without return", label: () => "Refund without return" },
  { name: "counterfeit", path: "counterfeit", reason: true, deadline: "Counterfeit claims",
    label: (action, order) => {
      const times = timesThePrice(action, order);
      return times ? `Report a counterfeit (fake one, pay ${times})` : "Report a counterfeit";
    } },
  { name: "warranty", path: "warranty", reason: true, deadline: "Warranty",
    label: () => "Warranty claim" },
];

/**
 * What the person learns when an after-sales request went through.
 * @type {Record<AfterSales["name"], (claim: Claim, action: OrderAction, order: Order) => string>}
 */
const DONE_TEXT = {
  return: (claim) => `Return booked: free door pickup on ${formatTime(claim.pickup_at ?? 0)}. `
    + `${formatCents(claim.amount_cents)} comes back to you when the seller receives it.`,
  refund_no_return: (claim) => `Refunded ${formatCents(claim.amount_cents)}. Keep the item: nothing to send back.`,
  counterfeit: (_claim, action, order) => {
    if (action.compensation_cents === undefined) {
      return "Counterfeit claim filed. If the platform finds the item fake, it compensates you.";
    }
    const times = timesThePrice(action, order);
    return "Counterfeit claim filed. If the platform finds the item fake, you receive "
      + `${formatCents(action.compensation_cents)}${times ? ` (${times} times the price)` : ""}.`;
  },
  warranty: (claim) => `Warranty repair booked: free door pickup on ${formatTime(claim.pickup_at ?? 0)}.`,
};

/**
 * Why the server refused an after-sales request, in words the buyer can act on; the deadlines
 * named are the ones the server gave with the action.
 * @param {ErrorInfo} error
 * @param {OrderAction} action
 * @param {Order} order
 * @returns {string | null}
 */
function refusedText(error, action, order) {
  const until = action.until;
  switch (error.code) {
    case "certification_required": {
      if (action.name === "warranty") {
        return "This phone has no inspection report, so the platform warranty does not cover it.";
      }
      const ret = actionOf(order, "return");
      return "This seller is not certified for refunds without return."
        + (ret ? ` Ask for a return instead (${returnTerms(ret)}).` : "");
    }
    case "return_window_closed":
      return until === null ? "The time to return this order has passed."
        : `The time to return this order ended on ${formatTime(until)}.`;
    case "claim_window_closed":
      return until === null ? "The time to report a counterfeit has passed."
        : `Counterfeits could be reported until ${formatTime(until)}; that time has passed.`;
    case "already_refunded":
      return "This order was returned or refunded, so it cannot also be compensated as a counterfeit.";
    case "counterfeit_claimed":
      return "Your counterfeit claim settles this order: a return or refund is not possible while it is open or after it was upheld.";
    case "warranty_expired": {
      const ended = until ?? order.warranty_ends_at;
      return ended ? `The warranty ended on ${formatTime(ended)}.` : "The warranty has ended.";
    }
    case "claim_conflict":
      return "You already sent this request for this order.";
    case "illegal_transition":
      return "This is not possible any more: the order changed. Press Refresh to see it.";
    default:
      return null;
  }
}

/** @type {Record<string, string>} why a card payment was declined (the provider's reason) */
const DECLINE_TEXT = {
  card_declined: "your card was declined by its bank",
  insufficient_funds: "the card does not have enough funds",
  unknown_test_card: "this card number is not accepted (sandbox cards: 4242 4242 4242 4242)",
  provider_unavailable: "the payment service could not be reached",
  timed_out: "the payment service did not answer in time",
};

/** @type {Record<string, string>} why the server refused to take a payment, when the buyer needs more than its message */
const PAY_REFUSED_TEXT = {
  payment_window_closed: "The time to pay for this order is over: it is being cancelled and the "
    + "item goes back on sale.",
};

/** @param {unknown} error */
function payRefusedText(error) {
  const code = error instanceof ApiError ? error.code : "";
  return PAY_REFUSED_TEXT[code] || describeError(error);
}

/** @param {string | null | undefined} reason */
export function declineText(reason) {
  return (reason && DECLINE_TEXT[reason]) || (reason ? `the payment was refused (${reason})` : "the payment was refused");
}

// Re-read an order still awaiting its payment result this long after asking (a missed push).
const PAYMENT_CHECKS_MS = [3000, 8000, 20_000, 45_000, 90_000];

/**
 * The open inline form of an order: a reason for an after-sales request, or a card number.
 * @typedef {object} Editing
 * @property {string} order
 * @property {"pay_card" | AfterSales} request
 * @property {OrderAction | null} action the action as offered when the form opened
 * @property {HTMLFormElement} [form] the form's element, kept across renders
 */

export class Orders {
  /**
   * @param {() => string | null} getToken
   * @param {() => Socket} getSocket
   * @param {(text: string, ok: boolean) => void} [onPayment] told the outcome of every online
   *   payment this page started
   */
  constructor(getToken, getSocket, onPayment = () => {}) {
    this.getToken = getToken;
    this.getSocket = getSocket;
    this.onPayment = onPayment;
    /** @type {Order[]} */
    this.list = [];
    /** @type {Map<string, Payment | null>} order id -> its latest payment, for orders awaiting payment */
    this.payments = new Map();
    /** @type {Map<string, {text: string, ok: boolean}>} the last result shown under each order */
    this.notes = new Map();
    /** @type {Set<string>} orders whose online payment result is not known yet */
    this.awaiting = new Set();
    /** @type {Editing | null} */
    this.editing = null;
    /** @type {Promise<void> | null} */
    this.refreshing = null;
    /** @type {string | null} what the list showed when last rendered (`shownState`) */
    this.shown = null;
    this.again = false;
  }

  /**
   * Check out a reservation: `address` {name, phone, line1, city}; payment "cod" or {method, card}.
   * @param {{id: string}} reservation
   * @param {{name: string, phone: string, line1: string, city: string}} address
   * @param {"cod" | {method: "online", card: string}} payment
   * @returns {Promise<Order>}
   */
  async checkout(reservation, address, payment) {
    /** @type {Ack<{order: Order}>} */
    const answer = await call(this.getSocket(), "checkout",
      { reservation: reservation.id, address, payment }, 15_000);
    if (!answer.ok) {
      const err = ackError(answer);
      throw new ApiError(err.code, err.message);
    }
    const order = answer.order;
    if (order.payment_method === "online") {
      this.watchPayment(order.id);
      // At once too: an order checked out before may be paid already, or (recovered after an
      // interrupted checkout) have no charge running at all.
      this.checkPayment(order.id);
    }
    $as("#orders-card", HTMLDetailsElement).open = true; // shows the new order (the toggle loads the list)
    this.refresh();
    return order;
  }

  /**
   * The `order` push: a status or payment changed outside our own request.
   * @param {Order | null} order
   */
  onPush(order) {
    if (order && this.awaiting.has(order.id)) this.checkPayment(order.id);
    this.refresh();
  }

  /**
   * Follow an online payment until the provider decides (the push, or a re-read).
   * @param {string} orderId
   */
  watchPayment(orderId) {
    this.awaiting.add(orderId);
    for (const delay of PAYMENT_CHECKS_MS) {
      setTimeout(() => this.awaiting.has(orderId) && this.checkPayment(orderId), delay);
    }
  }

  /**
   * The order as it is now, with its payments, or null when it cannot be read.
   * @param {string} orderId
   * @returns {Promise<OrderDetail | null>}
   */
  async detail(orderId) {
    try {
      return (await api("GET", `/api/orders/${encodeURIComponent(orderId)}`,
        { token: this.getToken() })).order;
    } catch {
      return null;
    }
  }

  /** @param {string} orderId */
  async checkPayment(orderId) {
    const order = await this.detail(orderId);
    if (!order) return; // the next push or re-read tries again
    const last = (order.payments || []).at(-1);
    if (order.status === "created" && last && last.status === "pending") return; // still running
    if (!this.awaiting.delete(orderId)) return; // another check already told the outcome
    let note;
    if (order.status === "created" && !last) {
      // No charge at all: an order recovered after an interrupted checkout (the card number is
      // never stored), so there is nothing to wait for.
      note = { ok: false, text: "Your order is placed but not paid yet: pay with a card, or choose "
        + "cash on delivery, under My orders." };
    } else if (order.status === "created") {
      note = { ok: false, text: `Payment declined: ${declineText(last && last.reason)}. Your order is kept: `
        + "pay again with another card, or choose cash on delivery, under My orders." };
    } else if (order.status === "cancelled") {
      note = { ok: false, text: "The order was cancelled before the payment went through; any charge is refunded." };
    } else {
      note = { ok: true, text: `Payment approved: ${formatCents(order.total_cents)} paid. The seller ships your order next.` };
    }
    // A decline shows on the order's payment line (with what to do); other outcomes as a note.
    if (order.status === "created") this.notes.delete(orderId);
    else this.notes.set(orderId, note);
    this.onPayment(note.text, note.ok);
    this.refresh();
  }

  /** Reload the list; calls made while one is in flight run once more after it. */
  refresh() {
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = this.load().finally(() => {
      this.refreshing = null;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    });
    return this.refreshing;
  }

  async load() {
    const status = $("#orders-status");
    try {
      /** @type {{orders: Order[]}} */
      const { orders } = await api("GET", "/api/orders", { token: this.getToken() });
      // Orders awaiting payment: their latest payment says whether it is running or declined.
      await Promise.all(orders.filter((o) => o.status === "created").map(async (o) => {
        const detail = await this.detail(o.id);
        if (detail) this.payments.set(o.id, (detail.payments || []).at(-1) || null);
        else this.payments.delete(o.id);
      }));
      this.list = orders;
      this.renderIfChanged();
      status.textContent = orders.length ? "" : "No orders yet. Buy in a flash sale and it appears here.";
    } catch (error) {
      status.textContent = `Could not load your orders: ${describeError(error)}`;
    }
  }

  render() {
    this.shown = this.shownState();
    const focused = document.activeElement;
    $("#orders").replaceChildren(...this.list.map((order) => this.orderItem(order)));
    // The open form is the same element after a render: keep the person typing in it.
    if (focused instanceof HTMLElement && focused.isConnected && document.activeElement !== focused) {
      focused.focus();
    }
  }

  /** Render only if what the list shows has changed: buttons redrawn under the person's finger
   * as a refresh lands would swallow their click. */
  renderIfChanged() {
    if (this.shownState() !== this.shown) this.render();
  }

  /** Everything the list shows, as text to compare. */
  shownState() {
    const editing = this.editing && [this.editing.order, this.editing.request === "pay_card"
      ? this.editing.request : this.editing.request.name];
    return JSON.stringify([this.list, [...this.payments], [...this.awaiting], [...this.notes], editing]);
  }

  /** @param {Order} order */
  orderItem(order) {
    const item = order.items[0];
    const payment = order.status === "created" ? this.payments.get(order.id) : null;
    const paying = order.status === "created" && (this.awaiting.has(order.id)
      || Boolean(payment && payment.status === "pending"));
    // `placed_at` is set once an online order is paid: one cancelled unpaid was never paid.
    const method = order.payment_method === "cod" ? "cash on delivery"
      : order.placed_at ? "paid online" : "online payment";
    const note = this.notes.get(order.id);
    const editing = this.editing && this.editing.order === order.id ? this.editing : null;
    const offered = this.offered(order, paying);
    return h("li", { class: "order", dataset: { order: order.id, status: order.status } },
      h("div", { class: "row" },
        h("strong", { class: "grow" }, item ? `${item.qty} × ${item.title}` : order.id),
        h("span", {}, formatCents(order.total_cents))),
      h("div", { class: "small muted" },
        `${STATUS_TEXT[order.status] || order.status} · ${method} · ${formatTime(order.created_at)}`),
      // The warranty bought with an inspected phone, when it cannot be claimed now.
      order.warranty_ends_at && !offered.some(({ action }) => action.name === "warranty")
        ? h("div", { class: "small muted" }, `Warranty until ${formatTime(order.warranty_ends_at)}`)
        : null,
      order.status === "created" ? h("div", { class: "small payment" }, paying
        ? "Payment in progress: the result appears here."
        : payment && payment.status === "declined"
          ? `Payment declined: ${declineText(payment.reason)}. Pay again below.`
          : "Not paid yet. Pay below.") : null,
      offered.length ? h("div", { class: "row" }, offered.map(({ buttons }) => buttons)) : null,
      this.deadlines(offered),
      editing ? (editing.form ??= this.form(order, editing)) : null,
      h("div", { class: `result small ${note ? (note.ok ? "ok" : "bad") : ""}`, role: "status" },
        note ? note.text : ""));
  }

  /**
   * The actions offered on `order` (those the server lists and this page presents), each with
   * its buttons and what its deadline is called.
   * @param {Order} order
   * @param {boolean} paying a charge is running: nothing to pay now
   * @returns {{action: OrderAction, deadline: string, buttons: HTMLButtonElement[]}[]}
   */
  offered(order, paying) {
    const offered = [];
    const pay = actionOf(order, "pay");
    if (pay && !paying) {
      offered.push({ action: pay, deadline: "Pay", buttons: [
        this.button("pay_cod", "Pay cash on delivery instead", () => this.payCashOnDelivery(order)),
        this.button("pay_card", "Pay with a card", () => this.openForm(order, "pay_card", null)),
      ] });
    }
    for (const request of AFTER_SALES) {
      const action = actionOf(order, request.name);
      if (!action) continue;
      offered.push({ action, deadline: request.deadline, buttons: [
        this.button(request.name, request.label(action, order), () => (request.reason
          ? this.openForm(order, request, action) : this.act(order, request, action, ""))),
      ] });
    }
    return offered;
  }

  /**
   * "Return until …" for each offered action that has a deadline.
   * @param {{action: OrderAction, deadline: string}[]} offered
   */
  deadlines(offered) {
    const lines = offered.filter(({ action }) => action.until !== null).map(({ action, deadline }) =>
      h("li", { dataset: { deadline: action.name } }, `${deadline} until ${formatTime(Number(action.until))}`));
    return lines.length ? h("ul", { class: "deadlines small muted" }, lines) : null;
  }

  /**
   * @param {string} name the button's `data-action`
   * @param {string} label
   * @param {() => unknown} onclick
   */
  button(name, label, onclick) {
    return h("button", { type: "button", class: "small", dataset: { action: name }, onclick }, label);
  }

  /**
   * @param {Order} order
   * @param {Editing["request"]} request
   * @param {OrderAction | null} action
   */
  openForm(order, request, action) {
    this.editing = { order: order.id, request, action };
    this.notes.delete(order.id); // an earlier result is not about this request
    this.render();
    const input = document.querySelector(`li.order[data-order="${CSS.escape(order.id)}"] form [name="text"]`);
    if (input instanceof HTMLElement) input.focus();
  }

  closeForm() {
    this.editing = null;
    this.render();
  }

  /**
   * The inline form of the open request: a reason to describe, or a card number to pay with.
   * @param {Order} order
   * @param {Editing} editing
   */
  form(order, editing) {
    const { request, action } = editing;
    const field = request === "pay_card"
      ? h("input", { name: "text", inputmode: "numeric", autocomplete: "cc-number", maxlength: 23,
                     required: true, "aria-label": "Card number", placeholder: "Card number" })
      : h("textarea", { name: "text", rows: 2, maxlength: 1000, required: true,
                        "aria-label": "Describe the problem", placeholder: "Describe the problem" });
    const title = request === "pay_card" ? "Card number (sandbox: 4242 4242 4242 4242)"
      : `${action ? request.label(action, order) : request.name}: what is wrong?`;
    return h("form", {
      class: "stack small", dataset: { form: request === "pay_card" ? request : request.name },
      onsubmit: (/** @type {SubmitEvent} */ event) => {
        event.preventDefault();
        const text = field.value.trim();
        if (!text) return;
        this.editing = null;
        if (request === "pay_card") this.payByCard(order, text.replace(/\s/g, ""));
        else if (action) this.act(order, request, action, text);
      },
    }, h("label", {}, title, field),
    h("div", { class: "row" },
      h("button", { type: "submit", class: "primary small" }, request === "pay_card" ? "Pay" : "Send"),
      h("button", { type: "button", class: "small", onclick: () => this.closeForm() }, "Cancel")));
  }

  /**
   * @param {Order} order
   * @param {string} text
   * @param {boolean} ok
   */
  note(order, text, ok) {
    this.notes.set(order.id, { text, ok });
    this.render();
  }

  /** @param {Order} order */
  async payCashOnDelivery(order) {
    try {
      /** @type {{order: Order}} */
      const { order: updated } = await api("POST", `/api/orders/${encodeURIComponent(order.id)}/pay`,
        { token: this.getToken(), body: { payment: "cod" } });
      this.note(order, `Switched to cash on delivery: pay ${formatCents(updated.total_cents)} when it arrives.`, true);
    } catch (error) {
      this.note(order, payRefusedText(error), false);
    }
    this.refresh();
  }

  /**
   * @param {Order} order
   * @param {string} card
   */
  async payByCard(order, card) {
    this.note(order, "Paying…", true);
    try {
      await api("POST", `/api/orders/${encodeURIComponent(order.id)}/pay`,
        { token: this.getToken(), body: { payment: { method: "online", card } } });
      this.notes.delete(order.id); // the payment line follows it from here
      this.watchPayment(order.id);
    } catch (error) {
      this.note(order, payRefusedText(error), false);
    }
    this.refresh();
  }

  /**
   * Send an after-sales request and say how it went under the order.
   * @param {Order} order
   * @param {AfterSales} request
   * @param {OrderAction} action the action as offered
   * @param {string} reason
   */
  async act(order, request, action, reason) {
    this.note(order, "Sending…", true);
    try {
      /** @type {{claim: Claim}} */
      const { claim } = await api("POST",
        `/api/orders/${encodeURIComponent(order.id)}/${request.path}`,
        { token: this.getToken(), body: { reason } });
      this.note(order, DONE_TEXT[request.name](claim, action, order), true);
    } catch (error) {
      const refused = error instanceof ApiError ? refusedText(error, action, order) : null;
      this.note(order, refused || describeError(error), false);
    }
    this.refresh();
  }
}

