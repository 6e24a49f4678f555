// @ts-check
// Lucky draw check page: recomputes the winners of a published draw in the browser.
import {
  $, ApiError, api, describeError, formatTime, h, installGlobalErrorHandlers, pathId, setText,
  showError,
} from "./lr.js";
import { drawProblem } from "./draw.js";

/** @import { LuckyBag } from "./types.js" */

/** @type {Record<string, string>} */
const REASONS = {
  not_the_same_draw: "The draw does not belong to this commitment.",
  seed_mismatch: "The seed revealed is not the one committed to before the entries.",
  drawn_too_early: "The draw closed before its announced time.",
  entries_mismatch: "The list of entries is not sorted, repeats an entry, or does not match its digest.",
  winners_mismatch: "The winners do not follow from the seed and the entries.",
  malformed: "The published draw is malformed.",
};

async function main() {
  installGlobalErrorHandlers();
  const id = pathId();
  setText("#bag-id", id);
  const verdict = $("#verdict");
  try {
    /** @type {LuckyBag} */
    const bag = await api("GET", `/api/lucky-bags/${encodeURIComponent(id)}`);
    setText("#prize", `${bag.title}: ${bag.winners_count} winner(s), ${bag.units_each} each; `
      + `drawn at ${formatTime(bag.draw_at)}.`);
    setText("#commitment", bag.commitment.seed_sha256);
    if (!bag.draw) {
      verdict.className = "verdict";
      setText(verdict, "Not drawn yet");
      setText("#reason", `The draw is at ${formatTime(bag.draw_at)}; ${bag.entries} entries so far.`);
      return;
    }
    const draw = bag.draw;
    setText("#seed", draw.seed);
    setText("#entry-count", String(draw.entries.length));
    setText("#entries-sha", draw.entries_sha256);
    $("#entries").replaceChildren(...draw.entries.map((entry) => h("li", {}, entry)));
    const names = new Map((bag.winners ?? []).map((w) => [w.id, w.name]));
    $("#winners").replaceChildren(...draw.winners.map(
      (winner) => h("li", {}, `${names.get(winner) || "?"} (${winner})`)));
    const problem = await drawProblem(bag.commitment, draw);
    verdict.className = problem === null ? "verdict valid" : "verdict invalid";
    setText(verdict, problem === null ? "✓ The winners are right" : "✗ This draw does not check out");
    setText("#reason", problem === null
      ? "The seed matches its commitment and the winners follow from it and the entries."
      : REASONS[problem] ?? problem);
  } catch (error) {
    const unknown = error instanceof ApiError && error.status === 404;
    verdict.className = "verdict invalid";
    setText(verdict, unknown ? "✗ Unknown lucky bag" : "Could not check");
    setText("#reason", unknown ? "No lucky bag with this id." : describeError(error));
    if (!unknown) showError(error);
  }
}

main();
