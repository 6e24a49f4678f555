// @ts-check
// WebRTC on the pages: the viewer's receiver (`rtc:watch`) and the anchor's sender (`rtc:publish`).
import { ackError, ApiError, api, call, describeError } from "./lr.js";

/** @import { Socket } from "socket.io-client" */
/** @import { Ack, Media } from "./types.js" */

const ICE_GATHER_TIMEOUT_MS = 3000;
export const MAX_VIDEO_BITRATE = 1_200_000; // bits per second: phones on 4G can follow
export const MAX_AUDIO_BITRATE = 64_000;

/**
 * The ICE servers (STUN/TURN, with TURN credentials) the server tells signed-in pages to use:
 * `GET /api/rtc/config` → `{"ice_servers": [{"urls": [...], "username"?, "credential"?}]}`.
 * A server without that endpoint (404) has none to offer: host candidates only (LAN, loopback).
 * @param {string | null} token
 * @returns {Promise<RTCIceServer[]>}
 */
export async function iceServers(token) {
  try {
    const config = await api("GET", "/api/rtc/config", { token });
    return Array.isArray(config && config.ice_servers) ? config.ice_servers : [];
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return [];
    throw error;
  }
}

/**
 * The server takes no trickled candidates: send the offer once gathering is done.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<void>}
 */
export function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ICE_GATHER_TIMEOUT_MS); // host candidates are enough on a LAN
  });
}

/**
 * Offer, and apply the server's answer (`rtc:publish` or `rtc:watch`).
 * @param {Socket} socket
 * @param {RTCPeerConnection} pc
 * @param {"rtc:publish" | "rtc:watch"} event
 * @param {string} room
 */
async function negotiate(socket, pc, event, room) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  const offer = pc.localDescription;
  if (!offer) throw new ApiError("invalid_offer", "The browser made no offer. Reload the page.");
  /** @type {Ack<{sdp: string, type?: RTCSdpType}>} */
  const answer = await call(socket, event, { room, sdp: offer.sdp, type: offer.type }, 20_000);
  if (!answer.ok) {
    const err = ackError(answer);
    throw new ApiError(err.code, err.message);
  }
  await pc.setRemoteDescription({ type: answer.type || "answer", sdp: answer.sdp });
}

/** Viewer side: plays the room's broadcast in `video` when the room is live. */
export class Watcher {
  /**
   * @param {string} room
   * @param {() => Socket} getSocket
   * @param {HTMLVideoElement} video
   * @param {HTMLElement} overlay where the video's state is said ("Connecting…")
   * @param {HTMLElement} unmuteButton shown while the video plays muted
   * @param {() => string | null} [getToken]
   * @param {(() => void) | null} [onSeatsFull] every WebRTC seat is taken (`seats_full`)
   * @param {HTMLElement | null} [indicator] says "WebRTC · live" while connected
   */
  constructor(room, getSocket, video, overlay, unmuteButton, getToken = () => null,
    onSeatsFull = null, indicator = null) {
    this.room = room;
    this.getSocket = getSocket;
    this.video = video;
    this.overlay = overlay;
    this.unmuteButton = unmuteButton;
    this.getToken = getToken;
    this.onSeatsFull = onSeatsFull;
    this.indicator = indicator;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    this.live = false;
    /** @type {number | null} when the watched broadcast started */
    this.since = null;
    this.starting = false;
    unmuteButton.addEventListener("click", () => {
      video.muted = false;
      video.play().catch(() => {});
      unmuteButton.hidden = true;
    });
  }

  /**
   * `media` push or the room state's `media`: watch when live, stop when not.
   * @param {Media | null} media
   */
  onLive(media) {
    const wasLive = this.live;
    const since = (media && media.since_ms) || null;
    this.live = Boolean(media && media.live);
    // A new broadcast (re-publish) closes our connection on the server: watch it again.
    const replaced = this.live && wasLive && since && this.since && since !== this.since;
    const dead = !this.pc || ["failed", "closed"].includes(this.pc.connectionState);
    this.since = this.live ? since : null;
    if (this.live && (!wasLive || dead || replaced)) this.start();
    if (!this.live && wasLive) this.stop("The host's video has stopped. It restarts here when they go live again.");
  }

  async start() {
    if (!this.live || this.starting) return;
    this.starting = true;
    this.close();
    this.say("Connecting to the video…");
    let servers;
    try {
      servers = await iceServers(this.getToken());
    } catch (error) {
      this.starting = false;
      this.say(`The video could not start: ${describeError(error)} It retries when the host is live.`);
      return;
    }
    if (!this.live) {
      this.starting = false;
      return;
    }
    const pc = new RTCPeerConnection({ iceServers: servers });
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.addEventListener("track", (event) => {
      stream.addTrack(event.track);
      this.video.srcObject = stream;
      this.video.play().catch(() => {});
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === "connected") {
        this.say("");
        if (this.indicator) {
          this.indicator.textContent = "WebRTC · live";
          this.indicator.hidden = false;
        }
        this.unmuteButton.hidden = !this.video.muted;
      } else if (pc.connectionState === "failed") {
        this.say("The video connection failed. Retrying…");
        setTimeout(() => this.start(), 2000);
      }
    });
    try {
      await negotiate(this.getSocket(), pc, "rtc:watch", this.room);
    } catch (error) {
      if (error instanceof ApiError && error.code === "seats_full" && this.onSeatsFull) {
        this.close();
        this.onSeatsFull();
      } else if (pc === this.pc) {
        this.say(`The video could not start: ${describeError(error)} It retries when the host is live.`);
      }
    } finally {
      this.starting = false;
    }
  }

  /** @param {string} message why the video stopped */
  stop(message) {
    this.close();
    this.say(message);
  }

  close() {
    if (this.pc) this.pc.close();
    this.pc = null;
    if (this.indicator) this.indicator.hidden = true;
    this.video.srcObject = null;
    this.unmuteButton.hidden = true;
  }

  /** @param {string} text what the overlay says ("" hides it) */
  say(text) {
    this.overlay.textContent = text;
    this.overlay.hidden = !text;
  }
}

/** @returns {Promise<typeof HlsPlayer>} hls.js, loaded once on demand */
function loadHlsJs() {
  if (window.Hls) return Promise.resolve(window.Hls);
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "/assets/hls.min.js";
    script.addEventListener("load", () => window.Hls ? resolve(window.Hls) : reject(new Error("hls.js did not load")));
    script.addEventListener("error", () => reject(new Error("hls.js did not load")));
    document.head.append(script);
  });
}

/**
 * Viewer side over LL-HLS (`GET /hls/{room}/index.m3u8`), played by hls.js (or natively where
 * the browser plays HLS): the crowd's path, a few seconds behind. Same interface as `Watcher`.
 */
export class HlsWatcher {
  /**
   * @param {string} room
   * @param {HTMLVideoElement} video
   * @param {HTMLElement} overlay
   * @param {HTMLElement} unmuteButton
   * @param {HTMLElement} indicator says "LL-HLS · 2.1 s behind"
   */
  constructor(room, video, overlay, unmuteButton, indicator) {
    this.room = room;
    this.video = video;
    this.overlay = overlay;
    this.unmuteButton = unmuteButton;
    this.indicator = indicator;
    /** @type {HlsPlayer | null} */
    this.player = null;
    this.live = false;
    /** @type {number | null} */
    this.since = null;
    /** @type {ReturnType<typeof setInterval> | null} */
    this.ticker = null;
    unmuteButton.addEventListener("click", () => {
      video.muted = false;
      video.play().catch(() => {});
      unmuteButton.hidden = true;
    });
  }

  /** @param {Media | null} media */
  onLive(media) {
    const wasLive = this.live;
    const since = (media && media.since_ms) || null;
    this.live = Boolean(media && media.live);
    const replaced = this.live && wasLive && since && this.since && since !== this.since;
    this.since = this.live ? since : null;
    if (this.live && (!wasLive || !this.player || replaced)) this.start();
    if (!this.live && wasLive) this.stop("The host's video has stopped. It restarts here when they go live again.");
  }

  async start() {
    this.close();
    this.say("Connecting to the video…");
    let Hls;
    try {
      Hls = await loadHlsJs();
    } catch (error) {
      this.say(`The video could not start: ${describeError(error)}`);
      return;
    }
    if (!this.live || this.player) return;
    // The worker would be a blob: script, which the pages' CSP refuses.
    const player = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.2, enableWorker: false });
    this.player = player;
    player.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal || player !== this.player) return;
      // The packager writes its first part a moment after the room goes live: try again.
      this.say("Waiting for the video…");
      setTimeout(() => { if (player === this.player && this.live) this.start(); }, 1000);
    });
    player.on(Hls.Events.MANIFEST_PARSED, () => {
      this.say("");
      this.video.play().catch(() => {});
      this.unmuteButton.hidden = !this.video.muted;
    });
    player.loadSource(`/hls/${encodeURIComponent(this.room)}/index.m3u8`);
    player.attachMedia(this.video);
    this.ticker = setInterval(() => {
      const behind = player.latency;
      this.indicator.textContent = Number.isFinite(behind) && behind > 0
        ? `LL-HLS · ${behind.toFixed(1)} s behind` : "LL-HLS";
      this.indicator.hidden = false;
    }, 1000);
  }

  /** @param {string} message */
  stop(message) {
    this.close();
    this.say(message);
  }

  close() {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    if (this.player) this.player.destroy();
    this.player = null;
    this.unmuteButton.hidden = true;
    this.indicator.hidden = true;
  }

  /** @param {string} text */
  say(text) {
    this.overlay.textContent = text;
    this.overlay.hidden = !text;
  }
}

/**
 * `GET /api/rooms/{id}/replay`.
 * @typedef {object} Replay
 * @property {string} playlist
 * @property {number} duration_ms
 * @property {{at_ms: number, kind: "pin" | "sale", title: string, product: string, sale?: string}[]} chapters
 */

/** @param {number} ms @returns {string} "m:ss" */
function clockText(ms) {
  const seconds = Math.floor(ms / 1000);
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

/**
 * After the show: play the room's replay (hls.js, or native HLS) with its chapters, the products
 * pinned and the flash sales run during the show, as buttons that seek there. The replay is written a moment after
 * the broadcast ends, so a missing one is asked for again a few times.
 * @param {string} room
 * @param {HTMLVideoElement} video
 * @param {HTMLElement} overlay
 * @param {HTMLElement} chapters a list the chapters go into
 * @returns {Promise<boolean>} whether there is a replay
 */
export async function playReplay(room, video, overlay, chapters) {
  /** @type {Replay | null} */
  let replay = null;
  for (let attempt = 0; attempt < 5 && !replay; attempt += 1) {
    try {
      replay = await api("GET", `/api/rooms/${encodeURIComponent(room)}/replay`);
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "no_replay") return false;
      await new Promise((resolve) => { setTimeout(resolve, 1500); });
    }
  }
  if (!replay) return false;
  const Hls = await loadHlsJs();
  const player = new Hls({ enableWorker: false });
  player.on(Hls.Events.MANIFEST_PARSED, () => { video.play().catch(() => {}); });
  player.on(Hls.Events.ERROR, (_event, data) => {
    video.dataset.hlsError = `${data.type || ""} ${data.details || ""}`.trim();
    if (data.fatal) {
      overlay.textContent = "The replay could not play. Reload the page to try again.";
      overlay.hidden = false;
    }
  });
  player.loadSource(replay.playlist);
  player.attachMedia(video);
  video.controls = true;
  overlay.hidden = true;
  chapters.replaceChildren(...replay.chapters.map((chapter) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    const what = chapter.kind === "sale" ? "flash sale" : "pinned";
    button.textContent = `${clockText(chapter.at_ms)} · ${chapter.title} (${what})`;
    button.dataset.kind = chapter.kind;
    button.addEventListener("click", () => {
      video.currentTime = chapter.at_ms / 1000;
      video.play().catch(() => {});
    });
    item.append(button);
    return item;
  }));
  chapters.hidden = replay.chapters.length === 0;
  return true;
}

const LOW_DATA_KEY = "liveroom.lowData";

/**
 * The viewer's video path: WebRTC (sub-second) while the room's WebRTC seats are free, LL-HLS
 * (a few seconds behind, served by HTTP caches) for the rest of the crowd, for a viewer who
 * chose "low data", or with `?hls=1`. A viewer keeps the path it got (no flapping when seats
 * free up), except when it changes its low-data choice. Same interface as `Watcher`.
 */
export class VideoPath {
  /**
   * @param {{room: string, getSocket: () => Socket, video: HTMLVideoElement,
   *   overlay: HTMLElement, unmuteButton: HTMLElement, indicator: HTMLElement,
   *   lowDataButton: HTMLButtonElement, getToken: () => string | null, forceHls: boolean}} parts
   */
  constructor(parts) {
    this.parts = parts;
    /** @type {Watcher | HlsWatcher | null} */
    this.current = null;
    /** @type {Media | null} */
    this.media = null;
    this.full = false;
    this.lowData = parts.forceHls || localStorage.getItem(LOW_DATA_KEY) === "1";
    parts.lowDataButton.addEventListener("click", () => {
      this.lowData = !this.lowData;
      localStorage.setItem(LOW_DATA_KEY, this.lowData ? "1" : "0");
      this.switchTo(this.wanted());
    });
    this.label();
  }

  /** @returns {"hls" | "webrtc"} */
  wanted() {
    if (this.parts.forceHls || this.lowData || this.full) return "hls";
    const media = this.media;
    const seatsTaken = media && typeof media.seats === "number" && (media.viewers || 0) >= media.seats;
    return seatsTaken ? "hls" : "webrtc";
  }

  /** @param {"hls" | "webrtc"} kind */
  switchTo(kind) {
    const now = this.current instanceof HlsWatcher ? "hls" : this.current ? "webrtc" : null;
    this.label();
    if (now === kind) return;
    if (this.current) this.current.close();
    const p = this.parts;
    this.current = kind === "hls"
      ? new HlsWatcher(p.room, p.video, p.overlay, p.unmuteButton, p.indicator)
      : new Watcher(p.room, p.getSocket, p.video, p.overlay, p.unmuteButton, p.getToken,
        () => { this.full = true; this.switchTo("hls"); }, p.indicator);
    this.current.onLive(this.media);
  }

  label() {
    const button = this.parts.lowDataButton;
    button.hidden = this.parts.forceHls;
    button.textContent = this.lowData ? "Real-time video" : "Low data";
    button.setAttribute("aria-pressed", String(this.lowData));
  }

  /** @param {Media | null} media */
  onLive(media) {
    this.media = media;
    if (!this.current) {
      if (media && media.live) this.switchTo(this.wanted());
      return;
    }
    this.current.onLive(media);
  }

  /** @param {string} message */
  stop(message) {
    if (this.current) this.current.stop(message);
  }
}

/**
 * Put H.264 first in a video transceiver's codec list, where the browser can send it: the
 * server then packages the broadcast into LL-HLS without re-encoding (docs/media.md).
 * @param {RTCRtpTransceiver} transceiver
 */
function preferH264(transceiver) {
  const capabilities = RTCRtpSender.getCapabilities("video");
  if (!capabilities || typeof transceiver.setCodecPreferences !== "function") return;
  const h264 = capabilities.codecs.filter((c) => c.mimeType.toLowerCase() === "video/h264");
  if (h264.length === 0) return;
  const others = capabilities.codecs.filter((c) => c.mimeType.toLowerCase() !== "video/h264");
  transceiver.setCodecPreferences([...h264, ...others]);
}

/**
 * Anchor side: publish camera and microphone, with the encoder bitrate capped.
 * @param {Socket} socket
 * @param {string} room
 * @param {MediaStream} stream
 * @param {string | null} [token]
 */
export async function publish(socket, room, stream, token = null) {
  const pc = new RTCPeerConnection({ iceServers: await iceServers(token) });
  for (const track of stream.getTracks()) {
    const maxBitrate = track.kind === "video" ? MAX_VIDEO_BITRATE : MAX_AUDIO_BITRATE;
    const transceiver = pc.addTransceiver(track, {
      direction: "sendonly", streams: [stream], sendEncodings: [{ maxBitrate }],
    });
    if (track.kind === "video") preferH264(transceiver);
  }
  try {
    await negotiate(socket, pc, "rtc:publish", room);
  } catch (error) {
    pc.close();
    throw error;
  }
  return pc;
}
