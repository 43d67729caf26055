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
