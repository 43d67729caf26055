import { readFileSync } from "node:fs";
import type { BlockList } from "node:net";
import { z } from "zod";
import { ConfigError, env, loadConfig, networkList, PRIVATE_NETWORKS, type Env } from "@ttip/runtime";
import type { CardsConfig } from "./cards/config.js";
import { loadCardsConfig } from "./cards/config.js";
import { bannedUrlWord, type DarajaConfig } from "./daraja/client.js";
import { ENSURE_ACCOUNT_TIMEOUT_MS, POST_ENTRY_TIMEOUT_MS } from "./ledger.js";
import { PAYOUT_NUMBER_COOLING_OFF_MS } from "./payout-number-cooling.js";

/**
 * Safaricom's published Daraja callback source addresses: the default
 * allow-list in production. Embedded and test runs set loopback instead.
 */
export const SAFARICOM_CALLBACK_IPS = [
  "196.201.214.200", "196.201.214.206", "196.201.213.114", "196.201.214.207", "196.201.214.208",
  "196.201.213.44", "196.201.212.127", "196.201.212.138", "196.201.212.129", "196.201.212.136",
  "196.201.212.74", "196.201.212.69",
];

export interface FraudLimits {
  /** Tips started from one phone within the window before it is refused. */
  phonePerWindow: number;
  /** Tips to one worker within the window before new ones are held. */
  workerPerWindow: number;
  windowMs: number;
  /** A tip above this (minor units) is held for review. */
  outlierMinor: bigint;
  /** Wrong-PIN failures from one phone within an hour before it is refused. */
  pinFailures: number;
}

/**
 * How long after a credit reconciliation looks at the worker's automatic payout: well past the start the crediting
 * process makes at once (a few wallet calls and a B2C request), which settles the look when it has run.
 */
export const AUTO_PAYOUT_CHECK_AFTER_CREDIT_MS = 2 * 60_000;

/**
 * The address Daraja's answers come back to, when M-Pesa calls can be made: a call without one is never answered
 * (its result, a payout's or a reversal's, is lost), so the account and the address are set up together or not at all.
 */
export function mpesaCallbackBase(config: PaymentConfig): string | undefined {
  return config.daraja && config.callbackBaseUrl ? config.callbackBaseUrl : undefined;
}

export interface PaymentConfig {
  /** Undefined when M-Pesa is not configured: tips answer FAILED_PRECONDITION. */
  daraja?: DarajaConfig;
  /** Public base URL Daraja calls back (the payment service's HTTP port behind the ingress). */
  callbackBaseUrl?: string;
  /** Addresses (exact, or IPv4 CIDR) callbacks may come from. */
  callbackAllowList: string[];
  /** Proxies (the ingress) whose X-Forwarded-For names the callback's address; undefined: none, the socket's address counts. */
  callbackTrustedProxies?: BlockList;
  /** How long the customer has to answer the push before we ask Daraja. */
  stkDeadlineMs: number;
  /** How long past the deadline an unanswered push stays pending before it expires. */
  stkExpireAfterMs: number;
  /** A B2C with no result after this is resolved by a transaction status query. */
  payoutResultWaitMs: number;
  /**
   * How long wallet has to answer EnsureAccount (default 5 s): wallet waits at most its 2 s lock
   * timeout for an account another call is creating, then answers ABORTED itself; the rest is room
   * for one statement on a busy database. Past it the call is ABORTED here, to try again (a credit:
   * by reconciliation), rather than holding the tips waiting on it for as long as wallet is stuck.
   */
  walletEnsureAccountTimeoutMs?: number;
  /**
   * How long wallet has to answer a call posting entries (default 5 s): one statement's work, with
   * room for a busy database. Past it the call fails DEADLINE_EXCEEDED and is retried (by
   * reconciliation, the provider's webhook, or the admin; each entry is posted once by its key),
   * rather than holding a card webhook, a suspense entry or reconciliation for as long as wallet is stuck.
   */
  walletPostEntryTimeoutMs?: number;
  /**
   * How long a payout number that replaced another receives no automatic payout (PAYOUT_NUMBER_COOLING_OFF_MS,
   * default 24 hours: payout-number-cooling.ts); automatic payouts to it are held back, not failed, until then.
   */
  payoutNumberCoolingOffMs?: number;
  /**
   * How long after a credit reconciliation looks at the worker's automatic payout, for a process that died before
   * starting it (AUTO_PAYOUT_CHECK_AFTER_MS, AUTO_PAYOUT_CHECK_AFTER_CREDIT_MS unless set).
   */
  autoPayoutCheckAfterMs?: number;
  /** Background reconciliation period; 0 turns the job off (tests call ReconcilePending). */
  reconcileIntervalMs: number;
  /**
   * How long a reconciliation pass owns the rows it took (RECONCILE_LEASE_MS, 2 minutes unless set). A replica
   * that dies mid-pass leaves them untouched this long; another may then take them over.
   */
  reconcileLeaseMs: number;
  /**
   * How old a held tip's unfinished review claim is before reconciliation finishes it (default 2
   * minutes: review-resumer.ts). A review under way finishes its own claim well within it.
   */
  reviewClaimGraceMs?: number;
  /**
   * How often a WatchTip/WatchPayout stream reads its row when no change wakes
   * it (default 1 s): the safety net under the replicas' wake-ups.
   */
  watchPollMs?: number;
  fraud: FraudLimits;
  /** Card tips (Stripe, PayPal); undefined when no card provider is configured (card tips: FAILED_PRECONDITION). */
  cards?: CardsConfig;
  /** Paybill/till payments (C2B); undefined = the C2B routes answer 404. */
  c2b?: C2bConfig;
  /** The USSD menu (Africa's Talking); undefined = its route answers 404. */
  ussd?: UssdConfig;
}

export interface C2bConfig {
  /** Secret path segment of the registered URLs: /c2b/<token>/validation and /c2b/<token>/confirmation. */
  pathToken: string;
  /** Our paybills and tills: a payment to any other is refused at validation (C2B00015). */
  shortCodes: string[];
  /** Which register URL API to use. */
  registerVersion: "v1" | "v2";
  /** What M-Pesa does when validation does not answer in time. */
  responseType: "Completed" | "Cancelled";
  /** Register the URLs when the service starts (one-time in production; make run does it). */
  registerOnStart: boolean;
  /** Validation answers within this, whatever the lookups behind it do (Safaricom waits about 8 s). */
  validationBudgetMs: number;
}

export interface UssdConfig {
  /** Secret path segment: POST /ussd/<token> (Africa's Talking's callback URL). */
  pathToken: string;
  /** A session idle longer than this is over, as the network ends it. */
  sessionTimeoutMs: number;
  /**
   * The confirm step answers within this, the push still going on if it is not done: Africa's Talking waits
   * 15 s for an answer, then the handset shows a network error, and a customer who dials again tips twice.
   */
  answerWithinMs: number;
  /** Amounts offered in the menu, whole shillings. */
  amountsKes: number[];
}

const shape = {
  DARAJA_BASE_URL: env.url(["http", "https"]).optional(),
  DARAJA_CONSUMER_KEY: z.string().default(""),
  DARAJA_CONSUMER_SECRET: z.string().default(""),
  DARAJA_SHORTCODE: z.string().regex(/^\d{5,7}$/, "a paybill or till number").optional(),
  DARAJA_PASSKEY: z.string().default(""),
  DARAJA_TRANSACTION_TYPE: z.enum(["CustomerPayBillOnline", "CustomerBuyGoodsOnline"]).default("CustomerPayBillOnline"),
  DARAJA_B2C_SHORTCODE: z.string().optional(),
  DARAJA_INITIATOR_NAME: z.string().optional(),
  DARAJA_INITIATOR_PASSWORD: z.string().optional(),
  DARAJA_CERTIFICATE_FILE: z.string().optional(),
  DARAJA_TIMEOUT_MS: env.duration(15_000),
  PAYMENT_CALLBACK_BASE_URL: env.url(["http", "https"]).optional(),
  MPESA_CALLBACK_ALLOWED_IPS: z.string().optional(),
  // The gateway's TRUSTED_PROXIES (the chart passes the same list): a caller elsewhere in the cluster names no address.
  PAYMENT_CALLBACK_TRUSTED_PROXIES: env.list(),
  // Deprecated: true trusts every private range when PAYMENT_CALLBACK_TRUSTED_PROXIES is unset.
  PAYMENT_CALLBACK_TRUST_PROXY: env.flag(false),
  STK_DEADLINE_MS: env.duration(90_000),
  STK_EXPIRE_AFTER_MS: env.duration(10 * 60_000),
  PAYOUT_RESULT_WAIT_MS: env.duration(5 * 60_000),
  WALLET_ENSURE_ACCOUNT_TIMEOUT_MS: env.duration(ENSURE_ACCOUNT_TIMEOUT_MS),
  WALLET_POST_ENTRY_TIMEOUT_MS: env.duration(POST_ENTRY_TIMEOUT_MS),
  RECONCILE_INTERVAL_MS: z.coerce.number().int().min(0).default(15_000),
  RECONCILE_LEASE_MS: env.duration(120_000),
  PAYOUT_NUMBER_COOLING_OFF_MS: env.duration(PAYOUT_NUMBER_COOLING_OFF_MS),
  AUTO_PAYOUT_CHECK_AFTER_MS: env.duration(AUTO_PAYOUT_CHECK_AFTER_CREDIT_MS),
  FRAUD_PHONE_PER_10MIN: z.coerce.number().int().positive().default(5),
  FRAUD_WORKER_PER_10MIN: z.coerce.number().int().positive().default(30),
  FRAUD_OUTLIER_KES: z.coerce.number().int().positive().default(20_000),
  FRAUD_PIN_FAILURES_PER_HOUR: z.coerce.number().int().positive().default(3),
  C2B_URL_TOKEN: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, "16-64 letters, digits, '-' or '_'").optional(),
  C2B_SHORTCODES: z.string().optional(),
  C2B_REGISTER_VERSION: z.enum(["v1", "v2"]).default("v2"),
  C2B_RESPONSE_TYPE: z.enum(["Completed", "Cancelled"]).default("Completed"),
  C2B_REGISTER_ON_START: env.flag(false),
  C2B_VALIDATION_BUDGET_MS: env.duration(3_000),
  USSD_CALLBACK_TOKEN: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, "16-64 letters, digits, '-' or '_'").optional(),
  USSD_SESSION_TIMEOUT_MS: env.duration(180_000),
  USSD_ANSWER_WITHIN_MS: env.duration(8_000),
  USSD_AMOUNTS_KES: z.string().regex(/^\d+(,\d+)*$/, "comma-separated whole shillings").default("50,100,200,500"),
};

export function loadPaymentConfig(vars: Env = process.env): PaymentConfig {
  const c = loadConfig(shape, vars);
  if (c.C2B_URL_TOKEN) refuseBannedUrlWords({ C2B_URL_TOKEN: c.C2B_URL_TOKEN, PAYMENT_CALLBACK_BASE_URL: c.PAYMENT_CALLBACK_BASE_URL });
  const daraja: DarajaConfig | undefined =
    c.DARAJA_BASE_URL && c.DARAJA_SHORTCODE
      ? {
          baseUrl: c.DARAJA_BASE_URL,
          consumerKey: c.DARAJA_CONSUMER_KEY,
          consumerSecret: c.DARAJA_CONSUMER_SECRET,
          shortcode: c.DARAJA_SHORTCODE,
          passkey: c.DARAJA_PASSKEY,
          transactionType: c.DARAJA_TRANSACTION_TYPE,
          b2cShortcode: c.DARAJA_B2C_SHORTCODE,
          initiatorName: c.DARAJA_INITIATOR_NAME,
          initiatorPassword: c.DARAJA_INITIATOR_PASSWORD,
          certificatePem: c.DARAJA_CERTIFICATE_FILE ? readFileSync(c.DARAJA_CERTIFICATE_FILE, "utf8") : undefined,
          timeoutMs: c.DARAJA_TIMEOUT_MS,
        }
      : undefined;
  return {
    daraja,
    callbackBaseUrl: c.PAYMENT_CALLBACK_BASE_URL,
    callbackAllowList: c.MPESA_CALLBACK_ALLOWED_IPS
      ? c.MPESA_CALLBACK_ALLOWED_IPS.split(",").map((s) => s.trim()).filter(Boolean)
      : SAFARICOM_CALLBACK_IPS,
    callbackTrustedProxies: c.PAYMENT_CALLBACK_TRUSTED_PROXIES.length ? networkList(c.PAYMENT_CALLBACK_TRUSTED_PROXIES, "PAYMENT_CALLBACK_TRUSTED_PROXIES")
      : c.PAYMENT_CALLBACK_TRUST_PROXY ? networkList(PRIVATE_NETWORKS) : undefined,
    stkDeadlineMs: c.STK_DEADLINE_MS,
    stkExpireAfterMs: c.STK_EXPIRE_AFTER_MS,
    payoutResultWaitMs: c.PAYOUT_RESULT_WAIT_MS,
    walletEnsureAccountTimeoutMs: c.WALLET_ENSURE_ACCOUNT_TIMEOUT_MS,
    walletPostEntryTimeoutMs: c.WALLET_POST_ENTRY_TIMEOUT_MS,
    reconcileIntervalMs: c.RECONCILE_INTERVAL_MS,
    reconcileLeaseMs: c.RECONCILE_LEASE_MS,
    payoutNumberCoolingOffMs: c.PAYOUT_NUMBER_COOLING_OFF_MS,
    autoPayoutCheckAfterMs: c.AUTO_PAYOUT_CHECK_AFTER_MS,
    fraud: {
      phonePerWindow: c.FRAUD_PHONE_PER_10MIN,
      workerPerWindow: c.FRAUD_WORKER_PER_10MIN,
      windowMs: 10 * 60_000,
      outlierMinor: BigInt(c.FRAUD_OUTLIER_KES) * 100n,
      pinFailures: c.FRAUD_PIN_FAILURES_PER_HOUR,
    },
    cards: loadCardsConfig(vars),
    c2b: c.C2B_URL_TOKEN
      ? {
          pathToken: c.C2B_URL_TOKEN,
          shortCodes: (c.C2B_SHORTCODES ?? c.DARAJA_SHORTCODE ?? "").split(",").map((s) => s.trim()).filter(Boolean),
          registerVersion: c.C2B_REGISTER_VERSION,
          responseType: c.C2B_RESPONSE_TYPE,
          registerOnStart: c.C2B_REGISTER_ON_START,
          validationBudgetMs: Math.min(c.C2B_VALIDATION_BUDGET_MS, 7_000),
        }
      : undefined,
    ussd: c.USSD_CALLBACK_TOKEN
      ? {
          pathToken: c.USSD_CALLBACK_TOKEN,
          sessionTimeoutMs: c.USSD_SESSION_TIMEOUT_MS,
          answerWithinMs: Math.min(c.USSD_ANSWER_WITHIN_MS, 12_000),
          amountsKes: c.USSD_AMOUNTS_KES.split(",").map(Number).filter((n) => n >= 1 && n <= 250_000).slice(0, 6),
        }
      : undefined,
  };
}

/**
 * Safaricom refuses to register a URL holding certain words, and would refuse
 * every retry: a paybill whose payments never arrive. Said at start instead.
 */
function refuseBannedUrlWords(parts: Record<string, string | undefined>): void {
  const problems = Object.entries(parts).flatMap(([name, value]) => {
    const word = value && bannedUrlWord(value);
    return word ? [`${name}: holds "${word}", a word Safaricom refuses in registered C2B URLs`] : [];
  });
  if (problems.length) throw new ConfigError(problems);
}

/** Is `address` (as the socket reports it, maybe ::ffff:-mapped) in the allow-list? */
export function addressAllowed(address: string, allowList: string[]): boolean {
  const a = address.replace(/^::ffff:/, "");
  for (const entry of allowList) {
    if (entry === a) return true;
    const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(entry);
    if (m && /^\d+\.\d+\.\d+\.\d+$/.test(a)) {
      const bits = Number(m[2]);
      const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
      if (((ipv4(a) & mask) >>> 0) === ((ipv4(m[1]) & mask) >>> 0)) return true;
    }
  }
  return false;
}

function ipv4(s: string): number {
  return s.split(".").reduce((acc, p) => ((acc << 8) | Number(p)) >>> 0, 0);
}
