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
//   pm_card_refundFail                   succeeds; a refund of it succeeds, then fails (refund.failed)
// A payment method name may end in "_<n>" to be a different card of the same kind
// (another fingerprint): pm_card_visa_2.
import http from "node:http";
import { closeServer, listen, readBody, ReplayStore, sendJson, type SimReply } from "../simulator-http.js";
import { closeDispute, completeThreeDS, openDispute, payout } from "./stripe-sim-payments.js";
import { stripeJsDouble } from "./stripe-js-double.js";
import { parseForm, stripeApi } from "./stripe-sim-routes.js";
import { API_VERSION, stripeError, stripeId, StripeSimState, type SimEvent, type SimRequest, type StripeObject, type StripeSimulatorOptions } from "./stripe-sim-state.js";

export { parseForm } from "./stripe-sim-routes.js";
export type { SimEvent, StripeSimulatorOptions } from "./stripe-sim-state.js";
export { stripeJsDouble } from "./stripe-js-double.js";

export interface StripeSimulator {
  url: string;
  secretKey: string;
  publishableKey: string;
  webhookSecret: string;
  setWebhookUrl(url: string): void;
  /** Every API request received: method, path and its Idempotency-Key. */
  requests(): SimRequest[];
  /** Every event made, in order (delivered or not). */
  events(): SimEvent[];
  /** The PaymentIntent as Stripe holds it. */
  paymentIntent(id: string): StripeObject | undefined;
  /** Completes (or fails) a 3-D Secure challenge, as the customer would on its page. */
  completeThreeDS(paymentIntentId: string, pass: boolean): Promise<void>;
  /** Opens a dispute on a PaymentIntent's charge. */
  openDispute(paymentIntentId: string, reason?: string): Promise<string>;
  /** Closes a dispute: "won" or "lost". */
  closeDispute(disputeId: string, status: "won" | "lost"): Promise<void>;
  /** Pays the available balance out to the bank (a payout and its balance transaction). */
  payout(currency: string): Promise<string | undefined>;
  /** Sends an event again once, as a resend from Stripe's dashboard does (a failure is not retried by itself). */
  redeliver(eventId: string): Promise<number>;
  /** Stops delivering webhooks (they are still recorded) until resumed. */
  pauseWebhooks(paused: boolean): void;
  close(): Promise<void>;
}

/** Stripe's idempotency: the same key and parameters answer the first response again; other parameters are an error. */
function idempotent(sim: StripeSimState, key: string | undefined, method: string, path: string, body: string, run: () => SimReply): SimReply & { replayed?: true } {
  if (method !== "POST" || !key) return run();
  const fingerprint = ReplayStore.fingerprint(`${method} ${path} ${body}`);
  const prior = sim.replays.get(key);
  if (prior && prior.fingerprint !== fingerprint) {
    const message = `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`;
    return stripeError(400, "idempotency_error", message);
  }
  if (prior) return { ...prior.reply, replayed: true };
  const r = run();
  sim.replays.remember(key, fingerprint, r);
  return r;
}

/** The 3-D Secure challenge page: shows the payment, or completes it (?result=pass|fail) and returns to the shop. */
async function threeDSPage(sim: StripeSimState, req: http.IncomingMessage, res: http.ServerResponse, u: URL, piId: string): Promise<void> {
  const pi = sim.intents.get(piId);
  if (!pi) return void res.writeHead(404).end("no such payment");
  if (req.method === "POST" || u.searchParams.has("result")) {
    const pass = u.searchParams.get("result") !== "fail";
    await completeThreeDS(sim, piId, pass);
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

/**
 * Who may call: the server with the secret key; Stripe.js (in the browser) with the
 * publishable key and the intent's client secret, only to confirm or read that intent.
 */
function mayCall(sim: StripeSimState, req: http.IncomingMessage, u: URL, params: Record<string, unknown>): boolean {
  const bearer = (req.headers.authorization ?? "").replace(/^Bearer /, "");
  if (bearer === sim.secretKey) return true;
  const isConfirm = /^\/v1\/payment_intents\/pi_\w+\/confirm$/.test(u.pathname) || (req.method === "GET" && /^\/v1\/payment_intents\/pi_\w+$/.test(u.pathname));
  const secret = params.client_secret ?? u.searchParams.get("client_secret");
  return bearer === sim.publishableKey && isConfirm && typeof secret === "string" && secret.startsWith(u.pathname.split("/")[3]);
}

/** One /v1/ call: recorded, authorised, made idempotent, then routed. */
function apiCall(sim: StripeSimState, req: http.IncomingMessage, res: http.ServerResponse, u: URL, body: string): SimReply {
  const method = req.method ?? "GET";
  const idempotencyKey = req.headers["idempotency-key"] as string | undefined;
  sim.requests.push({ method, path: u.pathname, idempotencyKey });
  const params = method === "GET" ? {} : parseForm(body);
  if (!mayCall(sim, req, u, params)) {
    const bearer = (req.headers.authorization ?? "").replace(/^Bearer /, "");
    return { status: 401, body: { error: { type: "invalid_request_error", message: `Invalid API Key provided: ${bearer.slice(0, 8)}${"*".repeat(8)}` } } };
  }
  delete params.client_secret;
  const r = idempotent(sim, idempotencyKey, method, u.pathname, body, () => stripeApi(sim, method, u.pathname, params, u.searchParams));
  if (r.replayed) res.setHeader("idempotent-replayed", "true");
  return { status: r.status, body: r.body };
}

// Stripe's API answers browsers (Stripe.js confirms from the tip page's origin).
const CORS_PREFLIGHT = {
  "access-control-allow-methods": "GET, POST",
  "access-control-allow-headers": "authorization, content-type, idempotency-key, stripe-version",
  "access-control-max-age": "600",
};

async function serve(sim: StripeSimState, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const body = await readBody(req);
  const u = new URL(req.url ?? "/", "http://sim");
  res.setHeader("access-control-allow-origin", "*");
  if (req.method === "OPTIONS") return void res.writeHead(204, CORS_PREFLIGHT).end();
  const send = (status: number, payload: unknown) => sendJson(res, status, payload, { "request-id": stripeId("req"), "stripe-version": API_VERSION });
  try {
    if (req.method === "GET" && u.pathname === "/__sim/events") {
      return send(200, sim.events.map((e) => ({ id: e.id, type: e.type, deliveries: e.deliveries, delivered: e.delivered })));
    }
    if (req.method === "GET" && (u.pathname === "/v3" || u.pathname === "/v3/")) {
      return void res.writeHead(200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-store" }).end(stripeJsDouble(sim.url));
    }
    const threeDS = /^\/__sim\/3ds\/(pi_\w+)$/.exec(u.pathname);
    if (threeDS) return await threeDSPage(sim, req, res, u, threeDS[1]);
    if (!u.pathname.startsWith("/v1/")) return send(404, stripeError(404, "invalid_request_error", `Unrecognized request URL (${req.method}: ${u.pathname}).`).body);
    const r = apiCall(sim, req, res, u, body);
    send(r.status, r.body);
  } catch (err) {
    send(500, { error: { type: "api_error", message: (err as Error).message } });
  }
}

export async function startStripeSimulator(options: StripeSimulatorOptions = {}): Promise<StripeSimulator> {
  const sim = new StripeSimState(options);
  const server = http.createServer((req, res) => void serve(sim, req, res));
  sim.url = `http://127.0.0.1:${await listen(server, 0, "127.0.0.1")}`;
  return {
    url: sim.url,
    secretKey: sim.secretKey,
    publishableKey: sim.publishableKey,
    webhookSecret: sim.webhookSecret,
    setWebhookUrl: (u) => {
      sim.webhookUrl = u;
    },
    events: () => sim.events,
    requests: () => sim.requests,
    paymentIntent: (piId) => sim.intents.get(piId),
    completeThreeDS: (piId, pass) => completeThreeDS(sim, piId, pass),
    openDispute: (piId, reason) => openDispute(sim, piId, reason),
    closeDispute: (disputeId, status) => closeDispute(sim, disputeId, status),
    payout: (currency) => payout(sim, currency),
    redeliver: async (eventId) => {
      const ev = sim.events.find((e) => e.id === eventId);
      if (!ev) throw new Error(`no event ${eventId}`);
      return sim.deliver(ev, false);
    },
    pauseWebhooks: (p) => {
      sim.paused = p;
    },
    close: async () => {
      sim.timers.clear();
      await closeServer(server);
    },
  };
}
