import { pino, type DestinationStream, type Logger, type LoggerOptions } from "pino";
import { traceLogFields } from "./trace-log-fields.js";

export type { Logger };

/** Keys whose values are never logged, at any depth. */
const SECRET_KEY =
  /phone|msisdn|pin$|pin_?code|^otp|otp$|verification_?code|token|secret|password|passkey|authorization|cookie|credential|api_?key|card|^pan$|cvc|cvv|signature/i;

// Kenyan and international phone numbers as people and Daraja write them, and
// card numbers (13-19 digits, spaces or dashes allowed). Masked wherever they
// appear inside a string, so a number in a message or error text never leaks.
// Separators people type are allowed: +254 798 810913, 0798-810-913, (0)798 810 913.
const PHONE = /(?<![\d])(?:\+?254[ -]?|\(?0\)?[ -]?)[17]\d{2}[ -]?\d{3}[ -]?\d{3}(?![\d])|(?<![\d])\+\d(?:[ -]?\d){9,13}(?![\d])/g;
// A phone number held as a number (the leading 0 of 07… lost, only 254… is one).
const KENYAN_NUMBER = /^254[17]\d{8}$/;
// A one-time code or PIN inside a sentence, whatever key the sentence is under: "your code is 482613", and as the
// Swahili texts say it: "Nambari yako ya TTIP ni 482613" (msimbo: code; nenosiri: password).
const CODE_IN_TEXT = /\b(code|otp|pin|passcode|password|verification|nambari|msimbo|nenosiri)(\b[^\d\n]{0,24}?)(\d{4,8})(?!\d)/gi;
const CARD = /(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])/g;
const BEARER = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi;

export const REDACTED = "[REDACTED]";

// Trace context ids (W3C hex) are ours, not a person's: a random one often holds a run
// of 13+ digits that reads as a card number. Kept whole only in exactly their format.
const TRACE_ID_KEYS: Record<string, RegExp> = { trace_id: /^[0-9a-f]{32}$/, span_id: /^[0-9a-f]{16}$/ };

// A UUID (ours: tips, deliveries, requests) is kept whole: about 2% of random ones hold
// digit groups that read as a card number across their dashes ("8123-456789012345"),
// which hid those ids from a search of the logs. No card or phone number has its shape.
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/** Masks phone numbers, card numbers, bearer credentials and codes (OTP, PIN) inside free text. */
export function scrubText(text: string): string {
  if (text.length < 36 || !text.includes("-")) return scrubPlain(text);
  let out = "";
  let from = 0;
  for (const m of text.matchAll(UUID)) {
    out += scrubPlain(text.slice(from, m.index)) + m[0];
    from = m.index + m[0].length;
  }
  return out + scrubPlain(text.slice(from));
}

// Credentials follow their word after a space; cards (13+ digits), phones (9+) and codes
// (4+) hold four digits at least: a text with neither (an RPC's name, a status, a word)
// is not searched for them. A fifth of a log line's CPU (bench/log-line.ts).
const MAY_HOLD_SECRET = /\s|\d\D*\d\D*\d\D*\d/;

function scrubPlain(text: string): string {
  if (!MAY_HOLD_SECRET.test(text)) return text;
  return text
    .replace(BEARER, `$1 ${REDACTED}`)
    .replace(CARD, REDACTED)
    .replace(PHONE, (m) => `${REDACTED}${m.replace(/\D/g, "").slice(-3)}`)
    .replace(CODE_IN_TEXT, (_m, word: string, between: string) => `${word}${between}${REDACTED}`);
}

/** Returns a copy of a log payload with secrets removed; never mutates the input. */
export function scrub(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === "string") return scrubText(value);
  // A number too: Daraja's callbacks carry the payer as one ({"Name":"PhoneNumber","Value":254712345678}).
  if ((typeof value === "number" || typeof value === "bigint") && KENYAN_NUMBER.test(value.toString())) return scrubText(value.toString());
  if (typeof value === "bigint") return value.toString();
  if (value === null || typeof value !== "object" || depth > 8) return value;
  if (seen.has(value)) return "[Circular]";
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1, seen));
  if (value instanceof Error) {
    return {
      type: value.name,
      message: scrubText(value.message),
      stack: value.stack ? scrubText(value.stack) : undefined,
      ...(scrub({ ...value }, depth + 1, seen) as object),
    };
  }
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v === "string" && TRACE_ID_KEYS[key]?.test(v)) out[key] = v;
    else out[key] = SECRET_KEY.test(key) && v !== undefined && v !== null && v !== "" ? REDACTED : scrub(v, depth + 1, seen);
  }
  return out;
}

export interface LogOptions {
  level?: string;
  /** Where the JSON lines go; stdout when omitted. */
  destination?: DestinationStream;
  base?: Record<string, unknown>;
}

/** JSON logs (pino) with PII redaction on every field and every message. */
export function createLogger(options: LogOptions = {}): Logger {
  const config: LoggerOptions = {
    level: options.level ?? "info",
    base: { ...options.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    messageKey: "msg",
    // trace_id/span_id of the active span; an empty object while tracing is off.
    mixin: traceLogFields,
    formatters: {
      level: (label) => ({ level: label }),
      log: (object) => scrub(object) as Record<string, unknown>,
    },
    // The `err` serializer runs before `formatters.log`; keep errors as objects
    // so the scrubber sees their message and fields.
    serializers: { err: (e: unknown) => scrub(e) },
    hooks: {
      logMethod(args, method) {
        method.apply(
          this,
          args.map((a) => (typeof a === "string" ? scrubText(a) : a)) as Parameters<typeof method>,
        );
      },
    },
  };
  return options.destination ? pino(config, options.destination) : pino(config);
}
