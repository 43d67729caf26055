// Keyset pages as proto/ttip/common/v1/page.proto defines them: page_size 0 means 50, at
// most 500; page_token is opaque to callers and names the last row served.
import { fieldError } from "./field-errors.js";
import { isUuid } from "./uuid.js";

export const PAGE_SIZE_DEFAULT = 50;
export const PAGE_SIZE_MAX = 500;
const TOKEN_FIELD = "page.page_token";

/** The page size a request asks for, within page.proto's bounds. */
export function pageSize(page: { pageSize?: number } | undefined): number {
  const asked = page?.pageSize ?? 0;
  if (asked <= 0) return PAGE_SIZE_DEFAULT;
  return Math.min(asked, PAGE_SIZE_MAX);
}

/** The position after which the next page starts, as opaque text: base64url of a JSON array of strings. */
export function encodePageToken(position: readonly (string | number | bigint)[]): string {
  return Buffer.from(JSON.stringify(position.map(String))).toString("base64url");
}

/**
 * The position a page token names, checked by `parse` (which returns undefined for a value it
 * does not accept); undefined for an empty token (the first page). A token this service did
 * not issue is INVALID_ARGUMENT naming page.page_token.
 */
export function decodePageToken<T>(token: string | undefined, parse: (position: string[]) => T | undefined): T | undefined {
  if (!token) return undefined;
  let position: unknown;
  try {
    position = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    position = undefined;
  }
  const ok = Array.isArray(position) && position.every((p) => typeof p === "string");
  const parsed = ok ? parse(position as string[]) : undefined;
  if (parsed === undefined) throw fieldError(TOKEN_FIELD, "not a token this service issued", "page.token");
  return parsed;
}

/**
 * Rows fetched with LIMIT size + 1 as one page: the first `size`, and the token of the last
 * of them when there was one more row.
 */
export function keysetPage<R>(rows: readonly R[], size: number, positionOf: (last: R) => readonly (string | number | bigint)[]) {
  const items = rows.slice(0, size);
  const more = rows.length > size && items.length > 0;
  return { items, nextPageToken: more ? encodePageToken(positionOf(items[items.length - 1])) : "" };
}

/**
 * The SQL expression to read a keyset position's time with: UTC, ISO 8601, to the microsecond.
 * A JS Date keeps only milliseconds, and a position rounded to them skips rows stored within
 * the same millisecond; so positions travel as this text and go back as ::timestamptz.
 */
export function keysetTime(column: string): string {
  return `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}

/** The usual position, (time, uuid) of the last row served, from a token; undefined for the first page. */
export function decodeTimeIdToken(token: string | undefined): { at: string; id: string } | undefined {
  return decodePageToken(token, ([at, id, ...rest]) => {
    const t = positionParts.timestamp(at);
    const u = positionParts.uuid(id);
    return t && u && rest.length === 0 ? { at: t, id: u } : undefined;
  });
}

const ISO_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-](\d{2}):?(\d{2}))$/;

/**
 * An ISO 8601 time PostgreSQL's timestamptz takes, years 1 to 9999. JavaScript's Date.parse takes far more ("foo 1",
 * year -271821) and rolls impossible dates on (February 30th is March 1st; an offset of +23:59), which PostgreSQL
 * refused as an internal error after the token was accepted here: so each field is checked against the calendar.
 */
function isoTimestamp(s: string | undefined): string | undefined {
  const m = s === undefined ? null : ISO_TIMESTAMP.exec(s);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const date = new Date(Date.UTC(2000, month - 1, day, hour, minute, second));
  date.setUTCFullYear(year);
  const real = year >= 1 && date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day &&
    date.getUTCHours() === hour && date.getUTCMinutes() === minute && date.getUTCSeconds() === second;
  const offsetFits = m[8] === "Z" || (Number(m[9]) <= 15 && Number(m[10]) <= 59);
  return real && offsetFits ? s : undefined;
}

/** Parsers for common position parts. */
export const positionParts = {
  uuid: (s: string | undefined) => (s !== undefined && isUuid(s) ? s : undefined),
  timestamp: isoTimestamp,
  integer: (s: string | undefined) => (s !== undefined && /^\d{1,18}$/.test(s) ? BigInt(s) : undefined),
};
