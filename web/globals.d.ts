// Globals the pages use that no module declares (type-checking only; not served).
import type { io as connectIo } from "socket.io-client";

declare global {
  /** socket.io-client's browser build, loaded by `<script src="/assets/socket.io.min.js">`
   * before the page's modules; absent if that script failed to load. */
  const io: typeof connectIo | undefined;
}
