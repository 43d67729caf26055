// Kenyan phone numbers: one parser, one storage form, one mask for every service.
import { fieldError } from "./field-errors.js";

/** 254, then 9 digits starting with 7 or 1 (Safaricom, Airtel, Telkom mobiles). */
const KENYAN_MOBILE = /^(?:\+?254|0)([17]\d{8})$/;
/** What people type between digits: spaces, dashes, dots, brackets. */
const SEPARATORS = /[\s\-.()]/g;

/** A Kenyan mobile number as M-Pesa wants it ("2547XXXXXXXX"), or undefined when it is not one. */
export function parseKenyanMobile(input: string): string | undefined {
  const m = KENYAN_MOBILE.exec(input.replace(SEPARATORS, ""));
  return m ? `254${m[1]}` : undefined;
}

/**
 * The Kenyan mobile number M-Pesa can pay, or INVALID_ARGUMENT naming `field`. Accepts
 * 07XXXXXXXX, 01XXXXXXXX, +2547XXXXXXXX and 2547XXXXXXXX, with spaces or dashes.
 */
export function requireKenyanMobile(input: string, field: string): string {
  const msisdn = parseKenyanMobile(input);
  if (!msisdn) {
    throw fieldError(field, "not a Kenyan mobile number; use 07XXXXXXXX, 01XXXXXXXX, +2547XXXXXXXX or 2547XXXXXXXX", "phone.kenyan_mobile");
  }
  return msisdn;
}

/**
 * The form numbers are stored and compared in: E.164 digits without the plus. A Kenyan
 * local number gets its country code (0712… and +254712… are the same person); other
 * numbers keep their digits.
 */
export function normalisePhone(input: string): string {
  return parseKenyanMobile(input) ?? input.replace(/\D/g, "");
}

/** "2547******78": enough for a person to recognise their number, never the whole of it. */
export function maskPhone(phone: string): string {
  const digits = normalisePhone(phone);
  if (digits.length <= 6) return "*".repeat(digits.length);
  return `${digits.slice(0, 4)}${"*".repeat(digits.length - 6)}${digits.slice(-2)}`;
}
