import { randomUUID } from "node:crypto";

/**
 * A new journal entry's id: a UUID version 7 (RFC 9562), its first 48 bits the time in
 * milliseconds, then 74 random bits. Entries are looked up by id (entries_pkey) and their lines
 * by entry id (postings_pkey); with ids in time order each entry adds its keys at the right end
 * of those two indexes, on pages a recent entry touched already, where random ids (version 4)
 * land anywhere. On a grown ledger that is a full-page image in the WAL after every checkpoint
 * for nearly each entry (bench/wallet-entry-ids.ts), and leaves split half full.
 *
 * Unique whatever the clock does: ids of the same millisecond differ in 74 random bits (a million
 * of them in one millisecond collide with odds of about 3 in 10^11). A clock set back only puts
 * later ids among earlier ones.
 */
export function timeOrderedUuid(now = Date.now()): string {
  // randomUUID draws from a cached pool of random bytes: its version 4 string's random digits
  // after the version digit are reused whole (the variant digit too, the same in both versions).
  const random = randomUUID();
  const time = now.toString(16).padStart(12, "0");
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${random.slice(15)}`;
}
