import { PayoutStatus, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import type { WorkerKey } from "../../lib/worker-i18n";

type T = (k: WorkerKey) => string;

export function statusWord(t: T, status: TipStatus): string {
  const name = TipStatus[status];
  return ["SUCCEEDED", "FAILED", "PENDING", "EXPIRED", "HELD_FOR_REVIEW"].includes(name) ? t(`st_${name}` as WorkerKey) : t("st_other");
}

export function payoutWord(t: T, status: PayoutStatus): string {
  const name = PayoutStatus[status];
  return ["SUCCEEDED", "FAILED", "PENDING", "RESOLVING", "ON_HOLD"].includes(name) ? t(`ps_${name}` as WorkerKey) : t("ps_other");
}
