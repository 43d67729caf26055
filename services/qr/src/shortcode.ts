import assert from "node:assert/strict";
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

/**
 * A short code as digits, for the USSD string printed on cards: a phone dials only 0-9, * and #,
 * so *483*123*K7M4QX# could not be dialled. The code's value in base 32 (< 32^6, ten digits) and a
 * Luhn check digit: a digit typed wrong or two neighbours swapped names no other worker.
 */
export function shortCodeDigits(code: string): string {
  assert(code.length === SHORT_CODE_LENGTH, "a short code has six characters");
  let value = 0;
  for (const c of code) {
    const i = SHORT_CODE_ALPHABET.indexOf(c);
    assert(i >= 0, "a short code's character is in its alphabet");
    value = value * SHORT_CODE_ALPHABET.length + i;
  }
  const digits = String(value).padStart(DIALLED_LENGTH - 1, "0");
  return digits + luhnCheckDigit(digits);
}

/** The short code that `typed` (as dialled: shortCodeDigits) stands for; undefined when it is not such digits or its check fails. */
export function shortCodeFromDigits(typed: string): string | undefined {
  if (typed.length !== DIALLED_LENGTH || !/^\d+$/.test(typed)) return undefined;
  const digits = typed.slice(0, -1);
  if (luhnCheckDigit(digits) !== typed.slice(-1)) return undefined;
  let value = Number(digits);
  if (value >= SHORT_CODE_ALPHABET.length ** SHORT_CODE_LENGTH) return undefined;
  let code = "";
  for (let i = 0; i < SHORT_CODE_LENGTH; i++) {
    code = SHORT_CODE_ALPHABET[value % SHORT_CODE_ALPHABET.length] + code;
    value = Math.floor(value / SHORT_CODE_ALPHABET.length);
  }
  return code;
}

/** Ten digits of value (32^6 - 1 = 1,073,741,823) and the check digit. */
const DIALLED_LENGTH = 11;

function luhnCheckDigit(digits: string): string {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return String((10 - (sum % 10)) % 10);
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
