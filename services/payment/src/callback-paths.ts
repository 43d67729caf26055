// Where Daraja calls us back. Safaricom refuses registered URLs holding words
// such as "mpesa" or "query" (see the Daraja notes), and does not say whether
// STK and B2C callback URLs are checked the same way, so every URL we hand out
// keeps them out. The old /mpesa/ prefix is still served: attempts pushed
// before the change carry it until they settle.

import { randomBytes } from "node:crypto";
import { bannedUrlWord } from "./daraja/client.js";

export type CallbackKind = "stk" | "b2c/result" | "b2c/timeout" | "status/result" | "status/timeout" | "balance/result" | "balance/timeout" | "reversal/result" | "reversal/timeout";

/** The prefix of every callback URL handed to Daraja now. */
export const CALLBACK_PREFIX = "/daraja/";
/** Served for callbacks of attempts made before the prefix changed. */
export const LEGACY_CALLBACK_PREFIX = "/mpesa/";

export const CALLBACK_ROUTE = /^\/(?:daraja|mpesa)\/(stk|b2c\/result|b2c\/timeout|status\/result|status\/timeout|balance\/result|balance\/timeout|reversal\/result|reversal\/timeout)\/([A-Za-z0-9_-]{16,64})$/;

export function isCallbackPath(path: string): boolean {
  return path.startsWith(CALLBACK_PREFIX) || path.startsWith(LEGACY_CALLBACK_PREFIX);
}

export function callbackUrl(base: string, kind: CallbackKind, token: string): string {
  return `${base.replace(/\/$/, "")}${CALLBACK_PREFIX}${kind}/${token}`;
}

/** Draws of a callback token before giving up: one in about 360 holds a banned word, so 8 all doing so never happens. */
const TOKEN_DRAWS = 8;

/**
 * A callback URL's secret token: 24 random bytes (base64url), drawn again while it holds a word kept out of the
 * URLs (BANNED_URL_WORDS: "exe", "cmd", "sql" come up in about one random token in 360).
 */
export function newCallbackToken(): string {
  for (let draw = 0; draw < TOKEN_DRAWS; draw++) {
    const token = randomBytes(24).toString("base64url");
    if (!bannedUrlWord(token)) return token;
  }
  throw new Error(`no callback token free of banned words in ${TOKEN_DRAWS} draws`);
}
