import { z } from "zod";
import { env, loadConfig } from "@ttip/runtime";
import type { PayPalConfig } from "./paypal.js";
import type { StripeConfig } from "./stripe.js";

export interface CardRules {
  /** Largest card tip, in KES minor units after conversion (refused above: INVALID_ARGUMENT). */
  maxPerTipKesMinor: bigint;
  /** Card tips one card (fingerprint) may make in an hour; the next authorisation is cancelled. */
  perCardPerHour: number;
  /** What one card may tip in 24 hours, in KES minor units; above it the authorisation is cancelled. */
  perCardDailyKesMinor: bigint;
  /** A card issued in another country than the customer's: held for review, refused, or allowed. */
  countryMismatch: "hold" | "refuse" | "off";
}

/** Balance reconciliation's wait for our record of a provider's transaction, unless configured. */
export const UNMATCHED_GRACE_MS = 60 * 60_000;

export interface CardsConfig {
  stripe?: StripeConfig;
  paypal?: PayPalConfig;
  /** The tip page customers come back to after 3-D Secure. */
  returnUrl: string;
  /** A card tip still waiting for its customer after this is cancelled and expires. */
  expireAfterMs: number;
  /** When reconciliation first asks the provider about a pending card tip (a lost webhook). */
  checkAfterMs: number;
  /**
   * How long balance reconciliation waits for our record of a provider's balance transaction (a dispute's webhook
   * delayed, a refund's answer recorded by a later pass) before it calls the transaction a stranger's; an hour if unset.
   */
  unmatchedGraceMs?: number;
  rules: CardRules;
}

const shape = {
  STRIPE_SECRET_KEY: z.string().optional(),
  STRIPE_PUBLISHABLE_KEY: z.string().default(""),
  STRIPE_WEBHOOK_SECRET: z.string().default(""),
  STRIPE_API_BASE: env.url(["http", "https"]).optional(),
  STRIPE_WEBHOOK_TOLERANCE_S: z.coerce.number().int().positive().max(3600).default(300),
  STRIPE_TIMEOUT_MS: env.duration(20_000),
  PAYPAL_CLIENT_ID: z.string().optional(),
  PAYPAL_CLIENT_SECRET: z.string().default(""),
  PAYPAL_WEBHOOK_ID: z.string().default(""),
  PAYPAL_API_BASE: env.url(["http", "https"]).default("https://api-m.paypal.com"),
  CARD_RETURN_URL: z.string().default(""),
  CARD_EXPIRE_AFTER_MS: env.duration(60 * 60_000),
  CARD_CHECK_AFTER_MS: env.duration(5 * 60_000),
  CARD_UNMATCHED_GRACE_MS: env.duration(UNMATCHED_GRACE_MS),
  CARD_MAX_KES: z.coerce.number().int().positive().default(100_000),
  CARD_PER_HOUR: z.coerce.number().int().positive().default(3),
  CARD_DAILY_KES: z.coerce.number().int().positive().default(150_000),
  CARD_COUNTRY_MISMATCH: z.enum(["hold", "refuse", "off"]).default("hold"),
};

export function loadCardsConfig(vars: Record<string, string | undefined>): CardsConfig | undefined {
  const c = loadConfig(shape, vars);
  if (!c.STRIPE_SECRET_KEY && !c.PAYPAL_CLIENT_ID) return undefined;
  if (c.STRIPE_SECRET_KEY && !c.STRIPE_WEBHOOK_SECRET) throw new Error("STRIPE_WEBHOOK_SECRET is required with STRIPE_SECRET_KEY: webhooks are verified with it");
  if (c.PAYPAL_CLIENT_ID && (!c.PAYPAL_CLIENT_SECRET || !c.PAYPAL_WEBHOOK_ID)) {
    throw new Error("PAYPAL_CLIENT_SECRET and PAYPAL_WEBHOOK_ID are required with PAYPAL_CLIENT_ID: webhooks are verified with the webhook id");
  }
  return {
    stripe: c.STRIPE_SECRET_KEY
      ? {
          secretKey: c.STRIPE_SECRET_KEY,
          publishableKey: c.STRIPE_PUBLISHABLE_KEY,
          webhookSecret: c.STRIPE_WEBHOOK_SECRET,
          apiBase: c.STRIPE_API_BASE,
          webhookToleranceS: c.STRIPE_WEBHOOK_TOLERANCE_S,
          timeoutMs: c.STRIPE_TIMEOUT_MS,
        }
      : undefined,
    paypal: c.PAYPAL_CLIENT_ID
      ? { clientId: c.PAYPAL_CLIENT_ID, clientSecret: c.PAYPAL_CLIENT_SECRET, webhookId: c.PAYPAL_WEBHOOK_ID, apiBase: c.PAYPAL_API_BASE, timeoutMs: c.STRIPE_TIMEOUT_MS }
      : undefined,
    returnUrl: c.CARD_RETURN_URL,
    expireAfterMs: c.CARD_EXPIRE_AFTER_MS,
    checkAfterMs: c.CARD_CHECK_AFTER_MS,
    unmatchedGraceMs: c.CARD_UNMATCHED_GRACE_MS,
    rules: {
      maxPerTipKesMinor: BigInt(c.CARD_MAX_KES) * 100n,
      perCardPerHour: c.CARD_PER_HOUR,
      perCardDailyKesMinor: BigInt(c.CARD_DAILY_KES) * 100n,
      countryMismatch: c.CARD_COUNTRY_MISMATCH,
    },
  };
}

export const DEFAULT_CARD_RULES: CardRules = {
  maxPerTipKesMinor: 100_000_00n,
  perCardPerHour: 3,
  perCardDailyKesMinor: 150_000_00n,
  countryMismatch: "hold",
};
