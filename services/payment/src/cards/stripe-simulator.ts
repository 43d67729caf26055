// A Stripe simulator for tests and `make run`: Stripe's real paths, form
// bodies, JSON objects, errors, idempotency keys and signed webhooks, with the
// state stripe-mock does not keep (a PaymentIntent that moves, 3-D Secure,
// refunds, disputes, balance transactions, payouts).
//
// Test payment methods, as in Stripe's test mode:
//   pm_card_visa / pm_card_mastercard    succeed (US card)
//   pm_card_<cc>, e.g. pm_card_gb        succeed, issued in that country
//   pm_card_threeDSecure2Required, pm_card_authenticationRequired
//                                        3-D Secure: requires_action and a page
//   pm_card_chargeDeclined               card_declined / generic_decline
//   pm_card_chargeDeclinedInsufficientFunds  card_declined / insufficient_funds
//   pm_card_createDispute                succeeds, then a dispute opens
// A payment method name may end in "_<n>" to be a different card of the same kind
// (another fingerprint): pm_card_visa_2.
import { createHash, createHmac, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface StripeSimulatorOptions {
  /** Where webhooks go (our /stripe/webhook); set later with setWebhookUrl. */
  webhookUrl?: string;
  webhookSecret?: string;
  /** Delay before each webhook delivery. */
  webhookDelayMs?: number;
  /** Dispute opened this long after a pm_card_createDispute payment succeeds. */
  disputeDelayMs?: number;
}

type Obj = Record<string, unknown> & { id: string };

interface SimEvent {
  id: string;
  type: string;
  body: string;
  deliveries: number;
  delivered: boolean;
}

const API_VERSION = "2026-10-28.endive";

export interface StripeSimulator {
  url: string;
  secretKey: string;
  publishableKey: string;
  webhookSecret: string;
  setWebhookUrl(url: string): void;
  /** Every API request received: method, path and its Idempotency-Key. */
  requests(): { method: string; path: string; idempotencyKey?: string }[];
  /** Every event made, in order (delivered or not). */
  events(): SimEvent[];
  /** The PaymentIntent as Stripe holds it. */
  paymentIntent(id: string): Obj | undefined;
  /** Completes (or fails) a 3-D Secure challenge, as the customer would on its page. */
  completeThreeDS(paymentIntentId: string, pass: boolean): Promise<void>;
  /** Opens a dispute on a PaymentIntent's charge. */
  openDispute(paymentIntentId: string, reason?: string): Promise<string>;
  /** Closes a dispute: "won" or "lost". */
  closeDispute(disputeId: string, status: "won" | "lost"): Promise<void>;
  /** Pays the available balance out to the bank (a payout and its balance transaction). */
  payout(currency: string): Promise<string | undefined>;
  /** Sends an event again, as Stripe's retries do. */
  redeliver(eventId: string): Promise<number>;
  /** Stops delivering webhooks (they are still recorded) until resumed. */
  pauseWebhooks(paused: boolean): void;
  close(): Promise<void>;
}

/** Stripe's standard fee in the simulator: 2.9% + a fixed 30 minor units (0 for zero-decimal currencies). */
function stripeFee(amount: number): number {
  return Math.round((amount * 290) / 10_000) + 30;
}

function id(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString("base64url").replace(/[-_]/g, "x")}`;
}

/** Stripe's form encoding: a[b][c]=v and a[0]=v, to nested objects. */
export function parseForm(body: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of new URLSearchParams(body)) {
    const path = k.split(/\[|\]\[|\]/).filter((p) => p !== "");
    let node: Record<string, unknown> = out;
    path.forEach((p, i) => {
      if (i === path.length - 1) {
        if (k.endsWith("[]")) ((node[p] ??= []) as unknown[]).push(v);
        else node[p] = v;
      } else node = (node[p] ??= {}) as Record<string, unknown>;
    });
  }
  return out;
}

export async function startStripeSimulator(options: StripeSimulatorOptions = {}): Promise<StripeSimulator> {
  const secretKey = `sk_test_sim${randomBytes(12).toString("hex")}`;
  const publishableKey = `pk_test_sim${randomBytes(12).toString("hex")}`;
  const webhookSecret = options.webhookSecret ?? `whsec_${randomBytes(24).toString("base64")}`;
  let webhookUrl = options.webhookUrl ?? "";
  let paused = false;
  const intents = new Map<string, Obj>();
  const charges = new Map<string, Obj>();
  const disputes = new Map<string, Obj>();
  const refunds = new Map<string, Obj>();
  const balanceTxns: Obj[] = [];
  const payouts = new Map<string, Obj>();
  const events: SimEvent[] = [];
  const requests: { method: string; path: string; idempotencyKey?: string }[] = [];
  const idempotency = new Map<string, { fingerprint: string; status: number; body: string }>();
  const timers = new Set<NodeJS.Timeout>();
  let url = "";
  const now = () => Math.floor(Date.now() / 1000);

  const later = (ms: number, fn: () => void | Promise<void>) => {
    const t = setTimeout(() => {
      timers.delete(t);
      void fn();
    }, ms);
    timers.add(t);
  };

  async function deliver(ev: SimEvent): Promise<number> {
    if (!webhookUrl || paused) return 0;
    ev.deliveries++;
    const t = now();
    const sig = createHmac("sha256", webhookSecret).update(`${t}.${ev.body}`).digest("hex");
    try {
      const res = await fetch(webhookUrl, {
        method: "POST",
        headers: { "content-type": "application/json; charset=utf-8", "stripe-signature": `t=${t},v1=${sig}`, "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)" },
        body: ev.body,
      });
      await res.arrayBuffer();
      if (res.ok) ev.delivered = true;
      // Stripe retries failures with backoff; a few quick ones here.
      else if (ev.deliveries < 4) later(200 * ev.deliveries, () => void deliver(ev));
      return res.status;
    } catch {
      if (ev.deliveries < 4) later(200 * ev.deliveries, () => void deliver(ev));
      return 0;
    }
  }

  function emit(type: string, object: Obj): SimEvent {
    const evId = id("evt");
    const body = JSON.stringify({
      id: evId, object: "event", api_version: API_VERSION, created: now(), livemode: false, pending_webhooks: 1,
      request: { id: id("req"), idempotency_key: null }, type, data: { object: structuredClone(object) },
    }, null, 2);
    const ev: SimEvent = { id: evId, type, body, deliveries: 0, delivered: false };
    events.push(ev);
    later(options.webhookDelayMs ?? 20, () => void deliver(ev));
    return ev;
  }

  function card(pm: string) {
    const kind = pm.replace(/_\d+$/, "");
    const m = /^pm_card_([a-z]{2})$/.exec(kind);
    const country = m && !["us"].includes(m[1]) ? m[1].toUpperCase() : "US";
    const brand = kind === "pm_card_mastercard" ? "mastercard" : "visa";
    return {
      fingerprint: createHash("sha256").update(`sim-card:${pm}`).digest("base64url").slice(0, 16),
      country, brand, last4: kind.includes("Declined") ? "0002" : kind.includes("3DS") || kind.includes("uthentication") ? "3220" : "4242",
      exp_month: 12, exp_year: new Date().getFullYear() + 3, funding: "credit",
    };
  }

  function balanceTxn(type: string, source: string, amount: number, fee: number, currency: string): Obj {
    const t: Obj = {
      id: id("txn"), object: "balance_transaction", amount, currency, fee, net: amount - fee, type, source, status: "available",
      created: now(), available_on: now(), description: null, fee_details: fee ? [{ amount: fee, currency, type: "stripe_fee", description: "Stripe processing fees" }] : [],
    };
    balanceTxns.push(t);
    return t;
  }

  function expandPi(pi: Obj, expand: unknown): Obj {
    // expand[]=x, expand[0]=x (what stripe-node sends) or a single value.
    const wants = Array.isArray(expand) ? expand : expand && typeof expand === "object" ? Object.values(expand) : expand ? [expand] : [];
    if (wants.includes("latest_charge") && typeof pi.latest_charge === "string") return { ...pi, latest_charge: charges.get(pi.latest_charge) ?? pi.latest_charge };
    return pi;
  }

  /** The charge of an authorised or paid PaymentIntent. */
  function makeCharge(pi: Obj, pm: string, captured: boolean): Obj {
    const c: Obj = {
      id: id("ch"), object: "charge", amount: pi.amount, amount_captured: captured ? pi.amount : 0, amount_refunded: 0, captured, refunded: false,
      currency: pi.currency, payment_intent: pi.id, payment_method: pm, status: "succeeded", paid: true, disputed: false, created: now(),
      balance_transaction: null, outcome: { network_status: "approved_by_network", type: "authorized", risk_level: "normal" },
      payment_method_details: { type: "card", card: card(pm) }, metadata: pi.metadata ?? {}, livemode: false,
    };
    charges.set(c.id, c);
    return c;
  }

  function succeed(pi: Obj, pm: string) {
    const c = makeCharge(pi, pm, pi.capture_method !== "manual");
    pi.latest_charge = c.id;
    pi.payment_method = pm;
    pi.last_payment_error = null;
    pi.next_action = null;
    if (pi.capture_method === "manual") {
      pi.status = "requires_capture";
      pi.amount_capturable = pi.amount;
      emit("payment_intent.amount_capturable_updated", pi);
    } else capture(pi);
  }

  function capture(pi: Obj) {
    const c = charges.get(pi.latest_charge as string)!;
    c.captured = true;
    c.amount_captured = pi.amount;
    const txn = balanceTxn("charge", c.id, pi.amount as number, stripeFee(pi.amount as number), pi.currency as string);
    c.balance_transaction = txn.id;
    pi.status = "succeeded";
    pi.amount_capturable = 0;
    pi.amount_received = pi.amount;
    emit("charge.succeeded", c);
    emit("payment_intent.succeeded", pi);
    if (String(pi.payment_method).startsWith("pm_card_createDispute")) later(options.disputeDelayMs ?? 100, () => void openDispute(pi.id, "fraudulent"));
  }

  function decline(pi: Obj, code: string, decline: string, message: string): { status: number; body: unknown } {
    const c = makeCharge(pi, String(pi.payment_method ?? ""), false);
    c.status = "failed";
    c.paid = false;
    pi.latest_charge = c.id;
    pi.status = "requires_payment_method";
    pi.last_payment_error = { type: "card_error", code, decline_code: decline, message, charge: c.id };
    pi.next_action = null;
    emit("payment_intent.payment_failed", pi);
    return { status: 402, body: { error: { type: "card_error", code, decline_code: decline, message, charge: c.id, payment_intent: pi, doc_url: `https://stripe.com/docs/error-codes/${code}` } } };
  }

  function confirm(pi: Obj, params: Record<string, unknown>): { status: number; body: unknown } {
    if (!["requires_payment_method", "requires_confirmation", "requires_action"].includes(pi.status as string)) {
      return error(400, "invalid_request_error", `This PaymentIntent's status is ${pi.status}; it cannot be confirmed.`, "payment_intent_unexpected_state");
    }
    const pm = String(params.payment_method ?? pi.payment_method ?? "");
    if (!/^pm_card_[A-Za-z0-9_]+$/.test(pm)) return error(400, "invalid_request_error", "No such PaymentMethod: '" + pm + "'", "resource_missing", "payment_method");
    pi.payment_method = pm;
    const kind = pm.replace(/_\d+$/, "");
    if (kind === "pm_card_chargeDeclined") return decline(pi, "card_declined", "generic_decline", "Your card was declined.");
    if (kind === "pm_card_chargeDeclinedInsufficientFunds") return decline(pi, "card_declined", "insufficient_funds", "Your card has insufficient funds.");
    if (kind === "pm_card_threeDSecure2Required" || kind === "pm_card_authenticationRequired") {
      pi.status = "requires_action";
      const returnUrl = String(params.return_url ?? "");
      pi.next_action = {
        type: "redirect_to_url",
        redirect_to_url: { url: `${url}/__sim/3ds/${pi.id}?return_url=${encodeURIComponent(returnUrl)}`, return_url: returnUrl },
      };
      emit("payment_intent.requires_action", pi);
      return { status: 200, body: pi };
    }
    succeed(pi, pm);
    return { status: 200, body: pi };
  }

  async function openDispute(piId: string, reason = "fraudulent"): Promise<string> {
    const pi = intents.get(piId);
    if (!pi || pi.status !== "succeeded") throw new Error(`no paid PaymentIntent ${piId}`);
    const c = charges.get(pi.latest_charge as string)!;
    c.disputed = true;
    const d: Obj = {
      id: id("du"), object: "dispute", amount: (c.amount as number) - (c.amount_refunded as number), currency: c.currency, charge: c.id, payment_intent: pi.id,
      reason, status: "needs_response", created: now(), is_charge_refundable: false, livemode: false, balance_transactions: [],
    };
    const txn = balanceTxn("adjustment", d.id, -(d.amount as number), 1500, c.currency as string);
    (d.balance_transactions as Obj[]).push(txn);
    disputes.set(d.id, d);
    emit("charge.dispute.created", d);
    return d.id;
  }

  function error(status: number, type: string, message: string, code?: string, param?: string) {
    return { status, body: { error: { type, message, ...(code ? { code } : {}), ...(param ? { param } : {}) } } };
  }

  function list(data: Obj[], path: string) {
    return { object: "list", data, has_more: false, url: path };
  }

  function route(method: string, path: string, params: Record<string, unknown>, query: URLSearchParams): { status: number; body: unknown } {
    let m: RegExpExecArray | null;
    if (method === "POST" && path === "/v1/payment_intents") {
      const amount = Number(params.amount);
      const currency = String(params.currency ?? "");
      if (!Number.isInteger(amount) || amount < 1) return error(400, "invalid_request_error", "Invalid integer: amount", "parameter_invalid_integer", "amount");
      if (!/^[a-z]{3}$/.test(currency)) return error(400, "invalid_request_error", "Invalid currency", "parameter_invalid_string", "currency");
      // Stripe's minimum charge is about 50 US cents; the simulator applies it to every currency but zero-decimal ones.
      if (amount < 50) return error(400, "invalid_request_error", "Amount must be at least 50 cents", "amount_too_small", "amount");
      const piId = id("pi");
      const pi: Obj = {
        id: piId, object: "payment_intent", amount, amount_capturable: 0, amount_received: 0, currency,
        capture_method: params.capture_method === "manual" ? "manual" : "automatic_async", confirmation_method: "automatic",
        client_secret: `${piId}_secret_${randomBytes(12).toString("base64url").replace(/[-_]/g, "y")}`, created: now(), description: params.description ?? null,
        latest_charge: null, last_payment_error: null, livemode: false, metadata: params.metadata ?? {}, next_action: null, payment_method: null,
        payment_method_types: ["card"], automatic_payment_methods: params.automatic_payment_methods ? { enabled: true, allow_redirects: "always" } : null,
        status: "requires_payment_method", cancellation_reason: null, canceled_at: null,
      };
      intents.set(piId, pi);
      emit("payment_intent.created", pi);
      if (params.confirm === "true") return confirm(pi, params);
      return { status: 200, body: pi };
    }
    if ((m = /^\/v1\/payment_intents\/(pi_\w+)(?:\/(confirm|capture|cancel))?$/.exec(path))) {
      const pi = intents.get(m[1]);
      if (!pi) return error(404, "invalid_request_error", `No such payment_intent: '${m[1]}'`, "resource_missing", "intent");
      if (method === "GET" && !m[2]) return { status: 200, body: expandPi(pi, parseForm(query.toString()).expand) };
      if (method === "POST" && m[2] === "confirm") {
        const r = confirm(pi, params);
        return r.status === 200 ? { status: 200, body: expandPi(pi, params.expand) } : r;
      }
      if (method === "POST" && m[2] === "capture") {
        if (pi.status !== "requires_capture") return error(400, "invalid_request_error", `This PaymentIntent could not be captured because it has a status of ${pi.status}.`, "payment_intent_unexpected_state");
        capture(pi);
        return { status: 200, body: expandPi(pi, params.expand) };
      }
      if (method === "POST" && m[2] === "cancel") {
        if (pi.status === "succeeded" || pi.status === "canceled") return error(400, "invalid_request_error", `You cannot cancel this PaymentIntent because it has a status of ${pi.status}.`, "payment_intent_unexpected_state");
        pi.status = "canceled";
        pi.cancellation_reason = params.cancellation_reason ?? null;
        pi.canceled_at = now();
        pi.amount_capturable = 0;
        emit("payment_intent.canceled", pi);
        return { status: 200, body: pi };
      }
    }
    if (method === "GET" && (m = /^\/v1\/charges\/(ch_\w+)$/.exec(path))) {
      const c = charges.get(m[1]);
      return c ? { status: 200, body: c } : error(404, "invalid_request_error", `No such charge: '${m[1]}'`, "resource_missing", "id");
    }
    if (method === "POST" && path === "/v1/refunds") {
      const pi = intents.get(String(params.payment_intent ?? ""));
      if (!pi) return error(404, "invalid_request_error", `No such payment_intent: '${params.payment_intent}'`, "resource_missing", "payment_intent");
      if (pi.status !== "succeeded") return error(400, "invalid_request_error", "This PaymentIntent does not have a successful charge to refund.", "charge_not_refundable");
      const c = charges.get(pi.latest_charge as string)!;
      if (c.disputed) return error(400, "invalid_request_error", `Charge ${c.id} has been disputed and cannot be refunded.`, "charge_disputed");
      const left = (c.amount as number) - (c.amount_refunded as number);
      const amount = params.amount === undefined ? left : Number(params.amount);
      if (!Number.isInteger(amount) || amount < 1 || amount > left) {
        return error(400, "invalid_request_error", `Refund amount (${amount}) is greater than unrefunded amount on charge (${left})`, "amount_too_large", "amount");
      }
      const r: Obj = {
        id: id("re"), object: "refund", amount, currency: c.currency, charge: c.id, payment_intent: pi.id, status: "succeeded",
        reason: params.reason ?? null, metadata: params.metadata ?? {}, created: now(), balance_transaction: null,
      };
      r.balance_transaction = balanceTxn("refund", r.id, -amount, 0, c.currency as string).id;
      refunds.set(r.id, r);
      c.amount_refunded = (c.amount_refunded as number) + amount;
      c.refunded = c.amount_refunded === c.amount;
      emit("refund.created", r);
      emit("charge.refunded", c);
      return { status: 200, body: r };
    }
    if (method === "GET" && path === "/v1/balance_transactions") {
      // Newest first, as Stripe lists; ending_before = only those newer than that one.
      const limit = Math.min(Number(query.get("limit") ?? 10), 100);
      let all = [...balanceTxns].reverse();
      const before = query.get("ending_before");
      if (before) {
        const i = all.findIndex((t) => t.id === before);
        all = i >= 0 ? all.slice(0, i) : all;
        const page = all.slice(-limit);
        return { status: 200, body: { ...list(page, path), has_more: all.length > limit } };
      }
      const after = query.get("starting_after");
      if (after) {
        const i = all.findIndex((t) => t.id === after);
        all = i >= 0 ? all.slice(i + 1) : [];
      }
      return { status: 200, body: { ...list(all.slice(0, limit), path), has_more: all.length > limit } };
    }
    if (method === "GET" && path === "/v1/payouts") return { status: 200, body: list([...payouts.values()].reverse(), path) };
    return error(404, "invalid_request_error", `Unrecognized request URL (${method}: ${path}).`);
  }

  /** Stripe's idempotency: the same key and parameters answer the first response again; other parameters are an error. */
  function idempotent(key: string | undefined, method: string, path: string, body: string, run: () => { status: number; body: unknown }) {
    if (method !== "POST" || !key) return run();
    const fingerprint = createHash("sha256").update(`${method} ${path} ${body}`).digest("hex");
    const prior = idempotency.get(key);
    if (prior) {
      if (prior.fingerprint !== fingerprint) {
        return error(400, "idempotency_error", `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`);
      }
      return { status: prior.status, body: JSON.parse(prior.body), replayed: true };
    }
    const r = run();
    if (r.status < 500) idempotency.set(key, { fingerprint, status: r.status, body: JSON.stringify(r.body) });
    return r;
  }

  async function threeDSPage(req: http.IncomingMessage, res: http.ServerResponse, u: URL, piId: string) {
    const pi = intents.get(piId);
    if (!pi) {
      res.writeHead(404).end("no such payment");
      return;
    }
    if (req.method === "POST" || u.searchParams.has("result")) {
      const pass = u.searchParams.get("result") !== "fail";
      await completeThreeDS(piId, pass);
      const back = u.searchParams.get("return_url");
      if (back) res.writeHead(302, { location: `${back}${back.includes("?") ? "&" : "?"}payment_intent=${piId}` }).end();
      else res.writeHead(200, { "content-type": "text/plain" }).end(pass ? "authenticated" : "failed");
      return;
    }
    const q = (r: string) => `?result=${r}&return_url=${encodeURIComponent(u.searchParams.get("return_url") ?? "")}`;
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(
      `<!doctype html><title>3-D Secure (simulator)</title><h1>Authenticate this payment</h1>` +
        `<p>${pi.amount} ${String(pi.currency).toUpperCase()}</p><a id="complete" href="${q("pass")}">Complete authentication</a> <a id="fail" href="${q("fail")}">Fail authentication</a>`,
    );
  }

  async function completeThreeDS(piId: string, pass: boolean) {
    const pi = intents.get(piId);
    if (!pi || pi.status !== "requires_action") return;
    if (pass) succeed(pi, String(pi.payment_method));
    else {
      pi.status = "requires_payment_method";
      pi.next_action = null;
      pi.last_payment_error = { type: "card_error", code: "payment_intent_authentication_failure", message: "We are unable to authenticate your payment method." };
      emit("payment_intent.payment_failed", pi);
    }
  }

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const u = new URL(req.url ?? "/", "http://sim");
    // Stripe's API answers browsers (Stripe.js confirms from the tip page's origin).
    res.setHeader("access-control-allow-origin", "*");
    if (req.method === "OPTIONS") {
      res.writeHead(204, { "access-control-allow-methods": "GET, POST", "access-control-allow-headers": "authorization, content-type, idempotency-key, stripe-version", "access-control-max-age": "600" }).end();
      return;
    }
    const send = (status: number, payload: unknown) => {
      res.writeHead(status, { "content-type": "application/json", "request-id": id("req"), "stripe-version": API_VERSION }).end(JSON.stringify(payload));
    };
    try {
      if (req.method === "GET" && u.pathname === "/__sim/events") {
        return send(200, events.map((e) => ({ id: e.id, type: e.type, deliveries: e.deliveries, delivered: e.delivered })));
      }
      if (req.method === "GET" && (u.pathname === "/v3" || u.pathname === "/v3/")) {
        res.writeHead(200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-store" }).end(stripeJsDouble(url));
        return;
      }
      const m3 = /^\/__sim\/3ds\/(pi_\w+)$/.exec(u.pathname);
      if (m3) return await threeDSPage(req, res, u, m3[1]);
      if (u.pathname.startsWith("/v1/")) {
        requests.push({ method: req.method ?? "GET", path: u.pathname, idempotencyKey: req.headers["idempotency-key"] as string | undefined });
        const auth = req.headers.authorization ?? "";
        // Stripe.js confirms with the publishable key and the client secret; the server uses the secret key.
        const bearer = auth.replace(/^Bearer /, "");
        const params = req.method === "GET" ? {} : parseForm(body);
        const isConfirm = /^\/v1\/payment_intents\/pi_\w+\/confirm$/.test(u.pathname) || (req.method === "GET" && /^\/v1\/payment_intents\/pi_\w+$/.test(u.pathname));
        const publicOk = bearer === publishableKey && isConfirm && typeof (params.client_secret ?? u.searchParams.get("client_secret")) === "string" &&
          String(params.client_secret ?? u.searchParams.get("client_secret")).startsWith(u.pathname.split("/")[3]);
        if (bearer !== secretKey && !publicOk) {
          return send(401, { error: { type: "invalid_request_error", message: `Invalid API Key provided: ${bearer.slice(0, 8)}${"*".repeat(8)}` } });
        }
        delete params.client_secret;
        const r = idempotent(req.headers["idempotency-key"] as string | undefined, req.method ?? "GET", u.pathname, body, () => route(req.method ?? "GET", u.pathname, params, u.searchParams));
        if ("replayed" in r) res.setHeader("idempotent-replayed", "true");
        return send(r.status, r.body);
      }
      return send(404, { error: { type: "invalid_request_error", message: `Unrecognized request URL (${req.method}: ${u.pathname}).` } });
    } catch (err) {
      send(500, { error: { type: "api_error", message: (err as Error).message } });
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    secretKey,
    publishableKey,
    webhookSecret,
    setWebhookUrl: (u) => {
      webhookUrl = u;
    },
    events: () => events,
    requests: () => requests,
    paymentIntent: (piId) => intents.get(piId),
    completeThreeDS,
    openDispute,
    closeDispute: async (disputeId, status) => {
      const d = disputes.get(disputeId);
      if (!d) throw new Error(`no dispute ${disputeId}`);
      d.status = status;
      if (status === "won") (d.balance_transactions as Obj[]).push(balanceTxn("adjustment", d.id, d.amount as number, -1500, d.currency as string));
      emit("charge.dispute.closed", d);
    },
    payout: async (currency) => {
      const cur = currency.toLowerCase();
      const paidOut = [...payouts.values()].filter((p) => p.currency === cur).reduce((s, p) => s + (p.amount as number), 0);
      const available = balanceTxns.filter((t) => t.currency === cur && t.type !== "payout").reduce((s, t) => s + (t.net as number), 0) - paidOut;
      if (available <= 0) return undefined;
      const p: Obj = { id: id("po"), object: "payout", amount: available, currency: cur, status: "paid", arrival_date: now(), created: now(), method: "standard", balance_transaction: null };
      p.balance_transaction = balanceTxn("payout", p.id, -available, 0, cur).id;
      payouts.set(p.id, p);
      emit("payout.paid", p);
      return p.id;
    },
    redeliver: async (eventId) => {
      const ev = events.find((e) => e.id === eventId);
      if (!ev) throw new Error(`no event ${eventId}`);
      return deliver(ev);
    },
    pauseWebhooks: (p) => {
      paused = p;
    },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * A test double of Stripe.js (normally https://js.stripe.com/v3/), served by the
 * simulator at /v3/ so nothing loads from the internet in `make run` and the
 * browser tests. It offers what the tip page uses: Stripe(pk), elements({ clientSecret }),
 * elements.create("payment").mount(el), stripe.confirmPayment({ elements, confirmParams, redirect }).
 * Its "Payment Element" is a list of the simulator's test cards.
 */
export function stripeJsDouble(apiBase: string): string {
  return `(function () {
  var API = ${JSON.stringify(apiBase)};
  var CARDS = [["pm_card_visa", "Visa 4242 (succeeds)"], ["pm_card_threeDSecure2Required", "Visa 3220 (3-D Secure)"],
    ["pm_card_chargeDeclined", "Visa 0002 (declined)"], ["pm_card_chargeDeclinedInsufficientFunds", "Visa 9995 (insufficient funds)"],
    ["pm_card_gb", "UK Visa (issued in GB)"], ["pm_card_createDispute", "Visa 0259 (disputed later)"]];
  window.Stripe = function (pk) {
    var chosen = { value: CARDS[0][0] };
    return {
      elements: function (opts) {
        var secret = opts && opts.clientSecret;
        return {
          _secret: secret,
          create: function () {
            return {
              mount: function (target) {
                var el = typeof target === "string" ? document.querySelector(target) : target;
                var sel = document.createElement("select");
                sel.setAttribute("data-testid", "stripe-test-card");
                sel.setAttribute("aria-label", "Test card");
                CARDS.forEach(function (c) { var o = document.createElement("option"); o.value = c[0]; o.textContent = c[1]; sel.appendChild(o); });
                sel.onchange = function () { chosen.value = sel.value; };
                el.appendChild(sel);
              },
              on: function () {}, unmount: function () {}, destroy: function () {}
            };
          }
        };
      },
      confirmPayment: function (args) {
        var secret = args.elements._secret;
        var pi = secret.split("_secret_")[0];
        var returnUrl = (args.confirmParams && args.confirmParams.return_url) || "";
        var body = new URLSearchParams({ payment_method: chosen.value, client_secret: secret, return_url: returnUrl });
        return fetch(API + "/v1/payment_intents/" + pi + "/confirm", { method: "POST", headers: { authorization: "Bearer " + pk }, body: body })
          .then(function (r) { return r.json(); })
          .then(function (j) {
            if (j.error) return { error: j.error };
            if (j.status === "requires_action" && j.next_action && j.next_action.redirect_to_url) { window.location.assign(j.next_action.redirect_to_url.url); return { paymentIntent: j }; }
            if (args.redirect !== "if_required" && returnUrl) window.location.assign(returnUrl + (returnUrl.indexOf("?") < 0 ? "?" : "&") + "payment_intent=" + pi);
            return { paymentIntent: j };
          });
      }
    };
  };
})();
`;
}
