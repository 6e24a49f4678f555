// @ts-check
// The room's chat as the pages show it (viewer room and studio): lines marked by the speaker's
// role, system lines, and the message form.
import { ackError, h } from "./lr.js";

/** @import { Ack, ChatMessage, ErrorInfo, Role } from "./types.js" */

/**
 * The mark before a staff member's name. Who is the host comes from the server's role for the
 * speaker in this room, never from the name (anyone can call themselves "Lin the Anchor").
 * @type {Partial<Record<Role, string>>}
 */
export const ROLE_MARKS = { anchor: "HOST", admin: "ADMIN", inspector: "INSPECTOR" };

const KEEP_LINES = 200;
// Closer than this to the bottom, the log follows new lines; further up, the person is reading.
const FOLLOW_WITHIN_PX = 40;

export class ChatLog {
  /**
   * @param {HTMLElement} list the `<ul>` of the log
   * @param {(message: ChatMessage) => Node | null} [extras] more for a message's line (the
   *   studio's moderation buttons)
   */
  constructor(list, extras = () => null) {
    this.list = list;
    this.extras = extras;
  }

  /** @param {ChatMessage[]} messages the room state's chat, oldest first */
  replace(messages) {
    this.list.replaceChildren();
    for (const message of messages) this.add(message);
  }

  /** @param {ChatMessage} message */
  add(message) {
    const mark = ROLE_MARKS[message.user.role];
    this.append(h("li", { class: "chat-line", dataset: { user: message.user.id } },
      mark ? h("span", { class: `role role-${message.user.role}` }, mark) : null,
      h("span", { class: "who" }, message.user.name),
      h("span", { class: "text" }, message.text),
      this.extras(message)));
  }

  /** @param {string} text what happened in the room (moderation), not said by anyone */
  system(text) {
    this.append(h("li", { class: "system" }, text));
  }

  /**
   * The name a user last chatted under here, or null.
   * @param {string} userId
   */
  nameOf(userId) {
    const line = this.list.querySelector(`li[data-user="${CSS.escape(userId)}"] .who`);
    return line ? line.textContent : null;
  }

  /** @param {HTMLElement} line */
  append(line) {
    const list = this.list;
    const following = list.scrollHeight - list.scrollTop - list.clientHeight < FOLLOW_WITHIN_PX;
    list.append(line);
    while (list.children.length > KEEP_LINES) list.children[0].remove();
    if (following || line.classList.contains("system")) list.scrollTop = list.scrollHeight;
  }
}

/**
 * The line a slow-mode change adds to the log.
 * @param {number | undefined} seconds
 */
export function slowModeText(seconds) {
  return seconds ? `Slow mode: one message every ${seconds} s.` : "Slow mode is off.";
}

/**
 * Send what is typed in `input` when `form` is submitted. The input is cleared as the message
 * goes, so a next message typed before the answer is not wiped by it; a refused message comes
 * back to resend (unless something new was typed meanwhile) and `onRefused` is told why.
 * @param {HTMLFormElement} form
 * @param {HTMLInputElement} input
 * @param {(text: string) => Promise<Ack<{}>>} send
 * @param {(error: ErrorInfo) => unknown} onRefused
 */
export function sendsChat(form, input, send, onRefused) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    const answer = await send(text);
    if (!answer.ok) {
      if (!input.value) input.value = text;
      await onRefused(ackError(answer));
    }
  });
}
