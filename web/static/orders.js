// Checkout and "my orders" with the after-sales actions (return, refund-no-return,
// counterfeit claim, warranty) on the viewer page.
import { $, ackError, ApiError, api, call, describeError, formatCents, formatTime, h } from "./lr.js";

const STATUS_TEXT = {
  created: "Awaiting payment", paid: "Paid", confirmed: "Confirmed: pay cash on delivery",
  shipped: "Shipped", delivered: "Delivered", completed: "Completed", cancelled: "Cancelled",
  return_requested: "Return requested", returned: "Returned", refunded: "Refunded",
};

// Each after-sales action: its label, the REST path under /api/orders/{id}/, whether a reason is
// required, and the order statuses in which it is offered.
const ACTIONS = [
  { key: "return", label: "Return (7 days, free pickup)", path: "return", reason: false,
    when: ["delivered"] },
  { key: "refund_no_return", label: "Refund without return", path: "refund-no-return",
    reason: false, when: ["delivered", "shipped"], category: "essential_oil" },
  { key: "counterfeit", label: "Report a counterfeit (fake one, pay ten)", path: "counterfeit",
    reason: true, when: ["delivered", "completed"] },
  { key: "warranty", label: "Warranty claim", path: "warranty", reason: true,
    when: ["delivered", "completed"], category: "phone_used" },
];

export class Orders {
  constructor(getToken, getSocket) {
    this.getToken = getToken;
    this.getSocket = getSocket;
  }

  /** Check out a reservation: `address` {name, phone, line1, city}; payment "cod" or {method, card}. */
  async checkout(reservation, address, payment) {
    const answer = await call(this.getSocket(), "checkout",
      { reservation: reservation.id, address, payment }, 15_000);
    if (!answer.ok) {
      const err = ackError(answer);
      throw new ApiError(err.code, err.message);
    }
    $("#orders-card").open = true; // shows the new order (the toggle loads the list)
    this.refresh();
    return answer.order;
  }

  async refresh() {
    const status = $("#orders-status");
    try {
      const { orders } = await api("GET", "/api/orders", { token: this.getToken() });
      $("#orders").replaceChildren(...orders.map((order) => this.orderItem(order)));
      status.textContent = orders.length ? "" : "No orders yet. Buy in a flash sale and it appears here.";
    } catch (error) {
      status.textContent = `Could not load your orders: ${describeError(error)}`;
    }
  }

  orderItem(order) {
    const item = order.items[0] || {};
    const actions = ACTIONS.filter((a) => a.when.includes(order.status)
      && (!a.category || a.category === item.category));
    const result = h("div", { class: "result small", role: "status" });
    return h("li", { class: "order", dataset: { order: order.id, status: order.status } },
      h("div", { class: "row" },
        h("strong", { class: "grow" }, `${item.qty} × ${item.title}`),
        h("span", {}, formatCents(order.total_cents))),
      h("div", { class: "small muted" },
        `${STATUS_TEXT[order.status] || order.status} · ${order.payment_method === "cod" ? "cash on delivery" : "paid online"} · ${formatTime(order.created_at)}`),
      // Inspected phones: the later of delivery + 180 days and the certificate's warranty end.
      order.warranty_ends_at ? h("div", { class: "small muted" },
        `Warranty until ${formatTime(order.warranty_ends_at)}`) : null,
      actions.length ? h("div", { class: "row" }, actions.map((action) => h("button", {
        type: "button", class: "small", dataset: { action: action.key },
        onclick: () => this.act(order, action, result),
      }, action.label))) : null,
      result);
  }

  async act(order, action, result) {
    let reason = "";
    if (action.reason) {
      reason = window.prompt(`${action.label}: describe the problem`) || "";
      if (!reason.trim()) {
        result.textContent = "Nothing sent: a short description is needed.";
        result.className = "result small bad";
        return;
      }
    }
    try {
      const answer = await api("POST", `/api/orders/${encodeURIComponent(order.id)}/${action.path}`,
        { token: this.getToken(), body: { reason } });
      const claim = answer.claim || answer;
      result.textContent = claim.amount_cents
        ? `Sent. You will receive ${formatCents(claim.amount_cents)}.`
        : "Sent. We will keep you posted here.";
      result.className = "result small ok";
      this.refresh();
    } catch (error) {
      result.textContent = describeError(error);
      result.className = "result small bad";
    }
  }
}
