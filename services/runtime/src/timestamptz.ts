const DIGIT_0 = 48;
const HOUR_MS = 3_600_000;
/** Powers of ten by a fraction's digit count (PostgreSQL writes at most 6). */
const POWERS = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];

/** The digits of `text` from `from` to `to` as a number; -1 if one is not a digit. */
function digitsAt(text: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = text.charCodeAt(i) - DIGIT_0;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * A timestamptz column's parser: the Date pg's own (`parseDate`, postgres-date) makes, read in
 * place when the text has the shape PostgreSQL writes in ISO style with a whole-hour offset:
 * `YYYY-MM-DD HH:MM:SS[.f…]±HH`. postgres-date matches it with a regular expression (an array
 * and seven strings), then parses each part again; every row read with a time in it did so, for
 * columns often not read at all. Any other shape (a year before 100 or past 9999, BC, an offset
 * with minutes, infinity) goes to `parseDate`.
 */
export function timestamptzParser(parseDate: (text: string) => unknown): (text: string) => unknown {
  return (text) => parseTimestamptz(text, parseDate);
}

function parseTimestamptz(text: string, parseDate: (text: string) => unknown): unknown {
  const n = text.length;
  // 22 characters without a fraction; a fraction is a dot and 1 to 6 digits.
  if (n < 22 || n > 29 || n === 23 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || text.charCodeAt(10) !== 32 || text.charCodeAt(13) !== 58 || text.charCodeAt(16) !== 58) {
    return parseDate(text);
  }
  const year = digitsAt(text, 0, 4);
  const month = digitsAt(text, 5, 7);
  const day = digitsAt(text, 8, 10);
  const hour = digitsAt(text, 11, 13);
  const minute = digitsAt(text, 14, 16);
  const second = digitsAt(text, 17, 19);
  const zoneAt = n - 3;
  const sign = text.charCodeAt(zoneAt);
  const zoneHours = digitsAt(text, zoneAt + 1, n);
  let fraction = 0;
  if (zoneAt > 19) {
    // n / 10^k is the double nearest the decimal, as parseFloat(".digits") is: the same milliseconds.
    const digits = digitsAt(text, 20, zoneAt);
    if (text.charCodeAt(19) !== 46 || digits < 0) return parseDate(text);
    fraction = digits / POWERS[zoneAt - 20];
  }
  // Date.UTC reads a year below 100 as 19xx: postgres-date corrects it, and so it goes there.
  if (year < 100 || month < 0 || day < 0 || hour < 0 || minute < 0 || second < 0 || zoneHours < 0 || (sign !== 43 && sign !== 45)) return parseDate(text);
  const utc = Date.UTC(year, month - 1, day, hour, minute, second, 1000 * fraction);
  return new Date(sign === 43 ? utc - zoneHours * HOUR_MS : utc + zoneHours * HOUR_MS);
}
