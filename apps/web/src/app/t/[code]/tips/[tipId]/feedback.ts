"use server";
// The rating and message after a confirmed tip: a plain form post (no script
// needed); the payment service takes it only for a tip that went through.
import { Code, ConnectError } from "@connectrpc/connect";
import { redirect } from "next/navigation";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { serverClient } from "../../../../../lib/api";

export async function sendFeedback(form: FormData): Promise<void> {
  const tipId = String(form.get("tip") ?? "");
  const back = String(form.get("back") ?? "/");
  const rating = Number(form.get("rating") ?? 0);
  const message = String(form.get("message") ?? "").trim().slice(0, 280);
  const safeBack = back.startsWith("/t/") ? back : "/";
  const sep = safeBack.includes("?") ? "&" : "?";
  if (!/^[0-9a-f-]{36}$/.test(tipId) || !Number.isInteger(rating) || rating < 1 || rating > 5) redirect(`${safeBack}${sep}feedback=invalid`);
  let outcome = "thanks";
  try {
    await serverClient(PaymentService).rateTip({ tipId, rating, message });
  } catch (err) {
    outcome = refusalOutcome(ConnectError.from(err));
  }
  redirect(`${safeBack}${sep}feedback=${outcome}`);
}

/**
 * What the page tells the customer: the tip's state refused it (not paid, or rated already: the
 * page then shows the thanks), or the service could not take it now (an outage: send it again).
 */
function refusalOutcome(e: ConnectError): string {
  if (e.code === Code.FailedPrecondition) return /already/.test(e.rawMessage) ? "thanks" : "refused";
  if (e.code === Code.InvalidArgument) return "invalid";
  if (e.code === Code.NotFound) return "missing";
  return "retry";
}
