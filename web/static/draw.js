// @ts-check
// The lucky draw's check, in the browser: the same procedure as docs/verification.md ("Lucky
// draws") and scripts/verify_draw.py, on WebCrypto. It recomputes the winners from the published
// seed and entries; the signatures are checked offline with the platform's public key.

/** @import { LuckyCommitment, LuckyDraw } from "./types.js" */

const SPACE = 1n << 256n;
const encoder = new TextEncoder();

/**
 * @param {Uint8Array} bytes
 * @returns {string}
 */
function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * @param {string} text lower-case hex
 * @returns {Uint8Array | null}
 */
function fromHex(text) {
  if (!/^([0-9a-f]{2})*$/.test(text)) return null;
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/**
 * @param {Uint8Array} data
 * @returns {Promise<Uint8Array>}
 */
async function sha256(data) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", /** @type {BufferSource} */ (data)));
}

/**
 * @param {Uint8Array} bytes
 * @returns {bigint}
 */
function bigEndian(bytes) {
  return BigInt(`0x${hex(bytes) || "0"}`);
}

/**
 * The winners among `entries` (sorted, unique) for `seed`: the partial Fisher-Yates shuffle
 * driven by HMAC-SHA256(seed, sha256(entries joined by "\n") || counter).
 * @param {Uint8Array} seed
 * @param {string[]} entries
 * @param {number} winners
 * @returns {Promise<string[]>}
 */
export async function winnersOf(seed, entries, winners) {
  const digest = await sha256(encoder.encode(entries.join("\n")));
  const key = await crypto.subtle.importKey(
    "raw", /** @type {BufferSource} */ (seed), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  let counter = 0n;
  /** @param {number} m */
  const uniform = async (m) => {
    const bound = BigInt(m);
    const limit = SPACE - (SPACE % bound);
    for (;;) {
      const message = new Uint8Array(40);
      message.set(digest, 0);
      new DataView(message.buffer).setBigUint64(32, counter);
      counter += 1n;
      const x = bigEndian(new Uint8Array(await crypto.subtle.sign("HMAC", key, message)));
      if (x < limit) return Number(x % bound);
    }
  };
  const pool = entries.slice();
  const k = Math.min(winners, pool.length);
  for (let i = 0; i < k; i += 1) {
    const j = i + await uniform(pool.length - i);
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, k);
}

/**
 * @param {string} a
 * @param {string} b
 * @returns {number}
 */
function byUtf8(a, b) {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

/**
 * Steps 2-5 of the check: null if the draw keeps the commitment's promise, else the reason
 * (`not_the_same_draw`, `seed_mismatch`, `drawn_too_early`, `entries_mismatch`,
 * `winners_mismatch`, `malformed`).
 * @param {LuckyCommitment} commitment
 * @param {LuckyDraw} draw
 * @returns {Promise<string | null>}
 */
export async function drawProblem(commitment, draw) {
  if (draw.lucky_bag !== commitment.lucky_bag || draw.seed_sha256 !== commitment.seed_sha256) {
    return "not_the_same_draw";
  }
  const seed = fromHex(draw.seed);
  if (seed === null) return "malformed";
  if (hex(await sha256(seed)) !== commitment.seed_sha256) return "seed_mismatch";
  if (draw.closed_at < commitment.draw_at) return "drawn_too_early";
  const sorted = Array.from(new Set(draw.entries)).sort(byUtf8);
  if (sorted.length !== draw.entries.length || sorted.some((e, i) => e !== draw.entries[i])) {
    return "entries_mismatch";
  }
  if (hex(await sha256(encoder.encode(draw.entries.join("\n")))) !== draw.entries_sha256) {
    return "entries_mismatch";
  }
  const winners = await winnersOf(seed, draw.entries, commitment.winners);
  if (winners.length !== draw.winners.length || winners.some((w, i) => w !== draw.winners[i])) {
    return "winners_mismatch";
  }
  return null;
}
