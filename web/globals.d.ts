// Globals the pages use that no module declares (type-checking only; not served).
import type { io as connectIo } from "socket.io-client";

declare global {
  /** socket.io-client's browser build, loaded by `<script src="/assets/socket.io.min.js">`
   * before the page's modules; absent if that script failed to load. */
  const io: typeof connectIo | undefined;
  /** hls.js's browser build, loaded on demand from `/assets/hls.min.js` (LL-HLS playback). */
  interface Window { Hls?: typeof HlsPlayer }

  /** The part of hls.js the pages use. */
  class HlsPlayer {
  constructor(config?: Record<string, unknown>);
  static isSupported(): boolean;
  static Events: { ERROR: string; MANIFEST_PARSED: string };
  loadSource(url: string): void;
  attachMedia(media: HTMLMediaElement): void;
  on(event: string, listener: (event: string, data: { fatal?: boolean; type?: string; details?: string }) => void): void;
  startLoad(): void;
  destroy(): void;
  readonly latency: number;
}
}
