// @ts-check
// Certificate page: a clear valid / not valid verdict, the reason, the details and the QR code.
import {
  $, $as, ApiError, api, describeError, formatTime, installGlobalErrorHandlers, pathId, setText,
  showError,
} from "./lr.js";
import { detailRows, detailsList, reasonText, verdictBox } from "./badges.js";

/** @import { Verification } from "./types.js" */

async function main() {
  installGlobalErrorHandlers();
  const id = pathId();
  setText("#cert-id", id);
  document.title = `Certificate ${id} — liveroom`;
  const qr = $as("#qr", HTMLImageElement);
  try {
    /** @type {Verification} */
    const verification = await api("GET", `/api/certificates/${encodeURIComponent(id)}`);
    $("#verdict").replaceWith(Object.assign(verdictBox(verification), { id: "verdict" }));
    let reason = verification.valid ? "The signature is genuine and the certificate is in force." : reasonText(verification.reason);
    if (verification.revocation) {
      reason += ` Revoked on ${formatTime(verification.revocation.revoked_at)}: ${verification.revocation.reason}`;
    }
    setText("#reason", reason);
    if (verification.certificate) $("#details").replaceChildren(detailsList(detailRows(verification.certificate)));
    setText("#checked-at", formatTime(verification.checked_at));
    qr.src = `/api/certificates/${encodeURIComponent(id)}/qr.svg`;
  } catch (error) {
    const unknown = error instanceof ApiError && error.status === 404;
    $("#verdict").className = "verdict invalid";
    setText("#verdict", unknown ? "✗ Unknown certificate" : "Could not check");
    setText("#reason", unknown
      ? "No certificate with this id was ever issued by the platform. Do not trust a badge that links here."
      : `${describeError(error)} Reload the page to try again.`);
    if (!unknown) showError(error);
    qr.hidden = true;
  }
}

main();
