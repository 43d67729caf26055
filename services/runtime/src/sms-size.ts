// How many SMS parts a text takes, and how many an SMS template may take: notification sizes what it sends and
// refuses over-long templates; the admin console counts them as they are typed.
import { SmsEncoding } from "@ttip/proto/ttip/notification/v1/notification_pb.js";

// The GSM 03.38 default alphabet, and its extension table (each costs an escape plus the character).
const GSM7_BASIC = new Set(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà",
);
const GSM7_EXTENSION = new Set("\f^{}\\[~]|€");
const isGsm7 = (c: string) => GSM7_BASIC.has(c) || GSM7_EXTENSION.has(c);

export interface SmsSize {
  encoding: SmsEncoding;
  /** Septets for GSM-7, UTF-16 code units for UCS-2. */
  units: number;
  segments: number;
}

/**
 * How many SMS segments a text takes: GSM-7 fits 160 septets in one message
 * or 153 per part of a concatenated one (extension characters take two, and
 * are never split across parts); otherwise UCS-2 fits 70 or 67 UTF-16 units
 * (a surrogate pair is never split).
 */
export function smsSize(text: string): SmsSize {
  const chars = [...text];
  const gsm = chars.every(isGsm7);
  const cost = gsm ? (c: string) => (GSM7_EXTENSION.has(c) ? 2 : 1) : (c: string) => c.length;
  const [single, part] = gsm ? [160, 153] : [70, 67];
  const units = chars.reduce((n, c) => n + cost(c), 0);
  const encoding = gsm ? SmsEncoding.GSM7 : SmsEncoding.UCS2;
  if (units === 0) return { encoding, units, segments: 0 };
  if (units <= single) return { encoding, units, segments: 1 };
  let segments = 1;
  let used = 0;
  for (const c of chars) {
    const n = cost(c);
    if (used + n > part) {
      segments++;
      used = 0;
    }
    used += n;
  }
  return { encoding, units, segments };
}

/**
 * The most parts an SMS template's own text may take (its placeholders counted as written): 3, 459 GSM-7
 * characters or 201 UCS-2 ones. Each part is billed as one SMS, phones older than the concatenation standard show
 * the parts apart, and the values filled in (a name, a customer's message of up to 280 characters) come on top.
 */
export const SMS_TEMPLATE_MAX_SEGMENTS = 3;

/** What is wrong with an SMS template's text for its size, or undefined when it fits. */
export function smsTemplateTooLong(text: string): string | undefined {
  const size = smsSize(text);
  if (size.segments <= SMS_TEMPLATE_MAX_SEGMENTS) return undefined;
  const most = size.encoding === SmsEncoding.GSM7 ? "459 plain characters" : "201 characters when it has any beyond SMS's plain alphabet (emoji, curly quotes)";
  return `an SMS template may take at most ${SMS_TEMPLATE_MAX_SEGMENTS} SMS parts (${most}); this one takes ${size.segments} (${size.units} ${size.encoding === SmsEncoding.GSM7 ? "GSM-7" : "UCS-2"} units)`;
}

/** What phones' keyboards type in place of GSM-7 characters: curly quotes, dashes, the ellipsis, a no-break space. */
const GSM7_LOOKALIKES: Record<string, string> = {
  "\u2018": "'", "\u2019": "'", "\u02BC": "'", "\u201C": '"', "\u201D": '"', "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00A0": " ",
};

/**
 * A text as GSM-7 alone carries it, for screens that cannot fall back to UCS-2 (USSD: one character
 * outside the alphabet turns the whole screen to UCS-2, which networks cut short or garble): look-alikes
 * replaced, accents dropped where only the bare letter is in the alphabet (ũ as u), anything else (emoji)
 * left out, line breaks and runs of spaces made one space; at most `maxChars` characters, never half of one.
 */
export function gsm7Text(text: string, maxChars: number): string {
  let out = "";
  for (const ch of text.normalize("NFC")) {
    const c = GSM7_LOOKALIKES[ch] ?? (isGsm7(ch) ? ch : ch.normalize("NFD").replace(/\p{M}/gu, ""));
    for (const d of c) if (isGsm7(d)) out += d;
  }
  return [...out.replace(/\s+/g, " ").trim()].slice(0, maxChars).join("").trimEnd();
}
