"use server";
// A long poll for the status page: the server watches the tip (WatchTip, the
// stream the contract offers) and answers at its first change, so the page
// updates the moment M-Pesa answers without shipping a protobuf runtime to
// the phone (the tip page's script budget).
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { serverClient } from "../../../../../lib/api";

/** Resolves with the new status once it differs from `known`, or with `known` after ~25 s. */
export async function waitForTipChange(tipId: string, known: number): Promise<number> {
  if (!/^[0-9a-f-]{36}$/.test(tipId)) return known;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 25_000);
  try {
    for await (const m of serverClient(PaymentService).watchTip({ tipId }, { signal: abort.signal })) {
      if (m.tip && m.tip.status !== known) return m.tip.status;
    }
  } catch {
    // Timed out or the stream broke: the page asks again.
  } finally {
    clearTimeout(timer);
  }
  return known;
}
