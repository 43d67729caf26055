import { PayoutStatus, TipStatus, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { LimitKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { paidTipStateKey } from "../../lib/paid-tip-state";
import { formatAmount, WALLET_CURRENCY } from "../../lib/money";
import type { WorkerKey } from "../../lib/worker-i18n";

type T = (k: WorkerKey, vars?: Record<string, string>) => string;

export function statusWord(t: T, status: TipStatus): string {
  const name = TipStatus[status];
  return ["SUCCEEDED", "FAILED", "PENDING", "EXPIRED", "HELD_FOR_REVIEW"].includes(name) ? t(`st_${name}` as WorkerKey) : t("st_other");
}

/** A tip's state as the worker reads it: a tip refunded, charged back or reversed says so, not "received". */
export function tipWord(t: T, tip: Pick<Tip, "status" | "cardState" | "mpesaReversal" | "refunded" | "amount">): string {
  const after = paidTipStateKey(tip);
  return after ? t(after, { amount: formatAmount(tip.refunded, WALLET_CURRENCY) }) : statusWord(t, tip.status);
}

export function payoutWord(t: T, status: PayoutStatus): string {
  const name = PayoutStatus[status];
  return ["SUCCEEDED", "FAILED", "PENDING", "RESOLVING", "ON_HOLD"].includes(name) ? t(`ps_${name}` as WorkerKey) : t("ps_other");
}

const LIMITS: Partial<Record<LimitKind, WorkerKey>> = {
  [LimitKind.PER_TRANSACTION]: "limitPer",
  [LimitKind.DAILY]: "limitDay",
  [LimitKind.MONTHLY]: "limitMonth",
  [LimitKind.MPESA_PER_TRANSACTION]: "limitMpesa",
  [LimitKind.MPESA_DAILY]: "limitMpesaDay",
};

/** A withdrawal limit's name; a kind newer than this screen is "Limit". */
export function limitWord(t: T, kind: LimitKind): string {
  return t(LIMITS[kind] ?? "limitOther");
}
