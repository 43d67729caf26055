// The Stripe simulator's API: a route table of one function per Stripe
// endpoint, each taking the parsed form parameters and answering Stripe's JSON.
import { randomBytes } from "node:crypto";
import { findRoute, type SimReply, type SimRoute } from "../simulator-http.js";
import { capture, confirm, expandPi } from "./stripe-sim-payments.js";
import { stripeError, stripeId, type StripeObject, type StripeSimState } from "./stripe-sim-state.js";

export interface StripeCall {
  method: string;
  path: string;
  /** The form body (POST); the query parameters are in `query`. */
  params: Record<string, unknown>;
  query: URLSearchParams;
  match: RegExpExecArray | null;
}

type StripeEndpoint = (sim: StripeSimState, call: StripeCall) => SimReply;

const INTENT_PATH = /^\/v1\/payment_intents\/(pi_\w+)(?:\/(confirm|capture|cancel))?$/;

const unexpectedState = (message: string) => stripeError(400, "invalid_request_error", message, "payment_intent_unexpected_state");

function list(data: StripeObject[], path: string) {
  return { object: "list", data, has_more: false, url: path };
}

/** The amount or currency Stripe refuses in a new PaymentIntent. */
function invalidIntent(amount: number, currency: string): SimReply | undefined {
  if (!Number.isInteger(amount) || amount < 1) return stripeError(400, "invalid_request_error", "Invalid integer: amount", "parameter_invalid_integer", "amount");
  if (!/^[a-z]{3}$/.test(currency)) return stripeError(400, "invalid_request_error", "Invalid currency", "parameter_invalid_string", "currency");
  // Stripe's minimum charge is about 50 US cents; the simulator applies it to every currency but zero-decimal ones.
  if (amount < 50) return stripeError(400, "invalid_request_error", "Amount must be at least 50 cents", "amount_too_small", "amount");
  return undefined;
}

/** POST /v1/payment_intents (with confirm=true it confirms at once). */
const createIntent: StripeEndpoint = (sim, { params }) => {
  const amount = Number(params.amount);
  const currency = String(params.currency ?? "");
  const invalid = invalidIntent(amount, currency);
  if (invalid) return invalid;
  const piId = stripeId("pi");
  const pi: StripeObject = {
    id: piId, object: "payment_intent", amount, amount_capturable: 0, amount_received: 0, currency,
    capture_method: params.capture_method === "manual" ? "manual" : "automatic_async", confirmation_method: "automatic",
    client_secret: `${piId}_secret_${randomBytes(12).toString("base64url").replace(/[-_]/g, "y")}`, created: sim.now(), description: params.description ?? null,
    latest_charge: null, last_payment_error: null, livemode: false, metadata: params.metadata ?? {}, next_action: null, payment_method: null,
    // As on an account with Link on: automatic payment methods offer it beside cards (a charge with no card details).
    payment_method_types: params.allowed_payment_method_types ? Object.values(params.allowed_payment_method_types as object) : params.automatic_payment_methods ? ["card", "link"] : ["card"],
    automatic_payment_methods: params.automatic_payment_methods ? { enabled: true, allow_redirects: "always" } : null,
    status: "requires_payment_method", cancellation_reason: null, canceled_at: null,
  };
  sim.intents.set(piId, pi);
  sim.emit("payment_intent.created", pi);
  if (params.confirm === "true") return confirm(sim, pi, params);
  return { status: 200, body: pi };
};

/** The endpoint for the PaymentIntent in the path, or Stripe's 404 when there is none. */
const withIntent =
  (endpoint: (sim: StripeSimState, pi: StripeObject, call: StripeCall) => SimReply): StripeEndpoint =>
  (sim, call) => {
    const pi = sim.intents.get(call.match![1]);
    return pi ? endpoint(sim, pi, call) : noSuchIntent(call.match![1]);
  };

const noSuchIntent = (piId: string) => stripeError(404, "invalid_request_error", `No such payment_intent: '${piId}'`, "resource_missing", "intent");

const retrieveIntent = withIntent((sim, pi, { query }) => ({ status: 200, body: expandPi(sim, pi, parseForm(query.toString()).expand) }));

const confirmIntent = withIntent((sim, pi, { params }) => {
  const r = confirm(sim, pi, params);
  return r.status === 200 ? { status: 200, body: expandPi(sim, pi, params.expand) } : r;
});

const captureIntent = withIntent((sim, pi, { params }) => {
  if (pi.status !== "requires_capture") return unexpectedState(`This PaymentIntent could not be captured because it has a status of ${pi.status}.`);
  capture(sim, pi);
  return { status: 200, body: expandPi(sim, pi, params.expand) };
});

const cancelIntent = withIntent((sim, pi, { params }) => {
  if (pi.status === "succeeded" || pi.status === "canceled") return unexpectedState(`You cannot cancel this PaymentIntent because it has a status of ${pi.status}.`);
  pi.status = "canceled";
  pi.cancellation_reason = params.cancellation_reason ?? null;
  pi.canceled_at = sim.now();
  pi.amount_capturable = 0;
  sim.emit("payment_intent.canceled", pi);
  return { status: 200, body: pi };
});

const retrieveCharge: StripeEndpoint = (sim, { match }) => {
  const c = sim.charges.get(match![1]);
  return c ? { status: 200, body: c } : stripeError(404, "invalid_request_error", `No such charge: '${match![1]}'`, "resource_missing", "id");
};

/** The charge a refund of this intent would come from, or why there is none. */
function refundableCharge(sim: StripeSimState, params: Record<string, unknown>): { pi: StripeObject; c: StripeObject } | SimReply {
  const pi = sim.intents.get(String(params.payment_intent ?? ""));
  if (!pi) return stripeError(404, "invalid_request_error", `No such payment_intent: '${params.payment_intent}'`, "resource_missing", "payment_intent");
  if (pi.status !== "succeeded") return stripeError(400, "invalid_request_error", "This PaymentIntent does not have a successful charge to refund.", "charge_not_refundable");
  const c = sim.charges.get(pi.latest_charge as string)!;
  if (c.disputed) return stripeError(400, "invalid_request_error", `Charge ${c.id} has been disputed and cannot be refunded.`, "charge_disputed");
  return { pi, c };
}

/** POST /v1/refunds: all that is left of the charge, or `amount` of it. */
const createRefund: StripeEndpoint = (sim, { params }) => {
  const found = refundableCharge(sim, params);
  if ("status" in found) return found;
  const { pi, c } = found;
  const left = (c.amount as number) - (c.amount_refunded as number);
  const amount = params.amount === undefined ? left : Number(params.amount);
  if (!Number.isInteger(amount) || amount < 1 || amount > left) {
    return stripeError(400, "invalid_request_error", `Refund amount (${amount}) is greater than unrefunded amount on charge (${left})`, "amount_too_large", "amount");
  }
  const r: StripeObject = {
    id: stripeId("re"), object: "refund", amount, currency: c.currency, charge: c.id, payment_intent: pi.id, status: "succeeded",
    reason: params.reason ?? null, metadata: params.metadata ?? {}, created: sim.now(), balance_transaction: null,
  };
  r.balance_transaction = sim.balanceTxn("refund", r.id, -amount, 0, c.currency as string).id;
  sim.refunds.set(r.id, r);
  c.amount_refunded = (c.amount_refunded as number) + amount;
  c.refunded = c.amount_refunded === c.amount;
  sim.emit("refund.created", r);
  sim.emit("charge.refunded", c);
  if (String(pi.payment_method).startsWith("pm_card_refundFail")) sim.timers.later(sim.options.refundFailDelayMs ?? 100, () => failRefund(sim, r, c));
  return { status: 200, body: r };
};

/** A refund to a card that cannot take it (closed, expired): succeeded at first, failed later, its amount back in the balance. */
function failRefund(sim: StripeSimState, r: StripeObject, c: StripeObject): void {
  Object.assign(r, { status: "failed", failure_reason: "expired_or_canceled_card" });
  r.failure_balance_transaction = sim.balanceTxn("refund_failure", r.id, r.amount as number, 0, c.currency as string).id;
  c.amount_refunded = (c.amount_refunded as number) - (r.amount as number);
  c.refunded = false;
  sim.emit("refund.failed", r);
  sim.emit("charge.refund.updated", r);
}

/** GET /v1/balance_transactions: newest first, as Stripe lists; ending_before = only those newer than that one. */
const listBalanceTransactions: StripeEndpoint = (sim, { path, query }) => {
  const limit = Math.min(Number(query.get("limit") ?? 10), 100);
  let all = [...sim.balanceTxns].reverse();
  const before = query.get("ending_before");
  if (before) {
    const i = all.findIndex((t) => t.id === before);
    all = i >= 0 ? all.slice(0, i) : all;
    return { status: 200, body: { ...list(all.slice(-limit), path), has_more: all.length > limit } };
  }
  const after = query.get("starting_after");
  if (after) {
    const i = all.findIndex((t) => t.id === after);
    all = i >= 0 ? all.slice(i + 1) : [];
  }
  return { status: 200, body: { ...list(all.slice(0, limit), path), has_more: all.length > limit } };
};

const listPayouts: StripeEndpoint = (sim, { path }) => ({ status: 200, body: list([...sim.payouts.values()].reverse(), path) });

const ROUTES: SimRoute<StripeEndpoint>[] = [
  { method: "POST", path: "/v1/payment_intents", handle: createIntent },
  { method: "GET", path: /^\/v1\/payment_intents\/(pi_\w+)$/, handle: retrieveIntent },
  { method: "POST", path: /^\/v1\/payment_intents\/(pi_\w+)\/confirm$/, handle: confirmIntent },
  { method: "POST", path: /^\/v1\/payment_intents\/(pi_\w+)\/capture$/, handle: captureIntent },
  { method: "POST", path: /^\/v1\/payment_intents\/(pi_\w+)\/cancel$/, handle: cancelIntent },
  { method: "GET", path: /^\/v1\/charges\/(ch_\w+)$/, handle: retrieveCharge },
  { method: "POST", path: "/v1/refunds", handle: createRefund },
  { method: "GET", path: "/v1/balance_transactions", handle: listBalanceTransactions },
  { method: "GET", path: "/v1/payouts", handle: listPayouts },
];

/** Answers one /v1/ call. */
export function stripeApi(sim: StripeSimState, method: string, path: string, params: Record<string, unknown>, query: URLSearchParams): SimReply {
  const route = findRoute(ROUTES, method, path);
  if (route) return route.handle(sim, { method, path, params, query, match: route.match });
  // An intent's path with another method: Stripe still says first that the intent is unknown.
  const intent = INTENT_PATH.exec(path);
  if (intent && !sim.intents.has(intent[1])) return noSuchIntent(intent[1]);
  return stripeError(404, "invalid_request_error", `Unrecognized request URL (${method}: ${path}).`);
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
