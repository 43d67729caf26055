// Revoked sessions, as the gateway must know them: an access token stays
// valid by signature until it expires, so auth records each revoked session in
// the shared cache (Redis) for longer than any token lives, and the gateway
// refuses tokens of those sessions.
import type { Cache } from "./cache.js";

const key = (sessionId: string) => `revoked-session:${sessionId}`;

/** Longest an access token may live (auth allows up to an hour), so the mark outlives every token. */
export const REVOCATION_TTL_SECONDS = 3_600 + 60;

export async function markSessionRevoked(cache: Cache, sessionId: string): Promise<void> {
  await cache.set(key(sessionId), "1", REVOCATION_TTL_SECONDS);
}

/**
 * Asks the cache whether a session was revoked, remembering each answer for
 * `memoryMs` (default 2 s) so a busy gateway asks Redis once per session per
 * interval: a revocation takes effect within that time.
 */
export function revocationChecker(cache: Cache, memoryMs = 2_000, maxEntries = 50_000) {
  const memory = new Map<string, { revoked: boolean; until: number }>();
  return async (sessionId: string): Promise<boolean> => {
    const now = Date.now();
    const known = memory.get(sessionId);
    if (known && known.until > now) return known.revoked;
    const revoked = (await cache.get(key(sessionId))) !== null;
    if (memory.size >= maxEntries) memory.clear(); // bounded; a cleared entry is simply asked again
    memory.set(sessionId, { revoked, until: now + memoryMs });
    return revoked;
  };
}
