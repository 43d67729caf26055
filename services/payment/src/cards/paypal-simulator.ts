// A PayPal simulator for tests and `make run`: PayPal's REST paths and JSON
// (OAuth client credentials, Orders v2 create / get / capture, capture refunds,
// verify-webhook-signature), PayPal-Request-Id idempotency, an approval page,
// webhooks with PayPal's transmission headers, and disputes.
//
// Scripted by the approval: `approve(orderId, { payerId, country, decline })`,
// or the page's query (?payer=...&country=GB&decline=1). A declined payer's
// capture answers 422 INSTRUMENT_DECLINED, as PayPal does.
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface PayPalSimulator {
  url: string;
  clientId: string;
  clientSecret: string;
  webhookId: string;
  setWebhookUrl(url: string): void;
  order(id: string): Json | undefined;
  events(): { id: string; type: string; delivered: boolean }[];
  requests(): { method: string; path: string; requestId?: string }[];
  /** The customer approves the order on PayPal (payer id and country are what the rules see). */
  approve(orderId: string, payer?: { payerId?: string; country?: string; decline?: boolean }): Promise<void>;
  openDispute(orderId: string): Promise<string>;
  resolveDispute(disputeId: string, outcome: "won" | "lost"): Promise<void>;
  close(): Promise<void>;
}

const id = (prefix: string, n = 17) => `${prefix}${randomBytes(n).toString("hex").toUpperCase().slice(0, n)}`;

function value(minor: bigint): string {
  return `${minor / 100n}.${(minor % 100n).toString().padStart(2, "0")}`;
}
function minor(v: string): bigint {
  const [a, b = ""] = v.split(".");
  return BigInt(a) * 100n + BigInt(b.padEnd(2, "0"));
}

export async function startPayPalSimulator(options: { webhookDelayMs?: number } = {}): Promise<PayPalSimulator> {
  const clientId = `sim-${randomBytes(12).toString("base64url")}`;
  const clientSecret = randomBytes(24).toString("base64url");
  const webhookId = id("WH", 17);
  // The simulator's stand-in for PayPal's signing certificate.
  const signingKey = randomBytes(32);
  const tokens = new Set<string>();
  const orders = new Map<string, Json>();
  const captures = new Map<string, { orderId: string; capture: Json }>();
  const disputes = new Map<string, Json>();
  const declining = new Set<string>();
  const idempotent = new Map<string, { hash: string; status: number; body: string }>();
  const events: { id: string; type: string; body: string; delivered: boolean }[] = [];
  const requests: { method: string; path: string; requestId?: string }[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let webhookUrl = "";
  let url = "";

  const sign = (transmissionId: string, time: string, body: string) =>
    createHmac("sha256", signingKey).update(`${transmissionId}|${time}|${webhookId}|${createHash("sha256").update(body).digest("hex")}`).digest("base64");

  async function deliver(ev: (typeof events)[number], attempt = 1): Promise<void> {
    if (!webhookUrl) return;
    const transmissionId = randomBytes(16).toString("hex");
    const time = new Date().toISOString();
    try {
      const res = await fetch(webhookUrl, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "paypal-transmission-id": transmissionId,
          "paypal-transmission-time": time,
          "paypal-transmission-sig": sign(transmissionId, time, ev.body),
          "paypal-cert-url": `${url}/v1/notifications/certs/CERT-sim`,
          "paypal-auth-algo": "SHA256withRSA",
        },
        body: ev.body,
      });
      await res.arrayBuffer();
      if (res.ok) ev.delivered = true;
      else if (attempt < 4) later(200 * attempt, () => deliver(ev, attempt + 1));
    } catch {
      if (attempt < 4) later(200 * attempt, () => deliver(ev, attempt + 1));
    }
  }

  function later(ms: number, fn: () => unknown) {
    const t = setTimeout(() => {
      timers.delete(t);
      void fn();
    }, ms);
    timers.add(t);
  }

  function emit(type: string, resourceType: string, resource: Json) {
    const ev = { id: id("WH-", 20), type, delivered: false, body: "" };
    ev.body = JSON.stringify({
      id: ev.id, event_version: "1.0", create_time: new Date().toISOString(), resource_type: resourceType, event_type: type,
      summary: type.toLowerCase().replace(/\./g, " "), resource, links: [{ href: `${url}/v1/notifications/webhooks-events/${ev.id}`, rel: "self", method: "GET" }],
    });
    events.push(ev);
    later(options.webhookDelayMs ?? 20, () => deliver(ev));
  }

  const err = (status: number, name: string, issue: string, message: string) => ({
    status, body: { name, message, debug_id: randomBytes(6).toString("hex"), details: [{ issue, description: message }], links: [] },
  });

  function links(o: Json) {
    return [
      { href: `${url}/v2/checkout/orders/${o.id}`, rel: "self", method: "GET" },
      ...(o.status === "PAYER_ACTION_REQUIRED" ? [{ href: `${url}/checkoutnow?token=${o.id}`, rel: "payer-action", method: "GET" }] : []),
      ...(o.status === "APPROVED" ? [{ href: `${url}/v2/checkout/orders/${o.id}/capture`, rel: "capture", method: "POST" }] : []),
    ];
  }
  const view = (o: Json) => ({ ...o, links: links(o) });

  async function approve(orderId: string, payer: { payerId?: string; country?: string; decline?: boolean } = {}) {
    const o = orders.get(orderId);
    if (!o || o.status !== "PAYER_ACTION_REQUIRED") return;
    o.status = "APPROVED";
    o.payer = { payer_id: payer.payerId ?? id("", 13), email_address: "buyer@example.com", name: { given_name: "Test", surname: "Buyer" }, address: { country_code: payer.country ?? "US" } };
    if (payer.decline) declining.add(orderId);
    emit("CHECKOUT.ORDER.APPROVED", "checkout-order", view(o));
  }

  function route(method: string, path: string, body: Json): { status: number; body: unknown } {
    let m: RegExpExecArray | null;
    if (method === "POST" && path === "/v2/checkout/orders") {
      const unit = body.purchase_units?.[0];
      if (body.intent !== "CAPTURE" && body.intent !== "AUTHORIZE") return err(400, "INVALID_REQUEST", "INVALID_PARAMETER_VALUE", "intent must be CAPTURE or AUTHORIZE");
      if (!unit?.amount?.currency_code || !/^\d+(\.\d{2})?$/.test(unit.amount.value ?? "")) return err(422, "UNPROCESSABLE_ENTITY", "DECIMAL_PRECISION", "amount.value is not a valid amount");
      const o: Json = {
        id: id("", 17), intent: body.intent, status: "PAYER_ACTION_REQUIRED", create_time: new Date().toISOString(),
        payment_source: { paypal: {} },
        purchase_units: [{ reference_id: unit.reference_id ?? "default", custom_id: unit.custom_id, description: unit.description, amount: unit.amount, payee: { merchant_id: "SIMMERCHANT01" } }],
        experience: body.payment_source?.paypal?.experience_context ?? {},
      };
      orders.set(o.id, o);
      return { status: 201, body: view(o) };
    }
    if ((m = /^\/v2\/checkout\/orders\/([A-Z0-9]+)(\/capture)?$/.exec(path))) {
      const o = orders.get(m[1]);
      if (!o) return err(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "Specified resource ID does not exist.");
      if (method === "GET" && !m[2]) return { status: 200, body: view(o) };
      if (method === "POST" && m[2]) {
        if (o.status === "COMPLETED") return err(422, "UNPROCESSABLE_ENTITY", "ORDER_ALREADY_CAPTURED", "Order already captured.");
        if (o.status !== "APPROVED") return err(422, "UNPROCESSABLE_ENTITY", "ORDER_NOT_APPROVED", "Payer has not yet approved the Order for payment.");
        if (declining.has(o.id)) return err(422, "UNPROCESSABLE_ENTITY", "INSTRUMENT_DECLINED", "The instrument presented was either declined by the processor or bank.");
        const amount = o.purchase_units[0].amount;
        const gross = minor(amount.value);
        const fee = (gross * 349n + 5000n) / 10_000n + 49n; // 3.49% + 0.49, PayPal's standard rate shape
        const capture = {
          id: id("", 17), status: "COMPLETED", amount, final_capture: true, create_time: new Date().toISOString(),
          seller_receivable_breakdown: { gross_amount: amount, paypal_fee: { currency_code: amount.currency_code, value: value(fee) }, net_amount: { currency_code: amount.currency_code, value: value(gross - fee) } },
          supplementary_data: { related_ids: { order_id: o.id } },
          links: [{ href: `${url}/v2/payments/captures/CAPTURE`, rel: "self", method: "GET" }],
        };
        capture.links[0].href = `${url}/v2/payments/captures/${capture.id}`;
        o.status = "COMPLETED";
        o.purchase_units[0].payments = { captures: [capture] };
        captures.set(capture.id, { orderId: o.id, capture });
        emit("PAYMENT.CAPTURE.COMPLETED", "capture", capture);
        return { status: 201, body: view(o) };
      }
    }
    if (method === "POST" && (m = /^\/v2\/payments\/captures\/([A-Z0-9]+)\/refund$/.exec(path))) {
      const c = captures.get(m[1]);
      if (!c) return err(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "Specified resource ID does not exist.");
      const gross = minor(c.capture.amount.value);
      const already = minor(c.capture.refunded ?? "0.00");
      const amount = body.amount?.value ? minor(body.amount.value) : gross - already;
      if (amount <= 0n || amount > gross - already) return err(422, "UNPROCESSABLE_ENTITY", "REFUND_AMOUNT_EXCEEDED", "The refund amount must be less than or equal to the capture amount that has not yet been refunded.");
      c.capture.refunded = value(already + amount);
      if (already + amount === gross) c.capture.status = "REFUNDED";
      else c.capture.status = "PARTIALLY_REFUNDED";
      const refund = {
        id: id("", 17), status: "COMPLETED", amount: { currency_code: c.capture.amount.currency_code, value: value(amount) }, note_to_payer: body.note_to_payer,
        seller_payable_breakdown: { total_refunded_amount: { currency_code: c.capture.amount.currency_code, value: c.capture.refunded } },
        supplementary_data: { related_ids: { order_id: c.orderId } },
        links: [{ href: `${url}/v2/payments/captures/${m[1]}`, rel: "up", method: "GET" }],
      };
      emit("PAYMENT.CAPTURE.REFUNDED", "refund", refund);
      return { status: 201, body: refund };
    }
    if (method === "POST" && path === "/v1/notifications/verify-webhook-signature") {
      const need = ["auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time", "webhook_id", "webhook_event"];
      const missing = need.find((k) => !body[k]);
      if (missing) return err(400, "VALIDATION_ERROR", "MISSING_REQUIRED_PARAMETER", `${missing} is required`);
      const expected = Buffer.from(sign(body.transmission_id, body.transmission_time, JSON.stringify(body.webhook_event)));
      const given = Buffer.from(String(body.transmission_sig));
      const ok = body.webhook_id === webhookId && expected.length === given.length && timingSafeEqual(expected, given) &&
        Math.abs(Date.now() - Date.parse(body.transmission_time)) < 5 * 60_000;
      return { status: 200, body: { verification_status: ok ? "SUCCESS" : "FAILURE" } };
    }
    return err(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", `no route ${method} ${path}`);
  }

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    const u = new URL(req.url ?? "/", "http://sim");
    const send = (status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json", "paypal-debug-id": randomBytes(6).toString("hex") }).end(JSON.stringify(body));
    try {
      if (u.pathname === "/checkoutnow") {
        const orderId = u.searchParams.get("token") ?? "";
        const o = orders.get(orderId);
        if (!o) return void res.writeHead(404).end("no such order");
        if (u.searchParams.has("approve")) {
          await approve(orderId, { payerId: u.searchParams.get("payer") ?? undefined, country: u.searchParams.get("country") ?? undefined, decline: u.searchParams.has("decline") });
          const back = o.experience?.return_url;
          if (back) return void res.writeHead(302, { location: `${back}${back.includes("?") ? "&" : "?"}token=${orderId}&PayerID=${o.payer.payer_id}` }).end();
          return void res.writeHead(200, { "content-type": "text/plain" }).end("approved");
        }
        return void res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(
          `<!doctype html><title>PayPal (simulator)</title><h1>Pay ${o.purchase_units[0].amount.currency_code} ${o.purchase_units[0].amount.value}</h1>` +
            `<a id="approve" href="?token=${orderId}&approve=1">Pay now</a>`,
        );
      }
      if (req.method === "GET" && u.pathname === "/__sim/events") return send(200, events.map(({ id: i, type, delivered }) => ({ id: i, type, delivered })));
      if (req.method === "POST" && u.pathname === "/v1/oauth2/token") {
        const [cid, secret] = Buffer.from((req.headers.authorization ?? "").replace(/^Basic /, ""), "base64").toString().split(":");
        if (cid !== clientId || secret !== clientSecret || new URLSearchParams(raw).get("grant_type") !== "client_credentials") {
          return send(401, { error: "invalid_client", error_description: "Client Authentication failed" });
        }
        const token = `A21AA${randomBytes(24).toString("base64url")}`;
        tokens.add(token);
        return send(200, { scope: "https://uri.paypal.com/services/payments/payment", access_token: token, token_type: "Bearer", app_id: "APP-SIM", expires_in: 32400, nonce: randomBytes(8).toString("hex") });
      }
      const bearer = (req.headers.authorization ?? "").replace(/^Bearer /, "");
      if (!tokens.has(bearer)) return send(401, { name: "AUTHENTICATION_FAILURE", message: "Authentication failed due to invalid authentication credentials or a missing Authorization header.", details: [] });
      const requestId = req.headers["paypal-request-id"] as string | undefined;
      requests.push({ method: req.method ?? "GET", path: u.pathname, requestId });
      const body = raw ? JSON.parse(raw) : {};
      // PayPal-Request-Id: the same id answers the first response again.
      if (req.method === "POST" && requestId && u.pathname !== "/v1/notifications/verify-webhook-signature") {
        const hash = createHash("sha256").update(`${u.pathname} ${raw}`).digest("hex");
        const prior = idempotent.get(requestId);
        if (prior && prior.hash === hash) return send(prior.status, JSON.parse(prior.body));
        const r = route(req.method, u.pathname, body);
        if (r.status < 500) idempotent.set(requestId, { hash, status: r.status, body: JSON.stringify(r.body) });
        return send(r.status, r.body);
      }
      const r = route(req.method ?? "GET", u.pathname, body);
      return send(r.status, r.body);
    } catch (e) {
      send(500, { name: "INTERNAL_SERVER_ERROR", message: (e as Error).message, details: [] });
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url, clientId, clientSecret, webhookId,
    setWebhookUrl: (u) => {
      webhookUrl = u;
    },
    order: (i) => orders.get(i),
    events: () => events.map(({ id: i, type, delivered }) => ({ id: i, type, delivered })),
    requests: () => requests,
    approve,
    openDispute: async (orderId) => {
      const o = orders.get(orderId);
      const capture = o?.purchase_units[0].payments?.captures?.[0];
      if (!capture) throw new Error(`order ${orderId} has no capture`);
      const d = {
        dispute_id: id("PP-D-", 5), create_time: new Date().toISOString(), reason: "MERCHANDISE_OR_SERVICE_NOT_RECEIVED", status: "OPEN",
        dispute_amount: capture.amount, disputed_transactions: [{ seller_transaction_id: capture.id }], dispute_life_cycle_stage: "CHARGEBACK",
      };
      disputes.set(d.dispute_id, d);
      emit("CUSTOMER.DISPUTE.CREATED", "dispute", d);
      return d.dispute_id;
    },
    resolveDispute: async (disputeId, outcome) => {
      const d = disputes.get(disputeId);
      if (!d) throw new Error(`no dispute ${disputeId}`);
      d.status = "RESOLVED";
      d.dispute_outcome = { outcome_code: outcome === "won" ? "RESOLVED_SELLER_FAVOUR" : "RESOLVED_BUYER_FAVOUR" };
      emit("CUSTOMER.DISPUTE.RESOLVED", "dispute", d);
    },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
