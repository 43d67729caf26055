import { z } from "zod";
import { ConfigError, env, loadConfig, type Env } from "@ttip/runtime";
import { CONTACT_LOOKUP_TIMEOUT_MS } from "./contacts.js";
import { UNMATCHED_REPORT_RETENTION_MS } from "./delivery.js";

export type SmsProviderName = "africastalking" | "twilio";

/** Where each provider is and how to sign in; the same clients talk to the real APIs and to the simulators. */
export interface ProviderConfig {
  smsPrimary: SmsProviderName;
  africastalking: { baseUrl: string; username: string; apiKey: string; senderId: string; callbackToken: string };
  twilio: { baseUrl: string; accountSid: string; authToken: string; from: string };
  sendgrid: { baseUrl: string; apiKey: string; from: string; fromName: string; webhookPublicKey: string };
  fcm: { baseUrl: string; projectId: string; clientEmail: string; privateKey: string; tokenUrl: string };
}

export interface RetryConfig {
  /** Attempts on each provider of a channel before moving on (or giving up). */
  attemptsPerProvider: number;
  /** First backoff; doubles per attempt up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** An attempt still 'sending' after this long was cut off by a crash: in doubt, sent again once (never a sign-in code). */
  sendLeaseMs: number;
  /** Provider HTTP timeout. */
  httpTimeoutMs: number;
  /** Every provider of the channel tried: the least pause before starting again from the first (later, half the time since its first attempt). */
  roundPauseMs: number;
  /** A delivery not sent this long after its first attempt fails (a sign-in code after its first round). */
  giveUpAfterMs: number;
}

export interface NotificationConfig {
  providers: ProviderConfig;
  retry: RetryConfig;
  /**
   * The URL providers reach this service's HTTP port at (status callbacks and
   * Twilio signatures use it). A function, since tests learn the port late.
   * Empty: no per-message callback URL is sent.
   */
  publicUrl: () => string;
  /** The admin console's address, linked from staff alerts; empty: the path alone. */
  consoleUrl?: string;
  /** How long stopping may take in all: sweeps, batches, sends in flight and their records (default DEFAULT_STOP_SENDS_MS). */
  stopSendsMs?: number;
}

/**
 * How long stopping may take in all: the sweeps and the triggers' batches, then the sends in flight and
 * their records. Past it, sends still out are left 'sending', and a look sends them again once their
 * lease is over, as after a crash. With the database down a record is retried for the whole lease
 * (60 s), and a sweep or a batch waits on PostgreSQL's own timeouts, longer than a pod's grace (30 s at
 * the chart's defaults); a process has 5 s after its calls' drain before its hard deadline (the
 * platform's runService), in which its pools and bus close too. The chart's drain.sendsMs (4,000 at most).
 */
export const DEFAULT_STOP_SENDS_MS = 3_000;

const shape = {
  NODE_ENV: z.string().default("development"),
  // "simulator": start the in-repo provider simulators on loopback (make run); "real": use the URLs below.
  NOTIFICATION_PROVIDERS: z.enum(["simulator", "real"]).default("simulator"),
  NOTIFICATION_PUBLIC_URL: z.string().default(""),
  // Where staff alerts send admins; by default the public URL's /admin.
  NOTIFICATION_CONSOLE_URL: z.string().default(""),
  NOTIFICATION_SMS_PRIMARY: z.enum(["africastalking", "twilio"]).default("africastalking"),
  NOTIFICATION_AT_BASE_URL: env.url(["http", "https"]).default("https://api.africastalking.com"),
  NOTIFICATION_AT_USERNAME: z.string().default(""),
  NOTIFICATION_AT_API_KEY: z.string().default(""),
  NOTIFICATION_AT_SENDER_ID: z.string().default(""),
  NOTIFICATION_AT_CALLBACK_TOKEN: z.string().default(""),
  NOTIFICATION_TWILIO_BASE_URL: env.url(["http", "https"]).default("https://api.twilio.com"),
  NOTIFICATION_TWILIO_ACCOUNT_SID: z.string().default(""),
  NOTIFICATION_TWILIO_AUTH_TOKEN: z.string().default(""),
  NOTIFICATION_TWILIO_FROM: z.string().default(""),
  NOTIFICATION_SENDGRID_BASE_URL: env.url(["http", "https"]).default("https://api.sendgrid.com"),
  NOTIFICATION_SENDGRID_API_KEY: z.string().default(""),
  NOTIFICATION_SENDGRID_FROM: z.string().default("no-reply@ttip.example"),
  NOTIFICATION_SENDGRID_WEBHOOK_PUBLIC_KEY: z.string().default(""),
  NOTIFICATION_FCM_BASE_URL: env.url(["http", "https"]).default("https://fcm.googleapis.com"),
  NOTIFICATION_FCM_PROJECT_ID: z.string().default(""),
  NOTIFICATION_FCM_CLIENT_EMAIL: z.string().default(""),
  // PEM; "\n" escapes are accepted, as secrets often arrive on one line.
  NOTIFICATION_FCM_PRIVATE_KEY: z.string().default("").transform((v) => v.replace(/\\n/g, "\n")),
  NOTIFICATION_FCM_TOKEN_URL: env.url(["http", "https"]).default("https://oauth2.googleapis.com/token"),
  NOTIFICATION_RETRY_ATTEMPTS: z.coerce.number().int().positive().default(3),
  NOTIFICATION_RETRY_BASE_MS: env.duration(2_000),
  NOTIFICATION_RETRY_MAX_MS: env.duration(60_000),
  NOTIFICATION_SEND_LEASE_MS: env.duration(60_000),
  NOTIFICATION_PROVIDER_TIMEOUT_MS: env.duration(10_000),
  NOTIFICATION_GIVE_UP_MS: env.duration(6 * 3_600_000),
  NOTIFICATION_STOP_SENDS_MS: env.duration(DEFAULT_STOP_SENDS_MS),
};

export type EnvConfig = z.infer<z.ZodObject<typeof shape>>;

export const DEFAULT_RETRY: RetryConfig = {
  attemptsPerProvider: 3,
  baseDelayMs: 2_000,
  maxDelayMs: 60_000,
  sendLeaseMs: 60_000,
  httpTimeoutMs: 10_000,
  roundPauseMs: 60_000,
  // A provider's outage of hours (an expired API key, an account out of credit) is mended within a working day.
  giveUpAfterMs: 6 * 3_600_000,
};

/** Reads NOTIFICATION_* variables; refuses simulators in production and real mode without the primary SMS provider's credentials. */
export function loadEnvConfig(vars: Env = process.env): EnvConfig {
  const c = loadConfig(shape, vars);
  const problems: string[] = [];
  if (c.NOTIFICATION_PROVIDERS === "simulator" && c.NODE_ENV === "production") {
    problems.push("NOTIFICATION_PROVIDERS: must be real in production (simulators reach nobody)");
  }
  if (c.NOTIFICATION_PROVIDERS === "real") {
    const primary =
      c.NOTIFICATION_SMS_PRIMARY === "africastalking"
        ? { NOTIFICATION_AT_USERNAME: c.NOTIFICATION_AT_USERNAME, NOTIFICATION_AT_API_KEY: c.NOTIFICATION_AT_API_KEY }
        : { NOTIFICATION_TWILIO_ACCOUNT_SID: c.NOTIFICATION_TWILIO_ACCOUNT_SID, NOTIFICATION_TWILIO_AUTH_TOKEN: c.NOTIFICATION_TWILIO_AUTH_TOKEN, NOTIFICATION_TWILIO_FROM: c.NOTIFICATION_TWILIO_FROM };
    for (const [name, value] of Object.entries(primary)) if (!value) problems.push(`${name}: is required with NOTIFICATION_PROVIDERS=real`);
  }
  if (problems.length) throw new ConfigError(problems);
  return c;
}

/**
 * The longest an attempt may rightly stay 'sending': a push asks FCM for a token and
 * then sends (a provider timeout each), and auth's phone lookup is the one other wait
 * in a dispatch (kept as margin for the record's own turn at the database).
 */
function longestSendMs(retry: RetryConfig): number {
  return 2 * retry.httpTimeoutMs + CONTACT_LOOKUP_TIMEOUT_MS;
}

/**
 * Refuses a lease that a send in flight can outlive: another dispatcher would declare
 * that send in doubt and send it a second time (or fail it, a sign-in code) while the provider
 * may be delivering it.
 */
export function checkRetryConfig(retry: RetryConfig): void {
  const longest = longestSendMs(retry);
  const problems: string[] = [];
  if (retry.sendLeaseMs <= longest) {
    problems.push(
      `NOTIFICATION_SEND_LEASE_MS (retry.sendLeaseMs): ${retry.sendLeaseMs} ms must be above twice NOTIFICATION_PROVIDER_TIMEOUT_MS ` +
        `(retry.httpTimeoutMs, ${retry.httpTimeoutMs} ms: a push fetches a token, then sends) plus auth's phone lookup (${CONTACT_LOOKUP_TIMEOUT_MS} ms), ` +
        `that is above ${longest} ms; otherwise a send still in flight is declared in doubt`,
    );
  }
  // A report that beats the record of its send waits at most the lease for it.
  if (retry.sendLeaseMs >= UNMATCHED_REPORT_RETENTION_MS) {
    problems.push(`NOTIFICATION_SEND_LEASE_MS (retry.sendLeaseMs): ${retry.sendLeaseMs} ms must be below the ${UNMATCHED_REPORT_RETENTION_MS} ms that unmatched delivery reports are kept`);
  }
  if (problems.length) throw new ConfigError(problems);
}

export function configFromEnv(e: EnvConfig): NotificationConfig {
  return {
    publicUrl: () => e.NOTIFICATION_PUBLIC_URL,
    consoleUrl: e.NOTIFICATION_CONSOLE_URL || `${e.NOTIFICATION_PUBLIC_URL.replace(/\/+$/, "")}/admin`,
    stopSendsMs: e.NOTIFICATION_STOP_SENDS_MS,
    retry: {
      ...DEFAULT_RETRY,
      attemptsPerProvider: e.NOTIFICATION_RETRY_ATTEMPTS,
      baseDelayMs: e.NOTIFICATION_RETRY_BASE_MS,
      maxDelayMs: e.NOTIFICATION_RETRY_MAX_MS,
      sendLeaseMs: e.NOTIFICATION_SEND_LEASE_MS,
      httpTimeoutMs: e.NOTIFICATION_PROVIDER_TIMEOUT_MS,
      giveUpAfterMs: e.NOTIFICATION_GIVE_UP_MS,
    },
    providers: {
      smsPrimary: e.NOTIFICATION_SMS_PRIMARY,
      africastalking: {
        baseUrl: e.NOTIFICATION_AT_BASE_URL,
        username: e.NOTIFICATION_AT_USERNAME,
        apiKey: e.NOTIFICATION_AT_API_KEY,
        senderId: e.NOTIFICATION_AT_SENDER_ID,
        callbackToken: e.NOTIFICATION_AT_CALLBACK_TOKEN,
      },
      twilio: {
        baseUrl: e.NOTIFICATION_TWILIO_BASE_URL,
        accountSid: e.NOTIFICATION_TWILIO_ACCOUNT_SID,
        authToken: e.NOTIFICATION_TWILIO_AUTH_TOKEN,
        from: e.NOTIFICATION_TWILIO_FROM,
      },
      sendgrid: {
        baseUrl: e.NOTIFICATION_SENDGRID_BASE_URL,
        apiKey: e.NOTIFICATION_SENDGRID_API_KEY,
        from: e.NOTIFICATION_SENDGRID_FROM,
        fromName: "TTIP",
        webhookPublicKey: e.NOTIFICATION_SENDGRID_WEBHOOK_PUBLIC_KEY,
      },
      fcm: {
        baseUrl: e.NOTIFICATION_FCM_BASE_URL,
        projectId: e.NOTIFICATION_FCM_PROJECT_ID,
        clientEmail: e.NOTIFICATION_FCM_CLIENT_EMAIL,
        privateKey: e.NOTIFICATION_FCM_PRIVATE_KEY,
        tokenUrl: e.NOTIFICATION_FCM_TOKEN_URL,
      },
    },
  };
}
