"use server";
// Starts a card tip for the card form: the payment service creates the Stripe
// PaymentIntent (in the customer's currency) and hands back what Stripe.js
// needs. The card details themselves never touch our servers.
import { Code, ConnectError } from "@connectrpc/connect";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { serverClient } from "../../../lib/api";
import { overloaded } from "../../../lib/errors";
import { parseWholeUnits } from "../../../lib/money";
import { webSettings } from "../../../lib/settings";
import { settlesWrite } from "../../../lib/write-key";
import { recipientOf } from "./target";
import { CARD_CURRENCIES } from "@ttip/payment/card-currencies";


export type CardStart =
  | { ok: true; tipId: string; amountMinor: string; clientSecret: string; publishableKey: string; stripeJsUrl: string; statusUrl: string }
  // settled: the service answered, so the form's next attempt is a new tip (a new key); else it may have made this one.
  | { ok: false; error: "amount" | "limit" | "unavailable" | "busy" | "generic"; settled: boolean };

export async function startCardTip(input: { code: string; payload: string; amount: string; currency: string; key: string; locale: string }): Promise<CardStart> {
  const currency = CARD_CURRENCIES.includes(input.currency) ? input.currency : "";
  const amountMinor = parseWholeUnits(input.amount, 1_000_000);
  if (!currency || amountMinor === undefined || !/^[A-Za-z0-9-]{8,128}$/.test(input.key)) return { ok: false, error: "amount", settled: false };
  try {
    const r = await serverClient(PaymentService, { locale: input.locale }).createTip({
      idempotencyKey: input.key,
      recipient: { case: "qrCode", value: recipientOf(input.code, input.payload) },
      amount: { amountMinor, currency },
      payment: { case: "card", value: true },
      // The page's language, for the e-mailed receipt (the client says which: only ours are passed on).
      locale: input.locale === "sw" ? "sw" : "en",
    });
    const tipId = r.tip!.tipId;
    return {
      ok: true,
      tipId,
      amountMinor: amountMinor.toString(),
      clientSecret: r.stripeClientSecret,
      publishableKey: r.stripePublishableKey,
      // Stripe.js must come from js.stripe.com in real mode; make run and the tests serve the simulator's double.
      stripeJsUrl: webSettings().stripeJsUrl,
      statusUrl: `/t/${encodeURIComponent(input.code)}/tips/${tipId}${input.payload ? `?p=${encodeURIComponent(input.payload)}` : ""}`,
    };
  } catch (err) {
    const e = ConnectError.from(err);
    const settled = settlesWrite(e);
    if (e.code === Code.InvalidArgument && /amount: a card tip may be at most/.test(e.rawMessage)) return { ok: false, error: "limit", settled };
    if (e.code === Code.InvalidArgument) return { ok: false, error: "amount", settled };
    if (e.code === Code.FailedPrecondition || e.code === Code.Unimplemented) return { ok: false, error: "unavailable", settled };
    if (overloaded(e)) return { ok: false, error: "busy", settled };
    return { ok: false, error: "generic", settled };
  }
}
