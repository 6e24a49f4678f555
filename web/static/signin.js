// @ts-check
// Who the page acts as: stored tokens per page, `#token=` links, the viewer's guest session and
// its confirmation of a link's account, the phone sign-in dialog (a buyer account), and the
// staff pages' token sign-in (studio, inspector desk).
import {
  $, $as, ApiError, api, client, describeError, hideBanner, randomInt, showError, showResult, setText,
} from "./lr.js";

/** @import { Rest } from "./lr.js" */
/** @import { OtpSent, Role, Session, User } from "./types.js" */

const TOKEN_PREFIX = "liveroom.token.";

// ---------------------------------------------------------------- tokens

/**
 * The token of this page's `#token=...` link, taken out of the address bar (screenshots,
 * shared links), and not stored: the caller decides whether to adopt it.
 * @returns {string | null}
 */
export function linkToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return decodeURIComponent(match[1]);
}

/**
 * The stored token of this page's scope, or null.
 * @param {string} scope
 */
export function storedToken(scope) {
  return localStorage.getItem(TOKEN_PREFIX + scope);
}

/**
 * Keep `token` for the scope's next visit (null forgets it).
 * @param {string} scope
 * @param {string | null} token
 */
export function storeToken(scope, token) {
  if (token) localStorage.setItem(TOKEN_PREFIX + scope, token);
  else localStorage.removeItem(TOKEN_PREFIX + scope);
}

/**
 * The token for a staff page (`scope`): a `#token=...` link signs in at once (these links are
 * the sign-in), else the stored one. Viewer pages never do this (see `viewerSession`): there a
 * link's token needs the person's confirmation.
 * @param {string} scope
 */
export function pageToken(scope) {
  const offered = linkToken();
  if (offered) storeToken(scope, offered);
  return storedToken(scope);
}

/**
 * Whether an error code means the token itself was refused (missing, expired, forged...).
 * @param {string | undefined | null} code
 */
export function isTokenError(code) {
  return code === "unauthorized" || (typeof code === "string" && code.startsWith("token_"));
}

/**
 * Who a token belongs to, or null when the server refuses it.
 * @param {string} token
 * @returns {Promise<User | null>}
 */
export async function whoIs(token) {
  try {
    return (await api("GET", "/api/me", { token })).user;
  } catch (error) {
    if (error instanceof ApiError && isTokenError(error.code)) return null;
    throw error;
  }
}

// ---------------------------------------------------------------- viewers

/**
 * A guest session for a first-time viewer.
 * @param {string} [name]
 * @returns {Promise<Session>}
 */
export async function guestSession(name) {
  const guestName = name || `Guest ${1000 + randomInt(9000)}`;
  return api("POST", "/api/session", { body: { name: guestName } });
}

/**
 * A link with `#token=` would make this browser act as whoever made the link (who then sees
 * the address typed at checkout), so it signs in only once the person says so in the page's
 * `#switch-dialog`.
 * @param {string} scope
 */
async function confirmLinkToken(scope) {
  const offered = linkToken();
  const current = storedToken(scope);
  if (!offered || offered === current) return;
  const [offeredUser, currentUser] = await Promise.all([
    whoIs(offered), current ? whoIs(current) : null]);
  if (!offeredUser) return;
  const dialog = $as("#switch-dialog", HTMLDialogElement);
  setText("#switch-name", offeredUser.name);
  setText("#switch-name-again", offeredUser.name);
  setText("#switch-kind", offeredUser.phone_verified ? "a buyer account" : "a guest session");
  setText("#switch-stay", currentUser ? `Stay as ${currentUser.name}` : "Stay a new guest");
  const accepted = await new Promise((resolve) => {
    $("#switch-accept").onclick = () => resolve(true);
    $("#switch-stay").onclick = () => resolve(false);
    dialog.oncancel = () => resolve(false);
    dialog.showModal();
  });
  dialog.close();
  if (accepted) storeToken(scope, offered);
}

/**
 * The viewer's session: a `#token=` link's account if the person confirms it, else the stored
 * session, else a new guest session (also when the stored one is refused), kept for next time.
 * @param {string} scope
 * @returns {Promise<Session>}
 */
export async function viewerSession(scope) {
  await confirmLinkToken(scope);
  const token = storedToken(scope);
  if (token) {
    const user = await whoIs(token);
    if (user) return { token, user };
    storeToken(scope, null); // an old guest session: start a new one
  }
  const session = await guestSession();
  storeToken(scope, session.token);
  return session;
}

/**
 * Sign in with a one-time code sent to the person's phone, in the page's `#signin-dialog` (a
 * buyer account: flash-sale limits count people, and a guest session is free to make).
 * `current` (the guest session) goes along, so the room counts the guest and the account as one
 * viewer and the account keeps the guest's name. Resolves to the buyer's session, or null when
 * the person cancels.
 * @param {Session | null} current
 * @returns {Promise<Session | null>}
 */
export async function signInWithPhone(current) {
  const dialog = $as("#signin-dialog", HTMLDialogElement);
  const phoneForm = $as("#signin-phone-form", HTMLFormElement);
  const codeForm = $as("#signin-code-form", HTMLFormElement);
  const codeInput = $as("#signin-code", HTMLInputElement);
  phoneForm.hidden = false;
  codeForm.hidden = true;
  $("#signin-demo").hidden = true;
  showResult("#signin-result", "", true);
  /** @type {string | null} */
  let phone = null;
  /** @type {Promise<Session | null>} */
  const signedIn = new Promise((resolve) => {
    $("#signin-cancel").onclick = () => resolve(null);
    dialog.oncancel = () => resolve(null);
    phoneForm.onsubmit = async (event) => {
      event.preventDefault();
      try {
        /** @type {OtpSent} */
        const sent = await api("POST", "/api/accounts/otp",
          { body: { phone: $as("#signin-phone", HTMLInputElement).value } });
        phone = sent.phone;
        phoneForm.hidden = true;
        codeForm.hidden = false;
        showResult("#signin-result", `Code sent to ${sent.phone}.`, true);
        if (sent.code) {
          // A demo or test server says the code instead of texting it.
          codeInput.value = sent.code;
          setText("#signin-demo", `Demo server: your code is ${sent.code}.`);
          $("#signin-demo").hidden = false;
        }
        codeInput.focus();
      } catch (error) {
        showResult("#signin-result", describeError(error), false);
      }
    };
    codeForm.onsubmit = async (event) => {
      event.preventDefault();
      try {
        resolve(await api("POST", "/api/accounts/verify", {
          token: current ? current.token : null,
          body: { phone, code: codeInput.value.trim(), name: current ? current.user.name : undefined },
        }));
      } catch (error) {
        showResult("#signin-result", describeError(error), false);
      }
    };
  });
  dialog.showModal();
  const session = await signedIn;
  dialog.close();
  return session;
}

// ---------------------------------------------------------------- staff pages

/**
 * The sign-in of a staff page (the studio, the inspector desk): a `#token=` link or the stored
 * token signs in at once; otherwise, or when the token is refused or of the wrong role, the
 * page's `#signin` card asks for one (`#signin-form`, `#signin-token`) and the signed-in part
 * stays hidden.
 */
export class StaffSignIn {
  /**
   * @param {object} options
   * @param {string} options.scope the stored token's scope
   * @param {Role[]} options.roles who may use the page
   * @param {string} options.tokenName what to ask for, e.g. "anchor token"
   * @param {string} options.pageName what the page is called, e.g. "the studio"
   * @param {HTMLElement} options.content the part of the page shown once signed in
   * @param {(rest: Rest, me: User) => Promise<string | null>} [options.admit] the page's own
   *   check once the role fits: a message refuses the sign-in with it
   * @param {(rest: Rest, me: User) => unknown} options.onSignedIn the page's start, once its
   *   signed-in part shows
   */
  constructor({ scope, roles, tokenName, pageName, content, admit = async () => null, onSignedIn }) {
    this.scope = scope;
    this.roles = roles;
    this.tokenName = tokenName;
    this.pageName = pageName;
    this.content = content;
    this.admit = admit;
    this.onSignedIn = onSignedIn;
    $as("#signin-form", HTMLFormElement).addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn($as("#signin-token", HTMLInputElement).value.trim()).catch(showError);
    });
  }

  /** Sign in with the link's or the stored token, or ask for one. */
  async start() {
    const token = pageToken(this.scope);
    if (!token) {
      this.ask();
      return;
    }
    try {
      await this.signIn(token);
    } catch (error) {
      showError(error);
    }
  }

  /**
   * @param {string} token
   * @returns {Promise<boolean>} whether the page is now signed in
   */
  async signIn(token) {
    const rest = client(token);
    /** @type {User} */
    let me;
    try {
      me = (await rest.get("/api/me")).user;
    } catch (error) {
      if (!(error instanceof ApiError && isTokenError(error.code))) throw error;
      this.refused(error);
      return false;
    }
    if (!this.roles.includes(me.role)) {
      this.ask(`You are signed in as ${me.name} (${me.role}); ${this.pageName} needs an ${this.tokenName}.`);
      return false;
    }
    const refusal = await this.admit(rest, me);
    if (refusal) {
      this.ask(refusal);
      return false;
    }
    storeToken(this.scope, token);
    $("#signin").hidden = true;
    this.content.hidden = false;
    hideBanner();
    await this.onSignedIn(rest, me);
    return true;
  }

  /**
   * The server refused the token (expired, forged...): forget it and ask for a fresh one.
   * @param {ApiError} [error] what the server said, if it answered a request
   */
  refused(error) {
    storeToken(this.scope, null);
    const why = error ? ` (${describeError(error)})` : "";
    this.ask(`Your ${this.tokenName} was refused${why}. Paste a fresh one.`);
  }

  /**
   * Show the sign-in card (with why, if `message`) in place of the page.
   * @param {string} [message]
   */
  ask(message) {
    $("#signin").hidden = false;
    this.content.hidden = true;
    if (message) showError(message);
  }
}
