import { randomInt } from "node:crypto";

/** Digits and capitals without 0/O and 1/I, so a code read aloud or typed is unambiguous. */
export const SHORT_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
export const SHORT_CODE_LENGTH = 6;

/** A random short code: 32^6 ≈ 10^9 possibilities; collisions are retried by the store. */
export function newShortCode(length = SHORT_CODE_LENGTH): string {
  let code = "";
  for (let i = 0; i < length; i++) code += SHORT_CODE_ALPHABET[randomInt(SHORT_CODE_ALPHABET.length)];
  return code;
}

/** As typed by a person: case-insensitive, spaces and dashes ignored. */
export function normalizeShortCode(typed: string): string {
  return typed.replace(/[\s-]/g, "").toUpperCase();
}

/**
 * Every short code one typing slip from `typed`: a character changed, dropped,
 * added, or two neighbours swapped (a 0, O, 1 or I typed for a code letter
 * is a changed character). Used to suggest, never to decide, where a mistyped payment belongs.
 */
export function oneSlipAway(typed: string, length = SHORT_CODE_LENGTH): string[] {
  const out = new Set<string>();
  const A = SHORT_CODE_ALPHABET;
  const valid = (s: string) => s.length === length && [...s].every((c) => A.includes(c));
  if (typed.length > length + 1 || typed.length < length - 1) return [];
  for (let i = 0; i < typed.length; i++) {
    for (const c of A) out.add(typed.slice(0, i) + c + typed.slice(i + 1));
    out.add(typed.slice(0, i) + typed.slice(i + 1));
    if (i + 1 < typed.length) out.add(typed.slice(0, i) + typed[i + 1] + typed[i] + typed.slice(i + 2));
  }
  for (let i = 0; i <= typed.length; i++) for (const c of A) out.add(typed.slice(0, i) + c + typed.slice(i));
  out.delete(typed);
  return [...out].filter(valid);
}
