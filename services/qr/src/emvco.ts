import { decimalAmount } from "@ttip/runtime";
// The offline form of a code: an EMVCo merchant-presented payload as Kenya's
// KE-QR standard (CBK 2023) lays it out, so a banking or M-Pesa app can pay the
// paybill/till with the worker's account reference without reaching us.

/** CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR) over UTF-8 bytes. */
export function crc16CcittFalse(data: string): number {
  let crc = 0xffff;
  for (const byte of Buffer.from(data, "utf8")) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** One data object: 2-digit id, 2-digit length in characters, value. */
export function tlv(id: string, value: string): string {
  const length = [...value].length;
  if (!/^\d{2}$/.test(id)) throw new Error(`EMVCo id must be two digits: ${id}`);
  if (length === 0 || length > 99) throw new Error(`EMVCo value for ${id} must be 1 to 99 characters`);
  return `${id}${String(length).padStart(2, "0")}${value}`;
}

/** Characters EMVCo's "ans" format allows (printable ASCII); others become spaces, then trimmed to max. */
export function emvText(value: string, max: number): string {
  const cleaned = value.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").replace(/[^\x20-\x7e]/g, " ").replace(/\s+/g, " ").trim();
  return cleaned.slice(0, max).trim() || "TTIP";
}

export const KE_QR_GUID = "ke.go.qr";

export interface KeQrInput {
  shortcodeKind: "paybill" | "till";
  shortcode: string;
  accountReference: string;
  merchantName: string;
  city: string;
  merchantCategoryCode: string;
  ussdCode: string;
  /** Minor units of KES; when set, the payer cannot change the amount. */
  fixedAmountMinor?: bigint;
  /** When the code was issued (tag 82). */
  issuedAt: Date;
}

/** Tag 83's M-Pesa transaction types, as the Safaricom app emits them. */
const MPESA_TYPE = { till: "03", paybill: "04" } as const;

function keQrTimestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(d.getUTCDate())}${p(d.getUTCMonth() + 1)}${d.getUTCFullYear()} ${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

export function buildKeQrPayload(input: KeQrInput): string {
  const parts = [
    tlv("00", "01"),
    // Static: the card is reused by every customer.
    tlv("01", "11"),
    // 28: PSP / mobile-money account template.
    tlv("28", tlv("00", KE_QR_GUID) + tlv("01", input.shortcode)),
    tlv("52", input.merchantCategoryCode),
    tlv("53", "404"),
  ];
  if (input.fixedAmountMinor !== undefined) parts.push(tlv("54", decimalAmount(input.fixedAmountMinor, "KES")));
  // 55=01: the payer's app asks for the (tip) amount.
  else parts.push(tlv("55", "01"));
  parts.push(
    tlv("58", "KE"),
    tlv("59", emvText(input.merchantName, 25)),
    tlv("60", emvText(input.city, 15)),
    // 62/05: the reference label, i.e. the paybill account number naming the worker.
    tlv("62", tlv("05", input.accountReference)),
    tlv("81", tlv("00", KE_QR_GUID) + tlv("01", input.ussdCode)),
    tlv("82", tlv("00", KE_QR_GUID) + tlv("01", keQrTimestamp(input.issuedAt))),
    tlv("83", tlv("00", "m-pesa.com") + tlv("01", MPESA_TYPE[input.shortcodeKind])),
  );
  const withoutCrc = `${parts.join("")}6304`;
  return withoutCrc + crc16CcittFalse(withoutCrc).toString(16).toUpperCase().padStart(4, "0");
}
