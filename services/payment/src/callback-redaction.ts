// A stored provider callback as the console shows it: the payer's number and names masked, a card's details withheld. The console's readers
// (support too) act on a payment's codes, amounts and times; the screen beside the body shows the number masked,
// and the body gave it whole (an STK callback's PhoneNumber, C2B's MSISDN and names, B2C's receiver). What is
// stored stays as received: reconciliation and the receiptless match read it.
import { maskPhone } from "@ttip/runtime";

/**
 * Keys whose value is a person's number, name or address, wherever they are in the body: Daraja's, and the card
 * providers' (a Stripe charge's billing_details and receipt_email, a PayPal payer's name, e-mail and number).
 */
const PERSONAL_KEYS = new Set([
  "MSISDN", "PhoneNumber", "phoneNumber", "phone", "FirstName", "MiddleName", "LastName", "email",
  "name", "given_name", "surname", "full_name", "email_address", "receipt_email", "national_number",
]);
/**
 * Keys whose value is not shown at all, whatever its shape: a card's own details (its last digits, expiry and
 * fingerprint), a PaymentIntent's client secret (it confirms the payment), a postal address (an object).
 */
const WITHHELD_KEYS = new Set(["client_secret", "last4", "dynamic_last4", "exp_month", "exp_year", "fingerprint", "address", "address_line_1", "address_line_2", "postal_code"]);
/**
 * Daraja's lists of { Name | Key, Value }: the entries whose Value is personal. Every party's name (B2C's
 * ReceiverPartyPublicName, a reversal's CreditPartyPublicName, a status query's CreditPartyName) is
 * "number - NAME" when the party is a person: any label naming a party is masked, a shortcode's too.
 */
const PERSONAL_ITEM = /^(PhoneNumber|MSISDN|\w*Party(Public)?Name)$/;
/** Deepest nesting walked: a provider's body is a few levels deep; past it, values are left as they are. */
const MAX_DEPTH = 16;

/** "Jane" → "J***"; "254722000111 - JANE DOE" → "2547******11 - J*** D***"; a number → masked. */
function masked(value: unknown): unknown {
  const text = String(value);
  return text.replace(/\+?\d{9,15}/g, (digits) => maskPhone(digits)).replace(/\p{L}[\p{L}'-]*/gu, (word) => `${word[0]}***`);
}

function redact(node: unknown, depth: number): unknown {
  if (depth > MAX_DEPTH || node === null || typeof node !== "object") return node;
  if (Array.isArray(node)) return node.map((n) => redact(n, depth + 1));
  const item = node as Record<string, unknown>;
  const label = item.Name ?? item.Key;
  return Object.fromEntries(Object.entries(item).map(([k, v]) => {
    if (WITHHELD_KEYS.has(k) && v !== null) return [k, "(withheld)"];
    if (PERSONAL_KEYS.has(k) && (typeof v === "string" || typeof v === "number")) return [k, masked(v)];
    if (k === "Value" && typeof label === "string" && PERSONAL_ITEM.test(label)) return [k, masked(v)];
    return [k, redact(v, depth + 1)];
  }));
}

/** The body with personal values masked: JSON walked, a form's fields masked; anything else shown as it is. */
export function redactedCallbackBody(raw: Buffer): Uint8Array {
  const text = raw.toString("utf8");
  try {
    return Buffer.from(JSON.stringify(redact(JSON.parse(text), 0)));
  } catch {
    // Not JSON: a form (USSD's phoneNumber=...), else as received.
  }
  if (/^[\w.%+-]+=[^&]*(&[\w.%+-]+=[^&]*)*$/.test(text)) {
    const form = new URLSearchParams(text);
    for (const [k, v] of form) if (PERSONAL_KEYS.has(k)) form.set(k, String(masked(v)));
    return Buffer.from(form.toString());
  }
  return new Uint8Array(raw);
}
