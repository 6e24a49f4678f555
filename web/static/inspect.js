// @ts-check
// Inspector desk: issue vault certificates, inspection reports and anchor certifications; revoke.
import {
  $, $as, api, describeError, formatCents, h, installGlobalErrorHandlers, parseMoney, showError,
  showResult,
} from "./lr.js";
import { StaffSignIn } from "./signin.js";

/** @import { Rest } from "./lr.js" */
/** @import { Certificate, Product, RoomState, User, Verification } from "./types.js" */

/** @type {Rest | null} */
let rest = null;

const signIn = new StaffSignIn({
  scope: "inspect", roles: ["inspector", "admin"], tokenName: "inspector token",
  pageName: "the desk", content: $("#desk"), onSignedIn: openDesk,
});

function signedIn() {
  if (!rest) throw new Error("Sign in first.");
  return rest;
}

/**
 * @param {Rest} client
 * @param {User} me
 */
function openDesk(client, me) {
  rest = client;
  $("#who").textContent = `${me.name} · ${me.role}`;
  loadLiveProducts();
}

/** @param {string} selector */
function typed(selector) {
  return $as(selector, HTMLInputElement).value;
}

/** @param {string} selector */
function chosen(selector) {
  return $as(selector, HTMLSelectElement).value;
}

// ------------------------------------------------------------------ issuing

function showKind() {
  const kind = chosen("#kind");
  for (const fieldset of document.querySelectorAll("fieldset[data-kind]")) {
    if (fieldset instanceof HTMLElement) fieldset.hidden = fieldset.dataset.kind !== kind;
  }
  for (const node of document.querySelectorAll(".product-only")) {
    if (node instanceof HTMLElement) node.hidden = kind === "refund_no_return";
  }
}

/**
 * "name: value" lines as a map (an inspection's components and tests).
 * @param {string} text
 * @param {string} field
 */
function nameMap(text, field) {
  /** @type {Record<string, string>} */
  const map = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const match = /^([a-z0-9_]{1,32})\s*:\s*([a-z]+)$/.exec(line);
    if (!match) throw new Error(`${field}: write each line as "name: value" (got "${line}").`);
    map[match[1]] = match[2];
  }
  return map;
}

/** @param {File} file */
async function sha256Hex(file) {
  if (!crypto.subtle) throw new Error("Hashing photos needs https or localhost; paste the hashes instead.");
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A whole number typed in the field, or the text as typed (the server names what is wrong).
 * @param {string} selector
 */
function intValue(selector) {
  const text = typed(selector).trim();
  return /^\d+$/.test(text) ? Number(text) : text;
}

/**
 * The start of the day picked in a date field, in ms, or null.
 * @param {string} selector
 */
function dayStartMs(selector) {
  const value = typed(selector);
  return value ? new Date(`${value}T00:00:00`).getTime() : null;
}

async function issueBody() {
  const kind = chosen("#kind");
  if (kind === "refund_no_return") {
    return {
      kind, anchor_id: typed("#r-anchor").trim(), category: chosen("#r-category"),
      details: { valid_from: dayStartMs("#r-from") ?? Date.now(), valid_until: dayStartMs("#r-until") },
    };
  }
  const product = { kind, product_id: typed("#product-id").trim() };
  if (kind === "vault") {
    const hashes = $as("#v-hashes", HTMLTextAreaElement).value.split(/\s+/).filter(Boolean);
    for (const file of $as("#v-photos", HTMLInputElement).files || []) hashes.push(await sha256Hex(file));
    return { ...product, details: {
      material: typed("#v-material"), weight_mg: intValue("#v-weight"), grade: typed("#v-grade"),
      appraiser: typed("#v-appraiser"), photo_sha256: hashes,
    } };
  }
  const buyback = parseMoney(typed("#i-buyback"));
  if (buyback === null) throw new Error("Enter the buyback price as a number, e.g. 1500.00.");
  return { ...product, details: {
    model: typed("#i-model"), imei: typed("#i-imei").trim(),
    battery_health_pct: intValue("#i-battery"), screen_condition: chosen("#i-screen"),
    body_condition: chosen("#i-body"),
    components: nameMap($as("#i-components", HTMLTextAreaElement).value, "Components"),
    tests: nameMap($as("#i-tests", HTMLTextAreaElement).value, "Tests"), buyback_price_cents: buyback,
  } };
}

/** @param {SubmitEvent} event */
async function issue(event) {
  event.preventDefault();
  const result = $("#issue-result");
  result.className = "result";
  result.textContent = "Signing…"; // not the previous certificate's result
  try {
    /** @type {Certificate} */
    const certificate = await signedIn().post("/api/certificates", await issueBody());
    showResult(result, "", true);
    result.replaceChildren(`Issued ${certificate.id}. `,
      h("a", { href: `/verify/${encodeURIComponent(certificate.id)}`, target: "_blank", rel: "noopener" },
        "Open its verification page"));
    const subject = certificate.subject.product_id || certificate.subject.anchor_id || "";
    $as("#lookup", HTMLInputElement).value = subject;
    listCertificates(subject);
  } catch (error) {
    // A form check of the page's own is said as it is; a refusal as describeError words it.
    const own = error instanceof Error && !("code" in error);
    showResult(result, own ? error.message : describeError(error), false);
  }
}

async function showProduct() {
  const id = typed("#product-id").trim();
  const info = $("#product-info");
  if (!/^p_[A-Za-z0-9_-]+$/.test(id)) {
    info.textContent = "";
    return;
  }
  try {
    /** @type {Product} */
    const product = await api("GET", `/api/products/${encodeURIComponent(id)}`);
    info.textContent = `${product.title} · ${product.category} · ${product.brand} · ${formatCents(product.price_cents)}`;
  } catch (error) {
    info.textContent = describeError(error);
  }
}

// ------------------------------------------------------------------ listing and revoking

/** @param {string} subject a product id (p_…) or an anchor id (u_…) */
async function listCertificates(subject) {
  const query = subject.startsWith("u_") ? `anchor=${encodeURIComponent(subject)}` : `product=${encodeURIComponent(subject)}`;
  try {
    /** @type {{certificates: Verification[]}} */
    const { certificates } = await signedIn().get(`/api/certificates?${query}`);
    $("#certificates").replaceChildren(...certificates.map(certificateItem));
    if (!certificates.length) $("#certificates").append(h("li", { class: "muted" }, "No certificates yet."));
  } catch (error) {
    showError(error);
  }
}

/** @param {Verification} verification */
function certificateItem(verification) {
  const cert = verification.certificate;
  if (!cert) return h("li", { class: "muted" }, "A certificate the server cannot read.");
  const result = h("div", { class: "result small", role: "status" });
  return h("li", { class: "stack", dataset: { certificate: cert.id } },
    h("div", { class: "row" },
      h("a", { class: "grow", href: `/verify/${encodeURIComponent(cert.id)}`, target: "_blank", rel: "noopener" }, cert.id),
      h("span", { class: "pill" }, cert.kind),
      h("span", { class: `pill ${verification.valid ? "" : "live"}` }, verification.valid ? "valid" : verification.reason)),
    verification.valid ? h("form", {
      class: "row", onsubmit: (/** @type {SubmitEvent} */ event) => revoke(event, cert.id, result),
    }, h("input", { class: "grow", name: "reason", placeholder: "Reason for revoking", required: true, maxlength: 500,
                    "aria-label": "Reason for revoking" }),
       h("button", { class: "danger", type: "submit" }, "Revoke")) : null,
    result);
}

/**
 * @param {SubmitEvent} event
 * @param {string} certificateId
 * @param {HTMLElement} result
 */
async function revoke(event, certificateId, result) {
  event.preventDefault();
  const form = /** @type {HTMLFormElement} */ (event.currentTarget);
  const reason = $as("[name=reason]", HTMLInputElement, form).value.trim();
  try {
    await signedIn().post(`/api/certificates/${encodeURIComponent(certificateId)}/revoke`, { reason });
    listCertificates(typed("#lookup").trim());
  } catch (error) {
    showResult(result, describeError(error), false);
  }
}

async function loadLiveProducts() {
  try {
    /** @type {{rooms: RoomState[]}} */
    const { rooms } = await api("GET", "/api/rooms");
    $("#live-products").replaceChildren(...rooms.map((room) => {
      const pinned = room.pinned;
      return pinned ? h("li", {},
        h("button", { type: "button", onclick: () => useProduct(pinned) }, "Use"), " ",
        `${pinned.title} (${pinned.category}) in “${room.title}” · `, h("code", {}, pinned.id)) : null;
    }).filter((item) => item !== null));
  } catch (error) {
    showError(error);
  }
}

/**
 * Fill the form for a live room's pinned product: the certificate its category takes.
 * @param {Product} product
 */
function useProduct(product) {
  const kind = $as("#kind", HTMLSelectElement);
  /** @type {Record<string, string>} */
  const kindFor = { jewelry: "vault", phone_used: "inspection", essential_oil: "refund_no_return" };
  if (kindFor[product.category]) kind.value = kindFor[product.category];
  if (product.category === "essential_oil") $as("#r-anchor", HTMLInputElement).value = product.anchor_id;
  $as("#product-id", HTMLInputElement).value = product.id;
  showKind();
  showProduct();
}

// ------------------------------------------------------------------ start

async function main() {
  installGlobalErrorHandlers();
  $("#kind").addEventListener("change", showKind);
  $("#product-id").addEventListener("change", showProduct);
  $("#issue-form").addEventListener("submit", issue);
  $("#lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    listCertificates(typed("#lookup").trim());
  });
  showKind();
  await signIn.start();
}

main();
