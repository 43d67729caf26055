// The tip page's key seed (request-key.ts), of the M-Pesa form's keys and the card form's, kept on the device for
// a while per code. The page's server makes a new seed at each render, so a page opened again after a lost answer
// (reloaded, or the QR scanned again into a new tab) sent the same tip under a new key: a second tip, and a second
// M-Pesa prompt or card charge while the first may have been paid. Kept, the same request is the same tip.
// Forgotten when a tip's page opens: a tip meant again after that is a new one.

/** How long a seed is kept: past an M-Pesa prompt's life, a tip asked for again is meant again. */
const KEPT_MS = 30 * 60_000;
/**
 * The cookie's life when the page's first answer sets it (middleware.ts): without scripts nothing renews it at Pay,
 * so it counts from the page's opening, long enough for a page left open a while before Pay. A tip's page ends it.
 */
export const SCRIPTLESS_SEED_SECONDS = 2 * 3600;
/**
 * The query parameter a tip's page adds when it reloads itself without scripts: only its first opening ends the seed.
 * Each reload ending it would end the seed of the code's page opened in another tab meanwhile, for a tip meant next.
 */
export const REFRESHED = "refreshed";
/**
 * Each form keeps its own seed: the M-Pesa form's is renewed after an answered refusal, and the card's, had it
 * been the same, would then have named a card tip confirmed before under another key: a second charge.
 */
export type SeedForm = "mpesa" | "card";
const storageKey = (shortCode: string, form: SeedForm) => `ttip.${form === "card" ? "card" : "tip"}-seed.${shortCode}`;

/**
 * The kept seed is in a cookie too (its code's path), which the page's server renders into the form: a page opened
 * again and paid before its script ran (a slow phone), or without scripts, sent the page's new seed, a second tip.
 * Without scripts the page's first answer sets it, a tip's page ends it (middleware.ts), an answered refusal renews it.
 */
export const SEED_COOKIE = "ttip_seed";
export const seedCookiePath = (shortCode: string) => `/t/${encodeURIComponent(shortCode)}`;
/** A seed as this page makes them (a UUID), as a cookie may carry it. */
export const isSeed = (value: string | undefined): value is string => value !== undefined && /^[0-9a-f-]{36}$/.test(value);
function setSeedCookie(shortCode: string, seed: string, maxAgeSeconds: number): void {
  if (typeof document === "undefined") return;
  document.cookie = `${SEED_COOKIE}=${encodeURIComponent(seed)}; path=${seedCookiePath(shortCode)}; max-age=${maxAgeSeconds}; samesite=lax`;
}

/** The seed `form` kept for `shortCode` within KEPT_MS, or `fresh`, kept from now. The page's own where storage is off. */
export function keptSeed(shortCode: string, fresh: string, form: SeedForm = "mpesa", now = Date.now()): string {
  try {
    const kept = JSON.parse(localStorage.getItem(storageKey(shortCode, form)) ?? "null") as { seed?: unknown; at?: unknown } | null;
    if (typeof kept?.seed === "string" && typeof kept.at === "number" && now - kept.at >= 0 && now - kept.at < KEPT_MS) return kept.seed;
    keepSeed(shortCode, fresh, form, now);
  } catch {
    // Storage off (a private window) or a value not ours: the page's seed.
  }
  return fresh;
}

/** Keeps `form`'s `seed` for `shortCode` from `now` (at each Pay, and the form's next seed after an answered refusal). */
export function keepSeed(shortCode: string, seed: string, form: SeedForm = "mpesa", now = Date.now()): void {
  try {
    localStorage.setItem(storageKey(shortCode, form), JSON.stringify({ seed, at: now }));
  } catch {
    // Storage off: each page keeps its own seed, as before.
  }
  // The card form has scripts, always: its seed needs no cookie for the server to render.
  if (form === "mpesa") setSeedCookie(shortCode, seed, Math.max(0, Math.floor((now + KEPT_MS - Date.now()) / 1000)));
}

/** Forgets both forms' seeds: a tip's page opened, a tip meant after is a new one. */
export function forgetSeed(shortCode: string): void {
  try {
    localStorage.removeItem(storageKey(shortCode, "mpesa"));
    localStorage.removeItem(storageKey(shortCode, "card"));
  } catch {
    // Storage off: nothing was kept.
  }
  setSeedCookie(shortCode, "", 0);
}
