// @ts-check
// Trust badges: what each one promises, and certificate details with their verification.
import { $, $as, api, describeError, formatCents, formatTime, h } from "./lr.js";

/** @import { Badge, Certificate, Verification } from "./types.js" */

/** @type {Record<string, string>} what each badge (by kind) promises the buyer */
export const GUARANTEES = {
  "fake-one-pay-ten": "Receive a counterfeit and the platform pays you ten times the price.",
  "paid-return-shipping": "Return shipping is paid by the platform.",
  "door-pickup": "Returns are picked up at your door.",
  "7-day-returns": "Return within 7 days of delivery, no reason needed.",
  "vault-certified": "Appraised in the platform's own vault before shipping; the platform backs after-sales.",
  inspected: "Read by an inspection box; the report behind the QR code shows the phone's full condition. 180-day warranty and a buyback offer.",
  "refund-no-return": "A certified seller: you can get a refund without sending the goods back.",
};

/** @type {Record<string, string>} */
const KIND_NAMES = {
  vault: "Vault certificate", inspection: "Inspection report", refund_no_return: "Refund-no-return certification",
};

/** @type {Record<string, string>} why a certificate is not valid */
const REASONS = {
  malformed: "The certificate is damaged or incomplete.",
  unsupported_format: "The certificate is in a format this platform does not issue.",
  unknown_key: "The certificate was not signed by a platform key.",
  bad_signature: "The signature does not match: the certificate was altered or forged.",
  tampered: "The stored certificate disagrees with its signed document.",
  revoked: "The platform revoked this certificate.",
  expired: "The certificate has expired.",
  not_yet_valid: "The certificate is not valid yet.",
};

/** @param {string | null} reason */
export function reasonText(reason) {
  return (reason && REASONS[reason]) || (reason ? `Not valid: ${reason}.` : "");
}

/**
 * Human rows for a certificate's details (values as text only).
 * @param {Certificate} certificate
 * @returns {[string, string][]}
 */
export function detailRows(certificate) {
  /** @type {[string, string][]} */
  const rows = [["Kind", KIND_NAMES[certificate.kind] || certificate.kind], ["Certificate", certificate.id]];
  const subject = certificate.subject || {};
  if (subject.product_id) rows.push(["Product", subject.product_id]);
  if (subject.anchor_id) rows.push(["Seller", subject.anchor_id]);
  if (subject.category) rows.push(["Category", subject.category]);
  for (const [key, value] of Object.entries(certificate.details || {})) {
    rows.push([labelOf(key), valueText(key, value)]);
  }
  rows.push(["Issued", formatTime(certificate.issued_at)]);
  rows.push(["Valid from", formatTime(certificate.valid_from)]);
  rows.push(["Expires", certificate.expires_at ? formatTime(certificate.expires_at) : "never"]);
  if (certificate.issuer) rows.push(["Issued by", `${certificate.issuer.id} (${certificate.issuer.role})`]);
  rows.push(["Signing key", certificate.key_id]);
  return rows;
}

/** @param {string} key a detail's name, e.g. "weight_mg" -> "Weight" */
function labelOf(key) {
  const text = key.replace(/_(mg|pct|cents|at|sha256)$/, "").replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * A detail's value as text, by what its name says it is (cents, a moment, milligrams...).
 * @param {string} key
 * @param {unknown} value
 * @returns {string}
 */
function valueText(key, value) {
  if (value === null || value === undefined) return "—";
  if (key.endsWith("_cents")) return formatCents(Number(value));
  if (key.endsWith("_at") || key === "valid_from" || key === "valid_until") return formatTime(Number(value));
  if (key.endsWith("_mg")) return `${(Number(value) / 1000).toFixed(3)} g`;
  if (key.endsWith("_pct")) return `${value}%`;
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}: ${v}`).join(", ");
  return String(value);
}

/** @param {[string, string][]} rows */
export function detailsList(rows) {
  return h("dl", { class: "details" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** @param {Verification} verification */
export function verdictBox(verification) {
  return h("div", { class: `verdict ${verification.valid ? "valid" : "invalid"}`, role: "status" },
    verification.valid ? "✓ Valid certificate" : "✗ Not valid");
}

/**
 * Open the badge dialog of the room page: what the badge promises and, for a certificate's, its
 * verification.
 * @param {Badge} badge
 */
export async function openBadge(badge) {
  const dialog = $as("#badge-dialog", HTMLDialogElement);
  const body = $("#badge-dialog-body");
  $("#badge-dialog-title").textContent = badge.label;
  $("#badge-dialog-close").onclick = () => dialog.close();
  body.replaceChildren(h("p", {}, GUARANTEES[badge.kind] || ""));
  if (!dialog.open) dialog.showModal();
  if (!badge.certificate) return;
  const checking = h("p", { class: "muted" }, "Checking the certificate…");
  body.append(checking);
  try {
    /** @type {Verification} */
    const verification = await api("GET", `/api/certificates/${encodeURIComponent(badge.certificate)}`);
    checking.remove();
    body.append(verificationView(verification, badge.verify_url || `/verify/${badge.certificate}`));
  } catch (error) {
    checking.textContent = `Could not check the certificate: ${describeError(error)}`;
  }
}

/**
 * @param {Verification} verification
 * @param {string} verifyUrl
 */
function verificationView(verification, verifyUrl) {
  /** @type {HTMLElement[]} */
  const parts = [verdictBox(verification)];
  if (!verification.valid) parts.push(h("p", { class: "reason" }, reasonText(verification.reason)));
  if (verification.certificate) parts.push(detailsList(detailRows(verification.certificate)));
  parts.push(h("p", {}, h("a", { href: verifyUrl, target: "_blank", rel: "noopener" },
    "Open the verification page (with QR code)")));
  return h("div", { class: "stack" }, parts);
}
