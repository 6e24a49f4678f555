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
   */
  constructor(room, getSocket, video, overlay, unmuteButton, getToken = () => null) {
    this.room = room;
    this.getSocket = getSocket;
    this.video = video;
    this.overlay = overlay;
    this.unmuteButton = unmuteButton;
    this.getToken = getToken;
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
        this.unmuteButton.hidden = !this.video.muted;
      } else if (pc.connectionState === "failed") {
        this.say("The video connection failed. Retrying…");
        setTimeout(() => this.start(), 2000);
      }
    });
    try {
      await negotiate(this.getSocket(), pc, "rtc:watch", this.room);
    } catch (error) {
      if (pc === this.pc) this.say(`The video could not start: ${describeError(error)} It retries when the host is live.`);
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
    this.video.srcObject = null;
    this.unmuteButton.hidden = true;
  }

  /** @param {string} text what the overlay says ("" hides it) */
  say(text) {
    this.overlay.textContent = text;
    this.overlay.hidden = !text;
  }
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
    pc.addTransceiver(track, {
      direction: "sendonly", streams: [stream], sendEncodings: [{ maxBitrate }],
    });
  }
  try {
    await negotiate(socket, pc, "rtc:publish", room);
  } catch (error) {
    pc.close();
    throw error;
  }
  return pc;
}
