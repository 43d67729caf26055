// Domain values (and the rows not yet mapped to one) to contract messages.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { optionalTimestamp, type MoneyAmount } from "@ttip/runtime";
import type { Money as MoneyMessage } from "@ttip/proto/ttip/common/v1/money_pb.js";
import {
  AlertStatus, CardProvider, CardTipState, FraudAction, FraudReason, MpesaReversalState, PaymentMethodKind, PayoutSchema, PayoutStatus, TipStatus, type Payout as PayoutMessage, type Tip as TipMessage,
} from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { resultMessage } from "./messages.js";
import type { Payout, PayoutStatusCode } from "./stores/payouts.js";
import type { Tip } from "./stores/tips.js";
import type { TipStatusCode } from "./tips.js";
import { withCardFields } from "./cards/convert.js";
import { redactedCallbackBody } from "./callback-redaction.js";

export const TIP_STATUS: Record<TipStatusCode, TipStatus> = {
  pending: TipStatus.PENDING,
  succeeded: TipStatus.SUCCEEDED,
  failed: TipStatus.FAILED,
  expired: TipStatus.EXPIRED,
  held_for_review: TipStatus.HELD_FOR_REVIEW,
};
export const TIP_STATUS_CODE = Object.fromEntries(Object.entries(TIP_STATUS).map(([k, v]) => [v, k])) as Record<TipStatus, TipStatusCode>;

/**
 * `paybill`: where the tip can be paid from the M-Pesa menu when C2B is received (empty otherwise).
 * Written as the message's literal rather than through create(): every CreateTip answer and
 * WatchTip update builds one, and create() walks all 31 fields and converts each init value
 * (bench/tip-message.ts). The type lists every scalar field, so a field added to Tip fails to compile here.
 */
export function tipMessage(t: Tip, locale = "en", paybill = ""): TipMessage {
  const messageKey = t.status === "held_for_review" ? "review" : t.resultCode;
  const paybillShown = paybill !== "" && !!t.accountReference;
  const tip: TipMessage = {
    $typeName: "ttip.payment.v1.Tip",
    tipId: t.tipId,
    workerId: t.workerId ?? "",
    venueId: t.venueId,
    qrCodeId: t.qrCodeId,
    amount: moneyMessage(t.amount),
    fee: moneyMessage(t.fee),
    charged: moneyMessage(t.charged),
    method: t.method === "card" ? PaymentMethodKind.CARD : PaymentMethodKind.MPESA,
    status: TIP_STATUS[t.status],
    resultCode: t.resultCode,
    resultMessage: t.resultCode || t.status === "held_for_review" ? resultMessage(messageKey, locale) : "",
    mpesaReceipt: t.mpesaReceipt ?? "",
    stripePaymentIntentId: "",
    customerPhoneMasked: t.phoneMasked,
    rating: t.rating,
    message: t.message,
    createdAt: timestampFromDate(t.createdAt),
    shared: t.workerId === null,
    paybillNumber: paybillShown ? paybill : "",
    paybillAccountReference: paybillShown ? t.accountReference! : "",
    channel: t.channel,
    cardProvider: CardProvider.UNSPECIFIED,
    providerPaymentId: "",
    fxRate: "",
    fxRateSource: "",
    nextActionUrl: "",
    cardState: CardTipState.UNSPECIFIED,
    mpesaReversal: MpesaReversalState.UNSPECIFIED,
  };
  // Message fields left unset are absent, as create() leaves them.
  if (t.completedAt) tip.completedAt = timestampFromDate(t.completedAt);
  if (t.received) tip.received = moneyMessage(t.received);
  if (t.mpesaReversal) {
    tip.mpesaReversal = MPESA_REVERSAL[t.mpesaReversal.state];
    if (t.mpesaReversal.refunded.amountMinor > 0n) tip.refunded = moneyMessage(t.mpesaReversal.refunded);
  }
  return t.card ? withCardFields(tip, t, t.card, locale) : tip;
}

/** A domain amount as the contract's Money (a literal, as tipMessage). */
function moneyMessage(m: MoneyAmount): MoneyMessage {
  return { $typeName: "ttip.common.v1.Money", amountMinor: m.amountMinor, currency: m.currency };
}

const MPESA_REVERSAL: Record<NonNullable<Tip["mpesaReversal"]>["state"], MpesaReversalState> = {
  none: MpesaReversalState.NONE,
  pending: MpesaReversalState.PENDING,
  reversed: MpesaReversalState.REVERSED,
  failed: MpesaReversalState.FAILED,
};

export const PAYOUT_STATUS: Record<PayoutStatusCode, PayoutStatus> = {
  pending: PayoutStatus.PENDING,
  succeeded: PayoutStatus.SUCCEEDED,
  failed: PayoutStatus.FAILED,
  resolving: PayoutStatus.RESOLVING,
  on_hold: PayoutStatus.ON_HOLD,
};
export const PAYOUT_STATUS_CODE = Object.fromEntries(Object.entries(PAYOUT_STATUS).map(([k, v]) => [v, k])) as Record<PayoutStatus, PayoutStatusCode>;

export function payoutMessage(p: Payout): PayoutMessage {
  return create(PayoutSchema, {
    payoutId: p.payoutId,
    workerId: p.workerId,
    amount: p.amount,
    transferFee: p.transferFee,
    recipientPhoneMasked: p.phoneMasked,
    status: PAYOUT_STATUS[p.status],
    resultCode: p.resultCode,
    resultMessage: p.resultMessage,
    mpesaReceipt: p.mpesaReceipt ?? "",
    reportedMpesaReceipt: p.reportedMpesaReceipt ?? "",
    automatic: p.automatic,
    createdAt: timestampFromDate(p.createdAt),
    completedAt: optionalTimestamp(p.completedAt),
    note: p.note,
  });
}

export const FRAUD_REASON: Record<string, FraudReason> = {
  VELOCITY_PHONE: FraudReason.VELOCITY_PHONE,
  VELOCITY_WORKER: FraudReason.VELOCITY_WORKER,
  AMOUNT_OUTLIER: FraudReason.AMOUNT_OUTLIER,
  SELF_TIP: FraudReason.SELF_TIP,
  BLOCKED_NUMBER: FraudReason.BLOCKED_NUMBER,
  PIN_FAILURES: FraudReason.PIN_FAILURES,
  CALLBACK_MISMATCH: FraudReason.CALLBACK_MISMATCH,
  UNKNOWN_CALLBACK: FraudReason.UNKNOWN_CALLBACK,
  CARD_VELOCITY: FraudReason.CARD_VELOCITY,
  CARD_COUNTRY_MISMATCH: FraudReason.CARD_COUNTRY_MISMATCH,
  CARD_LIMIT: FraudReason.CARD_LIMIT,
  CARD_DISPUTE: FraudReason.CARD_DISPUTE,
};
export const FRAUD_ACTION: Record<string, FraudAction> = { flag: FraudAction.FLAG, hold: FraudAction.HOLD, refuse: FraudAction.REFUSE };
export const ALERT_STATUS: Record<string, AlertStatus> = { open: AlertStatus.OPEN, approved: AlertStatus.APPROVED, rejected: AlertStatus.REJECTED, closed: AlertStatus.CLOSED };

/** A payment.fraud_alerts row, as the console lists and details it. */
export interface FraudAlertRow {
  alert_id: string;
  reason: string;
  action: string;
  status: string;
  tip_id: string | null;
  payout_id: string | null;
  worker_id: string | null;
  detail: string;
  created_at: Date;
  reviewed_by: string;
  reviewed_at: Date | null;
}

export function fraudAlertMessage(a: FraudAlertRow) {
  return {
    alertId: a.alert_id,
    reason: FRAUD_REASON[a.reason],
    action: FRAUD_ACTION[a.action],
    status: ALERT_STATUS[a.status],
    tipId: a.tip_id ?? "",
    payoutId: a.payout_id ?? "",
    workerId: a.worker_id ?? "",
    detail: a.detail,
    createdAt: timestampFromDate(a.created_at),
    reviewedBy: a.reviewed_by,
    reviewedAt: optionalTimestamp(a.reviewed_at),
  };
}

/** A stored provider callback as the console shows it, raw body included, the payer's number and names masked. */
export function toCallback(c: { callback_id: string; source: string; external_reference: string; remote_address: string; raw_body: Buffer; received_at: Date; resolved: boolean }) {
  return {
    callbackId: c.callback_id,
    source: c.source,
    externalReference: c.external_reference,
    remoteAddress: c.remote_address,
    rawBody: redactedCallbackBody(c.raw_body),
    receivedAt: timestampFromDate(c.received_at),
    resolved: c.resolved,
  };
}
