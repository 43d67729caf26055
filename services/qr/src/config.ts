import { z } from "zod";
import { env, loadConfig, type Env } from "@ttip/runtime";

export const qrConfigShape = {
  // HMAC-SHA256 key for code payloads; required in a cluster.
  QR_SIGNING_KEY: z.string().min(32, "must be at least 32 characters").optional(),
  // Older keys still accepted when verifying, comma-separated (key rotation without reprinting).
  QR_PREVIOUS_SIGNING_KEYS: env.list(),
  QR_TIP_BASE_URL: env.url(["http", "https"]).default("http://127.0.0.1:8080/t"),
  // The paybill or till the offline form names: the Daraja simulator's (and sandbox's) unless set. Set empty where no
  // paybill's payments are credited (M-Pesa or its C2B confirmations off): a card then prints none, rather than one
  // whose payments reach no worker, or a stranger's.
  QR_MPESA_SHORTCODE: z.string().regex(/^(\d{5,7})?$/, "must be a 5 to 7 digit paybill or till, or empty for none").default("174379"),
  QR_MPESA_SHORTCODE_KIND: z.enum(["paybill", "till"]).default("paybill"),
  // The USSD service code; a code's fallback is <prefix>*<SHORTCODE>#.
  QR_USSD_PREFIX: z.string().regex(/^\*[0-9]+(\*[0-9]+)*$/, "must look like *483*123").default("*483*123"),
  QR_MERCHANT_CITY: z.string().min(1).max(15).default("NAIROBI"),
  QR_MERCHANT_CATEGORY_CODE: z.string().regex(/^\d{4}$/, "must be 4 digits (ISO 18245)").default("5812"),
  // Shown as one-tap buttons when a code sets none: minor units of the owner's currency.
  QR_DEFAULT_SUGGESTED_AMOUNTS: z
    .string()
    .default("5000,10000,20000,50000")
    .refine((v) => v.split(",").every((a) => /^\d+$/.test(a.trim())), "must be comma-separated minor units")
    .transform((v) => v.split(",").map((a) => BigInt(a.trim()))),
  // Also the longest a change whose deletes were all lost (the process ended between its commit and them) goes unseen:
  // a revoked code, a blocked worker's, taking tips. A warm code is read again from Postgres once in that time.
  QR_CACHE_TTL_SECONDS: z.coerce.number().int().positive().default(600),
  // How long after a change its cache keys are deleted a second time (a resolve racing the commit may have written the old row back).
  QR_CACHE_REFORGET_MS: z.coerce.number().int().positive().max(60_000).default(2_000),
  // Lets a process without QR_SIGNING_KEY generate (and keep in its database) a development key.
  QR_ALLOW_DEV_SIGNING_KEY: env.flag(false),
};

export type QrConfig = ReturnType<typeof loadQrConfig>;

export function loadQrConfig(vars: Env = process.env) {
  return loadConfig(qrConfigShape, vars);
}

/**
 * Only a process configured for it (the embedded run and the test runner set
 * QR_ALLOW_DEV_SIGNING_KEY) may use a generated key; a cluster pod must be
 * given QR_SIGNING_KEY.
 */
export function devKeyAllowed(cfg: QrConfig): boolean {
  return cfg.QR_ALLOW_DEV_SIGNING_KEY;
}
