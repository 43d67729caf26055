// The Stripe simulator's state, created once per simulator: keys, the objects
// Stripe keeps (PaymentIntents, charges, refunds, disputes, balance
// transactions, payouts), the events made and their webhook deliveries, and
// the requests seen. Endpoint functions (stripe-sim-routes.ts) and the
// payment flow (stripe-sim-payments.ts) read and change it.
import { createHmac, randomBytes } from "node:crypto";
import { ReplayStore, SimTimers, type SimReply } from "../simulator-http.js";

export interface StripeSimulatorOptions {
  /** Where webhooks go (our /stripe/webhook); set later with setWebhookUrl. */
  webhookUrl?: string;
  webhookSecret?: string;
  /** Delay before each webhook delivery. */
  webhookDelayMs?: number;
  /** Dispute opened this long after a pm_card_createDispute payment succeeds. */
  disputeDelayMs?: number;
  /** A refund of a pm_card_refundFail payment fails this long after it was made. */
  refundFailDelayMs?: number;
}

/** A Stripe API object as the simulator holds it: an id and Stripe's fields. */
export type StripeObject = Record<string, unknown> & { id: string };

export interface SimEvent {
  id: string;
  type: string;
  body: string;
  deliveries: number;
  delivered: boolean;
}

export interface SimRequest {
  method: string;
  path: string;
  idempotencyKey?: string;
}

export const API_VERSION = "2026-10-28.endive";

/** Stripe's failed deliveries are retried with backoff; here a few quick ones. */
const WEBHOOK_ATTEMPTS = 4;

export function stripeId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString("base64url").replace(/[-_]/g, "x")}`;
}

/** Stripe's error object: a type and message, with the code and parameter when there are. */
export function stripeError(status: number, type: string, message: string, code?: string, param?: string): SimReply {
  return { status, body: { error: { type, message, ...(code ? { code } : {}), ...(param ? { param } : {}) } } };
}

export class StripeSimState {
  readonly secretKey = `sk_test_sim${randomBytes(12).toString("hex")}`;
  readonly publishableKey = `pk_test_sim${randomBytes(12).toString("hex")}`;
  readonly webhookSecret: string;
  webhookUrl: string;
  paused = false;
  /** The simulator's own base URL (3-D Secure pages link to it); known once it listens. */
  url = "";
  readonly intents = new Map<string, StripeObject>();
  readonly charges = new Map<string, StripeObject>();
  readonly disputes = new Map<string, StripeObject>();
  readonly refunds = new Map<string, StripeObject>();
  readonly balanceTxns: StripeObject[] = [];
  readonly payouts = new Map<string, StripeObject>();
  readonly events: SimEvent[] = [];
  readonly requests: SimRequest[] = [];
  readonly replays = new ReplayStore();
  readonly timers = new SimTimers();

  constructor(readonly options: StripeSimulatorOptions) {
    this.webhookSecret = options.webhookSecret ?? `whsec_${randomBytes(24).toString("base64")}`;
    this.webhookUrl = options.webhookUrl ?? "";
  }

  now(): number {
    return Math.floor(Date.now() / 1000);
  }

  /** Records an event and schedules its webhook. */
  emit(type: string, object: StripeObject): SimEvent {
    const id = stripeId("evt");
    const event = {
      id, object: "event", api_version: API_VERSION, created: this.now(), livemode: false, pending_webhooks: 1,
      request: { id: stripeId("req"), idempotency_key: null }, type, data: { object: structuredClone(object) },
    };
    const ev: SimEvent = { id, type, body: JSON.stringify(event, null, 2), deliveries: 0, delivered: false };
    this.events.push(ev);
    this.timers.later(this.options.webhookDelayMs ?? 20, () => this.deliver(ev));
    return ev;
  }

  /**
   * POSTs an event signed as Stripe signs it; the status answered (0 when none). A failed automatic delivery
   * is tried again later; a resend by hand (`retry` false, as from Stripe's dashboard) is one attempt, so a
   * test's own resend never races a retry it set off.
   */
  async deliver(ev: SimEvent, retry = true): Promise<number> {
    if (!this.webhookUrl || this.paused) return 0;
    ev.deliveries++;
    const t = this.now();
    const sig = createHmac("sha256", this.webhookSecret).update(`${t}.${ev.body}`).digest("hex");
    try {
      const res = await fetch(this.webhookUrl, {
        method: "POST",
        headers: { "content-type": "application/json; charset=utf-8", "stripe-signature": `t=${t},v1=${sig}`, "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)" },
        body: ev.body,
      });
      await res.arrayBuffer();
      if (res.ok) ev.delivered = true;
      else if (retry) this.retry(ev);
      return res.status;
    } catch {
      if (retry) this.retry(ev);
      return 0;
    }
  }

  private retry(ev: SimEvent): void {
    if (ev.deliveries < WEBHOOK_ATTEMPTS) this.timers.later(200 * ev.deliveries, () => this.deliver(ev));
  }

  balanceTxn(type: string, source: string, amount: number, fee: number, currency: string): StripeObject {
    const feeDetails = fee ? [{ amount: fee, currency, type: "stripe_fee", description: "Stripe processing fees" }] : [];
    const t: StripeObject = {
      id: stripeId("txn"), object: "balance_transaction", amount, currency, fee, net: amount - fee, type, source, status: "available",
      created: this.now(), available_on: this.now(), description: null, fee_details: feeDetails,
    };
    this.balanceTxns.push(t);
    return t;
  }
}
