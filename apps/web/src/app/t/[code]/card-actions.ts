"use server";
// Starts a card tip for the card form: the payment service creates the Stripe
// PaymentIntent (in the customer's currency) and hands back what Stripe.js
// needs. The card details themselves never touch our servers.
import { Code, ConnectError } from "@connectrpc/connect";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { serverClient } from "../../../lib/api";
import { overloaded } from "../../../lib/errors";
import { parseWholeUnits } from "../../../lib/money";
import { webSettings } from "../../../lib/settings";
import { requestKey } from "../../../lib/request-key";
import { newWriteKey } from "../../../lib/write-key";
import { recipientOf } from "./target";
import { CARD_CURRENCIES } from "@ttip/payment/card-currencies";


export type CardStart =
  // open: the card form confirms with clientSecret; else the payment needs nothing more from the customer (confirmed
  // before: a page opened again after a lost answer): the status page shows it. seed: the form's seed from now on.
  | { ok: true; tipId: string; amountMinor: string; open: boolean; clientSecret: string; publishableKey: string; stripeJsUrl: string; statusUrl: string; seed: string }
  // ended: looked up (`find`), the tip under the key ended without money (declined, expired).
  | { ok: false; error: "amount" | "least" | "limit" | "unavailable" | "busy" | "generic" | "ended" };

/** What a card tip asks, without its key: the same from the same seed is the same tip (request-key.ts). */
const cardIntent = (code: string, payload: string, amountMinor: bigint, currency: string) =>
  JSON.stringify(["card", code, payload, amountMinor.toString(), currency]);

/**
 * Starts (or, asked again from the device's kept seed, finds) the card tip. Its key is worked out from the seed the
 * card form keeps on the device (tip-seed.ts), as M-Pesa's is from the M-Pesa form's: a card confirmed whose answer was lost, asked again from
 * a page opened again, is the same tip, not a second charge. A tip under the key that ended without money (declined
 * by the provider, expired) is no longer the customer's: the tip is started again under a new seed, unless `find`
 * (the form looking up the tip it confirmed): then "ended", and the customer starts again knowingly.
 */
export async function startCardTip(input: { code: string; payload: string; amount: string; currency: string; seed: string; locale: string; find?: boolean }): Promise<CardStart> {
  const currency = CARD_CURRENCIES.includes(input.currency) ? input.currency : "";
  const amountMinor = parseWholeUnits(input.amount, 1_000_000);
  if (!currency || amountMinor === undefined || !/^[0-9a-f-]{36}$/.test(input.seed)) return { ok: false, error: "amount" };
  const start = (seed: string) => createCardTip({ ...input, currency, amountMinor, seed });
  try {
    const first = await start(input.seed);
    if (first.ended && input.find) return { ok: false, error: "ended" };
    return (first.ended ? await start(newWriteKey()) : first).started;
  } catch (err) {
    const e = ConnectError.from(err);
    if (e.code === Code.InvalidArgument && /amount: a card tip may be at most/.test(e.rawMessage)) return { ok: false, error: "limit" };
    if (e.code === Code.InvalidArgument && /amount: a card tip is at least/.test(e.rawMessage)) return { ok: false, error: "least" };
    if (e.code === Code.InvalidArgument) return { ok: false, error: "amount" };
    if (e.code === Code.FailedPrecondition || e.code === Code.Unimplemented) return { ok: false, error: "unavailable" };
    if (overloaded(e)) return { ok: false, error: "busy" };
    return { ok: false, error: "generic" };
  }
}

async function createCardTip(input: { code: string; payload: string; amountMinor: bigint; currency: string; seed: string; locale: string }): Promise<{ ended: boolean; started: CardStart }> {
  const { code, payload, amountMinor, currency, seed } = input;
  const r = await serverClient(PaymentService, { locale: input.locale }).createTip({
    idempotencyKey: requestKey(seed, cardIntent(code, payload, amountMinor, currency)),
    recipient: { case: "qrCode", value: recipientOf(code, payload) },
    amount: { amountMinor, currency },
    payment: { case: "card", value: true },
    // The page's language, for the e-mailed receipt (the client says which: only ours are passed on).
    locale: input.locale === "sw" ? "sw" : "en",
  });
  const tip = r.tip!;
  const started: CardStart = {
    ok: true,
    tipId: tip.tipId,
    amountMinor: amountMinor.toString(),
    open: tip.status === TipStatus.PENDING && r.stripeClientSecret !== "",
    clientSecret: r.stripeClientSecret,
    publishableKey: r.stripePublishableKey,
    // Stripe.js must come from js.stripe.com in real mode; make run and the tests serve the simulator's double.
    stripeJsUrl: webSettings().stripeJsUrl,
    statusUrl: `/t/${encodeURIComponent(code)}/tips/${tip.tipId}${payload ? `?p=${encodeURIComponent(payload)}` : ""}`,
    seed,
  };
  return { ended: tip.status === TipStatus.FAILED || tip.status === TipStatus.EXPIRED, started };
}
