// A PayPal simulator for tests and `make run`: PayPal's REST paths and JSON
// (OAuth client credentials, Orders v2 create / get / capture, capture refunds,
// verify-webhook-signature), PayPal-Request-Id idempotency, an approval page,
// webhooks with PayPal's transmission headers, and disputes.
//
// Scripted by the approval: `approve(orderId, { payerId, country, decline, refundFails })`,
// or the page's query (?payer=...&country=GB&decline=1&refund_fails=1). A declined payer's
// capture answers 422 INSTRUMENT_DECLINED, as PayPal does; a refund of a
// refundFails payer's capture answers 201 with status FAILED.
import { randomBytes } from "node:crypto";
import http from "node:http";
import { closeServer, listen, readBody, ReplayStore, sendJson, type SimReply } from "../simulator-http.js";
import { approve, openDispute, paypalApi, resolveDispute, VERIFY_WEBHOOK_PATH, type Payer, type PayPalDisputeOutcome } from "./paypal-sim-routes.js";
import { paypalError, PayPalSimState, type Json, type PayPalRequest, type PayPalSimulatorOptions } from "./paypal-sim-state.js";

export interface PayPalSimulator {
  url: string;
  clientId: string;
  clientSecret: string;
  webhookId: string;
  setWebhookUrl(url: string): void;
  order(id: string): Json | undefined;
  events(): { id: string; type: string; delivered: boolean }[];
  requests(): PayPalRequest[];
  /** The customer approves the order on PayPal (payer id and country are what the rules see). */
  approve(orderId: string, payer?: Payer): Promise<void>;
  /**
   * Holds the writes whose path `match` picks in flight (PayPal has them and has not answered) until `release`:
   * another write under a held one's PayPal-Request-Id is refused meanwhile, as PayPal may refuse a simultaneous one.
   */
  holdWrites(match: (path: string) => boolean): { held(): number; release(): void };
  openDispute(orderId: string): Promise<string>;
  resolveDispute(disputeId: string, outcome: PayPalDisputeOutcome): Promise<void>;
  close(): Promise<void>;
}

/** The approval page (/checkoutnow?token=): shows the order, or approves it and returns to the shop. */
async function checkoutPage(sim: PayPalSimState, res: http.ServerResponse, u: URL): Promise<void> {
  const orderId = u.searchParams.get("token") ?? "";
  const o = sim.orders.get(orderId);
  if (!o) return void res.writeHead(404).end("no such order");
  if (u.searchParams.has("approve")) {
    await approve(sim, orderId, { payerId: u.searchParams.get("payer") ?? undefined, country: u.searchParams.get("country") ?? undefined, decline: u.searchParams.has("decline"), refundFails: u.searchParams.has("refund_fails") });
    const back = o.experience?.return_url;
    if (back) return void res.writeHead(302, { location: `${back}${back.includes("?") ? "&" : "?"}token=${orderId}&PayerID=${o.payer.payer_id}` }).end();
    return void res.writeHead(200, { "content-type": "text/plain" }).end("approved");
  }
  const amount = o.purchase_units[0].amount;
  res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(
    `<!doctype html><title>PayPal (simulator)</title><h1>Pay ${amount.currency_code} ${amount.value}</h1>` + `<a id="approve" href="?token=${orderId}&approve=1">Pay now</a>`,
  );
}

/** POST /v1/oauth2/token: client credentials in Basic auth buy a bearer token. */
function oauthToken(sim: PayPalSimState, req: http.IncomingMessage, raw: string): SimReply {
  const [cid, secret] = Buffer.from((req.headers.authorization ?? "").replace(/^Basic /, ""), "base64").toString().split(":");
  if (cid !== sim.clientId || secret !== sim.clientSecret || new URLSearchParams(raw).get("grant_type") !== "client_credentials") {
    return { status: 401, body: { error: "invalid_client", error_description: "Client Authentication failed" } };
  }
  const token = `A21AA${randomBytes(24).toString("base64url")}`;
  sim.tokens.add(token);
  const body = { scope: "https://uri.paypal.com/services/payments/payment", access_token: token, token_type: "Bearer", app_id: "APP-SIM", expires_in: 32400, nonce: randomBytes(8).toString("hex") };
  return { status: 200, body };
}

/**
 * One API call with a bearer token: recorded, then answered (PayPal-Request-Id: the same id and body answer the first
 * response again; while the first is processed, a second under its id is refused, as PayPal may).
 */
async function apiCall(sim: PayPalSimState, req: http.IncomingMessage, path: string, raw: string): Promise<SimReply> {
  const bearer = (req.headers.authorization ?? "").replace(/^Bearer /, "");
  if (!sim.tokens.has(bearer)) {
    return { status: 401, body: { name: "AUTHENTICATION_FAILURE", message: "Authentication failed due to invalid authentication credentials or a missing Authorization header.", details: [] } };
  }
  const method = req.method ?? "GET";
  const requestId = req.headers["paypal-request-id"] as string | undefined;
  const body = raw ? JSON.parse(raw) : {};
  sim.requests.push({ method, path, requestId, body });
  if (method !== "POST" || !requestId || path === VERIFY_WEBHOOK_PATH) return paypalApi(sim, method, path, body);
  if (sim.inFlight.has(requestId)) {
    return paypalError(422, "UNPROCESSABLE_ENTITY", "PREVIOUS_REQUEST_IN_PROGRESS", "A previous request on this resource is currently in progress. Please wait for some time and try again.");
  }
  sim.inFlight.add(requestId);
  try {
    await sim.held(path);
    const fingerprint = ReplayStore.fingerprint(`${path} ${raw}`);
    const prior = sim.replays.get(requestId);
    if (prior && prior.fingerprint === fingerprint) return prior.reply;
    const r = paypalApi(sim, method, path, body);
    sim.replays.remember(requestId, fingerprint, r);
    return r;
  } finally {
    sim.inFlight.delete(requestId);
  }
}

async function serve(sim: PayPalSimState, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const raw = await readBody(req);
  const u = new URL(req.url ?? "/", "http://sim");
  const send = (r: SimReply) => sendJson(res, r.status, r.body, { "paypal-debug-id": randomBytes(6).toString("hex") });
  try {
    if (u.pathname === "/checkoutnow") return await checkoutPage(sim, res, u);
    if (req.method === "GET" && u.pathname === "/__sim/events") {
      return send({ status: 200, body: sim.events.map(({ id, type, delivered }) => ({ id, type, delivered })) });
    }
    if (req.method === "POST" && u.pathname === "/v1/oauth2/token") return send(oauthToken(sim, req, raw));
    send(await apiCall(sim, req, u.pathname, raw));
  } catch (e) {
    send({ status: 500, body: { name: "INTERNAL_SERVER_ERROR", message: (e as Error).message, details: [] } });
  }
}

export async function startPayPalSimulator(options: PayPalSimulatorOptions = {}): Promise<PayPalSimulator> {
  const sim = new PayPalSimState(options);
  const server = http.createServer((req, res) => void serve(sim, req, res));
  sim.url = `http://127.0.0.1:${await listen(server, 0, "127.0.0.1")}`;
  return {
    url: sim.url,
    clientId: sim.clientId,
    clientSecret: sim.clientSecret,
    webhookId: sim.webhookId,
    setWebhookUrl: (u) => {
      sim.webhookUrl = u;
    },
    order: (i) => sim.orders.get(i),
    events: () => sim.events.map(({ id, type, delivered }) => ({ id, type, delivered })),
    requests: () => sim.requests,
    approve: (orderId, payer) => approve(sim, orderId, payer),
    holdWrites: (match) => {
      const hold = { match, waiting: [] as (() => void)[] };
      sim.hold = hold;
      return {
        held: () => hold.waiting.length,
        release: () => {
          if (sim.hold === hold) sim.hold = undefined;
          for (const go of hold.waiting.splice(0)) go();
        },
      };
    },
    openDispute: (orderId) => openDispute(sim, orderId),
    resolveDispute: (disputeId, outcome) => resolveDispute(sim, disputeId, outcome),
    close: async () => {
      sim.timers.clear();
      await closeServer(server);
    },
  };
}
