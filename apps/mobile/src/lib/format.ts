// Shown times (Nairobi's, whatever the phone's zone) and statuses in the worker's language.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { TipStatus, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PayoutStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { NAIROBI_ZONE } from "@ttip/web-lib/nairobi-time";
import { paidTipStateKey } from "@ttip/web-lib/paid-tip-state";
import { formatAmount, WALLET_CURRENCY } from "@ttip/web-lib/money";
import type { Locale, Translate } from "./i18n";

const TIP_STATUS: Record<Locale, Partial<Record<TipStatus, string>>> = {
  en: { [TipStatus.SUCCEEDED]: "received", [TipStatus.FAILED]: "failed", [TipStatus.PENDING]: "waiting", [TipStatus.EXPIRED]: "expired", [TipStatus.HELD_FOR_REVIEW]: "under review" },
  sw: { [TipStatus.SUCCEEDED]: "imepokelewa", [TipStatus.FAILED]: "imeshindwa", [TipStatus.PENDING]: "inasubiri", [TipStatus.EXPIRED]: "muda umeisha", [TipStatus.HELD_FOR_REVIEW]: "inakaguliwa" },
};

const PAYOUT_STATUS: Record<Locale, Partial<Record<PayoutStatus, string>>> = {
  en: { [PayoutStatus.SUCCEEDED]: "sent", [PayoutStatus.FAILED]: "failed", [PayoutStatus.PENDING]: "sending", [PayoutStatus.RESOLVING]: "checking with M-Pesa", [PayoutStatus.ON_HOLD]: "on hold" },
  sw: { [PayoutStatus.SUCCEEDED]: "imetumwa", [PayoutStatus.FAILED]: "imeshindwa", [PayoutStatus.PENDING]: "inatumwa", [PayoutStatus.RESOLVING]: "tunathibitisha na M-Pesa", [PayoutStatus.ON_HOLD]: "imesimamishwa" },
};

const words = (name: string | undefined) => (name ?? "").toLowerCase().replace(/_/g, " ");

export const tipStatus = (s: TipStatus, l: Locale) => TIP_STATUS[l][s] ?? words(TipStatus[s]);

/** A tip's state as the worker reads it: a tip refunded, charged back or reversed says so, in the web app's words, not "received". */
export function tipState(tip: Tip, locale: Locale, t: Translate): string {
  const after = paidTipStateKey(tip);
  return after ? t(after, { amount: formatAmount(tip.refunded, WALLET_CURRENCY) }) : tipStatus(tip.status, locale);
}
export const payoutStatus = (s: PayoutStatus, l: Locale) => PAYOUT_STATUS[l][s] ?? words(PayoutStatus[s]);

export function when(t: Timestamp | Date | undefined, locale: Locale): string {
  if (!t) return "";
  const d = t instanceof Date ? t : timestampDate(t);
  return d.toLocaleString(locale === "sw" ? "sw-KE" : "en-KE", { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", timeZone: NAIROBI_ZONE });
}

/** 2547XXXXXXXX as the worker reads their number: 07XX XXX XXX (a confirmation says where the money goes). */
export function localPhone(daraja: string): string {
  const local = `0${daraja.slice(3)}`;
  return `${local.slice(0, 4)} ${local.slice(4, 7)} ${local.slice(7)}`;
}
