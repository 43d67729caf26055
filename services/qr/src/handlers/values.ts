import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ErrorCorrection, ProfileSchema, type DynamicParameters } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { Money } from "@ttip/proto/ttip/common/v1/money_pb.js";
import { feeAmountMaxMinor, fieldError, formatMoney, MPESA_LIMITS } from "@ttip/runtime";
import { type EcLevel } from "../render.js";
import { photoUrlOf } from "../photo.js";
import { type ProfileRecord } from "../stores/profiles.js";
const MAX_SUGGESTED = 10;
const MAX_LABEL = 64;
/** No single tip above M-Pesa's per-transaction limit (KES 250,000, Safaricom's portal). */
export const MAX_AMOUNT_MINOR = MPESA_LIMITS.perTransactionMinor;


function validateMoney(m: Money, field: string, currency: string) {
  if (m.currency !== currency) throw fieldError(`${field}.currency`, `must be ${currency}, the currency this code is tipped in`);
  if (m.amountMinor <= 0n) throw fieldError(`${field}.amount_minor`, "must be positive");
  // Another currency is paid by card, whose tips go up to that currency's card limit: a larger fixed amount printed
  // on a code made every scan's tip refused.
  const max = currency === "KES" ? MAX_AMOUNT_MINOR : (feeAmountMaxMinor(currency) ?? MAX_AMOUNT_MINOR);
  if (m.amountMinor > max) throw fieldError(`${field}.amount_minor`, `must be at most ${max} (${formatMoney(max, currency)}, the largest tip in ${currency})`);
  // M-Pesa moves whole shillings only.
  if (currency === "KES" && m.amountMinor % 100n !== 0n) throw fieldError(`${field}.amount_minor`, "KES amounts must be whole shillings (a multiple of 100)");
}

/** A fixed amount in another currency than KES is paid by card (M-Pesa moves KES only), a venue's shared code's too. */
export function validateParameters(p: DynamicParameters | undefined, currency: string) {
  if (!p) return;
  if (p.suggestedAmounts.length > MAX_SUGGESTED) throw fieldError("parameters.suggested_amounts", `at most ${MAX_SUGGESTED} amounts`);
  p.suggestedAmounts.forEach((m, i) => validateMoney(m, `parameters.suggested_amounts[${i}]`, currency));
  if (p.fixedAmount) {
    if (p.suggestedAmounts.length) throw fieldError("parameters.fixed_amount", "give suggested_amounts or fixed_amount, not both");
    validateMoney(p.fixedAmount, "parameters.fixed_amount", currency);
  }
  for (const [name, value] of [["table", p.table], ["shift", p.shift], ["campaign", p.campaign]] as const) {
    if (value.length > MAX_LABEL) throw fieldError(`parameters.${name}`, `at most ${MAX_LABEL} characters`);
    if (/[\u0000-\u001f]/.test(value)) throw fieldError(`parameters.${name}`, "must not contain control characters");
  }
}

/** Where a scan came from, without the query or fragment (they may carry personal data). */
export function referrerOf(raw: string): string {
  if (!raw) return "";
  try {
    const u = new URL(raw);
    return `${u.origin}${u.pathname}`;
  } catch {
    return raw.replace(/[?#].*$/, "").slice(0, 512);
  }
}

export function profileMessage(p: ProfileRecord, tipBaseUrl: string) {
  return create(ProfileSchema, {
    ownerKind: p.ownerKind,
    ownerId: p.ownerId,
    displayName: p.displayName,
    photoUrl: p.photoUrl,
    active: p.active,
    currency: p.currency,
    city: p.city,
    role: p.role,
    uploadedPhotoUrl: photoUrlOf(tipBaseUrl, p.ownerKind, p.ownerId, p.photoSha256),
    updatedAt: timestampFromMs(p.updatedAt),
  });
}

export const EC: Record<ErrorCorrection, EcLevel> = {
  [ErrorCorrection.UNSPECIFIED]: "M",
  [ErrorCorrection.L]: "L",
  [ErrorCorrection.M]: "M",
  [ErrorCorrection.Q]: "Q",
  [ErrorCorrection.H]: "H",
};
