// A Daraja simulator: Safaricom's paths and JSON (OAuth, STK push and query,
// B2C, transaction status, reversal) and the callbacks they cause, with outcomes
// scripted per phone number or amount. Tests and `make run` start it on a
// loopback port; GET /__sim/transactions tells what "really" happened.
import http from "node:http";
import type { C2bPayRequest, C2bSim } from "./c2b-simulator.js";
import type { DarajaConfig } from "./client.js";
import { closeServer, findRoute, listen, readBody, sendJson, type SimRoute } from "../simulator-http.js";
import { accountBalance, b2cPayment, transactionStatus } from "./simulator-b2c.js";
import { reversal } from "./simulator-reversal.js";
import { darajaError } from "./simulator-replies.js";
import {
  DarajaSimState,
  SIMULATOR_CERTIFICATE_FILE,
  SIMULATOR_CERTIFICATE_PEM,
  simulatorDefaults,
  type Script,
  type SimTransaction,
  type SimulatorOptions,
} from "./simulator-state.js";
import { stkPush, stkQuery } from "./simulator-stk.js";

export {
  PHONE_SUFFIX_SCRIPTS,
  SIMULATOR_CERTIFICATE_FILE,
  SIMULATOR_CERTIFICATE_PEM,
  type B2cOutcome,
  type Script,
  type SimTransaction,
  type SimulatorOptions,
  type StkOutcome,
} from "./simulator-state.js";

export interface DarajaSimulator {
  url: string;
  options: Required<SimulatorOptions>;
  /** PEM file of the certificate B2C credentials are encrypted with. */
  certificateFile: string;
  /** What a Daraja client needs to talk to this simulator. */
  clientConfig(): DarajaConfig;
  transactions(): SimTransaction[];
  script(key: { phone?: string; amount?: number }, script: Script): void;
  /** Invalidates every token issued so far. */
  revokeTokens(): void;
  /** Waits until every scheduled callback has been sent (held ones are not scheduled until released). */
  idle(): Promise<void>;
  /**
   * Holds every STK callback or B2C result of `kind` that falls due from now on, until
   * release(): a test can kill a service while a payment is owed its callback, however
   * slow the machine. release() sends them (to whoever listens then) and resolves once each was tried.
   */
  hold(kind: SimTransaction["kind"]): { release(): Promise<void> };
  /** C2B: registered URLs and customer payments to the paybill (also over HTTP: POST /__sim/c2b/pay, GET /__sim/c2b/registrations). */
  c2b: C2bSim;
  close(): Promise<void>;
}

/** One request as an endpoint sees it: its JSON body already parsed. */
interface DarajaCall {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  url: URL;
  body: Record<string, unknown>;
}

type DarajaEndpoint = (sim: DarajaSimState, call: DarajaCall) => void;

/** Daraja's API paths: callable only with a bearer token from /oauth/v1/generate. */
const withToken =
  (endpoint: (sim: DarajaSimState, body: Record<string, unknown>, res: http.ServerResponse) => void): DarajaEndpoint =>
  (sim, { req, res, body }) => {
    if (sim.authorised(req, res)) endpoint(sim, body, res);
  };

const oauthToken: DarajaEndpoint = (sim, { req, res, url }) => {
  const expected = `Basic ${Buffer.from(`${sim.o.consumerKey}:${sim.o.consumerSecret}`).toString("base64")}`;
  if (url.searchParams.get("grant_type") !== "client_credentials") return darajaError(res, 400, "400.008.02", "Invalid grant type passed");
  if (req.headers.authorization !== expected) return darajaError(res, 400, "400.008.01", "Invalid Authentication passed");
  sendJson(res, 200, { access_token: sim.issueToken(), expires_in: String(sim.o.tokenTtlSeconds) });
};

const c2bApi: DarajaEndpoint = (sim, { req, res, url, body }) => {
  if (sim.authorised(req, res) && !sim.c2b.handle(url.pathname, body, res)) darajaError(res, 404, "404.001.04", "Invalid Resource URL");
};

/** A customer paying the paybill from their own menu (or a banking app scanning KE-QR). */
const c2bPay: DarajaEndpoint = (sim, { res, body }) =>
  void sim.c2b.pay(body as unknown as C2bPayRequest).then(
    (r) => sendJson(res, 200, r),
    (err: Error) => darajaError(res, 400, "400.002.02", err.message),
  );

/** As when Safaricom invalidates tokens early: callers must fetch a new one. */
const revokeTokens: DarajaEndpoint = (sim, { res }) => {
  sim.tokens.clear();
  sendJson(res, 200, {});
};

const setScript: DarajaEndpoint = (sim, { res, body }) => {
  sim.setScript(body, body.script as Script);
  sendJson(res, 200, {});
};

const ROUTES: SimRoute<DarajaEndpoint>[] = [
  { method: "GET", path: "/oauth/v1/generate", handle: oauthToken },
  { method: "POST", path: "/mpesa/stkpush/v1/processrequest", handle: withToken(stkPush) },
  { method: "POST", path: "/mpesa/stkpushquery/v1/query", handle: withToken(stkQuery) },
  { method: "POST", path: "/mpesa/b2c/v1/paymentrequest", handle: withToken(b2cPayment) },
  { method: "POST", path: "/mpesa/b2c/v3/paymentrequest", handle: withToken(b2cPayment) },
  { method: "POST", path: "/mpesa/transactionstatus/v1/query", handle: withToken(transactionStatus) },
  { method: "POST", path: "/mpesa/accountbalance/v1/query", handle: withToken(accountBalance) },
  { method: "POST", path: "/mpesa/reversal/v1/request", handle: withToken(reversal) },
  { method: "POST", path: /^\/mpesa\/c2b\//, handle: c2bApi },
  // What tests and `make run` read and script.
  { method: "GET", path: "/__sim/transactions", handle: (sim, { res }) => sendJson(res, 200, { transactions: sim.txs }) },
  { method: "GET", path: "/__sim/c2b/registrations", handle: (sim, { res }) => sendJson(res, 200, { registrations: sim.c2b.registrations() }) },
  { method: "POST", path: "/__sim/c2b/pay", handle: c2bPay },
  { method: "POST", path: "/__sim/revoke-tokens", handle: revokeTokens },
  { method: "POST", path: "/__sim/script", handle: setScript },
];

async function serve(sim: DarajaSimState, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://sim");
  const raw = await readBody(req);
  let body: Record<string, unknown> = {};
  try {
    if (raw.length) body = JSON.parse(raw);
  } catch {
    return darajaError(res, 400, "400.002.05", "Invalid Request Payload");
  }
  const route = findRoute(ROUTES, req.method ?? "GET", url.pathname);
  if (!route) return darajaError(res, 404, "404.001.04", "Invalid Resource URL");
  route.handle(sim, { req, res, url, body });
}

/**
 * Starts the simulator on a loopback port (options.port, default any free one).
 * A Daraja simulator: one state object, a route table of one function per
 * Daraja endpoint, and the handle tests drive it with.
 */
export async function startDarajaSimulator(options: SimulatorOptions = {}): Promise<DarajaSimulator> {
  const sim = new DarajaSimState(simulatorDefaults(options));
  const o = sim.o;
  const server = http.createServer((req, res) => void serve(sim, req, res));
  const port = await listen(server, o.port, o.host);
  const host = o.host.includes(":") ? `[${o.host}]` : o.host;
  const url = `http://${host}:${port}`;
  return {
    url,
    options: o,
    certificateFile: SIMULATOR_CERTIFICATE_FILE,
    clientConfig: () => ({
      baseUrl: url,
      consumerKey: o.consumerKey,
      consumerSecret: o.consumerSecret,
      shortcode: o.shortcode,
      passkey: o.passkey,
      initiatorName: o.initiatorName,
      initiatorPassword: o.initiatorPassword,
      certificatePem: SIMULATOR_CERTIFICATE_PEM,
    }),
    transactions: () => structuredClone(sim.txs),
    script: (key, script) => sim.setScript(key, script),
    revokeTokens: () => sim.tokens.clear(),
    hold: (kind) => {
      sim.hold(kind);
      return { release: () => sim.release(kind) };
    },
    c2b: sim.c2b,
    idle: async () => {
      while (sim.pending.size) await Promise.allSettled([...sim.pending]);
    },
    close: async () => {
      sim.closed = true;
      await closeServer(server);
      await Promise.allSettled([...sim.pending]);
    },
  };
}
