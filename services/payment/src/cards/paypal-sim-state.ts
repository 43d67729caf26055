// The PayPal simulator's state, created once per simulator: credentials and
// tokens, orders, captures and disputes, the events made and their webhook
// deliveries, and the requests seen. Endpoint functions (paypal-sim-routes.ts)
// read and change it.
import { createHash, randomBytes } from "node:crypto";
import { hmacSha256 } from "@ttip/runtime";
import { ReplayStore, SimTimers, type SimReply } from "../simulator-http.js";

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface PayPalSimulatorOptions {
  webhookDelayMs?: number;
}

export interface PayPalEvent {
  id: string;
  type: string;
  body: string;
  delivered: boolean;
}

export interface PayPalRequest {
  method: string;
  path: string;
  requestId?: string;
  /** The JSON body sent, if any. */
  body?: unknown;
}

/** Deliveries per webhook event, the first included. */
const WEBHOOK_ATTEMPTS = 4;

export const paypalId = (prefix: string, n = 17) => `${prefix}${randomBytes(n).toString("hex").toUpperCase().slice(0, n)}`;

/** Minor units to PayPal's decimal string ("12.50"). */
export function value(minor: bigint): string {
  return `${minor / 100n}.${(minor % 100n).toString().padStart(2, "0")}`;
}

/** PayPal's decimal string to minor units. */
export function minor(v: string): bigint {
  const [a, b = ""] = v.split(".");
  return BigInt(a) * 100n + BigInt(b.padEnd(2, "0"));
}

/** PayPal's error body: a name, a message and one detail naming the issue. */
export function paypalError(status: number, name: string, issue: string, message: string): SimReply {
  return { status, body: { name, message, debug_id: randomBytes(6).toString("hex"), details: [{ issue, description: message }], links: [] } };
}

export class PayPalSimState {
  readonly clientId = `sim-${randomBytes(12).toString("base64url")}`;
  readonly clientSecret = randomBytes(24).toString("base64url");
  readonly webhookId = paypalId("WH", 17);
  /** The simulator's stand-in for PayPal's signing certificate. */
  private readonly signingKey = randomBytes(32);
  readonly tokens = new Set<string>();
  readonly orders = new Map<string, Json>();
  readonly captures = new Map<string, { orderId: string; capture: Json }>();
  readonly disputes = new Map<string, Json>();
  /** Orders whose payer's instrument is declined at capture. */
  readonly declining = new Set<string>();
  /** Orders whose refunds answer FAILED. */
  readonly refundsFailing = new Set<string>();
  readonly replays = new ReplayStore();
  readonly events: PayPalEvent[] = [];
  readonly requests: PayPalRequest[] = [];
  readonly timers = new SimTimers();
  /** PayPal-Request-Ids of writes PayPal is still processing. */
  readonly inFlight = new Set<string>();
  /** A test's hold on the writes it picks: each stays in flight until let go. */
  hold?: { match: (path: string) => boolean; waiting: (() => void)[] };
  webhookUrl = "";
  /** The simulator's own base URL (links point at it); known once it listens. */
  url = "";

  constructor(readonly options: PayPalSimulatorOptions) {}

  /** Waits while a test holds writes to `path`. */
  async held(path: string): Promise<void> {
    const hold = this.hold;
    if (hold?.match(path)) await new Promise<void>((resolve) => hold.waiting.push(resolve));
  }

  /** PayPal's transmission signature over id, time, webhook id and the body's digest. */
  sign(transmissionId: string, time: string, body: string): string {
    const digest = createHash("sha256").update(body).digest("hex");
    return hmacSha256(this.signingKey, `${transmissionId}|${time}|${this.webhookId}|${digest}`, "base64");
  }

  /** Records an event and schedules its webhook. */
  emit(type: string, resourceType: string, resource: Json): void {
    const ev: PayPalEvent = { id: paypalId("WH-", 20), type, delivered: false, body: "" };
    ev.body = JSON.stringify({
      id: ev.id, event_version: "1.0", create_time: new Date().toISOString(), resource_type: resourceType, event_type: type,
      summary: type.toLowerCase().replace(/\./g, " "), resource, links: [{ href: `${this.url}/v1/notifications/webhooks-events/${ev.id}`, rel: "self", method: "GET" }],
    });
    this.events.push(ev);
    this.timers.later(this.options.webhookDelayMs ?? 20, () => this.deliver(ev));
  }

  /** POSTs an event with PayPal's transmission headers; failures are retried a few times. */
  async deliver(ev: PayPalEvent, attempt = 1): Promise<void> {
    if (!this.webhookUrl) return;
    const transmissionId = randomBytes(16).toString("hex");
    const time = new Date().toISOString();
    const headers = {
      "content-type": "application/json",
      "paypal-transmission-id": transmissionId,
      "paypal-transmission-time": time,
      "paypal-transmission-sig": this.sign(transmissionId, time, ev.body),
      "paypal-cert-url": `${this.url}/v1/notifications/certs/CERT-sim`,
      "paypal-auth-algo": "SHA256withRSA",
    };
    try {
      const res = await fetch(this.webhookUrl, { method: "POST", headers, body: ev.body });
      await res.arrayBuffer();
      if (res.ok) ev.delivered = true;
      else this.retry(ev, attempt);
    } catch {
      this.retry(ev, attempt);
    }
  }

  private retry(ev: PayPalEvent, attempt: number): void {
    if (attempt < WEBHOOK_ATTEMPTS) this.timers.later(200 * attempt, () => this.deliver(ev, attempt + 1));
  }

  /** An order as PayPal shows it: with the links its status allows. */
  view(o: Json): Json {
    const links = [
      { href: `${this.url}/v2/checkout/orders/${o.id}`, rel: "self", method: "GET" },
      ...(o.status === "PAYER_ACTION_REQUIRED" ? [{ href: `${this.url}/checkoutnow?token=${o.id}`, rel: "payer-action", method: "GET" }] : []),
      ...(o.status === "APPROVED" ? [{ href: `${this.url}/v2/checkout/orders/${o.id}/capture`, rel: "capture", method: "POST" }] : []),
    ];
    return { ...o, links };
  }
}
