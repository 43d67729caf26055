// The one door card money comes through. Stripe and PayPal each implement
// it; the tip logic (cards/tips.ts) never knows which one it is talking to.

export type CardProviderName = "stripe" | "paypal";

/** Where a provider's payment stands, in our words. */
export type CardPaymentStatus =
  /** Waiting for the customer: card details, another card after a decline, or PayPal approval. */
  | "awaiting_customer"
  /** 3-D Secure (or another step) must be completed by the customer. */
  | "requires_action"
  | "processing"
  /** Authorised, not yet captured: fraud rules decide between capture and cancel. */
  | "authorized"
  | "succeeded"
  | "canceled";

export interface CardDetails {
  /** The provider's fingerprint of the card number: the same card gives the same value. */
  fingerprint: string;
  /** Issuing country, ISO 3166-1 alpha-2. */
  country: string;
  brand: string;
  last4: string;
}

export interface CardPayment {
  id: string;
  status: CardPaymentStatus;
  amountMinor: bigint;
  currency: string;
  /** What the browser confirms with (Stripe's client secret). */
  clientSecret?: string;
  /** A page the customer must visit (3-D Secure redirect, PayPal approval). */
  nextActionUrl?: string;
  /** The charge or capture that moved the money, once there is one. */
  chargeId?: string;
  card?: CardDetails;
  /** The last attempt's decline, e.g. "card_declined/insufficient_funds". */
  failureCode?: string;
  failureMessage?: string;
}

/** A provider webhook, verified and reduced to what the tip logic acts on. */
export type CardEvent =
  | { kind: "payment"; eventId: string; type: string; payment: CardPayment }
  | { kind: "payment_failed"; eventId: string; type: string; payment: CardPayment }
  | { kind: "refunded"; eventId: string; type: string; paymentId: string; chargeId: string; refundedMinor: bigint; currency: string }
  /** A refund the provider made and then could not complete (the card closed): the customer has nothing back. */
  | { kind: "refund_failed"; eventId: string; type: string; paymentId: string; chargeId: string; refundId: string; reason: string }
  | { kind: "dispute_opened"; eventId: string; type: string; paymentId: string; chargeId?: string; disputeId: string; amountMinor: bigint; currency: string; reason: string }
  | { kind: "dispute_closed"; eventId: string; type: string; paymentId: string; chargeId?: string; disputeId: string; amountMinor: bigint; currency: string; outcome: "won" | "lost" | "other" }
  | { kind: "ignored"; eventId: string; type: string };

export interface BalanceTransaction {
  id: string;
  /** charge, payment, refund, adjustment (disputes), payout, ... as the provider names it. */
  type: string;
  /** The charge, refund, dispute or payout it belongs to. */
  sourceId: string;
  currency: string;
  amountMinor: bigint;
  feeMinor: bigint;
  netMinor: bigint;
  created: Date;
}

/** The webhook could not be verified (signature, tolerance, shape): stored, never applied. */
export class WebhookVerificationError extends Error {}

/**
 * A provider answered with a definite refusal (a decline, a 4xx): the call did
 * not happen and is not retried. Anything else (timeouts, 5xx) may have
 * happened: it is retried only with the same idempotency key.
 */
export class CardProviderError extends Error {
  constructor(
    message: string,
    readonly kind: "rejected" | "unknown",
    readonly code = "",
    readonly payment?: CardPayment,
  ) {
    super(message);
  }
}

export interface CreateCardPayment {
  tipId: string;
  amountMinor: bigint;
  currency: string;
  description: string;
  /** Stable per tip: a retried create returns the same payment. */
  idempotencyKey: string;
  /** Where the provider sends the customer back after 3-D Secure or approval. */
  returnUrl?: string;
}

export interface CardProvider {
  readonly name: CardProviderName;
  /** What the browser needs besides the client secret (Stripe's publishable key). */
  readonly publicKey: string;
  create(input: CreateCardPayment): Promise<CardPayment>;
  retrieve(paymentId: string): Promise<CardPayment>;
  /** Takes the authorised money (manual capture, after the fraud rules). */
  capture(paymentId: string, idempotencyKey: string): Promise<CardPayment>;
  /**
   * Voids a payment not taken: an authorisation the fraud rules refused, or one the customer left unpaid past its
   * deadline (`why`: what the provider is told, where it asks). The customer is not charged.
   */
  cancel(paymentId: string, idempotencyKey: string, why: "refused" | "abandoned"): Promise<CardPayment>;
  refund(input: { paymentId: string; chargeId?: string; amountMinor: bigint; currency: string; idempotencyKey: string; reason: string }): Promise<{ refundId: string; status: string }>;
  /** Verifies and parses a webhook from its raw body and headers. */
  parseWebhook(rawBody: Buffer, headers: Record<string, string | string[] | undefined>): Promise<CardEvent>;
  /** Balance transactions newer than `afterId` (oldest first), for reconciliation; undefined when the provider has none. */
  balanceTransactions?(afterId: string | undefined, limit: number): Promise<BalanceTransaction[]>;
}
