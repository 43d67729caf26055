import { Code, ConnectError } from "@connectrpc/connect";

// Kept in step with payment's rules; to move into the shared runtime with the other copies.
/** 254 followed by 9 digits starting with 7 or 1, from 07..., 01..., +254... or 254... */
export function normalisePhone(input: string, field: string): string {
  const m = /^(?:\+?254|0)([17]\d{8})$/.exec(input.replace(/[\s-]/g, ""));
  if (!m) throw new ConnectError(`${field}: not a Kenyan mobile number; use 07XXXXXXXX, 01XXXXXXXX or +2547XXXXXXXX`, Code.InvalidArgument);
  return `254${m[1]}`;
}

/** "2547******78". */
export function maskPhone(msisdn: string): string {
  return msisdn.length < 6 ? "*".repeat(msisdn.length) : `${msisdn.slice(0, 4)}${"*".repeat(msisdn.length - 6)}${msisdn.slice(-2)}`;
}
