// How a PaymentIntent moves in the Stripe simulator: confirmation by test
// payment method (success, decline, 3-D Secure), capture, disputes and payouts,
// each change recorded as Stripe's events. See stripe-simulator.ts for the
// test payment methods.
import { createHash } from "node:crypto";
import type { SimReply } from "../simulator-http.js";
import { stripeError, stripeId, type StripeObject, type StripeSimState } from "./stripe-sim-state.js";

/** Stripe's standard fee in the simulator: 2.9% + a fixed 30 minor units (0 for zero-decimal currencies). */
function stripeFee(amount: number): number {
  return Math.round((amount * 290) / 10_000) + 30;
}

/** A dispute costs a fixed fee, returned when it is won. */
const DISPUTE_FEE = 1500;

/** The card behind a test payment method: its country, brand and fingerprint. */
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

/** Replaces latest_charge by the charge when asked: expand[]=x, expand[0]=x (what stripe-node sends) or one value. */
export function expandPi(sim: StripeSimState, pi: StripeObject, expand: unknown): StripeObject {
  const wants = Array.isArray(expand) ? expand : expand && typeof expand === "object" ? Object.values(expand) : expand ? [expand] : [];
  if (wants.includes("latest_charge") && typeof pi.latest_charge === "string") return { ...pi, latest_charge: sim.charges.get(pi.latest_charge) ?? pi.latest_charge };
  return pi;
}

/** The charge of an authorised or paid PaymentIntent. */
function makeCharge(sim: StripeSimState, pi: StripeObject, pm: string, captured: boolean): StripeObject {
  const c: StripeObject = {
    id: stripeId("ch"), object: "charge", amount: pi.amount, amount_captured: captured ? pi.amount : 0, amount_refunded: 0, captured, refunded: false,
    currency: pi.currency, payment_intent: pi.id, payment_method: pm, status: "succeeded", paid: true, disputed: false, created: sim.now(),
    balance_transaction: null, outcome: { network_status: "approved_by_network", type: "authorized", risk_level: "normal" },
    payment_method_details: { type: "card", card: card(pm) }, metadata: pi.metadata ?? {}, livemode: false,
  };
  sim.charges.set(c.id, c);
  return c;
}

function succeed(sim: StripeSimState, pi: StripeObject, pm: string): void {
  const c = makeCharge(sim, pi, pm, pi.capture_method !== "manual");
  pi.latest_charge = c.id;
  pi.payment_method = pm;
  pi.last_payment_error = null;
  pi.next_action = null;
  if (pi.capture_method !== "manual") return capture(sim, pi);
  pi.status = "requires_capture";
  pi.amount_capturable = pi.amount;
  sim.emit("payment_intent.amount_capturable_updated", pi);
}

export function capture(sim: StripeSimState, pi: StripeObject): void {
  const c = sim.charges.get(pi.latest_charge as string)!;
  c.captured = true;
  c.amount_captured = pi.amount;
  const txn = sim.balanceTxn("charge", c.id, pi.amount as number, stripeFee(pi.amount as number), pi.currency as string);
  c.balance_transaction = txn.id;
  pi.status = "succeeded";
  pi.amount_capturable = 0;
  pi.amount_received = pi.amount;
  sim.emit("charge.succeeded", c);
  sim.emit("payment_intent.succeeded", pi);
  if (String(pi.payment_method).startsWith("pm_card_createDispute")) sim.timers.later(sim.options.disputeDelayMs ?? 100, () => openDispute(sim, pi.id, "fraudulent"));
}

function decline(sim: StripeSimState, pi: StripeObject, code: string, declineCode: string, message: string): SimReply {
  const c = makeCharge(sim, pi, String(pi.payment_method ?? ""), false);
  c.status = "failed";
  c.paid = false;
  pi.latest_charge = c.id;
  pi.status = "requires_payment_method";
  pi.last_payment_error = { type: "card_error", code, decline_code: declineCode, message, charge: c.id };
  pi.next_action = null;
  sim.emit("payment_intent.payment_failed", pi);
  const error = { type: "card_error", code, decline_code: declineCode, message, charge: c.id, payment_intent: pi, doc_url: `https://stripe.com/docs/error-codes/${code}` };
  return { status: 402, body: { error } };
}

/** 3-D Secure: the intent waits for the customer on the simulator's challenge page. */
function requireAction(sim: StripeSimState, pi: StripeObject, returnUrl: string): SimReply {
  pi.status = "requires_action";
  pi.next_action = {
    type: "redirect_to_url",
    redirect_to_url: { url: `${sim.url}/__sim/3ds/${pi.id}?return_url=${encodeURIComponent(returnUrl)}`, return_url: returnUrl },
  };
  sim.emit("payment_intent.requires_action", pi);
  return { status: 200, body: pi };
}

/** Confirms with the test payment method given (or the one already set); what it does depends on the card. */
export function confirm(sim: StripeSimState, pi: StripeObject, params: Record<string, unknown>): SimReply {
  if (!["requires_payment_method", "requires_confirmation", "requires_action"].includes(pi.status as string)) {
    return stripeError(400, "invalid_request_error", `This PaymentIntent's status is ${pi.status}; it cannot be confirmed.`, "payment_intent_unexpected_state");
  }
  const pm = String(params.payment_method ?? pi.payment_method ?? "");
  if (!/^pm_card_[A-Za-z0-9_]+$/.test(pm)) return stripeError(400, "invalid_request_error", "No such PaymentMethod: '" + pm + "'", "resource_missing", "payment_method");
  pi.payment_method = pm;
  const kind = pm.replace(/_\d+$/, "");
  if (kind === "pm_card_chargeDeclined") return decline(sim, pi, "card_declined", "generic_decline", "Your card was declined.");
  if (kind === "pm_card_chargeDeclinedInsufficientFunds") return decline(sim, pi, "card_declined", "insufficient_funds", "Your card has insufficient funds.");
  if (kind === "pm_card_threeDSecure2Required" || kind === "pm_card_authenticationRequired") return requireAction(sim, pi, String(params.return_url ?? ""));
  succeed(sim, pi, pm);
  return { status: 200, body: pi };
}

/** Completes (or fails) a 3-D Secure challenge, as the customer would on its page. */
export async function completeThreeDS(sim: StripeSimState, piId: string, pass: boolean): Promise<void> {
  const pi = sim.intents.get(piId);
  if (!pi || pi.status !== "requires_action") return;
  if (pass) return succeed(sim, pi, String(pi.payment_method));
  pi.status = "requires_payment_method";
  pi.next_action = null;
  pi.last_payment_error = { type: "card_error", code: "payment_intent_authentication_failure", message: "We are unable to authenticate your payment method." };
  sim.emit("payment_intent.payment_failed", pi);
}

export async function openDispute(sim: StripeSimState, piId: string, reason = "fraudulent"): Promise<string> {
  const pi = sim.intents.get(piId);
  if (!pi || pi.status !== "succeeded") throw new Error(`no paid PaymentIntent ${piId}`);
  const c = sim.charges.get(pi.latest_charge as string)!;
  c.disputed = true;
  const d: StripeObject = {
    id: stripeId("du"), object: "dispute", amount: (c.amount as number) - (c.amount_refunded as number), currency: c.currency, charge: c.id, payment_intent: pi.id,
    reason, status: "needs_response", created: sim.now(), is_charge_refundable: false, livemode: false, balance_transactions: [],
  };
  const txn = sim.balanceTxn("adjustment", d.id, -(d.amount as number), DISPUTE_FEE, c.currency as string);
  (d.balance_transactions as StripeObject[]).push(txn);
  sim.disputes.set(d.id, d);
  sim.emit("charge.dispute.created", d);
  return d.id;
}

export async function closeDispute(sim: StripeSimState, disputeId: string, status: "won" | "lost"): Promise<void> {
  const d = sim.disputes.get(disputeId);
  if (!d) throw new Error(`no dispute ${disputeId}`);
  d.status = status;
  if (status === "won") (d.balance_transactions as StripeObject[]).push(sim.balanceTxn("adjustment", d.id, d.amount as number, -DISPUTE_FEE, d.currency as string));
  sim.emit("charge.dispute.closed", d);
}

/** Pays the available balance in a currency out to the bank; undefined when there is none. */
export async function payout(sim: StripeSimState, currency: string): Promise<string | undefined> {
  const cur = currency.toLowerCase();
  const paidOut = [...sim.payouts.values()].filter((p) => p.currency === cur).reduce((s, p) => s + (p.amount as number), 0);
  const available = sim.balanceTxns.filter((t) => t.currency === cur && t.type !== "payout").reduce((s, t) => s + (t.net as number), 0) - paidOut;
  if (available <= 0) return undefined;
  const p: StripeObject = {
    id: stripeId("po"), object: "payout", amount: available, currency: cur, status: "paid", arrival_date: sim.now(), created: sim.now(), method: "standard", balance_transaction: null,
  };
  p.balance_transaction = sim.balanceTxn("payout", p.id, -available, 0, cur).id;
  sim.payouts.set(p.id, p);
  sim.emit("payout.paid", p);
  return p.id;
}
