// PayPal Orders v2 behind the card-provider interface: create an order, the
// customer approves it on PayPal, we capture it; webhooks are verified by
// PayPal's own verify-webhook-signature call. The same code talks to
// api-m.paypal.com, the sandbox (api-m.sandbox.paypal.com) and the simulator
// in this folder: only the base URL and credentials change.
import { httpRequest, type HttpCall, type HttpReply } from "@ttip/runtime";
import {
  CardProviderError, WebhookVerificationError,
  type CardEvent, type CardPayment, type CardPaymentStatus, type CardProvider, type CreateCardPayment,
} from "./provider.js";

export interface PayPalConfig {
  clientId: string;
  clientSecret: string;
  /** The id PayPal gave the webhook subscription; verification needs it. */
  webhookId: string;
  /** https://api-m.paypal.com, https://api-m.sandbox.paypal.com, or the simulator. */
  apiBase: string;
  timeoutMs: number;
  /** How requests are sent (default: the runtime's client); tests put a spoiled answer in between. */
  request?: (url: URL, call: HttpCall) => Promise<HttpReply>;
}

/** Currencies with no minor unit at PayPal (none of ours, but amounts are formatted by it). */
const ZERO_DECIMAL = new Set(["JPY", "HUF", "TWD"]);
/** What a refunded payer reads in PayPal beside the refund. */
const PAYER_REFUND_NOTE = "A refund of your tip through TTIP.";

export function paypalValue(minor: bigint, currency: string): string {
  if (ZERO_DECIMAL.has(currency)) return minor.toString();
  const abs = minor < 0n ? -minor : minor;
  return `${minor < 0n ? "-" : ""}${abs / 100n}.${(abs % 100n).toString().padStart(2, "0")}`;
}

export function paypalMinor(value: string, currency: string): bigint {
  const m = /^(-?)(\d+)(?:\.(\d{1,2}))?$/.exec(value);
  if (!m) throw new Error(`not a PayPal amount: ${value}`);
  const minor = ZERO_DECIMAL.has(currency) ? BigInt(m[2]) : BigInt(m[2]) * 100n + BigInt((m[3] ?? "").padEnd(2, "0"));
  return m[1] ? -minor : minor;
}

interface Order {
  id: string;
  status: "CREATED" | "SAVED" | "APPROVED" | "VOIDED" | "COMPLETED" | "PAYER_ACTION_REQUIRED";
  links?: { href: string; rel: string }[];
  payer?: { payer_id?: string; address?: { country_code?: string } };
  purchase_units?: {
    amount: { currency_code: string; value: string };
    payments?: { captures?: { id: string; status: string; amount: { currency_code: string; value: string } }[] };
  }[];
}

const STATUS: Record<Order["status"], CardPaymentStatus> = {
  CREATED: "awaiting_customer",
  SAVED: "awaiting_customer",
  PAYER_ACTION_REQUIRED: "awaiting_customer",
  APPROVED: "authorized",
  COMPLETED: "succeeded",
  VOIDED: "canceled",
};

export class PayPalCardProvider implements CardProvider {
  readonly name = "paypal" as const;
  readonly publicKey: string;
  private token?: { value: string; until: number; pending?: Promise<string> };

  constructor(private readonly config: PayPalConfig) {
    this.publicKey = config.clientId;
  }

  async create(input: CreateCardPayment): Promise<CardPayment> {
    const order = await this.call<Order>("POST", "/v2/checkout/orders", input.idempotencyKey, {
      intent: "CAPTURE",
      purchase_units: [{
        reference_id: input.tipId,
        custom_id: input.tipId,
        description: input.description.slice(0, 127),
        amount: { currency_code: input.currency, value: paypalValue(input.amountMinor, input.currency) },
      }],
      payment_source: {
        paypal: {
          experience_context: {
            user_action: "PAY_NOW",
            shipping_preference: "NO_SHIPPING",
            ...(input.returnUrl ? { return_url: input.returnUrl, cancel_url: input.returnUrl } : {}),
          },
        },
      },
    });
    return toPayment(order);
  }

  async retrieve(paymentId: string): Promise<CardPayment> {
    return toPayment(await this.call<Order>("GET", `/v2/checkout/orders/${encodeURIComponent(paymentId)}`));
  }

  async capture(paymentId: string, idempotencyKey: string): Promise<CardPayment> {
    return toPayment(await this.call<Order>("POST", `/v2/checkout/orders/${encodeURIComponent(paymentId)}/capture`, idempotencyKey, {}));
  }

  /**
   * Orders v2 has no void for an approved CAPTURE order: an order we do not
   * capture is never charged and PayPal expires it. So "cancel" is ours alone.
   */
  async cancel(paymentId: string): Promise<CardPayment> {
    const p = await this.retrieve(paymentId);
    if (p.status === "succeeded") throw new CardProviderError("the order was already captured", "rejected", "ORDER_ALREADY_CAPTURED", p);
    return { ...p, status: "canceled" };
  }

  async refund(input: { paymentId: string; chargeId?: string; amountMinor: bigint; currency: string; idempotencyKey: string; reason: string }): Promise<{ refundId: string; status: string }> {
    const captureId = input.chargeId ?? (await this.retrieve(input.paymentId)).chargeId;
    if (!captureId) throw new CardProviderError("the order has no capture to refund", "rejected");
    const r = await this.call<{ id: string; status: string }>("POST", `/v2/payments/captures/${encodeURIComponent(captureId)}/refund`, input.idempotencyKey, {
      amount: { currency_code: input.currency, value: paypalValue(input.amountMinor, input.currency) },
      // The payer's words, not the admin's reason (which may name a worker or a suspicion): that stays in our records.
      note_to_payer: PAYER_REFUND_NOTE,
    });
    return { refundId: r.id, status: r.status };
  }

  /** PayPal signs with a certificate; its verify-webhook-signature API checks it for us. */
  async parseWebhook(rawBody: Buffer, headers: Record<string, string | string[] | undefined>): Promise<CardEvent> {
    const h = (name: string) => {
      const v = headers[name];
      if (typeof v !== "string" || !v) throw new WebhookVerificationError(`no ${name.toUpperCase()} header`);
      return v;
    };
    let event: { id: string; event_type: string; resource: Record<string, unknown> };
    try {
      event = JSON.parse(rawBody.toString("utf8"));
    } catch {
      throw new WebhookVerificationError("body is not JSON");
    }
    if (typeof event?.id !== "string" || typeof event.event_type !== "string" || !event.resource) throw new WebhookVerificationError("not a PayPal event");
    const verdict = await this.call<{ verification_status: string }>("POST", "/v1/notifications/verify-webhook-signature", undefined, {
      auth_algo: h("paypal-auth-algo"),
      cert_url: h("paypal-cert-url"),
      transmission_id: h("paypal-transmission-id"),
      transmission_sig: h("paypal-transmission-sig"),
      transmission_time: h("paypal-transmission-time"),
      webhook_id: this.config.webhookId,
      webhook_event: event,
    }).catch((err) => {
      if (err instanceof CardProviderError && err.kind === "rejected") throw new WebhookVerificationError(err.message);
      throw err;
    });
    if (verdict.verification_status !== "SUCCESS") throw new WebhookVerificationError(`PayPal says ${verdict.verification_status}`);
    return toCardEvent(event);
  }

  private async accessToken(): Promise<string> {
    if (this.token && this.token.until > Date.now()) return this.token.value;
    if (this.token?.pending) return this.token.pending;
    const pending = (async () => {
      const res = await this.fetch("/v1/oauth2/token", {
        method: "POST",
        headers: {
          authorization: `Basic ${Buffer.from(`${this.config.clientId}:${this.config.clientSecret}`).toString("base64")}`,
          "content-type": "application/x-www-form-urlencoded",
        },
        body: "grant_type=client_credentials",
      });
      const body = (jsonObject(await res.text()) ?? {}) as { access_token?: string; expires_in?: number; error_description?: string };
      if (!res.ok || !body.access_token) throw new CardProviderError(`PayPal OAuth refused: ${body.error_description ?? res.status}`, res.status >= 500 ? "unknown" : "rejected");
      // Refreshed at 90% of its life.
      this.token = { value: body.access_token, until: Date.now() + (body.expires_in ?? 300) * 900 };
      return body.access_token;
    })();
    this.token = { value: "", until: 0, pending };
    try {
      return await pending;
    } catch (err) {
      this.token = undefined;
      throw err;
    }
  }

  /** Over the runtime's kept connections (http-client.ts: a fraction of fetch's CPU per call). */
  private async fetch(path: string, init: Omit<HttpCall, "timeoutMs">): Promise<HttpReply> {
    try {
      return await (this.config.request ?? httpRequest)(new URL(path, this.config.apiBase), { ...init, timeoutMs: this.config.timeoutMs });
    } catch (err) {
      throw new CardProviderError(`PayPal did not answer: ${(err as Error).message}`, "unknown");
    }
  }

  /** Every write carries PayPal-Request-Id (PayPal's idempotency key). */
  private async call<T>(method: "GET" | "POST", path: string, requestId?: string, body?: unknown): Promise<T> {
    const res = await this.fetch(path, {
      method,
      headers: {
        authorization: `Bearer ${await this.accessToken()}`,
        "content-type": "application/json",
        prefer: "return=representation",
        ...(requestId ? { "paypal-request-id": requestId } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      // A read, or a write PayPal recognises by its request id: safe to send again.
      repeatOnStaleConnection: method === "GET" || requestId !== undefined,
    });
    const answer = jsonObject(await res.text());
    if (res.ok) {
      // A 2xx that is not PayPal's JSON (cut short, a proxy's page, empty) refuses nothing: the order or capture may have run.
      if (!answer) throw new CardProviderError(`PayPal ${method} ${path}: answered ${res.status} without its JSON; the request may have run`, "unknown");
      return answer as T;
    }
    const json = answer ?? {};
    const issue = (json as { details?: { issue?: string }[]; name?: string }).details?.[0]?.issue ?? (json as { name?: string }).name ?? String(res.status);
    // PREVIOUS_REQUEST_IN_PROGRESS: PayPal is still processing another request under this PayPal-Request-Id, which may
    // yet make the order, capture or refund; a refusal only of this one.
    const inDoubt = res.status >= 500 || res.status === 429 || issue === "PREVIOUS_REQUEST_IN_PROGRESS";
    throw new CardProviderError(`PayPal ${method} ${path}: ${issue} (${(json as { message?: string }).message ?? res.status})`, inDoubt ? "unknown" : "rejected", issue);
  }
}

/** A JSON object's text parsed; undefined for anything else (empty, cut short, a page, null, a list). */
function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = text ? JSON.parse(text) : undefined;
    return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function toPayment(o: Order): CardPayment {
  const unit = o.purchase_units?.[0];
  const capture = unit?.payments?.captures?.[0];
  const currency = unit?.amount.currency_code ?? capture?.amount.currency_code ?? "";
  const approve = o.links?.find((l) => l.rel === "payer-action" || l.rel === "approve");
  let status = STATUS[o.status] ?? "processing";
  if (o.status === "COMPLETED" && capture && capture.status !== "COMPLETED") status = capture.status === "PENDING" ? "processing" : "awaiting_customer";
  return {
    id: o.id,
    status,
    amountMinor: unit ? paypalMinor(unit.amount.value, currency) : 0n,
    currency,
    nextActionUrl: status === "awaiting_customer" ? approve?.href : undefined,
    chargeId: capture?.id,
    // PayPal shows no card number: the payer's account stands in for the card in the rules.
    card: o.payer?.payer_id ? { fingerprint: `paypal:${o.payer.payer_id}`, country: o.payer.address?.country_code ?? "", brand: "paypal", last4: "" } : undefined,
    failureCode: capture && capture.status === "DECLINED" ? "INSTRUMENT_DECLINED" : undefined,
  };
}

/**
 * A closed dispute's outcome_code by who kept the money. Lost: the customer was refunded, by PayPal's decision
 * or because the merchant accepted the claim (ACCEPTED). Won: the merchant kept it. Any other code (a payout
 * PayPal funded, NONE) debits no merchant and closes as won does.
 */
const DISPUTE_LOST = new Set(["RESOLVED_BUYER_FAVOUR", "ACCEPTED"]);
const DISPUTE_WON = new Set(["RESOLVED_SELLER_FAVOUR", "CANCELED_BY_BUYER", "DENIED"]);

function toCardEvent(e: { id: string; event_type: string; resource: Record<string, unknown> }): CardEvent {
  const base = { eventId: e.id, type: e.event_type };
  const r = e.resource as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  switch (e.event_type) {
    case "CHECKOUT.ORDER.APPROVED":
      return { kind: "payment", ...base, payment: toPayment(r as Order) };
    case "PAYMENT.CAPTURE.COMPLETED":
    case "PAYMENT.CAPTURE.DENIED": {
      const orderId = r.supplementary_data?.related_ids?.order_id ?? "";
      const currency = r.amount?.currency_code ?? "";
      const payment: CardPayment = {
        id: orderId, status: e.event_type === "PAYMENT.CAPTURE.COMPLETED" ? "succeeded" : "awaiting_customer",
        amountMinor: paypalMinor(r.amount?.value ?? "0", currency), currency, chargeId: r.id,
        failureCode: e.event_type === "PAYMENT.CAPTURE.DENIED" ? "INSTRUMENT_DECLINED" : undefined,
      };
      return { kind: e.event_type === "PAYMENT.CAPTURE.COMPLETED" ? "payment" : "payment_failed", ...base, payment };
    }
    case "PAYMENT.CAPTURE.REFUNDED": {
      const captureLink = (r.links as { rel: string; href: string }[] | undefined)?.find((l) => l.rel === "up")?.href ?? "";
      const currency = r.amount?.currency_code ?? "";
      return { kind: "refunded", ...base, paymentId: r.supplementary_data?.related_ids?.order_id ?? "", chargeId: captureLink.split("/").pop() ?? "",
        refundedMinor: paypalMinor(r.seller_payable_breakdown?.total_refunded_amount?.value ?? r.amount?.value ?? "0", currency), currency };
    }
    case "CUSTOMER.DISPUTE.CREATED":
    case "CUSTOMER.DISPUTE.RESOLVED": {
      const currency = r.dispute_amount?.currency_code ?? "";
      // A dispute names the capture (seller_transaction_id), not the order.
      const orderId = "";
      const chargeId: string = r.disputed_transactions?.[0]?.seller_transaction_id ?? "";
      const amountMinor = paypalMinor(r.dispute_amount?.value ?? "0", currency);
      if (e.event_type === "CUSTOMER.DISPUTE.CREATED") return { kind: "dispute_opened", ...base, paymentId: orderId, chargeId, disputeId: r.dispute_id, amountMinor, currency, reason: r.reason ?? "" };
      const code = r.dispute_outcome?.outcome_code ?? "";
      const outcome = DISPUTE_LOST.has(code) ? "lost" : DISPUTE_WON.has(code) ? "won" : "other";
      return { kind: "dispute_closed", ...base, paymentId: orderId, chargeId, disputeId: r.dispute_id, amountMinor, currency, outcome };
    }
    default:
      return { kind: "ignored", ...base };
  }
}
