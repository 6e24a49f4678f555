// Checkout and "my orders" with the after-sales actions (return, refund-no-return,
// counterfeit claim, warranty) and online payments on the viewer page.
import {
  $, ackError, ApiError, api, call, clock, describeError, formatCents, formatTime, h,
} from "./lr.js";

const STATUS_TEXT = {
  created: "Awaiting payment", paid: "Paid", confirmed: "Confirmed: pay cash on delivery",
  shipped: "Shipped", delivered: "Delivered", completed: "Completed", cancelled: "Cancelled",
  return_requested: "Return requested", returned: "Returned", refunded: "Refunded",
};

const DAY_MS = 24 * 3600 * 1000;

// Each after-sales action: its label, the REST path under /api/orders/{id}/, whether a reason is
// required, the order statuses in which the server accepts it (orders/_machine.py TRANSITIONS and
// orders/_service.py), its window from delivery, and the only category it applies to.
//   return            request_return: delivered | completed, 7 days from delivery
//   refund-no-return  refund_no_return: delivered | completed, 7 days, certified anchor
//   counterfeit       any status where the goods reached the buyer (RECEIVED), 90 days from
//                     delivery; after a return or refund the server answers already_refunded
//   warranty          delivered | completed, inspected phones, until the order's
//                     `warranty_ends_at` (else 180 days from delivery)
const ACTIONS = [
  { key: "return", label: "Return (7 days, free pickup)", path: "return", reason: false,
    when: ["delivered", "completed"], windowMs: 7 * DAY_MS },
  { key: "refund_no_return", label: "Refund without return", path: "refund-no-return",
    reason: false, when: ["delivered", "completed"], windowMs: 7 * DAY_MS,
    category: "essential_oil" },
  { key: "counterfeit", label: "Report a counterfeit (fake one, pay ten)", path: "counterfeit",
    reason: true, when: ["delivered", "completed", "return_requested", "returned", "refunded"],
    windowMs: 90 * DAY_MS },
  { key: "warranty", label: "Warranty claim", path: "warranty", reason: true,
    when: ["delivered", "completed"], windowMs: 180 * DAY_MS, category: "phone_used",
    deadline: (order) => order.warranty_ends_at },
];

const COUNTERFEIT_MULTIPLIER = 10; // fake one, pay ten

/** What the person learns when an after-sales request went through. */
const DONE_TEXT = {
  return: (claim) => `Return booked: free door pickup on ${formatTime(claim.pickup_at)}. `
    + `${formatCents(claim.amount_cents)} comes back to you when the seller receives it.`,
  refund_no_return: (claim) => `Refunded ${formatCents(claim.amount_cents)}. Keep the item: nothing to send back.`,
  counterfeit: (claim, order) => "Counterfeit claim filed. If the platform finds the item fake, you receive "
    + `${formatCents(COUNTERFEIT_MULTIPLIER * order.total_cents)} (ten times the price).`,
  warranty: (claim) => `Warranty repair booked: free door pickup on ${formatTime(claim.pickup_at)}.`,
};

/** Why the server refused an after-sales request, in words the buyer can act on. */
const REFUSED_TEXT = {
  certification_required: {
    refund_no_return: "This seller is not certified for refunds without return. Ask for a return instead (7 days, free pickup).",
    warranty: "This phone has no inspection report, so the platform warranty does not cover it.",
  },
  return_window_closed: "The 7-day window after delivery has closed.",
  claim_window_closed: "Counterfeits can be reported up to 90 days after delivery; that time has passed.",
  already_refunded: "This order was returned or refunded, so it cannot also be paid ten times the price.",
  counterfeit_claimed: "Your counterfeit claim settles this order: a return or refund is not possible while it is open or after it was upheld.",
  warranty_expired: (order) => (order.warranty_ends_at
    ? `The warranty ended on ${formatTime(order.warranty_ends_at)}.` : "The warranty has ended."),
  claim_conflict: "You already sent this request for this order.",
  illegal_transition: "This is not possible any more: the order changed. Press Refresh to see it.",
};

/** Why a card payment was declined (the provider's reason), and what to do about it. */
const DECLINE_TEXT = {
  card_declined: "your card was declined by its bank",
  insufficient_funds: "the card does not have enough funds",
  unknown_test_card: "this card number is not accepted (sandbox cards: 4242 4242 4242 4242)",
  provider_unavailable: "the payment service could not be reached",
  timed_out: "the payment service did not answer in time",
};

/** Why the server refused to take a payment, when the buyer needs more than its message. */
const PAY_REFUSED_TEXT = {
  payment_window_closed: "The time to pay for this order is over: it is being cancelled and the "
    + "item goes back on sale.",
};

function payRefusedText(error) {
  return PAY_REFUSED_TEXT[error && error.code] || describeError(error);
}

export function declineText(reason) {
  return DECLINE_TEXT[reason] || (reason ? `the payment was refused (${reason})` : "the payment was refused");
}

// Re-read an order still awaiting its payment result this long after asking (a missed push).
const PAYMENT_CHECKS_MS = [3000, 8000, 20_000, 45_000, 90_000];

export class Orders {
  /** `onPayment(text, ok)` is told the outcome of every online payment this page started. */
  constructor(getToken, getSocket, onPayment = () => {}) {
    this.getToken = getToken;
    this.getSocket = getSocket;
    this.onPayment = onPayment;
    this.list = [];
    this.payments = new Map(); // order id -> its latest payment, for orders awaiting payment
    this.notes = new Map(); // order id -> {text, ok}: the last result shown under that order
    this.awaiting = new Set(); // orders whose online payment result is not known yet
    this.editing = null; // {order, key, text}: the open reason or card form
    this.refreshing = null;
    this.again = false;
  }

  /** Check out a reservation: `address` {name, phone, line1, city}; payment "cod" or {method, card}. */
  async checkout(reservation, address, payment) {
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
    $("#orders-card").open = true; // shows the new order (the toggle loads the list)
    this.refresh();
    return order;
  }

  /** The `order` push: a status or payment changed outside our own request. */
  onPush(order) {
    if (order && this.awaiting.has(order.id)) this.checkPayment(order.id);
    this.refresh();
  }

  /** Follow an online payment until the provider decides (the push, or a re-read). */
  watchPayment(orderId) {
    this.awaiting.add(orderId);
    for (const delay of PAYMENT_CHECKS_MS) {
      setTimeout(() => this.awaiting.has(orderId) && this.checkPayment(orderId), delay);
    }
  }

  async checkPayment(orderId) {
    let order;
    try {
      ({ order } = await api("GET", `/api/orders/${encodeURIComponent(orderId)}`,
        { token: this.getToken() }));
    } catch {
      return; // the next push or re-read tries again
    }
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
      note = { ok: false, text: `Payment declined: ${declineText(last.reason)}. Your order is kept: `
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
      const { orders } = await api("GET", "/api/orders", { token: this.getToken() });
      // Orders awaiting payment: their latest payment says whether it is running or declined.
      await Promise.all(orders.filter((o) => o.status === "created").map(async (o) => {
        try {
          const { order } = await api("GET", `/api/orders/${encodeURIComponent(o.id)}`,
            { token: this.getToken() });
          this.payments.set(o.id, (order.payments || []).at(-1) || null);
        } catch {
          this.payments.delete(o.id);
        }
      }));
      this.list = orders;
      this.render();
      status.textContent = orders.length ? "" : "No orders yet. Buy in a flash sale and it appears here.";
    } catch (error) {
      status.textContent = `Could not load your orders: ${describeError(error)}`;
    }
  }

  render() {
    $("#orders").replaceChildren(...this.list.map((order) => this.orderItem(order)));
  }

  orderItem(order) {
    const item = order.items[0] || {};
    const payment = order.status === "created" ? this.payments.get(order.id) : null;
    const paying = order.status === "created" && (this.awaiting.has(order.id)
      || (payment && payment.status === "pending"));
    // `placed_at` is set once an online order is paid: one cancelled unpaid was never paid.
    const method = order.payment_method === "cod" ? "cash on delivery"
      : order.placed_at ? "paid online" : "online payment";
    const note = this.notes.get(order.id);
    const editing = this.editing && this.editing.order === order.id ? this.editing : null;
    return h("li", { class: "order", dataset: { order: order.id, status: order.status } },
      h("div", { class: "row" },
        h("strong", { class: "grow" }, `${item.qty} × ${item.title}`),
        h("span", {}, formatCents(order.total_cents))),
      h("div", { class: "small muted" },
        `${STATUS_TEXT[order.status] || order.status} · ${method} · ${formatTime(order.created_at)}`),
      // Inspected phones: the later of delivery + 180 days and the certificate's warranty end.
      order.warranty_ends_at ? h("div", { class: "small muted" },
        `Warranty until ${formatTime(order.warranty_ends_at)}`) : null,
      order.status === "created" ? h("div", { class: "small payment" }, paying
        ? "Payment in progress: the result appears here."
        : payment && payment.status === "declined"
          ? `Payment declined: ${declineText(payment.reason)}. Pay again below.`
          : "Not paid yet. Pay below.") : null,
      this.actionRow(order, item, paying),
      editing ? this.form(order, editing) : null,
      h("div", { class: `result small ${note ? (note.ok ? "ok" : "bad") : ""}`, role: "status" },
        note ? note.text : ""));
  }

  actionRow(order, item, paying) {
    const buttons = [];
    if (order.status === "created" && !paying) {
      buttons.push(this.button(order, { key: "pay_cod", label: "Pay cash on delivery instead" },
        () => this.payCashOnDelivery(order)));
      buttons.push(this.button(order, { key: "pay_card", label: "Pay with a card" },
        () => this.openForm(order, "pay_card")));
    }
    for (const action of ACTIONS) {
      if (!this.offered(action, order, item)) continue;
      buttons.push(this.button(order, action,
        () => (action.reason ? this.openForm(order, action.key) : this.act(order, action, ""))));
    }
    return buttons.length ? h("div", { class: "row" }, buttons) : null;
  }

  offered(action, order, item) {
    if (!action.when.includes(order.status)) return false;
    if (action.category && action.category !== item.category) return false;
    // The window runs from delivery (or to the order's own deadline), on the server's clock.
    const deadline = (action.deadline && action.deadline(order))
      || (action.windowMs && order.delivered_at && order.delivered_at + action.windowMs);
    return !deadline || clock.now() <= deadline;
  }

  button(order, action, onclick) {
    return h("button", { type: "button", class: "small", dataset: { action: action.key }, onclick },
      action.label);
  }

  openForm(order, key) {
    this.editing = { order: order.id, key, text: "" };
    this.notes.delete(order.id); // an earlier result is not about this request
    this.render();
    const input = $(`li.order[data-order="${CSS.escape(order.id)}"] form textarea, li.order[data-order="${CSS.escape(order.id)}"] form input`);
    if (input) input.focus();
  }

  closeForm() {
    this.editing = null;
    this.render();
  }

  /** The inline form of the open action: a reason to describe, or a card number to pay with. */
  form(order, editing) {
    const card = editing.key === "pay_card";
    const field = card
      ? h("input", { name: "text", inputmode: "numeric", autocomplete: "cc-number", maxlength: 23,
                     required: true, "aria-label": "Card number", placeholder: "Card number" })
      : h("textarea", { name: "text", rows: 2, maxlength: 1000, required: true,
                        "aria-label": "Describe the problem", placeholder: "Describe the problem" });
    field.value = editing.text;
    field.addEventListener("input", () => { editing.text = field.value; });
    const action = ACTIONS.find((a) => a.key === editing.key);
    return h("form", {
      class: "stack small", dataset: { form: editing.key },
      onsubmit: (event) => {
        event.preventDefault();
        const text = field.value.trim();
        if (!text) return;
        this.editing = null;
        if (card) this.payByCard(order, text.replace(/\s/g, ""));
        else this.act(order, action, text);
      },
    }, h("label", {}, card ? "Card number (sandbox: 4242 4242 4242 4242)"
      : `${action.label}: what is wrong?`, field),
    h("div", { class: "row" },
      h("button", { type: "submit", class: "primary small" }, card ? "Pay" : "Send"),
      h("button", { type: "button", class: "small", onclick: () => this.closeForm() }, "Cancel")));
  }

  note(order, text, ok) {
    this.notes.set(order.id, { text, ok });
    this.render();
  }

  async payCashOnDelivery(order) {
    try {
      const { order: updated } = await api("POST", `/api/orders/${encodeURIComponent(order.id)}/pay`,
        { token: this.getToken(), body: { payment: "cod" } });
      this.note(order, `Switched to cash on delivery: pay ${formatCents(updated.total_cents)} when it arrives.`, true);
    } catch (error) {
      this.note(order, payRefusedText(error), false);
    }
    this.refresh();
  }

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

  async act(order, action, reason) {
    this.note(order, "Sending…", true);
    try {
      const { claim } = await api("POST",
        `/api/orders/${encodeURIComponent(order.id)}/${action.path}`,
        { token: this.getToken(), body: { reason } });
      this.note(order, DONE_TEXT[action.key](claim, order), true);
    } catch (error) {
      const refused = REFUSED_TEXT[error.code];
      const text = typeof refused === "string" ? refused
        : typeof refused === "function" ? refused(order) : refused && refused[action.key];
      this.note(order, text || describeError(error), false);
    }
    this.refresh();
  }
}
