import { z } from "zod";
import { ConfigError, env, loadConfig, type Env } from "@ttip/runtime";
import type { RetentionConfig } from "./partners/retention.js";

/** A fixed secret for development and tests only; production refuses to start without its own. */
export const DEV_KEY_ENCRYPTION_SECRET = "ttip-dev-only-auth-key-encryption-secret-not-for-production";

const shape = {
  NODE_ENV: z.string().default("development"),
  AUTH_KEY_ENCRYPTION_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
  AUTH_ACCESS_TOKEN_TTL_SECONDS: z.coerce.number().int().min(30).max(3600).default(600),
  AUTH_REFRESH_TOKEN_TTL_DAYS: z.coerce.number().int().min(1).max(365).default(30),
  // How often recent revocations are written to Redis again (remarkRecentRevocations); 0: never.
  AUTH_REVOCATION_REMARK_MS: z.coerce.number().int().min(0).max(600_000).default(30_000),
  AUTH_SIGNING_KEY_MAX_AGE_DAYS: z.coerce.number().int().min(1).max(365).default(30),
  AUTH_SIGNING_KEY_ACTIVATION_SECONDS: z.coerce.number().int().min(0).max(3600).default(60),
  // "sms": an Africa's Talking-shaped SMS API (the simulator in this folder when no URL is set);
  // "notification": the notification service's SendNotification.
  AUTH_OTP_SENDER: z.enum(["sms", "notification"]).default("sms"),
  AUTH_SMS_URL: env.url(["http", "https"]).optional(),
  AUTH_SMS_USERNAME: z.string().default("sandbox"),
  AUTH_SMS_API_KEY: z.string().default("sandbox-key"),
  AUTH_OTP_RESEND_SECONDS: z.coerce.number().int().min(1).default(60),
  AUTH_OTP_PER_PHONE_PER_HOUR: z.coerce.number().int().min(1).default(5),
  AUTH_OTP_PER_IP_PER_HOUR: z.coerce.number().int().min(1).default(30),
  // SMS pumping costs money: codes go only to these country codes, within daily budgets.
  AUTH_OTP_COUNTRY_CODES: z
    .string()
    .default("254")
    .transform((v) => v.split(",").map((c) => c.trim().replace(/^\+/, "")).filter(Boolean))
    .refine((codes) => codes.length > 0 && codes.every((c) => /^\d{1,3}$/.test(c)), "comma-separated country calling codes, e.g. 254,255,256"),
  AUTH_OTP_DAILY_PER_PREFIX: z.coerce.number().int().min(1).default(2_000),
  AUTH_OTP_DAILY_TOTAL: z.coerce.number().int().min(1).default(20_000),
  AUTH_PIN_MAX_FAILURES: z.coerce.number().int().min(1).default(5),
  // A PIN reset by SMS code needs only the SIM (a swapped one, a code talked out of its owner): for this long after it
  // no device key approves a withdrawal or a new payout number (a lost phone may keep its key).
  AUTH_PAYOUT_HOLD_AFTER_PIN_RESET_HOURS: z.coerce.number().int().min(0).max(720).default(24),
  AUTH_LOCKOUT_BASE_SECONDS: z.coerce.number().int().min(1).default(60),
  AUTH_PARTNER_REPLAY_WINDOW_SECONDS: z.coerce.number().int().min(10).default(300),
  // Partner webhooks: the first retry after this, doubling up to the cap, at most this many
  // attempts (then the delivery is failed until an admin replays it); each request's timeout.
  AUTH_WEBHOOK_RETRY_BASE_MS: z.coerce.number().int().min(10).default(10_000),
  AUTH_WEBHOOK_RETRY_CAP_MS: z.coerce.number().int().min(10).default(3_600_000),
  AUTH_WEBHOOK_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(50).default(15),
  AUTH_WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(10_000),
  AUTH_WEBHOOK_POLL_MS: z.coerce.number().int().min(10).max(60_000).default(1_000),
  // Webhooks to loopback receivers (http:// or https://): the sandbox and tests only, never production.
  AUTH_WEBHOOK_ALLOW_LOOPBACK: env.flag(false),
  // The delivery log: final deliveries older than this are deleted (0 keeps them), in batches
  // of AUTH_WEBHOOK_PRUNE_BATCH rows, at most AUTH_WEBHOOK_PRUNE_MAX_BATCHES per pass, a pass every interval.
  AUTH_WEBHOOK_RETENTION_DAYS: z.coerce.number().int().min(0).max(3650).default(30),
  AUTH_WEBHOOK_PRUNE_BATCH: z.coerce.number().int().min(1).max(10_000).default(500),
  AUTH_WEBHOOK_PRUNE_MAX_BATCHES: z.coerce.number().int().min(1).max(1_000).default(20),
  AUTH_WEBHOOK_PRUNE_INTERVAL_MS: env.duration(3_600_000),
};

export interface AuthConfig {
  production: boolean;
  keyEncryptionSecret: string;
  accessTokenTtlSeconds: number;
  revocationRemarkMs: number;
  refreshTokenTtlSeconds: number;
  signingKeyMaxAgeSeconds: number;
  signingKeyActivationSeconds: number;
  otpSender: "sms" | "notification";
  sms: { url?: string; username: string; apiKey: string };
  otpResendSeconds: number;
  otpPerPhonePerHour: number;
  otpPerIpPerHour: number;
  /** Country calling codes OTPs may be sent to ("254"). */
  otpCountryCodes: string[];
  /** Codes per day to numbers sharing their first six digits (one operator range), and in all. */
  otpDailyPerPrefix: number;
  otpDailyTotal: number;
  pinMaxFailures: number;
  /** After a PIN reset by SMS code, how long no device key approves a payout (0: no hold). */
  payoutHoldAfterPinResetMs: number;
  lockoutBaseSeconds: number;
  partnerReplayWindowSeconds: number;
  webhooks: WebhookConfig;
}

export interface WebhookConfig extends RetentionConfig {
  retryBaseMs: number;
  retryCapMs: number;
  maxAttempts: number;
  timeoutMs: number;
  pollMs: number;
  /** Production: https:// only. */
  httpsOnly: boolean;
  /** Receivers on loopback too (http:// or https://): the sandbox and tests; never in production. */
  allowLoopback: boolean;
}

export function loadAuthConfig(vars: Env = process.env): AuthConfig {
  const c = loadConfig(shape, vars);
  const production = c.NODE_ENV === "production";
  if (production && !c.AUTH_KEY_ENCRYPTION_SECRET) {
    throw new ConfigError(["AUTH_KEY_ENCRYPTION_SECRET: is required in production (it seals signing keys and partner secrets)"]);
  }
  if (production && c.AUTH_OTP_SENDER === "sms" && (c.AUTH_SMS_USERNAME === "sandbox" || c.AUTH_SMS_API_KEY === "sandbox-key")) {
    throw new ConfigError(["AUTH_SMS_USERNAME, AUTH_SMS_API_KEY: production sends OTPs by SMS with its own account, not the sandbox's"]);
  }
  if (production && c.AUTH_WEBHOOK_ALLOW_LOOPBACK) {
    throw new ConfigError(["AUTH_WEBHOOK_ALLOW_LOOPBACK: is for the sandbox and tests; production sends webhooks to public addresses only"]);
  }
  return {
    production,
    keyEncryptionSecret: c.AUTH_KEY_ENCRYPTION_SECRET ?? DEV_KEY_ENCRYPTION_SECRET,
    accessTokenTtlSeconds: c.AUTH_ACCESS_TOKEN_TTL_SECONDS,
    refreshTokenTtlSeconds: c.AUTH_REFRESH_TOKEN_TTL_DAYS * 86_400,
    revocationRemarkMs: c.AUTH_REVOCATION_REMARK_MS,
    signingKeyMaxAgeSeconds: c.AUTH_SIGNING_KEY_MAX_AGE_DAYS * 86_400,
    signingKeyActivationSeconds: c.AUTH_SIGNING_KEY_ACTIVATION_SECONDS,
    otpSender: c.AUTH_OTP_SENDER,
    sms: { url: c.AUTH_SMS_URL, username: c.AUTH_SMS_USERNAME, apiKey: c.AUTH_SMS_API_KEY },
    otpResendSeconds: c.AUTH_OTP_RESEND_SECONDS,
    otpPerPhonePerHour: c.AUTH_OTP_PER_PHONE_PER_HOUR,
    otpPerIpPerHour: c.AUTH_OTP_PER_IP_PER_HOUR,
    otpCountryCodes: c.AUTH_OTP_COUNTRY_CODES,
    otpDailyPerPrefix: c.AUTH_OTP_DAILY_PER_PREFIX,
    otpDailyTotal: c.AUTH_OTP_DAILY_TOTAL,
    pinMaxFailures: c.AUTH_PIN_MAX_FAILURES,
    payoutHoldAfterPinResetMs: c.AUTH_PAYOUT_HOLD_AFTER_PIN_RESET_HOURS * 3_600_000,
    lockoutBaseSeconds: c.AUTH_LOCKOUT_BASE_SECONDS,
    partnerReplayWindowSeconds: c.AUTH_PARTNER_REPLAY_WINDOW_SECONDS,
    webhooks: {
      retryBaseMs: c.AUTH_WEBHOOK_RETRY_BASE_MS,
      retryCapMs: Math.max(c.AUTH_WEBHOOK_RETRY_CAP_MS, c.AUTH_WEBHOOK_RETRY_BASE_MS),
      maxAttempts: c.AUTH_WEBHOOK_MAX_ATTEMPTS,
      timeoutMs: c.AUTH_WEBHOOK_TIMEOUT_MS,
      pollMs: c.AUTH_WEBHOOK_POLL_MS,
      httpsOnly: production,
      allowLoopback: c.AUTH_WEBHOOK_ALLOW_LOOPBACK,
      retentionDays: c.AUTH_WEBHOOK_RETENTION_DAYS,
      pruneBatch: c.AUTH_WEBHOOK_PRUNE_BATCH,
      pruneMaxBatches: c.AUTH_WEBHOOK_PRUNE_MAX_BATCHES,
      pruneIntervalMs: c.AUTH_WEBHOOK_PRUNE_INTERVAL_MS,
    },
  };
}
