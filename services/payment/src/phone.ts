import { Code, ConnectError } from "@connectrpc/connect";

/**
 * A Kenyan mobile number as M-Pesa wants it: 254 followed by 9 digits starting
 * with 7 or 1. Accepts 07XXXXXXXX, 01XXXXXXXX, +2547..., 2547... (and the 1
 * prefixes); anything else is INVALID_ARGUMENT naming `field`.
 */
export function normalisePhone(input: string, field: string): string {
  const s = input.replace(/[\s-]/g, "");
  const m = /^(?:\+?254|0)([17]\d{8})$/.exec(s);
  if (!m) {
    throw new ConnectError(
      `${field}: not a Kenyan mobile number; use 07XXXXXXXX, 01XXXXXXXX, +2547XXXXXXXX or 2547XXXXXXXX`,
      Code.InvalidArgument,
    );
  }
  return `254${m[1]}`;
}

/** "2547******78": enough for a person to recognise their number, never the whole of it. */
export function maskPhone(msisdn: string): string {
  if (msisdn.length < 6) return "*".repeat(msisdn.length);
  return `${msisdn.slice(0, 4)}${"*".repeat(msisdn.length - 6)}${msisdn.slice(-2)}`;
}
