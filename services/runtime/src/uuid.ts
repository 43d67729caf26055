// UUIDs for the ids a tip makes many of: random (version 4) request ids, and ids in time order
// (version 7) for rows an index finds by id (tips, events, journal entries, deliveries). A
// version-7 id's first digits are its clock: shorten one by its last digits, never its first.
// node's randomUUID joins its 16 bytes' hex digits into the answer one string at a time: some
// twenty strings per id (~500 heap bytes, measured), and the answer is a tree of
// them until something reads it whole, so an id kept in a call's state keeps the tree alive
// through the young generation's collections. These are written as bytes into one buffer and
// read out as one flat string (the id's 36 characters, nothing else), from the same CSPRNG.
import { randomFillSync } from "node:crypto";

/** Entropy for this many ids is drawn at once, as node's randomUUID caches it (128 ids). */
const IDS_PER_DRAW = 128;
const ID_BYTES = 16;
const entropy = Buffer.allocUnsafe(ID_BYTES * IDS_PER_DRAW);
/** The next unused byte of `entropy`; at its end, a fresh draw is due. */
let drawn = entropy.length;

const HEX_DIGITS = Buffer.from("0123456789abcdef", "latin1");
/** Where each byte's two hex digits go in the text: 8-4-4-4-12, dashes between. */
const DIGITS_AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
const text = Buffer.alloc(36, "-", "latin1");

/** A UUID's text, any version, either case: what a uuid column takes (a 36-character id of other dashes and digits fails its cast). */
const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `s` is a UUID's text: check an id from a client before a query casts it to uuid. */
export function isUuid(s: string): boolean {
  return UUID_TEXT.test(s);
}

/** A random UUID (RFC 9562 version 4) in lower case, as crypto.randomUUID() gives one. */
export function uuidV4(): string {
  return written(4);
}

/**
 * A new row's id in time order: a UUID version 7 (RFC 9562), its first 48 bits the time in
 * milliseconds, then 74 random bits. A table's rows found by such an id add their keys at the right
 * end of its index, on pages a recent row touched already, where random ids (version 4) land
 * anywhere: on a grown table a full-page image in the WAL after every checkpoint for nearly each
 * row (bench/wallet-entry-ids.ts; bench/notification-wal.ts with BENCH_GROWN), and leaves split
 * half full. Unique whatever the clock does: ids of the same millisecond differ in 74 random bits
 * (a million of them in one millisecond collide with odds of about 3 in 10^11); a clock set back
 * only puts later ids among earlier ones. The id tells when it was made: only where that is no secret.
 */
export function timeOrderedUuid(now = Date.now()): string {
  return written(7, now);
}

/** An id of `version` from the next 16 bytes of entropy; with `time` (milliseconds, 48 bits), that in its first 6 bytes. */
function written(version: 4 | 7, time?: number): string {
  if (drawn === entropy.length) {
    randomFillSync(entropy);
    drawn = 0;
  }
  for (let i = 0; i < ID_BYTES; i++) {
    let byte = entropy[drawn + i];
    // The time big-endian in the first 6 bytes (past 2^32, so by division, not shifts).
    if (time !== undefined && i < 6) byte = Math.floor(time / 2 ** (8 * (5 - i))) & 0xff;
    // The version in the 7th byte's high nibble; the variant (10) in the 9th byte's high bits.
    else if (i === 6) byte = (byte & 0x0f) | (version << 4);
    else if (i === 8) byte = (byte & 0x3f) | 0x80;
    const at = DIGITS_AT[i];
    text[at] = HEX_DIGITS[byte >> 4];
    text[at + 1] = HEX_DIGITS[byte & 0x0f];
  }
  // Each byte is used once: an id's entropy never serves another.
  drawn += ID_BYTES;
  return text.toString("latin1", 0, 36);
}
