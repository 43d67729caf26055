// Stripe PaymentIntents through the official client. The same code talks to
// api.stripe.com (test or live keys), stripe-mock and the simulator in this
// folder: only the base URL and keys change.
import Stripe from "stripe";
import {
  CardProviderError, WebhookVerificationError,
  type BalanceTransaction, type CardEvent, type CardPayment, type CardPaymentStatus, type CardProvider, type CreateCardPayment,
} from "./provider.js";

export interface StripeConfig {
  secretKey: string;
  publishableKey: string;
  webhookSecret: string;
  /** Default https://api.stripe.com; the simulator or stripe-mock in tests and `make run`. */
  apiBase?: string;
  /** How old a Stripe-Signature timestamp may be (seconds). Stripe's own default is 300. */
  webhookToleranceS: number;
  timeoutMs: number;
}

const STATUS: Record<Stripe.PaymentIntent.Status, CardPaymentStatus> = {
  requires_payment_method: "awaiting_customer",
  requires_confirmation: "awaiting_customer",
  requires_action: "requires_action",
  processing: "processing",
  requires_capture: "authorized",
  succeeded: "succeeded",
  canceled: "canceled",
};

export class StripeCardProvider implements CardProvider {
  readonly name = "stripe" as const;
  readonly publicKey: string;
  private readonly stripe: Stripe;

  constructor(private readonly config: StripeConfig) {
    this.publicKey = config.publishableKey;
    const base = config.apiBase ? new URL(config.apiBase) : undefined;
    this.stripe = new Stripe(config.secretKey, {
      ...(base ? { host: base.hostname, port: base.port || (base.protocol === "https:" ? 443 : 80), protocol: base.protocol === "https:" ? "https" : "http" } : {}),
      timeout: config.timeoutMs,
      // Every write carries our own idempotency key, so the client's retries are safe;
      // a few cover a dropped connection without our code seeing it.
      maxNetworkRetries: 2,
      telemetry: false,
    });
  }

  async create(input: CreateCardPayment): Promise<CardPayment> {
    const pi = await this.call(() =>
      this.stripe.paymentIntents.create(
        {
          amount: Number(input.amountMinor),
          currency: input.currency.toLowerCase(),
          // Authorise first; the fraud rules see the card (fingerprint, country) and then capture or cancel.
          capture_method: "manual",
          // Cards alone: the fraud rules key on the card (fingerprint, country), and a method with no card (Link,
          // wallets, pay-later, all offered by automatic payment methods) passed every rule unchecked.
          allowed_payment_method_types: ["card"],
          description: input.description,
          metadata: { tip_id: input.tipId },
        },
        { idempotencyKey: input.idempotencyKey },
      ),
    );
    return toPayment(pi);
  }

  async retrieve(paymentId: string): Promise<CardPayment> {
    return toPayment(await this.call(() => this.stripe.paymentIntents.retrieve(paymentId, { expand: ["latest_charge"] })));
  }

  async capture(paymentId: string, idempotencyKey: string): Promise<CardPayment> {
    return toPayment(await this.call(() => this.stripe.paymentIntents.capture(paymentId, { expand: ["latest_charge"] }, { idempotencyKey })));
  }

  async cancel(paymentId: string, idempotencyKey: string, why: "refused" | "abandoned"): Promise<CardPayment> {
    // A customer who walked away is not reported to Stripe as fraud (its Radar learns from the reason).
    const cancellationReason = why === "refused" ? "fraudulent" : "abandoned";
    return toPayment(await this.call(() => this.stripe.paymentIntents.cancel(paymentId, { cancellation_reason: cancellationReason }, { idempotencyKey })));
  }

  async refund(input: { paymentId: string; amountMinor: bigint; currency?: string; idempotencyKey: string; reason: string }): Promise<{ refundId: string; status: string }> {
    const r = await this.call(() =>
      this.stripe.refunds.create(
        { payment_intent: input.paymentId, amount: Number(input.amountMinor), reason: "requested_by_customer", metadata: { note: input.reason.slice(0, 400) } },
        { idempotencyKey: input.idempotencyKey },
      ),
    );
    return { refundId: r.id, status: r.status ?? "pending" };
  }

  async parseWebhook(rawBody: Buffer, headers: Record<string, string | string[] | undefined>): Promise<CardEvent> {
    const signature = headers["stripe-signature"];
    if (typeof signature !== "string") throw new WebhookVerificationError("no Stripe-Signature header");
    let event: Stripe.Event;
    try {
      event = this.stripe.webhooks.constructEvent(rawBody, signature, this.config.webhookSecret, this.config.webhookToleranceS);
    } catch (err) {
      throw new WebhookVerificationError((err as Error).message);
    }
    return toCardEvent(event);
  }

  async balanceTransactions(afterId: string | undefined, limit: number): Promise<BalanceTransaction[]> {
    // Stripe lists newest first; `ending_before` pages towards newer ones from the last seen.
    // The first pass (no cursor) walks back to the oldest with `starting_after`.
    let data: Stripe.BalanceTransaction[];
    if (afterId) {
      data = (await this.call(() => this.stripe.balanceTransactions.list({ limit: Math.min(limit, 100), ending_before: afterId }))).data;
    } else {
      data = [];
      for (let after: string | undefined; ; ) {
        const page = await this.call(() => this.stripe.balanceTransactions.list({ limit: 100, ...(after ? { starting_after: after } : {}) }));
        data.push(...page.data);
        if (!page.has_more || !page.data.length || data.length >= 10_000) break;
        after = page.data.at(-1)!.id;
      }
      data = data.slice(-limit);
    }
    // Oldest first, in Stripe's own order: `created` is whole seconds, and a sort by it and the id put a newer
    // transaction of the same second before an older one, where a pass waiting on the older moved its cursor past it.
    return data
      .reverse()
      .map((t) => ({
        id: t.id,
        type: t.type,
        sourceId: typeof t.source === "string" ? t.source : (t.source?.id ?? ""),
        currency: t.currency.toUpperCase(),
        amountMinor: BigInt(t.amount),
        feeMinor: BigInt(t.fee),
        netMinor: BigInt(t.net),
        created: new Date(t.created * 1000),
      }));
  }

  /** Stripe's errors in our two kinds: refused (4xx, a decline) or unknown (it may have happened). */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const e = err as Stripe.errors.StripeError;
      if (e?.type === "StripeCardError" || (e?.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500 && e.statusCode !== 409 && e.statusCode !== 429)) {
        const raw = e.raw as { payment_intent?: Stripe.PaymentIntent } | undefined;
        throw new CardProviderError(e.message, "rejected", [e.code, e.decline_code].filter(Boolean).join("/"), raw?.payment_intent ? toPayment(raw.payment_intent) : undefined);
      }
      throw new CardProviderError((err as Error).message, "unknown");
    }
  }
}

function chargeOf(pi: Stripe.PaymentIntent): Stripe.Charge | undefined {
  return typeof pi.latest_charge === "object" && pi.latest_charge ? pi.latest_charge : undefined;
}

export function toPayment(pi: Stripe.PaymentIntent): CardPayment {
  const charge = chargeOf(pi);
  const card = charge?.payment_method_details?.card;
  const err = pi.last_payment_error;
  const next = pi.next_action;
  return {
    id: pi.id,
    status: STATUS[pi.status] ?? "processing",
    amountMinor: BigInt(pi.amount),
    currency: pi.currency.toUpperCase(),
    clientSecret: pi.client_secret ?? undefined,
    nextActionUrl: next?.redirect_to_url?.url ?? undefined,
    chargeId: typeof pi.latest_charge === "string" ? pi.latest_charge : charge?.id,
    card: card ? { fingerprint: card.fingerprint ?? "", country: (card.country ?? "").toUpperCase(), brand: card.brand ?? "", last4: card.last4 ?? "" } : undefined,
    failureCode: err ? [err.code, err.decline_code].filter(Boolean).join("/") || err.type : undefined,
    failureMessage: err?.message ?? undefined,
  };
}

function toCardEvent(event: Stripe.Event): CardEvent {
  const base = { eventId: event.id, type: event.type };
  switch (event.type) {
    case "payment_intent.succeeded":
    case "payment_intent.amount_capturable_updated":
    case "payment_intent.requires_action":
    case "payment_intent.canceled":
    case "payment_intent.processing":
      return { kind: "payment", ...base, payment: toPayment(event.data.object) };
    case "payment_intent.payment_failed":
      return { kind: "payment_failed", ...base, payment: toPayment(event.data.object) };
    case "charge.refunded": {
      const c = event.data.object;
      return { kind: "refunded", ...base, paymentId: idOf(c.payment_intent), chargeId: c.id, refundedMinor: BigInt(c.amount_refunded), currency: c.currency.toUpperCase() };
    }
    case "charge.dispute.created": {
      const d = event.data.object;
      return { kind: "dispute_opened", ...base, paymentId: idOf(d.payment_intent), disputeId: d.id, amountMinor: BigInt(d.amount), currency: d.currency.toUpperCase(), reason: d.reason };
    }
    case "refund.failed": {
      const r = event.data.object;
      return { kind: "refund_failed", ...base, paymentId: idOf(r.payment_intent), chargeId: idOf(r.charge), refundId: r.id, reason: r.failure_reason ?? "failed" };
    }
    case "charge.dispute.closed": {
      const d = event.data.object;
      const outcome = d.status === "won" ? "won" : d.status === "lost" ? "lost" : "other";
      return { kind: "dispute_closed", ...base, paymentId: idOf(d.payment_intent), disputeId: d.id, amountMinor: BigInt(d.amount), currency: d.currency.toUpperCase(), outcome };
    }
    default:
      return { kind: "ignored", ...base };
  }
}

function idOf(v: string | { id: string } | null): string {
  return typeof v === "string" ? v : (v?.id ?? "");
}
