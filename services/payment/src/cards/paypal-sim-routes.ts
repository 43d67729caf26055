// The PayPal simulator's REST API: a route table of one function per PayPal
// endpoint (Orders v2, capture refunds, webhook signature checks), and what the
// payer and PayPal's dispute desk do (approve, open and resolve disputes).
import { timingSafeEqual } from "node:crypto";
import { findRoute, type SimReply, type SimRoute } from "../simulator-http.js";
import { minor, paypalError, paypalId, value, type Json, type PayPalSimState } from "./paypal-sim-state.js";

interface PayPalCall {
  method: string;
  path: string;
  body: Json;
  match: RegExpExecArray | null;
}

type PayPalEndpoint = (sim: PayPalSimState, call: PayPalCall) => SimReply;

export interface Payer {
  payerId?: string;
  country?: string;
  decline?: boolean;
  /** Refunds of this payer's capture answer FAILED (the account can no longer take money): nothing is refunded. */
  refundFails?: boolean;
}

const ORDER_PATH = /^\/v2\/checkout\/orders\/([A-Z0-9]+)(\/capture)?$/;

const unprocessable = (issue: string, message: string) => paypalError(422, "UNPROCESSABLE_ENTITY", issue, message);
const notFound = () => paypalError(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", "Specified resource ID does not exist.");

/** POST /v2/checkout/orders: the order waits for the payer's approval. */
const createOrder: PayPalEndpoint = (sim, { body }) => {
  const unit = body.purchase_units?.[0];
  if (body.intent !== "CAPTURE" && body.intent !== "AUTHORIZE") return paypalError(400, "INVALID_REQUEST", "INVALID_PARAMETER_VALUE", "intent must be CAPTURE or AUTHORIZE");
  if (!unit?.amount?.currency_code || !/^\d+(\.\d{2})?$/.test(unit.amount.value ?? "")) return unprocessable("DECIMAL_PRECISION", "amount.value is not a valid amount");
  const o: Json = {
    id: paypalId("", 17), intent: body.intent, status: "PAYER_ACTION_REQUIRED", create_time: new Date().toISOString(),
    payment_source: { paypal: {} },
    purchase_units: [{ reference_id: unit.reference_id ?? "default", custom_id: unit.custom_id, description: unit.description, amount: unit.amount, payee: { merchant_id: "SIMMERCHANT01" } }],
    experience: body.payment_source?.paypal?.experience_context ?? {},
  };
  sim.orders.set(o.id, o);
  return { status: 201, body: sim.view(o) };
};

/** The endpoint for the order in the path, or PayPal's 404 when there is none. */
const withOrder =
  (endpoint: (sim: PayPalSimState, o: Json) => SimReply): PayPalEndpoint =>
  (sim, { match }) => {
    const o = sim.orders.get(match![1]);
    return o ? endpoint(sim, o) : notFound();
  };

/** A capture of the whole order, less PayPal's fee: 3.49% + 0.49, its standard rate's shape. */
function newCapture(sim: PayPalSimState, o: Json): Json {
  const amount = o.purchase_units[0].amount;
  const gross = minor(amount.value);
  const fee = (gross * 349n + 5000n) / 10_000n + 49n;
  const id = paypalId("", 17);
  return {
    id, status: "COMPLETED", amount, final_capture: true, create_time: new Date().toISOString(),
    seller_receivable_breakdown: {
      gross_amount: amount,
      paypal_fee: { currency_code: amount.currency_code, value: value(fee) },
      net_amount: { currency_code: amount.currency_code, value: value(gross - fee) },
    },
    supplementary_data: { related_ids: { order_id: o.id } },
    links: [{ href: `${sim.url}/v2/payments/captures/${id}`, rel: "self", method: "GET" }],
  };
}

const captureOrder = withOrder((sim, o) => {
  if (o.status === "COMPLETED") return unprocessable("ORDER_ALREADY_CAPTURED", "Order already captured.");
  if (o.status !== "APPROVED") return unprocessable("ORDER_NOT_APPROVED", "Payer has not yet approved the Order for payment.");
  if (sim.declining.has(o.id)) return unprocessable("INSTRUMENT_DECLINED", "The instrument presented was either declined by the processor or bank.");
  const capture = newCapture(sim, o);
  o.status = "COMPLETED";
  o.purchase_units[0].payments = { captures: [capture] };
  sim.captures.set(capture.id, { orderId: o.id, capture });
  sim.emit("PAYMENT.CAPTURE.COMPLETED", "capture", capture);
  return { status: 201, body: sim.view(o) };
});

/** POST /v2/payments/captures/{id}/refund: what is left of the capture, or `amount` of it. */
const refundCapture: PayPalEndpoint = (sim, { body, match }) => {
  const c = sim.captures.get(match![1]);
  if (!c) return notFound();
  const currency = c.capture.amount.currency_code;
  const gross = minor(c.capture.amount.value);
  const already = minor(c.capture.refunded ?? "0.00");
  const amount = body.amount?.value ? minor(body.amount.value) : gross - already;
  if (amount <= 0n || amount > gross - already) {
    return unprocessable("REFUND_AMOUNT_EXCEEDED", "The refund amount must be less than or equal to the capture amount that has not yet been refunded.");
  }
  if (sim.refundsFailing.has(c.orderId)) {
    return { status: 201, body: { id: paypalId("", 17), status: "FAILED", amount: { currency_code: currency, value: value(amount) }, status_details: { reason: "ECHECK" } } };
  }
  c.capture.refunded = value(already + amount);
  c.capture.status = already + amount === gross ? "REFUNDED" : "PARTIALLY_REFUNDED";
  const refund = {
    id: paypalId("", 17), status: "COMPLETED", amount: { currency_code: currency, value: value(amount) }, note_to_payer: body.note_to_payer,
    seller_payable_breakdown: { total_refunded_amount: { currency_code: currency, value: c.capture.refunded } },
    supplementary_data: { related_ids: { order_id: c.orderId } },
    links: [{ href: `${sim.url}/v2/payments/captures/${match![1]}`, rel: "up", method: "GET" }],
  };
  sim.emit("PAYMENT.CAPTURE.REFUNDED", "refund", refund);
  return { status: 201, body: refund };
};

/** POST /v1/notifications/verify-webhook-signature: SUCCESS for our signature, our webhook, within 5 minutes. */
const verifyWebhookSignature: PayPalEndpoint = (sim, { body }) => {
  const need = ["auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time", "webhook_id", "webhook_event"];
  const missing = need.find((k) => !body[k]);
  if (missing) return paypalError(400, "VALIDATION_ERROR", "MISSING_REQUIRED_PARAMETER", `${missing} is required`);
  const expected = Buffer.from(sim.sign(body.transmission_id, body.transmission_time, JSON.stringify(body.webhook_event)));
  const given = Buffer.from(String(body.transmission_sig));
  const fresh = Math.abs(Date.now() - Date.parse(body.transmission_time)) < 5 * 60_000;
  const ok = body.webhook_id === sim.webhookId && expected.length === given.length && timingSafeEqual(expected, given) && fresh;
  return { status: 200, body: { verification_status: ok ? "SUCCESS" : "FAILURE" } };
};

export const VERIFY_WEBHOOK_PATH = "/v1/notifications/verify-webhook-signature";

const ROUTES: SimRoute<PayPalEndpoint>[] = [
  { method: "POST", path: "/v2/checkout/orders", handle: createOrder },
  { method: "GET", path: /^\/v2\/checkout\/orders\/([A-Z0-9]+)$/, handle: withOrder((sim, o) => ({ status: 200, body: sim.view(o) })) },
  { method: "POST", path: /^\/v2\/checkout\/orders\/([A-Z0-9]+)\/capture$/, handle: captureOrder },
  { method: "POST", path: /^\/v2\/payments\/captures\/([A-Z0-9]+)\/refund$/, handle: refundCapture },
  { method: "POST", path: VERIFY_WEBHOOK_PATH, handle: verifyWebhookSignature },
];

/** Answers one authorised API call. */
export function paypalApi(sim: PayPalSimState, method: string, path: string, body: Json): SimReply {
  const route = findRoute(ROUTES, method, path);
  if (route) return route.handle(sim, { method, path, body, match: route.match });
  // An order's path with another method: PayPal still says first that the order is unknown.
  const order = ORDER_PATH.exec(path);
  if (order && !sim.orders.has(order[1])) return notFound();
  return paypalError(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", `no route ${method} ${path}`);
}

/** The customer approves the order on PayPal (payer id and country are what the rules see). */
export async function approve(sim: PayPalSimState, orderId: string, payer: Payer = {}): Promise<void> {
  const o = sim.orders.get(orderId);
  if (!o || o.status !== "PAYER_ACTION_REQUIRED") return;
  o.status = "APPROVED";
  o.payer = {
    payer_id: payer.payerId ?? paypalId("", 13), email_address: "buyer@example.com", name: { given_name: "Test", surname: "Buyer" },
    address: { country_code: payer.country ?? "US" },
  };
  if (payer.decline) sim.declining.add(orderId);
  if (payer.refundFails) sim.refundsFailing.add(orderId);
  sim.emit("CHECKOUT.ORDER.APPROVED", "checkout-order", sim.view(o));
}

export async function openDispute(sim: PayPalSimState, orderId: string): Promise<string> {
  const capture = sim.orders.get(orderId)?.purchase_units[0].payments?.captures?.[0];
  if (!capture) throw new Error(`order ${orderId} has no capture`);
  const d = {
    dispute_id: paypalId("PP-D-", 5), create_time: new Date().toISOString(), reason: "MERCHANDISE_OR_SERVICE_NOT_RECEIVED", status: "OPEN",
    dispute_amount: capture.amount, disputed_transactions: [{ seller_transaction_id: capture.id }], dispute_life_cycle_stage: "CHARGEBACK",
  };
  sim.disputes.set(d.dispute_id, d);
  sim.emit("CUSTOMER.DISPUTE.CREATED", "dispute", d);
  return d.dispute_id;
}

/** PayPal's dispute_outcome.outcome_code values. */
export type PayPalDisputeOutcome = "RESOLVED_BUYER_FAVOUR" | "RESOLVED_SELLER_FAVOUR" | "RESOLVED_WITH_PAYOUT" | "CANCELED_BY_BUYER" | "ACCEPTED" | "DENIED" | "NONE";

export async function resolveDispute(sim: PayPalSimState, disputeId: string, outcome: PayPalDisputeOutcome): Promise<void> {
  const d = sim.disputes.get(disputeId);
  if (!d) throw new Error(`no dispute ${disputeId}`);
  d.status = "RESOLVED";
  d.dispute_outcome = { outcome_code: outcome };
  sim.emit("CUSTOMER.DISPUTE.RESOLVED", "dispute", d);
}
