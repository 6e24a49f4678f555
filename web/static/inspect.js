// Inspector desk: issue vault certificates, inspection reports and anchor certifications; revoke.
import {
  $, api, client, describeError, formatCents, h, hideBanner, installGlobalErrorHandlers,
  isTokenError, pageToken, parseMoney, showError, storeToken,
} from "./lr.js";

const SCOPE = "inspect";
let rest = null;

async function signIn(token) {
  const candidate = client(token);
  let me;
  try {
    me = (await candidate.get("/api/me")).user;
  } catch (error) {
    if (!isTokenError(error.code)) throw error;
    storeToken(SCOPE, null);
    return askForToken(`Your token was refused (${describeError(error)}). Paste a fresh one.`);
  }
  if (me.role !== "inspector" && me.role !== "admin") {
    return askForToken(`You are signed in as ${me.name} (${me.role}); the desk needs an inspector token.`);
  }
  rest = candidate;
  storeToken(SCOPE, token);
  $("#who").textContent = `${me.name} · ${me.role}`;
  $("#signin").hidden = true;
  $("#desk").hidden = false;
  hideBanner();
  loadLiveProducts();
}

function askForToken(message) {
  $("#signin").hidden = false;
  $("#desk").hidden = true;
  if (message) showError(message);
}

// ------------------------------------------------------------------ issuing

function showKind() {
  const kind = $("#kind").value;
  for (const fieldset of document.querySelectorAll("fieldset[data-kind]")) {
    fieldset.hidden = fieldset.dataset.kind !== kind;
  }
  for (const node of document.querySelectorAll(".product-only")) node.hidden = kind === "refund_no_return";
}

function nameMap(text, field) {
  const map = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const match = /^([a-z0-9_]{1,32})\s*:\s*([a-z]+)$/.exec(line);
    if (!match) throw new Error(`${field}: write each line as "name: value" (got "${line}").`);
    map[match[1]] = match[2];
  }
  return map;
}

async function sha256Hex(file) {
  if (!crypto.subtle) throw new Error("Hashing photos needs https or localhost; paste the hashes instead.");
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function intValue(selector) {
  const text = $(selector).value.trim();
  return /^\d+$/.test(text) ? Number(text) : text;
}

function dayStartMs(selector) {
  const value = $(selector).value;
  return value ? new Date(`${value}T00:00:00`).getTime() : null;
}

async function issueBody() {
  const kind = $("#kind").value;
  if (kind === "refund_no_return") {
    return {
      kind, anchor_id: $("#r-anchor").value.trim(), category: $("#r-category").value,
      details: { valid_from: dayStartMs("#r-from") ?? Date.now(), valid_until: dayStartMs("#r-until") },
    };
  }
  const body = { kind, product_id: $("#product-id").value.trim() };
  if (kind === "vault") {
    const hashes = $("#v-hashes").value.split(/\s+/).filter(Boolean);
    for (const file of $("#v-photos").files) hashes.push(await sha256Hex(file));
    body.details = {
      material: $("#v-material").value, weight_mg: intValue("#v-weight"), grade: $("#v-grade").value,
      appraiser: $("#v-appraiser").value, photo_sha256: hashes,
    };
  } else {
    const buyback = parseMoney($("#i-buyback").value);
    if (buyback === null) throw new Error("Enter the buyback price as a number, e.g. 1500.00.");
    body.details = {
      model: $("#i-model").value, imei: $("#i-imei").value.trim(),
      battery_health_pct: intValue("#i-battery"), screen_condition: $("#i-screen").value,
      body_condition: $("#i-body").value, components: nameMap($("#i-components").value, "Components"),
      tests: nameMap($("#i-tests").value, "Tests"), buyback_price_cents: buyback,
    };
  }
  return body;
}

async function issue(event) {
  event.preventDefault();
  const result = $("#issue-result");
  result.className = "result";
  result.textContent = "Signing…"; // not the previous certificate's result
  try {
    const certificate = await rest.post("/api/certificates", await issueBody());
    result.className = "result ok";
    result.replaceChildren(`Issued ${certificate.id}. `,
      h("a", { href: `/verify/${encodeURIComponent(certificate.id)}`, target: "_blank", rel: "noopener" },
        "Open its verification page"));
    const subject = certificate.subject.product_id || certificate.subject.anchor_id;
    $("#lookup").value = subject;
    listCertificates(subject);
  } catch (error) {
    result.className = "result bad";
    result.textContent = error instanceof Error && !error.code ? error.message : describeError(error);
  }
}

async function showProduct() {
  const id = $("#product-id").value.trim();
  const info = $("#product-info");
  if (!/^p_[A-Za-z0-9_-]+$/.test(id)) {
    info.textContent = "";
    return;
  }
  try {
    const product = await api("GET", `/api/products/${encodeURIComponent(id)}`);
    info.textContent = `${product.title} · ${product.category} · ${product.brand} · ${formatCents(product.price_cents)}`;
  } catch (error) {
    info.textContent = describeError(error);
  }
}

// ------------------------------------------------------------------ listing and revoking

async function listCertificates(subject) {
  const query = subject.startsWith("u_") ? `anchor=${encodeURIComponent(subject)}` : `product=${encodeURIComponent(subject)}`;
  try {
    const { certificates } = await rest.get(`/api/certificates?${query}`);
    $("#certificates").replaceChildren(...certificates.map(certificateItem));
    if (!certificates.length) $("#certificates").append(h("li", { class: "muted" }, "No certificates yet."));
  } catch (error) {
    showError(error);
  }
}

function certificateItem(verification) {
  const cert = verification.certificate;
  const result = h("div", { class: "result small", role: "status" });
  return h("li", { class: "stack", dataset: { certificate: cert.id } },
    h("div", { class: "row" },
      h("a", { class: "grow", href: `/verify/${encodeURIComponent(cert.id)}`, target: "_blank", rel: "noopener" }, cert.id),
      h("span", { class: "pill" }, cert.kind),
      h("span", { class: `pill ${verification.valid ? "" : "live"}` }, verification.valid ? "valid" : verification.reason)),
    verification.valid ? h("form", {
      class: "row", onsubmit: (event) => revoke(event, cert.id, result),
    }, h("input", { class: "grow", name: "reason", placeholder: "Reason for revoking", required: true, maxlength: 500,
                    "aria-label": "Reason for revoking" }),
       h("button", { class: "danger", type: "submit" }, "Revoke")) : null,
    result);
}

async function revoke(event, certificateId, result) {
  event.preventDefault();
  const reason = event.target.elements.reason.value.trim();
  try {
    await rest.post(`/api/certificates/${encodeURIComponent(certificateId)}/revoke`, { reason });
    listCertificates($("#lookup").value.trim());
  } catch (error) {
    result.className = "result small bad";
    result.textContent = describeError(error);
  }
}

async function loadLiveProducts() {
  try {
    const { rooms } = await api("GET", "/api/rooms");
    $("#live-products").replaceChildren(...rooms.filter((r) => r.pinned).map((room) => h("li", {},
      h("button", { type: "button", onclick: () => useProduct(room.pinned) }, "Use"), " ",
      `${room.pinned.title} (${room.pinned.category}) in “${room.title}” · `, h("code", {}, room.pinned.id))));
  } catch (error) {
    showError(error);
  }
}

function useProduct(product) {
  const kind = { jewelry: "vault", phone_used: "inspection" }[product.category];
  if (kind) $("#kind").value = kind;
  if (product.category === "essential_oil") {
    $("#kind").value = "refund_no_return";
    $("#r-anchor").value = product.anchor_id;
  }
  $("#product-id").value = product.id;
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
    listCertificates($("#lookup").value.trim());
  });
  $("#signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("#signin-token").value.trim()).catch(showError);
  });
  showKind();
  const token = pageToken(SCOPE);
  if (!token) return askForToken();
  try {
    await signIn(token);
  } catch (error) {
    showError(error);
  }
}

main();
